-- kvcs.ha: the HA decisions (SPEC §6, DESIGN §6) as plain functions of
-- (votes, proxies, table, replicas) -> actions, so specs test every case
-- without servers. kvcs.failover does the I/O around them.
--
--   ha.decide(input) -> actions, notes
--     input = {
--       votes      = { [addr] = { [proxy_id] = true, ... } },  -- say DOWN now
--       proxies    = { [proxy_id] = true, ... },   -- connected proxies of the ns
--       table      = t,                            -- kv.btable table of the ns
--       replicas   = { [master] = { {addr=, up=bool, role=, offset=n,
--                                     link_down_s=n|nil}, ... } },
--       down_for   = { [master] = seconds since the first proxy reported it down },
--       stale_after = seconds (default M.STALE_GRACE, kvcs.conf replica_stale_after),
--       in_use     = { [addr] = namespace },       -- optional: addresses any table uses
--       support_ha = bool,
--       cluster_type = "data_store" | "cache",
--     }
--     actions: { kind = "promote", old = addr, new = addr, offset = n, why = text }
--              { kind = "remove", addr = addr, why = text }
--     notes:   { { addr = addr|nil, text = "why nothing happens" }, ... }
--              (for the log; an addr that is not in the table gets
--              stale = true: its votes can be dropped; a master only some
--              proxies report down gets wait = true)
--   ha.tally(voters, proxies) -> agreed, n_votes, n_proxies
--   ha.pick_replica(list, in_use, down_for, stale_after) -> replica | nil, why
--   ha.parse_info(text) -> { role=, offset=, master_host=, master_port=,
--                            master_link_status=, link_down_s=,
--                            slaves = {{addr=, state=, offset=}} }
--   ha.follow(watch, addr) -> the address that replaced addr last (through
--                             a chain of fail-overs), or addr
--
-- Rules (every one has a spec in tests/lua/ha_spec.lua):
--   * Nothing happens while support_ha is off.
--   * A master is acted on only when every connected proxy of the namespace
--     says it is down now, and at least one proxy is connected. Votes of
--     proxies that are not connected do not count (the caller drops them on
--     disconnect and on UP).
--   * data_store: the replica of that master that answered at decision time,
--     is not used by any table, is not stale, and has the greatest
--     replication offset (ties: lowest address) replaces it. Stale: it never
--     finished a sync with this master (master_link_down_since_seconds -1),
--     or its link went down more than stale_after seconds before the first
--     proxy reported the master down -- it holds old data, and promoting it
--     would silently lose every write since. No usable replica: nothing
--     happens (the operator decides).
--   * cache: the master is removed and its buckets spread over the rest;
--     never the last server of the table, and never when every server of
--     the table is reported down (that is the proxies' network, not Redis).

local btable = require "kv.btable"

local M = {}

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t or {}) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function count(t)
  local n = 0
  for _ in pairs(t or {}) do n = n + 1 end
  return n
end

-- Every connected proxy votes addr down (and there is at least one).
function M.tally(voters, proxies)
  local n_proxies, n_votes, agreed = 0, 0, true
  for id in pairs(proxies or {}) do
    n_proxies = n_proxies + 1
    if voters and voters[id] then n_votes = n_votes + 1 else agreed = false end
  end
  return agreed and n_proxies > 0, n_votes, n_proxies
end

-- A replica's link may go down before the proxies report its master: at
-- once when the master dies, up to repl-timeout (60 s) later when it is
-- black-holed, while the proxies wait redis_down_timeout first. A link
-- down for longer than the report plus this was broken before the master
-- failed: that replica missed writes.
M.STALE_GRACE = 300

-- Why replica r cannot stand in for a master reported down down_for seconds
-- ago, or nil.
local function stale(r, down_for, stale_after)
  local d, grace = r.link_down_s, stale_after or M.STALE_GRACE
  if d == nil then return nil end
  if d < 0 then return "never finished a sync with it" end
  if d > (down_for or 0) + grace then
    -- no "N s ago": the note stays the same while it lasts (logged once)
    return ("its link broke over %d s before the first down report for the master"):format(grace)
  end
  return nil
end

-- The live, fresh replica with the greatest offset (ties: lowest address).
function M.pick_replica(list, in_use, down_for, stale_after)
  if not list or #list == 0 then return nil, "no replica of it is known" end
  local best
  local dead, used, stales = 0, 0, {}
  for _, r in ipairs(list) do
    local why_stale = r.up and stale(r, down_for, stale_after)
    if not r.up then
      dead = dead + 1
    elseif in_use and in_use[r.addr] then
      used = used + 1
    elseif why_stale then
      stales[#stales + 1] = r.addr .. " " .. why_stale
    elseif not best or (r.offset or 0) > (best.offset or 0)
        or ((r.offset or 0) == (best.offset or 0) and r.addr < best.addr) then
      best = r
    end
  end
  if best then return best end
  local names = {}
  for i, r in ipairs(list) do names[i] = r.addr end
  if #stales > 0 then
    return nil, ("no replica with its recent data (%s; %d down, %d used by a table): promote one by hand if "
      .. "losing those writes is acceptable"):format(table.concat(stales, "; "), dead, used)
  end
  local why = ("no replica of it answers (%s)"):format(table.concat(names, ", "))
  if used > 0 then
    why = ("no usable replica (%s: %d down, %d already used by a table)"):format(
      table.concat(names, ", "), dead, used)
  end
  return nil, why
end

function M.decide(input)
  local actions, notes = {}, {}
  local t = input.table
  local function note(addr, text, extra)
    local n = { addr = addr, text = text }
    for k, v in pairs(extra or {}) do n[k] = v end
    notes[#notes + 1] = n
  end
  local voted = sorted_keys(input.votes)
  if #voted == 0 then return actions, notes end
  if not input.support_ha then
    for _, addr in ipairs(voted) do note(addr, "support_ha is off: no fail-over") end
    return actions, notes
  end
  if count(input.proxies) == 0 then
    for _, addr in ipairs(voted) do note(addr, "no proxy of the namespace is connected") end
    return actions, notes
  end

  local present = {}
  for _, a in ipairs(btable.addresses(t)) do present[a] = true end
  local servers = btable.servers(t)

  -- which masters every connected proxy reports down
  local down = {}
  for _, addr in ipairs(voted) do
    local agreed, nv, np = M.tally(input.votes[addr], input.proxies)
    if not present[addr] then
      note(addr, "not in the table (already replaced or removed)", { stale = true })
    elseif not agreed then
      note(addr, ("%d of %d connected proxies report it down: waiting for all"):format(nv, np),
        { wait = true })
    else
      down[#down + 1] = { addr = addr, n = np }
    end
  end
  if #down == 0 then return actions, notes end

  if input.cluster_type == "cache" then
    local down_owners = 0
    for _, d in ipairs(down) do
      if btable.counts(t)[d.addr] then down_owners = down_owners + 1 end
    end
    if #servers == 1 then
      for _, d in ipairs(down) do
        note(d.addr, "it is the last server of the table: not removed")
      end
      return actions, notes
    end
    if down_owners >= #servers then
      for _, d in ipairs(down) do
        note(d.addr, "every server of the table is reported down (a proxy network fault?): nothing removed")
      end
      return actions, notes
    end
    for _, d in ipairs(down) do
      actions[#actions + 1] = { kind = "remove", addr = d.addr,
        why = ("all %d connected proxies report it down"):format(d.n) }
    end
    return actions, notes
  end

  -- data_store: promote a replica
  local chosen = {}
  for _, d in ipairs(down) do
    local list = input.replicas and input.replicas[d.addr]
    local in_use = {}
    for a, ns in pairs(input.in_use or {}) do in_use[a] = ns end
    for a in pairs(chosen) do in_use[a] = true end
    local r, why = M.pick_replica(list, in_use, (input.down_for or {})[d.addr], input.stale_after)
    if not r then
      note(d.addr, ("all %d connected proxies report it down, but %s"):format(d.n, why))
    else
      chosen[r.addr] = true
      local others = {}
      for _, o in ipairs(list) do
        if o.addr ~= r.addr then
          others[#others + 1] = ("%s %s"):format(o.addr, o.up and ("offset " .. tostring(o.offset or 0)) or "down")
        end
      end
      actions[#actions + 1] = { kind = "promote", old = d.addr, new = r.addr, offset = r.offset,
        why = ("all %d connected proxies report it down; replica %s answers, offset %s%s"):format(
          d.n, r.addr, tostring(r.offset or 0),
          #others > 0 and ("; other replicas: " .. table.concat(others, ", ")) or "") }
    end
  end
  return actions, notes
end

-- INFO replication text -> fields the decisions need.
function M.parse_info(text)
  local info = { slaves = {} }
  for line in tostring(text or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([%w_]+):(.*)$")
    if k == "role" then
      info.role = v
    elseif k == "master_host" then
      info.master_host = v
    elseif k == "master_port" then
      info.master_port = tonumber(v)
    elseif k == "master_link_status" then
      info.master_link_status = v
    elseif k == "master_link_down_since_seconds" then
      info.link_down_s = tonumber(v)
    elseif k == "slave_repl_offset" then
      info.slave_offset = tonumber(v)
    elseif k == "master_repl_offset" then
      info.master_offset = tonumber(v)
    elseif k and k:match("^slave%d+$") then
      local f = {}
      for kv in v:gmatch("[^,]+") do
        local a, b = kv:match("^([^=]+)=(.*)$")
        if a then f[a] = b end
      end
      if f.ip and f.port then
        info.slaves[#info.slaves + 1] = { addr = f.ip .. ":" .. f.port, state = f.state,
                                          offset = tonumber(f.offset) }
      end
    end
  end
  -- a replica's own progress is slave_repl_offset; a master's is master_repl_offset
  if info.role == "slave" then
    info.offset = info.slave_offset or info.master_offset
  else
    info.offset = info.master_offset
  end
  return info
end

-- watch = { [old] = new, ... }: where addr's role went, following chains
-- (old -> new -> newer after a second fail-over). Stops at cycles.
function M.follow(watch, addr)
  local seen = { [addr] = true }
  local cur = addr
  while watch[cur] and not seen[watch[cur]] do
    cur = watch[cur]
    seen[cur] = true
  end
  return cur
end

return M
