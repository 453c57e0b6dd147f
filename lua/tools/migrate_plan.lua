-- tools.migrate_plan: what migration_tool moves, in which order, in which
-- rounds (pure functions of a bucket table; busted specs in
-- tests/lua/migrate_plan_spec.lua).
--
--   plan(t, op, addr, opts) -> p | nil, err
--     t     the namespace's current table (kv.btable form), possibly partly
--           migrated by an earlier, interrupted run (of any command)
--     op    "add" | "del" | "rebalance"
--     addr  the master to add or to remove (rebalance: unused)
--     opts  { count = N (nil: all), parallel = P (buckets per round),
--             moves = { move... } (rebalance: the moves M.rebalance chose,
--             from the table as finished(t) leaves it) }
--   p = { finish = { move... },   buckets migrating in t: finished first
--         moves  = { move... },   every move of this run, in order (finish first)
--         rounds = { { move... }, ... },   consecutive chunks of moves
--         target = t',            the table when every planned move is done
--         total  = #moves,  left = moves beyond --count (not in moves) }
--   move = { bucket = b, src = "ip:port", dst = "ip:port" }
--
--   finished(t) -> finish, done   the buckets t has migrating (as moves)
--                  and the table once they are finished
--   rebalance(t, load, opts) -> r  bucket moves that even out the masters'
--                  load (bytes or keys per bucket); see below
--   interleave(moves) -> the same moves, sources taking turns
--   by_dst(round) -> { { dst =, buckets = {b...} }, ... }  sorted by dst
--   by_src(round) -> { { src =, moves = {move...} }, ... } sorted by src
--
-- Resuming: a bucket marked migrating (b -> D) cannot be given another
-- destination (MIGRATE.START refuses) nor be cancelled (proxies may already
-- have written its keys on D), so it is finished first, towards D, whatever
-- command left it. Only then the rest is planned with kv.btable.scale_up /
-- scale_down from the table as it will be (those finished buckets owned by
-- their D). For an interrupted `--add X` the finished buckets are exactly the
-- ones scale_up would pick first, so nothing moves twice. Rounds never mix
-- finishing moves with new ones: a bucket that migrated towards the master
-- being removed is finished (onto it) in one round, then moved away in a
-- later one. New moves are ordered with sources taking turns (interleave),
-- so each round keeps every source master busy.
local btable = require "kv.btable"

local M = {}

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function chunks(list, size, out)
  for i = 1, #list, size do
    local r = {}
    for j = i, math.min(i + size - 1, #list) do r[#r + 1] = list[j] end
    out[#out + 1] = r
  end
  return out
end

-- The buckets an earlier run left migrating (as moves) and the table once
-- they are finished.
function M.finished(t)
  local finish, done = {}, t
  for _, b in ipairs(sorted_keys(t.migrating)) do
    finish[#finish + 1] = { bucket = b, src = t.owner[b], dst = t.migrating[b] }
    done = assert(btable.finish_migration(done, b))
  end
  return finish, done
end

-- done + the rebalance moves (each must start from its bucket's owner in
-- done: the moves were planned from it). -> t' | nil, err
local function apply_moves(done, moves)
  local target, seen = btable.copy(done), {}
  local servers = btable.counts(done)
  for _, mv in ipairs(moves or {}) do
    local b = mv.bucket
    if seen[b] then return nil, "bucket " .. tostring(b) .. " moves twice" end
    seen[b] = true
    if done.owner[b] ~= mv.src then
      return nil, ("bucket %s is owned by %s, not %s"):format(tostring(b), tostring(done.owner[b]), tostring(mv.src))
    end
    if not servers[mv.dst] or mv.dst == mv.src then
      return nil, ("bucket %d: %s is not another master of the table"):format(b, tostring(mv.dst))
    end
    target.owner[b] = mv.dst
  end
  return target
end

function M.plan(t, op, addr, opts)
  opts = opts or {}
  local parallel = opts.parallel or 64
  if type(parallel) ~= "number" or parallel < 1 or parallel % 1 ~= 0 then
    error("migrate_plan.plan: parallel must be a positive integer", 2)
  end
  if op ~= "add" and op ~= "del" and op ~= "rebalance" then
    error("migrate_plan.plan: op must be add, del or rebalance", 2)
  end

  -- 1. what an earlier run left migrating, and the table once it is done
  local finish, done = M.finished(t)

  -- 2. the rest, from there
  local target, err
  if op == "rebalance" then
    target, err = apply_moves(done, opts.moves)
  elseif op == "add" then
    target, err = btable.scale_up(done, addr)
  else
    local owns = false
    for b = 0, done.bucket_count - 1 do
      if done.owner[b] == addr then owns = true break end
    end
    if not owns then
      -- nothing (left) to take away: a finished run, or a wrong address
      target = done
    else
      target, err = btable.scale_down(done, addr)
    end
  end
  if not target then return nil, err end
  local fresh = M.interleave(btable.moves(done, target))

  -- 3. --count, then rounds
  local count = opts.count or math.huge
  local moves, f2, n2 = {}, {}, {}
  for _, m in ipairs(finish) do
    if #moves < count then moves[#moves + 1] = m; f2[#f2 + 1] = m end
  end
  for _, m in ipairs(fresh) do
    if #moves < count then moves[#moves + 1] = m; n2[#n2 + 1] = m end
  end
  local rounds = chunks(f2, parallel, {})
  chunks(n2, parallel, rounds)
  return {
    finish = f2, moves = moves, rounds = rounds, target = target,
    total = #moves, left = #finish + #fresh - #moves,
  }
end

--------------------------------------------------------------------------------
-- Rebalancing by load
--
--   rebalance(t, load, opts) -> r
--     t     a table with no bucket migrating (finished(t)'s done)
--     load  { [bucket] = n }: bytes (MEMORY USAGE summed) or keys per
--           bucket, as measured on its owner; missing buckets weigh 0
--     opts  { spread = PCT (default 10): the goal, max <= min * (1 + PCT/100)
--             max_moves = N (default: no limit) }
--   r = { moves = { {bucket, src, dst, load}... } in the order chosen,
--         before = { [addr] = load }, after = { [addr] = load },
--         spread_before = %, spread_after = % (math.huge: a master at 0,
--         others not), within = after meets the goal }
--
-- Greedy, to move few buckets: while the masters are not within the
-- spread, the heaviest master gives the lightest the one bucket that best
-- halves the gap between them (load closest to gap/2; a bucket that would
-- leave the lightest heavier than the heaviest was by the full gap or more
-- never moves: only 0 < load < gap does, and each move lowers the sum of
-- squares of the loads, so the loop ends). A bucket moves at most once a
-- run. Stops when within the spread, when no bucket of the heaviest fits,
-- or at max_moves. Ties: the lower address among equally loaded masters,
-- the lower bucket among equally fitting ones (deterministic).
--------------------------------------------------------------------------------

function M.spread_pct(max, min)
  if max <= 0 then return 0 end
  if min <= 0 then return math.huge end
  return (max / min - 1) * 100
end

function M.rebalance(t, load, opts)
  opts = opts or {}
  local spread = opts.spread or 10
  if type(spread) ~= "number" or spread < 0 then error("migrate_plan.rebalance: spread must be >= 0", 2) end
  if next(t.migrating) then error("migrate_plan.rebalance: buckets are migrating (use finished(t))", 2) end
  local max_moves = opts.max_moves or math.huge
  local servers = btable.servers(t)
  local tot, owned = {}, {}
  for _, a in ipairs(servers) do tot[a] = 0; owned[a] = {} end
  for b = 0, t.bucket_count - 1 do
    local a, x = t.owner[b], load[b] or 0
    tot[a] = tot[a] + x
    if x > 0 then owned[a][#owned[a] + 1] = b end
  end
  local before = {}
  for a, v in pairs(tot) do before[a] = v end

  local function extremes()
    local hi, lo = servers[1], servers[1]
    for _, a in ipairs(servers) do
      if tot[a] > tot[hi] then hi = a end
      if tot[a] < tot[lo] then lo = a end
    end
    return hi, lo
  end
  local function sp()
    local hi, lo = extremes()
    return M.spread_pct(tot[hi], tot[lo])
  end

  local moves, moved = {}, {}
  local spread_before = sp()
  while #moves < max_moves do
    local hi, lo = extremes()
    if hi == lo or M.spread_pct(tot[hi], tot[lo]) <= spread then break end
    local gap = tot[hi] - tot[lo]
    local best, bi, bd
    for i, b in ipairs(owned[hi]) do
      local x = load[b]
      if not moved[b] and x < gap then
        local d = math.abs(gap - 2 * x)
        if not bd or d < bd or (d == bd and b < best) then best, bi, bd = b, i, d end
      end
    end
    if not best then break end
    table.remove(owned[hi], bi)
    owned[lo][#owned[lo] + 1] = best
    moved[best] = true
    tot[hi] = tot[hi] - load[best]
    tot[lo] = tot[lo] + load[best]
    moves[#moves + 1] = { bucket = best, src = hi, dst = lo, load = load[best] }
  end
  local spread_after = sp()
  return { moves = moves, before = before, after = tot, spread_before = spread_before,
           spread_after = spread_after, within = spread_after <= spread }
end

-- Orders moves so that every round draws on every source: the first move
-- of each source (by address), then the second of each, ... (each source's
-- moves keep their bucket order). Every master scans and moves its own keys
-- at the same time as the others, so a round lasts as long as its busiest
-- source, not the sum of them.
function M.interleave(moves)
  local rank, per = {}, {}
  for i, mv in ipairs(moves) do
    per[mv.src] = (per[mv.src] or 0) + 1
    rank[i] = per[mv.src]
  end
  local idx = {}
  for i = 1, #moves do idx[i] = i end
  table.sort(idx, function(x, y)
    if rank[x] ~= rank[y] then return rank[x] < rank[y] end
    if moves[x].src ~= moves[y].src then return moves[x].src < moves[y].src end
    return x < y
  end)
  local out = {}
  for i, j in ipairs(idx) do out[i] = moves[j] end
  return out
end

function M.by_dst(round)
  local m = {}
  for _, mv in ipairs(round) do
    local l = m[mv.dst]
    if not l then l = {}; m[mv.dst] = l end
    l[#l + 1] = mv.bucket
  end
  local out = {}
  for _, d in ipairs(sorted_keys(m)) do
    table.sort(m[d])
    out[#out + 1] = { dst = d, buckets = m[d] }
  end
  return out
end

function M.by_src(round)
  local m = {}
  for _, mv in ipairs(round) do
    local l = m[mv.src]
    if not l then l = {}; m[mv.src] = l end
    l[#l + 1] = mv
  end
  local out = {}
  for _, s in ipairs(sorted_keys(m)) do out[#out + 1] = { src = s, moves = m[s] } end
  return out
end

-- Every address a plan touches (sources and destinations), sorted.
function M.servers(p)
  local set = {}
  for _, mv in ipairs(p.moves) do set[mv.src] = true; set[mv.dst] = true end
  return sorted_keys(set)
end

return M
