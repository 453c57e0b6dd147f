-- fake_etcd: an in-memory stand-in for kv.etcd's client, for specs of the
-- config server's logic only (the integration tests run real etcd members).
-- Revisions, create/mod revisions, leases and watches behave as etcd's:
-- every change bumps the store revision; a lease's expiry deletes its keys;
-- watchers get the events synchronously, in order.
--   f = fake.new(); f:expire(lease_id); f.down = true (every call fails)
--   f.fail_next_txn = "why" (unknown outcome of the next txn)
local M = {}
M.__index = M

function M.new()
  return setmetatable({ rev = 1, kvs = {}, leases = {}, next_lease = 100, watchers = {} }, M)
end

local function copy(kv)
  local c = {}
  for k, v in pairs(kv) do c[k] = v end
  return c
end

local function header(f) return { revision = tostring(f.rev) } end

local function notify(f, ev)
  for _, w in ipairs(f.watchers) do
    if not w.cancelled and ev.kv.key:sub(1, #w.prefix) == w.prefix then w.fn({ ev }, header(f)) end
  end
end

local function do_put(f, key, value, lease)
  f.rev = f.rev + 1
  local old = f.kvs[key]
  local kv = {
    key = key, value = value, mod_revision = tostring(f.rev),
    create_revision = old and old.create_revision or tostring(f.rev),
    version = tostring(old and (tonumber(old.version) + 1) or 1), lease = lease or "0",
  }
  f.kvs[key] = kv
  notify(f, { type = "PUT", kv = copy(kv) })
end

local function do_delete(f, key)
  if not f.kvs[key] then return 0 end
  f.rev = f.rev + 1
  local kv = f.kvs[key]
  f.kvs[key] = nil
  notify(f, { type = "DELETE", kv = { key = key, mod_revision = tostring(f.rev) } })
  return 1
end

function M:get(key)
  if self.down then return nil, nil, "etcd down" end
  local kv = self.kvs[key]
  return kv and copy(kv) or nil, header(self)
end

function M:range(prefix)
  if self.down then return nil, "etcd down" end
  local out = {}
  for k, kv in pairs(self.kvs) do
    if k:sub(1, #prefix) == prefix then out[#out + 1] = copy(kv) end
  end
  table.sort(out, function(a, b) return a.key < b.key end)
  return out, header(self)
end

function M:put(key, value, lease)
  if self.down then return nil, "etcd down" end
  do_put(self, key, value, lease)
  return header(self)
end

function M:delete(key)
  if self.down then return nil, "etcd down" end
  return do_delete(self, key), header(self)
end

local function holds(f, c)
  local kv = f.kvs[c.key]
  local v
  if c.target == "CREATE" then v = kv and tonumber(kv.create_revision) or 0
  elseif c.target == "MOD" then v = kv and tonumber(kv.mod_revision) or 0
  elseif c.target == "VERSION" then v = kv and tonumber(kv.version) or 0
  elseif c.target == "VALUE" then v = kv and kv.value
  elseif c.target == "LEASE" then v = kv and kv.lease or "0" end
  local want = c.value
  if c.target ~= "VALUE" and c.target ~= "LEASE" then want = tonumber(want) end
  if c.result == "EQUAL" then return v == want end
  if c.result == "NOT_EQUAL" then return v ~= want end
  if c.result == "GREATER" then return v > want end
  return v < want
end

function M:txn(req)
  if self.down then return nil, "etcd down" end
  if self.fail_next_txn then
    local why = self.fail_next_txn
    self.fail_next_txn = nil
    return nil, "unknown outcome: " .. why
  end
  local ok = true
  for _, c in ipairs(req.compare or {}) do ok = ok and holds(self, c) end
  local responses = {}
  for _, op in ipairs(ok and (req.success or {}) or (req.failure or {})) do
    if op.put then
      do_put(self, op.put.key, op.put.value, op.put.lease)
      responses[#responses + 1] = {}
    elseif op.delete then
      responses[#responses + 1] = { deleted = do_delete(self, op.delete.key) }
    elseif op.range then
      local kv = self.kvs[op.range.key]
      responses[#responses + 1] = { kvs = kv and { copy(kv) } or {} }
    end
  end
  return ok, responses, header(self)
end

function M:grant(ttl)
  if self.down then return nil, "etcd down" end
  self.next_lease = self.next_lease + 1
  local id = tostring(self.next_lease)
  self.leases[id] = ttl
  return id, ttl
end

function M:keepalive(id)
  if self.down then return nil, "etcd down" end
  return self.leases[id] or 0
end

function M:revoke(id)
  self:expire(id)
  return true
end

-- The lease ends: its keys are deleted (as etcd does when the TTL passes).
function M:expire(id)
  self.leases[id] = nil
  local gone = {}
  for k, kv in pairs(self.kvs) do
    if kv.lease == id then gone[#gone + 1] = k end
  end
  table.sort(gone)
  for _, k in ipairs(gone) do do_delete(self, k) end
end

function M:watch(prefix, _, fn)
  local w = { prefix = prefix, fn = fn }
  function w.cancel() w.cancelled = true end
  self.watchers[#self.watchers + 1] = w
  return w
end

return M
