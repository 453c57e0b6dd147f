-- kvp.cslink: the proxy's link to the config server (DESIGN §3).
--
-- The proxy registers for its namespace, installs the table in the reply,
-- then installs every pushed table whose version is greater than the one it
-- holds (a stale config server can never roll it back). Heartbeats go both
-- ways: the proxy sends PING every second, the config server pushes a ping
-- every second; 5 s of silence closes the link. While no config server is
-- reachable the data path keeps its last table; the link retries in the
-- background, the master first, then the slave.
--
-- While attached to the slave, the master is probed every PROBE seconds and
-- the link moves back to it as soon as it answers.
--
-- With kvp.conf's config_servers (state.cluster; issue 14: kvcs sharing one
-- store, any number of them) every server is equal: the link starts at one
-- drawn from the proxy id (M.first, so a fleet of proxies spreads over
-- them), stays on whichever registered it, and when that one goes tries the
-- next in turn (M.next_server); no server is probed or preferred. Contact
-- with any of them counts for stale_table_limit, and "no such namespace" is
-- final only once every server that answered in a round of tries said so.
--
-- Wire (RESP): first the handshake (kv.handshake: the server's challenge,
-- AUTH over cluster_secret), then proxy -> cs commands, answered in order
--   REGISTER <ns> <listen_addr> <proxy_id>  -> bulk: table JSON | -ERR ...
--   (proxy_id: random per process, "host/listen/<random>")
--   UNREGISTER <ns> -> +OK   (a clean stop, M.unregister)
--   PING -> +PONG      ACK <ns> <version> -> +OK
--   PATTERN ADD|DEL <ns> <pattern> -> +OK | -ERR <code> <message>
-- cs -> proxy pushes: arrays whose first element is "push":
--   push table <json> | push ping | push del_namespace <ns>
--   push replicas <ns> <json>: {"<master>": ["<replica>", ...], ...}, the
--     replicas the config server learned for each master of the table
--     (M.replicas -> state.on_replicas(ns, map))
local loop = require "kv.loop"
local resp = require "kv.resp"
local redis = require "kv.redis"
local btable = require "kv.btable"
local dptable = require "kvp.dptable"
local lineage = require "kvp.lineage"
local log = require "kv.log"
local handshake = require "kv.handshake"
local cjson = require "cjson"

local M = {}

local HEARTBEAT = 1
local DEAD_AFTER = 5
local PROBE = 2
local REQUEST_TIMEOUT = 5

-- A table from the config server (REGISTER reply or push): decoded and
-- checked, then given to the data path as one spec (kvp.dptable.spec ->
-- state.install(spec), dp.set_table), only when its version is greater than
-- the one held. Once installed it is state.table, the workers' drained
-- reports start again (the ack is for this version) and state.on_table(t)
-- runs. -> true when installed; false (logged) for a bad table, one not
-- newer, or one the data path refused (the held table stays).
function M.apply(state, json)
  local t, err = btable.decode(json, state.namespace)
  if not t then
    lineage.refuse(("config server sent a bad table for %s: %s"):format(state.namespace, err), err)
    return false
  end
  -- fenced (M.fence): the held version again is taken too, to route again
  if state.table and (t.version < state.table.version
      or (t.version == state.table.version and not state.fenced)) then
    log.debug("ignoring table v%d of %s: holding v%d", t.version, state.namespace, state.table.version)
    return false
  end
  local same, why = lineage.check(state.table, t) -- not another cluster's history
  if not same then lineage.refuse(why, t.lineage or "") return false end
  local spec, perr = dptable.spec(t)
  if not spec then
    log.error("cannot install table v%d: %s", t.version, perr)
    return false
  end
  local ok, serr = state.install(spec)
  if not ok then
    log.error("cannot install table v%d: %s", t.version, serr)
    return false
  end
  local from = state.table and ("v" .. state.table.version) or "none"
  local old_policy = state.table and state.table.policy
  if state.on_policy and (not state.table or (old_policy and old_policy.version) ~= (t.policy and t.policy.version)) then
    state.on_policy(t.policy) -- nil: the namespace has none, the local file routes
  end
  if state.fenced then
    state.fenced = false
    log.info("routing again: table v%d from the config server", t.version)
  end
  state.table = t
  state.drained = {} -- acks start again for this version
  log.info("table of %s: v%d installed (was %s): %d buckets on %s%s", state.namespace, t.version,
    from, t.bucket_count, table.concat(spec.servers, ", "),
    #t.patterns > 0 and ("; key-rewrite patterns " .. table.concat(t.patterns, " ")) or "")
  if state.on_table then state.on_table(t) end
  return true
end

-- A well-formed replicas map: every key and every element an ip:port.
local function replicas_map(v)
  if type(v) ~= "table" then return nil end
  local map = {}
  for master, reps in pairs(v) do
    if type(master) ~= "string" or not master:match("^[^:]+:%d+$") or type(reps) ~= "table" then
      return nil
    end
    local list = {}
    for i = 1, #reps do
      if type(reps[i]) ~= "string" or not reps[i]:match("^[^:]+:%d+$") then return nil end
      list[i] = reps[i]
    end
    if next(reps) ~= nil and #list == 0 then return nil end -- an object, not a list
    map[master] = list
  end
  return map
end

-- push replicas <ns> <json> -> state.on_replicas(ns, map) (if set). A bad
-- one is logged once (until a good one comes) and changes nothing.
-- -> true | false
function M.replicas(state, ns, json)
  if ns ~= state.namespace then return false end
  local ok, v = pcall(cjson.decode, json)
  local map = ok and replicas_map(v)
  if not map then
    if not state.bad_replicas then
      log.warn("config server sent a bad replicas map for %s (ignored): %s", tostring(ns),
        tostring(json):sub(1, 200))
      state.bad_replicas = true
    end
    return false
  end
  state.bad_replicas = nil
  if state.on_replicas then state.on_replicas(ns, map) end
  return true
end

local function is_push(v)
  return type(v) == "table" and v.n and v.n >= 2 and v[1] == "push"
end

-- Does contact with the config server addr count for stale_table_limit?
-- With a master/slave pair only the master's: it alone waits for acks, and
-- a table reaches a proxy on the slave later than the master moves on.
-- config_servers are equal (one shared store): each one's counts.
function M.counts(state, addr)
  return state.cluster == true or addr == state.servers[1]
end

-- One session with one config server; returns the reason it ended.
-- -> reason, outcome: "registered" (the session was up, then ended),
-- "to_master" (left the slave for the master), "unknown_ns" (registration
-- refused: no such namespace), "refused" (another refusal, a failed
-- handshake), "unreachable" (no connection)
local function session(state, addr)
  local host, port = loop.split_addr(addr)
  local sock, err = loop.connect(host, port, 3)
  if not sock then return err, "unreachable" end
  state.sock = sock
  local reader = resp.new_reader()
  local function next_value()
    return redis.read_value(sock, reader, DEAD_AFTER)
  end
  local hok, herr = handshake.client({ send = function(b) sock:send(b) end, read = next_value },
    state.cluster_secret)
  if not hok then
    sock:close()
    state.sock = nil
    return "handshake: " .. tostring(herr), "refused"
  end
  -- every command sent gets a slot; a reply fills the oldest one
  local waiting = {}
  state.waiting = waiting
  local function send(waiter, ...)
    -- encoded first: a command that cannot be encoded raises before it
    -- takes a reply slot (else every later reply would go to the wrong waiter)
    local bytes = resp.encode(...)
    waiting[#waiting + 1] = waiter or false
    return sock:send(bytes)
  end
  state.send = send
  send(false, "REGISTER", state.namespace, state.listen, state.proxy_id)
  local registered = false
  local counts = M.counts(state, addr)
  local alive = true
  local switch_to_master = false
  local outcome = "refused"
  loop.spawn(function()
    while alive do
      loop.sleep(HEARTBEAT)
      if alive and registered then send(false, "PING") end
    end
  end)
  if not state.cluster and addr ~= state.servers[1] then
    -- on the slave: go back to the master as soon as it answers
    loop.spawn(function()
      local mhost, mport = loop.split_addr(state.servers[1])
      while alive do
        loop.sleep(PROBE)
        if not alive then break end
        local probe = loop.connect(mhost, mport, 1)
        if probe then
          probe:close()
          if alive then
            switch_to_master = true
            log.info("master config server %s answers again: leaving the slave %s", state.servers[1], addr)
            sock:close()
          end
          break
        end
      end
    end)
  end
  local reason
  while true do
    local v, rerr = next_value()
    if v ~= nil and registered and counts then state.last_contact = loop.now() end
    if v == nil then
      reason = rerr == "timeout" and ("no heartbeat for " .. DEAD_AFTER .. " s") or rerr
      if switch_to_master then reason = "switching to the master" end
      break
    end
    if is_push(v) then
      local kind = v[2]
      if kind == "table" then
        M.apply(state, v[3])
      elseif kind == "del_namespace" and v[3] == state.namespace then
        state.on_deleted()
      elseif kind == "replicas" then
        M.replicas(state, v[3], v[4])
      end
    elseif not registered then
      table.remove(waiting, 1)
      if type(v) ~= "string" then
        local msg = type(v) == "table" and v.err or tostring(v)
        reason = "registration refused: " .. tostring(msg)
        local unknown = msg and msg:find("no such namespace", 1, true)
        if unknown then outcome = "unknown_ns" end
        -- only the master's word is final: a slave may not be synced yet
        -- (config_servers: M.next_server decides, over a round of them)
        if unknown and not state.cluster and addr == state.servers[1] then
          state.on_unknown_namespace(msg)
        end
        break
      end
      registered = true
      outcome = "registered"
      if counts then state.last_contact = loop.now() end
      state.connected_to = addr
      log.info("registered with config server %s as %s", addr, state.listen)
      if not M.apply(state, v) and state.acked and state.table and state.acked == state.table.version then
        M.ack(state, state.acked) -- same table as before: already drained
      end
      -- a new config server connection: tell it what this proxy sees down
      if state.health then
        for _, a in ipairs(require("kvp.health").down_list(state.health)) do
          send(false, "DOWN", state.namespace, a)
        end
      end
    else
      local waiter = table.remove(waiting, 1)
      if waiter then waiter(v) end
    end
  end
  alive = false
  sock:close()
  state.sock = nil
  state.send = nil
  state.connected_to = nil
  for _, w in ipairs(waiting) do
    if w then w(nil, "config server link lost") end
  end
  return reason, switch_to_master and "to_master" or outcome
end

-- state: { namespace, listen, proxy_id, cluster_secret, stale_table_limit,
--          servers = {master, slave?} | the config_servers list,
--          cluster (true: servers are config_servers), workers,
--          install(spec) -> ok, err   (dp.set_table; spec from kvp.dptable),
--          on_deleted(), on_unknown_namespace(msg), on_table(t)?, health?,
--          on_replicas(ns, map)? }
-- The link sets state.table, .acked, .connected_to, .last_contact,
-- .fenced, and .send while a session is up. Whoever replaces state.servers
-- (set_config) sets state.servers_changed and closes state.sock: the link
-- starts over on the new list.
-- The fence: the held table with every bucket blocked, so no command is
-- forwarded to any master (each waits, then gets "request timeout") until
-- a config server gives a table again (M.apply takes the same version
-- then). For a proxy that may hold an outdated table: cut off from every
-- config server for stale_table_limit seconds, or stopping. -> true | false
function M.fence(state, why)
  if not state.table or state.fenced then return false end
  local spec = assert(dptable.spec(state.table)) -- it was installed: its policy compiles
  spec.migrating = {}
  for b = 1, state.table.bucket_count do spec.blocked[b] = true end
  local ok, err = state.install(spec)
  if not ok then
    log.error("cannot stop routing (%s): %s", why, tostring(err))
    return false
  end
  state.fenced = true
  log.warn("routing stopped: %s; every command waits, then times out, until a config server "
    .. "gives a table again", why)
  return true
end

-- With stale_table_limit > 0: fence once the master config server has not
-- been heard for that many seconds (a session on the slave does not count;
-- with config_servers, any of them counts) (README "Scaling without losing a
-- write": a config server forgets such a proxy only later).
function M.check_lease(state, now)
  local limit = state.stale_table_limit or 0
  if limit <= 0 or state.fenced or not state.table then return false end
  local last = state.last_contact or state.started or now
  if now - last < limit then return false end
  return M.fence(state, ("no %sconfig server heard for %d s (stale_table_limit %d)"):format(
    state.cluster and "" or "master ", math.floor(now - last), limit))
end

-- The index in state.servers of the first server to try: the master of a
-- pair; of config_servers, one drawn from the random end of the proxy id
-- (hex), so that proxies starting together spread over the servers.
function M.first(state)
  local n = #state.servers
  if not state.cluster or n < 2 then return 1 end
  local hex = tostring(state.proxy_id or ""):match("(%x+)$") or ""
  local r = tonumber(hex:sub(-7), 16) or math.random(0, 2 ^ 28)
  return r % n + 1
end

-- After a session with state.servers[i] ended with outcome (see session):
-- -> the index to try next, the seconds to wait first, and true when the
-- namespace is unknown for good (config_servers: every server that answered
-- in the last round of tries refused it so; the pair: the master's word,
-- acted on in session). Keeps its round in state.round.
function M.next_server(state, i, outcome)
  local n = #state.servers
  if state.servers_changed then
    state.servers_changed, state.round = nil, nil
    return M.first(state), 0, false
  end
  if not state.cluster then
    if outcome == "to_master" then return 1, 0, false end
    if n > 1 then i = i % n + 1 end
    return i, i == 1 and 1 or 0.2, false
  end
  -- config_servers: the next in turn; a round is n sessions without a registration
  local r = state.round or { tries = 0, unknown = 0, other = 0 }
  state.round = r
  if outcome == "registered" then
    r.tries, r.unknown, r.other = 0, 0, 0
    return i % n + 1, 0.2, false
  end
  r.tries = r.tries + 1
  if outcome == "unknown_ns" then r.unknown = r.unknown + 1
  elseif outcome ~= "unreachable" then r.other = r.other + 1 end
  if r.tries < n then return i % n + 1, 0.2, false end
  local unknown = r.unknown > 0 and r.other == 0
  r.tries, r.unknown, r.other = 0, 0, 0
  return i % n + 1, 1, unknown -- none would take it: a pause before the next round
end

function M.start(state)
  state.started = loop.now()
  loop.every(1, function() M.check_lease(state, loop.now()) end)
  loop.spawn(function()
    local i, failures = M.first(state), 0
    while true do
      if state.servers_changed or not state.servers[i] then -- set_config, while no session was up
        state.servers_changed, state.round = nil, nil
        i = M.first(state)
      end
      local addr = state.servers[i]
      local reason, outcome = session(state, addr)
      if outcome == "to_master" then
        failures = 0
      elseif state.cluster and outcome == "registered" then
        failures = 0
        log.warn("config server %s: %s; moving on to the next one", addr, tostring(reason))
      else
        failures = failures + 1
        if failures == 1 or failures % 30 == 0 then
          log.warn("config server %s: %s; %s", addr, tostring(reason),
            state.table and ("serving with table v" .. state.table.version) or "no table yet")
        end
      end
      local delay, unknown
      i, delay, unknown = M.next_server(state, i, outcome)
      if unknown then
        state.on_unknown_namespace(("every config server that answered (of %s) says: no such namespace '%s'")
          :format(table.concat(state.servers, ", "), state.namespace))
      end
      if delay > 0 then loop.sleep(delay) end
    end
  end)
end

-- A worker reports that nothing routed with a table older than version is
-- in flight; when every worker has, the proxy acks that version (DESIGN §4).
function M.drained(state, worker, version)
  state.drained = state.drained or {}
  state.drained[worker] = version
  if not state.table or version ~= state.table.version then return end
  for w = 0, state.workers - 1 do
    if state.drained[w] ~= version then return end
  end
  state.acked = version
  M.ack(state, version)
end

function M.ack(state, version)
  if state.send then state.send(false, "ACK", state.namespace, string.format("%d", version)) end
end

-- A clean stop (from a task): tell the config server this proxy leaves,
-- so bucket moves stop waiting for it; waits at most timeout seconds.
-- -> true | nil, err
function M.unregister(state, timeout)
  local r, err = M.request_within(state, timeout, "UNREGISTER", state.namespace)
  if type(r) == "table" and r.status == "OK" then return true end
  return nil, err or tostring(type(r) == "table" and r.err or r)
end

-- Send a command and wait for its reply (from a task). -> reply | nil, err
function M.request(state, ...)
  return M.request_within(state, REQUEST_TIMEOUT, ...)
end

function M.request_within(state, limit, ...)
  if not state.send then return nil, "no config server reachable" end
  local co = coroutine.running()
  local done = false
  local timer
  state.send(function(v, err)
    if done then return end
    done = true
    loop.cancel(timer)
    loop.timer(0, function() coroutine.resume(co, v, err) end)
  end, ...)
  timer = loop.timer(limit, function()
    if done then return end
    done = true
    coroutine.resume(co, nil, "config server did not answer in " .. limit .. " s")
  end)
  return coroutine.yield()
end

return M
