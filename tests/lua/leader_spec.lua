-- kvcs.leader: one leader among config servers on etcd (fake_etcd: leases,
-- create revisions and compares as etcd's), a clock the spec moves.
package.path = "tests/lua/?.lua;" .. package.path
local fake = require "fake_etcd"
local leader = require "kvcs.leader"

local quiet = { info = function() end, warn = function() end }

local function node(f, name, clock, changes)
  return leader.new({
    etcd = f, prefix = "/kvp", ttl = 3, now = function() return clock.t end, log = quiet,
    me = { name = name, http = name .. ":7000", proxy = name .. ":7100", migration = name .. ":7200" },
    on_change = function(is) changes[#changes + 1] = name .. (is and " leads" or " stops") end,
  })
end

describe("kvcs.leader", function()
  it("the first to campaign leads; the others follow and know it", function()
    local f, clock, changes = fake.new(), { t = 0 }, {}
    local a, b = node(f, "a", clock, changes), node(f, "b", clock, changes)
    assert(leader.acquire(a))
    assert(leader.acquire(b))
    assert.is_true(leader.campaign(a))
    assert.is_false(leader.campaign(b))
    assert.is_true(leader.is_leader(a))
    assert.is_false(leader.is_leader(b))
    assert.equal("a", leader.current(b).name)
    assert.equal("a:7200", leader.current(b).migration)
    assert.same({ "a leads" }, changes)
    local fa = leader.fence(a)
    assert.same({ key = "/kvp/_leader", target = "CREATE", result = "EQUAL", value = fa.value }, fa)
    assert.is_nil(leader.fence(b))
    assert.truthy(f.kvs["/kvp/_members/a"] and f.kvs["/kvp/_members/b"])
  end)

  it("a dead leader's lease ends: another leads, with another fence", function()
    local f, clock, changes = fake.new(), { t = 0 }, {}
    local a, b = node(f, "a", clock, changes), node(f, "b", clock, changes)
    leader.acquire(a); leader.acquire(b)
    leader.campaign(a)
    local old = leader.fence(a).value
    f:expire(a.lease) -- a died: etcd ends its lease
    assert.is_false(leader.look(b))
    assert.is_true(leader.campaign(b))
    assert.not_equal(old, leader.fence(b).value)
    assert.is_nil(f.kvs["/kvp/_members/a"])
  end)

  it("a leader that cannot renew stops leading before its lease can end", function()
    local f, clock, changes = fake.new(), { t = 100 }, {}
    local a = node(f, "a", clock, changes)
    leader.acquire(a)
    leader.campaign(a)
    clock.t = 101
    assert(leader.renew(a)) -- sent at 101: deadline 104
    f.down = true -- cut off from etcd
    clock.t = 102
    assert.is_nil(leader.renew(a))
    leader.check(a)
    assert.is_true(leader.is_leader(a))
    clock.t = 104 - leader.MARGIN
    leader.check(a)
    assert.is_false(leader.is_leader(a))
    assert.is_nil(leader.fence(a))
    assert.same({ "a leads", "a stops" }, changes)
    -- etcd ends the lease only 3 s after it got the renewal (>= 101): later
    assert.truthy(104 - leader.MARGIN < 101 + 3)
  end)

  it("a renewal that finds the lease gone steps down and asks for a new one", function()
    local f, clock, changes = fake.new(), { t = 0 }, {}
    local a = node(f, "a", clock, changes)
    leader.acquire(a)
    leader.campaign(a)
    f:expire(a.lease)
    local ok, err = leader.renew(a)
    assert.is_nil(ok)
    assert.equal("lease ended", err)
    assert.equal("none", a.state)
    assert(leader.acquire(a))
    assert.is_true(leader.campaign(a))
  end)

  it("resign revokes the lease: the leader key goes at once", function()
    local f, clock, changes = fake.new(), { t = 0 }, {}
    local a, b = node(f, "a", clock, changes), node(f, "b", clock, changes)
    leader.acquire(a); leader.acquire(b)
    leader.campaign(a)
    leader.resign(a)
    assert.is_nil(f.kvs["/kvp/_leader"])
    assert.is_true(leader.campaign(b))
  end)
end)
