-- wrk: one route (BENCH_METHOD, BENCH_PATH, BENCH_BODY), or two taking turns (…2), with the
-- token BENCH_TOKEN if set. "{n}" in a path or body becomes a new id for each turn.
local token = os.getenv("BENCH_TOKEN") or ""
local reqs = {}
for _, suffix in ipairs({ "", "2" }) do
  local method = os.getenv("BENCH_METHOD" .. suffix)
  if method and method ~= "" then
    reqs[#reqs + 1] = {
      method = method,
      path = os.getenv("BENCH_PATH" .. suffix),
      body = os.getenv("BENCH_BODY" .. suffix) or "",
    }
  end
end
-- BENCH_RUN: a new id for each wrk run (bench/harness.ts), so no run reuses another's ids.
-- k starts at -1: wrk calls request() once before the first request it sends.
local prefix, n, k = os.getenv("BENCH_RUN"), 0, -1


request = function()
  local r = reqs[k % #reqs + 1]
  if k % #reqs == 0 then n = n + 1 end
  k = k + 1
  local id = prefix .. "-" .. n
  local headers = {}
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  local body = nil
  if r.body ~= "" then
    headers["Content-Type"] = "application/json"
    body = (r.body:gsub("{n}", id))
  end
  return wrk.format(r.method, (r.path:gsub("{n}", id)), headers, body)
end
