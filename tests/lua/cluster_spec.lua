-- kvcs.cluster: proxies seen by several config servers on etcd, merged for
-- the leader (fake_etcd: leases and watches as etcd's).
package.path = "tests/lua/?.lua;" .. package.path
local fake = require "fake_etcd"
local cluster = require "kvcs.cluster"

-- a config server `name` on etcd f with lease `lease`; tasks run at once
local function member(f, name, lease)
  local cs = { peers = { proxies = {} }, ha = { votes = {} } }
  cluster.new(cs, {
    etcd = f, prefix = "/kvp", member = name, lease = function() return lease end,
    spawn = function(fn) fn() end, sleep = function() end, log = function() end,
  })
  f:watch("/kvp/", 0, function(events)
    for _, ev in ipairs(events) do cluster.on_event(cs, ev) end
  end)
  return cs
end

local function attach(cs, ns, id, listen, acked)
  cs.peers.proxies[ns] = cs.peers.proxies[ns] or {}
  local e = { id = id, listen = listen, acked = acked or 0 }
  cs.peers.proxies[ns][{}] = e
  cluster.register(cs, ns, id, listen, 0)
  cluster.changed(cs, ns)
  return e
end

describe("kvcs.cluster", function()
  it("the leader sees every member's proxies and their acks", function()
    local f = fake.new()
    local la, lb = f:grant(3), f:grant(3)
    local a, b = member(f, "a", la), member(f, "b", lb)
    attach(a, "test", "p1", "10.0.0.1:6379", 7)
    local e2 = attach(b, "test", "p2", "10.0.0.2:6379", 5)
    assert.same({ p1 = "10.0.0.1:6379", p2 = "10.0.0.2:6379" }, cluster.connected(a, "test"))
    assert.equal(5, cluster.acked(a, "test", "p2"))
    e2.acked = 8
    cluster.changed(b, "test")
    assert.equal(8, cluster.acked(a, "test", "p2"))
    assert.truthy(cluster.known(a, "test").p1 and cluster.known(a, "test").p2)
  end)

  it("a member's report goes with its lease; the known list stays", function()
    local f = fake.new()
    local la, lb = f:grant(3), f:grant(3)
    local a, b = member(f, "a", la), member(f, "b", lb)
    attach(b, "test", "p2", "10.0.0.2:6379", 5)
    f:expire(lb) -- b died
    assert.same({}, cluster.connected(a, "test"))
    assert.equal(0, cluster.acked(a, "test", "p2"))
    assert.truthy(cluster.known(a, "test").p2) -- still holds bucket moves back
  end)

  it("votes of connected proxies only, from every member", function()
    local f = fake.new()
    local la, lb = f:grant(3), f:grant(3)
    local a, b = member(f, "a", la), member(f, "b", lb)
    attach(a, "test", "p1", "x:1")
    attach(b, "test", "p2", "x:2")
    b.ha.votes.test = { ["127.0.0.1:6371"] = { p2 = true } }
    cluster.changed(b, "test")
    assert.same({ ["127.0.0.1:6371"] = { p2 = true } }, cluster.votes(a, "test"))
    f:expire(lb)
    assert.same({}, cluster.votes(a, "test"))
  end)

  it("forgets a proxy away for proxy_forget_after, counted from when it was seen away", function()
    local f = fake.new()
    local a = member(f, "a", f:grant(3))
    local lb = f:grant(3)
    local b = member(f, "b", lb)
    attach(b, "test", "p2", "x:2")
    f:expire(lb)
    assert.same({}, cluster.forget_stale(a, 60, 1000))
    assert.same({}, cluster.forget_stale(a, 60, 1059))
    assert.same({ p2 = "x:2" }, cluster.forget_stale(a, 60, 1060))
    assert.is_nil(cluster.known(a, "test").p2)
    assert.same({}, (f:range("/kvp/test/proxies/")))
  end)

  it("an empty report is deleted, not written", function()
    local f = fake.new()
    local a = member(f, "a", f:grant(3))
    attach(a, "test", "p1", "x:1")
    assert.truthy(f.kvs["/kvp/test/members/a"])
    a.peers.proxies.test = {}
    cluster.changed(a, "test")
    assert.is_nil(f.kvs["/kvp/test/members/a"])
  end)
end)
