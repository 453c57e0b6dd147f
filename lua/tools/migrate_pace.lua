-- tools.migrate_pace: how fast migration_tool moves keys, decided from what
-- the move costs the clients (pure functions over a plain table; busted
-- specs in tests/lua/migrate_pace_spec.lua).
--
-- The signal is the clients' own throughput on the masters of the move:
-- every WINDOW the tool reads INFO stats + commandstats of each source and
-- destination and counts the commands of the window that are not the
-- move's own (MIGRATE, SCAN, INFO, ... : M.OWN_COMMANDS; a proxy that
-- migrates a key on access sends MIGRATE too, then the client's command,
-- which counts). Clients that wait longer send fewer commands, so a fall of
-- that rate is what they pay, whatever the cause: a source blocked by
-- MIGRATE, or CPU the move takes from them on a shared machine.
--
-- States (p.state), one function per transition:
--   measure  before the first key: one window to see whether clients are
--            there (nothing moves)
--   full     no client: as fast as it goes (--batch keys per MIGRATE,
--            FULL_INFLIGHT in flight, SCAN COUNT 1000); clients showing up
--            -> calm
--   calm     nothing moves for CALM_WINDOWS windows (the first lets what is
--            in flight settle); the last one's rate is the clients' calm
--            rate, the reference of gentle -> full or gentle
--   gentle   clients are there: one small MIGRATE at a time (GENTLE_BATCH
--            keys, a fraction of a ms), SCAN COUNT 100, and a rate of work
--            (keys moved + keys scanned x SCAN_WEIGHT per second) that grows
--            by UP each window while the clients keep KEEP of their calm
--            rate and shrinks by DOWN when they do not; every REBASE
--            seconds -> calm again (clients' demand changes by itself)
--
--   new(opts) -> p          opts: mode "auto" | "full", batch (the most
--                           keys per MIGRATE), cap (--max-keys-per-sec or nil)
--   verdict(p, ops, now, done)  ops: the clients' commands/s over the
--                           window that just ended, done: the work units/s
--                           the movers did in it; moves p to its next state
--   describe(p) -> "full" | "gentle 12000/s" | "calm"  (the progress line)
--
-- Settings the tool reads: p.paused, p.rate (work units/s, nil: none),
-- p.batch, p.scan_count, p.inflight.
local M = {}

M.WINDOW = 0.25        -- seconds per verdict
M.QUIET_OPS = 200      -- client commands/s (all masters of the move) below which no client is there
M.KEEP = 0.8           -- the clients' share of their calm rate that gentle keeps
M.UP, M.DOWN = 1.2, 0.8
M.START_RATE = 10000   -- work units/s when gentle starts
M.MIN_RATE = 2000
M.AHEAD = 1.5          -- the rate stays within this x the work done in the last window
M.CALM_WINDOWS = 2
M.REBASE = 10          -- seconds between calm measurements while gentle
M.GENTLE_BATCH = 20    -- keys per gentle MIGRATE: about 0.15 ms of its source at ~7 us a key
M.SCAN_WEIGHT = 0.05   -- a scanned key costs the source about a twentieth of a moved one
M.FULL_COUNT, M.GENTLE_COUNT = 1000, 100
-- MIGRATEs queued per source at full pace: the source never waits for the
-- tool (4 measured a few % faster than 2 with one source; 8 no better)
M.FULL_INFLIGHT = 4
M.GENTLE_PARALLEL = 64 -- buckets migrating at once while clients are there (migration_tool)

-- Commands the move (and proxies migrating on access) send, not clients:
-- MIGRATE sends AUTH and SELECT before every RESTORE it sends.
M.OWN_COMMANDS = { "migrate", "scan", "info", "ping", "dbsize", "role", "memory|usage", "eval",
                   "script|load", "restore-asking", "restore", "auth", "select" }

function M.new(opts)
  local p = { mode = opts.mode or "auto", max_batch = opts.batch,
              gentle_rate = M.START_RATE, calm_ops = nil, calm_at = -math.huge, calm_left = 0 }
  if p.mode == "full" then
    M.to_full(p)
  else
    p.state, p.paused = "measure", true
  end
  return p
end

local function gentle_batch(p)
  return math.min(M.GENTLE_BATCH, p.max_batch)
end

function M.to_full(p)
  p.state, p.paused, p.rate = "full", false, nil
  p.batch, p.scan_count, p.inflight = p.max_batch, M.FULL_COUNT, M.FULL_INFLIGHT
end

function M.to_calm(p)
  p.state, p.paused, p.calm_left = "calm", true, M.CALM_WINDOWS
end

function M.to_gentle(p, ops, now)
  p.state, p.paused = "gentle", false
  p.calm_ops, p.calm_at = ops, now
  p.rate = p.gentle_rate
  p.batch, p.scan_count, p.inflight = gentle_batch(p), M.GENTLE_COUNT, 1
end

-- The clients' calm rate is known: gentle when they are there, else full.
local function settle(p, ops, now)
  if ops < M.QUIET_OPS then M.to_full(p) else M.to_gentle(p, ops, now) end
end

-- done: the work units/s the movers did in the window. The rate grows only
-- while it is what holds them back (never above AHEAD x what they did), and
-- backs off from what they did, so that backing off acts at once.
local function adjust(p, ops, done)
  if ops < M.KEEP * p.calm_ops then
    p.gentle_rate = math.max(M.MIN_RATE, math.min(p.gentle_rate, done or p.gentle_rate) * M.DOWN)
  else
    p.gentle_rate = math.min(p.gentle_rate * M.UP, math.max(M.START_RATE, (done or 0) * M.AHEAD))
  end
  p.rate = p.gentle_rate
end

function M.verdict(p, ops, now, done)
  if p.mode == "full" then return end
  local s = p.state
  if s == "measure" then
    settle(p, ops, now)
  elseif s == "calm" then
    p.calm_left = p.calm_left - 1
    if p.calm_left <= 0 then settle(p, ops, now) end
  elseif s == "full" then
    if ops >= M.QUIET_OPS then M.to_calm(p) end
  elseif s == "gentle" then
    -- clients gone, or starved by the move: only a calm window tells which
    if ops < M.QUIET_OPS or now - p.calm_at >= M.REBASE then
      M.to_calm(p)
    else
      adjust(p, ops, done)
    end
  end
end

function M.describe(p)
  if p.state == "gentle" then return ("gentle %d/s"):format(math.floor(p.rate)) end
  if p.state == "measure" then return "measuring" end
  return p.state
end

-- The clients' commands in an INFO "stats" + "commandstats" text: the total
-- processed minus the move's own. -> number | nil (not an INFO reply)
function M.client_commands(info)
  local total = tonumber(info:match("\ntotal_commands_processed:(%d+)") or info:match("^total_commands_processed:(%d+)"))
  if not total then return nil end
  for _, name in ipairs(M.OWN_COMMANDS) do
    local calls = info:match("\ncmdstat_" .. name:gsub("%p", "%%%0") .. ":calls=(%d+)")
    if calls then total = total - tonumber(calls) end
  end
  return total
end

return M
