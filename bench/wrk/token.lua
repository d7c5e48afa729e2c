-- GET wrk.path with a random bearer token from a file of "id token" lines.   -- FILE
local tokens = {}

function init(args)
  for line in io.lines(args[1]) do
    local _, token = line:match("^(%d+) (%S+)$")
    table.insert(tokens, "Bearer " .. token)
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  return wrk.format("GET", nil, { Authorization = tokens[math.random(#tokens)] })
end
