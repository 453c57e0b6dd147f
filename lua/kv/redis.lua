-- kv.redis: a RESP client over kv.loop sockets, for the tools and the
-- control plane (never the data path). Values follow kv.resp's convention.
--
--   local c, err = redis.connect(host, port, {timeout = 5, password = pw})
--   c:call("SET", "k", "v")   -> reply | nil, err     (err: transport only;
--                                a Redis error reply is { err = "ERR ..." })
--   c:pipeline({{"SET","a","1"}, {"GET","a"}}) -> { replies } | nil, err
--   c:send_raw(bytes); c:read_reply() -> reply | nil, err
--   c:close()
local loop = require "kv.loop"
local resp = require "kv.resp"

local M = {}

local Client = {}
Client.__index = Client


function M.connect(host, port, opts)
  opts = opts or {}
  local sock, err = loop.connect(host, port, opts.connect_timeout or opts.timeout or 5)
  if not sock then return nil, err end
  local c = setmetatable({ sock = sock, timeout = opts.timeout or 5, reader = resp.new_reader(),
                           addr = host .. ":" .. port }, Client)
  if opts.password and opts.password ~= "" then
    local r, e = c:call("AUTH", opts.password)
    if not r then c:close() return nil, e end
    if type(r) == "table" and r.err then c:close() return nil, "AUTH failed: " .. r.err end
  end
  return c
end

-- Bytes are moved into the reader as they arrive, so a decoder that sees
-- an incomplete value must still mark the socket bytes consumed.
function Client:read_reply(timeout)
  return M.read_value(self.sock, self.reader, timeout or self.timeout)
end

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

function Client:send_raw(bytes)
  return self.sock:send(bytes)
end

function Client:call(...)
  local ok, err = self.sock:send(resp.encode(...))
  if not ok then return nil, err end
  return self:read_reply()
end

function Client:pipeline(cmds)
  local parts = {}
  for i, cmd in ipairs(cmds) do parts[i] = resp.encode_array(cmd) end
  local ok, err = self.sock:send(table.concat(parts))
  if not ok then return nil, err end
  local replies = {}
  for i = 1, #cmds do
    local r, e = self:read_reply()
    if r == nil then return nil, e end
    replies[i] = r
  end
  return replies
end

function Client:close()
  self.sock:close()
end

M.null = resp.null
return M
