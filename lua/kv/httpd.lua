-- kv.httpd: the admin HTTP server of kvp and kvcs (one request per
-- connection, JSON in and out, handlers as plain functions).
--
--   httpd.serve(host, port, routes, opts) -> true | nil, err
--     routes[path] = { fn = handler, change = bool }
--        handler(body_table, req) -> code, msg, data   (see kv.codes)
--        change: the request changes something: with opts.token()
--                non-empty it needs "Authorization: Bearer <token>";
--                with no token it is accepted from loopback peers only
--                (req.peer, "ip:port", set by serve; see M.loopback)
--     routes[path] = { raw = function(req) -> status, body, content_type }
--        for non-JSON endpoints such as /metrics
--   opts.token: function returning the current admin token ("" = none)
--   opts.log:   function(text) for handler faults
--   httpd.loopback(peer) -> bool: peer ("ip:port", "[ip]:port" or a bare ip)
--     is 127.0.0.0/8, ::1 or ::ffff:127.x.y.z
local loop = require "kv.loop"
local http = require "kv.http"
local codes = require "kv.codes"
local log = require "kv.log"

local M = {}

local READ_TIMEOUT = 10

function M.loopback(peer)
  if type(peer) ~= "string" then return false end
  local ip = peer:match("^%[(.*)%]:%d+$") or peer:match("^(%d+%.%d+%.%d+%.%d+):%d+$")
    or peer:match("^::ffff:(%d+%.%d+%.%d+%.%d+):%d+$") or peer
  ip = ip:match("^::ffff:(%d+%.%d+%.%d+%.%d+)$") or ip
  if ip == "::1" then return true end
  local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs({ a, b, c, d }) do
    if tonumber(x) > 255 then return false end
  end
  return tonumber(a) == 127
end

-- nil | code, msg: may this request change something?
local function authorized(req, token)
  if token == nil or token == "" then
    if M.loopback(req.peer) then return nil end
    return codes.UNAUTHORIZED, "changes are accepted from loopback only while admin_token is "
      .. "empty; set admin_token and send \"Authorization: Bearer <token>\""
  end
  local h = req.headers["authorization"] or ""
  if h == "Bearer " .. token then return nil end
  return codes.UNAUTHORIZED
end

-- Answer one request; returns status, body, content type.
function M.respond(routes, req, opts)
  local route = routes[req.path]
  if not route then
    local status, body = codes.reply(codes.NO_PATH, "no such path: " .. req.path)
    return status, body
  end
  if route.change then
    local code, msg = authorized(req, opts.token and opts.token())
    if code then
      local status, body = codes.reply(code, msg)
      return status, body
    end
  end
  if route.raw then return route.raw(req) end
  local status, body = codes.handle(route.fn, req, opts.log or function(t) log.error("%s", t) end)
  return status, body
end

local function serve_conn(routes, opts, sock)
  local parser = http.new_parser()
  local deadline = loop.now() + READ_TIMEOUT
  local chunk
  while true do
    local req, err, status = parser:feed(chunk)
    if req then
      req.peer = sock.peer
      local st, body, ctype = M.respond(routes, req, opts)
      sock:send(http.response(st, body, ctype))
      break
    end
    if err then
      sock:send(http.response(status or 400, codes.encode_json({ code = codes.BAD_PARAM, msg = err }) .. "\n"))
      break
    end
    if parser:wants_continue() then sock:send(http.CONTINUE) end
    local left = deadline - loop.now()
    if left <= 0 then break end
    chunk = sock:receive_with(function(buf, pos)
      if pos > #buf then return nil end
      return buf:sub(pos), #buf + 1
    end, left)
    if not chunk then break end
  end
  sock:close(true)
end

function M.serve(host, port, routes, opts)
  opts = opts or {}
  return loop.listen(host, port, function(sock) serve_conn(routes, opts, sock) end)
end

return M
