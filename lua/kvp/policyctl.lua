-- kvp.policyctl: the operator's gestures on the routing policy (issue 13).
--
-- The policy belongs to the namespace: the config server stores it with the
-- table and pushes it to every proxy. The gesture stays "edit
-- lua/policy.lua": `kvp --reload`, SIGHUP and POST /kvstore/proxy/reload_policy
-- read the proxy's file, check it here (kv.policy: a bad file is refused
-- with its line before anything is sent), and ask the config server to
-- publish it (POLICY <ns> <source> [FORCE] on the proxy link); the new
-- version reaches this proxy like any table.
--
--   px = { cfg, state (kvp.cslink's), policy_path, request(...) -> reply | nil, err }
--   reload(px, force)  -> version | nil, code, msg   (from a task)
--   current(px)        -> { namespace, version, source, routing, file,
--                           file_differs, file_error }
--   differs(px, pol)   -> nil | why: the local file is not the namespace's
--                         policy pol ({version, source} or nil)
--   ask_reload(cfg, force) -> exit status: `kvp --reload`, a POST to the
--                         running proxy's reload_policy (its admin API), the
--                         reply printed
local codes = require "kv.codes"
local policy = require "kv.policy"

local M = {}

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("*a")
  f:close()
  return text
end

function M.reload(px, force)
  local text, rerr = read(px.policy_path)
  if not text then
    return nil, codes.BAD_PARAM, ("cannot read %s: %s"):format(px.policy_path, tostring(rerr))
  end
  local ok, err = policy.compile(text, px.policy_path)
  if not ok then return nil, codes.BAD_PARAM, err end
  local r, qerr
  if force then
    r, qerr = px.request("POLICY", px.cfg.namespace, text, "FORCE")
  else
    r, qerr = px.request("POLICY", px.cfg.namespace, text)
  end
  if r == nil then return nil, codes.CS_UNREACHABLE, "config server unreachable: " .. tostring(qerr) end
  if type(r) == "table" and r.err then
    local code, msg = r.err:match("^ERR (%d+) (.*)$")
    code = tonumber(code)
    if code and codes.by_code[code] then return nil, code, msg end
    return nil, codes.INTERNAL, r.err
  end
  if type(r) ~= "number" then return nil, codes.INTERNAL, "unexpected reply " .. tostring(r) end
  return r
end

function M.differs(px, pol)
  local text, err = read(px.policy_path)
  if not text then return ("cannot read %s: %s"):format(px.policy_path, tostring(err)) end
  if not pol then
    -- no policy published: the namespace routes as the default policy does
    local p = policy.compile(text, px.policy_path)
    if p and policy.routing(p) == policy.routing(assert(policy.compile("return {}"))) then return nil end
    return "the namespace has no published policy and routes with the default one"
  end
  if text ~= pol.source then return ("it is not the namespace's policy v%d"):format(pol.version) end
  return nil
end

function M.current(px)
  local t = px.state.table
  local pol = t and t.policy
  local out = { namespace = px.cfg.namespace, file = px.policy_path }
  if pol then
    out.version, out.source = pol.version, pol.source
  else
    out.version, out.source = 0, read(px.policy_path)
  end
  local p, err = policy.compile(out.source or "", "policy")
  out.routing = p and policy.routing(p) or nil
  out.file_error = not p and err or nil
  local why = M.differs(px, pol)
  out.file_differs = why ~= nil
  out.file_differs_why = why
  return out
end

-- `kvp -t`: the namespace's policy from the config server (GETPOLICY on
-- the proxy link, no registration), compared with the file. -> the line to
-- print (never fails: an unreachable config server is said so).
function M.compare_with_cs(cfg, policy_path)
  local loop = require "kv.loop"
  local resp = require "kv.resp"
  local redis = require "kv.redis"
  local handshake = require "kv.handshake"
  local cjson = require "cjson"
  local line
  loop.run(function()
    -- the master, then the slave; or each of config_servers in turn
    local servers = require("kvp.conf").servers(cfg)
    for _, addr in ipairs(servers) do
      local host, port = loop.split_addr(addr)
      local sock = loop.connect(host, port, 2)
      if sock then
        local reader = resp.new_reader()
        local function read() return redis.read_value(sock, reader, 3) end
        local ok = handshake.client({ send = function(b) sock:send(b) end, read = read }, cfg.cluster_secret)
        if ok then
          sock:send(resp.encode("GETPOLICY", cfg.namespace))
          local v = read()
          sock:close()
          local dok, pol = pcall(cjson.decode, type(v) == "string" and v or "")
          if dok and type(pol) == "table" then
            if pol.source == cjson.null then pol = nil end
            local why = M.differs({ policy_path = policy_path }, pol)
            line = why and ("kvp: WARNING: the policy file differs from what namespace %s routes with "
              .. "(config server %s): %s; kvp --reload publishes it"):format(cfg.namespace, addr, why)
              or ("kvp: the policy file is namespace %s's policy%s"):format(cfg.namespace,
                pol and (" v" .. pol.version) or " (none published: the default routing)")
          else
            line = ("kvp: config server %s: %s"):format(addr, type(v) == "table" and tostring(v.err) or "no answer")
          end
          if v ~= nil then break end -- no answer: the next one may give one
        end
        sock:close()
      end
    end
    line = line or "kvp: no config server reached: the policy file was not compared with the namespace's"
    loop.stop()
  end)
  return line
end

-- `kvp --reload`: the running proxy of this configuration does the work
-- (it holds the config-server link); this process only asks and prints.
function M.ask_reload(cfg, force)
  local loop = require "kv.loop"
  local cjson = require "cjson"
  local status = 1
  loop.run(function()
    local host, port = loop.split_addr(cfg.http_listen)
    if host == "0.0.0.0" or host == "" then host = "127.0.0.1" end
    local sock, err = loop.connect(host, port, 3)
    if not sock then
      io.stderr:write(("kvp: the proxy's admin API %s does not answer: %s\n"):format(cfg.http_listen, err))
      return loop.stop()
    end
    local body = cjson.encode({ force = force and true or false })
    local auth = cfg.admin_token ~= "" and ("Authorization: Bearer " .. cfg.admin_token .. "\r\n") or ""
    sock:send(("POST /kvstore/proxy/reload_policy HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\n"
      .. "Content-Length: %d\r\nConnection: close\r\n\r\n%s"):format(cfg.http_listen, auth, #body, body))
    local reply, parts = "", {}
    while true do
      local chunk = sock:receive(1, 30)
      if not chunk then break end
      parts[#parts + 1] = chunk
    end
    sock:close()
    reply = table.concat(parts)
    local json = reply:match("\r\n\r\n(.*)$") or ""
    local ok, v = pcall(cjson.decode, json)
    if ok and type(v) == "table" and v.code == codes.OK then
      print(("kvp: policy v%s published to namespace %s"):format(tostring(v.version), cfg.namespace))
      status = 0
    elseif ok and type(v) == "table" then
      io.stderr:write(("kvp: policy refused (%s): %s\n"):format(tostring(v.code), tostring(v.msg)))
    else
      io.stderr:write("kvp: unexpected reply from the proxy: " .. reply:sub(1, 200) .. "\n")
    end
    loop.stop()
  end)
  return status
end

return M
