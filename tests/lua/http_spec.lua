local http = require "kv.http"

-- feeds text cut at every split point (two pieces), and byte by byte;
-- every way must give the same results as one feed
local function parse_all_ways(text, opts)
  local function run(pieces)
    local p = http.new_parser(opts)
    local out = {}
    for _, s in ipairs(pieces) do
      local req, err, status = p:feed(s)
      while req do
        out[#out + 1] = req
        req, err, status = p:feed()
      end
      if err then
        out[#out + 1] = { err = err, status = status }
        return out
      end
    end
    return out
  end
  local whole = run({ text })
  for i = 1, #text - 1 do
    assert.same(whole, run({ text:sub(1, i), text:sub(i + 1) }), "split at " .. i)
  end
  local bytes = {}
  for i = 1, #text do bytes[i] = text:sub(i, i) end
  assert.same(whole, run(bytes), "byte by byte")
  return whole
end

describe("kv.http parser", function()
  it("parses a GET with a query", function()
    local r = parse_all_ways("GET /kvstore/proxy/stats_info?x=1&y=2 HTTP/1.1\r\nHost: a\r\nX-Thing:  v  \r\n\r\n")
    assert.equals(1, #r)
    assert.same({
      method = "GET", path = "/kvstore/proxy/stats_info", query = "x=1&y=2", version = "HTTP/1.1",
      headers = { host = "a", ["x-thing"] = "v" }, body = "",
    }, r[1])
  end)

  it("parses a POST with a body at every split point", function()
    local body = '{"namespace":"test","bucket_count":1023,"address_list":["127.0.0.1:6371"]}'
    local r = parse_all_ways("POST /kvstore/cs/init_table HTTP/1.1\r\nContent-Type: application/json\r\n"
      .. "Content-Length: " .. #body .. "\r\n\r\n" .. body)
    assert.equals(1, #r)
    assert.equals("POST", r[1].method)
    assert.equals("", r[1].query)
    assert.equals(body, r[1].body)
    assert.equals(tostring(#body), r[1].headers["content-length"])
  end)

  it("keeps the bytes of the next request", function()
    local one = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    local two = "GET /b HTTP/1.0\r\n\r\n"
    local r = parse_all_ways(one .. two .. "GET /c")
    assert.equals(2, #r)
    assert.equals("abc", r[1].body)
    assert.equals("/b", r[2].path)
    assert.equals("HTTP/1.0", r[2].version)
    local p = http.new_parser()
    assert.truthy(p:feed(one .. two .. "GET /c"))
    assert.truthy(p:feed())
    assert.is_nil(p:feed())
    assert.equals(6, p:buffered())
  end)

  it("accepts bare LF line ends and joins repeated headers", function()
    local r = parse_all_ways("GET / HTTP/1.1\nA: 1\nA: 2\nContent-Length: 0\nContent-Length: 0\n\n")
    assert.equals("1, 2", r[1].headers.a)
    assert.equals("/", r[1].path)
  end)

  local bad = {
    { "\r\n\r\n", 400, "empty request line" },
    { "GET /\r\n\r\n", 400, "malformed request line" },
    { "GET  / HTTP/1.1\r\n\r\n", 400, "malformed request line" },
    { "G(T / HTTP/1.1\r\n\r\n", 400, "malformed method" },
    { "GET / HTTX/1.1\r\n\r\n", 400, "malformed HTTP version" },
    { "GET / HTTP/2.0\r\n\r\n", 505, "HTTP version HTTP/2.0 is not supported" },
    { "GET http://x/ HTTP/1.1\r\n\r\n", 400, "request target must start with /" },
    { "GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, "malformed header line 1" },
    { "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, "malformed header line 1" },
    { "GET / HTTP/1.1\r\nA: 1\r\n  folded\r\n\r\n", 400, "folded header lines" },
    { "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "bad Content-Length" },
    { "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400, "bad Content-Length" },
    { "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "conflicting Content-Length" },
    { "POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413, "over the limit of 100" },
    { "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "Transfer-Encoding is not supported" },
    { "GET /" .. ("x"):rep(300) .. " HTTP/1.1\r\n\r\n", 431, "request head over 256 bytes" },
    { "GET / HTTP/1.1\r\n" .. ("X: y\r\n"):rep(60) .. "\r\n", 431, "request head over 256 bytes" },
  }
  for _, c in ipairs(bad) do
    it("rejects with " .. c[2] .. ": " .. c[3], function()
      local r = parse_all_ways(c[1], { max_header = 256, max_body = 100 })
      local last = r[#r]
      assert.equals(c[2], last.status)
      assert.matches(c[3], last.err, 1, true)
    end)
  end

  it("keeps an error once it happened", function()
    local p = http.new_parser()
    local req, err, status = p:feed("BAD\r\n\r\n")
    assert.is_nil(req)
    assert.equals(400, status)
    local req2, err2, status2 = p:feed("GET / HTTP/1.1\r\n\r\n")
    assert.is_nil(req2)
    assert.equals(err, err2)
    assert.equals(400, status2)
  end)

  it("accepts a head of exactly max_header bytes at any split", function()
    local head = "GET /" .. ("a"):rep(256 - 14) .. " HTTP/1.1"
    assert.equals(256, #head)
    local r = parse_all_ways(head .. "\r\n\r\n", { max_header = 256 })
    assert.equals(1, #r)
    assert.is_nil(r[1].err)
    r = parse_all_ways("GET /" .. ("a"):rep(256 - 13) .. " HTTP/1.1\r\n\r\n", { max_header = 256 })
    assert.equals(431, r[1].status)
  end)

  it("accepts a body of exactly max_body bytes", function()
    local r = parse_all_ways("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", { max_body = 10 })
    assert.equals("0123456789", r[1].body)
  end)

  it("asks for 100 Continue once, when the body is missing", function()
    local p = http.new_parser()
    assert.is_false(p:wants_continue())
    assert.is_nil(p:feed("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"))
    assert.is_true(p:wants_continue())
    assert.is_false(p:wants_continue())
    assert.equals("ok", p:feed("ok").body)
    assert.equals("HTTP/1.1 100 Continue\r\n\r\n", http.CONTINUE)
    -- body already there: no 100 Continue
    p = http.new_parser()
    assert.is_nil(p:feed("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\no"))
    assert.is_true(p:wants_continue())
    p = http.new_parser()
    assert.truthy(p:feed("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"))
    assert.is_false(p:wants_continue())
  end)
end)

describe("kv.http.response", function()
  it("writes status, headers and body", function()
    assert.equals("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
      .. "Connection: close\r\nCache-Control: no-cache\r\n\r\n{}", http.response(200, "{}"))
    assert.equals("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; version=0.0.4\r\n"
      .. "Content-Length: 0\r\nConnection: close\r\nCache-Control: no-cache\r\n\r\n",
      http.response(404, nil, "text/plain; version=0.0.4"))
    assert.matches("^HTTP/1.1 431 Request Header Fields Too Large\r\n", http.response(431, ""))
    assert.matches("^HTTP/1.1 599 Unknown\r\n", http.response(599, ""))
    assert.matches("Content-Length: 4\r\n", http.response(200, "\0\1\2\3"), 1, true)
  end)

  it("raises on a bad status or body (misuse)", function()
    assert.has_error(function() http.response(99, "") end)
    assert.has_error(function() http.response("200", "") end)
    assert.has_error(function() http.response(200, {}) end)
  end)
end)
