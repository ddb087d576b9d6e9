-- wrk script: POST heartbeats for many registered nodes, each with its own node token.
--
--   wrk -t1 -c32 -d8s --latency -s bench/heartbeats/heartbeat.lua URL -- NODES_FILE [bare]
--
-- NODES_FILE has one "node_id node_token" per line (bench/heartbeats/run.py writes it). Each
-- request picks a node at random, so presence and the token cache see many keys. With "bare",
-- the same headers and body go to the bare endpoint /bare instead, so both runs send the same
-- bytes apart from the path.

local body = '{"connections":3,"egress_bps":4000000,"egress_cap_bps":20000000,'
  .. '"version":"0.1.0","public_url":"http://198.51.100.7:8080"}'
local requests = {}

function init(args)
  local nodes_file = args[1]
  if nodes_file == nil then
    error("usage: wrk ... -s heartbeat.lua URL -- NODES_FILE [bare]")
  end
  local bare = args[2] == "bare"
  local file = assert(io.open(nodes_file, "r"))
  for line in file:lines() do
    local node_id, token = line:match("^(%S+)%s+(%S+)$")
    if node_id then
      local path = bare and "/bare" or ("/api/v1/nodes/" .. node_id .. "/heartbeat")
      local headers = {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/json",
      }
      requests[#requests + 1] = wrk.format("POST", path, headers, body)
    end
  end
  file:close()
  if #requests == 0 then
    error("no nodes in " .. nodes_file)
  end
  math.randomseed(os.time())
end

function request()
  return requests[math.random(#requests)]
end
