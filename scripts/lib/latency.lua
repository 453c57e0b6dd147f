-- latency.lua PORT SECONDS CONNS [stopfile]: SET load through a proxy, one
-- request at a time per connection; prints "n=<count> p50=<ms> p99=<ms>
-- max=<ms> errors=<n>". Run by kvlua (scripts/bench.sh migrate).
local loop = require "kv.loop"
local redis = require "kv.redis"
local port, seconds, conns, stopfile = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3] or 8), arg[4]
local lat, errors = {}, 0
local function stopped(deadline)
  if loop.now() >= deadline then return true end
  if stopfile then
    local f = io.open(stopfile)
    if f then f:close() return true end
  end
  return false
end
loop.run(function()
  local deadline = loop.now() + seconds
  local left, me = conns, coroutine.running()
  local value = string.rep("v", 64)
  for i = 1, conns do
    loop.spawn(function()
      local c = assert(redis.connect("127.0.0.1", port))
      local n = 0
      while not stopped(deadline) do
        n = n + 1
        local t = loop.now()
        local r = c:call("SET", ("lat:%d:%d"):format(i, n % 10000), value)
        if r == nil or (type(r) == "table" and r.err) then errors = errors + 1
        else lat[#lat + 1] = loop.now() - t end
      end
      c:close()
      left = left - 1
      if left == 0 then loop.timer(0, function() coroutine.resume(me) end) end
    end)
  end
  coroutine.yield()
  table.sort(lat)
  local function q(p) return #lat > 0 and lat[math.max(1, math.floor(#lat * p))] * 1000 or 0 end
  print(("n=%d p50=%.3f p99=%.3f max=%.3f errors=%d"):format(#lat, q(0.5), q(0.99), q(1.0), errors))
  loop.stop()
end)
