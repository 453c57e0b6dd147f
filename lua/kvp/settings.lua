-- kvp.settings: /kvstore/proxy/set_config (SPEC §4), planned from the keys
-- kvp.conf declares live (kv.settings has the rules: all or nothing, the
-- config file's other lines and comments kept).
--
--   settings.plan(text, cur, body) -> new_text, new_cfg, changes | nil, code, msg
-- Plain function, no I/O: tested by busted; kvp.http_api writes the text
-- and applies the new config.
local conf = require "kvp.conf"
local settings = require "kv.settings"

local M = {}

function M.plan(text, cur, body)
  return settings.plan(conf.decl, text, cur, body)
end

return M
