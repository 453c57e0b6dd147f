-- kvcs.migration without a server: START and DONE run through M.serve on a
-- fake socket (kv.redis.read_value hands it the commands), the other
-- commands through M.command, with a fake config server whose proxies ack,
-- or do not, as each spec says.
-- (busted insulates each spec file, so the stubbed modules do not leak.)
package.loaded["kv.log"] = {
  debug = function() end, info = function() end, warn = function() end, error = function() end,
}
package.loaded["kv.loop"] = {
  now = function() return 0 end,
  sleep = function() end,
}
package.loaded["kv.redis"] = {
  read_value = function(sock)
    local cmd = table.remove(sock.inbox, 1)
    if cmd == nil then return nil, "closed" end
    if type(cmd) == "function" then return cmd(sock) end
    return cmd
  end,
}

local migration = require "kvcs.migration"
local store = require "kvcs.store"
local btable = require "kv.btable"
local resp = require "kv.resp"
local handshake = require "kv.handshake"
local buckets = require "kvcs.buckets"
local codes = require "kv.codes"

local A, B, C = "127.0.0.1:6371", "127.0.0.1:6373", "127.0.0.1:6375"

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

-- A master config server of one data_store namespace "test" (A, B). Its
-- proxies ack every table unless cs.lagging names one that does not (or is
-- a function of the version that does).
local function new_cs()
  local cs = {
    cfg = { cluster_type = "data_store", redis_password = "pw" },
    store = store.new("/t", memfs()),
    probe = function() return { role = "master", dbsize = 0 } end, -- kvcs.probe's view
    is_master = true,
    published = {},
    waited = {},
  }
  assert(store.put(cs.store, assert(btable.init("test", 256, { A, B }))))
  cs.publish = function(t) cs.published[#cs.published + 1] = t end
  cs.wait_acks = function(ns, version)
    cs.waited[#cs.waited + 1] = version
    local who = cs.lagging
    if type(who) == "function" then who = who(version) end
    if who then return false, who end
    return true
  end
  return cs
end

-- The tool's side of the handshake (kv.handshake): AUTH with the mac of
-- the challenge the server sent first, under secret.
local function auth(secret)
  return function(sock)
    local challenge = resp.decode(sock.sent[1])
    return { n = 2, "AUTH", handshake.mac(secret, challenge[3]) }
  end
end

-- Runs commands (arrays of strings) on one migration connection, after the
-- handshake (from a loopback peer; with the config server's secret unless
-- opts.secret); -> the decoded replies (not the handshake's two).
local function run_as(opts, cs, ...)
  local sock = { inbox = { auth(opts.secret or cs.cfg.cluster_secret) }, sent = {},
                 peer = opts.peer or "127.0.0.1:5555" }
  for _, c in ipairs({ ... }) do
    local cmd = { n = #c }
    for i, v in ipairs(c) do cmd[i] = v end
    sock.inbox[#sock.inbox + 1] = cmd
  end
  function sock.send(_, bytes) sock.sent[#sock.sent + 1] = bytes return true end
  function sock.close() sock.closed = true end
  migration.serve(cs, sock)
  local out = {}
  for i, bytes in ipairs(sock.sent) do out[i] = assert(resp.decode(bytes)) end
  if out[2] and out[2].status == "OK" then
    table.remove(out, 1)
    table.remove(out, 1)
  end
  return out, sock
end

local function run(cs, ...) return run_as({}, cs, ...) end

local function tbl(cs) return store.get(cs.store, "test") end

describe("kvcs.migration MIGRATE.START", function()
  it("refuses a destination that does not answer as a Redis master (issue 11)", function()
    for _, case in ipairs({
      { codes.NOT_REDIS, function(a) return nil, codes.NOT_REDIS, a .. " does not answer as Redis" end },
      { codes.BAD_TARGET, function() return { role = "slave", master = A } end },
    }) do
      local cs = new_cs()
      local seen
      cs.probe = function(a, pw) seen = pw return case[2](a) end
      local r = run(cs, { "MIGRATE.START", "test", C, "5" })
      assert.truthy(r[1].err and r[1].err:find("^ERR " .. case[1]), tostring(r[1].err))
      assert.equal(0, #cs.published)
      assert.equal(1, tbl(cs).version)
      assert.equal("pw", seen)
    end
  end)

  it("blocks, waits for the acks, then publishes the buckets migrating", function()
    local cs = new_cs()
    local r = run(cs, { "MIGRATE.START", "test", C, "5", "7" })
    assert.same({ { status = "OK" } }, r)
    local t = tbl(cs)
    assert.equal(C, t.migrating[5])
    assert.equal(C, t.migrating[7])
    assert.is_nil(t.blocked[5])
    assert.is_nil(t.blocked[7])
    assert.equal(2, #cs.published)
    assert.is_true(cs.published[1].blocked[5] and cs.published[1].blocked[7])
    assert.equal(2, cs.published[1].version)
    assert.equal(3, cs.published[2].version)
    assert.same({ 2, 3 }, cs.waited)
  end)

  it("whose first acks time out leaves no bucket blocked; a retry finishes the move", function()
    local cs = new_cs()
    cs.lagging = "127.0.0.1:7400 (id p1, not connected, acked v1)"
    local r = run(cs, { "MIGRATE.START", "test", C, "5" })
    assert.truthy(r[1].err and r[1].err:find("127.0.0.1:7400", 1, true), r[1].err)
    -- clients must not wait for the proxy that is away: bucket 5 is served again
    assert.is_nil(tbl(cs).blocked[5])
    assert.is_true(tbl(cs).version > cs.published[1].version)
    assert.equal(tbl(cs), cs.published[#cs.published])

    cs.lagging = nil
    r = run(cs, { "MIGRATE.START", "test", C, "5" })
    assert.same({ { status = "OK" } }, r)
    assert.equal(C, tbl(cs).migrating[5])
    assert.is_nil(tbl(cs).blocked[5])
    assert.equal(tbl(cs), cs.published[#cs.published])
  end)

  it("retried on a table left with blocked buckets publishes them migrating", function()
    local cs = new_cs()
    -- the config server stopped between the two tables of a START
    local t = assert(btable.start_migration(tbl(cs), 5, C))
    t.blocked[5] = true
    assert(store.put(cs.store, t))
    local r = run(cs, { "MIGRATE.START", "test", C, "5" })
    assert.same({ { status = "OK" } }, r)
    assert.equal(C, tbl(cs).migrating[5])
    assert.is_nil(tbl(cs).blocked[5])
    assert.equal(t.version, cs.waited[1]) -- the blocked table acked first
    assert.equal(tbl(cs), cs.published[#cs.published])
  end)

  it("whose migrating table is not acked fails; the buckets stay migrating and a retry waits", function()
    local cs = new_cs()
    cs.lagging = function(v) return v == 3 and "127.0.0.1:7400 (id p1)" or nil end
    local r = run(cs, { "MIGRATE.START", "test", C, "5" })
    assert.truthy(r[1].err:find("has not acked table v3", 1, true), r[1].err)
    assert.equal("migrating", buckets.state(tbl(cs), 5)) -- keys may move now: no way back
    cs.lagging = nil
    r = run(cs, { "MIGRATE.START", "test", C, "5" })
    assert.same({ { status = "OK" } }, r)
    assert.equal(3, tbl(cs).version)
    assert.same({ 2, 3, 3 }, cs.waited)
  end)

  it("aborts only the buckets it blocked; others of the list keep migrating", function()
    local cs = new_cs()
    assert.same({ { status = "OK" } }, run(cs, { "MIGRATE.START", "test", C, "5" }))
    cs.lagging = "127.0.0.1:7400 (id p1)"
    local r = run(cs, { "MIGRATE.START", "test", C, "5", "7" })
    assert.truthy(r[1].err, "an error")
    assert.equal("migrating", buckets.state(tbl(cs), 5))
    assert.equal("owned", buckets.state(tbl(cs), 7))
  end)

  it("refuses a bad destination, a bucket of another move, a slave", function()
    local cs = new_cs()
    assert(store.put(cs.store, assert(btable.init("other", 256, { "127.0.0.1:6399" }))))
    local r = run(cs,
      { "MIGRATE.START", "test", "nohost", "5" },
      { "MIGRATE.START", "test", "127.0.0.1:6399", "5" },
      { "MIGRATE.START", "test", C, "x" },
      { "MIGRATE.START", "test", C, "256" },
      { "MIGRATE.START", "nosuch", C, "5" },
      { "MIGRATE.START", "test", A, "4" })
    assert.same({
      { err = "ERR 1006 invalid destination nohost" },
      { err = "ERR 1007 127.0.0.1:6399 is used by namespace 'other'" },
      { err = "ERR 1003 bucket ids are integers" },
      { err = "ERR 1003 bucket 256 is not 0..255" },
      { err = "ERR 1004 no such namespace 'nosuch'" },
      { err = "ERR 1018 bucket 4 is already owned by 127.0.0.1:6371" },
    }, r)
    cs.is_master = false
    assert.same({ { err = "ERR 1008 this config server is a slave" } }, run(cs, { "MIGRATE.START", "test", C, "5" }))
    assert.equal(0, #cs.published)
  end)
end)

describe("kvcs.migration MIGRATE.DONE", function()
  it("gives a migrating bucket to its destination; a retry answers OK", function()
    local cs = new_cs()
    local r = run(cs, { "MIGRATE.START", "test", C, "5" }, { "MIGRATE.DONE", "test", C, "5" },
      { "MIGRATE.DONE", "test", C, "5" })
    assert.same({ { status = "OK" }, { status = "OK" }, { status = "OK" } }, r)
    assert.equal(C, tbl(cs).owner[5])
    assert.equal(4, tbl(cs).version)
  end)

  it("refuses a bucket still blocked: its keys have not moved", function()
    local cs = new_cs()
    assert(store.put(cs.store, assert(buckets.block(tbl(cs), C, { 5 }))))
    local r = run(cs, { "MIGRATE.DONE", "test", C, "5" }, { "MIGRATE.DONE", "test", B, "4" })
    assert.same({ { err = "ERR 1018 bucket 5 is blocked: its MIGRATE.START has not completed" },
                  { err = "ERR 1018 bucket 4 is not migrating to 127.0.0.1:6373" } }, r)
  end)
end)

describe("kvcs.migration.abort_blocked", function()
  it("gives buckets left blocked by a stop back to their owner, and nothing else", function()
    local cs = new_cs()
    local t = assert(buckets.block(tbl(cs), C, { 5, 6 }))
    t = assert(buckets.migrate(t, { 6 }))
    assert(store.put(cs.store, t))
    migration.abort_blocked(cs)
    assert.equal(t.version + 1, tbl(cs).version)
    assert.equal("owned", buckets.state(tbl(cs), 5))
    assert.equal("migrating", buckets.state(tbl(cs), 6))
    local v = tbl(cs).version
    migration.abort_blocked(cs)
    assert.equal(v, tbl(cs).version)
  end)
end)

describe("kvcs.migration commands", function()
  local function cmd(...) return { n = select("#", ...), ... } end

  it("PING and TABLE answer from the config server; REDIS_PASSWORD is gone", function()
    local cs = new_cs()
    assert.same({ status = "PONG" }, migration.command(cs, cmd("ping")))
    assert.same({ err = "ERR unknown command 'REDIS_PASSWORD'" }, migration.command(cs, cmd("REDIS_PASSWORD")))
    assert.equal(btable.encode(tbl(cs)), migration.command(cs, cmd("TABLE", "test")))
    assert.same({ err = "ERR 1004 no such namespace 'nope'" }, migration.command(cs, cmd("TABLE", "nope")))
  end)

  it("an unknown command or a wrong number of words is an unknown command", function()
    local cs = new_cs()
    for _, c in ipairs({ cmd("TABLE"), cmd("TABLE", "test", "x"), cmd("MIGRATE.START", "test", C), cmd("MIGRATE.DONE"),
                         cmd("FLUSHALL") }) do
      assert.same({ err = "ERR unknown command '" .. c[1]:upper() .. "'" }, migration.command(cs, c))
    end
    assert.same({ err = "ERR unknown command ''" }, migration.command(cs, { n = 0 }))
    assert.same({ err = "ERR unknown command ''" }, migration.command(cs, { status = "OK" }))
  end)

  it("every command declares its arity next to its handler", function()
    for name, c in pairs(migration.commands) do
      assert.equal("number", type(c.arity), name)
      assert.equal("function", type(c.run), name)
    end
  end)

  it("moves buckets only in a data_store cluster", function()
    local cs = new_cs()
    cs.cfg.cluster_type = "cache"
    assert.same({ err = "ERR 1009 migration is for data_store clusters" },
      migration.command(cs, cmd("MIGRATE.START", "test", C, "5")))
  end)
end)

describe("kvcs.migration handshake", function()
  it("a peer without the secret gets NOAUTH, is logged, and changes nothing", function()
    local cs = new_cs()
    cs.cfg.cluster_secret = "s3cret"
    local logged = {}
    cs.refused = function(port, peer, why) logged[#logged + 1] = port .. " " .. peer .. " " .. why end
    local v = tbl(cs).version
    local out, sock = run_as({ secret = "guess", peer = "10.0.0.9:4000" }, cs,
      { "MIGRATE.START", "test", C, "5" }, { "MIGRATE.DONE", "test", C, "5" })
    assert.equal("challenge", out[1][2])
    assert.matches("^NOAUTH", out[2].err)
    assert.equal(2, #out)
    assert.is_true(sock.closed)
    assert.same({ "migration port 10.0.0.9:4000 wrong cluster_secret" }, logged)
    assert.equal(v, tbl(cs).version)
    -- with it, from anywhere
    out = run_as({ peer = "10.0.0.9:4000" }, cs, { "PING" })
    assert.same({ { status = "PONG" } }, out)
  end)

  it("with no secret configured, a non-loopback peer is refused before any challenge", function()
    local cs = new_cs()
    cs.cfg.cluster_secret = ""
    local out = run_as({ peer = "10.0.0.9:4000" }, cs, { "PING" })
    assert.equal(1, #out)
    assert.matches("^NOAUTH control port: not a loopback peer", out[1].err)
    assert.same({ { status = "PONG" } }, run_as({ peer = "127.0.0.1:4000" }, cs, { "PING" }))
  end)
end)
