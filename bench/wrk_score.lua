-- wrk script for bench/online_bench.py: POST /score with request bodies read from a file.
--
--   wrk -t2 -c50 -d20s --timeout 10s -s bench/wrk_score.lua http://127.0.0.1:3000/score \
--       -- BODIES_FILE [THINK_MS] [API_KEY]
--
-- BODIES_FILE holds one JSON body per line (online_bench.py writes it from the feature table);
-- each wrk thread walks the bodies from its own random start (its connections share it). THINK_MS is the pause each
-- connection takes after an answer before its next request (0 = back to back). The figures
-- are printed as one JSON line prefixed "wrk-json " for the Python side to read.

local bodies = {}
local think_ms = 0
local headers = { ["Content-Type"] = "application/json" }
local position = 1
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  think_ms = tonumber(args[2] or "0")
  if args[3] and args[3] ~= "" then
    headers["X-API-Key"] = args[3]
  end
  math.randomseed(os.time() * 1000 + seed)
  position = math.random(#bodies)
  statuses = {}
end

function request()
  position = position % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[position])
end

function delay()
  return think_ms
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(counts) do
    parts[#parts + 1] = string.format('"%s": %d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    'wrk-json {"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p90_ms": %.3f, ' ..
    '"p99_ms": %.3f, "max_ms": %.3f, "mean_ms": %.3f, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "status": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    e.connect, e.read, e.write, e.timeout, e.status, table.concat(parts, ", ")))
end
