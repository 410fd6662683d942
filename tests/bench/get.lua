-- GET one path over keep-alive connections at full speed (the query
-- benchmark, tests/bench/query.py):
--   wrk -t T -c C -d D -s get.lua http://127.0.0.1:PORT -- PATH
-- done() prints one line that query.py parses ("QUERY_RESULT {...}").
local path = "/"

function init(args)
  path = args[1]
end

function request()
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'QUERY_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), latency.max, e.status,
    e.connect, e.read, e.write, e.timeout))
end
