-- kvp.conf: the proxy's config keys (SPEC §4), declared once. From this
-- list come the config file's checks (kv.config), what set_config accepts
-- and writes back (kv.settings: the live keys), and what dp.configure gets
-- (kv.config.to_c: the to_c keys, under that name). C has no defaults of
-- its own: the first dp.configure carries every to_c key.
--
--   M.decl            the declaration (kv.config.declare; spec fields there)
--   M.schema          name -> spec, for kv.config.parse
--   M.load(path)      -> cfg | nil, err
--   M.parse(text, chunkname) -> cfg | nil, err
--   M.to_c(cfg [, only]) -> the argument of dp.configure (only: a table whose
--                           keys are the config keys to send, e.g. changes)
--   M.servers(cfg)    -> { addr, ... }, cluster: the config servers the
--                        proxy links to; cluster true for config_servers
--                        (every one equal, kvp.cslink), false for
--                        { config_server_master, config_server_slave? }
--
-- config_servers (issue 14: kvcs sharing one store, any of them serves a
-- proxy) replaces config_server_master/slave: a config that sets it and
-- either of those is refused, naming both.

local config = require "kv.config"
local names = require "kv.names"

local M = {}

local INT_MAX = 2147483647 -- the data path keeps these in a C int
M.MAX_CONFIG_SERVERS = 16
M.DEFAULT_MASTER = "127.0.0.1:7100"

-- Rules between keys (kv.config.declare's check).
local function check(cfg, chunkname)
  if cfg.config_servers == "" then return true end
  local other = cfg.config_server_master ~= M.DEFAULT_MASTER and "config_server_master"
    or cfg.config_server_slave ~= "" and "config_server_slave"
  if not other then return true end
  return nil, ("config_servers and %s are both set in %s: config_servers replaces "
    .. "config_server_master and config_server_slave; set one or the other"):format(other, chunkname)
end

M.decl = config.declare({
  { name = "namespace", type = "string", required = true, check = names.valid_namespace },
  { name = "listen", type = "addr", default = "0.0.0.0:7400", to_c = "listen" },
  { name = "http_listen", type = "addr", default = "127.0.0.1:7500" },
  { name = "config_server_master", type = "addr", default = M.DEFAULT_MASTER,
    live = true, api = { ip = "master_cs_ip", port = "master_cs_port" } },
  { name = "config_server_slave", type = "addr", default = "", empty = true,
    live = true, api = { ip = "slave_cs_ip", port = "slave_cs_port" } },
  -- "ip:port,ip:port,...": the proxy ports of equal config servers; "": none
  { name = "config_servers", type = "string", default = "", max = 1024, live = true,
    check = function(v)
      if v == "" then return true end
      local list, err = names.endpoint_list(v, M.MAX_CONFIG_SERVERS)
      if not list then return nil, err end
      return true
    end },
  { name = "io_threads", type = "integer", default = 1, min = 1, max = 64, to_c = "io_threads" },
  { name = "max_qps", type = "integer", default = 0, min = 0, max = INT_MAX, -- 0: unlimited
    live = true, to_c = "max_qps" },
  { name = "max_client_num", type = "integer", default = 10000, min = 1, max = INT_MAX,
    live = true, to_c = "max_client_num" },
  { name = "slow_cmd_time", type = "integer", default = 10, min = 0, max = INT_MAX, -- ms
    live = true, to_c = "slow_cmd_time" },
  { name = "client_timeout", type = "integer", default = 0, min = 0, max = INT_MAX, -- s, 0: never
    live = true, to_c = "client_timeout" },
  { name = "request_timeout", type = "integer", default = 2000, min = 10, max = 600000, -- ms
    live = true, to_c = "request_timeout" },
  { name = "redis_down_timeout", type = "integer", default = 10, min = 1, max = 3600, -- s
    live = true, to_c = "redis_down_timeout" },
  { name = "update_slave_interval", type = "integer", default = 3600, min = 1, max = INT_MAX, -- s
    live = true },
  { name = "redis_password", type = "string", default = "", max = 200, -- C's limit
    live = true, to_c = "redis_password" },
  { name = "client_password", type = "string", default = "", max = 255, -- "": no AUTH
    to_c = "client_password" },
  -- with no client_password, serve loopback clients only (as Redis's
  -- protected mode); false serves everyone without a password
  { name = "protected_mode", type = "boolean", default = true, to_c = "protected_mode" },
  -- a client whose output (replies not read yet) passes this is closed;
  -- soft: when over it for client_output_soft_seconds; 0 = no limit
  { name = "client_output_hard_mb", type = "integer", default = 512, min = 0, max = 1048576,
    to_c = "client_output_hard_mb" },
  { name = "client_output_soft_mb", type = "integer", default = 0, min = 0, max = 1048576,
    to_c = "client_output_soft_mb" },
  { name = "client_output_soft_seconds", type = "integer", default = 60, min = 0, max = 86400,
    to_c = "client_output_soft_seconds" },
  -- all clients' buffers: over it the client using the most is closed;
  -- 0 = an eighth of the machine's memory
  { name = "maxmemory_clients_mb", type = "integer", default = 0, min = 0, max = 1048576,
    to_c = "maxmemory_clients_mb" },
  -- connections of clients' own per master (WATCH, blocking commands such
  -- as BLPOP: each waits on one), over all io_threads; past it such a
  -- command is refused. Redis's maxclients (10000) bounds the master side.
  { name = "owned_connections_max", type = "integer", default = 2048, min = 1, max = 100000,
    to_c = "owned_connections_max" },
  { name = "admin_token", type = "string", default = "" },                -- "": none
  -- the config servers' cluster_secret, proved on the control link
  -- (kv.handshake); "": only a config server on loopback accepts this proxy
  { name = "cluster_secret", type = "string", default = "", max = 1024 },
  -- seconds without any config server after which the proxy stops routing
  -- (its table may be outdated: README "Scaling without losing a write");
  -- 0: keep serving with the last table forever
  { name = "stale_table_limit", type = "integer", default = 0, min = 0, max = 86400 },
  { name = "log_file", type = "string", default = "" },                   -- "": stderr
  { name = "log_level", type = "enum", default = "info", values = { "debug", "info", "warn", "error" } },
  { name = "policy", type = "string", default = "lua/policy.lua", min = 1 },
}, "kvp.conf", check)

M.schema = M.decl.schema

function M.parse(text, chunkname) return M.decl:parse(text, chunkname) end
function M.load(path) return M.decl:load(path) end
function M.to_c(cfg, only) return config.to_c(M.decl, cfg, only) end

function M.servers(cfg)
  if cfg.config_servers ~= "" then
    return assert(names.endpoint_list(cfg.config_servers, M.MAX_CONFIG_SERVERS)), true
  end
  local servers = { cfg.config_server_master }
  if cfg.config_server_slave ~= "" then servers[2] = cfg.config_server_slave end
  return servers, false
end

return M
