-- kv.httpc: client side of HTTP/1.1 (kv.http is the server side): encodes a
-- request and reads responses off a kept-alive connection as a pull parser,
-- so one reader serves both whole bodies and endless streamed ones (etcd's
-- watch) without holding a streamed body in memory.
--
--   httpc.request(method, host, path, headers, body) -> request text
--       headers: { ["Name"] = "value" } (sent in name order); adds Host,
--       Content-Length, and Content-Type: application/json when body is set.
--   httpc.new_reader(opts) -> reader  opts: max_header (16384),
--       max_body (64 MB: bytes of one response's body, chunked or not)
--   reader:feed(bytes)
--   reader:next() -> event, value:
--       "head", resp     resp = { status = 200, reason = "OK", headers = {lowercased} }
--       "data", bytes    a piece of the body (de-chunked), in order
--       "done"           the response is complete; the next one may follow
--       nil              more bytes are needed
--       nil, err         bad bytes; errors stick
-- A response without Content-Length and not chunked (a body ending at close)
-- is refused: the peers this reads (etcd) always frame their bodies.
local M = {}

local MAX_LINE = 1024     -- a chunk-size line or a trailer line

function M.request(method, host, path, headers, body)
  local names = {}
  for k in pairs(headers or {}) do names[#names + 1] = k end
  table.sort(names)
  local out = { method, " ", path, " HTTP/1.1\r\nHost: ", host, "\r\n" }
  for _, k in ipairs(names) do
    local v = tostring(headers[k])
    if k:find("[\r\n:]") or v:find("[\r\n]") then
      error("kv.httpc.request: bad header " .. k, 2)
    end
    out[#out + 1] = k .. ": " .. v .. "\r\n"
  end
  if body then
    if not (headers and headers["Content-Type"]) then
      out[#out + 1] = "Content-Type: application/json\r\n"
    end
    out[#out + 1] = "Content-Length: " .. #body .. "\r\n"
  end
  out[#out + 1] = "\r\n"
  out[#out + 1] = body or ""
  return table.concat(out)
end

local Reader = {}
Reader.__index = Reader

function M.new_reader(opts)
  opts = opts or {}
  return setmetatable({
    max_header = opts.max_header or 16384,
    max_body = opts.max_body or 64 * 1024 * 1024,
    buf = "", pos = 1,
    state = "head",   -- head | length | size | chunk | chunk_end | trailer
    left = 0,         -- bytes left of the body (length) or of the chunk
    got = 0,          -- body bytes of this response so far
    err = nil,
  }, Reader)
end

function Reader:feed(bytes)
  if not bytes or bytes == "" then return end
  if self.pos > #self.buf then
    self.buf, self.pos = bytes, 1
  else
    self.buf, self.pos = self.buf:sub(self.pos) .. bytes, 1
  end
end

local function fail(r, err)
  r.err = err
  r.buf, r.pos = "", 1
  return nil, err
end

local function parse_head(head)
  local status_line, rest = head:match("^([^\r\n]*)\r?\n?(.*)$")
  local version, status, reason = status_line:match("^(HTTP/%d%.%d) (%d%d%d) ?(.*)$")
  if not version then return nil, "malformed status line" end
  local headers = {}
  for line in rest:gmatch("[^\r\n]+") do
    local name, value = line:match("^([^:%s]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, "malformed header line" end
    name = name:lower()
    headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
  end
  return { status = tonumber(status), reason = reason, version = version, headers = headers }
end

-- one line (without its end) from the buffer, or nil while incomplete
local function take_line(r)
  local s, e = r.buf:find("\r?\n", r.pos)
  if not s then
    if #r.buf - r.pos + 1 > MAX_LINE then return nil, "line over " .. MAX_LINE .. " bytes" end
    return nil
  end
  local line = r.buf:sub(r.pos, s - 1)
  r.pos = e + 1
  return line
end

local function read_head(r)
  local s, e = r.buf:find("\r?\n\r?\n", r.pos)
  if not s then
    if #r.buf - r.pos + 1 > r.max_header + 4 then
      return fail(r, "response head over " .. r.max_header .. " bytes")
    end
    return nil
  end
  local resp, err = parse_head(r.buf:sub(r.pos, s - 1))
  if not resp then return fail(r, err) end
  r.pos = e + 1
  r.got = 0
  local h = resp.headers
  local te, cl = h["transfer-encoding"], h["content-length"]
  if resp.status == 204 or resp.status == 304 or (resp.status >= 100 and resp.status < 200) then
    r.state, r.left = "length", 0
    if resp.status < 200 then r.state = "head" return r:next() end  -- 1xx: skip
  elseif te then
    if te:lower() ~= "chunked" then return fail(r, "unsupported Transfer-Encoding " .. te) end
    r.state = "size"
  elseif cl then
    if not cl:find("^%d+$") or #cl > 15 then return fail(r, "bad Content-Length") end
    local n = tonumber(cl)
    if n > r.max_body then return fail(r, "body of " .. n .. " bytes is over " .. r.max_body) end
    r.state, r.left = "length", n
  else
    return fail(r, "response has neither Content-Length nor chunked encoding")
  end
  return "head", resp
end

-- up to r.left bytes of body from the buffer
local function body_piece(r)
  local have = #r.buf - r.pos + 1
  if have <= 0 then return nil end
  local n = have < r.left and have or r.left
  local piece = r.buf:sub(r.pos, r.pos + n - 1)
  r.pos = r.pos + n
  r.left = r.left - n
  return "data", piece
end

function Reader:next()
  if self.err then return nil, self.err end
  local st = self.state
  if st == "head" then
    return read_head(self)
  elseif st == "length" then
    if self.left == 0 then self.state = "head" return "done" end
    return body_piece(self)
  elseif st == "size" then
    local line, err = take_line(self)
    if not line then
      if err then return fail(self, err) end
      return nil
    end
    local hex = line:match("^(%x+)[ \t]*;?.*$") or line:match("^(%x+)$")
    if not hex or #hex > 12 then return fail(self, "bad chunk size line") end
    local n = tonumber(hex, 16)
    if self.got + n > self.max_body then
      return fail(self, "body over " .. self.max_body .. " bytes")
    end
    self.got = self.got + n
    if n == 0 then self.state = "trailer" else self.state, self.left = "chunk", n end
    return self:next()
  elseif st == "chunk" then
    if self.left == 0 then self.state = "chunk_end" return self:next() end
    return body_piece(self)
  elseif st == "chunk_end" then
    local line, err = take_line(self)
    if not line then
      if err then return fail(self, err) end
      return nil
    end
    if line ~= "" then return fail(self, "chunk not followed by CRLF") end
    self.state = "size"
    return self:next()
  else -- trailer: header lines up to an empty one
    local line, err = take_line(self)
    if not line then
      if err then return fail(self, err) end
      return nil
    end
    if line == "" then self.state = "head" return "done" end
    return self:next()
  end
end

-- Bytes held that belong to no event yet.
function Reader:buffered() return #self.buf - self.pos + 1 end

return M
