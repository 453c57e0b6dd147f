-- latency.lua PORT SECONDS CONNS [STOPFILE [STARTFILE]]: SET load through a
-- proxy, one request at a time per connection; prints "n=<count> p50=<ms>
-- p99=<ms> max=<ms> errors=<n> seconds=<s> rps=<n/s>". The load runs from
-- the start; with STARTFILE, only the requests sent once that file exists
-- are counted (the load is warm when the measured window opens), and
-- seconds runs from then to the end (SECONDS passed or STOPFILE there), so
-- rps is the clients' throughput over exactly that window.
-- Run by kvlua (scripts/bench.sh migrate).
local loop = require "kv.loop"
local redis = require "kv.redis"
local port, seconds, conns = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3] or 8)
local stopfile, startfile = arg[4], arg[5]
local lat, errors = {}, 0
local measuring, stopping, started = startfile == nil, false, nil

local function exists(path)
  local f = io.open(path)
  if f then f:close() return true end
  return false
end

-- the files are polled every 10 ms, not per request (an open() per request
-- would cost the load generator more than the proxy's work)
local function watch(deadline)
  while not stopping do
    if loop.now() >= deadline or (stopfile and exists(stopfile)) then stopping = true end
    if not measuring and exists(startfile) then measuring = true; started = loop.now() end
    loop.sleep(0.01)
  end
end

loop.run(function()
  started = loop.now()
  local left, me = conns, coroutine.running()
  local value = string.rep("v", 64)
  loop.spawn(watch, started + seconds)
  for i = 1, conns do
    loop.spawn(function()
      local c = assert(redis.connect("127.0.0.1", port))
      local n = 0
      while not stopping do
        n = n + 1
        local t, counted = loop.now(), measuring
        local r = c:call("SET", ("lat:%d:%d"):format(i, n % 10000), value)
        if counted then
          if r == nil or (type(r) == "table" and r.err) then errors = errors + 1
          else lat[#lat + 1] = loop.now() - t end
        end
      end
      c:close()
      left = left - 1
      if left == 0 then loop.timer(0, function() coroutine.resume(me) end) end
    end)
  end
  coroutine.yield()
  local elapsed = loop.now() - started
  table.sort(lat)
  local function q(p) return #lat > 0 and lat[math.max(1, math.floor(#lat * p))] * 1000 or 0 end
  print(("n=%d p50=%.3f p99=%.3f max=%.3f errors=%d seconds=%.2f rps=%.0f"):format(#lat, q(0.5), q(0.99),
    q(1.0), errors, elapsed, elapsed > 0 and #lat / elapsed or 0))
  loop.stop()
end)
