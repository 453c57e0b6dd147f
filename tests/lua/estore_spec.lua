-- kvcs.estore: tables in etcd behind kvcs.store (issue 14). The etcd here
-- is tests/lua/fake_etcd.lua (revisions, compares, leases, watches as
-- etcd's); tests/it runs the same code against real etcd members.
package.path = "tests/lua/?.lua;" .. package.path
local fake = require "fake_etcd"
local store = require "kvcs.store"
local estore = require "kvcs.estore"
local btable = require "kv.btable"

local A, B = "127.0.0.1:6371", "127.0.0.1:6373"
local P = "/kvp"

-- a store on etcd f; fence: the leader's compare (leader key created at lr)
local function new(f, lr)
  local st = store.new("unused", nil)
  estore.new(st, f, P, function()
    if lr == nil then return nil end
    return { key = P .. "/_leader", target = "CREATE", result = "EQUAL", value = lr }
  end)
  return st
end

local function leader(f)
  local lease = f:grant(3)
  f:put(P .. "/_leader", "me", lease)
  return tonumber(f.kvs[P .. "/_leader"].create_revision), lease
end

describe("kvcs.estore", function()
  it("writes a new namespace, then each next version, and reads them back", function()
    local f = fake.new()
    local lr = leader(f)
    local st = new(f, lr)
    assert(estore.load_all(st))
    local t = btable.init("test", 256, { A }, "0123456789abcdef")
    assert(store.put(st, t))
    local t2 = btable.replace_server(t, A, B)
    assert(store.put(st, t2))
    assert.equal(t2, store.get(st, "test"))
    local other = new(f, lr)
    assert(estore.load_all(other))
    assert.equal(t2.version, store.get(other, "test").version)
    assert.equal(B, store.get(other, "test").owner[0])
  end)

  it("refuses a change made from an old table, and one made by a deposed leader", function()
    local f = fake.new()
    local lr = leader(f)
    local st = new(f, lr)
    assert(estore.load_all(st))
    local t = btable.init("test", 256, { A }, "0123456789abcdef")
    assert(store.put(st, t))
    local a = btable.replace_server(t, A, B)
    local b = btable.scale_up(t, B)
    assert(store.put(st, a))
    local ok, err = store.put(st, b) -- made from v1 too: lost update refused
    assert.is_nil(ok)
    assert.matches("made from v1", err)
    -- another config server writes meanwhile: the compare of revisions refuses
    local st2 = new(f, lr)
    assert(estore.load_all(st2))
    assert(store.put(st2, btable.scale_up(a, "127.0.0.1:6375")))
    ok, err = store.put(st, btable.scale_up(a, "127.0.0.1:6377"))
    assert.is_nil(ok)
    assert.matches("changed meanwhile", err)
    assert.equal(3, store.get(st, "test").version) -- re-read: the cache has what etcd holds
    -- the leader's lease ends, another leads: the old one's write cannot land
    local fenced = false
    st.on_fenced = function() fenced = true end
    f:expire(f.kvs[P .. "/_leader"].lease)
    leader(f)
    ok, err = store.put(st, btable.replace_server(store.get(st, "test"), B, "127.0.0.1:6379"))
    assert.is_nil(ok)
    assert.matches("no longer the leader", err)
    assert.is_true(fenced)
    assert.equal(3, store.get(st, "test").version)
  end)

  it("does not write without the leadership", function()
    local f = fake.new()
    local st = new(f, nil)
    assert(estore.load_all(st))
    local ok, err = store.put(st, btable.init("test", 256, { A }))
    assert.is_nil(ok)
    assert.matches("not the leader", err)
    assert.same({}, f:range(P .. "/"))
  end)

  it("an unknown outcome re-reads: the cache holds what etcd has", function()
    local f = fake.new()
    local st = new(f, leader(f))
    assert(estore.load_all(st))
    f.fail_next_txn = "connection reset"
    local ok, err = store.put(st, btable.init("test", 256, { A }))
    assert.is_nil(ok)
    assert.matches("connection reset; table test is now absent", err)
    assert.is_nil(store.get(st, "test"))
  end)

  it("deletes a namespace with the compares", function()
    local f = fake.new()
    local st = new(f, leader(f))
    assert(estore.load_all(st))
    assert(store.put(st, btable.init("test", 256, { A })))
    assert(store.delete(st, "test"))
    assert.is_nil(store.get(st, "test"))
    assert.same({}, (f:range(P .. "/test/")))
  end)

  it("a watch brings other writers' changes, not its own, and deletions", function()
    local f = fake.new()
    local lr = leader(f)
    local writer, reader = new(f, lr), new(f, lr)
    assert(estore.load_all(writer))
    assert(estore.load_all(reader))
    local seen = {}
    writer.on_change = function(ns, t) seen[#seen + 1] = "writer " .. ns .. " " .. (t and t.version or "gone") end
    reader.on_change = function(ns, t) seen[#seen + 1] = "reader " .. ns .. " " .. (t and t.version or "gone") end
    estore.watch(writer)
    estore.watch(reader)
    local t = btable.init("test", 256, { A })
    assert(store.put(writer, t))
    assert(store.put(writer, btable.replace_server(t, A, B)))
    f:put(P .. "/other/proxies/x", "{}") -- not a table: ignored
    assert(store.delete(writer, "test"))
    assert.same({ "reader test 1", "reader test 2", "reader test gone" }, seen)
    assert.is_nil(store.get(reader, "test"))
  end)

  it("a bad table in etcd stops the load with its key", function()
    local f = fake.new()
    f:put(P .. "/test/table", "{not json")
    local st = new(f, nil)
    local ok, err = estore.load_all(st)
    assert.is_nil(ok)
    assert.matches("/kvp/test/table", err, 1, true)
  end)

  it("names only table keys of valid namespaces", function()
    local st = new(fake.new(), nil)
    assert.equal("test", estore.ns_of(st, "/kvp/test/table"))
    assert.is_nil(estore.ns_of(st, "/kvp/test/proxies/a"))
    assert.is_nil(estore.ns_of(st, "/kvp/_leader"))
    assert.is_nil(estore.ns_of(st, "/other/test/table"))
  end)
end)
