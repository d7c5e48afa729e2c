-- ids.lua, also counting 5xx responses (printed as "5xx: N").   -- N PREFIX
local threads = {}
local n, prefix

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  n = tonumber(args[1])
  prefix = args[2]
  server_errors = 0
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  return wrk.format("GET", prefix .. math.random(1, n))
end

function response(status, headers, body)
  if status >= 500 then
    server_errors = server_errors + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("server_errors")
  end
  io.write(string.format("5xx: %d\n", total))
end
