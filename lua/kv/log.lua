-- kv.log: levelled log lines through the C logger (one write per line,
-- shared with the C threads). Usage: log.info("table %s v%d", ns, v)
local core = require "kv.core"

local M = {}

local function emit(level, fmt, ...)
  local ok, msg = pcall(string.format, fmt, ...)
  if not ok then msg = tostring(fmt) end
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
