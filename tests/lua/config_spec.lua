local config = require "kv.config"

local schema = {
  name    = { type = "string", required = true },
  label   = { type = "string", default = "x", min = 1, max = 8 },
  count   = { type = "integer", default = 2, min = 1, max = 64 },
  ratio   = { type = "number", default = 0.5, min = 0, max = 1 },
  on      = { type = "boolean", default = true },
  listen  = { type = "addr", default = "0.0.0.0:7400" },
  slave   = { type = "addr", default = "", empty = true },
  level   = { type = "enum", default = "info", values = { "debug", "info" } },
  even    = { type = "integer", default = 0, check = function(v)
    if v % 2 == 0 then return true end
    return nil, "must be even"
  end },
}

local function parse(text)
  return config.parse(text, schema, "t.conf")
end

describe("kv.config.parse", function()
  it("reads values, comments and fills defaults", function()
    local cfg = assert(parse([[
-- a comment
name = "svc"   -- trailing comment
count = 8
ratio = .25
on = false
listen = "localhost:1"
slave = "127.0.0.1:7101"
level = "debug"
even = 4
]]))
    assert.same({
      name = "svc", label = "x", count = 8, ratio = 0.25, on = false,
      listen = "localhost:1", slave = "127.0.0.1:7101", level = "debug", even = 4,
    }, cfg)
  end)

  it("fills every default when only the required key is set", function()
    local cfg = assert(parse('name = "a"'))
    assert.equals(2, cfg.count)
    assert.equals("", cfg.slave)
    assert.equals(true, cfg.on)
    assert.equals("info", cfg.level)
  end)

  it("allows expressions of literals", function()
    local cfg = assert(parse('name = ("x"):rep(2) .. "y"\ncount = 4 * 8'))
    assert.equals("xxy", cfg.name)
    assert.equals(32, cfg.count)
  end)

  it("treats name = nil as absent", function()
    assert.equals(2, assert(parse('name = "a"\ncount = nil')).count)
  end)

  local bad = {
    { 'name = "a"\nlissten = "1.2.3.4:5"', "unknown config key 'lissten' in t.conf:2 (did you mean 'listen'?)" },
    { 'name = "a"\nzzzzzz = 1', "unknown config key 'zzzzzz' in t.conf:2" },
    { 'count = 3', "missing required config key 'name' in t.conf" },
    { 'name = 5', "config key 'name' in t.conf:1: expected a string" },
    { 'name = "a"\ncount = 0', "'count' in t.conf:2: expected an integer from 1 to 64, got 0" },
    { 'name = "a"\ncount = 65', "got 65" },
    { 'name = "a"\ncount = 2.5', "expected an integer" },
    { 'name = "a"\ncount = "2"', 'got "2"' },
    { 'name = "a"\ncount = 1/0', "expected an integer" },
    { 'name = "a"\nratio = 2', "expected a number from 0 to 1" },
    { 'name = "a"\nratio = 0/0', "expected a number" },
    { 'name = "a"\non = "yes"', "expected true or false" },
    { 'name = "a"\nlabel = ""', "expected a string in quotes of 1 to 8 characters, got \"\"" },
    { 'name = "a"\nlabel = "123456789"', "of 1 to 8 characters" },
    { 'name = "a"\nlisten = "1.2.3.4:0"', "'listen' in t.conf:2: expected an address" },
    { 'name = "a"\nlisten = ""', "expected an address" },
    { 'name = "a"\nlisten = "example.com:80"', "host must be" },
    { 'name = "a"\nslave = "127.0.0.1"', "or \"\"" },
    { 'name = "a"\nlevel = "trace"', 'expected one of "debug", "info", got "trace"' },
    { 'name = "a"\nlevel = info', "unknown name 'info'" },
    { 'name = "a"\neven = 3', "'even' in t.conf:2: must be even" },
    { 'name = "a"\nname = "b"', "config key 'name' is set twice (lines 1 and 2)" },
    { 'name = "a"\ncount = {}', "got a table" },
    { 'name = "a"\ncount = print', "unknown name 'print'" },
    { 'name = "a"\nx = os.exit()', "t.conf:2: unknown name 'os'" },
    { 'name = "a"\nrequire "os"', "unknown name 'require'" },
    { 'name = "a"\nwhile true do end', "t.conf:2: config runs too long" },
    { 'name = "a"\ncount 5', "syntax error in t.conf:2:" },
    { 'name = "a"\nerror("boom")', "unknown name 'error'" },
    { "\27LJ", "precompiled Lua is not accepted" },
  }
  for _, c in ipairs(bad) do
    it("rejects: " .. c[1]:gsub("\n", " | "), function()
      local cfg, err = parse(c[1])
      assert.is_nil(cfg)
      assert.matches(c[2], err, 1, true)
    end)
  end

  it("raises on a bad schema (misuse)", function()
    assert.has_error(function() config.parse("", { x = { type = "float", default = 1 } }) end)
    assert.has_error(function() config.parse("", { x = { type = "enum", default = "a" } }) end)
    assert.has_error(function() config.parse("", { x = { type = "integer" } }) end)
    assert.has_error(function() config.parse("", { x = { type = "integer", default = 0, min = 1 } }) end)
    assert.has_error(function() config.parse(nil, schema) end)
  end)

  it("leaves no global behind and keeps working after a runaway chunk", function()
    parse('name = "a"\nwhile true do end')
    assert.is_nil(debug.gethook())
    assert.truthy(parse('name = "b"'))
    assert.is_nil(rawget(_G, "name"))
  end)
end)

describe("kv.config.load", function()
  local path = os.tmpname()
  after_each(function() os.remove(path) end)

  it("reads a file", function()
    local f = assert(io.open(path, "w"))
    f:write('name = "file"\n')
    f:close()
    assert.equals("file", assert(config.load(path, schema)).name)
  end)

  it("names the path on errors", function()
    local f = assert(io.open(path, "w"))
    f:write('name = "file"\nbogus = 1\n')
    f:close()
    local cfg, err = config.load(path, schema)
    assert.is_nil(cfg)
    assert.matches("unknown config key 'bogus' in " .. path .. ":2", err, 1, true)
    os.remove(path)
    cfg, err = config.load(path, schema)
    assert.is_nil(cfg)
    assert.matches("cannot read config file", err, 1, true)
    assert.matches(path, err, 1, true)
  end)
end)

describe("kv.config.update_text", function()
  local text = table.concat({
    "-- kvp config",
    "",
    'namespace = "test"   -- the namespace',
    "  max_qps=0 -- per second",
    'log_file = "a--b" -- x = 1',
    "--[[ old:",
    "max_qps = 3",
    "]]",
    "request_timeout = 2000",
    "",
  }, "\n")

  it("replaces values in place and keeps every other line", function()
    local out = assert(config.update_text(text, { max_qps = 100, log_file = "/tmp/x.log" }))
    assert.equals(table.concat({
      "-- kvp config",
      "",
      'namespace = "test"   -- the namespace',
      "  max_qps=100 -- per second",
      'log_file = "/tmp/x.log" -- x = 1',
      "--[[ old:",
      "max_qps = 3",
      "]]",
      "request_timeout = 2000",
      "",
    }, "\n"), out)
  end)

  it("appends keys that are not in the text, sorted", function()
    local out = assert(config.update_text(text, { support_ha = false, a_key = 1.5 }))
    assert.equals(text .. "a_key = 1.5\nsupport_ha = false\n", out)
    assert.equals('x = 1\ny = "z"\n', config.update_text("x = 1", { y = "z" }))
    assert.equals('y = 2\n', config.update_text("", { y = 2 }))
    assert.equals("x = 1\r\ny = 2\r\n", config.update_text("x = 1\r\n", { y = 2 }))
  end)

  it("writes strings as one-line Lua literals that read back", function()
    local s = 'a "q" \\ \n\r\t\0\1 é'
    local out = assert(config.update_text("v = 1\n", { v = s }))
    assert.equals(1, select(2, out:gsub("\n", "")))
    local cfg = assert(config.parse(out, { v = { type = "string", default = "" } }))
    assert.equals(s, cfg.v)
  end)

  it("round-trips through parse", function()
    local out = assert(config.update_text('name = "a" -- keep\ncount = 2\n', { count = 7, on = false }))
    local cfg = assert(config.parse(out, schema, "t"))
    assert.equals(7, cfg.count)
    assert.equals(false, cfg.on)
    assert.matches('name = "a" %-%- keep', out)
  end)

  it("does not touch keys inside tables or comments", function()
    local t = "t = {\n  count = 1,\n}\n-- count = 2\ncount = 3\n"
    assert.equals("t = {\n  count = 1,\n}\n-- count = 2\ncount = 9\n",
      config.update_text(t, { count = 9 }))
  end)

  it("refuses values it cannot rewrite safely", function()
    local out, err = config.update_text("a = [[x\ny]]\n", { a = 1 })
    assert.is_nil(out)
    assert.matches("config key 'a' on line 1", err, 1, true)
    out, err = config.update_text("a = 1; b = 2\n", { a = 1 })
    assert.is_nil(out)
    assert.matches("shares its line", err, 1, true)
    out, err = config.update_text("a = {\n1}\n", { a = 1 })
    assert.is_nil(out)
    out, err = config.update_text('a = "x\n', { a = 1 })
    assert.is_nil(out)
    assert.matches("unfinished string", err, 1, true)
    -- but a change elsewhere leaves such lines alone
    assert.equals("a = 1; b = 2\nc = 3\n", config.update_text("a = 1; b = 2\nc = 1\n", { c = 3 }))
    assert.equals("a = 5;\n", config.update_text("a = 1;\n", { a = 5 }))
  end)

  it("raises on misuse", function()
    assert.has_error(function() config.update_text("", { ["not a name"] = 1 }) end)
    assert.has_error(function() config.update_text("", { ["end"] = 1 }) end)
    assert.has_error(function() config.update_text("", { x = {} }) end)
    assert.has_error(function() config.update_text("", { x = 0 / 0 }) end)
    assert.has_error(function() config.update_text(nil, {}) end)
  end)
end)
