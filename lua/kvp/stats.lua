-- kvp.stats: the numbers of /kvstore/proxy/stats_info, from the data path's
-- raw counters. The C workers only ever add to their own counters (no lock,
-- no Lua per request); this module sums them on read, and implements
-- reset_stats as a baseline subtracted on read, so no thread writes another's
-- counters. qps and average_rt cover the last WINDOW seconds up to the read:
-- a snapshot is kept every second, and a read compares the current counters
-- with the snapshot WINDOW seconds old.
--
--   s = stats.new(read, now)  read() -> {total, slow, rt_sum_us, rt_count,
--                                         clients, cmds = {NAME = n}}
--   stats.tick(s, now)        call every second
--   stats.info(s, now)        -> fields of the stats_info reply
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
  cur.at = now or 0
  return { read = read, base = cur, ring = { cur } }
end

function M.tick(s, now)
  local cur = snapshot(s.read)
  cur.at = now
  local ring = s.ring
  ring[#ring + 1] = cur
  -- keep what a read needs: snapshots back to WINDOW seconds ago
  while #ring > 2 and now - ring[2].at >= M.WINDOW do table.remove(ring, 1) end
end

-- The oldest kept snapshot, about WINDOW seconds before now.
local function window(s, cur, now)
  local old = s.ring[1]
  local dt = now - old.at
  if dt <= 0 then return 0, 0 end
  local qps = math.floor((cur.total - old.total) / dt + 0.5)
  local n = cur.rt_count - old.rt_count
  local rt = n > 0 and math.floor((cur.rt_sum_us - old.rt_sum_us) / n + 0.5) / 1000 or 0
  return qps, rt
end

function M.info(s, now)
  local cur = snapshot(s.read)
  now = now or (s.ring[#s.ring].at)
  local cmds = {}
  for name, n in pairs(cur.cmds) do
    local d = n - (s.base.cmds[name] or 0)
    if d > 0 then cmds[name] = d end
  end
  local qps, rt = window(s, cur, now)
  return {
    average_rt = rt,
    qps = qps,
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
