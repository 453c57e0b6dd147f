-- kvlua tests/it/fake_proxy.lua CS_PROXY_PORT NS ID STEP...
-- A stand-in proxy on the config server's control port: REGISTERs as
-- (ns, 127.0.0.1:<ID>, ID), keeps the link alive (PING every second), and
-- runs the steps in order:
--   "DOWN <addr>" / "UP <addr>"   one report
--   "sleep <seconds>"             wait (still connected)
--   "down <addr> <seconds>"       DOWN every 3 s for that long (as kvp does)
--   "UNREGISTER"                  leave as a clean stop does
--   "PATTERN ADD|DEL <p>"         ask for a key-rewrite pattern
--   "POLICY <file> [FORCE]"       ask for the policy in file (printed "POLICY ns: :<version>")
-- A "replicas" push is printed as "push replicas <ns> <json>"; other pushes are ignored.
-- then disconnects. The link opens with the handshake (kv.handshake) over
-- $KV_CLUSTER_SECRET (unset: none). Prints each reply as "<cmd>: <reply>"; status 1 when the
-- link fails. The integration tests use it for the votes the real proxies
-- would not give (a proxy that sees the master fine, a voter that leaves).
local loop = require "kv.loop"
local resp = require "kv.resp"
local redis = require "kv.redis"
local handshake = require "kv.handshake"

local port, ns, id = tonumber(arg[1]), arg[2], arg[3]
local steps = {}
for i = 4, #arg do steps[#steps + 1] = arg[i] end
local status = 0

loop.run(function()
  local sock, err = loop.connect("127.0.0.1", port, 3)
  if not sock then
    print("connect: " .. tostring(err))
    status = 1
    loop.stop()
    return
  end
  local reader = resp.new_reader()
  local hok, herr = handshake.client({ send = function(b) sock:send(b) end,
                                       read = function() return redis.read_value(sock, reader, 5) end },
                                     os.getenv("KV_CLUSTER_SECRET") or "")
  if not hok then
    print("handshake: " .. tostring(herr))
    status = 1
    loop.stop()
    return
  end
  local pending = {}
  local done = false
  -- reader task: replies in order, pushes ignored
  loop.spawn(function()
    while not done do
      local v, e = sock:receive_with(function(buf, pos)
        if pos <= #buf then
          reader:feed(buf:sub(pos))
          sock.pos = #buf + 1
        end
        local val, re = reader:next()
        if val == nil then
          if re then return nil, re end
          return nil
        end
        return val, sock.pos
      end, 10)
      if v == nil then
        if not done then print("link: " .. tostring(e)) status = 1 end
        done = true
        loop.stop()
        return
      end
      if type(v) == "table" and v.n and v[1] == "push" and v[2] == "replicas" then
        print("push replicas " .. tostring(v[3]) .. " " .. tostring(v[4])) io.stdout:flush()
      elseif not (type(v) == "table" and v.n and v[1] == "push") then
        local what = table.remove(pending, 1) or "?"
        local text
        if type(v) == "table" and v.err then text = "-" .. v.err
        elseif type(v) == "table" and v.status then text = v.status
        elseif type(v) == "number" then text = ":" .. v
        else text = ("(%d bytes)"):format(#tostring(v)) end
        if what ~= "PING" then print(what .. ": " .. text) io.stdout:flush() end
      end
    end
  end)
  local function send(...)
    pending[#pending + 1] = table.concat({ ... }, " ")
    sock:send(resp.encode(...))
  end
  loop.spawn(function()
    while not done do
      send("PING")
      loop.sleep(1)
    end
  end)
  send("REGISTER", ns, "127.0.0.1:" .. id, id)
  for _, s in ipairs(steps) do
    local w = {}
    for x in s:gmatch("%S+") do w[#w + 1] = x end
    if w[1] == "DOWN" or w[1] == "UP" then
      send(w[1], ns, w[2])
    elseif w[1] == "UNREGISTER" then
      send("UNREGISTER", ns)
    elseif w[1] == "PATTERN" then
      send("PATTERN", w[2], ns, w[3])
    elseif w[1] == "POLICY" then
      local f = assert(io.open(w[2], "rb"))
      local src = f:read("*a")
      f:close()
      pending[#pending + 1] = "POLICY " .. ns
      if w[3] then sock:send(resp.encode("POLICY", ns, src, w[3])) else sock:send(resp.encode("POLICY", ns, src)) end
    elseif w[1] == "sleep" then
      loop.sleep(tonumber(w[2]))
    elseif w[1] == "down" then
      local stop = loop.now() + tonumber(w[3])
      repeat
        send("DOWN", ns, w[2])
        loop.sleep(3)
      until loop.now() >= stop
    end
  end
  loop.sleep(0.2)
  done = true
  sock:close()
  loop.stop()
end)
return status -- kvlua exits with it (after closing the Lua state)
