-- wrk script: viewers fetching live HLS from one server, the same requests for every server.
--
--   wrk -t1 -c32 -d10s -s bench/node_relay/viewers.lua URL -- PATHS_FILE [TOKENS_FILE]
--
-- PATHS_FILE has one request path per line (/hls/<stream>/<segment> or the playlist); every
-- request picks one at random. With TOKENS_FILE (one viewer session token a line), each
-- request also carries a random one of them as ?session=, as a player with a session does.
-- nginx ignores the query, so it gets byte for byte the same requests as the node.
--
-- At the end one line "RESULT key=value ..." gives exact counts (wrk's own summary rounds
-- bytes to two decimals): requests, bytes, duration in us, latency percentiles in us, and
-- errors by kind.

local requests = {}

local function lines(path)
  local found = {}
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    if line:match("%S") then
      found[#found + 1] = line:match("^%s*(.-)%s*$")
    end
  end
  file:close()
  return found
end

function init(args)
  if args[1] == nil then
    error("usage: wrk ... -s viewers.lua URL -- PATHS_FILE [TOKENS_FILE]")
  end
  local paths = lines(args[1])
  local tokens = args[2] and lines(args[2]) or {}
  for _, path in ipairs(paths) do
    if #tokens == 0 then
      requests[#requests + 1] = wrk.format("GET", path)
    else
      for _, token in ipairs(tokens) do
        requests[#requests + 1] = wrk.format("GET", path .. "?session=" .. token)
      end
    end
  end
  if #requests == 0 then
    error("no paths in " .. args[1])
  end
  math.randomseed(os.time())
end

function request()
  return requests[math.random(#requests)]
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    "RESULT requests=%d bytes=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d "
      .. "status=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    errors.status, errors.connect, errors.read, errors.write, errors.timeout
  ))
end
