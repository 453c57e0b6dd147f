-- kvcs.policy: publishing a namespace's routing policy (every refusal, the
-- no-op, force), reading it back, and locating a key under it; plus the
-- HTTP routes and the proxies' POLICY command. The Redis masters are
-- kvcs.probe's facts (cs.probe); core.key_bucket is the proxy's C
-- (tests/it/40_policy_cs.sh checks it against a real proxy): here a
-- recording stand-in shows what locate asks it.
package.loaded["kv.log"] = {
  debug = function() end, info = function() end, warn = function() end, error = function() end,
}
package.loaded["kv.loop"] = { now = function() return 0 end, sleep = function() end }
local store = require "kvcs.store"
local api = require "kvcs.api"
local peers = require "kvcs.peers"
local policy = require "kvcs.policy"
local btable = require "kv.btable"
local codes = require "kv.codes"
local cjson = require "cjson"

local A, B = "127.0.0.1:6371", "127.0.0.1:6373"

local function memfs()
  local files = {}
  return {
    files = files,
    write = function(path, data) files[path] = data return true end,
    read = function(path) return files[path] end,
    list = function() return {} end,
    remove = function(path) files[path] = nil return true end,
    mkdir = function() return true end,
  }
end

-- glob -> Lua pattern, for the few globs these specs use ('*', '?', literals)
local function glob_match(g, s)
  local pat = "^" .. g:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
  return s:find(pat) ~= nil
end

local function new_cs(opts)
  opts = opts or {}
  local cs = {
    cfg = { cluster_type = "data_store", redis_password = "pw" },
    store = store.new("/t", memfs()),
    is_master = opts.slave ~= true,
    published = {}, probed = {}, hashed = {},
    redis = {}, -- addr -> facts; default an empty master
    ha = { replicas = { [A] = { "127.0.0.1:7371" } } },
  }
  cs.probe = function(addr, pw)
    cs.probed[#cs.probed + 1] = addr .. " " .. pw
    local f = cs.redis[addr]
    if f == false then return nil, codes.NOT_REDIS, addr .. " does not answer as Redis: refused" end
    return f or { role = "master", dbsize = 0 }
  end
  cs.publish = function(t) cs.published[#cs.published + 1] = t end
  cs.core = {
    glob_match = glob_match,
    sha1_hex = function(s) return "sha1(" .. s .. ")" end,
    key_bucket = function(hash, tags, key, n)
      cs.hashed[#cs.hashed + 1] = ("%s %s %s %d"):format(hash, tostring(tags), key, n)
      return #key % n
    end,
  }
  local t = assert(btable.init("test", 256, { A, B }))
  assert(store.put(cs.store, t))
  return cs
end

local CRC = 'return { hash = "crc16" }'
local READ_ONLY = 'return { rules = { { match = "ro:*", read_only = true } } }'

local function current(cs) return store.get(cs.store, "test") end

describe("kvcs.policy.set", function()
  it("publishes version 1 in a new table version, persisted and pushed", function()
    local cs = new_cs()
    local code, msg, data = policy.set(cs, "test", READ_ONLY)
    assert.equal(codes.OK, code, msg)
    assert.same({ namespace = "test", version = 1, table_version = 2 }, data)
    assert.same({ version = 1, source = READ_ONLY }, current(cs).policy)
    assert.equal(1, #cs.published)
    assert.equal(current(cs), cs.published[1])
    assert.same(current(cs).policy, btable.decode(cs.store.fs.files["/t/test"]).policy)
    -- routing unchanged (the default's): no master was asked anything
    assert.same({}, cs.probed)
  end)

  it("the same source again is a no-op answering the current versions", function()
    local cs = new_cs()
    policy.set(cs, "test", READ_ONLY)
    local code, _, data = policy.set(cs, "test", READ_ONLY)
    assert.equal(codes.OK, code)
    assert.same({ namespace = "test", version = 1, table_version = 2 }, data)
    assert.equal(1, #cs.published)
  end)

  it("a bad policy is refused with its error and line, and changes nothing", function()
    local cs = new_cs()
    for src, want in pairs({
      ['return {\n  hash = "md5",\n}'] = "^policy.lua:2: unknown hash 'md5'",
      ['return {\n  rules = {\n    { match = "a*", read_only = 1 },\n  },\n}'] = "^policy.lua:3: rules%[1%].read_only",
      ["return {\n  hash = \n"] = "^policy.lua:3:",
      ["while true do end return {}"] = "instructions",
      ["x = 1\nreturn 5"] = "^policy.lua:",
    }) do
      local code, msg = policy.set(cs, "test", src)
      assert.equal(codes.BAD_POLICY, code, src)
      assert.matches(want, msg)
    end
    assert.equal(1, current(cs).version)
    assert.is_nil(current(cs).policy)
    assert.same({}, cs.published)
  end)

  it("refuses bad parameters, unknown namespaces and slaves", function()
    local cs = new_cs()
    assert.equal(codes.BAD_PARAM, (policy.set(cs, "test", nil)))
    assert.equal(codes.BAD_PARAM, (policy.set(cs, "test", CRC, "yes")))
    assert.equal(codes.BAD_PARAM, (policy.set(cs, nil, CRC)))
    assert.equal(codes.NO_NAMESPACE, (policy.set(cs, "nope", CRC)))
    assert.equal(codes.BAD_POLICY, (policy.set(cs, "test", "return {}" .. string.rep(" ", policy.MAX_SOURCE))))
    local slave = new_cs({ slave = true })
    assert.equal(codes.NOT_MASTER, (policy.set(slave, "test", CRC)))
    assert.same({}, cs.published)
  end)

  it("a change of routing on a namespace holding data needs force; the message says every key moves", function()
    local cs = new_cs()
    cs.redis[B] = { role = "master", dbsize = 12 }
    local code, msg = policy.set(cs, "test", CRC)
    assert.equal(codes.TABLE_CHANGE_FAILED, code)
    assert.matches("127.0.0.1:6373 holds 12 key", msg, 1, true)
    assert.matches("every key would move to another bucket", msg, 1, true)
    assert.matches("force", msg, 1, true)
    assert.is_nil(current(cs).policy)
    -- both owners asked, with the config server's redis_password
    assert.same({ A .. " pw", B .. " pw" }, cs.probed)
    code, msg = policy.set(cs, "test", CRC, true)
    assert.equal(codes.OK, code, msg)
    assert.equal("crc16", policy.of(current(cs)).hash)
  end)

  it("a master that does not answer counts as holding data", function()
    local cs = new_cs()
    cs.redis[A] = false
    local code, msg = policy.set(cs, "test", CRC)
    assert.equal(codes.TABLE_CHANGE_FAILED, code)
    assert.matches("does not answer", msg, 1, true)
  end)

  it("a change of routing on an empty namespace goes through; tags and route rules are routing too", function()
    local cs = new_cs()
    assert.equal(codes.OK, (policy.set(cs, "test", CRC)))
    cs.redis[A] = { role = "master", dbsize = 1 }
    -- not routing: rules without route, deny lists
    assert.equal(codes.OK, (policy.set(cs, "test", 'return { hash = "crc16", deny = { "keys" } }')))
    for _, src in ipairs({
      'return { hash = "crc16", hash_tags = false }',
      'return { hash = "crc16", rules = { { match = "t:*", route = function(k) return k end } } }',
    }) do
      local code, msg = policy.set(cs, "test", src)
      assert.equal(codes.TABLE_CHANGE_FAILED, code, src)
      assert.matches("every key would move", msg, 1, true)
    end
    assert.equal(2, current(cs).policy.version)
  end)

  it("refuses a change of routing while buckets migrate, even forced; other changes pass", function()
    local cs = new_cs()
    assert(store.put(cs.store, assert(btable.start_migration(current(cs), 6, B))))
    local code, msg = policy.set(cs, "test", CRC, true)
    assert.equal(codes.TABLE_CHANGE_FAILED, code)
    assert.matches("1 migrating bucket", msg, 1, true)
    assert.equal(codes.OK, (policy.set(cs, "test", READ_ONLY)))
    assert.equal(B, current(cs).migrating[6]) -- the migration mark is kept
  end)

  it("a policy already published then changed counts versions up", function()
    local cs = new_cs()
    policy.set(cs, "test", READ_ONLY)
    local _, _, data = policy.set(cs, "test", "return {}")
    assert.same({ namespace = "test", version = 2, table_version = 3 }, data)
  end)
end)

describe("kvcs.policy.get", function()
  it("answers version 0 and a null source before any publication, with the default's routing", function()
    local cs = new_cs()
    local code, _, data = policy.get(cs, "test")
    assert.equal(codes.OK, code)
    assert.equal(0, data.version)
    assert.equal(cjson.null, data.source)
    assert.equal("hash=murmur2_kvstore;tags=true", data.routing)
    assert.equal(codes.NO_NAMESPACE, (policy.get(cs, "nope")))
  end)
  it("answers the published source and version", function()
    local cs = new_cs()
    policy.set(cs, "test", CRC)
    local _, _, data = policy.get(cs, "test")
    assert.same({ namespace = "test", version = 1, source = CRC, routing = "hash=crc16;tags=true" }, data)
  end)
end)

describe("kvcs.policy.locate", function()
  it("hashes the key with the policy's hash and tags (the proxy's C), and names master and replicas", function()
    local cs = new_cs()
    local code, msg, data = policy.locate(cs, "test", "abcde")
    assert.equal(codes.OK, code, msg)
    assert.same({ "murmur2_kvstore true abcde 256" }, cs.hashed)
    assert.equal(5, data.bucket)
    assert.equal(B, data.master) -- 5 % 2 servers
    assert.same({}, data.replicas)
    assert.equal("5_abcde", data.stored_key)
    assert.equal(0, data.policy_version)
    assert.is_nil(data.migrating_to)
    _, _, data = policy.locate(cs, "test", "abcd")
    assert.equal(A, data.master)
    assert.same({ "127.0.0.1:7371" }, data.replicas)
    assert.equal(codes.BAD_PARAM, (policy.locate(cs, "test", nil)))
    assert.equal(codes.NO_NAMESPACE, (policy.locate(cs, "nope", "k")))
  end)

  it("follows a published policy and a migrating bucket", function()
    local cs = new_cs()
    policy.set(cs, "test", 'return { hash = "crc16", hash_tags = false }')
    assert(store.put(cs.store, assert(btable.start_migration(current(cs), 4, B))))
    local _, _, data = policy.locate(cs, "test", "k{x}")
    assert.same({ "crc16 false k{x} 256" }, cs.hashed)
    assert.equal(4, data.bucket)
    assert.equal(A, data.master)
    assert.equal(B, data.migrating_to)
    assert.equal(1, data.policy_version)
  end)

  it("a key matching a key-rewrite pattern is routed as its SHA-1 hex", function()
    local cs = new_cs()
    assert(store.put(cs.store, assert(btable.add_pattern(current(cs), "long:*"))))
    local _, _, data = policy.locate(cs, "test", "long:1")
    assert.same({ "murmur2_kvstore true sha1(long:1) 256" }, cs.hashed)
    assert.equal("12_sha1(long:1)", data.stored_key)
  end)

  it("a route rule: first matching glob wins; a string is routed as a key, an integer is the bucket", function()
    local cs = new_cs()
    policy.set(cs, "test", [[return { rules = {
      { match = "ro:*", read_only = true },
      { match = "tenant:*", route = function(key, cmd)
          if cmd == "set" then return 77 end
          return (key:match("^tenant:([^:]+)"))
        end },
      { match = "*", route = function() return "never" end },
    } }]])
    local code, msg, data = policy.locate(cs, "test", "tenant:acme:user:1")
    assert.equal(codes.OK, code, msg)
    assert.same({ "murmur2_kvstore true acme 256" }, cs.hashed)
    assert.equal(4, data.bucket)
    assert.equal(2, data.rule)
    assert.equal("4_tenant:acme:user:1", data.stored_key)
    _, _, data = policy.locate(cs, "test", "tenant:acme:user:1", "SET")
    assert.equal(77, data.bucket)
    assert.equal(B, data.master)
    -- a rule without route routes normally (and stops the search)
    cs.hashed = {}
    _, _, data = policy.locate(cs, "test", "ro:abc")
    assert.same({ "murmur2_kvstore true ro:abc 256" }, cs.hashed)
    assert.equal(1, data.rule)
  end)

  it("a route that loops for keys of its glob is refused at publication, quickly", function()
    local cs = new_cs()
    local t0 = os.clock()
    local code, msg = policy.set(cs, "test", [[return { rules = {
      { match = "t[0-9]:*", route = function(key) while key:sub(1, 1) == "t" do end return key end },
    } }]])
    assert.equal(codes.BAD_POLICY, code)
    assert.matches("rules[1].route did not return for key 't0:'", msg, 1, true)
    assert.truthy(os.clock() - t0 < 1)
    assert.equal(0, #cs.published)
    assert.same({ "a", "a42:a:b" }, policy.sample_keys("a*"))
    assert.same({ "x\0y", "x\0y" }, policy.sample_keys("?[^a]y"))
  end)

  it("a route error, a bad result or a loop is ROUTE_FAILED naming the problem, quickly", function()
    local cs = new_cs()
    policy.set(cs, "test", [[return { rules = {
      { match = "err:*", route = function(key) error("no tenant in " .. key) end },
      { match = "tbl:*", route = function() return {} end },
      { match = "big:*", route = function() return 256 end },
      { match = "frac:*", route = function() return 1.5 end },
      -- loops only for these keys: one that loops for every key is refused
      -- at publication (the next spec)
      { match = "loop:*", route = function(k) if k == "loop:1" then while true do end end return k end },
      { match = "sneaky:*", route = function(k)
          while k == "sneaky:1" do pcall(function() while true do end end) end
          return k
        end },
    } }]])
    for key, want in pairs({
      ["err:1"] = "route of rules[1] (err:*) failed: policy.lua:2: no tenant in err:1",
      ["tbl:1"] = "returned a table: want a routing key (a string) or a bucket 0..255",
      ["big:1"] = "returned 256",
      ["frac:1"] = "returned 1.5",
      ["loop:1"] = "more than 1000000 instructions",
      ["sneaky:1"] = "more than 1000000 instructions",
    }) do
      local t0 = os.clock()
      local code, msg = policy.locate(cs, "test", key)
      assert.equal(codes.ROUTE_FAILED, code, key)
      assert.matches(want, msg, 1, true)
      assert.truthy(os.clock() - t0 < 1, key)
    end
    -- the config server goes on: JIT back on, no hook left
    assert.is_true((jit.status()))
    assert.is_nil(debug.gethook())
    assert.equal(codes.OK, (policy.locate(cs, "test", "plain")))
  end)
end)

describe("kvcs policy routes", function()
  it("HTTP: set_policy (a change), policy and locate (reads; a GET query works)", function()
    local cs = new_cs()
    local routes = api.routes(cs)
    assert.is_true(routes["/kvstore/cs/set_policy"].change)
    assert.is_nil(routes["/kvstore/cs/policy"].change)
    assert.is_nil(routes["/kvstore/cs/locate"].change)
    local code, _, data = routes["/kvstore/cs/set_policy"].fn({ namespace = "test", source = CRC })
    assert.equal(codes.OK, code)
    assert.equal(1, data.version)
    code, _, data = routes["/kvstore/cs/policy"].fn({}, { query = "namespace=test" })
    assert.equal(codes.OK, code)
    assert.equal(CRC, data.source)
    code, _, data = routes["/kvstore/cs/locate"].fn({}, { query = "namespace=test&key=a%20b" })
    assert.equal(codes.OK, code)
    assert.equal("a b", data.key)
    code, _, data = routes["/kvstore/cs/locate"].fn({ namespace = "test", key = "k", command = "set" })
    assert.equal(codes.OK, code)
    assert.equal(1, data.policy_version)
  end)

  it("proxy link: POLICY ns source [FORCE] -> the version | -ERR <code> <message>", function()
    local cs = new_cs()
    local sess = { entry = { listen = "127.0.0.1:7400", ns = "test" } }
    local function run(...)
      return peers.proxy_command(cs, sess, { n = select("#", ...), ... })
    end
    assert.equal(1, run("POLICY", "test", READ_ONLY))
    assert.equal(1, run("policy", "test", READ_ONLY)) -- no-op
    cs.redis[A] = { role = "master", dbsize = 3 }
    local r = run("POLICY", "test", CRC)
    assert.matches("^ERR 1018 namespace 'test' holds data", r.err)
    assert.equal(2, run("POLICY", "test", CRC, "force"))
    r = run("POLICY", "test", "return {\n hash = 1 }")
    assert.matches("^ERR 1027 policy.lua:2: ", r.err)
    r = run("POLICY", "test", CRC, "NOW")
    assert.matches("^ERR 1003 syntax", r.err)
    r = peers.proxy_command(cs, {}, { n = 3, "POLICY", "test", CRC })
    assert.matches("unknown control command", r.err)
    r = run("POLICY", "other", READ_ONLY)
    assert.matches("^ERR 1003 this proxy is registered for namespace 'test', not 'other'", r.err)
  end)

  it("proxy link: GETPOLICY ns -> {version, source} without registering", function()
    local cs = new_cs()
    local function get(ns) return cjson.decode(peers.proxy_command(cs, {}, { n = 2, "GETPOLICY", ns })) end
    assert.same({ version = 0, source = cjson.null }, get("test"))
    policy.set(cs, "test", READ_ONLY)
    assert.same({ version = 1, source = READ_ONLY }, get("test"))
    assert.matches("^ERR 1004", peers.proxy_command(cs, {}, { n = 2, "GETPOLICY", "nope" }).err)
  end)
end)
