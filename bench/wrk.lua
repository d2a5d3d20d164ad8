-- wrk script for bench/run.sh.
-- Optional request headers from the environment (the `direct` rows, where wrk plays nginx's
-- auth subrequest): BENCH_ORIGINAL_URI, BENCH_ORIGINAL_METHOD, BENCH_ORIGINAL_HOST,
-- BENCH_REAL_IP; and BENCH_COOKIE for the cookie grant row. Static headers only: no request()/response() callbacks, which would slow
-- wrk down.
local extra = {
  ["X-Original-URI"] = os.getenv("BENCH_ORIGINAL_URI"),
  ["X-Original-Method"] = os.getenv("BENCH_ORIGINAL_METHOD"),
  ["X-Mediagate-Server-Name"] = os.getenv("BENCH_ORIGINAL_HOST"),
  ["X-Real-IP"] = os.getenv("BENCH_REAL_IP"),
  ["Cookie"] = os.getenv("BENCH_COOKIE"),
}
for name, value in pairs(extra) do
  if value and value ~= "" then
    wrk.headers[name] = value
  end
end

-- One machine-readable line for run.sh. Latencies in microseconds.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
