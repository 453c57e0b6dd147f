-- kvlua tests/it/bigmget.lua PORT NKEYS
-- One client sends MGET {foo}1 {foo}1 {foo}2 ... {foo}NKEYS (the first key
-- twice); 200 ms after sending it a second client on the same proxy sends PING. Prints
--   mget <ms> <elements> <first> <second> <third>
--   ping <ms>
-- so a test sees the MGET's reply and how long the other client waited.
local loop = require "kv.loop"
local redis = require "kv.redis"
local resp = require "kv.resp"

local port, n = tonumber(arg[1]), tonumber(arg[2])
loop.run(function()
  local a = assert(redis.connect("127.0.0.1", port, { timeout = 60 }))
  local b = assert(redis.connect("127.0.0.1", port, { timeout = 60 }))
  local cmd = { "MGET", "{foo}1" }
  for i = 1, n do cmd[#cmd + 1] = "{foo}" .. i end
  local bytes = resp.encode_array(cmd)
  local done = 0
  local t = loop.now()
  a:send_raw(bytes)
  loop.spawn(function()
    loop.sleep(0.2)
    local t = loop.now()
    local v = b:call("PING")
    print(("ping %d %s"):format(math.floor((loop.now() - t) * 1000), tostring(v and v.status)))
    done = done + 1
    if done == 2 then loop.stop() end
  end)
  local v, err = a:read_reply(60)
  local ms = math.floor((loop.now() - t) * 1000)
  if type(v) ~= "table" or not v.n then
    print("mget " .. ms .. " error " .. tostring(v and v.err or err))
  else
    local function s(x) return x == redis.null and "nil" or tostring(x) end
    print(("mget %d %d %s %s %s"):format(ms, v.n, s(v[1]), s(v[2]), s(v[3])))
  end
  done = done + 1
  if done == 2 then loop.stop() end
end)
