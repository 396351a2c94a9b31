-- wrk: PUT /rooms/:id/state as the bench agent (BENCH_TOKEN), cycling over 100 shared keys.
local token = "Bearer " .. os.getenv("BENCH_TOKEN")
local n = 0

request = function()
  n = n + 1
  local body = '{"key":"k' .. (n % 100) .. '","value":{"status":"working","progress":42}}'
  return wrk.format("PUT", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = token,
  }, body)
end
