-- POST wrk.path: a random member sends 0.01-5.00 credits to another.   -- FILE of "id token"
local ids, tokens = {}, {}

function init(args)
  for line in io.lines(args[1]) do
    local id, token = line:match("^(%d+) (%S+)$")
    table.insert(ids, id)
    table.insert(tokens, "Bearer " .. token)
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local sender = math.random(#ids)
  local receiver = math.random(#ids - 1)
  if receiver >= sender then
    receiver = receiver + 1
  end
  local body = string.format('{"to_user_id":%s,"amount":"%d.%02d"}', ids[receiver],
    math.random(0, 4), math.random(1, 99))
  return wrk.format("POST", nil, {
    Authorization = tokens[sender],
    ["Content-Type"] = "application/json",
  }, body)
end
