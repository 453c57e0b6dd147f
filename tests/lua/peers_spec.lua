-- kvcs.peers without a server: the proxy and slave command tables called
-- through proxy_command/slave_command on fake sessions, the known proxies
-- (persisted, forgotten, acked), the waits for acks on a fake clock, the
-- pushes. (busted insulates each spec file, so the stubs do not leak.)
package.loaded["kv.log"] = {
  debug = function() end, info = function() end, warn = function() end, error = function() end,
}
local clock = 0
package.loaded["kv.loop"] = {
  now = function() return clock end,
  sleep = function(s) clock = clock + s end,
}
package.loaded["kv.redis"] = {}

local peers = require "kvcs.peers"
local store = require "kvcs.store"
local btable = require "kv.btable"
local resp = require "kv.resp"

local A, B = "127.0.0.1:6371", "127.0.0.1:6373"

local function memfs()
  local files = {}
  return {
    write = function(path, data) files[path] = data return true end,
    read = function(path) return files[path] end,
    list = function() return {} end,
    remove = function(path) files[path] = nil return true end,
    mkdir = function() return true end,
  }
end

local function new_cs()
  local cs = {
    cfg = { cluster_type = "data_store" },
    store = store.new("/t", memfs()),
    is_master = true,
    peers = peers.new(),
    saved = {}, joined = {}, reports = {}, published = {},
  }
  assert(store.put(cs.store, assert(btable.init("test", 256, { A, B }))))
  cs.save_known = function(list) cs.saved[#cs.saved + 1] = list return true end
  cs.on_proxy_join = function(entry) cs.joined[#cs.joined + 1] = entry.id end
  cs.publish = function(t) cs.published[#cs.published + 1] = t end
  return cs
end

-- A fake socket: what is sent is kept decoded in sock.got
local function new_sock(peer)
  local sock = { peer = peer or "127.0.0.1:50000", got = {} }
  function sock.send(_, bytes)
    local pos = 1
    while pos <= #bytes do
      local v, nxt = resp.decode(bytes, pos)
      sock.got[#sock.got + 1] = v
      pos = nxt
    end
    return true
  end
  function sock.close() sock.closed = true end
  return sock
end

local function cmd(...)
  return { n = select("#", ...), ... }
end

local function register(cs, id, sock)
  local sess = { sock = sock or new_sock() }
  local r, after = peers.proxy_command(cs, sess, cmd("REGISTER", "test", "127.0.0.1:" .. id, id))
  if after then after() end
  return sess, r
end

describe("kvcs.peers proxy commands", function()
  it("PING answers PONG, with or without arguments, before REGISTER", function()
    local cs = new_cs()
    local sess = { sock = new_sock() }
    assert.same({ status = "PONG" }, peers.proxy_command(cs, sess, cmd("PING")))
    assert.same({ status = "PONG" }, peers.proxy_command(cs, sess, cmd("ping", "x")))
  end)

  it("REGISTER answers the table, makes the proxy known and online, then runs the join hook", function()
    local cs = new_cs()
    local sess, r = register(cs, "7401")
    assert.equal(btable.encode(store.get(cs.store, "test")), r)
    assert.equal("7401", sess.entry.id)
    assert.same({ "7401" }, cs.joined)
    local k = cs.peers.known.test["7401"]
    assert.same({ listen = "127.0.0.1:7401", online = true, acked = 0 }, k)
    assert.same({ { namespace = "test", id = "7401", listen = "127.0.0.1:7401" } }, cs.saved[1])
    assert.same({ { info = "127.0.0.1:7401", state = "ONLINE", peer = "127.0.0.1:50000", id = "7401",
                    acked_version = 0 } }, peers.proxy_list(cs, "test"))
  end)

  it("REGISTER refuses an unknown namespace and a second REGISTER", function()
    local cs = new_cs()
    local sess = { sock = new_sock() }
    assert.same({ err = "ERR no such namespace 'nope'" },
      peers.proxy_command(cs, sess, cmd("REGISTER", "nope", "127.0.0.1:1", "1")))
    assert.is_nil(sess.entry)
    register(cs, "7401", sess.sock)
    sess = { sock = sess.sock, entry = cs.peers.proxies.test[sess.sock] }
    assert.same({ err = "ERR already registered" },
      peers.proxy_command(cs, sess, cmd("REGISTER", "test", "127.0.0.1:2", "2")))
  end)

  it("a REGISTER reusing a live proxy's id is refused and leaves that session alone", function()
    local cs = new_cs()
    local real = new_sock()
    register(cs, "7401", real)
    local fake = new_sock("127.0.0.1:50001")
    local sess, r = register(cs, "7401", fake)
    assert.matches("^ERR proxy id 7401 is in use", r.err)
    assert.is_nil(sess.entry)
    assert.is_nil(real.closed)
    assert.truthy(cs.peers.proxies.test[real])
    assert.is_nil(cs.peers.proxies.test[fake])
    assert.equal(1, #cs.saved) -- known once
  end)

  it("a restarted proxy (same host/listen, new random id) replaces its old, offline entry", function()
    local cs = new_cs()
    peers.load_known(cs, { { namespace = "test", id = "h/0.0.0.0:7400/aaaa", listen = "0.0.0.0:7400" },
                           { namespace = "test", id = "h/0.0.0.0:74000/cccc", listen = "0.0.0.0:74000" } })
    local sess = { sock = new_sock() }
    peers.proxy_command(cs, sess, cmd("REGISTER", "test", "0.0.0.0:7400", "h/0.0.0.0:7400/bbbb"))
    assert.is_nil(cs.peers.known.test["h/0.0.0.0:7400/aaaa"])
    assert.truthy(cs.peers.known.test["h/0.0.0.0:7400/bbbb"])
    assert.truthy(cs.peers.known.test["h/0.0.0.0:74000/cccc"])
  end)

  it("UNREGISTER forgets the proxy: moves no longer wait for it", function()
    local cs = new_cs()
    local sess = register(cs, "7401")
    assert.same({ status = "OK" }, peers.proxy_command(cs, sess, cmd("UNREGISTER", "test")))
    assert.is_nil(cs.peers.known.test["7401"])
    assert.same({}, cs.saved[#cs.saved])
    assert.is_true(peers.wait_acks(cs, "test", 5, 1))
    assert.same({ err = "ERR unknown control command 'UNREGISTER'" },
      peers.proxy_command(cs, { sock = new_sock() }, cmd("UNREGISTER", "test")))
  end)

  it("forget_stale forgets a proxy away for proxy_forget_after seconds, not before, not when 0", function()
    local cs = new_cs()
    local now = 1000
    cs.now = function() return now end
    cs.cfg.proxy_forget_after = 60
    peers.load_known(cs, { { namespace = "test", id = "p1", listen = "127.0.0.1:7401", seen = 990 },
                           { namespace = "test", id = "p2", listen = "127.0.0.1:7402" } })
    register(cs, "7403")
    now = 1049
    peers.forget_stale(cs)
    assert.truthy(cs.peers.known.test.p1)
    now = 1050
    peers.forget_stale(cs)
    assert.is_nil(cs.peers.known.test.p1)
    assert.truthy(cs.peers.known.test.p2) -- seen = load time, 1000
    now = 5000
    peers.forget_stale(cs)
    assert.is_nil(cs.peers.known.test.p2)
    assert.truthy(cs.peers.known.test["7403"]) -- connected: never
    cs.cfg.proxy_forget_after = 0
    peers.load_known(cs, { { namespace = "test", id = "p9", listen = "x", seen = 1 } })
    peers.forget_stale(cs)
    assert.truthy(cs.peers.known.test.p9)
  end)

  it("commands with a wrong number of words, or before REGISTER, are unknown", function()
    local cs = new_cs()
    local sess = { sock = new_sock() }
    for _, c in ipairs({ cmd("ACK", "test", "2"), cmd("DOWN", "test", A), cmd("PATTERN", "ADD", "test", "a*"),
                         cmd("REGISTER", "test"), cmd("NOPE") }) do
      assert.same({ err = "ERR unknown control command '" .. c[1]:upper() .. "'" },
        peers.proxy_command(cs, sess, c))
    end
    assert.same({ err = "ERR unknown control command ''" }, peers.proxy_command(cs, sess, { n = 0 }))
    sess = register(cs, "7401")
    assert.same({ err = "ERR unknown control command 'ACK'" }, peers.proxy_command(cs, sess, cmd("ACK", "test")))
  end)

  it("ACK raises the known proxy's acked version, never lowers it", function()
    local cs = new_cs()
    local sess = register(cs, "7401")
    assert.same({ status = "OK" }, peers.proxy_command(cs, sess, cmd("ACK", "test", "3")))
    assert.equal(3, cs.peers.known.test["7401"].acked)
    peers.proxy_command(cs, sess, cmd("ACK", "test", "2"))
    assert.equal(3, cs.peers.known.test["7401"].acked)
    assert.equal(2, sess.entry.acked)
  end)

  it("DOWN and UP go to cs.on_report; its refusal is an error", function()
    local cs = new_cs()
    cs.on_report = function(entry, kind, ns, addr)
      cs.reports[#cs.reports + 1] = { entry.id, kind, ns, addr }
      if addr == "bad" then return nil, "1003 not a master" end
      return true
    end
    local sess = register(cs, "7401")
    assert.same({ status = "OK" }, peers.proxy_command(cs, sess, cmd("down", "test", A)))
    assert.same({ status = "OK" }, peers.proxy_command(cs, sess, cmd("UP", "test", A)))
    assert.same({ err = "ERR 1003 not a master" }, peers.proxy_command(cs, sess, cmd("DOWN", "test", "bad")))
    assert.same({ { "7401", "DOWN", "test", A }, { "7401", "UP", "test", A }, { "7401", "DOWN", "test", "bad" } },
      cs.reports)
  end)

  it("PATTERN ADD|DEL changes the table through kvcs.api", function()
    local cs = new_cs()
    local sess = register(cs, "7401")
    assert.same({ status = "OK" }, peers.proxy_command(cs, sess, cmd("PATTERN", "add", "test", "user*")))
    assert.same({ "user*" }, store.get(cs.store, "test").patterns)
    assert.equal(1, #cs.published)
    local r = peers.proxy_command(cs, sess, cmd("PATTERN", "DEL", "test", "nope*"))
    assert.truthy(r.err and r.err:find("^ERR %d+ "), r.err)
  end)
end)

describe("kvcs.peers slave commands", function()
  it("SYNC answers the snapshot and registers the slave once", function()
    local cs = new_cs()
    local sess = { sock = new_sock(), registered = false }
    local r = peers.slave_command(cs, sess, cmd("SYNC", "127.0.0.1:7200"))
    assert.same({ "snapshot", btable.encode(store.get(cs.store, "test")), n = 2 }, r)
    assert.same({ peer = "127.0.0.1:50000", addr = "127.0.0.1:7200" }, cs.peers.slaves[sess.sock])
    assert.same({ status = "PONG" }, peers.slave_command(cs, sess, cmd("PING")))
    assert.same({ err = "ERR unknown control command 'REGISTER'" },
      peers.slave_command(cs, sess, cmd("REGISTER", "test", "x", "y")))
  end)

  it("a slave config server refuses SYNC", function()
    local cs = new_cs()
    cs.is_master = false
    assert.same({ err = "ERR this config server is a slave" },
      peers.slave_command(cs, { sock = new_sock() }, cmd("SYNC", "x")))
  end)
end)

describe("kvcs.peers known proxies and acks", function()
  it("wait_acks waits for every known proxy, connected or not, and names one that lags", function()
    local cs = new_cs()
    peers.load_known(cs, { { namespace = "test", id = "p1", listen = "127.0.0.1:7401" } })
    local sess = register(cs, "7402")
    peers.proxy_command(cs, sess, cmd("ACK", "test", "1"))
    clock = 0
    local ok, who = peers.wait_acks(cs, "test", 1, 2)
    assert.is_false(ok)
    assert.equal("127.0.0.1:7401 (id p1, not connected, acked v0)", who)
    assert.is_true(clock >= 2)
    assert.same({ true, "unknown" }, { peers.forget_proxy(cs, "test", "127.0.0.1:7401"), select(2, peers.forget_proxy(cs, "test", "zz")) })
    assert.is_true(peers.wait_acks(cs, "test", 1, 2))
    assert.same({ nil, "connected" }, { peers.forget_proxy(cs, "test", "7402") })
  end)

  it("publish pushes the table to the namespace's proxies and to slaves", function()
    local cs = new_cs()
    local p = new_sock()
    register(cs, "7401", p)
    p.got = {} -- the replicas push that follows REGISTER
    local s = new_sock()
    peers.slave_command(cs, { sock = s }, cmd("SYNC", "x"))
    local t = store.get(cs.store, "test")
    peers.publish(cs, t)
    peers.heartbeat(cs)
    local json = btable.encode(t)
    assert.same({ { "push", "table", json, n = 3 }, { "push", "ping", n = 2 } }, p.got)
    assert.same({ { "push", "table", json, n = 3 }, { "push", "ping", n = 2 } }, s.got)
  end)
end)

describe("kvcs.peers replicas push (issue 13)", function()
  it("follows the REGISTER reply: every address of the table, [] when none learned", function()
    local cs = new_cs()
    cs.ha = { replicas = { [A] = { "127.0.0.1:7371", "127.0.0.1:7372" } } }
    local sock = new_sock()
    local _, r = register(cs, "7401", sock)
    assert.equal(btable.encode(store.get(cs.store, "test")), r)
    local p = sock.got[1]
    assert.equal("push", p[1])
    assert.equal("replicas", p[2])
    assert.equal("test", p[3])
    assert.equal('{"127.0.0.1:6371":["127.0.0.1:7371","127.0.0.1:7372"],"127.0.0.1:6373":[]}', p[4])
  end)

  it("goes to every proxy of each namespace using a master whose replicas changed", function()
    local cs = new_cs()
    assert(store.put(cs.store, assert(btable.init("other", 256, { "127.0.0.1:6400" }))))
    cs.ha = { replicas = {} }
    local s1, s2 = new_sock(), new_sock()
    register(cs, "7401", s1)
    register(cs, "7402", s2)
    local osock = new_sock()
    peers.proxy_command(cs, { sock = osock }, cmd("REGISTER", "other", "127.0.0.1:7403", "7403"))
    s1.got, s2.got, osock.got = {}, {}, {}
    cs.ha.replicas[B] = { "127.0.0.1:7373" }
    peers.replicas_changed(cs, B)
    for _, s in ipairs({ s1, s2 }) do
      assert.equal(1, #s.got)
      assert.same({ n = 4, "push", "replicas", "test", '{"127.0.0.1:6371":[],"127.0.0.1:6373":["127.0.0.1:7373"]}' },
        s.got[1])
    end
    assert.same({}, osock.got)
  end)
end)
