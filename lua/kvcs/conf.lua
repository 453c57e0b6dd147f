-- kvcs.conf: the config server's config keys (SPEC §5), declared once
-- (kv.config.declare): the config file's checks and what set_config accepts
-- (the live keys, kv.settings.changes) come from this list.
--
--   M.decl            the declaration (spec fields in kv.config)
--   M.schema          name -> spec, for kv.config.parse
--   M.load(path)      -> cfg | nil, err
--   M.parse(text, chunkname) -> cfg | nil, err

local config = require "kv.config"

local M = {}

M.decl = config.declare({
  { name = "http_listen", type = "addr", default = "127.0.0.1:7000" },
  { name = "proxy_listen", type = "addr", default = "127.0.0.1:7100" },
  { name = "migration_listen", type = "addr", default = "127.0.0.1:7200" },
  { name = "cs_listen", type = "addr", default = "127.0.0.1:7300" },
  { name = "cluster_type", type = "enum", default = "data_store", values = { "data_store", "cache" } },
  { name = "support_ha", type = "boolean", default = true, live = true },
  -- seconds between two INFO replication rounds over the masters (HA learns
  -- their replicas; also after every table change)
  { name = "update_slave_interval", type = "integer", default = 10, min = 1, max = 3600 },
  -- a replica whose link to its master went down more than this many
  -- seconds before the first proxy reported the master down is stale: it
  -- is never promoted (kvcs.ha)
  { name = "replica_stale_after", type = "integer", default = 300, min = 1, max = 86400 },
  { name = "master_cs", type = "addr", default = "", empty = true }, -- "": this is the master
  { name = "table_dir", type = "string", default = "table", min = 1 },
  { name = "redis_password", type = "string", default = "" },
  { name = "admin_token", type = "string", default = "" },
  -- the shared secret of the control ports (proxy, migration, cs-sync):
  -- every peer proves it (kv.handshake); "": loopback peers only
  { name = "cluster_secret", type = "string", default = "", max = 1024 },
  -- seconds after which a known proxy that left without UNREGISTER and has
  -- not come back stops blocking bucket moves (0: never; README "Scaling
  -- without losing a write" says what makes this safe)
  { name = "proxy_forget_after", type = "integer", default = 0, min = 0, max = 365 * 86400 },
  -- where the control state lives (issue 14): "file" (table_dir, one
  -- master and read-only slaves) or "etcd" (any number of kvcs on the same
  -- etcd cluster, one of them the leader)
  { name = "store", type = "enum", default = "file", values = { "file", "etcd" } },
  -- store = "etcd": the members' client addresses, "host:port,host:port"
  { name = "etcd_endpoints", type = "string", default = "" },
  { name = "etcd_user", type = "string", default = "" },
  { name = "etcd_password", type = "string", default = "" },
  { name = "etcd_prefix", type = "string", default = "/kvp", min = 2 },
  -- seconds of the leader's lease: a dead leader is replaced within it
  { name = "lease_ttl", type = "integer", default = 3, min = 1, max = 60 },
  -- this config server's name among the others ("": its http_listen)
  { name = "node_name", type = "string", default = "" },
  { name = "log_file", type = "string", default = "" },              -- "": stderr
  { name = "log_level", type = "enum", default = "info", values = { "debug", "info", "warn", "error" } },
}, "kvcs.conf")

M.schema = M.decl.schema

function M.parse(text, chunkname) return M.decl:parse(text, chunkname) end
function M.load(path) return M.decl:load(path) end

return M
