-- kvcs.buckets: the life of a bucket that moves (DESIGN §4, §5), one
-- function per transition. Plain functions of kv.btable tables, no I/O;
-- kvcs.migration sequences them (install, wait for the acks, next one).
--
--               block                  migrate                 finish
--   owned ─────────────> blocked ─────────────> migrating ─────────────> owned
--   (by src)     │     (→ dst, proxies   (→ dst, proxies move    (by dst)
--     ^          │      park commands)    keys on access)
--     └─ abort ──┘
--
-- In a table: owned = no migrating mark; blocked = migrating[b] = dst and
-- blocked[b]; migrating = migrating[b] = dst without blocked[b].
--
-- Why each step waits: a bucket is blocked until every known proxy acked
-- the table that blocks it, so no proxy still routes it the old way when
-- keys start moving; abort is only for a blocked bucket, whose keys no one
-- has moved (a migrating one must be finished, its keys may be on dst).
--
--   state(t, b)             -> "owned" | "blocked" | "migrating"
--   block(t, dst, list)     owned -> blocked towards dst
--   migrate(t, list)        blocked -> migrating
--   finish(t, dst, list)    migrating towards dst -> owned by dst
--   abort(t, list)          blocked -> owned by its owner as before
--   select(t, list, state)  -> the buckets of list in that state
--
-- Each transition takes a list of bucket ids and is idempotent: a bucket
-- already in the target state (e.g. a retried command) is left alone. It
-- returns t itself when no bucket changes, else a new table with version
-- + 1 (one bump for the whole list); or nil, code, msg (kv.codes) when a
-- bucket is not a bucket id or is in a state the transition does not leave
-- from. t is never modified.
local btable = require "kv.btable"
local names = require "kv.names"
local codes = require "kv.codes"

local M = {}

function M.state(t, b)
  if not t.migrating[b] then return "owned" end
  if t.blocked and t.blocked[b] then return "blocked" end
  return "migrating"
end

local function check_ids(t, list)
  for _, b in ipairs(list) do
    if type(b) ~= "number" or b % 1 ~= 0 or b < 0 or b >= t.bucket_count then
      return nil, codes.BAD_PARAM, ("bucket %s is not 0..%d"):format(tostring(b), t.bucket_count - 1)
    end
  end
  return true
end

local function refuse(msg, ...)
  return nil, codes.TABLE_CHANGE_FAILED, msg:format(...)
end

-- Runs change(n, b) on one copy n of t for the buckets of list that
-- want(b) says move; -> t itself when none does.
local function apply(t, list, want, change)
  local n
  for _, b in ipairs(list) do
    if want(b) then
      n = n or btable.copy(t)
      change(n, b)
    end
  end
  return n or t
end

function M.select(t, list, state)
  local out = {}
  for _, b in ipairs(list) do
    if M.state(t, b) == state then out[#out + 1] = b end
  end
  return out
end

function M.block(t, dst, list)
  local ok, code, msg = check_ids(t, list)
  if not ok then return nil, code, msg end
  if not names.valid_addr(dst) then return nil, codes.BAD_ADDR, "invalid destination " .. tostring(dst) end
  for _, b in ipairs(list) do
    local cur = t.migrating[b]
    if cur and cur ~= dst then
      return refuse("bucket %d is already migrating to %s", b, cur)
    elseif not cur and t.owner[b] == dst then
      return refuse("bucket %d is already owned by %s", b, dst)
    end
  end
  return apply(t, list, function(b) return not t.migrating[b] end, function(n, b)
    n.migrating[b] = dst
    n.blocked[b] = true
  end)
end

function M.migrate(t, list)
  local ok, code, msg = check_ids(t, list)
  if not ok then return nil, code, msg end
  for _, b in ipairs(list) do
    if M.state(t, b) == "owned" then return refuse("bucket %d is not migrating", b) end
  end
  return apply(t, list, function(b) return M.state(t, b) == "blocked" end, function(n, b)
    n.blocked[b] = nil
  end)
end

function M.finish(t, dst, list)
  local ok, code, msg = check_ids(t, list)
  if not ok then return nil, code, msg end
  for _, b in ipairs(list) do
    local state = M.state(t, b)
    if state == "blocked" then
      return refuse("bucket %d is blocked: its MIGRATE.START has not completed", b)
    elseif not (state == "migrating" and t.migrating[b] == dst or state == "owned" and t.owner[b] == dst) then
      return refuse("bucket %d is not migrating to %s", b, tostring(dst))
    end
  end
  return apply(t, list, function(b) return t.migrating[b] ~= nil end, function(n, b)
    n.owner[b] = dst
    n.migrating[b] = nil
  end)
end

function M.abort(t, list)
  local ok, code, msg = check_ids(t, list)
  if not ok then return nil, code, msg end
  for _, b in ipairs(list) do
    if M.state(t, b) == "migrating" then
      return refuse("bucket %d is migrating to %s: its keys may be there already; finish it", b, t.migrating[b])
    end
  end
  return apply(t, list, function(b) return M.state(t, b) == "blocked" end, function(n, b)
    n.migrating[b] = nil
    n.blocked[b] = nil
  end)
end

return M
