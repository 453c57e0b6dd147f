-- kv.redis: Redis clients for the control plane and the tools (never the
-- data path). Values follow kv.resp's convention; every reply is decoded by
-- hiredis.
--
--   local c, err = redis.connect(host, port, {timeout = 5, connect_timeout = 5,
--                                            password = pw})
--       hiredis's async client (kv.hiredis, c/lua/lhiredis.c) on the
--       control thread's loop; AUTH first when a password is given
--   c:call("SET", "k", "v")   -> reply | nil, err     (err: transport only;
--                                a Redis error reply is { err = "ERR ..." })
--   c:pipeline({{"SET","a","1"}, {"GET","a"}}) -> { replies } | nil, err
--   c:send(argv) / c:send_raw(bytes) -> true | nil, err
--       queue one command without waiting (send_raw: one command already in
--       RESP, e.g. from kv.resp.encode)
--   c:read_reply([timeout]) -> the reply to the oldest command not yet read
--                              | nil, err
--   c:close()
--
--   A timeout or a transport error closes the client: a reply arriving late
--   could otherwise be taken for the next command's. err is "timeout",
--   "connect timeout", "cannot connect to host:port: <why>" or
--   "closed: <why>".
--
--   redis.connect(host, port, {raw = true, ...}) -> the same methods over a
--       kv.loop socket read through hiredis's reader (kv.resp.new_reader):
--       send_raw writes any bytes and read_reply reads whatever comes, for
--       protocol tests that send malformed or inline commands.
--
--   redis.read_value(sock, reader, timeout) -> value | nil, err
--       one value from a kv.loop socket through a kv.resp reader (the
--       control protocol's peers use it).
local loop = require "kv.loop"
local resp = require "kv.resp"

local M = {}

M.null = resp.null

--------------------------------------------------------------------------------
-- hiredis's async client
--------------------------------------------------------------------------------

local hiredis         -- kv.hiredis, loaded by the first connect (busted loads
                      -- this module without the C runtime)
local clients = {}    -- connection id -> client

local Client = {}
Client.__index = Client

local function resume(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    require("kv.log").error("task failed: %s", debug.traceback(co, tostring(err)))
  end
end

-- Wake the task waiting on c (if any) with the given results.
local function wake(c, ...)
  local w = c.waiter
  if not w then return end
  c.waiter = nil
  loop.cancel(w.timer)
  resume(w.co, ...)
end

-- c is unusable from now on, `reason` says why; the C side closes the
-- connection unless it is gone there already (by_peer).
local function gone(c, reason, by_peer)
  if c.closed then return end
  c.closed = reason
  clients[c.id] = nil
  if not by_peer then hiredis.close(c.id) end
end

local handlers = {}

function handlers.connected(id)
  local c = clients[id]
  if c then wake(c, true) end
end

function handlers.reply(id, value)
  local c = clients[id]
  if not c then return end
  local t = c.tail + 1
  c.replies[t] = value
  c.tail = t
  if c.waiter and c.waiter.reply then wake(c, true) end
end

function handlers.closed(id, reason)
  local c = clients[id]
  if not c then return end
  gone(c, reason, true)
  if c.connecting then
    wake(c, nil, "cannot connect to " .. c.addr .. ": " .. reason)
  else
    wake(c, nil, "closed: " .. reason)
  end
end

local function on_event(ev, id, a)
  local h = handlers[ev]
  if h then h(id, a) end
end

-- Wait for the event of c (reply = true: a reply) or the timeout, which
-- closes c. -> true | nil, err
local function wait(c, timeout, reply, what)
  local co = coroutine.running()
  local w = { co = co, reply = reply }
  w.timer = loop.timer(timeout, function()
    if c.waiter == w then
      c.waiter = nil
      gone(c, what)
      resume(co, nil, what)
    end
  end)
  c.waiter = w
  return coroutine.yield()
end

local function connect_async(host, port, opts)
  if not hiredis then
    hiredis = require "kv.hiredis"
    resp.reader_module() -- the null sentinel for replies
    hiredis.set_handler(on_event)
  end
  local id, err = hiredis.connect(host, tonumber(port))
  if not id then return nil, err end
  local c = setmetatable({ id = id, addr = host .. ":" .. port, timeout = opts.timeout or 5,
                           replies = {}, head = 1, tail = 0, sent = 0, connecting = true }, Client)
  clients[id] = c
  local ok, cerr = wait(c, opts.connect_timeout or opts.timeout or 5, false, "connect timeout")
  c.connecting = nil
  if not ok then return nil, cerr end
  return c
end

function Client:send(argv)
  if self.closed then return nil, "closed: " .. self.closed end
  local ok, err = hiredis.command(self.id, argv)
  if not ok then return nil, err end
  self.sent = self.sent + 1
  return true
end

function Client:send_raw(bytes)
  if self.closed then return nil, "closed: " .. self.closed end
  local ok, err = hiredis.formatted(self.id, bytes)
  if not ok then return nil, err end
  self.sent = self.sent + 1
  return true
end

function Client:read_reply(timeout)
  if self.head > self.tail then
    if self.closed then return nil, "closed: " .. self.closed end
    if self.sent < self.head then return nil, "no command waits for a reply" end
    local ok, err = wait(self, timeout or self.timeout, true, "timeout")
    if not ok then return nil, err end
  end
  local h = self.head
  local v = self.replies[h]
  self.replies[h] = nil
  self.head = h + 1
  return v
end

function Client:call(...)
  local ok, err = self:send({ n = select("#", ...), ... })
  if not ok then return nil, err end
  return self:read_reply()
end

function Client:pipeline(cmds)
  for _, cmd in ipairs(cmds) do
    local ok, err = self:send(cmd)
    if not ok then return nil, err end
  end
  local replies = {}
  for i = 1, #cmds do
    local r, e = self:read_reply()
    if r == nil then return nil, e end
    replies[i] = r
  end
  return replies
end

function Client:close()
  gone(self, "closed locally")
  if self.waiter then
    -- resume asynchronously: the closer may be another task
    local w = self.waiter
    self.waiter = nil
    loop.cancel(w.timer)
    loop.timer(0, function() resume(w.co, nil, "closed: closed locally") end)
  end
end

--------------------------------------------------------------------------------
-- Raw connections: a kv.loop socket and hiredis's reader
--------------------------------------------------------------------------------

-- One RESP value from sock through a kv.resp reader (which keeps partial
-- values between calls, so a large reply costs O(bytes)): the bytes are
-- moved into the reader as they arrive. -> value | nil, err
function M.read_value(sock, reader, timeout)
  local v, err = reader:next()
  if v ~= nil then return v end
  if err then return nil, err end
  return sock:receive_with(function(buf, pos)
    if pos <= #buf then
      reader:feed(buf:sub(pos))
      sock.pos = #buf + 1
    end
    local val, e = reader:next()
    if val == nil then
      if e then return nil, e end
      return nil
    end
    return val, sock.pos
  end, timeout)
end

local Raw = {}
Raw.__index = Raw

local function connect_raw(host, port, opts)
  local sock, err = loop.connect(host, port, opts.connect_timeout or opts.timeout or 5)
  if not sock then return nil, err end
  return setmetatable({ sock = sock, timeout = opts.timeout or 5, reader = resp.new_reader(),
                        addr = host .. ":" .. port }, Raw)
end

function Raw:read_reply(timeout)
  return M.read_value(self.sock, self.reader, timeout or self.timeout)
end

function Raw:send_raw(bytes)
  return self.sock:send(bytes)
end

function Raw:send(argv)
  return self.sock:send(resp.encode_array(argv))
end

Raw.call = Client.call
Raw.pipeline = Client.pipeline

function Raw:close()
  self.sock:close()
end

--------------------------------------------------------------------------------

function M.connect(host, port, opts)
  opts = opts or {}
  local c, err
  if opts.raw then
    c, err = connect_raw(host, port, opts)
  else
    c, err = connect_async(host, port, opts)
  end
  if not c then return nil, err end
  if opts.password and opts.password ~= "" then
    local r, e = c:call("AUTH", opts.password)
    if not r then c:close() return nil, e end
    if type(r) == "table" and r.err then c:close() return nil, "AUTH failed: " .. r.err end
  end
  return c
end

return M
