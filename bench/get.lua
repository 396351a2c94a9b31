-- wrk: GET <BENCH_PATH>?after=N&limit=50 with the bench agent's token (BENCH_TOKEN): N is
-- BENCH_AFTER when set (a poll at the tail), else random in [0, BENCH_MAX_AFTER).
local token = "Bearer " .. os.getenv("BENCH_TOKEN")
local fixed = tonumber(os.getenv("BENCH_AFTER") or "")
local maxAfter = tonumber(os.getenv("BENCH_MAX_AFTER") or "1")
local path = os.getenv("BENCH_PATH")

init = function()
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

request = function()
  local after = fixed or math.random(0, maxAfter - 1)
  return wrk.format("GET", path .. "?after=" .. after .. "&limit=50", {
    ["Authorization"] = token,
  })
end
