-- kvp.policy: reads and checks lua/policy.lua (the routing policy data).
--
--   policy.load(path) -> p | nil, err      p = {hash=, hash_tags=, deny={}, allow={}}
--   policy.check(p)   -> p | nil, err
-- The file is run in an empty environment and must return a table; unknown
-- fields are errors (a typo must not silently change routing).
local M = {}

local HASHES = { murmur2_kvstore = true, crc16 = true }
local FIELDS = { hash = true, hash_tags = true, deny = true, allow = true }

local function name_list(v, field)
  if v == nil then return {} end
  if type(v) ~= "table" then return nil, field .. " must be a list of command names" end
  local out = {}
  for i = 1, #v do
    if type(v[i]) ~= "string" or v[i] == "" then
      return nil, ("%s[%d] must be a command name"):format(field, i)
    end
    out[i] = v[i]:lower()
  end
  for k in pairs(v) do
    if type(k) ~= "number" or k < 1 or k > #v or k % 1 ~= 0 then
      return nil, field .. " must be a list (no keys)"
    end
  end
  return out
end

function M.check(p)
  if type(p) ~= "table" then return nil, "the policy must return a table" end
  for k in pairs(p) do
    if not FIELDS[k] then return nil, ("unknown policy field '%s'"):format(tostring(k)) end
  end
  local out = { hash = p.hash or "murmur2_kvstore" }
  if not HASHES[out.hash] then
    return nil, ("unknown hash '%s' (murmur2_kvstore or crc16)"):format(tostring(out.hash))
  end
  if p.hash_tags == nil then
    out.hash_tags = true
  elseif type(p.hash_tags) ~= "boolean" then
    return nil, "hash_tags must be true or false"
  else
    out.hash_tags = p.hash_tags
  end
  local err
  out.deny, err = name_list(p.deny, "deny")
  if not out.deny then return nil, err end
  out.allow, err = name_list(p.allow, "allow")
  if not out.allow then return nil, err end
  return out
end

function M.load(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, ("cannot read policy %s: %s"):format(path, tostring(err)) end
  local text = f:read("*a")
  f:close()
  local chunk, perr = loadstring(text, "@" .. path)
  if not chunk then return nil, ("policy %s: %s"):format(path, perr) end
  setfenv(chunk, {})
  local ok, p = pcall(chunk)
  if not ok then return nil, ("policy %s: %s"):format(path, tostring(p)) end
  local checked, cerr = M.check(p)
  if not checked then return nil, ("policy %s: %s"):format(path, cerr) end
  return checked
end

return M
