-- kvlua tests/it/fake_cs.lua PORT NS ADDR1,ADDR2 STEP...
-- A stand-in config server on the proxy port: it answers a proxy's REGISTER
-- with the first table of the steps and pushes the others, so a test controls
-- exactly which tables a proxy installs and when (the real kvcs only makes
-- the tables its state machine allows). Steps, in order:
--   "table V [blocked=B] [migrating=B]"  v V: buckets owned round-robin by
--        ADDR1, ADDR2...; B migrating to the next address, blocked or not
--   "sleep S"                             wait S seconds
--   "await FILE"                          wait until FILE exists
--   "replicas JSON"                       push replicas NS JSON (one argument:
--        {"<master>":["<replica>",...]}, no spaces)
--   "exit"                                stop (the proxy keeps its table)
-- The first step must be a table. PING answers +PONG, ACK +OK; a ping is
-- pushed every second so the proxy keeps the link. Every table is of one
-- lineage (FAKE_CS_LINEAGE, or a new one).
local loop = require "kv.loop"
local resp = require "kv.resp"
local redis = require "kv.redis"
local btable = require "kv.btable"

local port, ns = tonumber(arg[1]), arg[2]
local addrs = {}
for a in arg[3]:gmatch("[^,]+") do addrs[#addrs + 1] = a end
local steps = {}
for i = 4, #arg do steps[#steps + 1] = arg[i] end

-- every table of one run is of one lineage (kv.btable), as a real config
-- server's are: a fresh one, or the hex digits of FAKE_CS_LINEAGE
local lineage = os.getenv("FAKE_CS_LINEAGE") or btable.new_lineage()

local function make_table(step)
  local t = assert(btable.init(ns, 1023, addrs, lineage))
  t.version = tonumber(step:match("^table (%d+)"))
  local mig = tonumber(step:match("migrating=(%d+)") or step:match("blocked=(%d+)") or "")
  if mig then
    local owner = t.owner[mig]
    for i, a in ipairs(addrs) do
      if a == owner then t.migrating[mig] = addrs[i % #addrs + 1] end
    end
    if step:match("blocked=") then t.blocked[mig] = true end
  end
  return btable.encode(t)
end

local proxies = {}

local handshake = require "kv.handshake"

local function serve(sock)
  local reader = resp.new_reader()
  -- the control port's handshake, as kvcs does (secret: $KV_CLUSTER_SECRET)
  if not handshake.server({ send = function(b) sock:send(b) end,
                            read = function() return redis.read_value(sock, reader, 5) end },
                          os.getenv("KV_CLUSTER_SECRET") or "", sock.peer) then
    sock:close(true)
    return
  end
  while true do
    local cmd = redis.read_value(sock, reader, 3600)
    if not cmd then break end
    local name = type(cmd) == "table" and type(cmd[1]) == "string" and cmd[1]:upper() or ""
    if name == "REGISTER" then
      sock:send(resp.encode_reply(make_table(steps[1])))
      proxies[#proxies + 1] = sock
    elseif name == "ACK" then
      sock:send(resp.encode_reply(resp.status("OK")))
    else
      sock:send(resp.encode_reply(resp.status("PONG")))
    end
  end
  sock:close()
end

loop.run(function()
  assert(loop.listen("127.0.0.1", port, serve))
  loop.every(1, function()
    for _, s in ipairs(proxies) do s:send(resp.encode("push", "ping")) end
  end)
  while #proxies == 0 do loop.sleep(0.05) end
  for i = 2, #steps do
    local s = steps[i]
    if s:match("^sleep") then
      loop.sleep(tonumber(s:match("sleep (%S+)")))
    elseif s:match("^await") then
      local f = s:match("await (%S+)")
      while not io.open(f) do loop.sleep(0.05) end
    elseif s == "exit" then
      break
    elseif s:match("^replicas ") then
      for _, p in ipairs(proxies) do p:send(resp.encode("push", "replicas", ns, s:sub(10))) end
    else
      local json = make_table(s)
      for _, p in ipairs(proxies) do p:send(resp.encode("push", "table", json)) end
    end
  end
  -- keep answering until killed
  while true do loop.sleep(3600) end
end)
