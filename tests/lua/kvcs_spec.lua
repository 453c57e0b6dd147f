-- kvcs.store and kvcs.api on an in-memory file system: table files, the
-- HTTP handlers' codes for good and bad input, and what they publish.
local store = require "kvcs.store"
local api = require "kvcs.api"
local btable = require "kv.btable"
local codes = require "kv.codes"

local function memfs(files)
  files = files or {}
  return {
    files = files,
    write = function(path, data) files[path] = data return true end,
    read = function(path)
      if files[path] == nil then return nil, "no such file" end
      return files[path]
    end,
    list = function(dir)
      local out = {}
      for path in pairs(files) do
        local name = path:match("^" .. dir:gsub("%p", "%%%0") .. "/([^/]+)$")
        if name then out[#out + 1] = name end
      end
      return out
    end,
    remove = function(path) files[path] = nil return true end,
    mkdir = function() return true end,
  }
end

local function new_cs(opts)
  opts = opts or {}
  local fs = memfs(opts.files)
  local cs = {
    cfg = { cluster_type = "data_store" },
    store = store.new("/t", fs),
    -- kvcs.probe's view of each address (default: an empty master)
    probe = function(addr) return (opts.redis or {})[addr] or { role = "master", dbsize = 0 } end,
    is_master = opts.slave ~= true,
    support_ha = true,
    published = {},
    deleted = {},
    config_changes = {},
  }
  cs.publish = function(t) cs.published[#cs.published + 1] = t end
  cs.publish_delete = function(ns) cs.deleted[#cs.deleted + 1] = ns end
  cs.proxy_list = function() return { { info = "0.0.0.0:7400", state = "ONLINE" } } end
  cs.save_config = function(ch) cs.config_changes[#cs.config_changes + 1] = ch return true end
  return cs, fs
end

local A, B, C = "127.0.0.1:6371", "127.0.0.1:6373", "127.0.0.1:6375"

local function init(cs, ns, list)
  return api.init_table(cs, { namespace = ns or "test", bucket_count = 1023, address_list = list or { A, B } })
end

describe("kvcs.store", function()
  it("persists a table and loads it back", function()
    local cs, fs = new_cs()
    assert.equal(codes.OK, (init(cs)))
    assert.truthy(fs.files["/t/test"])
    local st2 = store.new("/t", memfs(fs.files))
    assert.is_true(store.load_all(st2))
    assert.equal(1, store.get(st2, "test").version)
    assert.same({ "test" }, store.list(st2))
  end)

  it("stops on a corrupt file, naming it, and keeps the file", function()
    local files = { ["/t/test"] = '{"table":{"127.0.0.1:6371":[0,1]},"version":1' }
    local st = store.new("/t", memfs(files))
    local ok, err = store.load_all(st)
    assert.is_nil(ok)
    assert.truthy(err:find("/t/test", 1, true), err)
    assert.truthy(files["/t/test"])
  end)

  it("refuses a file whose name is not a namespace", function()
    local t = btable.init("ok", 256, { A })
    local st = store.new("/t", memfs({ ["/t/bad name"] = btable.encode(t) }))
    local ok, err = store.load_all(st)
    assert.is_nil(ok)
    assert.truthy(err:find("not a valid namespace name", 1, true), err)
  end)

  it("ignores leftovers of an interrupted atomic write", function()
    local t = btable.init("test", 256, { A })
    local st = store.new("/t", memfs({ ["/t/test"] = btable.encode(t), ["/t/test.tmp.123"] = "garbage" }))
    assert.is_true(store.load_all(st))
    assert.same({ "test" }, store.list(st))
  end)
end)

describe("kvcs.api", function()
  it("init_table creates, persists and publishes", function()
    local cs = new_cs()
    local code, msg = init(cs)
    assert.equal(codes.OK, code)
    assert.equal("OK", msg)
    assert.equal(1, #cs.published)
    local t = store.get(cs.store, "test")
    assert.equal(A, t.owner[0])
    assert.equal(B, t.owner[1])
  end)

  local bad_init = {
    { "missing namespace", { bucket_count = 1023, address_list = { A } }, codes.BAD_PARAM },
    { "bad namespace", { namespace = "../x", bucket_count = 1023, address_list = { A } }, codes.BAD_NAMESPACE },
    { "too few buckets", { namespace = "n", bucket_count = 255, address_list = { A } }, codes.BAD_BUCKET_COUNT },
    { "too many buckets", { namespace = "n", bucket_count = 16385, address_list = { A } }, codes.BAD_BUCKET_COUNT },
    { "fractional buckets", { namespace = "n", bucket_count = 300.5, address_list = { A } }, codes.BAD_BUCKET_COUNT },
    { "empty list", { namespace = "n", bucket_count = 1023, address_list = {} }, codes.BAD_PARAM },
    { "bad address", { namespace = "n", bucket_count = 1023, address_list = { "localhost:6379" } }, codes.BAD_ADDR },
    { "duplicate address", { namespace = "n", bucket_count = 1023, address_list = { A, A } }, codes.BAD_PARAM },
  }
  for _, case in ipairs(bad_init) do
    it("init_table refuses " .. case[1], function()
      local cs = new_cs()
      local code, msg = api.init_table(cs, case[2])
      assert.equal(case[3], code, msg)
      assert.equal(0, #cs.published)
      assert.same({}, store.list(cs.store))
    end)
  end

  it("init_table refuses an existing namespace and an address in use", function()
    local cs = new_cs()
    init(cs)
    assert.equal(codes.NAMESPACE_EXISTS, (init(cs)))
    local code, msg = init(cs, "other", { B, C })
    assert.equal(codes.ADDR_IN_USE, code)
    assert.truthy(msg:find("test", 1, true))
  end)

  it("a slave refuses every change", function()
    local cs = new_cs({ slave = true })
    assert.equal(codes.NOT_MASTER, (init(cs)))
    assert.equal(codes.NOT_MASTER, (api.del_namespace(cs, { namespace = "test" })))
    assert.equal(codes.NOT_MASTER, (api.replace_server(cs, { namespace = "test", old_addr = A, new_addr = C })))
  end)

  it("namespace_list is sorted", function()
    local cs = new_cs()
    init(cs, "zeta", { A })
    init(cs, "alpha", { B })
    local code, _, data = api.namespace_list(cs)
    assert.equal(codes.OK, code)
    assert.same({ "alpha", "zeta" }, data.namespace_list)
  end)

  it("bucket_table returns the table or 1004", function()
    local cs = new_cs()
    init(cs)
    local code, _, data = api.bucket_table(cs, { namespace = "test" })
    assert.equal(codes.OK, code)
    assert.equal(1, data.version)
    assert.equal(65535, data.migrating_bucket_id)
    assert.equal("", data.migrating_server_addr)
    assert.equal(512, #data.table[A])
    assert.equal(511, #data.table[B])
    assert.equal(codes.NO_NAMESPACE, (api.bucket_table(cs, { namespace = "nope" })))
    assert.equal(codes.BAD_PARAM, (api.bucket_table(cs, {})))
  end)

  it("replace_server moves every bucket, bumps the version and publishes", function()
    local cs = new_cs()
    init(cs)
    local code = api.replace_server(cs, { namespace = "test", old_addr = B, new_addr = C })
    assert.equal(codes.OK, code)
    local t = store.get(cs.store, "test")
    assert.equal(2, t.version)
    assert.equal(C, t.owner[1])
    assert.equal(2, #cs.published)
    assert.equal(codes.ADDR_NOT_IN_TABLE, (api.replace_server(cs, { namespace = "test", old_addr = B, new_addr = "127.0.0.1:6390" })))
    -- a missing address is named, not skipped (ipairs would stop at it)
    assert.equal(codes.BAD_ADDR, (api.replace_server(cs, { namespace = "test", new_addr = "127.0.0.1:6390" })))
    assert.equal(codes.BAD_ADDR, (api.replace_server(cs, { namespace = "test", old_addr = A })))
    assert.equal(codes.ADDR_IN_USE, (api.replace_server(cs, { namespace = "test", old_addr = A, new_addr = C })))
    assert.equal(codes.BAD_ADDR, (api.replace_server(cs, { namespace = "test", old_addr = A, new_addr = "x" })))
  end)

  it("del_namespace removes the file and tells proxies", function()
    local cs, fs = new_cs()
    init(cs)
    assert.equal(codes.OK, (api.del_namespace(cs, { namespace = "test" })))
    assert.is_nil(fs.files["/t/test"])
    assert.same({ "test" }, cs.deleted)
    assert.equal(codes.NO_NAMESPACE, (api.del_namespace(cs, { namespace = "test" })))
  end)

  it("set_config persists support_ha; bad keys and values change nothing", function()
    local cs = new_cs()
    assert.equal(codes.OK, (api.set_config(cs, { support_ha = false })))
    assert.is_false(cs.support_ha)
    assert.same({ { support_ha = false } }, cs.config_changes)
    assert.equal(codes.UNKNOWN_CONFIG_KEY, (api.set_config(cs, { support_ha = true, x = 1 })))
    assert.equal(codes.BAD_CONFIG_VALUE, (api.set_config(cs, { support_ha = "yes" })))
    assert.is_false(cs.support_ha)
    local code, _, data = api.get_config(cs)
    assert.equal(codes.OK, code)
    assert.same({ support_ha = false, is_master = true, cluster_type = "data_store" }, data.data)
  end)
end)

describe("kvcs patterns, remove_proxy, metrics", function()
  local metrics = require "kvcs.metrics"

  it("a pattern change bumps the version, persists and publishes", function()
    local cs, fs = new_cs()
    init(cs)
    assert.equal(codes.OK, (api.change_pattern(cs, "test", "ADD", "aa*")))
    local t = store.get(cs.store, "test")
    assert.equal(2, t.version)
    assert.same({ "aa*" }, t.patterns)
    assert.truthy(fs.files["/t/test"]:find('"patterns":["aa*"]', 1, true))
    assert.equal(2, #cs.published)
    assert.equal(codes.PATTERN_EXISTS, (api.change_pattern(cs, "test", "ADD", "aa*")))
    assert.equal(codes.OK, (api.change_pattern(cs, "test", "DEL", "aa*")))
    assert.equal(codes.NO_PATTERN, (api.change_pattern(cs, "test", "DEL", "aa*")))
    assert.equal(codes.NO_NAMESPACE, (api.change_pattern(cs, "nope", "ADD", "x")))
    assert.equal(codes.BAD_PARAM, (api.change_pattern(cs, "test", "ADD", "")))
    assert.equal(3, store.get(cs.store, "test").version)
    local slave = new_cs({ slave = true })
    assert.equal(codes.NOT_MASTER, (api.change_pattern(slave, "test", "ADD", "x")))
  end)

  it("remove_proxy forgets a disconnected proxy only", function()
    local cs = new_cs()
    init(cs)
    local known = { ["id-1"] = { listen = "0.0.0.0:7400", online = false },
                    ["id-2"] = { listen = "0.0.0.0:7401", online = true } }
    cs.forget_proxy = function(_, who)
      for id, k in pairs(known) do
        if id == who or k.listen == who then
          if k.online then return nil, "connected" end
          known[id] = nil
          return true
        end
      end
      return nil, "unknown"
    end
    assert.equal(codes.OK, (api.remove_proxy(cs, { namespace = "test", proxy = "0.0.0.0:7400" })))
    assert.is_nil(known["id-1"])
    assert.equal(codes.TABLE_CHANGE_FAILED, (api.remove_proxy(cs, { namespace = "test", proxy = "id-2" })))
    assert.equal(codes.NO_PROXY, (api.remove_proxy(cs, { namespace = "test", proxy = "id-9" })))
    assert.equal(codes.BAD_PARAM, (api.remove_proxy(cs, { namespace = "test" })))
  end)

  it("metrics describe every namespace", function()
    local cs = new_cs()
    init(cs)
    cs.peers = { slaves = {}, proxies = { test = { a = 1 } }, known = { test = { x = 1, y = 2 } } }
    cs.started = 100
    local text = metrics.text(cs, 160)
    assert.truthy(text:find('kvcs_table_version{namespace="test"} 1', 1, true))
    assert.truthy(text:find('kvcs_proxies_connected{namespace="test"} 1', 1, true))
    assert.truthy(text:find('kvcs_proxies_known{namespace="test"} 2', 1, true))
    assert.truthy(text:find("kvcs_uptime_seconds 60", 1, true))
    assert.truthy(text:find("kvcs_is_master 1", 1, true))
  end)
end)

describe("kvcs.api scale_cache_cluster", function()
  local function cache_cs(opts)
    local cs, fs = new_cs(opts)
    cs.cfg.cluster_type = "cache"
    return cs, fs
  end
  local function scale(cs, action, addr, ns)
    return api.scale_cache_cluster(cs, { namespace = ns or "test", action = action, addr = addr })
  end

  it("add moves floor(B/3) buckets, all to the new server, and nothing else", function()
    local cs, fs = cache_cs()
    init(cs)
    local before = store.get(cs.store, "test")
    assert.equal(codes.OK, (scale(cs, "add", C)))
    local t = store.get(cs.store, "test")
    assert.equal(2, t.version)
    local moves = btable.moves(before, t)
    assert.equal(341, #moves)
    for _, m in ipairs(moves) do assert.equal(C, m.dst) end
    assert.same({ [A] = 341, [B] = 341, [C] = 341 }, btable.counts(t))
    assert.equal(2, #cs.published)
    assert.equal(2, cs.published[2].version)
    assert.truthy(fs.files["/t/test"]:find(C, 1, true))
  end)

  it("del moves only the removed server's buckets, spread evenly", function()
    local cs = cache_cs()
    init(cs, "test", { A, B, C })
    local before = store.get(cs.store, "test")
    assert.equal(codes.OK, (scale(cs, "del", C)))
    local t = store.get(cs.store, "test")
    local moves = btable.moves(before, t)
    assert.equal(341, #moves)
    for _, m in ipairs(moves) do assert.equal(C, m.src) end
    assert.same({ [A] = 512, [B] = 511 }, btable.counts(t))
    assert.equal(2, t.version)
    assert.equal(2, #cs.published)
  end)

  it("add then del gives the first table's ownership back", function()
    local cs = cache_cs()
    init(cs)
    local first = store.get(cs.store, "test")
    assert.equal(codes.OK, (scale(cs, "add", C)))
    assert.equal(codes.OK, (scale(cs, "del", C)))
    assert.same({ [A] = 512, [B] = 511 }, btable.counts(store.get(cs.store, "test")))
    assert.equal(3, store.get(cs.store, "test").version)
    assert.truthy(#btable.moves(first, store.get(cs.store, "test")) <= 341)
  end)

  it("is for cache clusters only (1009)", function()
    local cs = new_cs()
    init(cs)
    local code, msg = scale(cs, "add", C)
    assert.equal(codes.WRONG_CLUSTER_TYPE, code)
    assert.equal(1009, code)
    assert.truthy(msg:find("migration_tool", 1, true), msg)
    assert.equal(1, store.get(cs.store, "test").version)
    assert.equal(1, #cs.published)
  end)

  local bad = {
    { "an address already in the table", "add", A, codes.ADDR_IN_USE },
    { "an address another namespace uses", "add", "127.0.0.1:6390", codes.ADDR_IN_USE },
    { "a bad address", "add", "localhost:1", codes.BAD_ADDR },
    { "a missing address", "add", nil, codes.BAD_ADDR },
    { "an unknown action", "move", C, codes.BAD_PARAM },
    { "deleting an address not in the table", "del", C, codes.ADDR_NOT_IN_TABLE },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. case[1] .. ", changing nothing", function()
      local cs = cache_cs()
      init(cs)
      init(cs, "other", { "127.0.0.1:6390" })
      local code = scale(cs, case[2], case[3])
      assert.equal(case[4], code)
      assert.equal(1, store.get(cs.store, "test").version)
      assert.equal(2, #cs.published)
    end)
  end

  it("refuses to remove the last server", function()
    local cs = cache_cs()
    init(cs, "test", { A })
    local code, msg = scale(cs, "del", A)
    assert.equal(codes.TABLE_CHANGE_FAILED, code)
    assert.truthy(msg:find("last server", 1, true))
  end)

  it("refuses an unknown namespace, and on a slave", function()
    local cs = cache_cs()
    assert.equal(codes.NO_NAMESPACE, (scale(cs, "add", C, "nope")))
    local slave = cache_cs({ slave = true })
    assert.equal(codes.NOT_MASTER, (scale(slave, "add", C)))
  end)

  it("is routed as a change", function()
    local r = api.routes(cache_cs())["/kvstore/cs/scale_cache_cluster"]
    assert.truthy(r)
    assert.is_true(r.change)
  end)
end)

-- issue 11, item 3: a server enters a table only when it answers as a Redis
-- with our password (kvcs.probe; faked here through cs.probe).
describe("kvcs.api refuses targets that are not fit Redis servers", function()
  local probe = require "kvcs.probe"
  local NOT_REDIS = function(addr) return nil, codes.NOT_REDIS, addr .. " does not answer as Redis" end

  it("judge_replace: old's replica or an empty master", function()
    assert.is_true(probe.judge_replace(A, C, { role = "slave", master = A }))
    assert.is_true(probe.judge_replace(A, C, { role = "master", dbsize = 0 }))
    assert.equal(codes.BAD_TARGET, select(2, probe.judge_replace(A, C, { role = "slave", master = B })))
    assert.equal(codes.BAD_TARGET, select(2, probe.judge_replace(A, C, { role = "master", dbsize = 5 })))
  end)

  it("judge_new: a master", function()
    assert.is_true(probe.judge_new(C, { role = "master", dbsize = 9 }))
    assert.equal(codes.BAD_TARGET, select(2, probe.judge_new(C, { role = "slave", master = A })))
  end)

  it("init_table with a non-Redis address makes nothing", function()
    local cs = new_cs()
    cs.probe = function(addr, pw) if addr == B then return NOT_REDIS(addr) end return { role = "master", dbsize = 0 } end
    assert.equal(codes.NOT_REDIS, (init(cs)))
    assert.is_nil(store.get(cs.store, "test"))
    assert.equal(0, #cs.published)
  end)

  it("replace_server: refused for a non-Redis, another's replica, a full master; the table unchanged", function()
    local cs = new_cs()
    assert.equal(codes.OK, (init(cs)))
    local v = store.get(cs.store, "test").version
    local seen_pw
    for _, case in ipairs({
      { codes.NOT_REDIS, function(addr) return NOT_REDIS(addr) end },
      { codes.REDIS_AUTH, function(addr) return nil, codes.REDIS_AUTH, addr .. " refuses the password" end },
      { codes.BAD_TARGET, function() return { role = "slave", master = A } end },
      { codes.BAD_TARGET, function() return { role = "master", dbsize = 3 } end },
    }) do
      cs.probe = case[2]
      assert.equal(case[1], (api.replace_server(cs, { namespace = "test", old_addr = B, new_addr = C })))
      assert.equal(v, store.get(cs.store, "test").version)
    end
    cs.cfg.redis_password = "pw"
    cs.probe = function(addr, pw) seen_pw = pw return { role = "slave", master = B } end
    assert.equal(codes.OK, (api.replace_server(cs, { namespace = "test", old_addr = B, new_addr = C })))
    assert.equal("pw", seen_pw)
    assert.equal(v + 1, store.get(cs.store, "test").version)
  end)

  it("scale_cache_cluster add: refused for a non-Redis", function()
    local cs = new_cs()
    cs.cfg.cluster_type = "cache"
    assert.equal(codes.OK, (init(cs)))
    local v = store.get(cs.store, "test").version
    cs.probe = NOT_REDIS
    assert.equal(codes.NOT_REDIS, (api.scale_cache_cluster(cs, { namespace = "test", action = "add", addr = C })))
    assert.equal(v, store.get(cs.store, "test").version)
  end)
end)

describe("kvcs.store.give_lineages (issue 11)", function()
  it("saves a table from an old file again with a lineage, version + 1, once", function()
    local t = assert(btable.init("test", 256, { A }))
    t.lineage = nil
    local cs, fs = new_cs({ files = { ["/t/test"] = btable.encode(t) } })
    assert(store.load_all(cs.store))
    assert.is_nil(store.get(cs.store, "test").lineage)
    assert.same({ "test" }, assert(store.give_lineages(cs.store)))
    local n = store.get(cs.store, "test")
    assert.truthy(n.lineage)
    assert.equal(2, n.version)
    assert.same({}, assert(store.give_lineages(cs.store)))
  end)
end)
