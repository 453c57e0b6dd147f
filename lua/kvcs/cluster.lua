-- kvcs.cluster: what one config server knows of its proxies, shared with
-- the others through etcd (store = "etcd", issue 14), so the leader sees
-- every proxy whichever config server it is attached to.
--
-- Keys (P = etcd_prefix):
--   P/<ns>/proxies/<id>     a known proxy {listen, seen}: persistent, so a
--                           proxy that is away still holds bucket moves back
--                           (kvcs.peers' known list, namespace-wide)
--   P/<ns>/ha/state         the HA state of ns's masters the leader learned
--                           (kvcs.failover: replicas, old masters watched),
--                           written by the leader (fenced), taken over by the next
--   P/<ns>/members/<name>   what member <name> sees of ns now, under its
--                           lease (gone with it: transient):
--                           {proxies = {<id> = {listen, acked}},
--                            votes = {<master addr> = {<id>, ...}}}
-- A member rewrites its report when a proxy registers, acks, votes or
-- leaves (once per DEBOUNCE: one write per burst of acks). The leader
-- merges every report: connected proxies, the highest ack of each, and the
-- down votes of connected proxies only (HA votes stay transient).
--
--   new(cs, opts)               opts = {etcd, prefix, member, lease = fn, spawn, sleep, log}
--   load(cs)                    -> true | nil, err: known proxies and reports
--   changed(cs, ns)             this member's view of ns changed: report it
--   report_of(cs, ns)           -> this member's report (from kvcs.peers and
--                                  kvcs.failover state)
--   on_event(cs, ev)            a watch event of a key under P/
--   known(cs, ns)               -> {id = {listen, seen}}
--   connected(cs, ns)           -> {id = listen}   (every member)
--   acked(cs, ns, id)           -> the highest version any member saw acked
--   votes(cs, ns)               -> {addr = {id = true}} of connected proxies
--   register(cs, ns, id, listen), forget(cs, ns, id)   the persistent list
local cjson = require "cjson"

local M = {}

M.DEBOUNCE = 0.005

function M.new(cs, o)
  cs.cluster = {
    etcd = o.etcd, prefix = o.prefix, member = o.member, lease = o.lease, spawn = o.spawn,
    sleep = o.sleep, log = o.log, fence = o.fence, known = {}, reports = {}, pending = {}, ha = {},
  }
  return cs.cluster
end

local function split(c, key)
  local p = c.prefix .. "/"
  if key:sub(1, #p) ~= p then return nil end
  return key:sub(#p + 1):match("^([^/]+)/([^/]+)/(.+)$")
end

local function decode(v)
  local ok, t = pcall(cjson.decode, v or "")
  return ok and type(t) == "table" and t or nil
end

-- One key into the caches (value nil: deleted).
local function take(c, key, value)
  local ns, kind, rest = split(c, key)
  if not ns then return nil end
  if kind == "proxies" then
    c.known[ns] = c.known[ns] or {}
    c.known[ns][rest] = value and decode(value) or nil
  elseif kind == "members" then
    c.reports[ns] = c.reports[ns] or {}
    c.reports[ns][rest] = value and decode(value) or nil
  elseif kind == "ha" and rest == "state" then
    c.ha[ns] = value and decode(value) or nil
  else
    return nil
  end
  return ns, kind
end

function M.load(cs)
  local c = cs.cluster
  local kvs, err = c.etcd:range(c.prefix .. "/")
  if not kvs then return nil, err end
  c.known, c.reports, c.ha = {}, {}, {}
  for _, kv in ipairs(kvs) do take(c, kv.key, kv.value) end
  return true
end

function M.on_event(cs, ev)
  local c = cs.cluster
  return take(c, ev.kv.key, ev.type ~= "DELETE" and ev.kv.value or nil)
end

function M.report_of(cs, ns)
  local proxies, votes = {}, {}
  for _, e in pairs(cs.peers.proxies[ns] or {}) do
    if not e.unregistered then proxies[e.id] = { listen = e.listen, acked = e.acked or 0 } end
  end
  for addr, voters in pairs(cs.ha and cs.ha.votes[ns] or {}) do
    local ids = setmetatable({}, { __jsontype = "array" })
    for id in pairs(voters) do ids[#ids + 1] = id end
    table.sort(ids)
    if #ids > 0 then votes[addr] = ids end
  end
  return { proxies = proxies, votes = votes }
end

local function report_key(c, ns) return ("%s/%s/members/%s"):format(c.prefix, ns, c.member) end

-- The write of this member's report of ns (a task).
function M.write(cs, ns)
  local c = cs.cluster
  local r = M.report_of(cs, ns)
  local lease = c.lease()
  if not lease then return nil, "no lease" end
  local ok, err
  if next(r.proxies) == nil and next(r.votes) == nil then
    ok, err = c.etcd:delete(report_key(c, ns))
  else
    ok, err = c.etcd:put(report_key(c, ns), require("kv.codes").encode_json(r), lease)
  end
  if not ok then c.log("cannot report the proxies of %s to etcd: %s", ns, tostring(err)) end
  return ok, err
end

function M.changed(cs, ns)
  local c = cs.cluster
  if not c or c.pending[ns] then return end
  c.pending[ns] = true
  c.spawn(function()
    c.sleep(M.DEBOUNCE)
    c.pending[ns] = nil
    M.write(cs, ns)
  end)
end

function M.known(cs, ns) return cs.cluster.known[ns] or {} end

-- Every member's reports but this one's, which is read from memory (its
-- own report in etcd may lag behind by a write).
local function each_report(cs, ns, fn)
  local c = cs.cluster
  for member, r in pairs(c.reports[ns] or {}) do
    if member ~= c.member then fn(r) end
  end
  fn(M.report_of(cs, ns))
end

function M.connected(cs, ns)
  local out = {}
  each_report(cs, ns, function(r)
    for id, p in pairs(r.proxies or {}) do out[id] = p.listen or true end
  end)
  return out
end

function M.acked(cs, ns, id)
  local best = 0
  each_report(cs, ns, function(r)
    local p = r.proxies and r.proxies[id]
    if p and (tonumber(p.acked) or 0) > best then best = tonumber(p.acked) end
  end)
  return best
end

function M.votes(cs, ns)
  local out = {}
  each_report(cs, ns, function(r)
    for addr, ids in pairs(r.votes or {}) do
      if type(ids) == "table" then
        out[addr] = out[addr] or {}
        for _, id in ipairs(ids) do out[addr][id] = true end
      end
    end
  end)
  return out
end

-- The leader forgets a known proxy no config server has seen connected for
-- `after` seconds (proxy_forget_after; 0: never), counted from when this
-- config server first saw it away (a new leader starts counting anew:
-- later, never sooner). -> the forgotten {id = listen}
function M.forget_stale(cs, after, now)
  local c = cs.cluster
  c.away = c.away or {}
  local gone = {}
  if after <= 0 then return gone end
  for ns, list in pairs(c.known) do
    local connected = M.connected(cs, ns)
    c.away[ns] = c.away[ns] or {}
    for id, k in pairs(list) do
      if connected[id] then
        c.away[ns][id] = nil
      else
        c.away[ns][id] = c.away[ns][id] or now
        if now - c.away[ns][id] >= after then
          gone[id] = k.listen
          c.away[ns][id] = nil
          M.forget(cs, ns, id)
          c.log("proxy %s (id %s) of %s has not been connected to any config server for %d s "
            .. "(proxy_forget_after): forgotten; bucket moves no longer wait for its acks", tostring(k.listen),
            id, ns, after)
        end
      end
    end
  end
  return gone
end

-- The HA state (kvcs.failover's {replicas = {[m] = {...}}, watch = {[old]
-- = {namespace, new}}, promoted = {[replica] = old master}}) split by namespace (a master's: the namespace whose
-- table names it) and written by the leader, fenced. -> true | nil, err
function M.save_ha(cs, state, namespace_of)
  local c = cs.cluster
  local fence = c.fence and c.fence()
  if not fence then return nil, "not the leader" end
  local per = {}
  local function of(ns)
    per[ns] = per[ns] or { replicas = {}, watch = {}, promoted = {} }
    return per[ns]
  end
  for m, list in pairs(state.replicas or {}) do
    local ns = namespace_of(m)
    if ns then of(ns).replicas[m] = list end
  end
  for old, w in pairs(state.watch or {}) do of(w.namespace).watch[old] = w end
  for new, old in pairs(state.promoted or {}) do -- a replica being promoted: its master's
    local ns = namespace_of(old)
    if ns then of(ns).promoted[new] = old end
  end
  local codes = require "kv.codes"
  for ns, s in pairs(per) do
    local text = codes.encode_json(s)
    if not c.ha[ns] or codes.encode_json(c.ha[ns]) ~= text then
      local ok, err = c.etcd:txn({ compare = { fence },
        success = { { put = { key = ("%s/%s/ha/state"):format(c.prefix, ns), value = text } } } })
      if ok ~= true then return nil, ok == false and "no longer the leader" or tostring(err) end
      c.ha[ns] = decode(text)
    end
  end
  return true
end

-- Every namespace's HA state as one (for kvcs.failover.load by a new leader).
function M.ha_state(cs)
  local out = { replicas = {}, watch = {}, promoted = {} }
  for _, s in pairs(cs.cluster.ha) do
    for m, list in pairs(type(s.replicas) == "table" and s.replicas or {}) do out.replicas[m] = list end
    for old, w in pairs(type(s.watch) == "table" and s.watch or {}) do out.watch[old] = w end
    for new, old in pairs(type(s.promoted) == "table" and s.promoted or {}) do out.promoted[new] = old end
  end
  return out
end

function M.register(cs, ns, id, listen, seen)
  local c = cs.cluster
  local cur = (c.known[ns] or {})[id]
  if cur and cur.listen == listen then return true end
  local v = { listen = listen, seen = seen }
  c.known[ns] = c.known[ns] or {}
  c.known[ns][id] = v
  local ok, err = c.etcd:put(("%s/%s/proxies/%s"):format(c.prefix, ns, id), cjson.encode(v))
  if not ok then c.log("cannot record proxy %s of %s in etcd: %s", id, ns, tostring(err)) end
  return ok, err
end

function M.forget(cs, ns, id)
  local c = cs.cluster
  if c.known[ns] then c.known[ns][id] = nil end
  local ok, err = c.etcd:delete(("%s/%s/proxies/%s"):format(c.prefix, ns, id))
  if not ok then c.log("cannot forget proxy %s of %s in etcd: %s", id, ns, tostring(err)) end
  return ok, err
end

return M
