-- Shared setup()/done() for the mailtrail benchmark: done() prints one JSON
-- line on stdout that bench.py parses ("WRK_RESULT {...}"), with each
-- thread's counts so that bench.py knows exactly which bodies were sent.
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
  local first, last, per = nil, nil, {}
  for _, t in ipairs(threads) do
    local f, l = t:get("t_first"), t:get("t_last")
    if f and (not first or f < first) then first = f end
    if l and (not last or l > last) then last = l end
    table.insert(per, string.format('{"n":%d,"sent":%d,"answered":%d,"non200":%d}',
      t:get("n") or 0, t:get("sent") or 0, t:get("answered") or 0,
      t:get("non200") or 0))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"active_us":%d,"threads":[%s]}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout,
    (first and last) and (last - first) or summary.duration,
    table.concat(per, ",")))
end
