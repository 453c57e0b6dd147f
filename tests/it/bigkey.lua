-- kvlua tests/it/bigkey.lua PORT NBYTES
-- One client sends GET of a key of NBYTES 'a's; 200 ms after sending it a
-- second client on the same proxy sends PING. Prints
--   get <ms> <reply kind>
--   ping <ms> <reply>
-- so a test sees how long the other client waited behind the big key.
local loop = require "kv.loop"
local redis = require "kv.redis"
local resp = require "kv.resp"

local port, n = tonumber(arg[1]), tonumber(arg[2])
loop.run(function()
  local a = assert(redis.connect("127.0.0.1", port, { timeout = 60 }))
  local b = assert(redis.connect("127.0.0.1", port, { timeout = 60 }))
  local bytes = resp.encode("GET", string.rep("a", n))
  local done = 0
  local t = loop.now()
  a:send_raw(bytes)
  loop.spawn(function()
    loop.sleep(0.2)
    local t2 = loop.now()
    local v = b:call("PING")
    print(("ping %d %s"):format(math.floor((loop.now() - t2) * 1000), tostring(v and v.status)))
    done = done + 1
    if done == 2 then loop.stop() end
  end)
  local v, err = a:read_reply(60)
  print(("get %d %s"):format(math.floor((loop.now() - t) * 1000), v == redis.null and "nil" or tostring(v or err)))
  done = done + 1
  if done == 2 then loop.stop() end
end)
