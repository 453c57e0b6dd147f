-- kvp.health: the proxy's view of each master (SPEC §6, DESIGN §6).
--
-- One persistent connection per master (AUTH first), PING every second. A
-- master is DOWN once it has given no valid reply (+PONG; -LOADING and
-- -NOAUTH are not valid) for redis_down_timeout seconds; it is UP again at
-- its first valid reply. Transitions are logged, told to the data path
-- (down: requests fail fast, no reconnects; up: reconnect at once) and
-- reported to the config server; DOWN is repeated every REPEAT seconds while
-- it lasts, so a config server that restarted still hears it.
--
--   h = health.new{password = fn, down_timeout = fn, set_down(addr, down),
--                  report(kind, addr)}
--   health.watch(h, addresses)   start/stop monitors to match the table
--   health.judge(m, now, ok, down_timeout) -> "down" | "up" | nil   (pure)
--   health.ask(slot, addr, password, timeout, accept, cmd...)  one command
--       on a kept connection (kvp.replicas uses it too)
-- kv.loop/redis/log need the C runtime: loaded by new() and ask(), so busted
-- can test judge() alone
local loop, redis, log

local function runtime()
  loop, redis, log = require "kv.loop", require "kv.redis", require "kv.log"
end

local M = {}

M.INTERVAL = 1
M.REPEAT = 3

function M.new(opts)
  runtime()
  return { opts = opts, monitors = {} }
end

-- One probe result -> the transition it causes, if any. m = {down=, last_ok=}
function M.judge(m, now, ok, down_timeout)
  if ok then
    m.last_ok = now
    if m.down then
      m.down = false
      return "up"
    end
    return nil
  end
  if not m.down and now - m.last_ok >= down_timeout then
    m.down = true
    return "down"
  end
  return nil
end

local function valid(r)
  return type(r) == "table" and r.status == "PONG"
end

-- One command on a connection kept open in slot.conn, opened (AUTH first
-- when password) when there is none. A transport error or a reply that
-- accept(r) rejects closes it, so the next call connects again: one
-- connection per server, never one per probe (kvp.replicas uses it too).
-- -> reply | nil, why
function M.ask(slot, addr, password, timeout, accept, ...)
  if not redis then runtime() end
  if not slot.conn then
    local host, port = loop.split_addr(addr)
    slot.conn = redis.connect(host, port, { timeout = timeout, password = password })
    if not slot.conn then return nil, "cannot connect or authenticate" end
  end
  local r, err = slot.conn:call(...)
  if accept(r) then return r end
  slot.conn:close()
  slot.conn = nil
  return nil, r == nil and tostring(err) or (type(r) == "table" and (r.err or r.status)) or tostring(r)
end

local function monitor(h, m)
  local last_report = 0
  while not m.stopped do
    local r, why = M.ask(m, m.addr, h.opts.password(), 1, valid, "PING")
    local ok = r ~= nil
    if not ok then m.why = why end
    local now = loop.now()
    local change = M.judge(m, now, ok, h.opts.down_timeout())
    if change == "down" then
      log.warn("master %s is down: no valid reply for %d s (%s)", m.addr, h.opts.down_timeout(), tostring(m.why))
      h.opts.set_down(m.addr, true)
      h.opts.report("DOWN", m.addr)
      last_report = now
    elseif change == "up" then
      log.info("master %s is up again", m.addr)
      h.opts.set_down(m.addr, false)
      h.opts.report("UP", m.addr)
    elseif m.down and now - last_report >= M.REPEAT then
      h.opts.report("DOWN", m.addr)
      last_report = now
    end
    if not m.stopped then loop.sleep(ok and M.INTERVAL or math.min(M.INTERVAL, 0.5)) end
  end
  if m.conn then m.conn:close() end
end

function M.watch(h, addresses)
  local want = {}
  for _, a in ipairs(addresses) do want[a] = true end
  for addr, m in pairs(h.monitors) do
    if not want[addr] then
      m.stopped = true
      h.monitors[addr] = nil
      if m.down then h.opts.set_down(addr, false) end
    end
  end
  for addr in pairs(want) do
    if not h.monitors[addr] then
      local m = { addr = addr, down = false, last_ok = loop.now() }
      h.monitors[addr] = m
      loop.spawn(monitor, h, m)
    end
  end
end

-- Masters currently seen down (for /metrics and re-reports).
function M.down_list(h)
  local out = {}
  for addr, m in pairs(h.monitors) do
    if m.down then out[#out + 1] = addr end
  end
  table.sort(out)
  return out
end

return M
