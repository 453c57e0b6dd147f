-- kv.names: validation of the names and addresses that reach files and tables.
--
--   valid_namespace(name) -> true | nil, err
--       1..64 bytes of A-Z a-z 0-9 _ . -, not "." or ".." (it becomes a file
--       name under the table directory, so nothing else may pass).
--   valid_addr(s)         -> host, port | nil, err
--       A Redis server address in a bucket table: strict IPv4 "a.b.c.d:port",
--       octets 0..255 without leading zeros, port 1..65535 without leading
--       zeros. Canonical form matters: tables compare addresses as strings, so
--       "127.0.0.1:06371" must not sneak in beside "127.0.0.1:6371".
--   valid_endpoint(s)     -> host, port | nil, err
--       A listen/connect address in a config file: like valid_addr, but the
--       host may also be "localhost".
--   endpoint_list(s, max) -> { "host:port", ... } | nil, err
--       A comma-separated list of such addresses (config_servers, the
--       migration tool's --cs): spaces after a comma are allowed, no empty
--       element, no address twice, at most max of them.

local M = {}

local MAX_NAMESPACE = 64

local function show(s)
  return string.format("%q", s)
end

function M.valid_namespace(name)
  if type(name) ~= "string" then
    return nil, "namespace must be a string, got " .. type(name)
  end
  if #name == 0 then
    return nil, "namespace is empty"
  end
  if #name > MAX_NAMESPACE then
    return nil, "namespace " .. show(name:sub(1, 16) .. "...") .. " is longer than "
      .. MAX_NAMESPACE .. " characters"
  end
  if not name:find("^[A-Za-z0-9_.%-]+$") then
    return nil, "namespace " .. show(name)
      .. " may only contain the characters A-Z a-z 0-9 _ . -"
  end
  if name == "." or name == ".." then
    return nil, "namespace " .. show(name) .. " is not allowed"
  end
  return true
end

-- Decimal number without sign or leading zero ("0" itself is fine).
local function canonical_uint(s)
  if not s:find("^%d+$") then return nil end
  if #s > 1 and s:sub(1, 1) == "0" then return nil end
  if #s > 5 then return nil end -- longer than any octet or port
  return tonumber(s)
end

local function parse_ipv4(host)
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  for _, o in ipairs({ a, b, c, d }) do
    local n = canonical_uint(o)
    if not n or n > 255 then return nil end
  end
  return true
end

local function split(s, what, allow_localhost)
  if type(s) ~= "string" then
    return nil, what .. " must be a string \"ip:port\", got " .. type(s)
  end
  local host, port_s = s:match("^([^:]*):([^:]*)$")
  if not host then
    return nil, what .. " " .. show(s) .. " is not of the form ip:port"
  end
  if not (parse_ipv4(host) or (allow_localhost and host == "localhost")) then
    local hosts = allow_localhost and "an IPv4 address a.b.c.d or localhost"
      or "an IPv4 address a.b.c.d (octets 0..255, no leading zeros)"
    return nil, what .. " " .. show(s) .. ": host must be " .. hosts
  end
  local port = canonical_uint(port_s)
  if not port or port < 1 or port > 65535 then
    return nil, what .. " " .. show(s)
      .. ": port must be a number from 1 to 65535 without leading zeros"
  end
  return host, port
end

function M.valid_addr(s)
  return split(s, "server address", false)
end

function M.valid_endpoint(s)
  return split(s, "address", true)
end

function M.endpoint_list(s, max)
  if type(s) ~= "string" then
    return nil, "an address list must be a string \"ip:port,ip:port\", got " .. type(s)
  end
  local list, seen = {}, {}
  for item in (s .. ","):gmatch("([^,]*),") do
    local a = item:match("^%s*(.-)%s*$")
    if a == "" then return nil, "address list " .. show(s) .. " has an empty element" end
    local ok, err = M.valid_endpoint(a)
    if not ok then return nil, err end
    if seen[a] then return nil, "address " .. show(a) .. " is listed twice" end
    seen[a] = true
    list[#list + 1] = a
  end
  if max and #list > max then
    return nil, ("address list has %d addresses, at most %d are allowed"):format(#list, max)
  end
  return list
end

return M
