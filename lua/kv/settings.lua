-- kv.settings: a set_config request planned from a binary's config
-- declaration (kv.config.declare). All or nothing: every name in the body
-- must be a key declared live (or one half, ip or port, of a live address
-- declared with api), every value must pass that key's check; then the
-- changes are applied to the config file's text, the whole new text is
-- parsed and validated again, and only then is anything written or applied
-- (by the caller). The operator's other lines and comments are kept.
--
--   changes(decl, cur, body) -> changes | nil, code, msg   (kv.codes)
--     body: the request, API name -> value; cur: the config in use (the
--     other half of an address set by ip or port alone); changes: config
--     key -> new value, each checked by the rule the config file uses.
--   plan(decl, text, cur, body) -> new_text, new_cfg, changes
--                                | nil, code, msg
--     changes, then text (the config file as it is) with them written back,
--     and the config that text gives.
-- Plain function, no I/O: tested by busted.
local config = require "kv.config"
local codes = require "kv.codes"

local M = {}

-- API name -> { spec =, part = nil | "ip" | "port" } for the live keys.
local function api_names(decl)
  local out = {}
  for _, spec in ipairs(decl.keys) do
    if spec.live and spec.api then
      out[spec.api.ip] = { spec = spec, part = "ip" }
      out[spec.api.port] = { spec = spec, part = "port" }
    elseif spec.live then
      out[spec.name] = { spec = spec }
    end
  end
  return out
end

local function split(addr)
  local h, p = tostring(addr or ""):match("^(.*):(%d+)$")
  return h or "", p or ""
end

local PART = {
  ip = { type = "string" },
  port = { type = "integer", min = 1, max = 65535 },
}

function M.changes(decl, cur, body)
  local live = api_names(decl)
  local names = {}
  for k in pairs(body) do names[#names + 1] = tostring(k) end
  if #names == 0 then return nil, codes.BAD_PARAM, "nothing to change" end
  table.sort(names)
  for _, k in ipairs(names) do
    if not live[k] then
      local hint
      if decl.schema[k] then
        hint = "it is read at start only: edit the config file and restart"
      else
        local takes = {}
        for n in pairs(live) do takes[#takes + 1] = n end
        table.sort(takes)
        hint = "set_config takes " .. table.concat(takes, ", ")
      end
      return nil, codes.UNKNOWN_CONFIG_KEY, ("unknown config key '%s' (%s)"):format(k, hint)
    end
  end
  local changes, parts = {}, {}
  for _, k in ipairs(names) do
    local v, entry = body[k], live[k]
    local key = entry.spec.name
    if entry.part then
      local ok, why = config.check(v, PART[entry.part])
      if not ok then
        return nil, codes.BAD_CONFIG_VALUE,
          ("invalid value for %s (of config key '%s'): %s"):format(k, key, why)
      end
      parts[key] = parts[key] or {}
      parts[key][entry.part] = v
    else
      local ok, why = config.check(v, entry.spec)
      if not ok then
        return nil, codes.BAD_CONFIG_VALUE, ("invalid value for config key '%s': %s"):format(key, why)
      end
      changes[key] = v
    end
  end
  for key, p in pairs(parts) do
    local h, port = split(cur[key])
    local addr = ("%s:%s"):format(p.ip or h, p.port and ("%d"):format(p.port) or port)
    local ok, why = config.check(addr, decl.schema[key])
    if not ok then
      return nil, codes.BAD_CONFIG_VALUE, ("invalid value for config key '%s': %s"):format(key, why)
    end
    changes[key] = addr
  end
  return changes
end

function M.plan(decl, text, cur, body)
  local changes, code, msg = M.changes(decl, cur, body)
  if not changes then return nil, code, msg end
  local new_text, uerr = config.update_text(text, changes)
  if not new_text then return nil, codes.BAD_CONFIG_VALUE, uerr end
  local new_cfg, perr = decl:parse(new_text)
  if not new_cfg then return nil, codes.BAD_CONFIG_VALUE, perr end
  return new_text, new_cfg, changes
end

return M
