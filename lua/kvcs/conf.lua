-- kvcs.conf: the config server's config schema (SPEC §5) and loader.
--
--   M.schema          the schema table (see kv.config for the spec fields)
--   M.load(path)      -> cfg | nil, err
--   M.parse(text, chunkname) -> cfg | nil, err

local config = require "kv.config"

local M = {}

M.schema = {
  http_listen      = { type = "addr", default = "0.0.0.0:7000" },
  proxy_listen     = { type = "addr", default = "0.0.0.0:7100" },
  migration_listen = { type = "addr", default = "0.0.0.0:7200" },
  cs_listen        = { type = "addr", default = "0.0.0.0:7300" },
  cluster_type     = { type = "enum", default = "data_store", values = { "data_store", "cache" } },
  support_ha       = { type = "boolean", default = true },
  -- seconds between two INFO replication rounds over the masters (HA learns
  -- their replicas; also after every table change)
  update_slave_interval = { type = "integer", default = 10, min = 1, max = 3600 },
  -- a replica whose link to its master went down more than this many
  -- seconds before the first proxy reported the master down is stale: it
  -- is never promoted (kvcs.ha)
  replica_stale_after = { type = "integer", default = 300, min = 1, max = 86400 },
  master_cs        = { type = "addr", default = "", empty = true }, -- "": this is the master
  table_dir        = { type = "string", default = "table", min = 1 },
  redis_password   = { type = "string", default = "" },
  admin_token      = { type = "string", default = "" },
  log_file         = { type = "string", default = "" },              -- "": stderr
  log_level        = { type = "enum", default = "info", values = { "debug", "info", "warn", "error" } },
}

function M.parse(text, chunkname)
  return config.parse(text, M.schema, chunkname or "kvcs.conf")
end

function M.load(path)
  return config.load(path, M.schema)
end

return M
