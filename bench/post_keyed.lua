-- wrk: post.lua's message, each with a new Idempotency-Key (a first attempt, never a replay).
local token = "Bearer " .. os.getenv("BENCH_TOKEN")
-- BENCH_RUN: a new id for each wrk run (bench/harness.ts), so no run reuses another's keys.
local prefix, n = os.getenv("BENCH_RUN"), 0

request = function()
  n = n + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = token,
    ["Idempotency-Key"] = prefix .. "-" .. n,
  }, '{"kind":"message","body":{"text":"hello from the bench","n":1}}')
end
