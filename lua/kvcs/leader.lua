-- kvcs.leader: one leader among the config servers that share etcd
-- (store = "etcd", issue 14).
--
-- Each kvcs holds an etcd lease (lease_ttl seconds), renewed every third of
-- it, and announces itself under <prefix>/_members/<name> with it. The
-- leader is whoever created <prefix>/_leader (a transaction: created only
-- when absent) with its lease; its create revision is the fence every
-- leader write compares (kvcs.estore), so the writes of a deposed leader
-- cannot land. The key goes when the lease ends: a dead leader is replaced
-- within the TTL (followers look every POLL seconds).
--
-- A leader steps down -- stops acting: no fail-over decision, no migration
-- step, no change -- as soon as its lease may have ended: the deadline is
-- counted from when the last successful renewal was SENT, so it comes
-- before etcd's own expiry. A leader cut off from etcd therefore stops
-- before anyone else can lead.
--
-- States: "none" (no lease) -> "follower" (lease, not leading) ->
-- "leader"; back to "none" when the lease ended.
--
--   l = new{ etcd, prefix, ttl, me = {name=, http=, proxy=, migration=},
--            now = fn, log = {info=, warn=}, on_change = fn(is_leader),
--            on_lease = fn(lease_id): a new lease (rewrite what lived under the old),
--            on_lease_state = fn(has_lease): this config server holds a lease
--              (is in touch with etcd) or lost it }
--   acquire(l)   -> true | nil, err       a lease and the member key
--   campaign(l)  -> is_leader | nil, err  lead when nobody does
--   renew(l)     -> true | nil, err       the lease's renewal
--   check(l)     steps down when the lease may have ended
--   fence(l)     -> the compare of leader writes | nil (not leading)
--   is_leader(l), current(l) -> the leader's {name, http, proxy, migration} | nil
--   resign(l)    a clean stop: the lease is revoked (another leads at once)
--   run(l, loop) the tasks: renewal, campaign/poll, check
local cjson = require "cjson"

local M = {}

M.POLL = 0.25     -- seconds between two looks at the leader key
M.CHECK = 0.1     -- seconds between two looks at the lease deadline
M.MARGIN = 0.2    -- seconds before the computed deadline a leader stops

function M.new(o)
  return {
    etcd = o.etcd, prefix = o.prefix, ttl = o.ttl, me = o.me, now = o.now, log = o.log,
    on_change = o.on_change, on_lease = o.on_lease, on_lease_state = o.on_lease_state, state = "none", leader = nil, lr = nil, lease = nil, deadline = 0,
    elections = 0,
  }
end

local function key(l) return l.prefix .. "/_leader" end

local function set_state(l, state)
  local was = l.state == "leader"
  local had_lease = l.state ~= "none"
  l.state = state
  if had_lease ~= (state ~= "none") and l.on_lease_state then l.on_lease_state(state ~= "none") end
  if state ~= "leader" then l.lr = nil end
  local is = state == "leader"
  if was ~= is and l.on_change then l.on_change(is) end
end

function M.is_leader(l) return l.state == "leader" end
function M.current(l) return l.leader end

function M.fence(l)
  if l.state ~= "leader" then return nil end
  return { key = key(l), target = "CREATE", result = "EQUAL", value = l.lr }
end

function M.acquire(l)
  if l.old_lease then
    -- the lease given up when a renewal failed may still hold the leader
    -- key (etcd was only slow): revoked, so nobody waits for its TTL
    local ok = l.etcd:revoke(l.old_lease)
    if ok then l.old_lease = nil end
  end
  local sent = l.now()
  local id, ttl = l.etcd:grant(l.ttl)
  if not id then return nil, "lease: " .. tostring(ttl) end
  l.lease = id
  l.deadline = sent + tonumber(ttl)
  local h, err = l.etcd:put(("%s/_members/%s"):format(l.prefix, l.me.name), cjson.encode(l.me), id)
  if not h then return nil, "member key: " .. tostring(err) end
  set_state(l, "follower")
  if l.on_lease then l.on_lease(id) end -- keys under the old lease went with it
  return true
end

local function decode(kv)
  local ok, v = pcall(cjson.decode, kv.value or "")
  return ok and type(v) == "table" and v or { name = "?" }
end

function M.campaign(l)
  if l.state == "none" then return nil, "no lease" end
  if l.state == "leader" then return true end
  local ok, responses, header = l.etcd:txn({
    compare = { { key = key(l), target = "CREATE", result = "EQUAL", value = 0 } },
    success = { { put = { key = key(l), value = cjson.encode(l.me), lease = l.lease } } },
    failure = { { range = { key = key(l) } } },
  })
  if ok == nil then return nil, tostring(responses) end
  if ok then
    l.lr = tonumber(header.revision) -- the key's create revision: this transaction's
    l.leader = l.me
    l.elections = l.elections + 1
    set_state(l, "leader")
    l.log.info("leader: %s leads (lease %s, fence revision %d)", l.me.name, l.lease, l.lr)
    return true
  end
  local kv = responses[1] and responses[1].kvs and responses[1].kvs[1]
  local before = l.leader and l.leader.name
  l.leader = kv and decode(kv) or nil
  if l.leader and l.leader.name ~= before then
    l.log.info("leader: %s leads; %s follows", l.leader.name, l.me.name)
  end
  return false
end

-- The leader key still there (a follower's poll); a vanished one lets the
-- next campaign run at once.
function M.look(l)
  local kv, header = l.etcd:get(key(l))
  if kv == nil and type(header) ~= "table" then return nil end -- etcd unreachable: no news
  if kv == nil then
    if l.leader then l.log.info("leader: %s no longer leads", l.leader.name) end
    l.leader = nil
    return false
  end
  l.leader = decode(kv)
  return true
end

function M.renew(l)
  if l.state == "none" then return nil, "no lease" end
  local sent = l.now()
  local ttl, err = l.etcd:keepalive(l.lease)
  if ttl == nil then return nil, err end
  ttl = tonumber(ttl)
  if ttl <= 0 then
    l.log.warn("leader: the lease of %s ended%s", l.me.name, l.state == "leader" and ": no longer leading" or "")
    l.lease = nil
    set_state(l, "none")
    return nil, "lease ended"
  end
  l.deadline = sent + ttl
  return true
end

function M.check(l)
  if l.state == "none" then return end
  if l.now() >= l.deadline - M.MARGIN then
    l.log.warn("leader: %s could not renew its lease in time (etcd unreachable?)%s", l.me.name,
      l.state == "leader" and ": stops leading" or "")
    l.old_lease = l.lease
    l.lease = nil
    set_state(l, "none")
  end
end

function M.resign(l)
  if l.lease then l.etcd:revoke(l.lease) end
  l.lease = nil
  set_state(l, "none")
end

-- The tasks of a running kvcs.
function M.run(l, loop)
  local last_err
  local function report(what, err)
    local msg = what .. ": " .. tostring(err)
    if msg ~= last_err then l.log.warn("leader: %s", msg) end
    last_err = msg
  end
  loop.spawn(function()
    while true do
      if l.state == "none" then
        local ok, err = M.acquire(l)
        if not ok then report("cannot get a lease", err) end
      end
      if l.state == "follower" then
        if l.leader == nil or M.look(l) == false then
          local ok, err = M.campaign(l)
          if ok == nil then report("campaign", err) end
        end
      end
      loop.sleep(M.POLL)
    end
  end)
  loop.spawn(function()
    while true do
      loop.sleep(l.ttl / 3)
      if l.state ~= "none" then
        local ok, err = M.renew(l)
        if not ok and err ~= "lease ended" then report("lease renewal", err) end
      end
    end
  end)
  loop.every(M.CHECK, function() M.check(l) end)
end

return M
