-- kvp.dptable: a bucket table (kv.btable) as dp.set_table takes it, one
-- table with named fields (c/proxy/lkvp.c checks every bound again):
--
--   { version = v, bucket_count = B,
--     servers   = { "ip:port", ... },   -- owners and migration destinations, sorted
--     owner     = { [b + 1] = i },      -- i: 1-based index into servers
--     migrating = { [b + 1] = i },      -- destination of a migrating bucket
--     blocked   = { [b + 1] = true },   -- commands on it wait (kvcs.buckets.block)
--     patterns  = { "aa*", ... } }      -- key-rewrite globs
--
--   spec(t) -> the table above (plain function, tested by busted)
local btable = require "kv.btable"

local M = {}

function M.spec(t)
  local servers = btable.addresses(t)
  local index = {}
  for i, a in ipairs(servers) do index[a] = i end
  local s = {
    version = t.version, bucket_count = t.bucket_count, servers = servers,
    owner = {}, migrating = {}, blocked = {}, patterns = t.patterns,
  }
  for b = 0, t.bucket_count - 1 do s.owner[b + 1] = index[t.owner[b]] end
  for b, dst in pairs(t.migrating) do s.migrating[b + 1] = index[dst] end
  for b in pairs(t.blocked or {}) do s.blocked[b + 1] = true end
  return s
end

return M
