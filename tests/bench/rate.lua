-- post.lua at a fixed request rate (Debian's wrk 4.1 has no -R option).
--   wrk -t T -c C -d D -s rate.lua URL -- BODIES_FILE T DONE RATE
-- Each thread sends RATE/T requests a second: request k of a thread is due
-- at start + k * T/RATE seconds, and delay() (called by wrk before every
-- request, on whichever connection is free) waits until then.  The slots
-- are absolute, so wrk's whole-millisecond timers do not drift the rate;
-- a slot missed because every connection was busy is sent as soon as one
-- is free.  wrk starts its latency clock when the request is written.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "post.lua")

local post_init = init
local interval_us, slot, start_us = 0, 0, nil

function init(args)
  post_init(args)
  interval_us = 1e6 * tonumber(args[2]) / tonumber(args[4])
end

function delay()
  local now = now_us()
  if start_us == nil then start_us = now end
  local due = start_us + slot * interval_us
  slot = slot + 1
  if due <= now then return 0 end
  return math.floor((due - now) / 1000)
end
