-- kv.log: levelled log lines through the C logger (one write per line,
-- shared with the C threads). Usage: log.info("table %s v%d", ns, v)
--
-- Every line is rate-limited by its format string: at most `burst` lines of
-- one format per `window` seconds; the first line after a quiet spell says
-- how many were held back (20 per 10 s: a burst of proxies registering at
-- start-up still logs each one). Most lines a remote peer can trigger (a refused
-- handshake, a bad command, a dropped connection) are one format string
-- with the peer's address in it, so one limiter keyed by the format keeps a
-- flood of peers from flooding the log without each call site opting in.
-- Lines of different formats never hold each other back.
local core = require "kv.core"

local M = {}

-- A limiter: plain state, a clock passed in (testable without a server).
-- allow(lim, key, now) -> emit?, held (lines held back before this one)
function M.limiter(burst, window, max_keys)
  return { burst = burst, window = window, max_keys = max_keys or 4096, keys = {}, nkeys = 0 }
end

function M.allow(lim, key, now)
  local s = lim.keys[key]
  if s == nil then
    -- a format built at run time (log.warn(msg)) could make keys without
    -- bound: forget them all rather than grow
    if lim.nkeys >= lim.max_keys then
      lim.keys, lim.nkeys = {}, 0
    end
    s = { start = now, count = 0, held = 0 }
    lim.keys[key] = s
    lim.nkeys = lim.nkeys + 1
  end
  if now - s.start >= lim.window then
    s.start, s.count = now, 0
  end
  if s.count < lim.burst then
    s.count = s.count + 1
    local held = s.held
    s.held = 0
    return true, held
  end
  s.held = s.held + 1
  return false, s.held
end

local lim = M.limiter(20, 10)

local function emit(level, fmt, ...)
  if not core.log_enabled(level) then return end
  local ok_to_log, held = M.allow(lim, fmt, core.now())
  if not ok_to_log then return end
  local ok, msg = pcall(string.format, fmt, ...)
  if not ok then msg = tostring(fmt) end
  if held > 0 then msg = string.format("%s (and %d more like it)", msg, held) end
  core.log(level, msg)
end

function M.debug(...) emit(core.DEBUG, ...) end
function M.info(...) emit(core.INFO, ...) end
function M.warn(...) emit(core.WARN, ...) end
function M.error(...) emit(core.ERROR, ...) end

-- level: "debug"|"info"|"warn"|"error"; file: path or "" for stderr.
function M.setup(level, file)
  return core.log_setup(level, file or "")
end

return M
