-- kv.handshake: the challenge-response that opens every control-port
-- connection (kvcs's proxy, migration and cs-sync ports; README "Control
-- protocol"). Both ends use this module, so the wire is written once:
--
--   server -> client   *3  push challenge <nonce>    as soon as it accepts
--                          (nonce: 32 hex chars, 128 bits from getrandom)
--   client -> server   AUTH <mac>                    the first command
--                          mac = hex HMAC-SHA1(cluster_secret, "kv-control/1 " .. nonce)
--   server -> client   +OK                           then the port's commands
--                    | -NOAUTH <why>                 and the server closes
--
-- The secret never crosses the wire, and a mac answers one nonce only (a
-- recorded exchange cannot be replayed on another connection). With no
-- secret configured (""), the server accepts loopback peers only (and the
-- mac is taken over the empty key, so both ends still run the same code).
--
-- Plain functions; the two drivers take the connection as two functions,
-- so they run on kv.loop sockets, on kv.redis raw clients and on fakes:
--   io = { send = function(bytes) end, read = function() -> value | nil, err end }
--
--   M.nonce() -> 32 hex chars              M.mac(secret, nonce) -> 40 hex chars
--   M.equal(a, b) -> bool (time independent of where they differ)
--   M.is_loopback(peer) -> bool            peer "a.b.c.d:port"
--   M.peer_allowed(secret, peer) -> true | nil, why
--   M.server(io, secret, peer) -> true | nil, why     (the error is sent)
--   M.client(io, secret) -> true | nil, why
--   M.refusal_log(logf, now, interval) -> function(port, peer, why): logs
--       at most one line per interval (counting the ones it held back), so
--       a remote peer cannot flood the log
local crypto = require "kv.crypto"
local resp = require "kv.resp"

local M = {}

M.VERSION = "kv-control/1"

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

function M.nonce()
  return hex(crypto.random_bytes(16))
end

function M.mac(secret, nonce)
  return hex(crypto.hmac_sha1(secret or "", M.VERSION .. " " .. nonce))
end

function M.equal(a, b)
  if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = bit.bor(diff, bit.bxor(a:byte(i), b:byte(i))) end
  return diff == 0
end

function M.is_loopback(peer)
  local a = type(peer) == "string" and peer:match("^(%d+)%.%d+%.%d+%.%d+:%d+$")
  return a == "127"
end

function M.peer_allowed(secret, peer)
  if secret and secret ~= "" then return true end
  if M.is_loopback(peer) then return true end
  return nil, "not a loopback peer and no cluster_secret is configured"
end

-- The server's half. -> true once the peer proved the secret | nil, why
-- (the peer got -NOAUTH; the caller logs and closes).
function M.server(io, secret, peer)
  local ok, why = M.peer_allowed(secret, peer)
  if not ok then
    io.send(resp.encode_reply(resp.error("NOAUTH control port: " .. why)))
    return nil, why
  end
  local nonce = M.nonce()
  io.send(resp.encode("push", "challenge", nonce))
  local cmd, err = io.read()
  if cmd == nil then return nil, "no AUTH: " .. tostring(err) end
  local name = type(cmd) == "table" and type(cmd[1]) == "string" and cmd[1]:upper()
  if name ~= "AUTH" or (cmd.n or #cmd) ~= 2 then
    why = ("first command %s, not AUTH"):format(name and ("'" .. name:sub(1, 32) .. "'") or "(not a command)")
  elseif not M.equal(cmd[2], M.mac(secret, nonce)) then
    why = "wrong cluster_secret"
  end
  if why then
    io.send(resp.encode_reply(resp.error("NOAUTH control port: " .. why)))
    return nil, why
  end
  io.send(resp.encode_reply(resp.status("OK")))
  return true
end

-- The client's half. -> true | nil, why
function M.client(io, secret)
  local v, err = io.read()
  if v == nil then return nil, "no challenge from the server: " .. tostring(err) end
  if type(v) == "table" and v.err then return nil, "refused: " .. v.err end
  if type(v) ~= "table" or v[1] ~= "push" or v[2] ~= "challenge" or type(v[3]) ~= "string" then
    return nil, "the server sent no challenge (not a control port, or an older server)"
  end
  io.send(resp.encode("AUTH", M.mac(secret, v[3])))
  v, err = io.read()
  if v == nil then return nil, "no answer to AUTH: " .. tostring(err) end
  if type(v) == "table" and v.status == "OK" then return true end
  return nil, "refused: " .. tostring(type(v) == "table" and v.err or v)
end

function M.refusal_log(logf, now, interval)
  local last, held = nil, 0
  return function(port, peer, why)
    local t = now()
    if last and t - last < interval then
      held = held + 1
      return false
    end
    last = t
    logf("%s: refused control peer %s: %s%s", port, tostring(peer), tostring(why),
      held > 0 and (" (and %d refusal(s) not logged in the last %g s)"):format(held, interval) or "")
    held = 0
    return true
  end
end

return M
