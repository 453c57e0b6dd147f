-- kvlua tests/it/blocked_many.lua PORT N PIDFILE: N clients each blocked in
-- BLPOP on its own list; prints kvp's RSS while they wait, then wakes them
-- all and prints how many got their value.
local loop = require "kv.loop"
local redis = require "kv.redis"
local port, n, pidfile = tonumber(arg[1]), tonumber(arg[2]), arg[3]

local function rss_kib()
  local f = io.open(pidfile)
  local pid = f and f:read("*l")
  if f then f:close() end
  local s = pid and io.open("/proc/" .. pid .. "/status")
  if not s then return -1 end
  for line in s:lines() do
    local v = line:match("^VmRSS:%s+(%d+)")
    if v then s:close() return tonumber(v) end
  end
  s:close()
  return -1
end

loop.run(function()
  local got, conns = 0, {}
  for i = 1, n do
    local c = assert(redis.connect("127.0.0.1", port))
    conns[i] = c
    loop.spawn(function()
      local v = c:call("BLPOP", "many" .. i, "0")
      if type(v) == "table" and v[1] == "many" .. i and v[2] == "v" .. i then got = got + 1 end
    end)
  end
  loop.sleep(2)
  print("rss_kib " .. rss_kib())
  local w = assert(redis.connect("127.0.0.1", port))
  for i = 1, n do w:call("RPUSH", "many" .. i, "v" .. i) end
  local deadline = loop.now() + 20
  while got < n and loop.now() < deadline do loop.sleep(0.05) end
  print("woken " .. got)
  for i = 1, n do conns[i]:close() end
  w:close()
  loop.stop()
end)
