-- tools.migration_tool: move buckets between Redis masters online (SPEC §7,
-- DESIGN §5), for data_store clusters.
--
--   migration_tool --cs HOST:PORT[,HOST:PORT...] --ns NS (--add ADDR | --del ADDR |
--                  --rebalance [--by memory|keys] [--spread PCT] [--sample N])
--                  [--secret S] [--password PW] [--config FILE] [--dry-run]
--                  [--count N] [--wait_ms MS] [--batch K] [--parallel P]
--
-- The migration port wants the handshake (kv.handshake) over the cluster's
-- secret; the masters' password is the tool's own (M.credentials: flag,
-- then KV_CLUSTER_SECRET / KV_REDIS_PASSWORD, then the config file).
-- --cs may name several config servers (kvcs sharing one store, issue 14;
-- or a master/slave pair): the tool talks to the first that answers and
-- goes on with another, or with the leader one names, resending the
-- command (CS below).
--
-- What it does (plan: tools.migrate_plan):
--
--   TABLE ns from the config server's migration port (it must be the table
--         of ns; the tool prints the routing policy version it runs under,
--         and stops if the policy's routing changes under it: M.policy_watch)
--   plan: buckets left migrating by an earlier run first, then
--         kv.btable.scale_up/scale_down; cut into rounds of P buckets
--         (--rebalance: the load of every bucket is measured first,
--         M.measure: one SCAN of each master counting keys "<b>_..." per
--         bucket, and with --by memory MEMORY USAGE of up to --sample keys
--         per bucket, scaled to its key count; then
--         tools.migrate_plan.rebalance picks the moves)
--   --dry-run: print the plan and stop
--   per round:
--     MIGRATE.START ns dst b...          one command per destination; +OK once
--                                        every proxy migrates b on access
--     per source master, all at once:    (a coroutine each)
--       pass:  SCAN cur MATCH * COUNT 1000 on the master ──> keys "<b>_..." of
--              the round's buckets ──> MIGRATE dst "" 0 T [AUTH pw] KEYS k...
--              (K keys each, queued on a second connection: tools.migrate_pace
--              sets K, how many are queued, the SCAN COUNT and the rate)
--       repeat passes until one finds no key of the round (the first clean
--       pass is the verification), at most MAX_PASSES; at full pace (no
--       client) a pass after which DBSIZE fell by exactly the keys found
--       is the last (see empty_source)
--     MIGRATE.DONE ns dst b...           dst owns b everywhere
--     sleep --wait_ms
--
-- Safety: a key is only ever moved by MIGRATE (atomic per key in Redis;
-- proxies migrating the same key on access race safely: one of them gets
-- NOKEY). Any MIGRATE reply other than OK/NOKEY is retried, then ends the
-- run before DONE; the round's buckets stay migrating, which clients do not
-- notice, and the same command run again finishes them (the config server's
-- table says where the run stopped). The password is never touched: MIGRATE
-- carries AUTH. Only masters are scanned (ROLE is checked first).
local loop = require "kv.loop"
local redis = require "kv.redis"
local resp = require "kv.resp"
local core = require "kv.core"
local names = require "kv.names"
local btable = require "kv.btable"
local plan = require "tools.migrate_plan"
local pace = require "tools.migrate_pace"
local handshake = require "kv.handshake"
local config = require "kv.config"
local kpolicy = require "kv.policy"

local M = {}

local byte, concat, format = string.byte, table.concat, string.format

-- --parallel: every round costs two full SCANs of each source (moving, then
-- verifying), whatever its size, so the fewer the rounds the faster the run
-- (2 -> 3 masters, 300 000 keys: 64 buckets a round, 6 rounds, ~35 000
-- keys/s; 1 round, ~110 000 keys/s). A migrating bucket costs its clients one
-- MIGRATE round trip per command (no pause), so many in flight is cheap;
-- 512 moves the common cases of a 1023-bucket table (2->3, 3->4, 3->2) in one
-- round and still slices a scale-out of a 16384-bucket table into bounded
-- rounds.
M.DEFAULT_PARALLEL = 512
-- keys per MIGRATE: each blocks the source for ~6.5 us a key, so 100 keeps
-- a client waiting behind it under a millisecond (1000 gave a p99 of 7 ms
-- during a move) at the same keys/s
M.DEFAULT_BATCH = 100
M.SCAN_COUNT = 1000
M.MIGRATE_TIMEOUT_MS = 5000   -- per I/O step of the source -> destination transfer
M.MAX_TRIES = 3               -- attempts per MIGRATE batch before the run fails
M.MAX_PASSES = 5              -- scan passes per source and round
M.CS_TIMEOUT = 120            -- seconds to wait for START/DONE (the CS waits up to 10 s per ack round)
M.CS_RETRIES = 3              -- rounds over the --cs addresses after the first, on transport errors
M.MAX_CS = 16                 -- addresses in --cs at most
M.DEFAULT_SAMPLE = 64         -- --rebalance --by memory: keys measured per bucket
M.MEMORY_PIPELINE = 256       -- MEMORY USAGE commands per round trip
-- a key of at least this many MB (MEMORY USAGE) is a big key: MIGRATE
-- blocks its source while it serializes the key and the destination
-- restores it, 2.5 (strings) to 22 (hashes) ms a MB here (README "Big keys")
M.DEFAULT_BIG_KEY_MB = 1

local USAGE = [[
usage: migration_tool --cs HOST:PORT[,HOST:PORT...] --ns NAMESPACE (--add ADDR | --del ADDR |
                      --rebalance [--by memory|keys] [--spread PCT] [--sample N])
                      [--secret S] [--password PW] [--config FILE] [--dry-run]
                      [--count N] [--wait_ms MS] [--batch K] [--parallel P]
                      [--max-keys-per-sec N] [--pace auto|full] [--big-key-mb MB]

Moves buckets of a data_store namespace between Redis masters while clients
keep working, then updates the table on the config server.

  --cs HOST:PORT   the master config server's migration port (e.g. 127.0.0.1:7200);
                   or several, comma-separated (at most 16): config servers
                   sharing one store (the tool goes on with the next one when
                   one fails, and to the leader a follower names), or a
                   master/slave pair
  --ns NAMESPACE   the namespace to rebalance
  --add ADDR       scale out: move buckets onto the new master ADDR (ip:port)
                   until every master holds floor/ceil(buckets / masters)
  --del ADDR       scale in: move every bucket of ADDR to the other masters, evenly
  --rebalance      move buckets between the table's masters so that their load
                   ends within --spread of each other (heaviest / lightest),
                   moving as few buckets as it can: the heaviest master gives
                   the lightest the bucket that best halves the gap between
                   them, until within the spread or no bucket fits.
                   The load is measured first: one SCAN (COUNT 1000) of every
                   master, counting its keys per bucket; with --by memory also
                   MEMORY USAGE (default SAMPLES 5: a collection's size is
                   estimated from 5 elements, never walked in full) of at most
                   --sample keys of each bucket, the bucket's bytes taken as
                   their mean times its key count (a big key not sampled is
                   missed: raise --sample; --sample 0 measures every key).
                   Costs a full SCAN of every master plus up to
                   buckets x N MEMORY USAGE calls, pipelined.
  --by memory|keys with --rebalance: what load means (default memory)
  --spread PCT     with --rebalance: the goal, heaviest <= lightest x (1 + PCT/100)
                   (default 10)
  --sample N       with --rebalance --by memory: keys measured per bucket
                   (default 64; 0: all)
  --dry-run        print the plan (with --rebalance: each bucket, its keys and
                   bytes, and every master's load before and after) and stop
                   without moving anything
  --secret S       the config servers' cluster_secret (default: $KV_CLUSTER_SECRET;
                   none: only a config server on loopback accepts the tool)
  --password PW    the masters' requirepass (default: $KV_REDIS_PASSWORD, else none)
  --config FILE    cluster_secret and redis_password (Lua syntax, as kvcs.conf);
                   default ./migration_tool.conf when it exists. A flag wins
                   over the environment, which wins over the file.
  --count N        move at most N buckets this run (default: all)
  --wait_ms MS     pause between rounds (slices, at the gentle pace) of buckets
                   (default 0)
  --batch K        keys per MIGRATE command (default 100)
  --parallel P     buckets migrating at once (default 512)
  --max-keys-per-sec N  a hard cap on the keys moved per second, over all
                   sources together (default: none)
  --pace auto|full auto (default): watch the clients' commands on the masters
                   of the move (INFO, every 0.25 s) and, while there are any,
                   move gently: 64 buckets at a time, small MIGRATEs one at a
                   time, at a rate that backs off as soon as the clients'
                   throughput falls below 80 % of what it is with the move
                   paused (measured between slices and every 10 s); with no
                   client, full speed. full: never back off.
  --big-key-mb MB  a key of at least MB megabytes (MEMORY USAGE) is a big key
                   (default 1): while clients are there every key's size is
                   checked before it moves and a big one moves alone, its pause
                   printed; at full pace a MIGRATE slower than 10 ms has its
                   keys measured after, and the big ones are printed with its
                   time (a big key moved faster than that is not).
Ctrl-C stops between two rounds (slices, at the gentle pace) of buckets (the
one in progress finishes: none is left migrating); a second Ctrl-C stops at
once. Either way, the same command run again goes on where it stopped.
  -h, --help       this help

Progress goes to stdout (one updating line on a terminal, a line per bucket
otherwise). Exit status 0 only when every planned bucket moved. An interrupted
or failed run is finished by running the same command again.]]

--------------------------------------------------------------------------------
-- Command line
--------------------------------------------------------------------------------

local function parse_uint(s, name, min, max)
  local n = s and s:match("^%d+$") and tonumber(s)
  if not n or n < min or n > max then
    return nil, ("%s must be an integer from %d to %d, got '%s'"):format(name, min, max, tostring(s))
  end
  return n
end

-- -> opts | nil (help) | nil, err
function M.parse_args(argv)
  local o = { batch = M.DEFAULT_BATCH, parallel = M.DEFAULT_PARALLEL, wait_ms = 0 }
  local with_value = { cs = true, ns = true, add = true, del = true, password = true, secret = true, config = true,
                       count = true, wait_ms = true, batch = true, parallel = true, max_keys_per_sec = true,
                       by = true, spread = true, sample = true, pace = true, big_key_mb = true }
  local flags = { rebalance = true, dry_run = true } -- no value
  local seen = {}
  local i = 1
  while argv[i] ~= nil do
    local a = argv[i]
    if a == "-h" or a == "--help" then return nil end
    local name, val = a:match("^%-%-([%w_-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w_-]+)$") end
    if name then name = name:gsub("-", "_") end
    if name and flags[name] and val == nil then
      if seen[name] then return nil, "--" .. name:gsub("_", "-") .. " is given twice" end
      seen[name] = true
      o[name] = true
      i = i + 1
      goto continue
    end
    if not name or not with_value[name] then return nil, "unknown argument '" .. a .. "'" end
    if val == nil then
      val = argv[i + 1]
      if val == nil then return nil, "--" .. name .. " needs a value" end
      i = i + 1
    end
    if seen[name] then return nil, "--" .. name .. " is given twice" end
    seen[name] = true
    o[name] = val
    i = i + 1
    ::continue::
  end
  if not o.cs then return nil, "--cs HOST:PORT[,HOST:PORT...] is required" end
  local list, lerr = names.endpoint_list(o.cs, M.MAX_CS)
  if not list then return nil, "--cs: " .. lerr end
  o.cs_list = list
  if not o.ns then return nil, "--ns NAMESPACE is required" end
  local ok, e = names.valid_namespace(o.ns)
  if not ok then return nil, "--ns: " .. e end
  if o.rebalance and (o.add or o.del) then return nil, "--rebalance moves buckets between the masters there are: not with --add or --del" end
  if o.add and o.del then return nil, "give either --add or --del, not both" end
  if not o.add and not o.del and not o.rebalance then return nil, "--add ADDR or --del ADDR is required (or --rebalance)" end
  local n
  if o.rebalance then
    o.op = "rebalance"
    o.by = o.by or "memory"
    if o.by ~= "memory" and o.by ~= "keys" then return nil, "--by must be memory or keys, got '" .. o.by .. "'" end
    n, e = parse_uint(o.spread or "10", "--spread", 0, 100000)
    if not n then return nil, e end
    o.spread = n
    n, e = parse_uint(o.sample or tostring(M.DEFAULT_SAMPLE), "--sample", 0, 1e9)
    if not n then return nil, e end
    o.sample = n
  else
    for _, k in ipairs({ "by", "spread", "sample" }) do
      if o[k] then return nil, "--" .. k .. " goes with --rebalance" end
    end
    o.op = o.add and "add" or "del"
    o.addr = o.add or o.del
    ok, e = names.valid_addr(o.addr)
    if not ok then return nil, "--" .. o.op .. ": " .. e end
  end
  if o.count ~= nil then
    n, e = parse_uint(o.count, "--count", 1, 1e9)
    if not n then return nil, e end
    o.count = n
  end
  o.pace = o.pace or "auto"
  if o.pace ~= "auto" and o.pace ~= "full" then return nil, "--pace must be auto or full, got '" .. o.pace .. "'" end
  o.big_key_mb = o.big_key_mb or tostring(M.DEFAULT_BIG_KEY_MB)
  for _, k in ipairs({ { "wait_ms", 0, 3600000 }, { "batch", 1, 100000 }, { "parallel", 1, btable.MAX_BUCKETS },
                       { "max_keys_per_sec", 1, 1e9 }, { "big_key_mb", 1, 4096 } }) do
    if type(o[k[1]]) == "string" then
      n, e = parse_uint(o[k[1]], "--" .. k[1], k[2], k[3])
      if not n then return nil, e end
      o[k[1]] = n
    end
  end
  return o
end

--------------------------------------------------------------------------------
-- Failures: raised as a Fail object, printed once by main
--------------------------------------------------------------------------------

local Fail = {}
Fail.__index = Fail
Fail.__tostring = function(f) return f.msg end

local function fail(fmt, ...)
  error(setmetatable({ msg = select("#", ...) > 0 and format(fmt, ...) or fmt }, Fail), 0)
end

-- KV_MT_DEBUG=1: timings of each step on stderr.
local DEBUG = os.getenv("KV_MT_DEBUG")
local function dbg(fmt, ...)
  if DEBUG then io.stderr:write(format("[%.3f] " .. fmt .. "\n", core.now(), ...)) end
end

-- Printable form of a binary key.
local function show_key(k)
  local s = k:gsub("[^%w%p ]", function(c) return format("\\x%02x", byte(c)) end)
  if #s > 80 then s = s:sub(1, 77) .. "..." end
  return '"' .. s .. '"'
end

-- The key of a MIGRATE segment "$<len>\r\n<key>\r\n".
local function seg_key(seg)
  return seg:sub(seg:find("\r\n", 1, true) + 2, -3)
end

local function human_bytes(n)
  if n >= 1073741824 then return format("%.2f GB", n / 1073741824) end
  if n >= 1048576 then return format("%.2f MB", n / 1048576) end
  if n >= 1024 then return format("%.1f KB", n / 1024) end
  return format("%d B", n)
end

--------------------------------------------------------------------------------
-- Output: one updating line on a terminal, plain lines otherwise
--------------------------------------------------------------------------------

local Out = {}
Out.__index = Out

local function new_out(tty)
  return setmetatable({ tty = tty, drawn = false, buckets = 0, total = 0, keys = 0, bytes = 0,
                        est = 0, t0 = core.now(), last = 0 }, Out)
end

local function human_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s < 60 then return s .. "s" end
  if s < 3600 then return format("%dm%02ds", s / 60, s % 60) end
  return format("%dh%02dm", s / 3600, (s % 3600) / 60)
end

function Out:rate()
  local dt = core.now() - self.t0
  return dt > 0 and self.keys / dt or 0
end

function Out:clear()
  if self.tty and self.drawn then
    io.stdout:write("\r\27[K")
    self.drawn = false
  end
end

-- A line that stays (on a terminal, above the progress line).
function Out:line(s)
  self:clear()
  io.stdout:write(s, "\n")
  io.stdout:flush()
  if self.tty then self:draw(true) end
end

function Out:err(s)
  self:clear()
  io.stdout:flush()
  io.stderr:write("migration_tool: ", s, "\n")
  io.stderr:flush()
end

function Out:draw(force)
  if not self.tty or not self.active then return end
  local now = core.now()
  if not force and now - self.last < 0.2 then return end
  self.last = now
  local rate = self:rate()
  local left = math.max(self.est - self.keys, 0)
  local eta = self.buckets >= self.total and 0 or (rate > 0 and left / rate or math.huge)
  io.stdout:write(format("\r\27[K[%d/%d buckets] %d keys, %s moved, %d keys/s, ETA %s, pace %s",
    self.buckets, self.total, self.keys, human_bytes(self.bytes), math.floor(rate), human_time(eta),
    self.pace and pace.describe(self.pace) or "-"))
  io.stdout:flush()
  self.drawn = true
end

-- n keys of about bytes (MEMORY USAGE) moved
function Out:moved(n, bytes)
  self.keys = self.keys + n
  self.bytes = self.bytes + (bytes or 0)
  self:draw(false)
end

function Out:bucket_done(b, dst, keys)
  self.buckets = self.buckets + 1
  if self.tty then
    self:draw(false)
  else
    io.stdout:write(format("bucket %d -> %s: %d keys\n", b, dst, keys))
    io.stdout:flush()
  end
end

function Out:finish()
  if self.tty and self.drawn then
    self:draw(true)
    io.stdout:write("\n")
    self.drawn = false
  end
  self.active = false
  io.stdout:flush()
end

--------------------------------------------------------------------------------
-- Config servers (migration ports, --cs a,b,c). One connection at a time,
-- to the first that answers. Every command may be sent again (TABLE reads;
-- MIGRATE.START and MIGRATE.DONE are idempotent on the config server: a
-- bucket already migrating to dst, or already owned by it, is accepted),
-- so a command whose reply was lost, or that a server refused because it
-- is not the one to act, is resent:
--   transport error (connect, handshake, I/O, time-out) -> the next address
--   -ERR NOTLEADER <addr>  (a kvcs follower, issue 14)  -> <addr>, the leader
--   -ERR NOTLEADER ?       (no leader known yet)        -> the next address
--   -ERR 1008 ... (a slave of a master/slave pair)      -> the next address
--                                       (with one address: the refusal stands)
-- A round is as many failed attempts as there are addresses; after each
-- round the tool waits (1 s, 2 s, ...) and gives up after M.CS_RETRIES + 1
-- rounds. Other error replies are returned as { err = }.
--------------------------------------------------------------------------------

local CS = {}
CS.__index = CS

-- addrs: the --cs list. opts: note(line) says a move (default: stderr);
-- for tests dial(addr, secret) -> client | nil, err (a client has
-- :call(...) and :close()) and sleep(seconds).
local function new_cs(addrs, secret, opts)
  opts = opts or {}
  local note = opts.note or function(line) io.stderr:write("migration_tool: ", line, "\n") end
  return setmetatable({ addrs = addrs, i = 1, addr = addrs[1], secret = secret or "", note = note,
                        dial = opts.dial or M.dial, sleep = opts.sleep or loop.sleep }, CS)
end
M.new_cs = new_cs

-- A connection to the migration port at addr that passed the handshake
-- (kv.handshake). -> client | nil, err
function M.dial(addr, secret)
  local host, port = loop.split_addr(addr)
  local c, err = redis.connect(host, port, { raw = true, timeout = M.CS_TIMEOUT, connect_timeout = 5 })
  if not c then return nil, err end
  local ok, herr = handshake.client({
    send = function(b) return c:send_raw(b) end,
    read = function() return c:read_reply(5) end,
  }, secret)
  if ok then return c end
  c:close()
  return nil, "handshake: " .. tostring(herr) .. " (check --secret / KV_CLUSTER_SECRET)"
end

-- A reply saying "not me": -> the address to go to, "?" (the next one), or
-- nil for any other reply. A slave's 1008 counts only with slave_too (a
-- --cs of several addresses: one of the others may be the master; with one
-- the refusal is the answer).
function M.not_leader(r, slave_too)
  if type(r) ~= "table" or type(r.err) ~= "string" then return nil end
  local a = r.err:match("^ERR NOTLEADER%s+(%S+)%s*$")
  if a then
    if a ~= "?" and not names.valid_endpoint(a) then return "?" end
    return a
  end
  if slave_too and r.err:match("^ERR 1008 ") then return "?" end -- a slave config server
  return nil
end

-- Leaves the current server for to (an address) or, when nil, the next
-- address of the list.
function CS:move(to)
  if self.c then self.c:close() self.c = nil end
  if to and to ~= self.addr then
    self.addr = to -- the leader, in the list or not
    for i, a in ipairs(self.addrs) do
      if a == to then self.i = i end -- should it fail, the one after it
    end
  else
    self.i = self.i % #self.addrs + 1
    self.addr = self.addrs[self.i]
  end
end

function CS:call(...)
  local why = {} -- address -> its last failure, for the message
  local failed = 0
  for round = 1, M.CS_RETRIES + 1 do
    for _ = 1, #self.addrs do
      local r, err
      if not self.c then self.c, err = self.dial(self.addr, self.secret) end
      if self.c then r, err = self.c:call(...) end
      local to = M.not_leader(r, #self.addrs > 1)
      if r ~= nil and not to then return r end
      failed = failed + 1
      why[self.addr] = err or ("not the leader: " .. tostring(r.err))
      local from = self.addr
      self:move(to ~= "?" and to or nil)
      if #self.addrs > 1 or to then
        self.note(("config server %s: %s; going on with %s"):format(from, why[from], self.addr))
      end
    end
    if round <= M.CS_RETRIES then self.sleep(round) end
  end
  if #self.addrs == 1 and not next(why, next(why)) then
    fail("config server %s: %s", self.addr, tostring(why[self.addr]))
  end
  local parts = {}
  for a, e in pairs(why) do parts[#parts + 1] = a .. ": " .. tostring(e) end
  table.sort(parts)
  fail("no config server of %s took %s (%d tries): %s", concat(self.addrs, ","), tostring((...)),
    failed, concat(parts, "; "))
end

-- "-ERR 1005 message" -> "message (code 1005)"
local function cs_error(r)
  local code, msg = tostring(r.err):match("^ERR (%d+) (.*)$")
  if code then return msg .. " (code " .. code .. ")" end
  return tostring(r.err)
end

function CS:table(ns)
  local r = self:call("TABLE", ns)
  if type(r) ~= "string" then
    fail("config server %s: TABLE %s: %s", self.addr, ns,
      type(r) == "table" and r.err and cs_error(r) or "unexpected reply")
  end
  local t, err = btable.decode(r, ns)
  if not t then fail("config server %s sent a bad table for %s: %s", self.addr, ns, err) end
  if t.namespace ~= ns then -- decode checks it; this says so should that ever change
    fail("config server %s sent the table of namespace %s, not %s", self.addr, tostring(t.namespace), ns)
  end
  return t
end

-- The routing policy a run moves buckets under (issue 13): the keys the
-- tool moves are named "<bucket>_..." by the policy's routing, so a change
-- of routing while it moves (kvcs refuses one while buckets migrate; this
-- catches one between rounds) would make it move keys into buckets they no
-- longer belong to. A new policy version that keeps the routing is fine.
-- routing_of: what decides a key's bucket under pol (a table's policy
-- field; nil: none published, the default). -> routing string | fails
local function routing_of(ns, pol)
  local p, err = kpolicy.compile(pol and pol.source or "return {}", "policy.lua")
  if not p then fail("the routing policy v%d of %s does not compile here: %s", pol and pol.version or 0, ns, err) end
  return kpolicy.routing(p)
end

-- watch = M.policy_watch(t) -> {version, routing}; M.policy_check(watch, t)
-- -> nil (same policy) | a note (a new version, same routing) | fails
function M.policy_watch(t)
  return { version = t.policy and t.policy.version or 0, routing = routing_of(t.namespace, t.policy) }
end

function M.policy_check(watch, t)
  local v = t.policy and t.policy.version or 0
  if v == watch.version then return nil end
  local routing = routing_of(t.namespace, t.policy)
  if routing ~= watch.routing then
    fail("the routing policy of %s changed from v%d to v%d while buckets moved (%s -> %s): the keys "
      .. "would belong to other buckets; the run stops (the moved buckets are kept)",
      t.namespace, watch.version, v, watch.routing, routing)
  end
  local note = format("the policy of %s is now v%d (was v%d); its routing is unchanged: going on",
    t.namespace, v, watch.version)
  watch.version = v
  return note
end

function CS:migrate(cmd, ns, dst, buckets)
  local args = { cmd, ns, dst }
  for i, b in ipairs(buckets) do args[i + 3] = tostring(b) end
  local r = self:call(unpack(args))
  if type(r) == "table" and r.status == "OK" then return true end
  local what = type(r) == "table" and r.err and cs_error(r) or "unexpected reply"
  fail("%s of %d bucket(s) to %s refused by the config server: %s", cmd, #buckets, dst, what)
end

--------------------------------------------------------------------------------
-- Masters: a command connection (ROLE, DBSIZE, SCAN) and, for sources, a
-- MIGRATE connection, so scanning and moving overlap.
--------------------------------------------------------------------------------

local function open(nodes, addr, pw)
  local n = nodes[addr]
  if n then return n end
  local host, port = loop.split_addr(addr)
  local c, err = redis.connect(host, port, { timeout = 30, connect_timeout = 5, password = pw })
  if not c then fail("cannot use master %s: %s", addr, tostring(err)) end
  n = { addr = addr, host = host, port = port, c = c, pw = pw, inflight = {}, head = 1, tail = 0 }
  nodes[addr] = n
  return n
end

local function node_call(n, ...)
  local r, err = n.c:call(...)
  if r == nil then fail("master %s: %s", n.addr, tostring(err)) end
  if type(r) == "table" and r.err then fail("master %s: %s: %s", n.addr, (...), r.err) end
  return r
end

local function check_master(n)
  local r = node_call(n, "ROLE")
  if type(r) ~= "table" or r[1] ~= "master" then
    local role = type(r) == "table" and tostring(r[1]) or "?"
    local of = ""
    if role == "slave" then
      role, of = "replica", " of " .. tostring(r[2]) .. ":" .. tostring(r[3])
    end
    fail("%s is a %s%s, not a master: keys are only moved from and to masters (after a "
      .. "fail-over, check the config server's table)", n.addr, role, of)
  end
end

--------------------------------------------------------------------------------
-- SCAN replies (decoded by hiredis): only the keys of wanted buckets are
-- kept, in their RESP form ("$<len>\r\n<key>\r\n"), which is exactly how
-- MIGRATE needs them.
--------------------------------------------------------------------------------

-- The bucket of a stored key "<bucket>_<key>" starting at byte d (l bytes
-- long), or -1 when the key does not have that form (decimal, no leading
-- zero, as `SCAN MATCH <b>_*` would see it).
local function key_bucket(buf, d, l)
  if l < 2 then return -1 end
  local c = byte(buf, d)
  if c == 48 then
    return byte(buf, d + 1) == 95 and 0 or -1
  end
  if c < 49 or c > 57 then return -1 end
  local v, j, lim = c - 48, d + 1, d + l - 1
  if lim > d + 5 then lim = d + 5 end
  while j <= lim do
    c = byte(buf, j)
    if c == 95 then return v end
    if c < 48 or c > 57 then return -1 end
    v = v * 10 + c - 48
    j = j + 1
  end
  return -1
end
M.key_bucket = key_bucket

-- A SCAN reply -> { cursor =, hits = {b, raw, b, raw, ...}, nhits =, count =
-- keys in the reply } | { err = } (an error reply) | nil, err (not a SCAN
-- reply).
local function scan_hits(r, want)
  if type(r) ~= "table" then return nil, "unexpected reply to SCAN" end
  if r.err then return { err = r.err } end
  local keys = r[2]
  if r.n ~= 2 or type(r[1]) ~= "string" or type(keys) ~= "table" or not keys.n then
    return nil, "unexpected reply to SCAN"
  end
  local hits, nh = {}, 0
  for i = 1, keys.n do
    local k = keys[i]
    if type(k) ~= "string" then return nil, "unexpected reply to SCAN" end
    local b = key_bucket(k, 1, #k)
    if b >= 0 and want[b] then
      hits[nh + 1] = b
      hits[nh + 2] = "$" .. #k .. "\r\n" .. k .. "\r\n"
      nh = nh + 2
    end
  end
  return { cursor = r[1], hits = hits, nhits = nh, count = keys.n }
end
M._scan_hits = scan_hits -- for tests

-- Every key of n (its command connection) through want: fn(scan_hits) per
-- SCAN reply. The next SCAN goes out as soon as a reply arrived, before its
-- keys are walked. count: SCAN's COUNT, read before each SCAN (default
-- M.SCAN_COUNT).
local function scan_all(n, match, want, fn, count)
  local c = n.c
  local function send_scan(cursor)
    local k = count and count() or M.SCAN_COUNT
    local cmd = { "SCAN", cursor, "COUNT", k }
    if match then cmd = { "SCAN", cursor, "MATCH", match, "COUNT", k } end
    local ok, err = c:send(cmd)
    if not ok then fail("master %s: %s", n.addr, tostring(err)) end
  end
  send_scan("0")
  repeat
    local r, err = c:read_reply(30)
    if r == nil then fail("SCAN on %s: %s", n.addr, tostring(err)) end
    local cursor = type(r) == "table" and r.n == 2 and r[1]
    if type(cursor) == "string" and cursor ~= "0" then send_scan(cursor) end
    local h, herr = scan_hits(r, want)
    if not h then fail("SCAN on %s: %s", n.addr, herr) end
    if h.err then fail("SCAN on %s: %s", n.addr, h.err) end
    fn(h)
  until h.cursor == "0"
end

--------------------------------------------------------------------------------
-- The pace (tools.migrate_pace): a monitor task reads the clients' commands
-- on every master of the move each window and gives its verdict; movers
-- wait at pace_gate (paused while the pace measures the clients' calm rate,
-- then spaced out at the pace's rate of work).
--------------------------------------------------------------------------------

-- The monitor's own connections (ctx.mon: address -> client), apart from
-- the movers' (ctx.nodes), which it runs beside.
local function mon_conn(ctx, addr)
  ctx.mon = ctx.mon or {}
  local c = ctx.mon[addr]
  if not c then
    local host, port = loop.split_addr(addr)
    local err
    c, err = redis.connect(host, port, { timeout = 5, connect_timeout = 5, password = ctx.pw })
    if not c then return nil, err end
    ctx.mon[addr] = c
  end
  return c
end

-- The clients' commands so far on every master of ctx.watch. -> sum | nil, err
local function client_commands(ctx)
  local sum = 0
  for _, addr in ipairs(ctx.watch) do
    local c, err = mon_conn(ctx, addr)
    if not c then return nil, addr .. ": " .. tostring(err) end
    local info
    info, err = c:call("INFO", "stats", "commandstats")
    local v = type(info) == "string" and pace.client_commands(info)
    if not v then
      return nil, addr .. ": INFO: " .. tostring(type(info) == "table" and info.err or err)
    end
    sum = sum + v
  end
  return sum
end

-- Says when the pace changes its mind (not for its calm pauses, every
-- REBASE seconds), and keeps what M.pace_summary reports.
local function note_pace(ctx, was, ops)
  local p, st = ctx.pace, ctx.pace_stats
  if not st then st = { gentle = 0, kept = 0, pauses = 0 } ctx.pace_stats = st end
  if was == "gentle" and p.state ~= "calm" then
    st.gentle = st.gentle + 1
    st.kept = st.kept + ops / p.calm_ops
  end
  if was == "calm" and p.state ~= "calm" then st.pauses = st.pauses + 1 end -- a calm measurement done
  if p.state == "calm" or p.state == st.said then return end
  local now = loop.now()
  if st.said_at and now - st.said_at < M.PACE_NOTE_EVERY then return end -- clients near the threshold
  st.said, st.said_at = p.state, now
  if ctx.pace.mode == "full" then return end
  if p.state == "full" then
    ctx.out:line(format("pace: full (clients: %d commands/s on the masters of the move)", math.floor(ops)))
  else
    ctx.out:line(format("pace: gentle (clients: %d commands/s on the masters of the move, kept above %d%%)",
      math.floor(ops), math.floor(pace.KEEP * 100)))
  end
end

M.PACE_NOTE_EVERY = 5 -- seconds: a pace line at most that often

function M.pace_summary(ctx)
  local st = ctx.pace_stats
  if ctx.pace.mode == "full" then return "pace: full (--pace full)" end
  if not st or st.gentle == 0 then return "pace: full all along (no client on the masters of the move)" end
  return format("pace: gentle for %.1f s; the clients kept %d%% of their calm throughput on average "
    .. "(%d calm measurement(s))", st.gentle * pace.WINDOW, math.floor(st.kept / st.gentle * 100 + 0.5), st.pauses)
end

-- Runs until ctx.finished. The first window is short: nothing moves before
-- its verdict.
-- A window whose INFO failed (a source blocked by a big key longer than the
-- 5 s time-out, say) is skipped and its connection made again; only
-- M.MONITOR_FAILURES in a row end the watch, at full pace.
M.MONITOR_FAILURES = 5

local function monitor(ctx)
  local p = ctx.pace
  local prev, prev_t, prev_work, watched = nil, nil, 0, nil
  local window, failures = M.FIRST_WINDOW, 0
  while not ctx.finished do
    local v, err = client_commands(ctx)
    local now = loop.now()
    if not v then
      failures = failures + 1
      for addr, c in pairs(ctx.mon or {}) do c:close() ctx.mon[addr] = nil end
      if failures >= M.MONITOR_FAILURES then
        ctx.out:err(("cannot watch the clients (%s, %d times): moving at full pace (--max-keys-per-sec "
          .. "limits it)"):format(err, failures))
        pace.to_full(p)
        return
      end
      dbg("monitor: %s", err)
      prev = nil
    elseif prev and watched == ctx.watch then
      failures = 0
      local ops = math.max(0, v - prev) / (now - prev_t)
      local done = ((ctx.work or 0) - prev_work) / (now - prev_t)
      local was = p.state
      pace.verdict(p, ops, now, done)
      dbg("pace %s -> %s: clients %d/s (calm %s), rate %s, batch %s", was, p.state, ops, tostring(p.calm_ops),
        tostring(p.rate), tostring(p.batch))
      note_pace(ctx, was, ops)
      ctx.out:draw(false)
    end
    if v then prev, prev_t, prev_work, watched = v, now, ctx.work or 0, ctx.watch end
    loop.sleep(window)
    window = pace.WINDOW
  end
end
M.FIRST_WINDOW = 0.02

-- Waits until the pace lets work units (keys moved + keys scanned x
-- SCAN_WEIGHT) go: one budget for every source (they share ctx).
local function pace_gate(ctx, work)
  local p = ctx.pace
  while p.paused do loop.sleep(0.01) end
  ctx.work = (ctx.work or 0) + work
  local rate = p.rate
  if not rate then ctx.work_due = nil return end
  local now = loop.now()
  local due = ctx.work_due
  if not due or due < now - 0.05 then due = now end -- no credit saved beyond 50 ms
  due = due + work / rate
  ctx.work_due = due
  if due > now then loop.sleep(due - now) end
end

--------------------------------------------------------------------------------
-- Big keys: at the gentle pace, the size of every key about to move,
-- measured on its source by a script (one call per SCAN page, for the keys
-- of moving buckets only: about 1.3 us a key on the source, against about
-- 7 us to MIGRATE it); at full pace, slow_batch after the fact.
--------------------------------------------------------------------------------

-- KEYS: the keys; ARGV[1]: the big size. -> { bytes of them all, i, size,
-- i, size, ... } for each big one (i: its place in KEYS)
M.SIZE_SCRIPT = [[
local big, out = tonumber(ARGV[1]), { 0 }
for i = 1, #KEYS do
  local m = redis.call('MEMORY', 'USAGE', KEYS[i])
  if m then
    out[1] = out[1] + m
    if m >= big then out[#out + 1] = i; out[#out + 1] = m end
  end
end
return out]]

-- The connection sizes are asked on (false: the script cannot run there).
local function sizer(ctx, n)
  if n.chk ~= nil then return n.chk end
  local c, err = redis.connect(n.host, n.port, { timeout = 30, connect_timeout = 5, password = n.pw })
  local r = c and c:call("EVAL", "return 1", 0)
  if r ~= 1 then
    if c then c:close() end
    ctx.out:err(("%s: cannot run a script there (%s): big keys are not looked for on it")
      :format(n.addr, tostring(type(r) == "table" and r.err or err or r)))
    n.chk = false
    return false
  end
  n.chk = c
  return c
end

-- Asks the sizes of a page's keys (pg.segs[1..pg.k], RESP bulk strings) on
-- n; size_reply reads them. EVAL, not EVALSHA: Redis keeps the script
-- compiled by its SHA either way, and no NOSCRIPT can arrive in the middle
-- of a pipeline.
local function size_ask(ctx, n, pg)
  if ctx.pace.state ~= "gentle" or pg.k == 0 then return end -- full: see slow_batch
  local c = sizer(ctx, n)
  if not c then return end
  local big = tostring(ctx.big_bytes)
  local ok, err = c:send_raw("*" .. (pg.k + 4) .. "\r\n$4\r\nEVAL\r\n$" .. #M.SIZE_SCRIPT .. "\r\n" .. M.SIZE_SCRIPT
    .. "\r\n$" .. #tostring(pg.k) .. "\r\n" .. pg.k .. "\r\n" .. concat(pg.segs, "", 1, pg.k) .. "$" .. #big .. "\r\n"
    .. big .. "\r\n")
  if not ok then fail("master %s: key sizes: %s", n.addr, tostring(err)) end
  pg.asked = true
end

-- -> bytes of the page's keys, { [i] = size } of the big ones
local function size_reply(n, pg)
  if not pg.asked then return 0, {} end
  local r, err = n.chk:read_reply(30)
  if type(r) ~= "table" or r.err or type(r[1]) ~= "number" then
    fail("master %s: key sizes: %s", n.addr, tostring(type(r) == "table" and r.err or err or r))
  end
  local bigs = {}
  for i = 2, (r.n or #r) - 1, 2 do bigs[r[i]] = r[i + 1] end
  return r[1], bigs
end

--------------------------------------------------------------------------------
-- Moving keys of one source
--------------------------------------------------------------------------------

-- A batch being filled for one destination (from one source).
local function new_route(dst, pw)
  local host, port = loop.split_addr(dst)
  local fixed = { "MIGRATE", host, tostring(port), "", "0", tostring(M.MIGRATE_TIMEOUT_MS) }
  if pw ~= "" then fixed[#fixed + 1] = "AUTH"; fixed[#fixed + 1] = pw end
  fixed[#fixed + 1] = "KEYS"
  local enc = resp.encode_array(fixed)
  return { dst = dst, nfixed = #fixed, fixed = enc:sub(enc:find("\r\n", 1, true) + 2),
           segs = {}, n = 0, seen = {}, size = 0, sized = true }
end

-- The keys of a MIGRATE command we built (for messages).
local function batch_keys(bytes)
  local v = resp.decode(bytes)
  local keys = {}
  if type(v) ~= "table" then return keys end
  local i = 1
  while i <= v.n and v[i] ~= "KEYS" do i = i + 1 end
  for j = i + 1, v.n do keys[#keys + 1] = v[j] end
  return keys
end

-- Explains a BUSYKEY: which keys the destination already holds.
local function busy_detail(e, pw)
  local host, port = loop.split_addr(e.dst)
  local c = redis.connect(host, port, { timeout = 5, password = pw })
  if not c then return "" end
  local keys = batch_keys(e.bytes)
  local cmds = {}
  for i, k in ipairs(keys) do cmds[i] = { "EXISTS", k } end
  local r = c:pipeline(cmds)
  c:close()
  if not r then return "" end
  local busy = {}
  for i, x in ipairs(r) do
    if x == 1 and #busy < 5 then busy[#busy + 1] = show_key(keys[i]) end
  end
  if #busy == 0 then return "" end
  return "; already on " .. e.dst .. ": " .. concat(busy, ", ")
end

local function send_batch(n, e)
  local ok, err = n.mig:send_raw(e.bytes)
  if not ok then fail("master %s: %s", n.addr, tostring(err)) end
  e.sent = loop.now()
  n.tail = n.tail + 1
  n.inflight[n.tail] = e
end

-- A MIGRATE done: how long it held its source (from when it could start:
-- sent, or the one before it done), for the pace and the big key report.
-- A MIGRATE of keys not measured first (full pace) whose reply took
-- M.SLOW_BATCH_MS or more: its keys are measured on the destination now,
-- and the big ones reported with that time (the pause, plus at most the
-- MIGRATEs queued before it: a few ms at full pace).
M.SLOW_BATCH_MS = 10

-- MEMORY USAGE of keys on dst, asked from source n's task (each source
-- its own connections: their tasks run side by side). -> { size|false... }
-- | nil when dst cannot be asked
local function sizes_on(n, dst, keys, ctx)
  n.dsts = n.dsts or {}
  local c = n.dsts[dst]
  if not c then
    local host, port = loop.split_addr(dst)
    c = redis.connect(host, port, { timeout = 30, connect_timeout = 5, password = ctx.pw })
    if not c then return nil end
    n.dsts[dst] = c
  end
  local cmds = {}
  for i, k in ipairs(keys) do cmds[i] = { "MEMORY", "USAGE", k } end
  return c:pipeline(cmds)
end

local function slow_batch(n, e, ms, ctx)
  local keys = batch_keys(e.bytes)
  local r = sizes_on(n, e.dst, keys, ctx)
  if not r then return end
  for i, k in ipairs(keys) do
    local size = r[i]
    if type(size) == "number" and size >= ctx.big_bytes then
      ctx.out:line(format("big key %s of bucket %d (%s) moved at full pace in a MIGRATE of %d key(s) from %s: "
        .. "it held its source at most %.1f ms", show_key(k), key_bucket(k, 1, #k), human_bytes(size), #keys,
        n.addr, ms))
      ctx.bigs[#ctx.bigs + 1] = { key = k, bytes = size, ms = ms, src = n.addr }
    end
  end
end

-- nokey: Redis moved none of them (gone already: a proxy moved them on
-- access, or a client deleted them)
local function migrated(n, e, ctx, nokey)
  local now = loop.now()
  local ms = (now - math.max(e.sent, n.last_done or 0)) * 1000
  n.last_done = now
  ctx.out:moved(e.keys, e.size)
  if nokey then return end
  if e.big then
    ctx.out:line(format("big key %s of bucket %d (%s) moved alone from %s: it held its source %.1f ms",
      show_key(e.big), e.bucket, human_bytes(e.size), n.addr, ms))
    ctx.bigs[#ctx.bigs + 1] = { key = e.big, bytes = e.size, ms = ms, src = n.addr }
  elseif not e.sized and (now - e.sent) * 1000 >= M.SLOW_BATCH_MS then
    slow_batch(n, e, (now - e.sent) * 1000, ctx)
  end
end

-- Reads the reply of the oldest MIGRATE in flight on n.
local function await_one(n, ctx)
  local e = n.inflight[n.head]
  n.inflight[n.head] = nil
  n.head = n.head + 1
  local r, err = n.mig:read_reply(M.MIGRATE_TIMEOUT_MS / 1000 * 4 + 30)
  if r == nil then fail("MIGRATE on %s: no reply (%s)", n.addr, tostring(err)) end
  if type(r) == "table" and (r.status == "OK" or r.status == "NOKEY") then
    migrated(n, e, ctx, r.status == "NOKEY")
    return
  end
  local msg = type(r) == "table" and (r.err or r.status) or tostring(r)
  e.tries = e.tries + 1
  if e.tries >= M.MAX_TRIES then
    local extra = msg:find("^BUSYKEY") and busy_detail(e, ctx.pw) or ""
    fail("MIGRATE of %d key(s) from %s to %s failed %d times: %s%s", e.keys, n.addr, e.dst,
      e.tries, msg, extra)
  end
  ctx.out:err(("MIGRATE of %d key(s) from %s to %s: %s (retrying)"):format(e.keys, n.addr, e.dst, msg))
  loop.sleep(0.2 * e.tries)
  send_batch(n, e)
end

-- --max-keys-per-sec: a batch of k keys waits for its turn at the cap (one
-- budget for every source: they share ctx). Time not used (the pace's calm
-- pauses, a slow scan) is saved for at most M.CAP_CREDIT seconds, so no
-- burst goes above the cap for longer.
M.CAP_CREDIT = 0.1

local function cap(ctx, k)
  local max = ctx.max_rate
  if not max then return end
  local now = loop.now()
  local due = math.max(ctx.cap_due or now, now - M.CAP_CREDIT) + k / max
  ctx.cap_due = due
  if due > now then loop.sleep(due - now) end
end

local function push(n, e, ctx)
  send_batch(n, e)
  while n.tail - n.head + 1 >= ctx.pace.inflight do await_one(n, ctx) end
end

local function flush(n, r, ctx)
  if r.n == 0 then return end
  cap(ctx, r.n)
  local bytes = "*" .. (r.nfixed + r.n) .. "\r\n" .. r.fixed .. concat(r.segs, "", 1, r.n)
  local e = { bytes = bytes, keys = r.n, dst = r.dst, tries = 0, size = r.size, sized = r.sized }
  r.segs, r.n, r.size, r.sized = {}, 0, 0, true
  push(n, e, ctx)
end

-- A big key goes in a MIGRATE of its own, once the MIGRATEs before it are
-- done (the pause it causes is its own).
local function move_alone(n, rt, b, seg, size, ctx)
  cap(ctx, 1)
  local bytes = "*" .. (rt.nfixed + 1) .. "\r\n" .. rt.fixed .. seg
  local e = { bytes = bytes, keys = 1, dst = rt.dst, tries = 0, size = size, big = seg_key(seg), bucket = b }
  while n.head <= n.tail do await_one(n, ctx) end
  push(n, e, ctx)
end

local function drain(n, ctx)
  while n.head <= n.tail do await_one(n, ctx) end
  n.inflight, n.head, n.tail = {}, 1, 0
end

-- The keys of wanted buckets in one SCAN page, each once per pass (SCAN
-- may return a key twice while the dict rehashes; twice in one MIGRATE, the
-- second RESTORE would fail with BUSYKEY, and the pass's count of keys found
-- must be exact). -> flat list b, seg, b, seg...; number of keys
local function fresh_hits(want, h)
  local out, k = {}, 0
  local hits = h.hits
  for i = 1, h.nhits, 2 do
    local b, seg = hits[i], hits[i + 1]
    local rt = want[b]
    if not rt.seen[seg] then
      rt.seen[seg] = true
      out[k + 1], out[k + 2] = b, seg
      k = k + 2
    end
  end
  return out, k / 2
end

-- A page's keys, their sizes known: into their destination's batch, or
-- alone when big.
local function page_keys(n, want, pg, ctx, found_per_bucket)
  local bytes, bigs = size_reply(n, pg)
  local per_key = pg.asked and pg.k > 0 and bytes / pg.k or (n.bytes_per_key or 0)
  local hits, batch = pg.hits, ctx.pace.batch
  for i = 1, pg.k do
    local b, seg = hits[2 * i - 1], hits[2 * i]
    local rt = want[b]
    found_per_bucket[b] = (found_per_bucket[b] or 0) + 1
    if bigs[i] then
      move_alone(n, rt, b, seg, bigs[i], ctx)
    else
      local j = rt.n + 1
      rt.segs[j] = seg
      rt.n = j
      rt.size = rt.size + per_key
      rt.sized = rt.sized and pg.asked
      if j >= batch then flush(n, rt, ctx) end
    end
  end
end

-- One SCAN pass over source n: every key of a wanted bucket goes into its
-- destination's batch, or alone when it is big. A page's keys go once their
-- sizes are in, while the next page is scanned. -> number of such keys found
local function scan_pass(n, want, routes, pattern, ctx, found_per_bucket)
  local found, pending = 0, nil
  for _, rt in pairs(routes) do rt.seen = {} end
  scan_all(n, pattern, want, function(h)
    local hits, k = fresh_hits(want, h)
    pace_gate(ctx, k + h.count * pace.SCAN_WEIGHT)
    local segs = {}
    for i = 1, k do segs[i] = hits[2 * i] end
    local pg = { hits = hits, k = k, segs = segs }
    size_ask(ctx, n, pg)
    found = found + k
    if pending then page_keys(n, want, pending, ctx, found_per_bucket) end
    pending = pg
  end, function() return ctx.pace.scan_count end)
  if pending then page_keys(n, want, pending, ctx, found_per_bucket) end
  for _, rt in pairs(routes) do flush(n, rt, ctx) end
  drain(n, ctx)
  return found
end

-- Moves every key of the given moves (all from source n) and makes sure n
-- holds none of them any more: passes repeat until one finds no key of
-- them -- except at full pace (no client there all along the pass), where a
-- pass after which the source's key count fell by exactly the keys found
-- is enough: with no client writing, only the move changed the source, so
-- every key of the round that was there is gone. (With clients, a key added
-- and another deleted would cancel out in the count: a write a proxy had
-- queued before it took the table, landing during the pass, must be found.)
local function empty_source(n, moves, ctx, found_per_bucket)
  if not n.mig then
    local c, err = redis.connect(n.host, n.port, { timeout = 30, connect_timeout = 5, password = n.pw })
    if not c then fail("cannot use master %s: %s", n.addr, tostring(err)) end
    n.mig = c
    c:call("CLIENT", "SETNAME", M.CLIENT_NAME) -- its slow MIGRATEs are not a proxy's (slow_migrates)
  end
  local want, routes = {}, {}
  for _, mv in ipairs(moves) do
    local r = routes[mv.dst]
    if not r then
      r = new_route(mv.dst, ctx.pw)
      routes[mv.dst] = r
    end
    want[mv.bucket] = r
  end
  -- one bucket: Redis filters; several: one pass over everything serves them all
  local pattern = #moves == 1 and (moves[1].bucket .. "_*") or "*"
  for pass = 1, M.MAX_PASSES do
    local quiet = ctx.pace.state == "full"
    local before = node_call(n, "DBSIZE")
    local found = scan_pass(n, want, routes, pattern, ctx, found_per_bucket)
    local after = node_call(n, "DBSIZE")
    quiet = quiet and ctx.pace.state == "full"
    dbg("%s pass %d: %d keys, dbsize %d -> %d", n.addr, pass, found, before, after)
    if found == 0 or (quiet and after == before - found) then return pass end
  end
  local left = {}
  for _, mv in ipairs(moves) do left[#left + 1] = mv.bucket end
  fail("%s still holds keys of bucket(s) %s after %d passes: something keeps writing them "
    .. "there (a proxy with an old table, or a client writing to the master directly)",
    n.addr, concat(left, " "), M.MAX_PASSES)
end

--------------------------------------------------------------------------------
-- Running tasks side by side
--------------------------------------------------------------------------------

-- Runs each fn in its own task; returns when all ended. -> list of errors (or {})
local function run_all(fns)
  local me = coroutine.running()
  local left, waiting, errors = #fns, false, {}
  for _, fn in ipairs(fns) do
    loop.spawn(function()
      local ok, err = xpcall(fn, function(x)
        if getmetatable(x) == Fail then return x end
        return debug.traceback(tostring(x), 2)
      end)
      if not ok then errors[#errors + 1] = err end
      left = left - 1
      if left == 0 and waiting then
        loop.timer(0, function()
          local rok, rerr = coroutine.resume(me)
          if not rok then io.stderr:write("migration_tool: ", tostring(rerr), "\n") end
        end)
      end
    end)
  end
  if left > 0 then
    waiting = true
    coroutine.yield()
  end
  return errors
end

--------------------------------------------------------------------------------
-- The run
--------------------------------------------------------------------------------

local function describe_plan(o, p, t)
  local per = {}
  for _, mv in ipairs(p.moves) do
    local key = mv.src .. " -> " .. mv.dst
    per[key] = per[key] or {}
    table.insert(per[key], mv.bucket)
  end
  local parts = {}
  for k, v in pairs(per) do
    -- a dry run names the buckets too
    parts[#parts + 1] = k .. " (" .. #v .. ")" .. (o.dry_run and (": buckets " .. concat(v, " ")) or "")
  end
  table.sort(parts)
  local s = format("plan: %s%s in namespace %s (table v%d, %d buckets): %d bucket move(s) in %d round(s) of up to %d",
    o.op, o.addr and (" " .. o.addr) or "", o.ns, t.version, t.bucket_count, p.total, #p.rounds, o.parallel)
  if #p.finish > 0 then
    s = s .. format("; %d left migrating by an earlier run are finished first", #p.finish)
  end
  if p.left > 0 then s = s .. format("; %d more after this run (--count)", p.left) end
  return s .. "\n  " .. concat(parts, "\n  ")
end

-- Is the round still what the table says? (someone else may change the table)
local function round_valid(t, round)
  for _, mv in ipairs(round) do
    if t.owner[mv.bucket] ~= mv.src then return false end
    local m = t.migrating[mv.bucket]
    if m and m ~= mv.dst then return false end
  end
  return true
end

-- Rough number of keys the plan moves, for the ETA.
local function estimate_keys(p, t, nodes)
  local owned = btable.counts(t)
  local est = 0
  for _, mv in ipairs(p.moves) do
    local n = nodes[mv.src]
    if n and n.dbsize and owned[mv.src] then est = est + n.dbsize / owned[mv.src] end
  end
  return est
end

local function preflight(o, p, t, nodes, pw)
  for _, addr in ipairs(plan.servers(p)) do
    local n = open(nodes, addr, pw)
    check_master(n)
    n.dbsize = node_call(n, "DBSIZE")
    -- bytes a key, for the progress line at full pace (keys not measured)
    local mem = tonumber(tostring(node_call(n, "INFO", "memory")):match("used_memory_dataset:(%d+)"))
    n.bytes_per_key = mem and n.dbsize > 0 and mem / n.dbsize or 0
  end
  if o.op == "add" then
    local n = nodes[o.addr]
    local involved = false
    for b = 0, t.bucket_count - 1 do
      if t.owner[b] == o.addr or t.migrating[b] == o.addr then involved = true break end
    end
    if n and not involved and n.dbsize > 0 then
      fail("%s holds %d key(s) but owns no bucket of %s: keys left there could come back as stale "
        .. "values once it owns their bucket; empty it first (FLUSHALL) or use another master",
        o.addr, n.dbsize, o.ns)
    end
  end
end

-- The buckets of round from its j-th to go next: all of them at full pace;
-- while clients are there, GENTLE_PARALLEL at a time: every migrating
-- bucket costs its clients a MIGRATE round trip per command (migrate on
-- access), so fewer at once cost them less, for one more SCAN of the
-- sources per slice. Between two gentle slices, when no bucket migrates,
-- the pace measures the clients' calm rate again.
local function next_slice(ctx, round, j, first)
  local p = ctx.pace
  if not first and p.state == "gentle" then pace.to_calm(p) end
  while p.paused do loop.sleep(0.01) end
  local size = p.state == "gentle" and pace.GENTLE_PARALLEL or #round
  return { unpack(round, j, math.min(#round, j + size - 1)) }
end

-- Pauses caused by proxies: a client touching a big key of a migrating
-- bucket makes its proxy MIGRATE it (on access), which blocks the source as
-- long as the tool's own MIGRATE would. The source's SLOWLOG has those
-- (slower than its slowlog-log-slower-than, 10 ms by default): each one
-- logged during a round is reported with the big keys the tool moved.
M.CLIENT_NAME = "migration_tool"

local function slowlog(n, count)
  local r = n.c:call("SLOWLOG", "GET", tostring(count))
  if type(r) ~= "table" or r.err then return {} end
  return r
end

local function slowlog_mark(n)
  local r = slowlog(n, 1)
  local e = r[1]
  return type(e) == "table" and tonumber(e[1]) or -1
end

local function slow_migrates(ctx, n, since)
  for _, e in ipairs(slowlog(n, 128)) do
    local args = type(e) == "table" and e[4]
    local ms = type(e) == "table" and (tonumber(e[3]) or 0) / 1000 or 0
    if tonumber(e[1]) and tonumber(e[1]) > since and type(args) == "table" and tostring(args[1]):upper() == "MIGRATE"
        and e[6] ~= M.CLIENT_NAME and ms >= M.SLOW_BATCH_MS then
      local keys = {}
      local i = 1
      while args[i] and tostring(args[i]):upper() ~= "KEYS" do i = i + 1 end
      if args[i] then
        for j = i + 1, #args do
          local k = tostring(args[j])
          if not k:find("^%.%.%. %(%d+ more arguments%)$") then keys[#keys + 1] = k end -- SLOWLOG's cut
        end
      else
        keys[1] = tostring(args[4])
      end
      -- only what really is big (a slow MIGRATE may be a slow machine)
      local sizes = sizes_on(n, tostring(args[2]) .. ":" .. tostring(args[3]), keys, ctx) or {}
      for j, k in ipairs(keys) do
        if type(sizes[j]) == "number" and sizes[j] >= ctx.big_bytes then
          ctx.out:line(format("big key %s of bucket %d (%s) moved on access by a client's proxy (%s): it held "
            .. "its source %s %.1f ms", show_key(k), key_bucket(k, 1, #k), human_bytes(sizes[j]), tostring(e[5]),
            n.addr, ms))
          ctx.bigs[#ctx.bigs + 1] = { key = k, bytes = sizes[j], ms = ms, src = n.addr, proxy = true }
        end
      end
    end
  end
end

local function run_round(o, ctx, cs, round)
  local marks = {}
  for _, g in ipairs(plan.by_src(round)) do
    local n = ctx.nodes[g.src] or open(ctx.nodes, g.src, ctx.pw)
    marks[n] = slowlog_mark(n)
  end
  -- 1. every proxy migrates these buckets on access
  dbg("round of %d: start", #round)
  for _, g in ipairs(plan.by_dst(round)) do cs:migrate("MIGRATE.START", o.ns, g.dst, g.buckets) end
  dbg("started")
  -- 2. move the keys, all sources at once
  local found = {}
  local tasks = {}
  for _, g in ipairs(plan.by_src(round)) do
    tasks[#tasks + 1] = function()
      empty_source(ctx.nodes[g.src] or open(ctx.nodes, g.src, ctx.pw), g.moves, ctx, found)
    end
  end
  local errors = run_all(tasks)
  if #errors > 0 then
    for i = 2, #errors do ctx.out:err(tostring(errors[i])) end
    error(errors[1], 0)
  end
  -- 3. the destinations own them
  dbg("moved")
  for _, g in ipairs(plan.by_dst(round)) do cs:migrate("MIGRATE.DONE", o.ns, g.dst, g.buckets) end
  dbg("done")
  for n, since in pairs(marks) do slow_migrates(ctx, n, since) end
  for _, mv in ipairs(round) do ctx.out:bucket_done(mv.bucket, mv.dst, found[mv.bucket] or 0) end
end

--------------------------------------------------------------------------------
-- --rebalance: the load of each bucket
--------------------------------------------------------------------------------

-- MEMORY USAGE of keys (on n), pipelined. -> total bytes, keys measured
local function memory_of(n, keys)
  local bytes, measured = 0, 0
  for i = 1, #keys, M.MEMORY_PIPELINE do
    local cmds = {}
    for j = i, math.min(i + M.MEMORY_PIPELINE - 1, #keys) do cmds[#cmds + 1] = { "MEMORY", "USAGE", keys[j] } end
    local r, err = n.c:pipeline(cmds)
    if not r then fail("master %s: MEMORY USAGE: %s", n.addr, tostring(err)) end
    for k = 1, #cmds do
      local x = r[k]
      if type(x) == "table" and x.err then fail("master %s: MEMORY USAGE: %s", n.addr, x.err) end
      if type(x) == "number" then bytes = bytes + x; measured = measured + 1 end -- nil: gone since SCAN
    end
  end
  return bytes, measured
end

-- Keys and bytes per bucket of the namespace, each bucket measured on the
-- masters t gives it (its owner and, while it migrates, its destination:
-- its keys are on both). by "keys": bytes stays empty. sample: keys
-- measured per bucket per master (0: all).
-- -> { keys = {[b] = n}, bytes = {[b] = n}, stray = keys on a master that
--      has nothing to do with their bucket (not counted) }
function M.measure(ctx, t, by, sample)
  local keys, bytes, stray = {}, {}, 0
  local all = setmetatable({}, { __index = function() return true end })
  for _, addr in ipairs(btable.addresses(t)) do
    local n = open(ctx.nodes, addr, ctx.pw)
    check_master(n)
    local here, samples = {}, {}
    scan_all(n, nil, all, function(h)
      local hits = h.hits
      for i = 1, h.nhits, 2 do
        local b = hits[i]
        if b < t.bucket_count and (t.owner[b] == addr or t.migrating[b] == addr) then
          here[b] = (here[b] or 0) + 1
          if by == "memory" then
            local s = samples[b]
            if not s then s = {}; samples[b] = s end
            if sample == 0 or #s < sample then s[#s + 1] = seg_key(hits[i + 1]) end
          end
        else
          stray = stray + 1
        end
      end
    end)
    for b, c in pairs(here) do
      keys[b] = (keys[b] or 0) + c
      if by == "memory" then
        local sum, m = memory_of(n, samples[b])
        if m > 0 then bytes[b] = (bytes[b] or 0) + math.floor(sum / m * c + 0.5) end
      end
    end
  end
  return { keys = keys, bytes = bytes, stray = stray }
end

local function show_spread(x)
  if x == math.huge then return "inf" end
  return format("%.1f%%", x)
end

-- The rebalance plan, for people: per master its load before and after,
-- then every move.
local function describe_rebalance(o, r, m)
  local unit = o.by == "memory" and human_bytes or function(v) return format("%d keys", v) end
  local lines = { format("rebalance by %s, goal: within %d%%; now %s, after the plan %s%s", o.by, o.spread,
    show_spread(r.spread_before), show_spread(r.spread_after),
    r.within and "" or " (no bucket move brings it closer: the buckets are too uneven)") }
  local addrs = {}
  for a in pairs(r.before) do addrs[#addrs + 1] = a end
  table.sort(addrs)
  for _, a in ipairs(addrs) do
    lines[#lines + 1] = format("  master %s: %s -> %s", a, unit(r.before[a]), unit(r.after[a]))
  end
  for _, mv in ipairs(r.moves) do
    lines[#lines + 1] = format("  move bucket %d: %s -> %s, %d keys, %s", mv.bucket, mv.src, mv.dst,
      m.keys[mv.bucket] or 0, human_bytes(m.bytes[mv.bucket] or 0))
  end
  if m.stray > 0 then
    lines[#lines + 1] = format("  (%d key(s) on masters that do not own their bucket were not counted)", m.stray)
  end
  return concat(lines, "\n")
end

-- Measures, then plans a --rebalance from t. -> p, r (migrate_plan.rebalance), m (measure)
local function plan_rebalance(o, ctx, t, count)
  local m = M.measure(ctx, t, o.by, o.sample)
  local _, done = plan.finished(t)
  local r = plan.rebalance(done, o.by == "memory" and m.bytes or m.keys, { spread = o.spread })
  local p, err = plan.plan(t, "rebalance", nil, { moves = r.moves, count = count, parallel = o.parallel })
  if not p then fail("cannot plan: %s", err) end
  return p, r, m
end

-- After a complete --del: the removed master should hold no key of the namespace.
local function leftover_keys(n)
  local all = setmetatable({}, { __index = function() return true end })
  local count = 0
  scan_all(n, nil, all, function(r) count = count + r.nhits / 2 end)
  return count
end

-- The tool's own config file (--config, or ./migration_tool.conf).
M.conf = config.declare({
  { name = "cluster_secret", type = "string", default = "", max = 1024 },
  { name = "redis_password", type = "string", default = "", max = 200 },
}, "migration_tool.conf")

-- The secret and the password: flag, then environment, then config file.
-- -> secret, password | fails
function M.credentials(o, getenv)
  local file = o.config
  if not file then
    local f = io.open("migration_tool.conf", "rb")
    if f then f:close() file = "migration_tool.conf" end
  end
  local cfg = { cluster_secret = "", redis_password = "" }
  if file then
    local c, err = M.conf:load(file)
    if not c then fail("%s", err) end
    cfg = c
  end
  local secret = o.secret or getenv("KV_CLUSTER_SECRET") or cfg.cluster_secret
  local pw = o.password or getenv("KV_REDIS_PASSWORD") or cfg.redis_password
  return secret, pw
end

local function run(o, out)
  local secret, pw = M.credentials(o, os.getenv)
  local cs = new_cs(o.cs_list, secret, { note = function(line) out:err(line) end })
  local ctx = { out = out, pw = pw, nodes = {}, max_rate = o.max_keys_per_sec,
                pace = pace.new({ mode = o.pace, batch = o.batch, cap = o.max_keys_per_sec }),
                big_bytes = o.big_key_mb * 1048576, bigs = {} }
  out.pace = ctx.pace
  local moved_buckets, t, p = 0, nil, nil
  local replans = 0
  local stopped -- Ctrl-C: stopped between two rounds
  local watch
  -- every table the run reads: of o.ns, under the routing it started with
  local function fetch()
    local nt = cs:table(o.ns)
    if not watch then
      watch = M.policy_watch(nt)
      out:line(format("policy: %s routes with policy v%d%s (%s)", o.ns, watch.version,
        watch.version == 0 and " (none published: the default)" or "", watch.routing))
    else
      local note = M.policy_check(watch, nt)
      if note then out:line(note) end
    end
    return nt
  end
  while true do
    t = fetch()
    local count = o.count and (o.count - moved_buckets) or nil
    local err, r, m
    if o.op == "rebalance" then
      p, r, m = plan_rebalance(o, ctx, t, count)
      if replans == 0 then out:line(describe_rebalance(o, r, m)) end
    else
      p, err = plan.plan(t, o.op, o.addr, { count = count, parallel = o.parallel })
      if not p then fail("cannot plan: %s", err) end
    end
    if o.dry_run then
      out:line(describe_plan(o, p, t))
      out:line(format("dry run: nothing moved (table %s v%d unchanged)", o.ns, t.version))
      return 0
    end
    if p.total == 0 then break end
    ctx.watch = plan.servers(p)
    if not ctx.monitoring then
      ctx.monitoring = true
      loop.spawn(function()
        local ok, e = pcall(monitor, ctx)
        if not ok then
          out:err("watching the clients failed (" .. tostring(e) .. "): moving at full pace")
          pace.to_full(ctx.pace)
        end
      end)
    end
    preflight(o, p, t, ctx.nodes, pw) -- (while the pace has its first look at the clients)
    if replans == 0 then
      out:line(describe_plan(o, p, t))
      out.total = p.total
      out.est = estimate_keys(p, t, ctx.nodes)
      out.t0 = core.now()
      out.active = true
      out:draw(true)
    else
      out.total = moved_buckets + p.total
    end
    local changed = false
    for i, round in ipairs(p.rounds) do
      local j = 1
      while j <= #round do
        local first = i == 1 and j == 1
        if not first and o.wait_ms > 0 then loop.sleep(o.wait_ms / 1000) end
        local slice = next_slice(ctx, round, j, first)
        if not first then
          t = fetch() -- after the pace's pause: the table as the slice starts
          if not round_valid(t, slice) then changed = true break end
        end
        run_round(o, ctx, cs, slice)
        moved_buckets = moved_buckets + #slice
        j = j + #slice
        if M.stop_asked and (j <= #round or i < #p.rounds) then
          stopped = true
          break
        end
      end
      if stopped or changed then break end
    end
    if stopped or not changed then break end
    replans = replans + 1
    if replans > 5 then fail("the table of %s keeps changing under the tool; run it again later", o.ns) end
    out:line(format("the table of %s changed (now v%d) without this tool: planning again", o.ns, t.version))
  end
  ctx.finished = true
  out:finish()
  if stopped then
    out:line(format("stopped (Ctrl-C) between two rounds: %d bucket(s) moved, none migrating; "
      .. "run the same command again to go on", moved_buckets))
    return 130
  end

  local dt = core.now() - out.t0
  if moved_buckets == 0 and o.op == "rebalance" then
    out:line(format("nothing to move in %s (table v%d)", o.ns, t.version))
  elseif moved_buckets == 0 then
    out:line(format("nothing to do: %s %s in %s is already done (table v%d)", o.op, o.addr, o.ns, t.version))
  else
    out:line(format("done: %d bucket(s), %d keys (%s) moved in %.2f s (%d keys/s)",
      moved_buckets, out.keys, human_bytes(out.bytes), dt, math.floor(dt > 0 and out.keys / dt or 0)))
    out:line(M.pace_summary(ctx))
    if #ctx.bigs > 0 then
      local longest = 0
      for _, b in ipairs(ctx.bigs) do longest = math.max(longest, b.ms) end
      out:line(format("big keys: %d of %d MB or more; the longest held its source %.1f ms",
        #ctx.bigs, o.big_key_mb, longest))
    end
  end
  t = fetch()
  local counts = btable.counts(t)
  local parts = {}
  for _, a in ipairs(btable.servers(t)) do parts[#parts + 1] = a .. " " .. counts[a] end
  out:line(format("table %s v%d: %s", o.ns, t.version, concat(parts, ", ")))
  if o.op == "rebalance" and moved_buckets > 0 then
    local m = M.measure(ctx, t, o.by, o.sample)
    local _, done = plan.finished(t) -- (none migrating, unless someone else started a move)
    local r = plan.rebalance(done, o.by == "memory" and m.bytes or m.keys, { spread = o.spread, max_moves = 0 })
    local unit = o.by == "memory" and human_bytes or function(v) return format("%d keys", v) end
    local parts2 = {}
    for _, a in ipairs(btable.servers(t)) do parts2[#parts2 + 1] = a .. " " .. unit(r.before[a] or 0) end
    out:line(format("load now (measured): %s; spread %s", concat(parts2, ", "), show_spread(r.spread_before)))
  end
  if p and p.left > 0 then
    out:line(format("%d bucket move(s) left: run again without --count (or with a new one) to go on", p.left))
  elseif o.op == "del" and not counts[o.addr] then
    local ok, n = pcall(open, ctx.nodes, o.addr, pw)
    if ok then
      local left = leftover_keys(n)
      if left > 0 then
        out:err(format("warning: %s owns no bucket now but still holds %d key(s) named like keys of a namespace", o.addr, left))
      else
        out:line(format("%s holds no key of %s and can be shut down", o.addr, o.ns))
      end
    end
  end
  return 0
end

function M.main(argv)
  local o, err = M.parse_args(argv or {})
  if not o then
    if err == nil then
      io.stdout:write(USAGE, "\n")
      return 0
    end
    io.stderr:write("migration_tool: ", err, "\n", USAGE, "\n")
    return 2
  end
  local out = new_out(core.isatty(1))
  M.stop_asked = false
  loop.on_signal(function(signo)
    if signo == 2 and not M.stop_asked then
      -- the first Ctrl-C: the round in progress finishes (its buckets end
      -- owned by their destination), then the run stops
      M.stop_asked = true
      out:err("Ctrl-C: stopping once the buckets of the current round are moved (Ctrl-C again: at once)")
      return
    end
    out:err("interrupted: buckets of the current round stay migrating (clients keep working); "
      .. "run the same command again to finish")
    core.exit(128 + signo)
  end)
  local rc = 1
  loop.run(function()
    local ok, e = xpcall(function() return run(o, out) end, function(x)
      if getmetatable(x) == Fail then return x end
      return debug.traceback(tostring(x), 2)
    end)
    if ok then
      rc = e
    else
      if getmetatable(e) == Fail then
        out:err(e.msg)
      else
        out:err("internal error: " .. tostring(e))
      end
      out:err("the run stopped; what was done is kept: run the same command again to resume")
      rc = 1
    end
    io.stdout:flush()
    loop.stop()
  end)
  return rc
end

return M
