-- kv.loop: coroutine-style networking and timers over kv.core's events.
--
-- Every task is a coroutine. A socket operation that must wait (connect,
-- receive) yields; the event handler resumes the coroutine when its bytes
-- arrive, the peer closes, or its timeout fires. Sends never wait: they are
-- buffered by the C side (sock:pending() tells how much).
--
--   loop.spawn(fn, ...)                      run fn as a new task
--   loop.sleep(seconds)
--   loop.every(seconds, fn)                  fn() in a new task each period
--   loop.connect(host, port, timeout) -> sock | nil, err
--   loop.listen(host, port, handler) -> true | nil, err   (handler(sock) per conn)
--   loop.run(main, ...)                      spawn main, run until loop.stop()
--   sock:send(data) -> true | nil, err
--   sock:receive_line(timeout) -> line (without CRLF) | nil, err
--   sock:receive(n, timeout) -> bytes | nil, err
--   sock:receive_with(decoder, timeout) -> value | nil, err
--       decoder(buf, pos) -> value, next_pos | nil (need more) | nil, err
--   sock:close(flush)
-- err is "timeout", "closed: <reason>" or a decoder's message.
local core = require "kv.core"
local log = require "kv.log"

local M = {}

local socks = {}      -- id -> sock
local timers = {}     -- timer id -> function(…) run on expiry
local listeners = {}  -- listener id -> handler
local signal_handlers = {}
local notify_handlers = {}

local function resume(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    log.error("task failed: %s", debug.traceback(co, tostring(err)))
  end
end

function M.spawn(fn, ...)
  local co = coroutine.create(fn)
  resume(co, ...)
  return co
end

function M.timer(seconds, fn)
  local id = core.timer(seconds)
  timers[id] = fn
  return id
end

function M.cancel(id)
  if id and timers[id] then
    timers[id] = nil
    core.cancel(id)
  end
end

function M.sleep(seconds)
  local co = coroutine.running()
  M.timer(seconds, function() resume(co) end)
  coroutine.yield()
end

function M.every(seconds, fn)
  M.spawn(function()
    while true do
      M.sleep(seconds)
      local ok, err = xpcall(fn, debug.traceback)
      if not ok then log.error("periodic task failed: %s", err) end
    end
  end)
end

function M.now() return core.now() end

-- Sockets ---------------------------------------------------------------

local Sock = {}
Sock.__index = Sock

local function new_sock(id, peer)
  local s = setmetatable({ id = id, peer = peer, buf = "", pos = 1 }, Sock)
  socks[id] = s
  return s
end

-- Try the waiting decoder against the buffer; resume the waiter if done.
local function try_wake(s)
  local w = s.waiter
  if not w then return end
  local v, nextpos = w.decoder(s.buf, s.pos)
  if v == nil and nextpos == nil then
    if s.closed then
      s.waiter = nil
      M.cancel(w.timer)
      resume(w.co, nil, "closed: " .. s.closed)
    end
    return
  end
  s.waiter = nil
  M.cancel(w.timer)
  if v == nil then
    resume(w.co, nil, nextpos)      -- decoder error
    return
  end
  s.pos = nextpos
  if s.pos > 65536 and s.pos > #s.buf / 2 then
    s.buf = s.buf:sub(s.pos)
    s.pos = 1
  end
  resume(w.co, v)
end

function Sock:send(data)
  if self.closed then return nil, "closed: " .. self.closed end
  return core.send(self.id, data)
end

function Sock:pending()
  return core.pending(self.id)
end

function Sock:receive_with(decoder, timeout)
  -- fast path: already buffered
  local v, nextpos = decoder(self.buf, self.pos)
  if v ~= nil then
    self.pos = nextpos
    return v
  elseif nextpos ~= nil then
    return nil, nextpos
  end
  if self.closed then return nil, "closed: " .. self.closed end
  local co = coroutine.running()
  local w = { co = co, decoder = decoder }
  if timeout then
    w.timer = M.timer(timeout, function()
      if self.waiter == w then
        self.waiter = nil
        resume(co, nil, "timeout")
      end
    end)
  end
  self.waiter = w
  return coroutine.yield()
end

local function line_decoder(buf, pos)
  local s, e = buf:find("\r?\n", pos)
  if not s then return nil end
  return buf:sub(pos, s - 1), e + 1
end

function Sock:receive_line(timeout)
  return self:receive_with(line_decoder, timeout)
end

function Sock:receive(n, timeout)
  return self:receive_with(function(buf, pos)
    if #buf - pos + 1 < n then return nil end
    return buf:sub(pos, pos + n - 1), pos + n
  end, timeout)
end

function Sock:close(flush)
  if socks[self.id] == self then
    socks[self.id] = nil
    core.close(self.id, flush)
  end
  if not self.closed then self.closed = "closed locally" end
  local w = self.waiter
  if w then
    self.waiter = nil
    M.cancel(w.timer)
    -- resume asynchronously: the closer may be another task
    M.timer(0, function() resume(w.co, nil, "closed: closed locally") end)
  end
end

function M.connect(host, port, timeout)
  local id, err = core.connect(host, tonumber(port))
  if not id then return nil, err end
  local s = new_sock(id, host .. ":" .. port)
  local co = coroutine.running()
  s.connecting = co
  local t = M.timer(timeout or 5, function()
    if s.connecting then
      s.connecting = nil
      s:close()
      resume(co, nil, "connect timeout")
    end
  end)
  s.connect_timer = t
  return coroutine.yield()
end

function M.listen(host, port, handler)
  local id, err = core.listen(host, tonumber(port))
  if not id then return nil, err end
  listeners[id] = handler
  return id
end

function M.unlisten(id)
  if listeners[id] then
    listeners[id] = nil
    core.close(id)
  end
end

-- Split "host:port" into host, port (number).
function M.split_addr(addr)
  local host, port = tostring(addr):match("^(.+):(%d+)$")
  if not host then return nil, "bad address '" .. tostring(addr) .. "'" end
  return host, tonumber(port)
end

function M.on_signal(fn) signal_handlers[#signal_handlers + 1] = fn end
function M.on_notify(fn) notify_handlers[#notify_handlers + 1] = fn end

-- The one event handler --------------------------------------------------

local handlers = {}

function handlers.accept(lid, cid, peer)
  local h = listeners[lid]
  local s = new_sock(cid, peer)
  if not h then s:close() return end
  M.spawn(h, s)
end

function handlers.connected(id)
  local s = socks[id]
  if s and s.connecting then
    local co = s.connecting
    s.connecting = nil
    M.cancel(s.connect_timer)
    resume(co, s)
  end
end

function handlers.data(id, bytes)
  local s = socks[id]
  if not s then return end
  if s.pos > 1 and s.pos > #s.buf then
    s.buf, s.pos = bytes, 1
  else
    s.buf = s.buf .. bytes
  end
  if s.on_data then s.on_data(s) end
  try_wake(s)
end

function handlers.closed(id, reason)
  local s = socks[id]
  if not s then return end
  socks[id] = nil
  s.closed = reason or "closed"
  if s.connecting then
    local co = s.connecting
    s.connecting = nil
    M.cancel(s.connect_timer)
    resume(co, nil, "cannot connect to " .. s.peer .. ": " .. s.closed)
    return
  end
  try_wake(s)
end

function handlers.timer(id)
  local fn = timers[id]
  timers[id] = nil
  if fn then fn() end
end

-- The runtime catches SIGINT/SIGTERM for every program; one that set no
-- handler (a script, a test helper) ends as the signal would have ended it.
function handlers.signal(signo)
  if #signal_handlers == 0 then core.exit(128 + signo) end
  for _, fn in ipairs(signal_handlers) do fn(signo) end
end

function handlers.notify(what)
  for _, fn in ipairs(notify_handlers) do fn(what) end
end

core.set_handler(function(ev, a, b, c)
  local h = handlers[ev]
  if h then h(a, b, c) end
end)

function M.stop() core.stop() end

function M.run(main, ...)
  if main then M.spawn(main, ...) end
  core.run()
end

return M
