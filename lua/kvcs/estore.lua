-- kvcs.estore: the namespaces' tables in etcd (kvcs.conf store = "etcd",
-- issue 14), behind kvcs.store's functions: a kvcs.store whose st.remote is
-- this module reads from its cache and writes through here.
--
-- Layout: <prefix>/<ns>/table holds kv.btable's encoded table. The cache
-- (st.tables) holds every table with the etcd revision it was read at
-- (st.revs[ns]); a watch of <prefix>/ keeps it current on every kvcs.
--
-- Every write is one etcd transaction that compares
--   - the revision the table was read at (MOD == revs[ns], or CREATE == 0
--     for a new namespace): no lost update between two config servers, and
--     a change must be made from the newest table (version + 1);
--   - the leader fence (st.fence(): CREATE(<prefix>/_leader) == the
--     revision this kvcs became leader at): a deposed leader cannot write.
-- A refused write re-reads the key (the cache gets what is really there)
-- and says why; st.on_fenced() runs when the fence failed.
--
--   new(st, etcd, prefix, fence)     make st (a kvcs.store) remote
--   load_all(st)  -> true | nil, err  (every table under the prefix)
--   put(st, t)    -> true | nil, err
--   delete(st, ns)-> true | nil, err
--   watch(st)     -> watcher | nil, err: calls st.on_change(ns, t | nil) for
--                    every table another writer changed (not for its own)
--   key_of(st, ns), ns_of(st, key)
local btable = require "kv.btable"
local names = require "kv.names"

local M = {}

local DELETING = {} -- st.pending's mark of a delete in flight

function M.new(st, etcd, prefix, fence)
  st.remote = M
  st.etcd = etcd
  st.prefix = prefix
  st.fence = fence
  st.revs = {}
  st.pending = {} -- ns -> the value being written (its watch event is our own)
  return st
end

function M.key_of(st, ns)
  return ("%s/%s/table"):format(st.prefix, ns)
end

-- The namespace of a table key, or nil for any other key.
function M.ns_of(st, key)
  local p = st.prefix .. "/"
  if key:sub(1, #p) ~= p then return nil end
  local ns = key:sub(#p + 1):match("^([^/]+)/table$")
  return ns and names.valid_namespace(ns) and ns or nil
end

-- kv from etcd into the cache: t, or nil, err (a bad value is not cached).
local function take(st, ns, kv)
  local t, err = btable.decode(kv.value, ns)
  if not t then return nil, ("table %s in etcd: %s"):format(M.key_of(st, ns), err) end
  st.tables[ns] = t
  st.revs[ns] = tonumber(kv.mod_revision)
  return t
end

function M.load_all(st)
  local kvs, header = st.etcd:range(st.prefix .. "/")
  if not kvs then return nil, "etcd: " .. tostring(header) end
  local tables, revs = {}, {}
  st.tables, st.revs = tables, revs
  for _, kv in ipairs(kvs) do
    local ns = M.ns_of(st, kv.key)
    if ns then
      local _, err = take(st, ns, kv)
      if err then return nil, err end
    end
  end
  st.rev = tonumber(header.revision)
  return true
end

-- After a refused or unknown write: what etcd holds now goes into the
-- cache. -> the table now there (nil: none), or nil, err
local function reread(st, ns)
  local kv, header = st.etcd:get(M.key_of(st, ns))
  if kv == nil and type(header) ~= "table" then return nil, "etcd: " .. tostring(header) end
  if kv == nil then
    st.tables[ns], st.revs[ns] = nil, nil
    return false
  end
  return take(st, ns, kv)
end

-- The compares of a write of ns: nil, err when it cannot be made.
local function compares(st, ns, want_version)
  local fence = st.fence and st.fence()
  if st.fence and not fence then return nil, "this config server is not the leader" end
  local cur = st.tables[ns]
  local c = {}
  if want_version then
    if cur == nil then
      c[1] = { key = M.key_of(st, ns), target = "CREATE", result = "EQUAL", value = 0 }
    elseif want_version ~= cur.version + 1 then
      return nil, ("table %s is at v%d: a change made from v%d is refused (retry)"):format(ns, cur.version,
        want_version - 1)
    end
  end
  if cur ~= nil then
    c[#c + 1] = { key = M.key_of(st, ns), target = "MOD", result = "EQUAL", value = st.revs[ns] }
  end
  c[#c + 1] = fence
  return c
end

-- One fenced, compared transaction; ok(header) keeps the cache. -> true | nil, err
local function write(st, ns, ops, cmp, ok)
  local leader_key = st.prefix .. "/_leader"
  local done, responses, header = st.etcd:txn({
    compare = cmp, success = ops, failure = { { range = { key = leader_key } } },
  })
  if done == true then
    ok(header)
    return true
  end
  if done == nil then -- unknown outcome: what is there says
    local now, rerr = reread(st, ns)
    local state = now and ("v" .. now.version) or now == false and "absent"
      or ("unknown (" .. tostring(rerr) .. ")")
    return nil, ("etcd: %s; table %s is now %s"):format(tostring(responses), ns, state)
  end
  local fenced = false
  if st.fence then
    local r = responses and responses[1]
    local kv = r and r.kvs and r.kvs[1]
    local f = st.fence()
    fenced = f == nil or kv == nil or tonumber(kv.create_revision) ~= tonumber(f.value)
  end
  reread(st, ns)
  if fenced then
    if st.on_fenced then st.on_fenced() end
    return nil, "this config server is no longer the leader: the change was not written"
  end
  return nil, ("table %s was changed meanwhile by another config server: the change was not written "
    .. "(retry)"):format(ns)
end

function M.put(st, t)
  local ns = t.namespace
  local cmp, err = compares(st, ns, t.version)
  if not cmp then return nil, err end
  local text = btable.encode(t)
  st.pending[ns] = text
  local ok, err = write(st, ns, { { put = { key = M.key_of(st, ns), value = text } } }, cmp, function(header)
    st.tables[ns] = t
    st.revs[ns] = tonumber(header.revision)
  end)
  st.pending[ns] = nil
  return ok, err
end

function M.delete(st, ns)
  if not st.tables[ns] then return true end
  local cmp, err = compares(st, ns, nil)
  if not cmp then return nil, err end
  st.pending[ns] = DELETING
  local ok, werr = write(st, ns, { { delete = { key = M.key_of(st, ns) } } }, cmp, function()
    st.tables[ns], st.revs[ns] = nil, nil
  end)
  st.pending[ns] = nil
  return ok, werr
end

-- A watch event into the cache; on_change for what this kvcs did not write.
local function apply_event(st, ev)
  local ns = M.ns_of(st, ev.kv.key)
  if not ns then
    if st.on_other then st.on_other(ev) end -- proxies, members' reports (kvcs.cluster)
    return
  end
  local rev = tonumber(ev.kv.mod_revision)
  if ev.type == "DELETE" then
    if st.tables[ns] == nil then return end
    st.tables[ns], st.revs[ns] = nil, nil
    if st.on_change and st.pending[ns] ~= DELETING then st.on_change(ns, nil) end
    return
  end
  if st.revs[ns] and rev <= st.revs[ns] then return end -- already in (its own write)
  if st.pending[ns] == ev.kv.value then -- its own write, seen before the reply
    st.revs[ns] = rev
    return
  end
  local t, err = take(st, ns, ev.kv)
  if not t then
    if st.log then st.log("%s", err) end
    return
  end
  if st.on_change then st.on_change(ns, t) end
end

function M.watch(st)
  return st.etcd:watch(st.prefix .. "/", (st.rev or 0) + 1, function(events, header, compact_rev)
    if events == nil then
      -- compacted: what changed meanwhile is gone from the history; read all
      local before = st.tables
      local ok, err = M.load_all(st)
      if not ok then
        if st.log then st.log("re-reading the tables after a compaction: %s", err) end
        return
      end
      for ns, t in pairs(st.tables) do
        if before[ns] ~= t and st.on_change then st.on_change(ns, t) end
      end
      for ns in pairs(before) do
        if st.tables[ns] == nil and st.on_change then st.on_change(ns, nil) end
      end
      return st.rev + 1 -- on from the read
    end
    for _, ev in ipairs(events) do apply_event(st, ev) end
    if header and header.revision then st.rev = tonumber(header.revision) end
  end)
end

return M
