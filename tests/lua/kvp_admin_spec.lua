-- The proxy's admin side without a server: windowed stats over fake
-- counters, set_config planning (all or nothing, file text kept), and the
-- HTTP handlers on a fake px.
local stats = require "kvp.stats"
local settings = require "kvp.settings"
local http_api = require "kvp.http_api"
local codes = require "kv.codes"
local btable = require "kv.btable"
local prom = require "kv.prom"

local function counters()
  local c = { total = 0, slow = 0, rt_sum_us = 0, rt_count = 0, clients = 3, cmds = {} }
  local function read()
    local copy = {}
    for k, v in pairs(c) do copy[k] = v end
    copy.cmds = {}
    for k, v in pairs(c.cmds) do copy.cmds[k] = v end
    return copy
  end
  return c, read
end

describe("kvp.stats", function()
  it("reports totals since the last reset and per-command counts", function()
    local c, read = counters()
    local s = stats.new(read, 0)
    c.total, c.cmds.SET, c.cmds.GET, c.slow = 150, 100, 50, 2
    local i = stats.info(s)
    assert.equal(150, i.total_cmd_count)
    assert.same({ SET = 100, GET = 50 }, i.cmds)
    assert.equal(2, i.slow_cmd_count)
    assert.equal(3, i.client_count)
    stats.reset(s)
    c.total, c.cmds.SET = 160, 110
    i = stats.info(s)
    assert.equal(10, i.total_cmd_count)
    assert.same({ SET = 10 }, i.cmds)
    assert.equal(0, i.slow_cmd_count)
  end)

  it("computes qps and average_rt over the last window, up to the read", function()
    local c, read = counters()
    local s = stats.new(read, 100)
    for t = 101, 105 do stats.tick(s, t) end
    -- 5000 commands of 500 us each in the second before the read
    c.total, c.rt_sum_us, c.rt_count = 5000, 2500000, 5000
    local i = stats.info(s, 105.5)
    assert.equal(909, i.qps)          -- 5000 over the 5.5 s since the oldest kept snapshot
    assert.equal(0.5, i.average_rt)
    for t = 106, 112 do stats.tick(s, t) end -- quiet: the burst leaves the window
    i = stats.info(s, 112)
    assert.equal(0, i.qps)
    assert.equal(0, i.average_rt)
  end)
end)

local CONF = [[
-- my proxy
namespace = "test"
listen = "0.0.0.0:7400"   -- clients
config_server_master = "127.0.0.1:7100"
request_timeout = 2000
]]

describe("kvp.settings.plan", function()
  local cur = { config_server_master = "127.0.0.1:7100", config_server_slave = "" }

  it("changes the values and keeps every other line and comment", function()
    local text, cfg, changes = settings.plan(CONF, cur, { request_timeout = 500, max_qps = 10 })
    assert.truthy(text, cfg)
    assert.truthy(text:find("-- my proxy", 1, true))
    assert.truthy(text:find('listen = "0.0.0.0:7400"   -- clients', 1, true))
    assert.truthy(text:find("request_timeout = 500", 1, true))
    assert.truthy(text:find("max_qps = 10", 1, true))
    assert.equal(500, cfg.request_timeout)
    assert.same({ request_timeout = 500, max_qps = 10 }, changes)
  end)

  it("joins ip and port into the config server address", function()
    local text, cfg = settings.plan(CONF, cur, { master_cs_port = 7101 })
    assert.truthy(text)
    assert.equal("127.0.0.1:7101", cfg.config_server_master)
    text, cfg = settings.plan(CONF, cur, { slave_cs_ip = "127.0.0.1", slave_cs_port = 7102 })
    assert.equal("127.0.0.1:7102", cfg.config_server_slave)
  end)

  it("sets config_servers, writing the master/slave pair back to its defaults (issue 14)", function()
    local paired = CONF:gsub('"127.0.0.1:7100"', '"127.0.0.1:7300"') .. 'config_server_slave = "127.0.0.1:7301"\n'
    local pcur = assert(require("kvp.conf").parse(paired))
    local text, cfg, changes = settings.plan(paired, pcur, { config_servers = "127.0.0.1:7100,127.0.0.1:7101" })
    assert.truthy(text, cfg)
    assert.same({ config_servers = "127.0.0.1:7100,127.0.0.1:7101", config_server_master = "127.0.0.1:7100",
                  config_server_slave = "" }, changes)
    assert.truthy(text:find('config_server_master = "127.0.0.1:7100"\n', 1, true), text)
    assert.truthy(text:find('config_server_slave = ""\n', 1, true), text)
    assert.truthy(text:find('config_servers = "127.0.0.1:7100,127.0.0.1:7101"\n', 1, true), text)
    assert.same({ { "127.0.0.1:7100", "127.0.0.1:7101" }, true }, { require("kvp.conf").servers(cfg) })
    -- a pair already at its defaults is not written again
    text, cfg, changes = settings.plan(CONF, cur, { config_servers = "127.0.0.1:7101" })
    assert.same({ config_servers = "127.0.0.1:7101" }, changes)
    -- and back: "" and a master
    local t2, cfg2, ch2 = settings.plan(text, cfg, { config_servers = "", master_cs_port = 7300 })
    assert.truthy(t2, cfg2)
    assert.same({ config_servers = "", config_server_master = "127.0.0.1:7300" }, ch2)
    assert.same({ { "127.0.0.1:7300" }, false }, { require("kvp.conf").servers(cfg2) })
  end)

  local bad = {
    { "an unknown key", { request_timeout = 500, bogus = 1 }, codes.UNKNOWN_CONFIG_KEY, "bogus" },
    { "a bad config_servers list", { config_servers = "127.0.0.1:7100,127.0.0.1:7100" }, codes.BAD_CONFIG_VALUE,
      "'config_servers': address \"127.0.0.1:7100\" is listed twice" },
    { "config_servers with a master", { config_servers = "127.0.0.1:7101", master_cs_port = 7300 },
      codes.BAD_CONFIG_VALUE, "config_servers and config_server_master are both set" },
    { "a string for a number", { max_qps = "10" }, codes.BAD_CONFIG_VALUE, "max_qps" },
    { "a value out of range", { request_timeout = 5 }, codes.BAD_CONFIG_VALUE, "request_timeout" },
    { "a bad port", { master_cs_port = 70000 }, codes.BAD_CONFIG_VALUE, "config_server_master" },
    { "nothing", {}, codes.BAD_PARAM, "nothing" },
  }
  for _, b in ipairs(bad) do
    it("refuses " .. b[1] .. ", naming it", function()
      local text, code, msg = settings.plan(CONF, cur, b[2])
      assert.is_nil(text)
      assert.equal(b[3], code)
      assert.truthy(msg:find(b[4], 1, true), msg)
    end)
  end
end)

describe("kvp.http_api", function()
  local function px()
    local c, read = counters()
    local t = btable.init("test", 256, { "127.0.0.1:6371" })
    local p = {
      cfg = { namespace = "test", config_server_master = "127.0.0.1:7100", config_server_slave = "" },
      state = { table = t },
      stats = stats.new(read, 0),
      saved = nil, applied = nil, requests = {},
    }
    p.counters = c
    p.config_text = function() return CONF end
    p.save_config = function(text) p.saved = text return true end
    p.apply = function(cfg, ch) p.applied = ch end
    p.reply = { status = "OK" }
    p.request = function(...) p.requests[#p.requests + 1] = { ... } return p.reply end
    return p
  end

  it("stats_info and reset_stats", function()
    local p = px()
    p.counters.total, p.counters.cmds.SET = 7, 7
    local code, _, data = http_api.stats_info(p)
    assert.equal(codes.OK, code)
    assert.equal(7, data.total_cmd_count)
    assert.equal(codes.OK, (http_api.reset_stats(p)))
    assert.equal(0, select(3, http_api.stats_info(p)).total_cmd_count)
  end)

  it("set_config saves then applies; a bad request saves and applies nothing", function()
    local p = px()
    assert.equal(codes.OK, (http_api.set_config(p, { client_timeout = 30 })))
    assert.truthy(p.saved:find("client_timeout = 30", 1, true))
    assert.same({ client_timeout = 30 }, p.applied)
    local q = px()
    assert.equal(codes.UNKNOWN_CONFIG_KEY, (http_api.set_config(q, { client_timeout = 30, nope = 1 })))
    assert.is_nil(q.saved)
    assert.is_nil(q.applied)
  end)

  it("set_config reports a failed write and applies nothing", function()
    local p = px()
    p.save_config = function() return nil, "disk full" end
    local code, msg = http_api.set_config(p, { max_qps = 1 })
    assert.equal(codes.SAVE_FAILED, code)
    assert.truthy(msg:find("disk full", 1, true))
    assert.is_nil(p.applied)
  end)

  it("bucket_table shows the table in use", function()
    local p = px()
    local code, _, data = http_api.bucket_table(p)
    assert.equal(codes.OK, code)
    assert.equal(256, #data.table["127.0.0.1:6371"])
    p.state.table = nil
    assert.equal(codes.NO_NAMESPACE, (http_api.bucket_table(p)))
  end)

  it("patterns go to the config server; its codes come back", function()
    local p = px()
    assert.equal(codes.OK, (http_api.add_pattern(p, { pattern = "aa*" })))
    assert.same({ "PATTERN", "ADD", "test", "aa*" }, p.requests[1])
    assert.equal(codes.BAD_PARAM, (http_api.add_pattern(p, { pattern = "" })))
    assert.equal(codes.BAD_PARAM, (http_api.del_pattern(p, {})))
    p.reply = { err = "ERR 1022 no such pattern 'zz'" }
    local code, msg = http_api.del_pattern(p, { pattern = "zz" })
    assert.equal(codes.NO_PATTERN, code)
    assert.equal("no such pattern 'zz'", msg)
    p.request = function() return nil, "no config server reachable" end
    assert.equal(codes.CS_UNREACHABLE, (http_api.add_pattern(p, { pattern = "x" })))
  end)
end)

describe("kv.prom", function()
  it("groups samples under one HELP/TYPE and escapes labels", function()
    local m = prom.new()
    m:add("a_total", "counter", "things", 3, { cmd = 'S"E\\T' })
    m:add("a_total", "counter", "things", 4, { cmd = "GET" })
    m:add("b", "gauge", "flag", true)
    assert.equal('# HELP a_total things\n# TYPE a_total counter\na_total{cmd="S\\"E\\\\T"} 3\n'
      .. 'a_total{cmd="GET"} 4\n# HELP b flag\n# TYPE b gauge\nb 1\n', m:text())
  end)
end)

describe("kvp.health.judge", function()
  local health = require "kvp.health"
  it("goes down only after down_timeout without a valid reply, up at the first one", function()
    local m = { down = false, last_ok = 100 }
    assert.is_nil(health.judge(m, 101, true, 10))
    assert.is_nil(health.judge(m, 105, false, 10))
    assert.is_nil(health.judge(m, 110.9, false, 10))
    assert.equal("down", health.judge(m, 111, false, 10))
    assert.is_nil(health.judge(m, 112, false, 10)) -- stays down: no second transition
    assert.equal("up", health.judge(m, 113, true, 10))
    assert.is_nil(health.judge(m, 114, true, 10))
    assert.equal(114, m.last_ok)
  end)
end)
