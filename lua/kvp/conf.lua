-- kvp.conf: the proxy's config schema (SPEC §4) and loader.
--
--   M.schema          the schema table (see kv.config for the spec fields)
--   M.load(path)      -> cfg | nil, err
--   M.parse(text, chunkname) -> cfg | nil, err

local config = require "kv.config"
local names = require "kv.names"

local M = {}

M.schema = {
  namespace             = { type = "string", required = true, check = names.valid_namespace },
  listen                = { type = "addr", default = "0.0.0.0:7400" },
  http_listen           = { type = "addr", default = "0.0.0.0:7500" },
  config_server_master  = { type = "addr", default = "127.0.0.1:7100" },
  config_server_slave   = { type = "addr", default = "", empty = true },
  io_threads            = { type = "integer", default = 1, min = 1, max = 64 },
  max_qps               = { type = "integer", default = 0, min = 0 },          -- 0: unlimited
  max_client_num        = { type = "integer", default = 10000, min = 1 },
  slow_cmd_time         = { type = "integer", default = 10, min = 0 },         -- ms
  client_timeout        = { type = "integer", default = 0, min = 0 },          -- s, 0: never
  request_timeout       = { type = "integer", default = 2000, min = 10, max = 600000 }, -- ms
  redis_down_timeout    = { type = "integer", default = 10, min = 1, max = 3600 },      -- s
  update_slave_interval = { type = "integer", default = 3600, min = 1 },       -- s
  redis_password        = { type = "string", default = "" },
  client_password       = { type = "string", default = "" },                   -- "": no AUTH
  admin_token           = { type = "string", default = "" },                   -- "": none
  log_file              = { type = "string", default = "" },                   -- "": stderr
  log_level             = { type = "enum", default = "info", values = { "debug", "info", "warn", "error" } },
  policy                = { type = "string", default = "lua/policy.lua", min = 1 },
}

function M.parse(text, chunkname)
  return config.parse(text, M.schema, chunkname or "kvp.conf")
end

function M.load(path)
  return config.load(path, M.schema)
end

return M
