-- kvcs.failover with a fake event loop and fake Redis servers: the vote
-- book-keeping (DOWN, UP, disconnect, re-register), a fail-over happening
-- once however many votes arrive, what it sends to the servers, and the old
-- master re-attached when it answers again. (busted insulates each spec
-- file, so the stubbed modules do not leak into the others.)
local logged = {}
package.loaded["kv.log"] = {
  debug = function() end,
  info = function(...) logged[#logged + 1] = string.format(...) end,
  warn = function(...) logged[#logged + 1] = string.format(...) end,
  error = function(...) logged[#logged + 1] = string.format(...) end,
}
local clock = 1000
package.loaded["kv.loop"] = {
  now = function() return clock end,
  spawn = function(fn, ...)
    local co = coroutine.create(fn)
    assert(coroutine.resume(co, ...))
    return co
  end,
  every = function() end,
  split_addr = function(addr)
    local host, port = tostring(addr):match("^(.+):(%d+)$")
    return host, tonumber(port)
  end,
}

-- servers[addr] = { up = bool, role = "master"|"slave", of = "ip:port",
--                   offset = n, replicas = { addr, ... } }; sent[addr] = commands
local servers, sent = {}, {}
package.loaded["kv.redis"] = {
  connect = function(host, port)
    local addr = host .. ":" .. port
    local s = servers[addr]
    if not s or not s.up then return nil, "cannot connect to " .. addr .. ": refused" end
    local c = { addr = addr }
    function c.call(_, ...)
      local cmd = { ... }
      sent[addr] = sent[addr] or {}
      sent[addr][#sent[addr] + 1] = table.concat(cmd, " ")
      local name = cmd[1]:upper()
      if name == "AUTH" then return { status = "OK" } end
      if name == "CONFIG" then return { err = "ERR The server is running without a config file" } end
      if name == "REPLICAOF" then
        if cmd[2] == "NO" then
          s.role, s.of = "master", nil
        else
          s.role, s.of = "slave", cmd[2] .. ":" .. cmd[3]
        end
        return { status = "OK" }
      end
      if name == "INFO" then
        if s.on_info then -- something happens while this server is asked
          local f = s.on_info
          s.on_info = nil
          f()
        end
        local lines = { "# Replication", "role:" .. s.role }
        if s.role == "slave" then
          local h, p = s.of:match("^(.+):(%d+)$")
          lines[#lines + 1] = "master_host:" .. h
          lines[#lines + 1] = "master_port:" .. p
          lines[#lines + 1] = "slave_repl_offset:" .. (s.offset or 0)
          lines[#lines + 1] = "master_link_status:" .. (s.link_down and "down" or "up")
          if s.link_down then
            lines[#lines + 1] = "master_link_down_since_seconds:" .. s.link_down
          end
        else
          for i, r in ipairs(s.replicas or {}) do
            local h, p = r:match("^(.+):(%d+)$")
            lines[#lines + 1] = ("slave%d:ip=%s,port=%s,state=online,offset=%d,lag=0"):format(i - 1, h, p, s.offset or 0)
          end
        end
        lines[#lines + 1] = "master_repl_offset:" .. (s.offset or 0)
        return table.concat(lines, "\r\n") .. "\r\n"
      end
      return { err = "ERR unknown command" }
    end
    function c.close() end
    return c
  end,
}

local failover = require "kvcs.failover"
local store = require "kvcs.store"
local btable = require "kv.btable"

local M1, R1, M2, R2, C3 = "127.0.0.1:6371", "127.0.0.1:6372", "127.0.0.1:6373", "127.0.0.1:6374", "127.0.0.1:6375"

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

-- A master config server with table "test" over list, and proxies p1..pn.
local function setup(opts)
  opts = opts or {}
  for k in pairs(servers) do servers[k] = nil end
  for k in pairs(sent) do sent[k] = nil end
  for i = #logged, 1, -1 do logged[i] = nil end
  local cs = {
    cfg = { cluster_type = opts.cluster_type or "data_store", redis_password = "pw" },
    store = store.new("/t", memfs()),
    is_master = not opts.slave, support_ha = opts.support_ha ~= false,
    peers = { proxies = { test = {} } },
    published = {},
  }
  cs.ha = failover.new()
  cs.publish = function(t) cs.published[#cs.published + 1] = t end
  cs.save_ha = function(state) cs.saved = state return true end
  assert(store.put(cs.store, btable.init("test", 1023, opts.list or { M1, M2 })))
  cs.proxy = {}
  for i = 1, opts.proxies or 1 do
    local e = { ns = "test", id = "p" .. i, listen = "0.0.0.0:740" .. i, sock = { n = i } }
    cs.peers.proxies.test[e.sock] = e
    cs.proxy[i] = e
  end
  return cs
end

local function data_store_servers()
  servers[M1] = { up = true, role = "master", replicas = { R1 }, offset = 100 }
  servers[R1] = { up = true, role = "slave", of = M1, offset = 100 }
  servers[M2] = { up = true, role = "master", replicas = { R2 }, offset = 50 }
  servers[R2] = { up = true, role = "slave", of = M2, offset = 50 }
end

local function count_sent(addr, text)
  local n = 0
  for _, c in ipairs(sent[addr] or {}) do
    if c == text then n = n + 1 end
  end
  return n
end

local function leave(cs, i)
  local e = cs.proxy[i]
  cs.peers.proxies.test[e.sock] = nil
  failover.proxy_left(cs, e)
end

local function owner0(cs) return store.get(cs.store, "test").owner[0] end

describe("kvcs.failover (data_store)", function()
  it("learns replicas by INFO replication and remembers them", function()
    local cs = setup()
    data_store_servers()
    failover.learn_all(cs)
    assert.same({ R1 }, cs.ha.replicas[M1])
    assert.same({ R2 }, cs.ha.replicas[M2])
    assert.same({ R1 }, cs.saved.replicas[M1])
    assert.equal("AUTH pw", sent[M1][1])
    -- a dead master keeps what was learned
    servers[M1].up = false
    failover.learn_all(cs)
    assert.same({ R1 }, cs.ha.replicas[M1])
  end)

  it("all proxies report down: promotes once, however many votes arrive", function()
    local cs = setup({ proxies = 2 })
    data_store_servers()
    failover.learn_all(cs)
    servers[M1].up = false
    assert.is_true(failover.report(cs, cs.proxy[1], "DOWN", "test", M1))
    assert.equal(M1, owner0(cs))                          -- 1 of 2: nothing
    assert.equal(0, count_sent(R1, "REPLICAOF NO ONE"))
    failover.report(cs, cs.proxy[2], "DOWN", "test", M1)
    assert.equal(R1, owner0(cs))
    assert.equal(2, store.get(cs.store, "test").version)
    assert.equal(1, #cs.published)
    assert.equal(1, count_sent(R1, "REPLICAOF NO ONE"))
    assert.equal("master", servers[R1].role)
    -- votes for the old address are gone; repeated reports change nothing
    assert.is_nil(cs.ha.votes.test[M1])
    for _ = 1, 3 do
      failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
      failover.report(cs, cs.proxy[2], "DOWN", "test", M1)
    end
    assert.equal(2, store.get(cs.store, "test").version)
    assert.equal(1, count_sent(R1, "REPLICAOF NO ONE"))
    assert.equal(1, cs.ha.failovers)
    local warned = table.concat(logged, "\n")
    assert.truthy(warned:find("fail-over: " .. M1 .. " replaced by its replica " .. R1, 1, true), warned)
  end)

  it("a vote of a proxy that disconnected is dropped; the rest may then agree", function()
    local cs = setup({ proxies = 3 })
    data_store_servers()
    failover.learn_all(cs)
    servers[M1].up = false
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    leave(cs, 1)                                           -- its vote goes with it
    assert.is_nil(cs.ha.votes.test[M1])
    failover.report(cs, cs.proxy[2], "DOWN", "test", M1)
    assert.equal(M1, owner0(cs))                           -- 1 of 2 connected
    leave(cs, 3)                                           -- p2 is now every connected proxy
    assert.equal(R1, owner0(cs))
  end)

  it("a proxy that restarts (same id, new session) starts without votes", function()
    local cs = setup({ proxies = 2 })
    data_store_servers()
    failover.learn_all(cs)
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    local again = { ns = "test", id = "p1", listen = "0.0.0.0:7401", sock = { n = 99 } }
    cs.peers.proxies.test[cs.proxy[1].sock] = nil
    cs.peers.proxies.test[again.sock] = again
    failover.proxy_joined(cs, again)
    assert.is_nil(cs.ha.votes.test[M1])
    failover.report(cs, cs.proxy[2], "DOWN", "test", M1)
    assert.equal(M1, owner0(cs))
  end)

  it("UP withdraws the vote", function()
    local cs = setup({ proxies = 2 })
    data_store_servers()
    failover.learn_all(cs)
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    failover.report(cs, cs.proxy[1], "UP", "test", M1)
    failover.report(cs, cs.proxy[2], "DOWN", "test", M1)
    assert.equal(M1, owner0(cs))
    assert.equal(0, count_sent(R1, "REPLICAOF NO ONE"))
  end)

  it("the replica must answer and still replicate from that master", function()
    local cs = setup()
    data_store_servers()
    failover.learn_all(cs)
    servers[M1].up, servers[R1].up = false, false
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    assert.equal(M1, owner0(cs))
    assert.truthy(table.concat(logged, "\n"):find("no replica of it answers", 1, true))
    servers[R1].up, servers[R1].of = true, "127.0.0.1:6399"
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    assert.equal(M1, owner0(cs))
    servers[R1].of = M1                                    -- retried on the next report
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    assert.equal(R1, owner0(cs))
  end)

  it("a stale replica is not promoted; it is once its link went down with the master", function()
    local cs = setup()
    data_store_servers()
    failover.learn_all(cs)
    servers[M1].up = false
    servers[R1].link_down = -1                             -- never finished a sync
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    assert.equal(M1, owner0(cs))
    local said = table.concat(logged, "\n")
    assert.truthy(said:find(R1 .. " never finished a sync with it", 1, true), said)
    servers[R1].link_down = 1000                           -- down long before the first report
    clock = clock + 30
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    assert.equal(M1, owner0(cs))
    said = table.concat(logged, "\n")
    assert.truthy(said:find("its link broke over 300 s before the first down report for the master", 1, true), said)
    assert.equal(0, count_sent(R1, "REPLICAOF NO ONE"))
    servers[R1].link_down = 40                             -- went down with the master
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    assert.equal(R1, owner0(cs))
  end)

  it("a master agreed down while another's replicas are probed waits for the next round", function()
    local cs = setup()
    data_store_servers()
    failover.learn_all(cs)
    servers[M1].up, servers[M2].up = false, false
    -- M2's report arrives while R1 is being asked (the evaluation runs)
    servers[R1].on_info = function() failover.report(cs, cs.proxy[1], "DOWN", "test", M2) end
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    local said = table.concat(logged, "\n")
    assert.falsy(said:find("no replica of it is known", 1, true), said)
    local t = store.get(cs.store, "test")
    assert.equal(R1, t.owner[0])
    assert.equal(R2, t.owner[1])
  end)

  it("never acts with support_ha off or on a slave config server", function()
    for _, opts in ipairs({ { support_ha = false }, { slave = true } }) do
      local cs = setup(opts)
      data_store_servers()
      cs.ha.replicas[M1] = { R1 }
      failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
      assert.equal(M1, owner0(cs))
      assert.equal(0, count_sent(R1, "REPLICAOF NO ONE"))
    end
  end)

  it("ignores reports for addresses not in the table and for another namespace", function()
    local cs = setup()
    assert.is_true(failover.report(cs, cs.proxy[1], "DOWN", "test", C3))
    assert.is_nil(cs.ha.votes.test[C3])
    local ok, err = failover.report(cs, cs.proxy[1], "DOWN", "other", M1)
    assert.is_nil(ok)
    assert.truthy(err:find("registered for 'test'", 1, true))
    assert.is_nil((failover.report(cs, cs.proxy[1], "DOWN", "test", "nonsense")))
  end)

  it("the old master answering again is made a replica of the new one", function()
    local cs = setup()
    data_store_servers()
    failover.learn_all(cs)
    servers[M1].up = false
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    assert.same({ namespace = "test", new = R1 }, cs.ha.watch[M1])
    failover.check_watches(cs)                             -- still down: nothing
    assert.same({ namespace = "test", new = R1 }, cs.ha.watch[M1])
    servers[M1] = { up = true, role = "master", offset = 0 } -- restarted, empty, a master
    failover.check_watches(cs)
    assert.equal(1, count_sent(M1, "REPLICAOF 127.0.0.1 6372"))
    assert.equal("slave", servers[M1].role)
    assert.is_nil(cs.ha.watch[M1])
    assert.equal(1, cs.ha.reattached)
  end)

  it("other replicas of the old master follow the new one", function()
    local cs = setup()
    local R1b = "127.0.0.1:6382"
    data_store_servers()
    servers[M1].replicas = { R1, R1b }
    servers[R1b] = { up = true, role = "slave", of = M1, offset = 90 }
    failover.learn_all(cs)
    servers[M1].up = false
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    assert.equal(R1, owner0(cs))                           -- offset 100 beats 90
    assert.equal(1, count_sent(R1b, "REPLICAOF 127.0.0.1 6372"))
    assert.same({ R1b }, cs.ha.replicas[R1])
  end)

  it("a leader gone between REPLICAOF NO ONE and the table write: the next one finishes, once", function()
    local cs = setup({ proxies = 2 })
    data_store_servers()
    failover.learn_all(cs)
    servers[M1].up = false
    cs.store.fs.write = function() return nil, "disk gone" end -- the table write never lands
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    failover.report(cs, cs.proxy[2], "DOWN", "test", M1)
    assert.equal("master", servers[R1].role)
    assert.equal(M1, owner0(cs))
    local saved = cs.saved -- what the next leader reads (etcd / ha_state.json)
    assert.same({ [R1] = M1 }, saved.promoted)
    local kept = { [R1] = servers[R1], [M2] = servers[M2], [R2] = servers[R2] }
    local cs2 = setup({ proxies = 2 })
    for a, s in pairs(kept) do servers[a] = s end
    servers[M1] = { up = false }
    failover.load(cs2, saved)
    failover.report(cs2, cs2.proxy[1], "DOWN", "test", M1)
    failover.report(cs2, cs2.proxy[2], "DOWN", "test", M1)
    assert.equal(R1, owner0(cs2))
    assert.equal(2, store.get(cs2.store, "test").version)
    assert.equal(0, count_sent(R1, "REPLICAOF NO ONE")) -- it is a master already
    assert.equal(1, cs2.ha.failovers)
    assert.is_nil(cs2.ha.promoted[R1])
    assert.is_nil(cs2.saved.promoted[R1])
  end)

  it("a promotion mark whose replica is in the table (its leader died after the write) is dropped", function()
    local cs = setup({ list = { R1, M2 } })
    data_store_servers()
    failover.load(cs, { promoted = { [R1] = M1 } })
    failover.learn_all(cs)
    assert.is_nil(cs.ha.promoted[R1])
    assert.is_nil(cs.saved.promoted[R1])
  end)

  it("a promotion mark that cannot be saved (a deposed leader: fenced): nothing is sent", function()
    local cs = setup({ proxies = 1 })
    data_store_servers()
    failover.learn_all(cs)
    servers[M1].up = false
    cs.save_ha = function() return nil, "no longer the leader" end
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    assert.equal(0, count_sent(R1, "REPLICAOF NO ONE"))
    assert.equal("slave", servers[R1].role)
    assert.equal(M1, owner0(cs))
  end)
end)

describe("kvcs.failover (cache)", function()
  it("removes the master every proxy reports down, once", function()
    local cs = setup({ cluster_type = "cache", list = { M1, M2, C3 }, proxies = 2 })
    failover.report(cs, cs.proxy[1], "DOWN", "test", C3)
    assert.equal(3, #btable.servers(store.get(cs.store, "test")))
    failover.report(cs, cs.proxy[2], "DOWN", "test", C3)
    local t = store.get(cs.store, "test")
    assert.same({ M1, M2 }, btable.servers(t))
    assert.equal(2, t.version)
    failover.report(cs, cs.proxy[1], "DOWN", "test", C3)
    failover.report(cs, cs.proxy[2], "DOWN", "test", C3)
    assert.equal(2, store.get(cs.store, "test").version)
    assert.equal(1, #cs.published)
    assert.is_nil(cs.ha.watch[C3])
  end)

  it("keeps the last server", function()
    local cs = setup({ cluster_type = "cache", list = { M1 } })
    failover.report(cs, cs.proxy[1], "DOWN", "test", M1)
    assert.same({ M1 }, btable.servers(store.get(cs.store, "test")))
  end)
end)

describe("kvcs.failover state", function()
  it("saves one at a time: two masters learned at once, the newer state lands last", function()
    local cs = setup()
    data_store_servers()
    local blocked, sleepers, landed = {}, {}, nil
    package.loaded["kv.loop"].sleep = function()
      sleepers[#sleepers + 1] = coroutine.running()
      coroutine.yield()
    end
    cs.save_ha = function(state) -- a write that takes a while to land (etcd)
      local snap = {}
      for m, list in pairs(state.replicas) do snap[m] = { unpack(list) } end
      blocked[#blocked + 1] = coroutine.running()
      coroutine.yield()
      landed = snap
      return true
    end
    failover.learn_all(cs) -- a task per master, both saving
    while #blocked > 0 or #sleepers > 0 do
      -- the newest write lands first; a waiting save goes on afterwards
      local co = #blocked > 0 and table.remove(blocked) or table.remove(sleepers, 1)
      assert(coroutine.resume(co))
    end
    package.loaded["kv.loop"].sleep = nil
    assert.same({ [M1] = { R1 }, [M2] = { R2 } }, landed)
  end)

  it("loads what it saved, dropping malformed entries", function()
    local cs = setup()
    failover.load(cs, { replicas = { [M1] = { R1, "bad" } }, watch = { [M2] = { namespace = "test", new = R2 }, x = 1 },
      promoted = { [R1] = M1, [R2] = true, bad = M2 } })
    assert.same({ R1 }, cs.ha.replicas[M1])
    assert.same({ [R1] = M1 }, cs.ha.promoted)
    assert.same({ namespace = "test", new = R2 }, cs.ha.watch[M2])
    assert.is_nil(cs.ha.watch.x)
  end)
end)

describe("kvcs.failover replicas announcement (issue 13)", function()
  it("calls cs.on_replicas(master) when a master's learned replicas change, only then", function()
    local cs = setup()
    data_store_servers()
    local told = {}
    cs.on_replicas = function(m) told[#told + 1] = m end
    failover.learn(cs, M1)
    assert.same({ M1 }, told)
    failover.learn(cs, M1)
    assert.same({ M1 }, told)
    servers[M1].replicas = { R1, R2 }
    failover.learn(cs, M1)
    assert.same({ M1, M1 }, told)
  end)
end)
