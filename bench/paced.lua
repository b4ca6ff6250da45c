-- bench/report.lua's BENCH line, with each connection waiting PACE_MS
-- milliseconds between requests (bench/socket_cost.py --pace-ms): a fixed
-- request rate for every proxy, whatever its speed.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %.1f %.3f %.3f %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status, summary.requests))
end
delay = function() return tonumber(os.getenv("PACE_MS") or "0") end
