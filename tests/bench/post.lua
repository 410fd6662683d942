-- POST /sns with pre-generated signed SNS bodies, one per line of a file,
-- at full speed over keep-alive connections.
--   wrk -t T -c C -d D -s post.lua http://127.0.0.1:PORT/sns -- BODIES_FILE T DONE
-- Thread k (of T) takes lines k, k+T, k+2T, ... so no two threads send the
-- same body; within a thread the connections take them in order, each body
-- once.  A thread stops once it has had an answer for each of its bodies
-- (the few requests already in flight then repeat bodies from the start:
-- counted as "extra", and answered as duplicates) and creates the file
-- DONE.<thread number>: wrk itself always waits for the whole -d, so
-- bench.py interrupts it (SIGINT: wrk still reports) once every thread has
-- finished.  rate.lua adds a fixed request rate on top of this.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local reqs, done_path = {}, nil
-- Read back by report.lua's done() through thread:get().
n, sent, answered, non200 = 0, 0, 0, 0

function init(args)
  local path = args[1]
  local nthreads = tonumber(args[2])
  done_path = args[3] .. "." .. tid
  local headers = {
    ["Content-Type"] = "text/plain; charset=UTF-8",
    ["x-amz-sns-message-type"] = "Notification",
  }
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      n = n + 1
      reqs[n] = wrk.format("POST", "/sns", headers, line)
    end
    i = i + 1
  end
  if n == 0 then error("no bodies for thread " .. tid .. " in " .. path) end
end

function request()
  if t_first == nil then t_first = now_us() end
  sent = sent + 1
  return reqs[(sent - 1) % n + 1]
end

function response(status, headers, body)
  answered = answered + 1
  t_last = now_us()
  if status ~= 200 then non200 = non200 + 1 end
  if answered == n then
    io.open(done_path, "w"):close()
    wrk.thread:stop()
  end
end
