-- kv.btable: the bucket table model shared by kvcs, kvp and migration_tool.
--
-- Internal form (plain table, never mutated once built; every change makes a
-- new table with version + 1):
--
--   { namespace    = "test",
--     bucket_count = B,
--     version      = v,                       -- positive integer
--     owner        = { [0] = "ip:port", ..., [B-1] = "ip:port" },
--     migrating    = { [bucket] = "dst ip:port", ... },   -- {} when none
--     blocked      = { [bucket] = true, ... },            -- {} when none
--     patterns     = { "aa*", ... },                      -- key rewrite globs
--     lineage      = "9f0c3a5d2b7e4c11",  -- nil for a table from an old file
--     policy       = { version = 3, source = "return {...}" } }  -- nil: none
--
-- policy is the namespace's routing policy (lua/policy.lua text, compiled
-- by kv.policy; issue 13), published by the config server: it travels in
-- the table so that it is versioned, persisted, copied to slaves and pushed
-- to proxies exactly as the table is (a policy change is a new table
-- version with policy.version + 1). nil: never published (proxies use
-- their local file). It is in the table file and on the control
-- connections (encode); the HTTP replies (to_json) carry only
-- "policy_version" (0 when none). Every change keeps it (copy).
--
-- lineage names the history a table belongs to: random at init (16 hex
-- digits), kept by every later version (copy) and by slaves (they copy the
-- encoded form). A proxy that holds a table of lineage L takes no table of
-- another lineage (kvp.lineage), so a config server of another cluster, or
-- a forged one, cannot make it install a table, whatever its version. It is
-- in the table file and on the control connections (encode), not in the
-- HTTP bucket_table replies (to_json), which any peer may read.
--
-- blocked is a subset of migrating: the buckets of a MIGRATE.START that not
-- every proxy has acked yet (proxies park commands on them). The config
-- server's moves (block, migrate, finish, abort) are kvcs.buckets.
--
-- JSON form (table file, bucket_table reply; SPEC §5, DESIGN §5.5):
--
--   {"bucket_count":1023,"migrating":[{"bucket":682,"dst":"127.0.0.1:6375"},
--      {"blocked":true,"bucket":684,"dst":"127.0.0.1:6375"}],
--    "migrating_bucket_id":682,"migrating_server_addr":"127.0.0.1:6375",
--    "namespace":"test","patterns":[],
--    "table":{"127.0.0.1:6371":[0,2,...],"127.0.0.1:6373":[1,3,...]},"version":7}
--
-- A migrating bucket is still listed under its current owner in "table".
-- "migrating" is the full set ("blocked":true only on blocked ones);
-- migrating_bucket_id/_server_addr repeat the lowest one (65535 / "" when
-- none) for readers of the old single-bucket format. Old files with only
-- those two fields (and without namespace, bucket_count, patterns, blocked)
-- load too.
--
-- Functions (failures return nil, err; misuse raises error()):
--   init(namespace, bucket_count, address_list [, lineage]) -> t  (lineage:
--                                default a new one)
--   new_lineage() -> 16 random hex digits (/dev/urandom)
--   with_lineage(t) -> t' (version + 1, a new lineage): for a table that has none
--   to_json(t)  -> plain table for a JSON encoder (arrays carry array_mt)
--   encode(t)   -> compact JSON text, keys sorted, ending with "\n"
--   from_json(obj [, namespace]) -> t   (namespace: expected name, e.g. the
--                                          file name; fills it in for old files)
--   decode(text [, namespace])   -> t
--   addresses(t) -> sorted owners plus migration destinations
--   servers(t)   -> sorted owners
--   counts(t)    -> { addr = number of buckets owned }
--   replace_server(t, old, new) -> t'
--   scale_up(t, new_addr)       -> t' (target ownership, see below)
--   scale_down(t, addr)         -> t'
--   moves(old, new)             -> { {bucket=, src=, dst=}, ... } by bucket
--   start_migration(t, bucket, dst) / finish_migration(t, bucket) -> t'
--                               (one bucket, never blocked: for planning)
--   add_pattern(t, p) / del_pattern(t, p) -> t'
--   copy(t)                     -> t' equal to t, version + 1, for a change
--                                  to fill in before anyone else sees it
--   with_policy(t, source)      -> t' (version + 1) carrying source as the
--                                  policy, its version one more than t's

local cjson = require "cjson"
local names = require "kv.names"

local M = {}

M.NO_BUCKET = 65535
M.MIN_BUCKETS = 256
M.MAX_BUCKETS = 16384
-- key-rewrite patterns: each at most MAX_PATTERN bytes and MAX_PATTERN_ELEMS
-- elements besides '*' (the proxy matches them in time linear in the key,
-- c/core/glob.h), at most MAX_PATTERNS of them
M.MAX_PATTERN = 256
M.MAX_PATTERN_ELEMS = 63
M.MAX_PATTERNS = 64

-- Marks a Lua table as a JSON array, so that an empty one is written "[]"
-- (the installed lua-cjson 2.1.0 has no array_mt; kv.codes' encoder and
-- dkjson both honour __jsontype).
local array_mt = { __jsontype = "array" }
M.array_mt = array_mt

local function is_int(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
    and math.floor(v) == v
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "number" then return tostring(v) end
  if v == cjson.null then return "null" end
  if v == nil then return "nothing" end
  return "a " .. type(v)
end

-- true when every key is 1..n (an empty table counts as an array)
local function is_array(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

-- A new table equal to t but for version + 1, for a change to fill in
-- (a blocked mark without a migrating one is dropped).
local function copy(t)
  local owner, migrating, patterns, blocked = {}, {}, {}, {}
  for b = 0, t.bucket_count - 1 do owner[b] = t.owner[b] end
  for b, d in pairs(t.migrating) do migrating[b] = d end
  for i, p in ipairs(t.patterns) do patterns[i] = p end
  for b in pairs(t.blocked or {}) do if migrating[b] then blocked[b] = true end end
  return {
    namespace = t.namespace, bucket_count = t.bucket_count, version = t.version + 1,
    owner = owner, migrating = migrating, patterns = patterns, blocked = blocked,
    lineage = t.lineage, policy = t.policy, -- policy: immutable, shared
  }
end

M.copy = copy

local LINEAGE_PATTERN = "^%x+$"
local LINEAGE_MAX = 64

function M.new_lineage()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(8)
  if f then f:close() end
  if not bytes or #bytes ~= 8 then -- no /dev/urandom: time and address entropy
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    local t = {}
    for i = 1, 8 do t[i] = string.char(math.random(0, 255)) end
    bytes = table.concat(t)
  end
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function M.with_lineage(t)
  local nt = copy(t)
  nt.lineage = M.new_lineage()
  return nt
end

local function check_table(t, fname)
  if type(t) ~= "table" or type(t.owner) ~= "table" or not is_int(t.bucket_count) then
    error("kv.btable." .. fname .. ": not a bucket table", 3)
  end
end

--------------------------------------------------------------------------------
-- Queries
--------------------------------------------------------------------------------

function M.counts(t)
  check_table(t, "counts")
  local c = {}
  for b = 0, t.bucket_count - 1 do
    local a = t.owner[b]
    c[a] = (c[a] or 0) + 1
  end
  return c
end

function M.servers(t)
  return sorted_keys(M.counts(t))
end

function M.addresses(t)
  local set = M.counts(t)
  for _, d in pairs(t.migrating) do set[d] = true end
  return sorted_keys(set)
end

-- Sorted list of the migrating buckets.
local function migrating_list(t)
  local bs = sorted_keys(t.migrating)
  return bs
end

--------------------------------------------------------------------------------
-- Creation
--------------------------------------------------------------------------------

local function check_bucket_count(n)
  if not is_int(n) or n < M.MIN_BUCKETS or n > M.MAX_BUCKETS then
    return nil, string.format("bucket_count must be an integer from %d to %d, got %s",
      M.MIN_BUCKETS, M.MAX_BUCKETS, show(n))
  end
  return true
end

function M.init(namespace, bucket_count, address_list, lineage)
  local ok, err = names.valid_namespace(namespace)
  if not ok then return nil, err end
  ok, err = check_bucket_count(bucket_count)
  if not ok then return nil, err end
  if type(address_list) ~= "table" or not is_array(address_list) or #address_list == 0 then
    return nil, 'address_list must be a non-empty array of "ip:port" strings'
  end
  local seen = {}
  for _, a in ipairs(address_list) do
    local host, aerr = names.valid_addr(a)
    if not host then return nil, aerr end
    if seen[a] then return nil, "server address " .. a .. " is listed twice in address_list" end
    seen[a] = true
  end
  local n = #address_list
  if n > bucket_count then
    return nil, string.format("more servers (%d) than buckets (%d)", n, bucket_count)
  end
  local owner = {}
  for b = 0, bucket_count - 1 do owner[b] = address_list[(b % n) + 1] end
  return {
    namespace = namespace, bucket_count = bucket_count, version = 1,
    owner = owner, migrating = {}, patterns = {}, blocked = {},
    lineage = lineage or M.new_lineage(),
  }
end

--------------------------------------------------------------------------------
-- JSON form
--------------------------------------------------------------------------------

function M.to_json(t)
  check_table(t, "to_json")
  local by = {}
  for b = 0, t.bucket_count - 1 do
    local a = t.owner[b]
    local ids = by[a]
    if not ids then
      ids = setmetatable({}, array_mt)
      by[a] = ids
    end
    ids[#ids + 1] = b
  end
  local mig = setmetatable({}, array_mt)
  for _, b in ipairs(migrating_list(t)) do
    mig[#mig + 1] = { bucket = b, dst = t.migrating[b], blocked = (t.blocked and t.blocked[b]) or nil }
  end
  local patterns = setmetatable({}, array_mt)
  for i, p in ipairs(t.patterns) do patterns[i] = p end
  return {
    namespace = t.namespace,
    bucket_count = t.bucket_count,
    version = t.version,
    table = by,
    migrating_bucket_id = mig[1] and mig[1].bucket or M.NO_BUCKET,
    migrating_server_addr = mig[1] and mig[1].dst or "",
    migrating = mig,
    patterns = patterns,
    policy_version = t.policy and t.policy.version or 0,
  }
end

local JESC = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ["\b"] = "\\b", ["\f"] = "\\f",
}
local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return JESC[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function jint(n)
  return string.format("%d", n)
end

function M.encode(t)
  local j = M.to_json(t)
  local out = {}
  local function w(s) out[#out + 1] = s end
  w('{"bucket_count":') w(jint(j.bucket_count))
  if t.lineage then w(',"lineage":') w(jstr(t.lineage)) end
  w(',"migrating":[')
  for i, m in ipairs(j.migrating) do
    if i > 1 then w(",") end
    w('{') if m.blocked then w('"blocked":true,') end
    w('"bucket":') w(jint(m.bucket)) w(',"dst":') w(jstr(m.dst)) w("}")
  end
  w('],"migrating_bucket_id":') w(jint(j.migrating_bucket_id))
  w(',"migrating_server_addr":') w(jstr(j.migrating_server_addr))
  w(',"namespace":') w(jstr(j.namespace))
  w(',"patterns":[')
  for i, p in ipairs(j.patterns) do
    if i > 1 then w(",") end
    w(jstr(p))
  end
  w(']')
  if t.policy then
    w(',"policy":{"source":') w(jstr(t.policy.source))
    w(',"version":') w(jint(t.policy.version)) w('}')
  end
  w(',"table":{')
  for i, a in ipairs(sorted_keys(j.table)) do
    if i > 1 then w(",") end
    local ids = j.table[a]
    local s = {}
    for k, b in ipairs(ids) do s[k] = jint(b) end
    w(jstr(a)) w(":[") w(table.concat(s, ",")) w("]")
  end
  w('},"version":') w(jint(j.version)) w("}\n")
  return table.concat(out)
end

-- Validates a decoded JSON object; see the header for the accepted forms.
function M.from_json(obj, namespace)
  if type(obj) ~= "table" or obj[1] ~= nil then return nil, "bucket table must be a JSON object" end

  -- namespace
  local ns = obj.namespace
  if ns ~= nil then
    local ok, err = names.valid_namespace(ns)
    if not ok then return nil, err end
    if namespace and ns ~= namespace then
      return nil, string.format("table is for namespace %s, expected %s", show(ns), show(namespace))
    end
  else
    ns = namespace
    if ns == nil then return nil, "namespace is missing" end
    local ok, err = names.valid_namespace(ns)
    if not ok then return nil, err end
  end

  -- lineage (absent in files older than it)
  local lineage = obj.lineage
  if lineage ~= nil and (type(lineage) ~= "string" or #lineage > LINEAGE_MAX
                         or not lineage:find(LINEAGE_PATTERN)) then
    return nil, "lineage must be a string of 1 to " .. LINEAGE_MAX .. " hex digits, got " .. show(lineage)
  end

  -- version
  local version = obj.version
  if not is_int(version) or version < 1 or version >= 2 ^ 53 then
    return nil, "version must be a positive integer, got " .. show(version)
  end

  -- table: shape first, then bucket ids
  local tbl = obj.table
  if type(tbl) ~= "table" then
    return nil, 'table must be an object {"ip:port": [bucket ids]}, got ' .. show(tbl)
  end
  if next(tbl) == nil then return nil, "table is empty: no server owns a bucket" end
  if tbl[1] ~= nil then
    return nil, 'table must be an object {"ip:port": [bucket ids]}, not an array'
  end
  for a in pairs(tbl) do
    if type(a) ~= "string" then return nil, "table has a non-address key " .. show(a) end
  end
  local addrs, total = sorted_keys(tbl), 0
  for _, a in ipairs(addrs) do
    local host, err = names.valid_addr(a)
    if not host then return nil, "bad server in table: " .. err end
    if not is_array(tbl[a]) then
      return nil, "the buckets of " .. a .. " must be an array of bucket ids"
    end
    total = total + #tbl[a]
  end

  local B = obj.bucket_count
  if B ~= nil then
    local ok, err = check_bucket_count(B)
    if not ok then return nil, err end
  else
    B = total -- old files: every bucket is listed exactly once
    local ok = check_bucket_count(B)
    if not ok then
      return nil, string.format("bucket_count is missing and the table lists %d buckets (need %d..%d)",
        total, M.MIN_BUCKETS, M.MAX_BUCKETS)
    end
  end

  local owner = {}
  for _, a in ipairs(addrs) do
    for _, b in ipairs(tbl[a]) do
      if not is_int(b) then
        return nil, "bucket id " .. show(b) .. " under " .. a .. " is not an integer"
      end
      if b < 0 or b >= B then
        return nil, string.format("bucket %s under %s is out of range 0..%d", jint(b), a, B - 1)
      end
      local prev = owner[b]
      if prev == a then
        return nil, string.format("bucket %d listed twice under %s", b, a)
      elseif prev then
        return nil, string.format("bucket %d owned twice (%s, %s)", b, prev, a)
      end
      owner[b] = a
    end
  end
  local missing, first = 0, nil
  for b = 0, B - 1 do
    if not owner[b] then
      missing = missing + 1
      first = first or b
    end
  end
  if missing == 1 then
    return nil, string.format("bucket %d has no owner", first)
  elseif missing > 1 then
    return nil, string.format("%d buckets have no owner (the first is %d)", missing, first)
  end

  -- migrating set
  local function check_move(b, dst, where)
    if not is_int(b) or b < 0 or b >= B then
      return nil, string.format("%s: bucket %s is not a bucket id 0..%d", where, show(b), B - 1)
    end
    local host, err = names.valid_addr(dst)
    if not host then return nil, where .. ": bad destination: " .. err end
    if dst == owner[b] then
      return nil, string.format("%s: bucket %d migrates to its own owner %s", where, b, dst)
    end
    return true
  end
  local migrating, blocked = {}, {}
  local mlist = obj.migrating
  if mlist ~= nil then
    if not is_array(mlist) then return nil, "migrating must be an array of {bucket, dst}" end
    for i, m in ipairs(mlist) do
      local where = "migrating entry " .. i
      if type(m) ~= "table" then return nil, where .. " must be an object {bucket, dst}" end
      local ok, err = check_move(m.bucket, m.dst, where)
      if not ok then return nil, err end
      if migrating[m.bucket] then
        return nil, string.format("bucket %d listed twice in migrating", m.bucket)
      end
      migrating[m.bucket] = m.dst
      if m.blocked == true then blocked[m.bucket] = true end
    end
  end
  local mid, maddr = obj.migrating_bucket_id, obj.migrating_server_addr
  if (mid == nil) ~= (maddr == nil) then
    return nil, "migrating_bucket_id and migrating_server_addr must be given together"
  end
  if mid ~= nil then
    if not is_int(mid) then return nil, "migrating_bucket_id must be an integer, got " .. show(mid) end
    if type(maddr) ~= "string" then
      return nil, "migrating_server_addr must be a string, got " .. show(maddr)
    end
    if mlist ~= nil then
      local lowest = sorted_keys(migrating)[1]
      local want_id = lowest or M.NO_BUCKET
      local want_addr = lowest and migrating[lowest] or ""
      if mid ~= want_id or maddr ~= want_addr then
        return nil, string.format(
          "migrating_bucket_id/migrating_server_addr (%s, %s) do not match migrating (%s, %s)",
          jint(mid), show(maddr), jint(want_id), show(want_addr))
      end
    elseif mid == M.NO_BUCKET then
      if maddr ~= "" then
        return nil, "migrating_server_addr is set but migrating_bucket_id is 65535 (none)"
      end
    else
      local ok, err = check_move(mid, maddr, "migrating_bucket_id")
      if not ok then return nil, err end
      migrating[mid] = maddr
    end
  end

  -- patterns
  local patterns = {}
  if obj.patterns ~= nil then
    if not is_array(obj.patterns) then return nil, "patterns must be an array of strings" end
    local seen = {}
    for i, p in ipairs(obj.patterns) do
      if type(p) ~= "string" or p == "" then
        return nil, "pattern " .. i .. " must be a non-empty string, got " .. show(p)
      end
      if seen[p] then return nil, "pattern " .. show(p) .. " is listed twice" end
      seen[p] = true
      patterns[i] = p
    end
  end

  -- policy (absent in files older than it, and when none was published;
  -- the HTTP form's policy_version is not a policy and is ignored)
  local policy
  if obj.policy ~= nil then
    local pv = type(obj.policy) == "table" and obj.policy or {}
    if type(obj.policy) ~= "table" or type(pv.source) ~= "string"
        or not is_int(pv.version) or pv.version < 1 or pv.version >= 2 ^ 53 then
      return nil, 'policy must be an object {"source": text, "version": positive integer}'
    end
    policy = { version = pv.version, source = pv.source }
  end

  return {
    namespace = ns, bucket_count = B, version = version,
    owner = owner, migrating = migrating, patterns = patterns, blocked = blocked,
    lineage = lineage, policy = policy,
  }
end

function M.decode(text, namespace)
  if type(text) ~= "string" then return nil, "bucket table text must be a string" end
  local ok, obj = pcall(cjson.decode, text)
  if not ok then return nil, "invalid JSON: " .. tostring(obj) end
  return M.from_json(obj, namespace)
end

--------------------------------------------------------------------------------
-- Changes (each returns a new table, version + 1)
--------------------------------------------------------------------------------

-- Every bucket of old goes to new; migration destinations equal to old are
-- renamed too. old must be in the table (an owner, or only a migration
-- destination, e.g. a new master that died mid scale-up); new must not be.
function M.replace_server(t, old, new)
  check_table(t, "replace_server")
  local ok, err = names.valid_addr(old)
  if not ok then return nil, "old address: " .. err end
  ok, err = names.valid_addr(new)
  if not ok then return nil, "new address: " .. err end
  local present = {}
  for _, a in ipairs(M.addresses(t)) do present[a] = true end
  if not present[old] then return nil, "server " .. old .. " is not in the table" end
  if present[new] then return nil, "server " .. new .. " is already in the table" end
  local n = copy(t)
  for b = 0, n.bucket_count - 1 do
    if n.owner[b] == old then n.owner[b] = new end
  end
  for b, d in pairs(n.migrating) do
    if d == old then n.migrating[b] = new end
  end
  return n
end

-- Keeps the migration marks that still make sense in a target table:
-- the bucket keeps its owner and the destination is not being removed.
local function keep_migrations(t, n, removed)
  for b, d in pairs(t.migrating) do
    if n.owner[b] == t.owner[b] and d ~= removed then
      n.migrating[b] = d
    else
      n.migrating[b] = nil
    end
  end
end

-- Target ownership after adding new_addr: buckets move only to new_addr, one
-- at a time from the server holding the most (ties: lowest address), until no
-- server holds more than new_addr + 1. From a balanced table this moves
-- exactly floor(B / N) buckets and ends with floor/ceil of B / N everywhere.
-- A donor gives first the buckets already migrating to new_addr (a resumed
-- run), then its highest bucket ids, and buckets migrating elsewhere last.
-- new_addr may already own buckets (resuming): only the rest is planned.
-- Migrating buckets count at their current owner.
function M.scale_up(t, new_addr)
  check_table(t, "scale_up")
  local ok, err = names.valid_addr(new_addr)
  if not ok then return nil, err end
  local counts = M.counts(t)
  counts[new_addr] = counts[new_addr] or 0
  local servers = sorted_keys(counts)
  if #servers > t.bucket_count then
    return nil, string.format("more servers (%d) than buckets (%d)", #servers, t.bucket_count)
  end

  -- per donor: queue of buckets in the order it gives them away
  local queue = {}
  for _, a in ipairs(servers) do queue[a] = { {}, {}, {} } end
  for b = t.bucket_count - 1, 0, -1 do
    local a = t.owner[b]
    if a ~= new_addr then
      local d = t.migrating[b]
      local class = (d == new_addr and 1) or (d == nil and 2) or 3
      local q = queue[a][class]
      q[#q + 1] = b
    end
  end
  local next_idx = {}
  for _, a in ipairs(servers) do
    local q = queue[a]
    local flat = {}
    for c = 1, 3 do
      for _, b in ipairs(q[c]) do flat[#flat + 1] = b end
    end
    queue[a] = flat
    next_idx[a] = 1
  end

  local n = copy(t)
  while true do
    local donor
    for _, a in ipairs(servers) do
      if a ~= new_addr and (not donor or counts[a] > counts[donor]) then donor = a end
    end
    if not donor or counts[donor] <= counts[new_addr] + 1 then break end
    local b = queue[donor][next_idx[donor]]
    next_idx[donor] = next_idx[donor] + 1
    n.owner[b] = new_addr
    counts[donor] = counts[donor] - 1
    counts[new_addr] = counts[new_addr] + 1
  end
  keep_migrations(t, n, nil)
  return n
end

-- Target ownership after removing addr: only addr's buckets move, each to
-- the remaining server holding the fewest at that point (ties: lowest
-- address), so the rest ends with floor/ceil of B / (N - 1) whenever no
-- remaining server already holds more than the ceiling. A bucket already
-- migrating to a remaining server goes there if that server takes any.
-- Migrating buckets count at their current owner; migrations towards addr
-- are dropped from the result (the caller must bring those keys back).
function M.scale_down(t, addr)
  check_table(t, "scale_down")
  local ok, err = names.valid_addr(addr)
  if not ok then return nil, err end
  local counts = M.counts(t)
  if not counts[addr] then return nil, "server " .. addr .. " owns no bucket of the table" end
  counts[addr] = nil
  local rest = sorted_keys(counts)
  if #rest == 0 then return nil, "cannot remove " .. addr .. ": it is the last server" end

  local pool = {}
  for b = 0, t.bucket_count - 1 do
    if t.owner[b] == addr then pool[#pool + 1] = b end
  end
  -- how many each remaining server takes (water filling)
  local quota = {}
  for _, a in ipairs(rest) do quota[a] = 0 end
  for _ = 1, #pool do
    local best
    for _, a in ipairs(rest) do
      if not best or counts[a] + quota[a] < counts[best] + quota[best] then best = a end
    end
    quota[best] = quota[best] + 1
  end

  local n = copy(t)
  local left = {}
  for _, b in ipairs(pool) do
    local d = t.migrating[b]
    if d and quota[d] and quota[d] > 0 then
      n.owner[b] = d
      quota[d] = quota[d] - 1
    else
      left[#left + 1] = b
    end
  end
  local i = 1
  for _, a in ipairs(rest) do
    for _ = 1, quota[a] do
      n.owner[left[i]] = a
      i = i + 1
    end
  end
  keep_migrations(t, n, addr)
  return n
end

-- Buckets whose owner differs, sorted by bucket.
function M.moves(old, new)
  check_table(old, "moves")
  check_table(new, "moves")
  if old.bucket_count ~= new.bucket_count then
    error("kv.btable.moves: tables have different bucket counts", 2)
  end
  local list = {}
  for b = 0, old.bucket_count - 1 do
    if old.owner[b] ~= new.owner[b] then
      list[#list + 1] = { bucket = b, src = old.owner[b], dst = new.owner[b] }
    end
  end
  return list
end

-- Marks bucket as migrating to dst (DESIGN §5 step 1). Starting the same
-- move again is allowed (a resumed run) and still bumps the version.
function M.start_migration(t, bucket, dst)
  check_table(t, "start_migration")
  if not is_int(bucket) or bucket < 0 or bucket >= t.bucket_count then
    return nil, string.format("bucket %s is not a bucket id 0..%d", show(bucket), t.bucket_count - 1)
  end
  local ok, err = names.valid_addr(dst)
  if not ok then return nil, err end
  if t.owner[bucket] == dst then
    return nil, string.format("bucket %d is already owned by %s", bucket, dst)
  end
  local cur = t.migrating[bucket]
  if cur and cur ~= dst then
    return nil, string.format("bucket %d is already migrating to %s", bucket, cur)
  end
  local n = copy(t)
  n.migrating[bucket] = dst
  return n
end

-- Makes the destination of a migrating bucket its owner (DESIGN §5 step 4).
function M.finish_migration(t, bucket)
  check_table(t, "finish_migration")
  if not is_int(bucket) then return nil, "bucket must be an integer, got " .. show(bucket) end
  local dst = t.migrating[bucket]
  if not dst then return nil, string.format("bucket %d is not migrating", bucket) end
  local n = copy(t)
  n.owner[bucket] = dst
  n.migrating[bucket] = nil
  n.blocked[bucket] = nil
  return n
end

-- Elements of glob p other than '*' ('?', a byte, a "[...]" class), as
-- c/core/glob.c counts them.
function M.glob_elements(p)
  local n, i = 0, 1
  while i <= #p do
    local c = p:sub(i, i)
    if c == "*" then
      i = i + 1
    else
      n = n + 1
      if c == "\\" and i < #p then
        i = i + 2
      elseif c == "[" then
        i = i + 1
        if p:sub(i, i) == "^" then i = i + 1 end
        while i <= #p and p:sub(i, i) ~= "]" do
          i = i + ((p:sub(i, i) == "\\" and i < #p) and 2 or 1)
        end
        i = i + 1
      else
        i = i + 1
      end
    end
  end
  return n
end

function M.add_pattern(t, p)
  check_table(t, "add_pattern")
  if type(p) ~= "string" or p == "" or #p > M.MAX_PATTERN then
    return nil, "pattern must be a non-empty string of at most " .. M.MAX_PATTERN .. " bytes"
  end
  if M.glob_elements(p) > M.MAX_PATTERN_ELEMS then
    return nil, "pattern has more than " .. M.MAX_PATTERN_ELEMS .. " elements besides '*'"
  end
  if #t.patterns >= M.MAX_PATTERNS then
    return nil, "at most " .. M.MAX_PATTERNS .. " key-rewrite patterns"
  end
  for _, q in ipairs(t.patterns) do
    if q == p then return nil, "pattern " .. show(p) .. " already exists" end
  end
  local n = copy(t)
  n.patterns[#n.patterns + 1] = p
  return n
end

function M.with_policy(t, source)
  check_table(t, "with_policy")
  if type(source) ~= "string" then return nil, "policy source must be a string" end
  local n = copy(t)
  n.policy = { version = (t.policy and t.policy.version or 0) + 1, source = source }
  return n
end

function M.del_pattern(t, p)
  check_table(t, "del_pattern")
  local n = copy(t)
  for i, q in ipairs(n.patterns) do
    if q == p then
      table.remove(n.patterns, i)
      return n
    end
  end
  return nil, "no such pattern " .. show(p)
end

return M
