local kvp_conf = require "kvp.conf"
local kvcs_conf = require "kvcs.conf"

describe("kvp.conf", function()
  it("has the SPEC §4 defaults", function()
    local cfg = assert(kvp_conf.parse('namespace = "test"\n'))
    assert.same({
      namespace = "test",
      listen = "0.0.0.0:7400",
      http_listen = "127.0.0.1:7500",
      config_server_master = "127.0.0.1:7100",
      config_server_slave = "",
      config_servers = "",
      io_threads = 1,
      max_qps = 0,
      max_client_num = 10000,
      slow_cmd_time = 10,
      client_timeout = 0,
      request_timeout = 2000,
      redis_down_timeout = 10,
      update_slave_interval = 3600,
      redis_password = "",
      client_password = "",
      protected_mode = true,
      client_output_hard_mb = 512, client_output_soft_mb = 0, client_output_soft_seconds = 60,
      maxmemory_clients_mb = 0, owned_connections_max = 2048,
      admin_token = "",
      cluster_secret = "",
      stale_table_limit = 0,
      log_file = "",
      log_level = "info",
      policy = "lua/policy.lua",
    }, cfg)
  end)

  it("protected_mode is a boolean (issue 11)", function()
    assert.equals(false, assert(kvp_conf.parse('namespace = "t"\nprotected_mode = false')).protected_mode)
    local cfg, err = kvp_conf.parse('namespace = "t"\nprotected_mode = "no"')
    assert.is_nil(cfg)
    assert.matches("protected_mode", err)
  end)

  it("accepts a full config", function()
    local cfg = assert(kvp_conf.parse([[
namespace = "test"
listen = "127.0.0.1:7401"
config_server_slave = "127.0.0.1:7101"
io_threads = 64
max_qps = 100000
request_timeout = 10
redis_down_timeout = 3600
log_level = "debug"
redis_password = "kvstore123"
]]))
    assert.equals("127.0.0.1:7101", cfg.config_server_slave)
    assert.equals(64, cfg.io_threads)
  end)

  local bad = {
    { "", "missing required config key 'namespace'" },
    { 'namespace = "../x"', "'namespace' in kvp.conf:1: namespace \"../x\" may only contain" },
    { 'namespace = "t"\nlissten = "0.0.0.0:1"', "unknown config key 'lissten' in kvp.conf:2 (did you mean 'listen'?)" },
    { 'namespace = "t"\nlisten = "0.0.0.0:99999"', "'listen'" },
    { 'namespace = "t"\nconfig_server_slave = "x"', "'config_server_slave'" },
    { 'namespace = "t"\nio_threads = 0', "'io_threads' in kvp.conf:2: expected an integer from 1 to 64, got 0" },
    { 'namespace = "t"\nio_threads = 65', "'io_threads'" },
    { 'namespace = "t"\nmax_qps = -1', "'max_qps'" },
    { 'namespace = "t"\nmax_client_num = 0', "'max_client_num'" },
    { 'namespace = "t"\nslow_cmd_time = -1', "'slow_cmd_time'" },
    { 'namespace = "t"\nclient_timeout = 1.5', "'client_timeout'" },
    { 'namespace = "t"\nrequest_timeout = 9', "'request_timeout'" },
    { 'namespace = "t"\nrequest_timeout = 600001', "'request_timeout'" },
    { 'namespace = "t"\nredis_down_timeout = 0', "'redis_down_timeout'" },
    { 'namespace = "t"\nredis_down_timeout = 3601', "'redis_down_timeout'" },
    { 'namespace = "t"\nupdate_slave_interval = 0', "'update_slave_interval'" },
    { 'namespace = "t"\nredis_password = 123', "'redis_password'" },
    { 'namespace = "t"\nlog_level = "verbose"', "'log_level'" },
    { 'namespace = "t"\npolicy = ""', "'policy'" },
    { 'namespace = "t"\nbackend_conns = 2', "unknown config key 'backend_conns'" },
    -- config_servers (issue 14): a list of ip:port, at most 16, none twice
    { 'namespace = "t"\nconfig_servers = "127.0.0.1:7100,x"',
      "invalid value for config key 'config_servers' in kvp.conf:2: address \"x\" is not of the form ip:port" },
    { 'namespace = "t"\nconfig_servers = "127.0.0.1:7100,127.0.0.1:99999"', "'config_servers' in kvp.conf:2: address" },
    { 'namespace = "t"\nconfig_servers = "127.0.0.1:7100,"', "'config_servers' in kvp.conf:2: address list" },
    { 'namespace = "t"\nconfig_servers = "127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7100"',
      "'config_servers' in kvp.conf:2: address \"127.0.0.1:7100\" is listed twice" },
    { 'namespace = "t"\nconfig_servers = 7100', "'config_servers' in kvp.conf:2: expected a string" },
    -- it replaces the master/slave pair: both set is refused, naming both
    { 'namespace = "t"\nconfig_servers = "127.0.0.1:7100,127.0.0.1:7101"\nconfig_server_master = "127.0.0.1:7200"',
      "config_servers and config_server_master are both set in kvp.conf: config_servers replaces" },
    { 'namespace = "t"\nconfig_servers = "127.0.0.1:7100"\nconfig_server_slave = "127.0.0.1:7101"',
      "config_servers and config_server_slave are both set in kvp.conf" },
  }
  for _, c in ipairs(bad) do
    it("rejects: " .. c[1]:gsub("\n", " | "), function()
      local cfg, err = kvp_conf.parse(c[1])
      assert.is_nil(cfg)
      assert.matches(c[2], err, 1, true)
    end)
  end

  it("config_servers: up to 16 addresses replace the master/slave pair (issue 14)", function()
    local list = {}
    for i = 1, 16 do list[i] = "127.0.0.1:" .. (7100 + i) end
    local cfg = assert(kvp_conf.parse('namespace = "t"\nconfig_servers = "' .. table.concat(list, ", ") .. '"'))
    local servers, cluster = kvp_conf.servers(cfg)
    assert.same(list, servers)
    assert.is_true(cluster)
    list[17] = "127.0.0.1:7200"
    local none, err = kvp_conf.parse('namespace = "t"\nconfig_servers = "' .. table.concat(list, ",") .. '"')
    assert.is_nil(none)
    assert.matches("has 17 addresses, at most 16", err, 1, true)
    -- the default master written out is not "set": only the list counts
    cfg = assert(kvp_conf.parse('namespace = "t"\nconfig_servers = "127.0.0.1:7101"\n'
      .. 'config_server_master = "127.0.0.1:7100"\nconfig_server_slave = ""'))
    assert.same({ { "127.0.0.1:7101" }, true }, { kvp_conf.servers(cfg) })
    -- without it: the master, then the slave
    cfg = assert(kvp_conf.parse('namespace = "t"\nconfig_server_slave = "127.0.0.1:7101"'))
    assert.same({ { "127.0.0.1:7100", "127.0.0.1:7101" }, false }, { kvp_conf.servers(cfg) })
    assert.same({ { "127.0.0.1:7100" }, false }, { kvp_conf.servers(assert(kvp_conf.parse('namespace = "t"'))) })
  end)

  it("refuses config_servers beside config_server_master in a loaded file, naming the file", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write('namespace = "t"\nconfig_server_master = "127.0.0.1:7200"\nconfig_servers = "127.0.0.1:7100"\n')
    f:close()
    local cfg, err = kvp_conf.load(path)
    os.remove(path)
    assert.is_nil(cfg)
    assert.equals("config_servers and config_server_master are both set in " .. path
      .. ": config_servers replaces config_server_master and config_server_slave; set one or the other", err)
  end)

  it("loads a file", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write('namespace = "test" -- ns\nio_threads = 4\n')
    f:close()
    local cfg = assert(kvp_conf.load(path))
    os.remove(path)
    assert.equals(4, cfg.io_threads)
    local none, err = kvp_conf.load(path)
    assert.is_nil(none)
    assert.matches(path, err, 1, true)
  end)
end)

describe("kvcs.conf", function()
  it("has the SPEC §5 defaults (a master)", function()
    assert.same({
      http_listen = "127.0.0.1:7000",
      proxy_listen = "127.0.0.1:7100",
      migration_listen = "127.0.0.1:7200",
      cs_listen = "127.0.0.1:7300",
      cluster_type = "data_store",
      support_ha = true,
      update_slave_interval = 10,
      replica_stale_after = 300,
      master_cs = "",
      table_dir = "table",
      redis_password = "",
      admin_token = "",
      cluster_secret = "",
      proxy_forget_after = 0,
      store = "file",
      etcd_endpoints = "",
      etcd_user = "",
      etcd_password = "",
      etcd_prefix = "/kvp",
      lease_ttl = 3,
      node_name = "",
      log_file = "",
      log_level = "info",
    }, assert(kvcs_conf.parse("")))
  end)

  it("accepts a slave config", function()
    local cfg = assert(kvcs_conf.parse([[
http_listen = "0.0.0.0:7001"
cluster_type = "cache"
support_ha = false
master_cs = "127.0.0.1:7300"
]]))
    assert.equals("cache", cfg.cluster_type)
    assert.equals(false, cfg.support_ha)
    assert.equals("127.0.0.1:7300", cfg.master_cs)
  end)

  local bad = {
    { 'cluster_type = "cluster"', "'cluster_type' in kvcs.conf:1: expected one of \"data_store\", \"cache\"" },
    { 'support_ha = "yes"', "'support_ha'" },
    { 'master_cs = "7300"', "'master_cs'" },
    { 'table_dir = ""', "'table_dir'" },
    { 'update_slave_interval = 0', "'update_slave_interval'" },
    { 'cs_listen = "0.0.0.0"', "'cs_listen'" },
    { 'namespace = "test"', "unknown config key 'namespace'" },
  }
  for _, c in ipairs(bad) do
    it("rejects: " .. c[1], function()
      local cfg, err = kvcs_conf.parse(c[1])
      assert.is_nil(cfg)
      assert.matches(c[2], err, 1, true)
    end)
  end
end)
