-- wrk script: POST the JSON bodies of $BODIES (one per line) in turn, each thread from its own offset
-- (without $BODIES: plain GETs), and count the response statuses; `done` prints the lines
-- "STATUS {json}" and "LATENCY {json}" that benchmarks/nasoa_service.py reads.
local bodies = {}
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  local path = os.getenv("BODIES")
  if path == nil or path == "" then return end
  for line in io.lines(path) do
    if #line > 0 then table.insert(bodies, line) end
  end
  i = id * 7919 % #bodies
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  if #bodies == 0 then return wrk.format(nil, nil, nil, nil) end
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for code, n in pairs(s) do total[code] = (total[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(total) do table.insert(parts, string.format('"%d": %d', code, n)) end
  io.write(string.format('STATUS {%s}\n', table.concat(parts, ", ")))
  io.write(string.format('LATENCY {"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
