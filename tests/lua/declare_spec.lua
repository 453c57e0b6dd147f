-- Config keys declared once (kv.config.declare): the config file's checks,
-- set_config (kv.settings, kvp.settings), the write-back and dp.configure's
-- argument (kv.config.to_c) all come from one list per binary.
local config = require "kv.config"
local settings = require "kv.settings"
local codes = require "kv.codes"
local kvp_conf = require "kvp.conf"
local kvp_settings = require "kvp.settings"

local INT_MAX = 2147483647
local SET_CONFIG = { -- SPEC §4 (and issue 14's config_servers): what /kvstore/proxy/set_config accepts
  "client_timeout", "config_servers", "master_cs_ip", "master_cs_port", "max_client_num", "max_qps",
  "redis_down_timeout", "redis_password", "request_timeout", "slave_cs_ip", "slave_cs_port",
  "slow_cmd_time", "update_slave_interval",
}

describe("kv.config.declare", function()
  local function declares(keys) return pcall(config.declare, keys, "t.conf") end

  local misuse = {
    { "a key declared twice", { { name = "a", type = "string", default = "" },
                                { name = "a", type = "string", default = "" } }, "declared twice" },
    { "a name that is not an identifier", { { name = "a-b", type = "string", default = "" } }, "identifier" },
    { "an integer without max", { { name = "n", type = "integer", default = 1, min = 0 } }, "min and max" },
    { "an integer without min", { { name = "n", type = "integer", default = 1, max = 9 } }, "min and max" },
    { "an integer past a C int", { { name = "n", type = "integer", default = 1, min = 0, max = INT_MAX + 1 } },
      "C int" },
    { "two keys to one C name", { { name = "a", type = "string", default = "", to_c = "x" },
                                  { name = "b", type = "string", default = "", to_c = "x" } }, "to_c" },
    { "api on a key that is not live", { { name = "a", type = "addr", default = "1.2.3.4:5",
                                           api = { ip = "a_ip", port = "a_port" } } }, "api" },
    { "api on a string", { { name = "a", type = "string", default = "", live = true,
                             api = { ip = "a_ip", port = "a_port" } } }, "api" },
    { "one set_config name for two keys", { { name = "a", type = "string", default = "", live = true },
      { name = "b", type = "addr", default = "1.2.3.4:5", live = true, api = { ip = "a", port = "b_port" } } },
      "used twice" },
    { "live that is not a boolean", { { name = "a", type = "string", default = "", live = "yes" } }, "live" },
    { "a default out of range", { { name = "n", type = "integer", default = 10, min = 0, max = 9 } }, "default of n" },
    { "no default, not required", { { name = "a", type = "string" } }, "needs a default" },
  }
  for _, m in ipairs(misuse) do
    it("raises an error for " .. m[1], function()
      local ok, err = declares(m[2])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(m[3], 1, true), err)
    end)
  end

  it("gives the schema, the keys in order, and parse/load under the file's name", function()
    local decl = config.declare({
      { name = "b", type = "integer", default = 2, min = 1, max = 9, to_c = "bee" },
      { name = "a", type = "string", default = "x" },
    }, "t.conf")
    assert.equal("b", decl.keys[1].name)
    assert.equal(decl.keys[2], decl.schema.a)
    assert.same({ a = "x", b = 3 }, assert(decl:parse("b = 3")))
    local cfg, err = decl:parse("b = 10")
    assert.is_nil(cfg)
    assert.truthy(err:find("'b' in t.conf:1: expected an integer from 1 to 9, got 10", 1, true), err)
    assert.same({ bee = 3 }, config.to_c(decl, { a = "x", b = 3 }))
    assert.same({}, config.to_c(decl, { a = "x", b = 3 }, { a = "y" }))
  end)
end)

describe("kv.config.declare's rule between keys", function()
  local decl = config.declare({
    { name = "a", type = "string", default = "" },
    { name = "b", type = "string", default = "" },
  }, "t.conf", function(cfg, chunkname)
    if cfg.a ~= "" and cfg.b ~= "" then return nil, "a and b are both set in " .. chunkname end
    return true
  end)

  it("runs on parse and load, after the keys' own checks, naming the file", function()
    assert.same({ a = "x", b = "" }, assert(decl:parse('a = "x"')))
    assert.same({ nil, "a and b are both set in t.conf" }, { decl:parse('a = "x"\nb = "y"') })
    assert.same({ nil, "a and b are both set in my.conf" }, { decl:parse('a = "x"\nb = "y"', "my.conf") })
    local _, err = decl:parse('a = 1\nb = "y"')
    assert.truthy(err:find("'a' in t.conf:1", 1, true), err)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write('a = "x"\nb = "y"\n')
    f:close()
    assert.same({ nil, "a and b are both set in " .. path }, { decl:load(path) })
    os.remove(path)
    assert.is_nil((decl:load(path)))
  end)

  it("set_config obeys it too", function()
    local live = config.declare({
      { name = "a", type = "string", default = "", live = true },
      { name = "b", type = "string", default = "", live = true },
    }, "t.conf", decl.check)
    local text, code, msg = settings.plan(live, 'a = "x"\n', { a = "x", b = "" }, { b = "y" })
    assert.is_nil(text)
    assert.equal(codes.BAD_CONFIG_VALUE, code)
    assert.equal("a and b are both set in t.conf", msg)
    assert.truthy(settings.plan(live, 'a = "x"\n', { a = "x", b = "" }, { a = "", b = "y" }))
  end)

  it("must be a function", function()
    assert.is_false((pcall(config.declare, {}, "t.conf", "no")))
  end)
end)

describe("kvp.conf, the declaration", function()
  -- what lkvp.c's dp.configure takes (cfg_keys there): Lua sends every one
  -- at start, so C holds no default of its own
  local C_KEYS = {
    "client_output_hard_mb", "client_output_soft_mb", "client_output_soft_seconds",
    "client_password", "client_timeout", "io_threads", "listen", "max_client_num", "max_qps",
    "maxmemory_clients_mb", "owned_connections_max", "protected_mode",
    "redis_down_timeout", "redis_password", "request_timeout", "slow_cmd_time",
  }
  local function sorted_keys(t)
    local out = {}
    for k in pairs(t) do out[#out + 1] = k end
    table.sort(out)
    return out
  end

  it("sends every C key, defaults included, at start (io_threads 1)", function()
    local cfg = assert(kvp_conf.parse('namespace = "t"'))
    local c = kvp_conf.to_c(cfg)
    assert.same(C_KEYS, sorted_keys(c))
    assert.same({
      listen = "0.0.0.0:7400", io_threads = 1, client_password = "", redis_password = "",
      request_timeout = 2000, client_timeout = 0, max_client_num = 10000, max_qps = 0,
      slow_cmd_time = 10, redis_down_timeout = 10, protected_mode = true,
      client_output_hard_mb = 512, client_output_soft_mb = 0, client_output_soft_seconds = 60,
      maxmemory_clients_mb = 0, owned_connections_max = 2048,
    }, c)
  end)

  it("sends only the changed C keys after set_config", function()
    local cfg = assert(kvp_conf.parse('namespace = "t"\nmax_qps = 5'))
    assert.same({ max_qps = 5 },
      kvp_conf.to_c(cfg, { max_qps = 5, config_server_master = "1.2.3.4:5", update_slave_interval = 9 }))
  end)

  it("every integer reaching C fits a C int", function()
    for _, spec in ipairs(kvp_conf.decl.keys) do
      if spec.type == "integer" then
        assert.truthy(spec.min >= 0 and spec.max <= INT_MAX, spec.name)
      end
    end
  end)

  it("set_config accepts exactly SPEC §4's names", function()
    local accepted = {}
    for _, spec in ipairs(kvp_conf.decl.keys) do
      if spec.live and spec.api then
        accepted[spec.api.ip], accepted[spec.api.port] = true, true
      elseif spec.live then
        accepted[spec.name] = true
      end
    end
    assert.same(SET_CONFIG, sorted_keys(accepted))
  end)

  -- the config file: every integer key, both bounds
  for _, spec in ipairs(kvp_conf.decl.keys) do
    if spec.type == "integer" then
      it(("checks %s in the file from %d to %d"):format(spec.name, spec.min, spec.max), function()
        local base = 'namespace = "t"\n' .. spec.name .. " = "
        assert.equal(spec.min, assert(kvp_conf.parse(base .. spec.min))[spec.name])
        assert.equal(spec.max, assert(kvp_conf.parse(base .. spec.max))[spec.name])
        for _, v in ipairs({ spec.min - 1, spec.max + 1, spec.min + 0.5 }) do
          local cfg, err = kvp_conf.parse(base .. config.literal(v))
          assert.is_nil(cfg)
          assert.truthy(err:find("config key '" .. spec.name .. "' in kvp.conf:2", 1, true), err)
        end
      end)
    end
  end

  local bad_file = {
    { "a string key given a number", "admin_token = 1", "'admin_token'" },
    { "an addr key given a bad address", 'http_listen = "1.2.3.4"', "'http_listen'" },
    { "an enum key given another word", 'log_level = "loud"', "'log_level'" },
    { "a string key too long for C", "redis_password = ('x'):rep(201)", "'redis_password'" },
    { "client_password too long for C", "client_password = ('x'):rep(256)", "'client_password'" },
    { "an unknown key", "max_qpss = 1", "unknown config key 'max_qpss' in kvp.conf:2 (did you mean 'max_qps'?)" },
    { "max_client_num past a C int", "max_client_num = 4294967296", "'max_client_num'" },
    { "max_qps past a C int", "max_qps = 4294967297", "'max_qps'" },
  }
  for _, b in ipairs(bad_file) do
    it("refuses in the file " .. b[1], function()
      local cfg, err = kvp_conf.parse('namespace = "t"\n' .. b[2])
      assert.is_nil(cfg)
      assert.truthy(err:find(b[3], 1, true), err)
    end)
  end
end)

local CONF = [[
-- operator's note
namespace = "test"
max_qps = 0 -- unlimited
config_server_master = "127.0.0.1:7100"
]]

describe("set_config from the declaration", function()
  local cur = assert(kvp_conf.parse(CONF))

  local function plan(body) return kvp_settings.plan(CONF, cur, body) end

  local function refused(body, code, what)
    local text, got, msg = plan(body)
    assert.is_nil(text)
    assert.equal(code, got, msg)
    assert.truthy(msg:find(what, 1, true), msg)
  end

  -- every live key at both bounds, and one past each
  for _, spec in ipairs(kvp_conf.decl.keys) do
    if spec.live and spec.type == "integer" then
      it(("takes %s from %d to %d, refuses what is past"):format(spec.name, spec.min, spec.max), function()
        for _, v in ipairs({ spec.min, spec.max }) do
          local text, cfg, changes = plan({ [spec.name] = v })
          assert.truthy(text, cfg)
          assert.equal(v, cfg[spec.name])
          assert.same({ [spec.name] = v }, changes)
          assert.truthy(text:find(spec.name .. " = " .. config.literal(v), 1, true))
        end
        for _, v in ipairs({ spec.min - 1, spec.max + 1, spec.min + 0.5, tostring(spec.min), true }) do
          refused({ [spec.name] = v }, codes.BAD_CONFIG_VALUE, "'" .. spec.name .. "'")
        end
      end)
    end
  end

  it("refuses the values C cannot hold in an int (BAD_CONFIG_VALUE)", function()
    refused({ max_client_num = 4294967296 }, codes.BAD_CONFIG_VALUE, "'max_client_num'")
    refused({ max_qps = 4294967297 }, codes.BAD_CONFIG_VALUE, "'max_qps'")
    refused({ max_qps = 2147483648 }, codes.BAD_CONFIG_VALUE,
      "invalid value for config key 'max_qps': expected an integer from 0 to 2147483647, got 2147483648")
  end)

  it("takes redis_password up to C's 200 bytes, only as a string", function()
    local _, cfg = plan({ redis_password = ("p"):rep(200) })
    assert.equal(200, #cfg.redis_password)
    refused({ redis_password = ("p"):rep(201) }, codes.BAD_CONFIG_VALUE, "'redis_password'")
    refused({ redis_password = 123 }, codes.BAD_CONFIG_VALUE, "'redis_password'")
  end)

  it("refuses a key read at start only, naming it, with today's code", function()
    for _, spec in ipairs(kvp_conf.decl.keys) do
      if not spec.live then
        refused({ [spec.name] = spec.default or "x" }, codes.UNKNOWN_CONFIG_KEY,
          "unknown config key '" .. spec.name .. "' (it is read at start only")
      end
    end
    -- a live address is set by its ip and port, not by its name
    refused({ config_server_master = "127.0.0.1:7101" }, codes.UNKNOWN_CONFIG_KEY,
      "unknown config key 'config_server_master'")
  end)

  it("refuses an unknown key before any bad value: all or nothing", function()
    refused({ max_qps = -1, bogus = 1 }, codes.UNKNOWN_CONFIG_KEY, "unknown config key 'bogus' (set_config takes "
      .. table.concat(SET_CONFIG, ", ") .. ")")
    refused({ max_qps = 10, request_timeout = 0 }, codes.BAD_CONFIG_VALUE, "'request_timeout'")
    refused({}, codes.BAD_PARAM, "nothing to change")
  end)

  it("joins ip and port into the address, checking each", function()
    local text, cfg, changes = plan({ master_cs_ip = "127.0.0.2" })
    assert.truthy(text:find('config_server_master = "127.0.0.2:7100"', 1, true))
    assert.same({ config_server_master = "127.0.0.2:7100" }, changes)
    _, cfg = plan({ slave_cs_ip = "127.0.0.1", slave_cs_port = 7101 })
    assert.equal("127.0.0.1:7101", cfg.config_server_slave)
    for _, p in ipairs({ 0, 65536, 7100.5, "7100" }) do
      refused({ master_cs_port = p }, codes.BAD_CONFIG_VALUE, "master_cs_port (of config key 'config_server_master')")
    end
    refused({ master_cs_ip = 1 }, codes.BAD_CONFIG_VALUE, "master_cs_ip")
    refused({ master_cs_ip = "not an ip" }, codes.BAD_CONFIG_VALUE, "'config_server_master'")
    refused({ slave_cs_port = 7101 }, codes.BAD_CONFIG_VALUE, "'config_server_slave'") -- no slave ip yet
  end)

  it("writes back into the text, keeping the rest", function()
    local text = plan({ max_qps = 7, client_timeout = 30 })
    assert.equal([[
-- operator's note
namespace = "test"
max_qps = 7 -- unlimited
config_server_master = "127.0.0.1:7100"
client_timeout = 30
]], text)
  end)

  it("works for any declaration (a boolean key)", function()
    local decl = config.declare({
      { name = "on", type = "boolean", default = true, live = true },
      { name = "dir", type = "string", default = "d" },
    }, "x.conf")
    local text, cfg = settings.plan(decl, "on = true\n", {}, { on = false })
    assert.equal("on = false\n", text)
    assert.equal(false, cfg.on)
    local none, code = settings.plan(decl, "on = true\n", {}, { on = "no" })
    assert.is_nil(none)
    assert.equal(codes.BAD_CONFIG_VALUE, code)
    assert.equal(codes.UNKNOWN_CONFIG_KEY, select(2, settings.plan(decl, "", {}, { dir = "e" })))
  end)
end)

describe("kvcs.conf, the declaration", function()
  local kvcs_conf = require "kvcs.conf"
  local api = require "kvcs.api"

  local function cs()
    local c = { cfg = assert(kvcs_conf.parse("")), support_ha = true, saved = {} }
    c.save_config = function(ch) c.saved[#c.saved + 1] = ch return true end
    return c
  end

  it("set_config takes only support_ha, as a boolean, all or nothing", function()
    local c = cs()
    assert.equal(codes.OK, (api.set_config(c, { support_ha = false })))
    assert.same({ { support_ha = false } }, c.saved)
    assert.is_false(c.support_ha)
    local code, msg = api.set_config(c, { support_ha = true, x = 1 })
    assert.equal(codes.UNKNOWN_CONFIG_KEY, code)
    assert.equal("unknown config key 'x' (set_config takes support_ha)", msg)
    code, msg = api.set_config(c, { cluster_type = "cache" })
    assert.equal(codes.UNKNOWN_CONFIG_KEY, code)
    assert.truthy(msg:find("read at start only", 1, true), msg)
    code, msg = api.set_config(c, { support_ha = "yes" })
    assert.equal(codes.BAD_CONFIG_VALUE, code)
    assert.equal([[invalid value for config key 'support_ha': expected true or false, got "yes"]], msg)
    assert.equal(codes.BAD_PARAM, (api.set_config(c, {})))
    assert.equal(1, #c.saved)
    assert.is_false(c.support_ha)
  end)
end)
