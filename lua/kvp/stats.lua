-- kvp.stats: the numbers of /kvstore/proxy/stats_info, from the data path's
-- raw counters. The C workers only ever add to their own counters (no lock,
-- no Lua per request); this module sums them on read, keeps a 5 s window for
-- qps and average_rt, and implements reset_stats as a baseline subtracted on
-- read, so no thread writes another's counters.
--
--   s = stats.new(read)       read() -> {total, slow, rt_sum_us, rt_count,
--                                         clients, cmds = {NAME = n}}
--   stats.tick(s, now)        call every WINDOW seconds
--   stats.info(s)             -> fields of the stats_info reply
--   stats.reset(s)
local M = {}

M.WINDOW = 5

local function snapshot(read)
  local r = read()
  r.cmds = r.cmds or {}
  return r
end

function M.new(read, now)
  local cur = snapshot(read)
  return { read = read, base = cur, win = cur, win_t = now or 0, qps = 0, average_rt = 0 }
end

function M.tick(s, now)
  local cur = snapshot(s.read)
  local dt = now - s.win_t
  if dt > 0 then
    s.qps = math.floor((cur.total - s.win.total) / dt + 0.5)
    local n = cur.rt_count - s.win.rt_count
    s.average_rt = n > 0 and math.floor((cur.rt_sum_us - s.win.rt_sum_us) / n / 1000 * 1000 + 0.5) / 1000 or 0
  end
  s.win, s.win_t = cur, now
end

function M.info(s)
  local cur = snapshot(s.read)
  local cmds = {}
  for name, n in pairs(cur.cmds) do
    local d = n - (s.base.cmds[name] or 0)
    if d > 0 then cmds[name] = d end
  end
  return {
    average_rt = s.average_rt,
    qps = s.qps,
    client_count = cur.clients,
    slow_cmd_count = cur.slow - s.base.slow,
    total_cmd_count = cur.total - s.base.total,
    cmds = cmds,
  }
end

function M.reset(s)
  s.base = snapshot(s.read)
end

return M
