-- kv.http: minimal HTTP/1.1 server-side codec for the admin APIs.
--
--   new_parser(opts) -> parser   opts: max_header (16384), max_body (1048576)
--   parser:feed(chunk) -> req | nil | nil, err, status
--       Appends chunk (may be nil or "") and returns the next complete request,
--       nil when more bytes are needed, or nil, err, status once the bytes
--       are bad. Errors stick: every later feed returns the same error.
--       Bytes after a returned request stay buffered for the next one: call
--       feed() (with no chunk) to get a request that is already buffered.
--       status: 400 bad syntax, 413 body over max_body, 431 head over
--       max_header, 501 Transfer-Encoding (chunked bodies are not supported:
--       clients send Content-Length), 505 HTTP version other than 1.0/1.1.
--   parser:wants_continue() -> true once, when the buffered request has
--       "Expect: 100-continue" and its body has not fully arrived; the server
--       then writes M.CONTINUE (curl waits a second for it on big bodies).
--   parser:buffered() -> number of bytes held
--
--   req = { method = "POST", path = "/kvstore/cs/init_table" (no ?query),
--           query = "a=1" or "", headers = { ["content-type"] = "..." },
--           body = "...", version = "HTTP/1.1" }
--   Header names are lowercased; repeated headers are joined with ", ".
--   Lines may end with CRLF or a bare LF.
--
--   response(status, body, content_type) -> full response text with
--       Content-Type (default application/json), Content-Length,
--       Connection: close, Cache-Control: no-cache.

local M = {}

M.CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n"

M.reasons = {
  [100] = "Continue",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [304] = "Not Modified",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
  [411] = "Length Required", [413] = "Payload Too Large", [414] = "URI Too Long",
  [415] = "Unsupported Media Type", [421] = "Misdirected Request", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
  [505] = "HTTP Version Not Supported",
}

local TOKEN = "^[!#$%%&'*+.^_`|~%w%-]+$"

local Parser = {}
Parser.__index = Parser

function M.new_parser(opts)
  opts = opts or {}
  return setmetatable({
    max_header = opts.max_header or 16384,
    max_body = opts.max_body or 1048576,
    buf = "",       -- unparsed bytes (head being read, or leftovers)
    req = nil,      -- request whose head is parsed, waiting for its body
    need = 0,       -- body length of req
    parts = nil,    -- body pieces received so far
    have = 0,       -- total bytes in parts
    continue = nil, -- "pending" | "sent"
    err = nil, status = nil,
  }, Parser)
end

local function fail(p, err, status)
  p.err, p.status = err, status
  p.buf, p.parts, p.req = "", nil, nil
  return nil, err, status
end

-- Parses the head (request line + header lines, terminator excluded).
local function parse_head(p, head)
  local lines = {}
  for line in (head .. "\n"):gmatch("(.-)\r?\n") do lines[#lines + 1] = line end
  local method, target, version = lines[1]:match("^(%S+) (%S+) (%S+)$")
  if not method then return nil, "malformed request line", 400 end
  if not method:find(TOKEN) then return nil, "malformed method", 400 end
  if not version:find("^HTTP/%d%.%d$") then return nil, "malformed HTTP version", 400 end
  if version ~= "HTTP/1.1" and version ~= "HTTP/1.0" then
    return nil, "HTTP version " .. version .. " is not supported", 505
  end
  if target:sub(1, 1) ~= "/" then return nil, "request target must start with /", 400 end
  local path, query = target:match("^([^?]*)%??(.*)$")

  local headers = {}
  for i = 2, #lines do
    local line = lines[i]
    if line:find("^[ \t]") then return nil, "folded header lines are not supported", 400 end
    local name, value = line:match("^([^:]+):[ \t]*(.-)[ \t]*$")
    if not name or not name:find(TOKEN) then
      return nil, "malformed header line " .. (i - 1), 400
    end
    if value:find("[%z\r\n]") then return nil, "bad character in header " .. name, 400 end
    name = name:lower()
    if headers[name] then
      if name == "content-length" and headers[name] ~= value then
        return nil, "conflicting Content-Length headers", 400
      end
      if name ~= "content-length" then headers[name] = headers[name] .. ", " .. value end
    else
      headers[name] = value
    end
  end

  if headers["transfer-encoding"] then
    return nil, "Transfer-Encoding is not supported; send a Content-Length body", 501
  end
  local len = 0
  local cl = headers["content-length"]
  if cl then
    if not cl:find("^%d+$") or #cl > 15 then return nil, "bad Content-Length", 400 end
    len = tonumber(cl)
    if len > p.max_body then
      return nil, "body of " .. len .. " bytes is over the limit of " .. p.max_body, 413
    end
  end
  return {
    method = method, path = path, query = query, version = version,
    headers = headers, body = "",
  }, len
end

function Parser:feed(chunk)
  if self.err then return nil, self.err, self.status end
  if chunk and chunk ~= "" then
    if self.req then
      self.parts[#self.parts + 1] = chunk
      self.have = self.have + #chunk
    else
      self.buf = self.buf .. chunk
    end
  end

  if not self.req then
    local buf = self.buf
    local s, e = buf:find("\r?\n\r?\n")
    -- a head may not start with the blank line itself
    if not s or s - 1 > self.max_header then
      -- + 4: room for the terminator of a head of exactly max_header bytes
      if #buf > self.max_header + 4 then
        return fail(self, "request head over " .. self.max_header .. " bytes", 431)
      end
      return nil
    end
    if s == 1 then return fail(self, "empty request line", 400) end
    local req, len, status = parse_head(self, buf:sub(1, s - 1))
    if not req then return fail(self, len, status) end
    self.req, self.need = req, len
    self.parts = { buf:sub(e + 1) }
    self.have = #self.parts[1]
    self.buf = ""
    local expect = req.headers["expect"]
    self.continue = (expect and expect:lower() == "100-continue" and len > 0) and "pending" or nil
  end

  if self.have < self.need then return nil end
  local data = table.concat(self.parts)
  local req = self.req
  req.body = data:sub(1, self.need)
  self.buf = data:sub(self.need + 1)
  self.req, self.parts, self.need, self.continue = nil, nil, 0, nil
  return req
end

function Parser:wants_continue()
  if self.continue == "pending" then
    self.continue = "sent"
    return self.have < self.need
  end
  return false
end

function Parser:buffered()
  return #self.buf + (self.req and self.have or 0)
end

function M.response(status, body, content_type)
  if type(status) ~= "number" or status < 100 or status > 599 then
    error("kv.http.response: bad status " .. tostring(status), 2)
  end
  body = body or ""
  if type(body) ~= "string" then error("kv.http.response: body must be a string", 2) end
  return table.concat({
    "HTTP/1.1 ", string.format("%d", status), " ", M.reasons[status] or "Unknown", "\r\n",
    "Content-Type: ", content_type or "application/json", "\r\n",
    "Content-Length: ", #body, "\r\n",
    "Connection: close\r\n",
    "Cache-Control: no-cache\r\n",
    "\r\n",
    body,
  })
end

return M
