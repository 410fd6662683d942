-- wrk script of tests/bench/suppressions.py: POSTs the bulk suppression
-- check bodies of a file (one JSON array a line), in turn; counts answers
-- that are not 200 and prints them in done().
--   wrk ... -s check.lua URL -- BODIES_FILE TOKEN
local bodies = {}
local i = 0
local token
local bad = 0

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  token = args[2]
  i = math.random(#bodies)
end

function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/suppressions/check",
                    {["Authorization"] = "Bearer " .. token,
                     ["Content-Type"] = "application/json"}, bodies[i])
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  io.write(string.format("non-200 %d\n", summary.errors.status))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%s %.3f ms\n", p, latency:percentile(p) / 1000))
  end
  io.write(string.format("max %.3f ms\n", latency.max / 1000))
end
