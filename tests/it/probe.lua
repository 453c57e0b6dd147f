-- kvlua tests/it/probe.lua HOST PORT INTERVAL SECONDS "CMD ARG..."
-- One client connection; sends CMD every INTERVAL seconds for SECONDS
-- (0: until killed) and prints "<seconds since start> <ms> <reply>" per
-- request (errors as "-ERR ...", a broken connection as "transport: ...",
-- after which it reconnects). Output is line-buffered so a test can watch it.
local loop = require "kv.loop"
local redis = require "kv.redis"
local host, port = arg[1], tonumber(arg[2])
local interval, seconds = tonumber(arg[3]), tonumber(arg[4])
local words = {}
for w in (arg[5] or "PING"):gmatch("%S+") do words[#words + 1] = w end
io.stdout:setvbuf("line")

local function show(v, e)
  if v == nil then return "transport: " .. tostring(e) end
  if v == redis.null then return "nil" end
  if type(v) == "table" and v.err then return "-" .. v.err end
  if type(v) == "table" and v.status then return v.status end
  return tostring(v)
end

loop.run(function()
  local t0 = loop.now()
  local c
  while seconds == 0 or loop.now() - t0 < seconds do
    local t = loop.now()
    local v, e
    if not c then c, e = redis.connect(host, port, { timeout = 30 }) end
    if c then
      v, e = c:call(unpack(words))
      if v == nil then c:close() c = nil end
    end
    print(("%.1f %.2f %s"):format(t - t0, (loop.now() - t) * 1000, show(v, e)))
    local rest = interval - (loop.now() - t)
    if rest > 0 then loop.sleep(rest) end
  end
  if c then c:close() end
  loop.stop()
end)
