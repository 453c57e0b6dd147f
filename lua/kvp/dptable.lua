-- kvp.dptable: a bucket table (kv.btable) as dp.set_table takes it, one
-- table with named fields (c/proxy/lkvp.c checks every bound again):
--
--   { version = v, bucket_count = B,
--     servers   = { "ip:port", ... },   -- owners and migration destinations, sorted
--     owner     = { [b + 1] = i },      -- i: 1-based index into servers
--     migrating = { [b + 1] = i },      -- destination of a migrating bucket
--     blocked   = { [b + 1] = true },   -- commands on it wait (kvcs.buckets.block)
--     patterns  = { "aa*", ... },       -- key-rewrite globs
--     policy    = p }                   -- the namespace's policy (t.policy),
--                                       -- compiled by kv.policy, with version;
--                                       -- nil while it has none
--
--   spec(t) -> the table above | nil, err (the policy does not compile)
--   (plain function, tested by busted; the last policy compiled is kept, so
--   the tables of a migration do not compile it again)
local btable = require "kv.btable"
local policy = require "kv.policy"

local M = {}

local last_source, last_compiled

local function compiled(pol)
  if pol.source ~= last_source then
    local p, err = policy.compile(pol.source, "namespace policy v" .. tostring(pol.version))
    if not p then return nil, err end
    last_source, last_compiled = pol.source, p
  end
  -- the same compiled rules under this version (C keys its cache by both)
  local p = setmetatable({ version = pol.version }, { __index = last_compiled })
  return p
end

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
  if t.policy then
    local p, err = compiled(t.policy)
    if not p then return nil, "the namespace's policy does not compile: " .. err end
    s.policy = p
  end
  return s
end

return M
