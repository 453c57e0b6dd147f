-- kvcs.failover: the I/O around the HA decisions of kvcs.ha (SPEC §6,
-- DESIGN §6). Runs on the master config server only.
--
--   votes    Proxies say DOWN <ns> <addr> / UP <ns> <addr> on their control
--            link (kvcs.peers). votes[ns][addr][proxy_id] = the session
--            (socket) that said DOWN; UP, a disconnect or a new registration
--            of the same proxy id takes the vote back. Every DOWN (proxies
--            repeat it every ~3 s) and every disconnect evaluates the
--            namespace again.
--   replicas Learned here, never taken from a report: INFO replication on
--            every master of every table each update_slave_interval seconds
--            and after every table change (data_store only: a cache cluster
--            has no replicas to promote). A master that does not answer
--            keeps the list it had (that is when the list is needed).
--            A change is announced through cs.on_replicas(master) (the
--            proxies get them: kvcs.peers.replicas_changed).
--   evaluate One task per namespace at a time (a vote arriving meanwhile
--            asks for one more round), so a fail-over happens once, not once
--            per vote. data_store: each known replica of a master every
--            proxy reports down is asked INFO replication; kvcs.ha.decide
--            picks one; REPLICAOF NO ONE on it, role:master checked, then
--            replace_server, persist, publish (proxies and slave CSs). The
--            other replicas are pointed at the new master. cache:
--            scale_down, persist, publish. Votes for the old address are
--            cleared after acting.
--   watch    watch[old] = {namespace, new}: each second the old master is
--            tried; once it answers it gets REPLICAOF <new> (following a
--            chain of fail-overs), as Sentinel does.
--
-- Learned replicas, watches and promotions under way survive a restart
-- (cs.save_ha, loaded by M.load; with etcd: the next leader), so a config
-- server restarted while a master is down can still promote its replica
-- and re-attach the old master later, and a replica that got REPLICAOF NO
-- ONE from a leader that died before writing the table is still put in it.
local loop = require "kv.loop"
local redis = require "kv.redis"
local btable = require "kv.btable"
local names = require "kv.names"
local log = require "kv.log"
local store = require "kvcs.store"
local ha = require "kvcs.ha"

local M = {}

M.TIMEOUT = 2        -- seconds for each Redis connect / reply
M.WATCH_EVERY = 1    -- seconds between tries of a watched old master

function M.new()
  return {
    votes = {},      -- [ns][addr][proxy_id] = sock
    replicas = {},   -- [master] = { replica addr, ... } (sorted)
    watch = {},      -- [old] = { namespace = ns, new = addr }
    promoted = {},   -- [replica] = old master: REPLICAOF NO ONE is (being) sent to it in
                     -- place of that master (persisted first: a retry, or the next
                     -- leader when this one died before writing the table, takes it on)
    running = {},    -- [ns] = true while an evaluation runs
    again = {},      -- [ns] = true: evaluate once more when it ends
    learning = {},   -- [addr] = true while INFO runs on it
    watching = {},   -- [old] = true while a watch try runs
    said = {},       -- ["ns addr"] = last note logged (no repeats every 3 s)
    down_at = {},    -- ["ns addr"] = loop.now() of the first down vote still held
    failovers = 0, removals = 0, reattached = 0,
    saving = false,  -- a save of the HA state is under way (save: one at a time)
  }
end

--------------------------------------------------------------------------------
-- State file
--------------------------------------------------------------------------------

-- One save at a time, each of the state as it is when it starts: two tasks
-- saving at once (two masters learned together) could otherwise land in
-- the wrong order, the older state last (with etcd: for good, as nothing
-- saves again until something changes).
local function save(cs)
  if not cs.save_ha then return true end
  local h = cs.ha
  while h.saving do loop.sleep(0.005) end
  h.saving = true
  local reps = {}
  for m, list in pairs(h.replicas) do
    reps[m] = setmetatable({ unpack(list) }, btable.array_mt)
  end
  local done, ok, err = pcall(cs.save_ha, { replicas = reps, watch = h.watch, promoted = h.promoted })
  h.saving = false
  if not done then ok, err = nil, ok end
  if not ok then log.error("cannot save the HA state: %s", tostring(err)) end
  return ok, err
end

-- Load what save wrote ({replicas = {[m] = {...}}, watch = {[old] = {namespace, new}},
-- promoted = {[replica] = old master}}).
function M.load(cs, state)
  if type(state) ~= "table" then return end
  for m, list in pairs(type(state.replicas) == "table" and state.replicas or {}) do
    if names.valid_addr(m) and type(list) == "table" then
      local l = {}
      for _, a in ipairs(list) do
        if names.valid_addr(a) then l[#l + 1] = a end
      end
      table.sort(l)
      cs.ha.replicas[m] = l
    end
  end
  for old, w in pairs(type(state.watch) == "table" and state.watch or {}) do
    if names.valid_addr(old) and type(w) == "table" and names.valid_addr(w.new) and type(w.namespace) == "string" then
      cs.ha.watch[old] = { namespace = w.namespace, new = w.new }
    end
  end
  for new, old in pairs(type(state.promoted) == "table" and state.promoted or {}) do
    if names.valid_addr(new) and names.valid_addr(old) then cs.ha.promoted[new] = old end
  end
end

--------------------------------------------------------------------------------
-- Redis
--------------------------------------------------------------------------------

local function is_ok(r)
  return type(r) == "table" and r.status == "OK"
end

local function reply_text(r, err)
  if r == nil then return tostring(err) end
  if type(r) == "table" and r.err then return r.err end
  if type(r) == "table" and r.status then return r.status end
  return tostring(r)
end

-- Connect and AUTH (a server without a password accepts the connection too).
local function open(cs, addr, timeout)
  local host, port = loop.split_addr(addr)
  if not host then return nil, port end
  local c, err = redis.connect(host, port, { timeout = timeout or M.TIMEOUT })
  if not c then return nil, err end
  local pw = cs.cfg.redis_password
  if pw and pw ~= "" then
    local r, e = c:call("AUTH", pw)
    if r == nil then c:close() return nil, e end
    if type(r) == "table" and r.err and not r.err:find("without any password configured", 1, true) then
      c:close()
      return nil, "AUTH refused: " .. r.err
    end
  end
  return c
end

local function info_of(c)
  local r, err = c:call("INFO", "replication")
  if r == nil then return nil, err end
  if type(r) ~= "string" then return nil, "INFO replication: " .. reply_text(r) end
  return ha.parse_info(r)
end

-- -> parsed INFO replication of addr | nil, err
local function query(cs, addr, timeout)
  local c, err = open(cs, addr, timeout)
  if not c then return nil, err end
  local info, ierr = info_of(c)
  c:close()
  return info, ierr
end

local function same_list(a, b)
  if not a or not b or #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

--------------------------------------------------------------------------------
-- Learning replicas
--------------------------------------------------------------------------------

-- INFO replication on one master; remembers its replicas.
function M.learn(cs, master)
  local h = cs.ha
  if h.learning[master] then return end
  h.learning[master] = true
  local info, err = query(cs, master)
  h.learning[master] = nil
  if not info then
    log.debug("HA: %s does not answer INFO replication (%s); keeping its known replicas", master, tostring(err))
    return
  end
  local key = "learn " .. master
  if info.role ~= "master" then
    local text = ("%s is in a table but is a %s (of %s:%s)"):format(master, tostring(info.role),
      tostring(info.master_host), tostring(info.master_port))
    if h.said[key] ~= text then
      h.said[key] = text
      log.warn("HA: %s", text)
    end
    return
  end
  h.said[key] = nil
  local list = {}
  for _, s in ipairs(info.slaves) do list[#list + 1] = s.addr end
  table.sort(list)
  local known = h.replicas[master]
  if #list == 0 and known and #known > 0 then
    -- a replica that is reconnecting is not listed; forget nothing for that
    return
  end
  if not same_list(list, known) then
    h.replicas[master] = list
    log.info("HA: replicas of %s: %s", master, #list > 0 and table.concat(list, ", ") or "none")
    save(cs)
    if cs.on_replicas then cs.on_replicas(master) end -- proxies read from replicas (issue 13)
  end
end

-- Every address any table uses -> its namespace.
local function in_use(cs)
  local u = {}
  for _, ns in ipairs(store.list(cs.store)) do
    for _, a in ipairs(btable.addresses(store.get(cs.store, ns))) do u[a] = ns end
  end
  return u
end

-- One task per master (a black-holed one does not hold up the others).
function M.learn_all(cs)
  if not cs.is_master or cs.cfg.cluster_type == "cache" then return end
  local used = in_use(cs)
  local pruned = false
  for m in pairs(cs.ha.replicas) do
    if not used[m] then
      cs.ha.replicas[m] = nil
      pruned = true
    end
  end
  -- a promotion mark whose replica is in a table now: done (the leader
  -- that made it died after its table write landed, before clearing it)
  for new in pairs(cs.ha.promoted) do
    if used[new] then
      cs.ha.promoted[new] = nil
      pruned = true
    end
  end
  if pruned then loop.spawn(save, cs) end -- (a timer's callback: save may wait, in a task)
  for a in pairs(used) do loop.spawn(M.learn, cs, a) end
end

function M.table_changed(cs, t)
  if not cs.is_master or not cs.ha or cs.cfg.cluster_type == "cache" then return end
  for _, a in ipairs(btable.addresses(t)) do loop.spawn(M.learn, cs, a) end
end

--------------------------------------------------------------------------------
-- Votes
--------------------------------------------------------------------------------

-- With etcd (cs.cluster): the proxies connected to any config server, and
-- their votes, whichever config server heard them.
local function connected(cs, ns)
  if cs.cluster then
    local set = {}
    for id in pairs(require("kvcs.cluster").connected(cs, ns)) do set[id] = true end
    return set
  end
  local set = {}
  for _, p in pairs(cs.peers.proxies[ns] or {}) do set[p.id] = true end
  return set
end

local function vote_sets(cs, ns)
  if cs.cluster then
    local out = {}
    for addr, ids in pairs(require("kvcs.cluster").votes(cs, ns)) do
      if next(ids) then out[addr] = ids end
    end
    return out
  end
  local out = {}
  for addr, voters in pairs(cs.ha.votes[ns] or {}) do
    if next(voters) then
      local s = {}
      for id in pairs(voters) do s[id] = true end
      out[addr] = s
    end
  end
  return out
end

local function clear_votes(cs, ns, addr)
  if cs.ha.votes[ns] then cs.ha.votes[ns][addr] = nil end
  cs.ha.said[ns .. " " .. addr] = nil
  cs.ha.down_at[ns .. " " .. addr] = nil
end

-- DOWN/UP from a registered proxy (entry of kvcs.peers). -> true | nil, err
function M.report(cs, entry, kind, ns, addr)
  if ns ~= entry.ns then
    return nil, ("this proxy registered for '%s', not '%s'"):format(tostring(entry.ns), tostring(ns))
  end
  if not names.valid_addr(addr) then return nil, ("invalid address '%s'"):format(tostring(addr)) end
  if not cs.is_master and not cs.cluster then
    log.debug("proxy %s reports %s %s of %s: ignored, this config server is a slave", entry.listen, addr, kind, ns)
    return true
  end
  local h = cs.ha
  h.votes[ns] = h.votes[ns] or {}
  if kind == "DOWN" then
    local t = store.get(cs.store, ns)
    local present = false
    for _, a in ipairs(t and btable.addresses(t) or {}) do present = present or a == addr end
    if not present then
      log.debug("proxy %s reports %s of %s down: not in the table, ignored", entry.listen, addr, ns)
      return true
    end
    local v = h.votes[ns][addr] or {}
    h.votes[ns][addr] = v
    h.down_at[ns .. " " .. addr] = h.down_at[ns .. " " .. addr] or loop.now()
    if v[entry.id] ~= entry.sock then
      v[entry.id] = entry.sock
      local _, nv, np = ha.tally(v, connected(cs, ns))
      log.info("HA: proxy %s reports %s of %s down (%d of %d connected proxies)", entry.listen, addr, ns, nv, np)
    end
    M.evaluate(cs, ns)
  else
    local v = h.votes[ns][addr]
    if v and v[entry.id] then
      v[entry.id] = nil
      log.info("HA: proxy %s reports %s of %s up again: its down vote is withdrawn", entry.listen, addr, ns)
      if not next(v) then clear_votes(cs, ns, addr) end
    end
  end
  if cs.cluster then require("kvcs.cluster").changed(cs, ns) end -- the leader tallies every member's
  return true
end

-- A proxy (re)registered: votes of an earlier session of the same id go.
function M.proxy_joined(cs, entry)
  local h = cs.ha
  for addr, v in pairs(h.votes[entry.ns] or {}) do
    if v[entry.id] and v[entry.id] ~= entry.sock then
      v[entry.id] = nil
      log.info("HA: proxy %s registered again: its old down vote for %s is dropped", entry.listen, addr)
      if not next(v) then clear_votes(cs, entry.ns, addr) end
    end
  end
end

-- A proxy's session ended: its votes go, and the rest may now agree.
function M.proxy_left(cs, entry)
  local h = cs.ha
  local dropped = false
  for addr, v in pairs(h.votes[entry.ns] or {}) do
    if v[entry.id] == entry.sock then
      v[entry.id] = nil
      dropped = true
      log.info("HA: proxy %s disconnected: its down vote for %s is dropped", entry.listen, addr)
      if not next(v) then clear_votes(cs, entry.ns, addr) end
    end
  end
  if next(h.votes[entry.ns] or {}) or dropped then M.evaluate(cs, entry.ns) end
end

--------------------------------------------------------------------------------
-- Acting
--------------------------------------------------------------------------------

-- Ask each known replica of master directly. -> { {addr, up, role, offset, why}, ... }
local function probe_replicas(cs, master)
  local out = {}
  for _, a in ipairs(cs.ha.replicas[master] or {}) do
    local info, err = query(cs, a)
    local r = { addr = a, up = false }
    if not info then
      r.why = tostring(err)
    elseif info.role == "slave" then
      local of = tostring(info.master_host) .. ":" .. tostring(info.master_port)
      if of == master then
        -- link_down_s: nil while the link is up (Redis prints it only while down)
        r.up, r.role, r.offset, r.link_down_s = true, "slave", info.offset or 0, info.link_down_s
      else
        r.why = "it is a replica of " .. of .. " now"
      end
    elseif info.role == "master" and cs.ha.promoted[a] == master then
      r.up, r.role, r.offset = true, "master", info.offset or 0 -- promoted by an earlier try
    else
      r.why = "it is a " .. tostring(info.role) .. " now"
    end
    out[#out + 1] = r
  end
  return out
end

local function publish(cs, nt)
  local ok, err = store.put(cs.store, nt)
  if not ok then return nil, err end
  cs.publish(nt)
  return true
end

local function present_in(t, addr)
  for _, a in ipairs(btable.addresses(t)) do
    if a == addr then return true end
  end
  return false
end

-- REPLICAOF host port on addr (an open connection c), then CONFIG REWRITE
-- (fails harmlessly for a server started without a config file).
local function replicaof(c, target)
  local host, port = loop.split_addr(target)
  local r, err
  if host then
    r, err = c:call("REPLICAOF", host, tostring(port))
  else
    r, err = c:call("REPLICAOF", "NO", "ONE")
  end
  if not is_ok(r) then return nil, reply_text(r, err) end
  local w = c:call("CONFIG", "REWRITE")
  if not is_ok(w) then log.debug("HA: CONFIG REWRITE on %s: %s", c.addr, reply_text(w)) end
  return true
end

local function promote(cs, ns, a)
  local h = cs.ha
  -- the mark first, persisted (with etcd: fenced, so a deposed leader
  -- promotes nothing): a leader that dies between REPLICAOF NO ONE and the
  -- table write leaves the next one a replica turned master it may take on
  if h.promoted[a.new] ~= a.old then
    h.promoted[a.new] = a.old
    local sok, serr = save(cs)
    if not sok then
      h.promoted[a.new] = nil
      log.error("HA %s: not promoting %s in place of %s: the HA state could not be saved (%s)", ns, a.new,
        a.old, tostring(serr))
      return
    end
  end
  local c, err = open(cs, a.new)
  if not c then
    log.error("HA %s: cannot reach replica %s to promote it in place of %s: %s", ns, a.new, a.old, err)
    return
  end
  local before = info_of(c)
  if not (before and before.role == "master") then -- a master already: an earlier try's (marked)
    local ok, perr = replicaof(c, nil)
    if not ok then
      c:close()
      log.error("HA %s: REPLICAOF NO ONE on %s failed: %s; %s stays in the table", ns, a.new, perr, a.old)
      return
    end
  end
  local info, ierr = info_of(c)
  c:close()
  if not info or info.role ~= "master" then
    log.error("HA %s: %s did not become a master after REPLICAOF NO ONE (%s); %s stays in the table",
      ns, a.new, info and ("role:" .. tostring(info.role)) or tostring(ierr), a.old)
    return
  end
  -- the table as it is now (it may have changed during the I/O)
  local t = store.get(cs.store, ns)
  if not t or not present_in(t, a.old) then
    log.error("HA %s: %s left the table while %s was promoted; %s is a master outside any table now",
      ns, a.old, a.new, a.new)
    return
  end
  local user = store.owner_of(cs.store, a.new)
  if user then
    log.error("HA %s: %s is used by namespace %s now; not put in place of %s", ns, a.new, user, a.old)
    return
  end
  local nt, rerr = btable.replace_server(t, a.old, a.new)
  if not nt then
    log.error("HA %s: cannot replace %s by %s: %s", ns, a.old, a.new, rerr)
    return
  end
  local pok, serr = publish(cs, nt)
  if not pok then
    log.error("HA %s: %s is promoted but the table could not be saved: %s (retried on the next report)",
      ns, a.new, tostring(serr))
    return
  end
  h.promoted[a.new] = nil
  h.failovers = h.failovers + 1
  clear_votes(cs, ns, a.old)
  log.warn("HA %s: fail-over: %s replaced by its replica %s (REPLICAOF NO ONE, role:master checked), "
    .. "table v%d: %s", ns, a.old, a.new, nt.version, a.why)
  -- what the old master's other replicas and the old master itself become
  local others = {}
  for _, r in ipairs(h.replicas[a.old] or {}) do
    if r ~= a.new then others[#others + 1] = r end
  end
  h.replicas[a.new] = others
  h.replicas[a.old] = nil
  h.watch[a.old] = { namespace = ns, new = a.new }
  save(cs)
  for _, r in ipairs(others) do
    local rc, rcerr = open(cs, r)
    local rok, rerr2 = nil, rcerr
    if rc then
      rok, rerr2 = replicaof(rc, a.new)
      rc:close()
    end
    if rok then
      log.warn("HA %s: replica %s of %s now replicates from %s", ns, r, a.old, a.new)
    else
      log.warn("HA %s: could not point replica %s of %s at %s: %s", ns, r, a.old, a.new, tostring(rerr2))
    end
  end
  log.info("HA %s: %s will be made a replica of %s once it answers again", ns, a.old, a.new)
  loop.spawn(M.learn, cs, a.new)
end

local function remove(cs, ns, a)
  local h = cs.ha
  local t = store.get(cs.store, ns)
  if not t or not btable.counts(t)[a.addr] then return end
  local nt, err = btable.scale_down(t, a.addr)
  if not nt then
    log.error("HA %s: cannot remove %s from the table: %s", ns, a.addr, err)
    return
  end
  local moved = #btable.moves(t, nt)
  local ok, serr = publish(cs, nt)
  if not ok then
    log.error("HA %s: cannot save the table without %s: %s", ns, a.addr, tostring(serr))
    return
  end
  h.removals = h.removals + 1
  clear_votes(cs, ns, a.addr)
  log.warn("HA %s: %s removed from the table (cache cluster), its %d buckets spread over %s, "
    .. "table v%d: %s. Their keys start empty; add it back with scale_cache_cluster once it is healthy",
    ns, a.addr, moved, table.concat(btable.servers(nt), ", "), nt.version, a.why)
end

local function run(cs, ns)
  local h = cs.ha
  if not cs.is_master then return end
  local t = store.get(cs.store, ns)
  if not t then
    h.votes[ns] = nil
    return
  end
  -- data_store: ask the replicas of each master every proxy reports down
  local replicas = {}
  if cs.support_ha and cs.cfg.cluster_type ~= "cache" then
    local proxies = connected(cs, ns)
    for addr, voters in pairs(vote_sets(cs, ns)) do
      if present_in(t, addr) and ha.tally(voters, proxies) then
        replicas[addr] = probe_replicas(cs, addr)
      end
    end
  end
  -- decide on the state as it is now: votes may have changed meanwhile
  t = store.get(cs.store, ns)
  if not t then return end
  local votes, proxies = vote_sets(cs, ns), connected(cs, ns)
  if cs.support_ha and cs.cfg.cluster_type ~= "cache" then
    for addr, voters in pairs(votes) do
      if not replicas[addr] and present_in(t, addr) and ha.tally(voters, proxies) then
        -- agreed while the others were probed: its report set h.again, and
        -- the next round probes its replicas (not "no replica is known")
        votes[addr] = nil
      end
    end
  end
  local down_for, now = {}, loop.now()
  for addr in pairs(replicas) do
    down_for[addr] = now - (h.down_at[ns .. " " .. addr] or now)
  end
  local actions, notes = ha.decide({
    votes = votes, proxies = proxies, table = t, replicas = replicas,
    down_for = down_for, stale_after = cs.cfg.replica_stale_after,
    in_use = in_use(cs), support_ha = cs.support_ha, cluster_type = cs.cfg.cluster_type,
  })
  for _, n in ipairs(notes) do
    if n.stale and n.addr then
      clear_votes(cs, ns, n.addr)
    else
      local key = ns .. " " .. tostring(n.addr)
      if h.said[key] ~= n.text then
        h.said[key] = n.text
        if n.wait then
          log.info("HA %s: %s: %s", ns, tostring(n.addr), n.text)
        else
          log.warn("HA %s: %s: %s", ns, tostring(n.addr), n.text)
        end
      end
    end
  end
  for _, a in ipairs(actions) do
    if a.kind == "promote" then promote(cs, ns, a) else remove(cs, ns, a) end
  end
end

-- Evaluate ns now, or once more after the running evaluation.
function M.evaluate(cs, ns)
  local h = cs.ha
  if h.running[ns] then
    h.again[ns] = true
    return
  end
  h.running[ns] = true
  loop.spawn(function()
    repeat
      h.again[ns] = nil
      local ok, err = xpcall(run, debug.traceback, cs, ns)
      if not ok then log.error("HA %s: evaluation failed: %s", ns, err) end
    until not h.again[ns]
    h.running[ns] = nil
  end)
end

--------------------------------------------------------------------------------
-- Old masters
--------------------------------------------------------------------------------

local function check_watch(cs, old)
  local h = cs.ha
  local w = h.watch[old]
  if not w then return end
  local user = store.owner_of(cs.store, old)
  if user then
    log.info("HA: %s is in the table of %s again; no longer re-attached automatically", old, user)
    h.watch[old] = nil
    save(cs)
    return
  end
  local map = {}
  for o, ww in pairs(h.watch) do map[o] = ww.new end
  local target = ha.follow(map, old)
  local t = store.get(cs.store, w.namespace)
  if not t or not present_in(t, target) then
    log.warn("HA: not re-attaching old master %s: its replacement %s is no longer in the table of %s",
      old, target, w.namespace)
    h.watch[old] = nil
    save(cs)
    return
  end
  local c = open(cs, old, 1)
  if not c then return end
  local info, ierr = info_of(c)
  if not info then
    c:close()
    log.debug("HA: old master %s: %s", old, tostring(ierr))
    return
  end
  local of = tostring(info.master_host) .. ":" .. tostring(info.master_port)
  if info.role == "slave" and of == target then
    c:close()
    log.info("HA %s: old master %s answers again and already replicates from %s", w.namespace, old, target)
  else
    local ok, err = replicaof(c, target)
    c:close()
    if not ok then
      log.error("HA %s: old master %s answers again but REPLICAOF %s failed: %s (retrying)",
        w.namespace, old, target, err)
      return
    end
    h.reattached = h.reattached + 1
    log.warn("HA %s: old master %s answers again (as a %s): made it a replica of %s (REPLICAOF); "
      .. "anything written to it after the fail-over is dropped by the resync", w.namespace, old,
      tostring(info.role), target)
  end
  h.watch[old] = nil
  save(cs)
  loop.spawn(M.learn, cs, target)
end

function M.check_watches(cs)
  if not cs.is_master then return end
  local h = cs.ha
  for old in pairs(h.watch) do
    if not h.watching[old] then
      h.watching[old] = true
      loop.spawn(function()
        local ok, err = xpcall(check_watch, debug.traceback, cs, old)
        h.watching[old] = nil
        if not ok then log.error("HA: watching %s failed: %s", old, err) end
      end)
    end
  end
end

-- Timers (master only): learn now and every update_slave_interval; try
-- the watched old masters every WATCH_EVERY seconds.
-- The rounds run on the master; with etcd (cs.leader) on every config
-- server, each round acting only while this one leads.
function M.start(cs)
  if not cs.is_master and not cs.leader then return end
  loop.spawn(M.learn_all, cs)
  loop.every(cs.cfg.update_slave_interval or 10, function() M.learn_all(cs) end)
  loop.every(M.WATCH_EVERY, function() M.check_watches(cs) end)
end

return M
