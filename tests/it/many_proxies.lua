-- kvlua tests/it/many_proxies.lua PORT[,PORT...] N NS READYFILE SECONDS
-- N simulated proxies on the config servers' proxy ports (session i on
-- port i mod #ports): each opens the handshake (kv.handshake over
-- $KV_CLUSTER_SECRET), REGISTERs as (NS, 127.0.0.1:<20000+i>, sim/127.0.0.1:<20000+i>/<run>: ids
-- as kvp forms them, host/listen/random; kvcs takes one host/listen as one proxy),
-- takes the table in the reply, PINGs every second, and ACKs every pushed
-- table as kvp does. Once all N are registered it writes "ready" to
-- READYFILE (each session's version then is its base); then it waits until every session has
-- been pushed a table with a greater version (or SECONDS pass) and prints
--   registered N in S s (v<old>)
--   pushed v<new> to K of N: first at <wall ms>, last at <wall ms>
-- Status 0 when all N got it.
local loop = require "kv.loop"
local resp = require "kv.resp"
local redis = require "kv.redis"
local handshake = require "kv.handshake"
local core = require "kv.core"
local cjson = require "cjson"

local ports = {}
for p in tostring(arg[1]):gmatch("%d+") do ports[#ports + 1] = tonumber(p) end
local n, ns, readyfile, seconds = tonumber(arg[2]), arg[3], arg[4], tonumber(arg[5]) or 60
local run = tostring(math.floor(core.wall() * 1000) % 1000000)
local secret = os.getenv("KV_CLUSTER_SECRET") or ""

local registered, failed, ready = 0, 0, false
local held, base = {}, {} -- [i] = the version session i holds; the one it held when ready
local got, first_at, last_at, new_version = 0, nil, nil, nil
local errors = {}
local status = 1

local function version_of(json)
  local ok, t = pcall(cjson.decode, json)
  return ok and type(t) == "table" and tonumber(t.version) or nil
end

local function session(i)
  local port = ports[(i % #ports) + 1]
  local sock, err = loop.connect("127.0.0.1", port, 10)
  if not sock then failed = failed + 1 errors[#errors + 1] = "connect: " .. tostring(err) return end
  local reader = resp.new_reader()
  local function next_value(timeout)
    return redis.read_value(sock, reader, timeout)
  end
  local hok, herr = handshake.client({ send = function(b) sock:send(b) end,
                                       read = function() return next_value(10) end }, secret)
  if not hok then failed = failed + 1 errors[#errors + 1] = "handshake: " .. tostring(herr) return end
  sock:send(resp.encode("REGISTER", ns, "127.0.0.1:" .. (20000 + i), ("sim/127.0.0.1:%d/%s"):format(20000 + i, run)))
  local mine, alive = nil, true
  loop.spawn(function()
    while alive do
      loop.sleep(1)
      if alive then sock:send(resp.encode("PING")) end
    end
  end)
  while true do
    local v, rerr = next_value(10)
    if v == nil then
      alive = false
      if not mine then failed = failed + 1 end
      errors[#errors + 1] = ("session %d: %s"):format(i, tostring(rerr))
      return
    end
    if type(v) == "table" and v.n and v[1] == "push" then
      if v[2] == "table" then
        local ver = version_of(v[3])
        if ver then
          sock:send(resp.encode("ACK", ns, tostring(ver)))
          if ready and base[i] and ver > base[i] then
            local now = core.wall()
            base[i] = nil -- counted once
            got = got + 1
            new_version = ver
            first_at = first_at or now
            last_at = now
          end
          if mine and ver > mine then mine = ver held[i] = ver end
        end
      end
    elseif not mine then -- the REGISTER reply (later ones are PONG / OK)
      if type(v) ~= "string" then
        failed = failed + 1
        errors[#errors + 1] = ("REGISTER %d: %s"):format(i, type(v) == "table" and tostring(v.err) or tostring(v))
        alive = false
        return
      end
      mine = version_of(v) or 0
      held[i] = mine
      sock:send(resp.encode("ACK", ns, tostring(mine)))
      registered = registered + 1
    end
  end
end

loop.run(function()
  local t0 = loop.now()
  for i = 1, n do
    loop.spawn(session, i)
    if i % 50 == 0 then loop.sleep(0.01) end -- a burst of connects, not one SYN flood
  end
  local deadline = t0 + seconds
  while registered + failed < n and loop.now() < deadline do loop.sleep(0.05) end
  for i = 1, n do base[i] = held[i] end
  ready = true
  print(("registered %d of %d in %.2f s (%d failed)"):format(registered, n, loop.now() - t0, failed))
  for k = 1, math.min(5, #errors) do print("  " .. errors[k]) end
  io.stdout:flush()
  if registered == n then
    local f = assert(io.open(readyfile .. ".tmp", "w"))
    f:write("ready\n")
    f:close()
    os.rename(readyfile .. ".tmp", readyfile)
  end
  while got < n and loop.now() < deadline do loop.sleep(0.05) end
  if got > 0 then
    print(("pushed v%d to %d of %d: first at %d, last at %d"):format(new_version, got, n,
      math.floor(first_at * 1000), math.floor(last_at * 1000)))
  else
    print(("pushed to 0 of %d"):format(n))
  end
  io.stdout:flush()
  status = got == n and 0 or 1
  loop.stop() -- the sessions close with the process
end)
return status
