-- tools.migrate_pace: the states and the clients' signal.
package.path = "lua/?.lua;" .. package.path
local pace = require "tools.migrate_pace"

local function gentle(ops, now)
  local p = pace.new({ mode = "auto", batch = 100 })
  pace.verdict(p, ops, now or 0)
  return p
end

describe("migrate_pace", function()
  it("measures before moving anything", function()
    local p = pace.new({ mode = "auto", batch = 100 })
    assert.equal("measure", p.state)
    assert.is_true(p.paused)
  end)

  it("goes full when no client is there", function()
    local p = gentle(50)
    assert.equal("full", p.state)
    assert.is_false(p.paused)
    assert.is_nil(p.rate)
    assert.equal(100, p.batch)
    assert.equal(pace.FULL_INFLIGHT, p.inflight)
    assert.equal(pace.FULL_COUNT, p.scan_count)
  end)

  it("goes gentle when clients are there: small MIGRATEs, one at a time, a rate", function()
    local p = gentle(40000)
    assert.equal("gentle", p.state)
    assert.equal(pace.START_RATE, p.rate)
    assert.equal(1, p.inflight)
    assert.equal(pace.GENTLE_COUNT, p.scan_count)
    assert.equal(pace.GENTLE_BATCH, p.batch)
  end)

  it("grows while the clients keep their rate and backs off when they lose it", function()
    local p = gentle(40000)
    pace.verdict(p, 39000, 0.25, 20000)
    assert.equal(pace.START_RATE * pace.UP, p.rate)
    pace.verdict(p, 30000, 0.5, 20000) -- 75 % < KEEP
    assert.equal(pace.START_RATE * pace.UP * pace.DOWN, p.rate)
    for i = 1, 20 do pace.verdict(p, 1000, 0.5 + i * 0.25, 20000) end
    assert.equal(pace.MIN_RATE, p.rate)
  end)

  it("grows no further than a little ahead of the work done, so that backing off acts at once", function()
    local p = gentle(40000)
    for i = 1, 40 do pace.verdict(p, 40000, i * 0.25, 3000) end -- the movers do 3000/s whatever the rate
    assert.equal(pace.START_RATE, p.rate)
    for i = 41, 80 do pace.verdict(p, 40000, i * 0.25, 50000) end
    assert.equal(50000 * pace.AHEAD, p.rate)
    pace.verdict(p, 20000, 20.25, 50000) -- clients suffer: one window brings the rate below what was done
    assert.equal(50000 * pace.DOWN, p.rate)
  end)

  it("pauses to measure again when the clients vanish, then goes full", function()
    local p = gentle(40000)
    pace.verdict(p, 10, 0.25)
    assert.equal("calm", p.state)
    assert.is_true(p.paused)
    pace.verdict(p, 10, 0.5) -- settling
    assert.equal("calm", p.state)
    pace.verdict(p, 10, 0.75)
    assert.equal("full", p.state)
  end)

  it("measures the calm rate again every REBASE seconds, keeping its rate", function()
    local p = gentle(40000)
    pace.verdict(p, 40000, 0.25)
    local rate = p.rate
    pace.verdict(p, 40000, pace.REBASE + 0.1)
    assert.equal("calm", p.state)
    pace.verdict(p, 20000, pace.REBASE + 0.35)
    pace.verdict(p, 20000, pace.REBASE + 0.6)
    assert.equal("gentle", p.state)
    assert.equal(20000, p.calm_ops)
    assert.equal(rate, p.rate)
  end)

  it("leaves full for a calm measurement when clients show up", function()
    local p = gentle(0)
    pace.verdict(p, 5000, 0.25)
    assert.equal("calm", p.state)
  end)

  it("keeps gentle batches small, never above --batch", function()
    assert.equal(pace.GENTLE_BATCH, gentle(40000).batch)
    local p = pace.new({ mode = "auto", batch = 5 })
    pace.verdict(p, 40000, 0)
    assert.equal(5, p.batch)
  end)

  it("never backs off with --pace full", function()
    local p = pace.new({ mode = "full", batch = 100 })
    pace.verdict(p, 40000, 0.25)
    assert.equal("full", p.state)
  end)

  it("counts the clients' commands, not the move's", function()
    local info = "# Stats\r\ntotal_commands_processed:1000\r\n# Commandstats\r\n"
      .. "cmdstat_set:calls=600,usec=1\r\ncmdstat_migrate:calls=100,usec=1\r\n"
      .. "cmdstat_scan:calls=50,usec=1\r\ncmdstat_memory|usage:calls=200,usec=1\r\n"
      .. "cmdstat_auth:calls=50,usec=1\r\n"
    assert.equal(600, pace.client_commands(info))
    assert.is_nil(pace.client_commands("garbage"))
  end)
end)
