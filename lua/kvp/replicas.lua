-- kvp.replicas: how stale each replica of the namespace's masters is, so the
-- data path can send replica reads (issue 13, policy rule replica_reads with
-- max_replica_lag_ms) only to replicas close enough to their master.
--
-- The config server pushes which replicas each master has (kvp.cslink,
-- `push replicas`); watch() keeps one connection per server (master or
-- replica, opened by kvp.health.ask, AUTH with redis_password) and one task
-- per server reading INFO replication: a master every INTERVAL, a replica
-- right after each sample of its master (at most 1.5 INTERVAL apart when the
-- master does not answer). No task ever blocks the control loop. Staleness
-- is measured by replication offsets, not by Redis's whole-second `lag=`:
--   * each master poll sent at time t that reads master_repl_offset M adds
--     the sample (t, M) to that master's history (the master held at least
--     M bytes of its stream at t; a sample with the offset of the one before
--     only moves that one's time forward, so an idle master uses one entry;
--     at most HISTORY entries; a new master_replid or an offset going back
--     starts a new history);
--   * a replica that has processed R (slave_repl_offset) >= M(t_i) holds
--     everything the master had at t_i, so at time now it is at most
--     now - (newest t_i with M(t_i) <= R) behind. Its last R stays a true
--     bound while it does not answer (offsets only grow), so the bound keeps
--     growing until TIMEOUT declares it down.
-- Resolution: one INTERVAL. A replica that is fully caught up reads the
-- time since its master's last sample, about two round trips (0..3 ms on
-- one host), at most one INTERVAL; a lagging one reads its lag rounded up
-- to the next sample, never under-estimated. Lags longer than the kept
-- history (HISTORY samples: 10 s under steady writes) read as down.
-- A replica is down (lag -1: never read from it) when it gave no INFO
-- within TIMEOUT, is not a replica, replicates another address than the
-- push says (compared as the host:port strings), has its link down
-- (master_link_status:down), holds another replication history than its
-- master (master_replid differs: a full resync pending), or has an offset
-- below every kept sample. After each replica poll (and every INTERVAL / 2
-- for one whose poll is overdue) its lag goes to C with
-- dp.set_replica_lag(addr, lag_ms), and the map with dp.set_replicas(map)
-- when it changes (both only when the data path has them). Each change
-- usable <-> unusable is logged once, never per poll.
--
--   r = replicas.new{dp = dp, password = fn() -> redis_password}
--   replicas.watch(r, map)    map = {["master ip:port"] = {"replica ip:port", ...}}
--   replicas.lags(r) -> { {replica =, master =, lag_ms =}, ... } (/metrics)
-- Pure parts (busted, tests/lua/kvp_replicas_spec.lua):
--   replicas.parse_info(text) -> {field = value}
--   replicas.sample(m, t, offset, replid)     m = {hist = {}, replid = nil}
--   replicas.staleness(m, now, R) -> seconds | nil (below every sample)
--   replicas.judge(m, rep, now) -> lag_ms | -1, why
--   replicas.plan(r, map) -> new addresses, changed   (watch without tasks)
--   replicas.evaluate(r, now [, older])               (one tick)
-- kv.loop and kvp.health need the C runtime: loaded by watch().
local loop, log, health

local M = {}

M.INTERVAL = 0.1   -- s between two INFO of one server (the resolution)
M.TIMEOUT = 1      -- s without an answer before a replica is down
M.HISTORY = 100    -- kept master samples (distinct offsets)

-- "why" while nothing has been measured yet: not logged as a change
local NOT_YET = "not measured yet"

function M.parse_info(text)
  local f = {}
  for k, v in text:gmatch("([%w_]+):([^\r\n]*)") do f[k] = v end
  return f
end

function M.sample(m, t, offset, replid)
  local h = m.hist
  local last = h[#h]
  if replid ~= m.replid or (last and offset < last.off) then
    -- another stream: its offsets cannot be compared with the old ones
    h = {}
    m.hist, m.replid, last = h, replid, nil
  end
  if last and last.off == offset then
    last.t = t -- the newest time the master was at this offset is what counts
    return
  end
  h[#h + 1] = { t = t, off = offset }
  if #h > M.HISTORY then table.remove(h, 1) end
end

function M.staleness(m, now, R)
  local h = m.hist
  for i = #h, 1, -1 do
    if h[i].off <= R then return math.max(0, now - h[i].t) end
  end
  return nil
end

-- rep = {master = addr from the push, info = parsed INFO | nil, at = time
-- of that answer, err = why the last poll failed | nil}; m = its master's
-- record (hist, replid) or nil.
function M.judge(m, rep, now)
  local info = rep.info
  if not info then return -1, rep.err or NOT_YET end
  if now - rep.at > M.TIMEOUT then
    return -1, ("no answer for %.1f s"):format(now - rep.at)
  end
  if info.role ~= "slave" then return -1, "not a replica (role " .. tostring(info.role) .. ")" end
  local of = tostring(info.master_host) .. ":" .. tostring(info.master_port)
  if of ~= rep.master then return -1, "replicates " .. of .. ", not " .. rep.master end
  if info.master_link_status ~= "up" then return -1, "its link to the master is down" end
  if not m or #m.hist == 0 then return -1, NOT_YET end
  if info.master_replid ~= m.replid then
    return -1, "another replication history than its master (resync pending)"
  end
  local R = tonumber(info.slave_repl_offset)
  local s = R and M.staleness(m, now, R)
  if not s then return -1, "further behind than the kept history" end
  return math.floor(s * 1000 + 0.5)
end

function M.new(opts)
  return { opts = opts, servers = {}, map = {}, map_key = "" }
end

-- A canonical text of a map, to see whether a push changes anything.
local function map_key(map)
  local masters = {}
  for master, reps in pairs(map) do
    local list = {}
    for i, a in ipairs(reps) do list[i] = a end
    table.sort(list)
    masters[#masters + 1] = master .. "=" .. table.concat(list, ",")
  end
  table.sort(masters)
  return table.concat(masters, ";")
end

-- Match r.servers to map: a record per address that is a master with
-- replicas (is_master, hist) and/or a replica (master); records no longer
-- wanted are stopped (their connection closed). -> addresses that need a
-- new poll task, whether the map changed
function M.plan(r, map)
  local want = {}
  for master, reps in pairs(map) do
    for _, a in ipairs(reps) do
      want[master] = want[master] or {}
      want[master].is_master = true
      want[a] = want[a] or {}
      want[a].master = master
    end
  end
  for addr, s in pairs(r.servers) do
    if not want[addr] then
      s.stopped = true
      if s.conn then s.conn:close() s.conn = nil end
      r.servers[addr] = nil
    end
  end
  local new = {}
  for addr, w in pairs(want) do
    local s = r.servers[addr]
    if not s then
      s = { addr = addr, hist = {} }
      r.servers[addr] = s
      new[#new + 1] = addr
    end
    s.is_master = w.is_master
    if not w.is_master then s.hist, s.replid = {}, nil end
    s.master = w.master
  end
  table.sort(new)
  local key = map_key(map)
  local changed = key ~= r.map_key
  r.map, r.map_key = map, key
  return new, changed
end

-- One replica's lag at now to the data path; a change logged.
local function update(r, s, now)
  local lag, why = M.judge(r.servers[s.master], s, now)
  s.lag, s.judged = lag, now
  local dp = r.opts.dp
  if dp.set_replica_lag then dp.set_replica_lag(s.addr, lag) end
  local usable = lag >= 0
  if usable ~= s.usable and not (why == NOT_YET and s.usable == nil) then
    s.usable = usable
    if usable then
      log.info("replica %s of %s usable for replica reads (lag %d ms)", s.addr, s.master, lag)
    else
      log.warn("replica %s of %s unusable for replica reads: %s", s.addr, s.master, why)
    end
  end
end

-- Every replica judged at now, or only those not judged for `older` s (the
-- ticker, every INTERVAL / 2: a replica whose poll is overdue still gets a
-- growing bound, then -1, at most 2 INTERVALs after its last answer).
function M.evaluate(r, now, older)
  log = log or require "kv.log"
  for _, s in pairs(r.servers) do
    if s.master and not (older and s.judged and now - s.judged < older) then update(r, s, now) end
  end
end

local function is_info(v) return type(v) == "string" end

-- A replica's task waits for its master's next sample (wake()) so that it
-- reads its offset right after: a caught-up replica then reads about a
-- round trip, not up to an INTERVAL. At most `limit` s (a master that does
-- not answer does not stop the replica's polls).
local function wait_master(s, limit)
  local w = { co = coroutine.running() }
  w.timer = loop.timer(limit, function()
    if s.waiting ~= w then return end
    s.waiting = nil
    local ok, err = coroutine.resume(w.co)
    if not ok then log.error("replica poll failed: %s", debug.traceback(w.co, tostring(err))) end
  end)
  s.waiting = w
  coroutine.yield()
end

local function wake(r, master)
  for _, s in pairs(r.servers) do
    local w = s.waiting
    if s.master == master and w then
      s.waiting = nil
      loop.cancel(w.timer)
      local ok, err = coroutine.resume(w.co)
      if not ok then log.error("replica poll failed: %s", debug.traceback(w.co, tostring(err))) end
    end
  end
end

-- One server's task: INFO replication on one connection, every INTERVAL
-- (a master), after each sample of its master (a replica), every 0.5 s
-- while it fails.
local function poll(r, s)
  while not s.stopped do
    local t = loop.now()
    local text, why = health.ask(s, s.addr, r.opts.password(), M.TIMEOUT, is_info,
      "INFO", "replication")
    if s.stopped then break end
    local now = loop.now()
    if text then
      local info = M.parse_info(text)
      if s.is_master and tonumber(info.master_repl_offset) then
        -- t: the master held at least this offset when the poll was sent
        M.sample(s, t, tonumber(info.master_repl_offset), info.master_replid)
      end
      s.info, s.at, s.err = info, now, nil
    else
      s.info, s.err = nil, "INFO replication: " .. tostring(why)
    end
    if s.master then update(r, s, now) end
    if s.is_master and text then wake(r, s.addr) end
    if not text then
      loop.sleep(math.max(M.INTERVAL, 0.5))
    elseif s.master then
      wait_master(s, M.INTERVAL * 1.5)
    else
      loop.sleep(math.max(0.01, M.INTERVAL - (loop.now() - t)))
    end
  end
  if s.conn then s.conn:close() s.conn = nil end
end

function M.watch(r, map)
  if not loop then
    loop, log, health = require "kv.loop", require "kv.log", require "kvp.health"
  end
  local new, changed = M.plan(r, map)
  for _, addr in ipairs(new) do loop.spawn(poll, r, r.servers[addr]) end
  if changed then
    log.info("replicas of the masters: %s", r.map_key == "" and "none" or r.map_key)
    if r.opts.dp.set_replicas then r.opts.dp.set_replicas(map) end
  end
  if not r.ticking then
    r.ticking = true
    loop.spawn(function()
      while true do
        loop.sleep(M.INTERVAL / 2)
        M.evaluate(r, loop.now(), M.INTERVAL * 1.5)
      end
    end)
  end
end

function M.lags(r)
  local out = {}
  for addr, s in pairs(r.servers) do
    if s.master then out[#out + 1] = { replica = addr, master = s.master, lag_ms = s.lag or -1 } end
  end
  table.sort(out, function(a, b) return a.replica < b.replica end)
  return out
end

return M
