-- wrk: POST /rooms/:id/messages as the bench agent (BENCH_TOKEN), one small JSON message each.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.body = '{"kind":"message","body":{"text":"hello from the bench","n":1}}'
