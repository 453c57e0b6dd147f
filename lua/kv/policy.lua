-- kv.policy: a namespace's routing policy (lua/policy.lua), compiled from its
-- source text in a sandbox. Plain functions over plain tables, for kvp and
-- kvcs alike (issue 13: the config server checks and publishes the policy,
-- every proxy of the namespace routes with the same version).
--
--   compile(text, name) -> p | nil, err
--       err names the line where it can ("policy.lua:12: rules[2].read_only
--       must be true or false"). p is
--       { hash, hash_tags, deny = {cmd...}, allow = {cmd...},
--         rules = { { match = glob, read_only, deny, allow, max_qps,
--                     replica_reads = "never"|"prefer"|"only",
--                     max_replica_lag_ms, route = function|nil }, ... },
--         source = text }
--   load(path) -> p | nil, err: the file compiled (name = path)
--   routing(p) -> string: what decides a key's bucket (hash, tags, and each
--       rule with a route: its glob and the function's source), so a change
--       of it is seen whatever else changed
--
-- The file runs with no globals but a read-only safe library (string,
-- math, table, bit and the pure base functions): it can neither read files
-- nor reach the process. Unknown fields are errors: a typo must not
-- silently change routing.
local btable = require "kv.btable"

local M = {}

local HASHES = { murmur2_kvstore = true, crc16 = true }
local FIELDS = { hash = true, hash_tags = true, deny = true, allow = true, rules = true }
local RULE_FIELDS = {
  match = true, read_only = true, deny = true, allow = true, max_qps = true,
  replica_reads = true, max_replica_lag_ms = true, route = true,
}
local REPLICA_READS = { never = true, prefer = true, only = true }
M.MAX_RULES = 64
M.MAX_GLOB = 256
M.MAX_GLOB_ELEMS = 63 -- c/core/glob.h: one bit each

local function readonly(t)
  return setmetatable({}, {
    __index = t,
    __newindex = function() error("the policy's library is read-only", 2) end,
    __metatable = false,
  })
end

-- What the file (and its route functions) may use.
local function sandbox()
  return {
    string = readonly(string), math = readonly(math), table = readonly(table),
    bit = readonly(require "bit"),
    tostring = tostring, tonumber = tonumber, type = type, pairs = pairs, ipairs = ipairs,
    select = select, error = error, assert = assert, pcall = pcall, unpack = unpack,
  }
end

-- The line of the source where `field` is set (the first "field =" after
-- line `from`), for errors about a value rather than the syntax.
local function line_of(text, field, from)
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if n >= (from or 1) and line:find("%f[%w_]" .. field .. "%s*=") then return n end
  end
  return nil
end

local function fail(text, name, field, msg, from)
  local line = field and line_of(text, field, from)
  return nil, ("%s:%s%s"):format(name, line and (line .. ": ") or " ", msg)
end

local function name_list(v, what)
  if v == nil then return {} end
  if type(v) ~= "table" then return nil, what .. " must be a list of command names" end
  local out = {}
  for k in pairs(v) do
    if type(k) ~= "number" or k < 1 or k > #v or k % 1 ~= 0 then
      return nil, what .. " must be a list (no keys)"
    end
  end
  for i = 1, #v do
    if type(v[i]) ~= "string" or v[i] == "" then
      return nil, ("%s[%d] must be a command name"):format(what, i)
    end
    out[i] = v[i]:lower()
  end
  return out
end

-- A glob as the proxy's matcher takes it: bounded, brackets closed.
local function glob_ok(g)
  if type(g) ~= "string" or g == "" then return "must be a non-empty glob" end
  if #g > M.MAX_GLOB then return ("is longer than %d bytes"):format(M.MAX_GLOB) end
  if g:find("[\r\n]") then return "must not hold CR or LF" end
  if btable.glob_elements(g) > M.MAX_GLOB_ELEMS then
    return ("has more than %d elements besides '*'"):format(M.MAX_GLOB_ELEMS)
  end
  local i, n = 1, #g
  while i <= n do
    local c = g:sub(i, i)
    if c == "\\" then
      i = i + 1
    elseif c == "[" then
      local close = g:find("]", i + 2, true)
      if not close then return "has a '[' without its ']'" end
      i = close
    end
    i = i + 1
  end
  return nil
end

local function int_field(v, what, min, max)
  if v == nil then return nil end
  if type(v) ~= "number" or v % 1 ~= 0 or v < min or v > max then
    return nil, ("%s must be an integer from %d to %d"):format(what, min, max)
  end
  return v
end

local function check_rule(r, i)
  local what = ("rules[%d]"):format(i)
  if type(r) ~= "table" then return nil, what .. " must be a table", nil end
  for k in pairs(r) do
    if not RULE_FIELDS[k] then
      return nil, ("%s: unknown field '%s'"):format(what, tostring(k)), tostring(k)
    end
  end
  local bad = glob_ok(r.match)
  if bad then return nil, ("%s.match %s"):format(what, bad), "match" end
  local out = { match = r.match }
  if r.read_only ~= nil and type(r.read_only) ~= "boolean" then
    return nil, what .. ".read_only must be true or false", "read_only"
  end
  out.read_only = r.read_only == true
  local err
  out.deny, err = name_list(r.deny, what .. ".deny")
  if not out.deny then return nil, err, "deny" end
  out.allow, err = name_list(r.allow, what .. ".allow")
  if not out.allow then return nil, err, "allow" end
  if r.max_qps ~= nil then
    out.max_qps, err = int_field(r.max_qps, what .. ".max_qps", 1, 100000000)
    if not out.max_qps then return nil, err, "max_qps" end
  end
  out.replica_reads = r.replica_reads or "never"
  if not REPLICA_READS[out.replica_reads] then
    return nil, what .. ".replica_reads must be \"never\", \"prefer\" or \"only\"", "replica_reads"
  end
  if r.max_replica_lag_ms ~= nil then
    out.max_replica_lag_ms, err = int_field(r.max_replica_lag_ms, what .. ".max_replica_lag_ms", 0, 86400000)
    if not out.max_replica_lag_ms then return nil, err, "max_replica_lag_ms" end
    if out.replica_reads == "never" then
      return nil, what .. ".max_replica_lag_ms needs replica_reads \"prefer\" or \"only\"", "max_replica_lag_ms"
    end
  end
  if r.route ~= nil and type(r.route) ~= "function" then
    return nil, what .. ".route must be a function(key, cmd)", "route"
  end
  out.route = r.route
  return out
end

function M.compile(text, name)
  name = name or "policy"
  if type(text) ~= "string" then return nil, name .. ": no source" end
  local chunk, perr = loadstring(text, "=" .. name)
  if not chunk then return nil, perr end
  setfenv(chunk, sandbox())
  local ok, p = pcall(chunk)
  if not ok then return nil, tostring(p) end
  if type(p) ~= "table" then return nil, name .. ": the policy must return a table" end
  for k in pairs(p) do
    if not FIELDS[k] then
      return fail(text, name, tostring(k), ("unknown policy field '%s'"):format(tostring(k)))
    end
  end
  local out = { hash = p.hash or "murmur2_kvstore", source = text }
  if not HASHES[out.hash] then
    return fail(text, name, "hash", ("unknown hash '%s' (murmur2_kvstore or crc16)"):format(tostring(out.hash)))
  end
  if p.hash_tags ~= nil and type(p.hash_tags) ~= "boolean" then
    return fail(text, name, "hash_tags", "hash_tags must be true or false")
  end
  out.hash_tags = p.hash_tags ~= false
  local err
  out.deny, err = name_list(p.deny, "deny")
  if not out.deny then return fail(text, name, "deny", err) end
  out.allow, err = name_list(p.allow, "allow")
  if not out.allow then return fail(text, name, "allow", err) end
  out.rules = {}
  if p.rules ~= nil then
    if type(p.rules) ~= "table" then return fail(text, name, "rules", "rules must be a list of rules") end
    if #p.rules > M.MAX_RULES then
      return fail(text, name, "rules", ("at most %d rules"):format(M.MAX_RULES))
    end
    local rules_line = line_of(text, "rules")
    for i = 1, #p.rules do
      local r, rerr, field = check_rule(p.rules[i], i)
      if not r then return fail(text, name, field, rerr, rules_line) end
      out.rules[i] = r
    end
  end
  return out
end

-- The policy file at path, compiled (errors name the file and line).
function M.load(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, ("cannot read policy %s: %s"):format(path, tostring(err)) end
  local text = f:read("*a")
  f:close()
  return M.compile(text, path)
end

-- What decides a key's bucket, as one string.
function M.routing(p)
  local parts = { "hash=" .. p.hash, "tags=" .. tostring(p.hash_tags) }
  for i, r in ipairs(p.rules or {}) do
    if r.route then
      local info = debug.getinfo(r.route, "S")
      local src = p.source or ""
      local lines, n = {}, 0
      for line in (src .. "\n"):gmatch("([^\n]*)\n") do
        n = n + 1
        if n >= info.linedefined and n <= info.lastlinedefined then lines[#lines + 1] = line end
      end
      parts[#parts + 1] = ("route[%d]=%s:%s"):format(i, r.match, table.concat(lines, "\n"))
    end
  end
  return table.concat(parts, ";")
end

return M
