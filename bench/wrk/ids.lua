-- GET <prefix><random id>, ids uniform in 1..N.   wrk ... -s ids.lua URL -- N PREFIX
local n, prefix

function init(args)
  n = tonumber(args[1])
  prefix = args[2]
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  return wrk.format("GET", prefix .. math.random(1, n))
end
