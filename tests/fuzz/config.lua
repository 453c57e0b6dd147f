-- Fuzz target "config": the config loader (kv.config.parse with the schemas
-- of kvp.conf and kvcs.conf, and kv.config.update_text, which set_config
-- uses to rewrite a file). Checked: neither raises on any text; parse gives
-- a table or nil and a message; a text that parses, updated with a new
-- log_level, parses again with that value and otherwise the same config.
package.path = KV_ROOT .. "/tests/?.lua;" .. package.path
local lib = require "fuzz.lib"
local config = require "kv.config"
local kvpconf = require "kvp.conf"
local kvcsconf = require "kvcs.conf"

local function parse(mod, text)
  fuzz_cover(false) -- parse sets its own hook (the instruction limit)
  local ok, cfg, err = pcall(mod.parse, text, "fuzz.conf")
  fuzz_cover(true)
  lib.check(ok, "parse raised: %s", tostring(cfg))
  lib.check(type(cfg) == "table" or (cfg == nil and type(err) == "string"), "parse gave %s, %s",
    type(cfg), type(err))
  return cfg
end

return function(data)
  for _, mod in ipairs({ kvpconf, kvcsconf }) do
    local cfg = parse(mod, data)
    local ok, new, uerr = pcall(config.update_text, data, { log_level = "warn" })
    lib.check(ok, "update_text raised: %s", tostring(new))
    lib.check(type(new) == "string" or (new == nil and type(uerr) == "string"), "update_text gave %s",
      type(new))
    if cfg and new then
      local cfg2 = parse(mod, new)
      lib.check(cfg2 ~= nil, "the updated text does not parse:\n%s", new)
      lib.check(cfg2.log_level == "warn", "log_level %s after the update", tostring(cfg2.log_level))
      cfg2.log_level = cfg.log_level
      lib.check(lib.eq(cfg, cfg2), "the update changed other keys: %s -> %s", lib.show(cfg), lib.show(cfg2))
    end
  end
end
