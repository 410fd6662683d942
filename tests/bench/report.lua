-- Shared done() for the mailtrail benchmark: one JSON line on stdout that
-- bench.py parses ("WRK_RESULT {...}").  Loaded by post.lua, or used alone
-- with -s for plain GET runs (then wrk's static request is used).
local threads = {}

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
-- Wall clock (CLOCK_MONOTONIC) in microseconds.
function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local nthreads = #threads
  local wrapped, non200, sent = 0, 0, 0
  local first, last = nil, nil
  for _, t in ipairs(threads) do
    local f, l = t:get("t_first"), t:get("t_last")
    if f and (not first or f < first) then first = f end
    if l and (not last or l > last) then last = l end
    wrapped = wrapped + (t:get("wrapped") or 0)
    non200 = non200 + (t:get("non200") or 0)
    sent = sent + (t:get("unique") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"threads":%d,"bodies_reused":%d,"non200":%d,"bodies_loaded":%d,' ..
    '"active_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout,
    nthreads, wrapped, non200, sent,
    (first and last) and (last - first) or summary.duration))
end
