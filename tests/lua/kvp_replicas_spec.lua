-- kvp.replicas without a server: the staleness estimator over master offset
-- samples (caught up, lagging, below the history, history bounded and
-- restarted), the verdicts that make a replica down, the map -> poll tasks
-- plan, one tick's calls to the data path with its log lines, and the
-- /metrics lines. (busted insulates each spec file: the stubbed kv.log does
-- not leak.)
local logged = {}
local function logger(level)
  return function(fmt, ...) logged[#logged + 1] = level .. " " .. string.format(fmt, ...) end
end
package.loaded["kv.log"] = { debug = logger("debug"), info = logger("info"), warn = logger("warn"),
                             error = logger("error") }

local replicas = require "kvp.replicas"

local M1, M2 = "10.0.0.1:6379", "10.0.0.2:6379"
local R1, R2, R3 = "10.0.0.11:6379", "10.0.0.12:6379", "10.0.0.21:6379"
local ID = "3f21f73f4f8d8d2815608229bd472b639efc9d09"
local I = replicas.INTERVAL

-- A master record with one sample per interval from t = 0: offsets[i] at (i-1)*I.
local function master(offsets)
  local m = { hist = {} }
  for i, off in ipairs(offsets) do replicas.sample(m, (i - 1) * I, off, ID) end
  return m
end

-- A replica record as poll() leaves it after an answer at time `at`.
local function replica(offset, at, over)
  local info = { role = "slave", master_host = "10.0.0.1", master_port = "6379",
                 master_link_status = "up", master_replid = ID, slave_repl_offset = tostring(offset) }
  for k, v in pairs(over or {}) do info[k] = v end
  return { master = M1, info = info, at = at }
end

describe("kvp.replicas", function()
  before_each(function() logged = {} end)

  it("parses INFO replication", function()
    local f = replicas.parse_info("# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n"
      .. "master_port:17601\r\nmaster_link_status:up\r\nslave_repl_offset:4242\r\n")
    assert.equal("slave", f.role)
    assert.equal("127.0.0.1", f.master_host)
    assert.equal("17601", f.master_port)
    assert.equal("up", f.master_link_status)
    assert.equal("4242", f.slave_repl_offset)
  end)

  describe("staleness", function()
    it("is within one interval for a replica that caught up", function()
      local m = master({ 100, 200, 300 }) -- newest sample at 2I
      local now = 2 * I + I * 0.9
      local lag = replicas.judge(m, replica(300, now), now)
      assert.equal(math.floor(0.9 * I * 1000 + 0.5), lag)
      assert.is_true(lag <= I * 1000)
      -- ahead of the newest sample (the master moved on since): still caught up
      assert.equal(lag, replicas.judge(m, replica(350, now), now))
    end)

    it("is N intervals for a replica N samples behind", function()
      local m = master({ 100, 200, 300, 400, 500, 600 }) -- samples at 0..5I
      local now = 5 * I
      -- 200 was the master's offset at I: 4 intervals ago
      assert.equal(math.floor(4 * I * 1000 + 0.5), replicas.judge(m, replica(200, now), now))
      -- between two samples: only the older one is known held
      assert.equal(math.floor(4 * I * 1000 + 0.5), replicas.judge(m, replica(299, now), now))
      assert.equal(math.floor(I * 1000 + 0.5), replicas.judge(m, replica(500, now), now))
      assert.equal(0, replicas.judge(m, replica(600, now), now))
    end)

    it("keeps growing from the last answer while the replica does not answer, then is down", function()
      local m = master({ 100, 200, 300 })
      local rep = replica(300, 2 * I)
      assert.equal(math.floor(0.5 * 1000 + 0.5), replicas.judge(m, rep, 2 * I + 0.5))
      local lag, why = replicas.judge(m, rep, 2 * I + replicas.TIMEOUT + 0.01)
      assert.equal(-1, lag)
      assert.matches("no answer", why)
    end)

    it("is down for an offset below every kept sample", function()
      local m = master({ 100, 200, 300 })
      local lag, why = replicas.judge(m, replica(99, 2 * I), 2 * I)
      assert.equal(-1, lag)
      assert.matches("further behind than the kept history", why)
      assert.is_nil(replicas.staleness(m, 2 * I, 99))
    end)
  end)

  describe("history", function()
    it("keeps at most HISTORY samples, the newest", function()
      local offsets = {}
      for i = 1, replicas.HISTORY + 10 do offsets[i] = i * 10 end
      local m = master(offsets)
      assert.equal(replicas.HISTORY, #m.hist)
      assert.equal(110, m.hist[1].off)
      assert.equal((replicas.HISTORY + 10) * 10, m.hist[#m.hist].off)
      -- the dropped samples are what a replica at offset 100 would need
      assert.equal(-1, (replicas.judge(m, replica(100, 0), 0)))
    end)

    it("uses one entry while the master's offset stays, at its newest time", function()
      local m = master({ 100, 100, 100, 100 })
      assert.equal(1, #m.hist)
      assert.equal(3 * I, m.hist[1].t)
      assert.equal(0, replicas.judge(m, replica(100, 3 * I), 3 * I))
    end)

    it("starts again on another replid or an offset going back (a restarted master)", function()
      local m = master({ 100, 200, 300 })
      replicas.sample(m, 3 * I, 50, ID)
      assert.same({ { t = 3 * I, off = 50 } }, m.hist)
      replicas.sample(m, 4 * I, 60, "other")
      assert.same({ { t = 4 * I, off = 60 } }, m.hist)
      assert.equal("other", m.replid)
    end)
  end)

  describe("down", function()
    local m = master({ 100, 200, 300 })
    local now = 2 * I

    local function verdict(over, rep)
      local lag, why = replicas.judge(m, rep or replica(300, now, over), now)
      assert.equal(-1, lag)
      return why
    end

    it("when its link to the master is down", function()
      assert.matches("link to the master is down", verdict({ master_link_status = "down" }))
    end)

    it("when it replicates another master than the push says", function()
      assert.matches("replicates 10.0.0.9:6379, not 10.0.0.1:6379", verdict({ master_host = "10.0.0.9" }))
      assert.matches("replicates 10.0.0.1:6380", verdict({ master_port = "6380" }))
    end)

    it("when it is no replica (promoted)", function()
      assert.matches("not a replica", verdict({ role = "master" }))
    end)

    it("when its replication history is not its master's (resync pending)", function()
      assert.matches("another replication history", verdict({ master_replid = "x" }))
    end)

    it("when its last poll failed, or before anything was measured", function()
      assert.equal("closed: connection reset", verdict(nil, { master = M1, err = "closed: connection reset" }))
      assert.equal("not measured yet", verdict(nil, { master = M1 }))
      local lag, why = replicas.judge({ hist = {} }, replica(300, now), now)
      assert.equal(-1, lag)
      assert.equal("not measured yet", why)
    end)
  end)

  describe("plan", function()
    it("gives each address one record and task, and says when the map changed", function()
      local r = replicas.new({ dp = {} })
      local new, changed = replicas.plan(r, { [M1] = { R1, R2 }, [M2] = {} })
      assert.same({ R1, R2, M1 }, new) -- sorted; a master without replicas needs no poll
      assert.is_true(changed)
      assert.is_true(r.servers[M1].is_master)
      assert.equal(M1, r.servers[R1].master)
      new, changed = replicas.plan(r, { [M2] = {}, [M1] = { R2, R1 } })
      assert.same({}, new)
      assert.is_false(changed)
      -- R2 leaves, R3 comes for M2: R2's record stops
      local r2 = r.servers[R2]
      new, changed = replicas.plan(r, { [M1] = { R1 }, [M2] = { R3 } })
      assert.same({ R3, M2 }, new)
      assert.is_true(changed)
      assert.is_true(r2.stopped)
      assert.is_nil(r.servers[R2])
    end)
  end)

  describe("evaluate", function()
    it("sends every replica's lag to the data path and logs each change once", function()
      local calls = {}
      local r = replicas.new({ dp = { set_replica_lag = function(a, l) calls[#calls + 1] = a .. "=" .. l end } })
      replicas.plan(r, { [M1] = { R1 } })
      replicas.evaluate(r, 0) -- nothing measured yet: -1, not logged
      assert.same({ R1 .. "=-1" }, calls)
      assert.same({}, logged)
      for i, off in ipairs({ 100, 200, 300 }) do replicas.sample(r.servers[M1], (i - 1) * I, off, ID) end
      local rep = replica(300, 2 * I)
      r.servers[R1].info, r.servers[R1].at = rep.info, rep.at
      replicas.evaluate(r, 2 * I)
      replicas.evaluate(r, 2 * I + 0.05)
      assert.same({ R1 .. "=-1", R1 .. "=0", R1 .. "=50" }, calls)
      assert.equal(1, #logged)
      assert.matches("^info replica 10.0.0.11:6379 of 10.0.0.1:6379 usable", logged[1])
      r.servers[R1].info.master_link_status = "down"
      replicas.evaluate(r, 2 * I + 0.06)
      replicas.evaluate(r, 2 * I + 0.07)
      assert.same(R1 .. "=-1", calls[#calls])
      assert.equal(2, #logged)
      assert.matches("^warn replica 10.0.0.11:6379 of 10.0.0.1:6379 unusable for replica reads: "
        .. "its link to the master is down", logged[2])
      assert.same({ { replica = R1, master = M1, lag_ms = -1 } }, replicas.lags(r))
    end)

    it("on the ticker, judges again only the replicas whose poll is overdue", function()
      local calls = {}
      local r = replicas.new({ dp = { set_replica_lag = function(a, l) calls[#calls + 1] = a .. "=" .. l end } })
      replicas.plan(r, { [M1] = { R1, R2 } })
      replicas.sample(r.servers[M1], 0, 100, ID)
      for _, a in ipairs({ R1, R2 }) do
        local rep = replica(100, 0)
        r.servers[a].info, r.servers[a].at = rep.info, rep.at
      end
      replicas.evaluate(r, 0)
      r.servers[R2].judged = 0.1 -- R2 was just polled
      calls = {}
      replicas.evaluate(r, 0.16, 1.5 * I)
      assert.same({ R1 .. "=160" }, calls)
    end)

    it("works on a data path without set_replica_lag", function()
      local r = replicas.new({ dp = {} })
      replicas.plan(r, { [M1] = { R1 } })
      replicas.evaluate(r, 0)
      assert.same({ { replica = R1, master = M1, lag_ms = -1 } }, replicas.lags(r))
    end)
  end)

  it("shows each replica's lag in the proxy's /metrics", function()
    local stats = require "kvp.stats"
    local metrics = require "kvp.metrics"
    local r = replicas.new({ dp = {} })
    replicas.plan(r, { [M1] = { R1 }, [M2] = { R3 } })
    r.servers[R1].lag = 42
    local px = { state = { replicas = r }, stats = stats.new(function()
      return { total = 0, slow = 0, rt_sum_us = 0, rt_count = 0, clients = 0, cmds = {} } end, 0) }
    local text = metrics.text(px)
    assert.matches('kvp_replica_lag_ms{master="10.0.0.1:6379",replica="10.0.0.11:6379"} 42\n', text, 1, true)
    assert.matches('kvp_replica_lag_ms{master="10.0.0.2:6379",replica="10.0.0.21:6379"} -1\n', text, 1, true)
  end)
end)
