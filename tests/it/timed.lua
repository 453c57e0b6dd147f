-- kvlua tests/it/timed.lua PORT "CMD ARG..." ...
-- Sends each command on one connection, waiting for its reply; prints
-- "<ms> <reply>" per command (errors as "-ERR ...", nil as "nil").
local loop = require "kv.loop"
local redis = require "kv.redis"
local port = tonumber(arg[1])
loop.run(function()
  local c, err = redis.connect("127.0.0.1", port)
  if not c then print("connect failed: " .. tostring(err)) loop.stop() return end
  for i = 2, #arg do
    local words = {}
    for w in arg[i]:gmatch("%S+") do words[#words + 1] = w end
    local t = loop.now()
    local v, e = c:call(unpack(words))
    local ms = math.floor((loop.now() - t) * 1000)
    local s
    if v == nil then s = "transport: " .. tostring(e)
    elseif v == redis.null then s = "nil"
    elseif type(v) == "table" and v.err then s = "-" .. v.err
    elseif type(v) == "table" and v.status then s = v.status
    elseif type(v) == "table" then
      local parts = {}
      for j = 1, v.n do parts[j] = type(v[j]) == "table" and (v[j].err and "-" .. v[j].err or "nil") or tostring(v[j]) end
      s = table.concat(parts, ",")
    else s = tostring(v) end
    print(ms .. " " .. s)
  end
  c:close()
  loop.stop()
end)
