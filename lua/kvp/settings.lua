-- kvp.settings: /kvstore/proxy/set_config (SPEC §4), planned from the keys
-- kvp.conf declares live (kv.settings has the rules: all or nothing, the
-- config file's other lines and comments kept).
--
--   settings.plan(text, cur, body) -> new_text, new_cfg, changes | nil, code, msg
-- Plain function, no I/O: tested by busted; kvp.http_api writes the text
-- and applies the new config.
--
-- config_servers replaces the master/slave pair (kvp.conf refuses both
-- set), so a request that sets a list and says nothing of the pair also
-- writes the pair back to its defaults: switching a proxy onto a cluster of
-- config servers is one request. Naming master_cs_*/slave_cs_* with a list
-- is refused (the file's rule, naming both).
local conf = require "kvp.conf"
local config = require "kv.config"
local settings = require "kv.settings"
local codes = require "kv.codes"

local M = {}

local PAIR = { "master_cs_ip", "master_cs_port", "slave_cs_ip", "slave_cs_port" }

local function names_pair(body)
  for _, k in ipairs(PAIR) do
    if body[k] ~= nil then return true end
  end
  return false
end

function M.plan(text, cur, body)
  local changes, code, msg = settings.changes(conf.decl, cur, body)
  if not changes then return nil, code, msg end
  if changes.config_servers and changes.config_servers ~= "" and not names_pair(body) then
    if cur.config_server_master ~= conf.DEFAULT_MASTER then changes.config_server_master = conf.DEFAULT_MASTER end
    if cur.config_server_slave ~= "" then changes.config_server_slave = "" end
  end
  local new_text, uerr = config.update_text(text, changes)
  if not new_text then return nil, codes.BAD_CONFIG_VALUE, uerr end
  local new_cfg, perr = conf.decl:parse(new_text)
  if not new_cfg then return nil, codes.BAD_CONFIG_VALUE, perr end
  return new_text, new_cfg, changes
end

return M
