-- kvcs.peers: the config server's live connections: proxies (proxy_listen)
-- and slave config servers (cs_listen), and the pushes to them (DESIGN §3, §7).
--
-- Every connection opens with kv.handshake (the server's challenge, the
-- peer's AUTH over cluster_secret); a peer that fails it gets -NOAUTH, is
-- logged (rate-limited: cs.refused) and closed before any command runs.
-- Proxy commands:  REGISTER ns listen_addr proxy_id -> bulk table JSON
--                  (an id held by a live session is refused: ids are
--                  random per proxy process and cannot be taken over)
--                  UNREGISTER ns -> +OK; a clean stop: the proxy is no
--                  longer known (bucket moves stop waiting for it)
--                  PING -> +PONG;  ACK ns version -> +OK
--                  PATTERN ADD|DEL ns pattern -> +OK | -ERR <code> <msg>
--                  POLICY ns source [FORCE] -> :version | -ERR <code> <msg>
--                  GETPOLICY ns -> JSON {version, source} (no REGISTER needed)
--                  (publishes the routing policy, kvcs.policy.set)
--                  DOWN ns addr / UP ns addr -> +OK (HA votes, kvcs.failover;
--                  passed to cs.on_report(entry, "DOWN"|"UP", ns, addr))
-- Hooks (optional): cs.on_proxy_join(entry) after a REGISTER,
-- cs.on_proxy_leave(entry) when a registered session ends;
-- entry = { sock, ns, listen, id, peer, seq }.
-- Slave commands:  SYNC slave_addr -> array {"snapshot", json, json, ...}
--                  PING -> +PONG
-- Pushes (arrays starting with "push"): table <json>, del_namespace <ns>, ping,
-- replicas <ns> <json> ({"<master>": ["<replica>", ...], ...} for every
-- address of the table, [] when none: what kvcs.failover learned; after the
-- REGISTER reply and whenever a master's learned replicas change).
-- A peer silent for DEAD_AFTER seconds is dropped (it pings every second).
-- Each port's commands are a table of handlers (proxy_commands,
-- slave_commands; arity next to each, looked up by kvcs.dispatch);
-- proxy_command/slave_command run one command for a session.
local loop = require "kv.loop"
local resp = require "kv.resp"
local redis = require "kv.redis"
local btable = require "kv.btable"
local log = require "kv.log"
local store = require "kvcs.store"
local api = require "kvcs.api"
local codes = require "kv.codes"
local dispatch = require "kvcs.dispatch"
local cluster = require "kvcs.cluster"
local handshake = require "kv.handshake"
local policy = require "kvcs.policy"

local M = {}

local DEAD_AFTER = 5
local AUTH_TIMEOUT = 5

-- The handshake that opens every control connection (kv.handshake) on
-- sock; port names the port in the log. -> true | nil (the peer was told,
-- the refusal logged through cs.refused; the caller closes)
function M.authenticate(cs, sock, reader, port)
  local ok, why = handshake.server({
    send = function(b) sock:send(b) end,
    read = function() return redis.read_value(sock, reader, AUTH_TIMEOUT) end,
  }, cs.cfg.cluster_secret, sock.peer)
  if ok then return true end
  if cs.refused then cs.refused(port, sock.peer, why) end
  return nil
end

-- proxies[ns][sock] = the connected proxies; known[ns][id] = every proxy
-- that registered and was not removed (online or not).
function M.new()
  return { proxies = {}, slaves = {}, known = {}, seq = 0 }
end

-- The known proxies are persisted (cs.save_known) so that a config-server
-- restart does not forget a proxy that is away: it would otherwise let a
-- bucket move complete without that proxy's ack.
local function save_known(cs)
  if not cs.save_known then return end
  local out = {}
  for ns, list in pairs(cs.peers.known) do
    for id, k in pairs(list) do
      out[#out + 1] = { namespace = ns, id = id, listen = k.listen, seen = k.seen }
    end
  end
  table.sort(out, function(a, b) return a.namespace .. a.id < b.namespace .. b.id end)
  local ok, err = cs.save_known(out)
  if not ok then log.error("cannot save the known proxies: %s", tostring(err)) end
end

-- Load what save_known wrote: list of {namespace, id, listen, seen}
-- (seen: wall-clock second it was last connected; an older file has none:
-- then now, the config server's start).
function M.load_known(cs, list)
  local now = cs.now and cs.now() or nil
  for _, k in ipairs(list or {}) do
    cs.peers.known[k.namespace] = cs.peers.known[k.namespace] or {}
    cs.peers.known[k.namespace][k.id] = { listen = k.listen, online = false, acked = 0,
                                          seen = tonumber(k.seen) or now }
  end
end

-- Forget every known proxy that has been disconnected for more than
-- cfg.proxy_forget_after seconds (0: never), with a log line each: bucket
-- moves no longer wait for it (README "Scaling without losing a write"
-- says why that is safe: such a proxy has stopped routing long before).
function M.forget_stale(cs)
  local after = cs.cfg.proxy_forget_after or 0
  if after <= 0 or not cs.now then return end
  if cs.cluster then -- the namespace-wide list in etcd, by the leader
    if cs.is_master then cluster.forget_stale(cs, after, loop.now()) end
    return
  end
  local now, changed = cs.now(), false
  for ns, list in pairs(cs.peers.known) do
    for id, k in pairs(list) do
      if not k.online and k.seen and now - k.seen >= after then
        list[id] = nil
        changed = true
        log.warn("proxy %s (id %s) of %s has not reconnected for %d s (proxy_forget_after %d): "
          .. "forgotten; bucket moves no longer wait for its acks", tostring(k.listen), id, ns,
          math.floor(now - k.seen), after)
      end
    end
  end
  if changed then save_known(cs) end
end

-- Drop a known, disconnected proxy (by id or listen address).
function M.forget_proxy(cs, ns, who)
  local known = cs.peers.known[ns] or {}
  for id, k in pairs(known) do
    if id == who or k.listen == who then
      if k.online then return nil, "connected" end
      known[id] = nil
      save_known(cs)
      log.info("proxy %s (%s) of %s removed by the operator", k.listen, id, ns)
      return true
    end
  end
  return nil, "unknown"
end

-- Wait until every known proxy of ns acked version (DESIGN §4). -> true |
-- false, "listen (id)" of one that did not, after timeout seconds.
-- With etcd (cs.cluster) the known proxies are the namespace's in etcd and
-- an ack counts whichever config server the proxy is attached to.
local function lagging_in_cluster(cs, ns, version)
  local connected = cluster.connected(cs, ns)
  for id, k in pairs(cluster.known(cs, ns)) do
    local acked = cluster.acked(cs, ns, id)
    if acked < version then
      return ("%s (id %s, %s, acked v%d)"):format(tostring(k.listen), id,
        connected[id] and "connected" or "not connected", acked)
    end
  end
  return nil
end

function M.wait_acks(cs, ns, version, timeout)
  local deadline = loop.now() + timeout
  while true do
    M.forget_stale(cs)
    local lagging
    if cs.cluster then
      lagging = lagging_in_cluster(cs, ns, version)
    else
      for id, k in pairs(cs.peers.known[ns] or {}) do
        if (k.acked or 0) < version then
          lagging = ("%s (id %s, %s, acked v%d)"):format(k.listen, id, k.online and "connected" or "not connected", k.acked or 0)
          break
        end
      end
    end
    if not lagging then return true end
    if loop.now() >= deadline then return false, lagging end
    loop.sleep(0.005)
  end
end

local function push(sock, ...)
  sock:send(resp.encode("push", ...))
end

local function read_command(sock, reader)
  return redis.read_value(sock, reader, DEAD_AFTER)
end

local function reply(sock, v)
  sock:send(resp.encode_reply(v))
end

-- Proxies of ns as the HTTP API shows them, in registration order.
function M.proxy_list(cs, ns)
  local out = {}
  local list = cs.peers.proxies[ns] or {}
  for _, p in pairs(list) do out[#out + 1] = p end
  table.sort(out, function(a, b) return a.seq < b.seq end)
  local rows = {}
  for i, p in ipairs(out) do
    rows[i] = { info = p.listen, state = "ONLINE", peer = p.peer, id = p.id,
                acked_version = p.acked or 0 }
  end
  return rows
end

--------------------------------------------------------------------------------
-- Proxy commands: proxy_commands[NAME] = { arity, registered?, run(cs, sess, cmd) }
-- sess = { sock, entry } for one connection; entry is set by REGISTER, and
-- a command marked registered is unknown before it. run returns the reply
-- and, optionally, a function to call once the reply is sent.
--------------------------------------------------------------------------------

local proxy_commands = {}
M.proxy_commands = proxy_commands

proxy_commands.PING = { arity = -1 }
function proxy_commands.PING.run()
  return resp.status("PONG")
end

-- REGISTER ns listen_addr proxy_id -> the table JSON; the proxy becomes known
proxy_commands.REGISTER = { arity = 4 }
function proxy_commands.REGISTER.run(cs, sess, cmd)
  local sock, ns = sess.sock, cmd[2]
  if cs.cut_off then
    return resp.error("ERR this config server is cut off from etcd: try another")
  end
  local t = store.get(cs.store, ns)
  if not t then
    log.warn("proxy %s (%s) asked for unknown namespace %s", tostring(cmd[3]), sock.peer, tostring(ns))
    return resp.error("ERR no such namespace '" .. tostring(ns) .. "'")
  end
  if sess.entry then return resp.error("ERR already registered") end
  cs.peers.proxies[ns] = cs.peers.proxies[ns] or {}
  -- An id is random per proxy process, and a proxy reconnects only after
  -- its own session ended (or the heartbeat dropped it): a live session
  -- with this id belongs to someone else, which keeps it.
  for _, other in pairs(cs.peers.proxies[ns]) do
    if other.id == cmd[4] then
      log.warn("proxy %s (%s) asked for id %s, held by the live session of %s (%s): refused",
        tostring(cmd[3]), sock.peer, tostring(cmd[4]), other.listen, other.peer)
      return resp.error("ERR proxy id " .. tostring(cmd[4]) .. " is in use by a connected proxy")
    end
  end
  cs.peers.seq = cs.peers.seq + 1
  local entry = { sock = sock, ns = ns, listen = cmd[3], id = cmd[4], peer = sock.peer, seq = cs.peers.seq }
  sess.entry = entry
  cs.peers.proxies[ns][sock] = entry
  cs.peers.known[ns] = cs.peers.known[ns] or {}
  -- the same proxy restarted (ids are "host/listen/<random>"): its old
  -- process is gone (it held that port on that host), so its entry goes
  local prefix = tostring(entry.id):match("^(.+/)[^/]+$")
  for id, old in pairs(cs.peers.known[ns]) do
    if prefix and id ~= entry.id and not old.online and id:sub(1, #prefix) == prefix
        and not id:sub(#prefix + 1):find("/", 1, true) then
      cs.peers.known[ns][id] = nil
      if cs.cluster then cluster.forget(cs, ns, id) end
      log.info("proxy %s restarted: id %s replaces %s", entry.listen, entry.id, id)
    end
  end
  if cs.cluster then
    -- the same restart seen by another config server (etcd's list)
    for id in pairs(cluster.known(cs, ns)) do
      if prefix and id ~= entry.id and id:sub(1, #prefix) == prefix and not id:sub(#prefix + 1):find("/", 1, true)
          and not cluster.connected(cs, ns)[id] then
        cluster.forget(cs, ns, id)
        log.info("proxy %s restarted: id %s replaces %s (known to the cluster)", entry.listen, entry.id, id)
      end
    end
  end
  local k = cs.peers.known[ns][entry.id]
  if not k then
    k = { acked = 0, listen = entry.listen }
    cs.peers.known[ns][entry.id] = k
    save_known(cs)
  end
  k.listen, k.online, k.acked = entry.listen, true, 0 -- acks again for what it gets now
  k.seen = cs.now and cs.now() or nil
  if cs.cluster then
    cluster.register(cs, ns, entry.id, entry.listen, k.seen)
    cluster.changed(cs, ns)
  end
  log.info("proxy %s (%s, id %s) registered for %s; sent table v%d", entry.listen,
    sock.peer, entry.id, ns, t.version)
  return btable.encode(t), function()
    push(sock, "replicas", ns, M.replicas_json(cs, t))
    if cs.on_proxy_join then cs.on_proxy_join(entry) end
  end
end

-- ACK ns version: nothing routed with an older table is in flight there
proxy_commands.ACK = { arity = 3, registered = true }
function proxy_commands.ACK.run(cs, sess, cmd)
  local entry = sess.entry
  entry.acked = tonumber(cmd[3]) or 0
  local k = cs.peers.known[entry.ns] and cs.peers.known[entry.ns][entry.id]
  if k and entry.acked > (k.acked or 0) then k.acked = entry.acked end
  if cs.cluster then cluster.changed(cs, entry.ns) end
  return resp.status("OK")
end

-- UNREGISTER ns: a proxy stopping cleanly; it is no longer known, so
-- bucket moves stop waiting for its acks. Its session ends (it closes).
proxy_commands.UNREGISTER = { arity = 2, registered = true }
function proxy_commands.UNREGISTER.run(cs, sess)
  local entry = sess.entry
  local known = cs.peers.known[entry.ns]
  if known and known[entry.id] then
    known[entry.id] = nil
    save_known(cs)
  end
  entry.unregistered = true
  if cs.cluster then
    cluster.forget(cs, entry.ns, entry.id)
    cluster.changed(cs, entry.ns)
  end
  log.info("proxy %s (%s, id %s) of %s unregistered: it is stopping", entry.listen, entry.peer,
    entry.id, entry.ns)
  return resp.status("OK")
end

-- DOWN ns addr / UP ns addr: an HA vote (kvcs.failover)
local function report(cs, sess, cmd)
  local ok, err = true, nil
  if cs.on_report then ok, err = cs.on_report(sess.entry, cmd[1]:upper(), cmd[2], cmd[3]) end
  if ok then return resp.status("OK") end
  return resp.error("ERR " .. tostring(err))
end
proxy_commands.DOWN = { arity = 3, registered = true, run = report }
proxy_commands.UP = { arity = 3, registered = true, run = report }

-- PATTERN ADD|DEL ns pattern
-- A follower on etcd (cs.leader, not leading) hands a proxy's change to
-- the leader: FORWARD <command...> on the leader's proxy port (the same
-- handshake), the leader's reply as it is. -> reply
local FORWARDABLE = { PATTERN = true, POLICY = true }
local function forward(cs, sess, cmd)
  local cur = cs.leader_info and cs.leader_info()
  if not cur or not cur.proxy then
    return resp.error(("ERR %d no config server leads now: retry in a few seconds"):format(codes.NOT_LEADER))
  end
  local host, port = loop.split_addr(cur.proxy)
  local sock, err = loop.connect(host, port, 3)
  if not sock then
    return resp.error(("ERR %d the leader %s does not answer: %s"):format(codes.NOT_LEADER, cur.proxy, tostring(err)))
  end
  local reader = resp.new_reader()
  local function read() return redis.read_value(sock, reader, 10) end
  local ok, herr = require("kv.handshake").client({ send = function(b) sock:send(b) end, read = read },
    cs.cfg.cluster_secret)
  if not ok then
    sock:close()
    return resp.error(("ERR %d the leader %s: handshake: %s"):format(codes.NOT_LEADER, cur.proxy, tostring(herr)))
  end
  local args = { "FORWARD", sess.entry.ns, sess.entry.listen }
  for i = 1, cmd.n do args[#args + 1] = cmd[i] end
  sock:send(resp.encode(unpack(args)))
  local v, rerr = read()
  sock:close()
  if v == nil then
    return resp.error(("ERR %d the leader %s did not answer: %s"):format(codes.NOT_LEADER, cur.proxy, tostring(rerr)))
  end
  return v
end

-- FORWARD <ns> <proxy listen> <command...>: a follower's proxy asked for a
-- change (PATTERN, POLICY); this config server, the leader, makes it as if
-- that proxy had asked here.
proxy_commands.FORWARD = { arity = -5 }
function proxy_commands.FORWARD.run(cs, _, cmd)
  local inner = { n = cmd.n - 3 }
  for i = 4, cmd.n do inner[i - 3] = cmd[i] end
  local name = tostring(inner[1]):upper()
  local c = FORWARDABLE[name] and proxy_commands[name]
  if not c then return resp.error("ERR FORWARD takes PATTERN or POLICY") end
  if not cs.is_master then return forward(cs, { entry = { ns = cmd[2], listen = cmd[3] } }, inner) end
  return c.run(cs, { entry = { ns = cmd[2], listen = tostring(cmd[3]) .. " (forwarded)" } }, inner)
end

proxy_commands.PATTERN = { arity = 4, registered = true }
function proxy_commands.PATTERN.run(cs, sess, cmd)
  if cs.leader and not cs.is_master then return forward(cs, sess, cmd) end
  local op = tostring(cmd[2]):upper()
  local code, msg = api.change_pattern(cs, cmd[3], op, cmd[4])
  if code ~= codes.OK then return resp.error(("ERR %d %s"):format(code, msg)) end
  log.info("pattern %s %s on %s (asked by proxy %s)", op, cmd[4], cmd[3], sess.entry.listen)
  return resp.status("OK")
end

-- POLICY ns source [FORCE]: the proxy read its lua/policy.lua (kvp --reload,
-- SIGHUP, reload_policy) and asks for it to be the namespace's policy
proxy_commands.POLICY = { arity = -3, registered = true }
function proxy_commands.POLICY.run(cs, sess, cmd)
  if cs.leader and not cs.is_master then return forward(cs, sess, cmd) end
  if cmd.n > 4 or (cmd.n == 4 and tostring(cmd[4]):upper() ~= "FORCE") then
    return resp.error("ERR " .. codes.BAD_PARAM .. " syntax: POLICY <namespace> <source> [FORCE]")
  end
  if cmd[2] ~= sess.entry.ns then -- a proxy speaks for its own namespace only
    return resp.error(("ERR %d this proxy is registered for namespace '%s', not '%s'"):format(
      codes.BAD_PARAM, tostring(sess.entry.ns), tostring(cmd[2])))
  end
  local code, msg, data = policy.set(cs, cmd[2], cmd[3], cmd.n == 4)
  if code ~= codes.OK then return resp.error(("ERR %d %s"):format(code, msg)) end
  log.info("policy of %s: v%d (asked by proxy %s)", cmd[2], data.version, sess.entry.listen)
  return data.version
end

-- GETPOLICY ns: the namespace's policy as JSON {"version", "source"}
-- (version 0, source null when none): `kvp -t` compares its file with it
-- without registering as a proxy.
proxy_commands.GETPOLICY = { arity = 2 }
function proxy_commands.GETPOLICY.run(cs, _, cmd)
  local code, msg, data = policy.get(cs, cmd[2])
  if code ~= codes.OK then return resp.error(("ERR %d %s"):format(code, msg)) end
  return require("cjson").encode({ version = data.version, source = data.source })
end

-- One command of a proxy connection. -> reply [, after]
function M.proxy_command(cs, sess, cmd)
  local c, name = dispatch.find(proxy_commands, cmd)
  if not c or (c.registered and not sess.entry) then
    return resp.error("ERR unknown control command '" .. name .. "'")
  end
  return c.run(cs, sess, cmd)
end

function M.serve_proxy(cs, sock)
  local reader = resp.new_reader()
  if not M.authenticate(cs, sock, reader, "proxy port") then
    sock:close(true)
    return
  end
  local sess = { sock = sock }
  local why
  while true do
    local cmd, err = read_command(sock, reader)
    if not cmd then why = err break end
    local r, after = M.proxy_command(cs, sess, cmd)
    reply(sock, r)
    if after then after() end
  end
  local entry = sess.entry
  if entry and cs.peers.proxies[entry.ns][sock] then
    cs.peers.proxies[entry.ns][sock] = nil
    local k = cs.peers.known[entry.ns] and cs.peers.known[entry.ns][entry.id]
    if k then
      k.online = false
      k.seen = cs.now and cs.now() or nil
      save_known(cs) -- when it was last seen survives a restart
    end
    log.info("proxy %s (%s) of %s left: %s", entry.listen, sock.peer, entry.ns, tostring(why))
  end
  sock:close()
  if entry and cs.on_proxy_leave then cs.on_proxy_leave(entry) end
  if entry and cs.cluster then cluster.changed(cs, entry.ns) end
end

--------------------------------------------------------------------------------
-- Slave commands: slave_commands[NAME] = { arity, run(cs, sess, cmd) }
-- sess = { sock, registered } for one connection.
--------------------------------------------------------------------------------

local slave_commands = {}
M.slave_commands = slave_commands

slave_commands.PING = proxy_commands.PING

-- SYNC slave_addr -> {"snapshot", json...}; the slave then gets every push
slave_commands.SYNC = { arity = -1 }
function slave_commands.SYNC.run(cs, sess, cmd)
  if not cs.is_master then return resp.error("ERR this config server is a slave") end
  local snap = { "snapshot", n = 1 }
  for _, ns in ipairs(store.list(cs.store)) do
    snap.n = snap.n + 1
    snap[snap.n] = btable.encode(store.get(cs.store, ns))
  end
  if not sess.registered then
    sess.registered = true
    cs.peers.slaves[sess.sock] = { peer = sess.sock.peer, addr = cmd[2] }
    log.info("slave config server %s (%s) synced: %d namespaces", tostring(cmd[2]),
      sess.sock.peer, snap.n - 1)
  end
  return snap
end

-- One command of a slave connection. -> reply
function M.slave_command(cs, sess, cmd)
  local c, name = dispatch.find(slave_commands, cmd)
  if not c then return resp.error("ERR unknown control command '" .. name .. "'") end
  return c.run(cs, sess, cmd)
end

function M.serve_slave(cs, sock)
  local reader = resp.new_reader()
  if not M.authenticate(cs, sock, reader, "cs-sync port") then
    sock:close(true)
    return
  end
  local sess = { sock = sock, registered = false }
  local why
  while true do
    local cmd, err = read_command(sock, reader)
    if not cmd then why = err break end
    reply(sock, M.slave_command(cs, sess, cmd))
  end
  if sess.registered then
    cs.peers.slaves[sock] = nil
    log.info("slave config server %s left: %s", sock.peer, tostring(why))
  end
  sock:close()
end

-- A table changed: every proxy of its namespace and every slave gets it.
function M.publish(cs, t)
  local json = btable.encode(t)
  for sock in pairs(cs.peers.proxies[t.namespace] or {}) do push(sock, "table", json) end
  for sock in pairs(cs.peers.slaves) do push(sock, "table", json) end
end

-- The learned replicas of every address of t, as the replicas push carries.
function M.replicas_json(cs, t)
  local map = {}
  local learned = cs.ha and cs.ha.replicas or {}
  for _, a in ipairs(btable.addresses(t)) do
    local l = setmetatable({}, btable.array_mt)
    for i, r in ipairs(learned[a] or {}) do l[i] = r end
    map[a] = l
  end
  return codes.encode_json(map)
end

-- The learned replicas of master changed (kvcs.failover): every proxy of
-- each namespace using it gets that namespace's replicas again.
function M.replicas_changed(cs, master)
  for _, ns in ipairs(store.list(cs.store)) do
    local t = store.get(cs.store, ns)
    local uses = false
    for _, a in ipairs(btable.addresses(t)) do uses = uses or a == master end
    if uses and next(cs.peers.proxies[ns] or {}) then
      local json = M.replicas_json(cs, t)
      for sock in pairs(cs.peers.proxies[ns]) do push(sock, "replicas", ns, json) end
    end
  end
end

-- A config server on etcd that lost its lease (cut off from etcd) lets its
-- proxies go, so they move to a config server that sees etcd (and their
-- stale_table_limit counts if none does); it takes none until it is back.
function M.drop_proxies(cs, why)
  local n = 0
  for _, list in pairs(cs.peers.proxies) do
    for sock in pairs(list) do
      sock:close()
      n = n + 1
    end
  end
  if n > 0 then log.warn("%d proxies let go: %s", n, why) end
end

function M.publish_delete(cs, ns)
  for sock in pairs(cs.peers.proxies[ns] or {}) do push(sock, "del_namespace", ns) end
  for sock in pairs(cs.peers.slaves) do push(sock, "del_namespace", ns) end
end

function M.heartbeat(cs)
  for _, list in pairs(cs.peers.proxies) do
    for sock in pairs(list) do push(sock, "ping") end
  end
  for sock in pairs(cs.peers.slaves) do push(sock, "ping") end
end

return M
