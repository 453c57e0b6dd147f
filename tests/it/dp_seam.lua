-- Run as the kvp binary's main module (11_dp_seam.sh): kvp.dp's own checks,
-- the ones Lua never lets a value reach. Prints one TAP-like line per check;
-- main returns the number of failures. arg[1]: a free port for listen.
local dp = require "kvp.dp"
local conf = require "kvp.conf"

local M = {}

function M.main(arg)
  local failed = 0
  local function check(what, ok, err, want)
    local good = (want == nil and ok == true)
      or (want ~= nil and ok == nil and type(err) == "string" and err:find(want, 1, true) ~= nil)
    if not good then failed = failed + 1 end
    print((good and "ok - " or "FAILED - ") .. what .. (good and "" or (": got " .. tostring(ok) .. ", " .. tostring(err))))
  end
  local cfg = assert(conf.parse(('namespace = "t"\nlisten = "127.0.0.1:%s"\n'):format(arg[1])))
  local all = conf.to_c(cfg)
  local function with(k, v)
    local c = {}
    for n, x in pairs(all) do c[n] = x end
    c[k] = v
    return c
  end

  local ok, err = dp.start()
  check("start before configure is refused", ok, err, "dp.configure has not been called")
  ok, err = dp.configure({ max_qps = 1 })
  check("the first configure needs every key", ok, err, "is missing")
  ok, err = dp.configure(with("max_qps", 4294967297)); check("an int past a C int", ok, err, "max_qps must be an integer")
  ok, err = dp.configure(with("max_client_num", 1.5)); check("not an integer", ok, err, "max_client_num")
  ok, err = dp.configure(with("io_threads", 0)); check("io_threads 0", ok, err, "io_threads must be an integer from 1")
  ok, err = dp.configure(with("redis_password", ("x"):rep(201))); check("redis_password 201 bytes", ok, err, "at most 200")
  ok, err = dp.configure(with("client_password", ("x"):rep(256))); check("client_password 256 bytes", ok, err, "at most 255")
  ok, err = dp.configure(with("listen", ("h"):rep(64) .. ":1")); check("listen host too long", ok, err, "host is too long")
  ok, err = dp.configure(with("listen", "127.0.0.1:0")); check("listen port 0", ok, err, "port must be")
  ok, err = dp.configure(with("bogus", 1)); check("an unknown key", ok, err, "unknown key bogus")
  ok, err = dp.configure(with("max_qps", "1")); check("a string for an int", ok, err, "max_qps must be an integer")
  check("every key, Lua's values", dp.configure(all))
  check("policy", dp.set_policy({ hash = "murmur2_kvstore", hash_tags = true, deny = {}, allow = {} }))
  check("start", dp.start())
  ok, err = dp.configure({ io_threads = 2 }); check("io_threads after start", ok, err, "fixed once the data path runs")
  ok, err = dp.configure({ listen = "127.0.0.1:1" }); check("listen after start", ok, err, "fixed once")
  check("a live subset after start", dp.configure({ max_qps = 5, request_timeout = 100 }))

  local function spec(over)
    local s = { version = 1, bucket_count = 4, servers = { "127.0.0.1:1", "127.0.0.1:2" },
                owner = { 1, 2, 1, 2 }, migrating = { [2] = 1 }, blocked = { [2] = true }, patterns = { "a*" } }
    for k, v in pairs(over) do s[k] = v end
    return s
  end
  local NONE = {}
  local function drop(s) for k, v in pairs(s) do if v == NONE then s[k] = nil end end return s end
  local bad = {
    { "an unknown field", { owners = { 1, 2, 1, 2 } }, "unknown field owners" },
    { "no version", { version = NONE }, "version" },
    { "a negative version", { version = -1 }, "version" },
    { "bucket_count 0", { bucket_count = 0, owner = {} }, "bucket_count" },
    { "bucket_count 65536", { bucket_count = 65536 }, "bucket_count" },
    { "no servers", { servers = {} }, "servers must list" },
    { "servers not a table", { servers = "127.0.0.1:1" }, "servers must be a table" },
    { "an address of 64 bytes", { servers = { ("1"):rep(64), "127.0.0.1:2" } }, "servers: an address" },
    { "a server that is not a string", { servers = { 1, 2 } }, "servers: an address" },
    { "fewer owners than buckets", { owner = { 1, 2, 1 } }, "owner must have bucket_count" },
    { "an owner 0", { owner = { 0, 2, 1, 2 } }, "owner: an entry" },
    { "an owner past the servers", { owner = { 1, 3, 1, 2 } }, "owner: an entry" },
    { "an owner 1.5", { owner = { 1.5, 2, 1, 2 } }, "owner: an entry" },
    { "no owner", { owner = NONE }, "owner must be a table" },
    { "a migrating bucket past the count", { migrating = { [5] = 1 } }, "migrating" },
    { "a migrating destination past the servers", { migrating = { [1] = 3 } }, "migrating" },
    { "a blocked bucket 0", { blocked = { [0] = true } }, "blocked" },
    { "a blocked entry false", { blocked = { [1] = false } }, "blocked" },
    { "65 patterns", { patterns = (function() local p = {} for i = 1, 65 do p[i] = "p" .. i end return p end)() },
      "at most 64" },
    { "a pattern of 257 bytes", { patterns = { ("a"):rep(257) } }, "over 256 bytes" },
    { "a pattern of 64 elements", { patterns = { ("a"):rep(64) } }, "63 elements" },
    { "a pattern that is not a string", { patterns = { 1 } }, "not a string" },
    { "migrating not a table", { migrating = 1 }, "migrating must be a table" },
  }
  for _, b in ipairs(bad) do
    ok, err = dp.set_table(drop(spec(b[2])))
    check("set_table refuses " .. b[1], ok, err, b[3])
  end
  check("set_table takes a good spec", dp.set_table(spec({})))
  check("the optional fields may be absent",
    dp.set_table(drop(spec({ version = 2, migrating = NONE, blocked = NONE, patterns = NONE }))))
  print(failed == 0 and "all dp checks passed" or (failed .. " dp checks failed"))
  return failed == 0 and 0 or 1
end

return M
