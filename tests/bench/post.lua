-- POST /sns with pre-generated SNS bodies, one per line of a file.
--   wrk -t T -c C -d D -s post.lua http://127.0.0.1:PORT/sns -- BODIES_FILE T [stop]
-- Thread k (of T) takes lines k, k+T, k+2T, ... so no two threads send the
-- same body; within a thread the connections take them in order.  With
-- "stop", a thread stops once it has had an answer for each of its bodies
-- (the few requests already in flight by then repeat a body: counted as
-- bodies_reused); without it, bodies repeat from the start when exhausted.
-- T = 0: every thread takes every line (the redelivery run: one body).
-- Each thread notes the wall time of its first request and last answer
-- (report.lua derives req/s from them: a stopped thread leaves wrk's own
-- duration, always the full -d, too long).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local reqs, n, idx, sent, answered, stop_when_done = {}, 0, 0, 0, 0, false
wrapped, non200, unique = 0, 0, 0

function init(args)
  local path = args[1]
  local nthreads = tonumber(args[2])
  stop_when_done = args[3] == "stop"
  local headers = {
    ["Content-Type"] = "text/plain; charset=UTF-8",
    ["x-amz-sns-message-type"] = "Notification",
  }
  local i = 0
  for line in io.lines(path) do
    if nthreads == 0 or i % nthreads == tid then
      n = n + 1
      reqs[n] = wrk.format("POST", "/sns", headers, line)
    end
    i = i + 1
  end
  unique = n
  if n == 0 then error("no bodies for thread " .. tid .. " in " .. path) end
end

function request()
  if t_first == nil then t_first = now_us() end
  idx = idx + 1
  if idx > n then idx = 1 end
  sent = sent + 1
  if sent > n then wrapped = wrapped + 1 end
  return reqs[idx]
end

function response(status, headers, body)
  answered = answered + 1
  t_last = now_us()
  if status ~= 200 then non200 = non200 + 1 end
  if stop_when_done and answered >= n then wrk.thread:stop() end
end
