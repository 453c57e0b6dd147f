-- kvp.settings: /kvstore/proxy/set_config (SPEC §4). All or nothing: the
-- changes are applied to the config file's text, the whole new text is
-- parsed and validated, and only then written (atomically) and applied. The
-- operator's other lines and comments are kept.
--
--   settings.plan(text, body) -> new_text, new_cfg, changed | nil, code, msg
-- (plain function, no I/O: tested by busted); kvp.http_api writes and applies.
local config = require "kv.config"
local conf = require "kvp.conf"
local codes = require "kv.codes"

local M = {}

-- API key -> config key; ip/port pairs are joined into one address.
local SIMPLE = {
  max_qps = true, max_client_num = true, slow_cmd_time = true, client_timeout = true,
  redis_down_timeout = true, request_timeout = true, update_slave_interval = true,
  redis_password = true,
}
local ADDR = {
  master_cs_ip = { "config_server_master", "ip" }, master_cs_port = { "config_server_master", "port" },
  slave_cs_ip = { "config_server_slave", "ip" }, slave_cs_port = { "config_server_slave", "port" },
}

local function split(addr)
  local h, p = tostring(addr or ""):match("^(.*):(%d+)$")
  return h or "", p or ""
end

function M.plan(text, cur, body)
  local changes, parts = {}, {}
  local any = false
  for k, v in pairs(body) do
    any = true
    if SIMPLE[k] then
      if k == "redis_password" then
        if type(v) ~= "string" then
          return nil, codes.BAD_CONFIG_VALUE, "redis_password must be a string"
        end
      elseif type(v) ~= "number" or v % 1 ~= 0 then
        return nil, codes.BAD_CONFIG_VALUE, ("%s must be an integer"):format(k)
      end
      changes[k] = v
    elseif ADDR[k] then
      local key, part = ADDR[k][1], ADDR[k][2]
      if part == "port" and (type(v) ~= "number" or v % 1 ~= 0) then
        return nil, codes.BAD_CONFIG_VALUE, ("%s must be an integer"):format(k)
      end
      if part == "ip" and type(v) ~= "string" then
        return nil, codes.BAD_CONFIG_VALUE, ("%s must be a string"):format(k)
      end
      parts[key] = parts[key] or {}
      parts[key][part] = v
    else
      return nil, codes.UNKNOWN_CONFIG_KEY, ("unknown config key '%s'"):format(tostring(k))
    end
  end
  if not any then return nil, codes.BAD_PARAM, "nothing to change" end
  for key, p in pairs(parts) do
    local h, port = split(cur[key])
    changes[key] = ("%s:%s"):format(p.ip or h, p.port and tostring(p.port) or port)
  end
  local new_text, uerr = config.update_text(text, changes)
  if not new_text then return nil, codes.BAD_CONFIG_VALUE, uerr end
  local new_cfg, perr = conf.parse(new_text, "kvp.conf")
  if not new_cfg then return nil, codes.BAD_CONFIG_VALUE, perr end
  return new_text, new_cfg, changes
end

return M
