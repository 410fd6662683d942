-- Shared done() for the mailtrail benchmark: one JSON line on stdout that
-- bench.py parses ("WRK_RESULT {...}").  Loaded by post.lua, or used alone
-- with -s for plain GET runs (then wrk's static request is used).
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local nthreads = #threads
  local wrapped, non200, sent = 0, 0, 0
  for _, t in ipairs(threads) do
    wrapped = wrapped + (t:get("wrapped") or 0)
    non200 = non200 + (t:get("non200") or 0)
    sent = sent + (t:get("unique") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"threads":%d,"bodies_reused":%d,"non200":%d,"bodies_loaded":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout,
    nthreads, wrapped, non200, sent))
end
