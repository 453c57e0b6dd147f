-- kv.etcd's pure parts (issue 14): base64, prefix ranges, txn encoding,
-- reply decoding, the HTTP client reader and watch-stream splitting.

-- kv.core (C, only inside the runtime) is a stub so kv.loop loads under busted
package.loaded["kv.core"] = package.loaded["kv.core"] or setmetatable(
  { now = os.clock, DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3 },
  { __index = function() return function() end end })
local etcd = require "kv.etcd"
local base64 = require "kv.base64"
local httpc = require "kv.httpc"
local cjson = require "cjson"

describe("base64", function()
  it("matches RFC 4648's test vectors both ways", function()
    local v = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, enc in pairs(v) do
      assert.equal(enc, base64.encode(plain))
      assert.equal(plain, base64.decode(enc))
    end
  end)
  it("round-trips every byte value and every length", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    local s = table.concat(all) .. table.concat(all):reverse()
    for len = 0, 70 do
      local piece = s:sub(200 - len, 199)
      assert.equal(piece, base64.decode(base64.encode(piece)))
    end
    assert.equal(s, base64.decode(base64.encode(s)))
    assert.equal("//79", base64.encode("\255\254\253"))
    assert.equal("AAA=", base64.encode("\0\0"))
  end)
  it("refuses what is not base64", function()
    for _, bad in ipairs({ "Zg=", "Zg", "Z===", "Zm9v!A==", "Zh==", "Zm9=", "=Zm9",
                           "Zg==Zg==", "Zm 9v" }) do
      local out, err = base64.decode(bad)
      assert.is_nil(out, bad)
      assert.is_string(err)
    end
    assert.is_nil((base64.decode(nil)))
  end)
end)

describe("etcd.prefix_end", function()
  it("increments the last byte below 0xff", function()
    assert.equal("/kvq", etcd.prefix_end("/kvp"))
    assert.equal("/kv0", etcd.prefix_end("/kv/"))
    assert.equal("b", etcd.prefix_end("a\255\255"))
    assert.equal("a\1", etcd.prefix_end("a\0"))
  end)
  it("is every key when nothing can be incremented", function()
    assert.equal("\0", etcd.prefix_end(""))
    assert.equal("\0", etcd.prefix_end("\255\255"))
  end)
end)

describe("etcd txn encoding", function()
  it("writes compares with int64 as strings and bytes as base64", function()
    local body = cjson.decode(etcd.encode_txn{
      compare = {
        { key = "/kvp/_leader", target = "CREATE", result = "EQUAL", value = 12 },
        { key = "/kvp/t", target = "MOD", value = 2 ^ 52 },
        { key = "/kvp/v", target = "VALUE", result = "NOT_EQUAL", value = "x\0y" },
        { key = "/kvp/l", target = "LEASE", value = "7587869341470212345" },
        { key = "/kvp/n", target = "VERSION", result = "GREATER", value = 0 },
      },
      success = { { put = { "/kvp/t", "tbl", "7587869341470212345" } } },
    })
    local c = body.compare
    assert.same({ key = base64.encode("/kvp/_leader"), target = "CREATE", result = "EQUAL",
                  create_revision = "12" }, c[1])
    assert.equal("4503599627370496", c[2].mod_revision)
    assert.equal("EQUAL", c[2].result)
    assert.equal(base64.encode("x\0y"), c[3].value)
    assert.equal("7587869341470212345", c[4].lease)
    assert.equal("0", c[5].version)
    assert.same({ request_put = { key = base64.encode("/kvp/t"), value = base64.encode("tbl"),
                                  lease = "7587869341470212345" } }, body.success[1])
    assert.is_nil(body.failure)      -- empty lists are left out, not {}
  end)
  it("writes delete and range ops, prefixed or not", function()
    local body = cjson.decode(etcd.encode_txn{
      success = { { delete = { "/a/", prefix = true } }, { delete = { key = "/a/x" } } },
      failure = { { range = { "/a/", prefix = true } }, { range = { "/a/y" } } },
    })
    assert.same({ request_delete_range = { key = base64.encode("/a/"), range_end = base64.encode("/a0") } },
      body.success[1])
    assert.same({ request_delete_range = { key = base64.encode("/a/x") } }, body.success[2])
    assert.same({ request_range = { key = base64.encode("/a/"), range_end = base64.encode("/a0") } },
      body.failure[1])
    assert.same({ request_range = { key = base64.encode("/a/y") } }, body.failure[2])
  end)
  it("refuses bad compares and ops", function()
    assert.has_error(function() etcd.encode_txn{ compare = { { key = "k", target = "NOPE", value = 1 } } } end)
    assert.has_error(function() etcd.encode_txn{ compare = { { key = "k", target = "MOD", result = "ABOUT", value = 1 } } } end)
    assert.has_error(function() etcd.encode_txn{ compare = { { key = "k", target = "MOD", value = 1.5 } } } end)
    assert.has_error(function() etcd.encode_txn{ success = { { put = { "k" } } } } end)
    assert.has_error(function() etcd.encode_txn{ success = { { frobnicate = {} } } } end)
  end)
end)

describe("etcd reply decoding", function()
  local function kvj(k, v, mod)
    return { key = base64.encode(k), value = v and base64.encode(v), create_revision = "3",
             mod_revision = tostring(mod), version = "2", lease = "7587869341470212345" }
  end
  it("decodes txn responses: ranges give kvs, int64 strings become numbers", function()
    local ok, rs = etcd.decode_txn(cjson.decode(cjson.encode{
      succeeded = true,
      responses = {
        { response_range = { kvs = { kvj("/a", "\0\255", 9007199254740000) }, count = "1" } },
        { response_put = { header = {} } },
        { response_delete_range = { deleted = "3" } },
        { response_range = {} },
      } }))
    assert.is_true(ok)
    assert.equal("range", rs[1].type)
    assert.same({ key = "/a", value = "\0\255", create_revision = 3, mod_revision = 9007199254740000,
                  version = 2, lease = "7587869341470212345" }, rs[1].kvs[1])
    assert.same({ type = "put" }, rs[2])
    assert.same({ type = "delete", deleted = 3 }, rs[3])
    assert.same({ type = "range", kvs = {}, count = 0 }, rs[4])
  end)
  it("takes a missing succeeded as false (proto3 leaves false out)", function()
    local ok, rs = etcd.decode_txn({})
    assert.is_false(ok)
    assert.same({}, rs)
  end)
  it("decodes events; PUT is the omitted default type", function()
    local evs = etcd.decode_events({ { kv = kvj("/a", "1", 5) }, { type = "DELETE", kv = kvj("/a", nil, 6) } })
    assert.equal("PUT", evs[1].type)
    assert.equal("1", evs[1].kv.value)
    assert.equal("DELETE", evs[2].type)
    assert.equal("", evs[2].kv.value)
    assert.equal(6, evs[2].kv.mod_revision)
  end)
  it("errors (never crashes) on a wrong shape", function()
    assert.has_error(function() etcd.decode_events({ { type = "BOOM", kv = kvj("/a", "1", 1) } }) end)
    assert.has_error(function() etcd.decode_events({ { kv = { key = "!!!!" } } }) end)
    assert.has_error(function() etcd.decode_events("nope") end)
    assert.has_error(function() etcd.decode_txn({ responses = { { response_range = { kvs = { { mod_revision = "x" } } } } } }) end)
    assert.has_error(function() etcd.decode_txn({ responses = 3 }) end)
  end)
end)

-- feeds text cut at every pair of split points (three pieces) and byte by
-- byte; every way must give the same events
local function all_cuts(text, run)
  local want = run({ text })
  local n = #text
  for i = 1, n - 1 do
    for j = i, n - 1, (n > 300 and 17 or 1) do
      assert.same(want, run({ text:sub(1, i), text:sub(i + 1, j), text:sub(j + 1) }))
    end
  end
  local bytes = {}
  for i = 1, n do bytes[i] = text:sub(i, i) end
  assert.same(want, run(bytes))
  return want
end

-- the events of a reader fed pieces, data pieces joined between other events
local function read_all(pieces, opts)
  local r = httpc.new_reader(opts)
  local out, data = {}, nil
  for _, p in ipairs(pieces) do
    r:feed(p)
    while true do
      local ev, v = r:next()
      if ev == "data" then
        data = (data or "") .. v
      elseif ev == nil and v == nil then
        break
      else
        if data then out[#out + 1] = { "data", data } data = nil end
        if ev == "head" then out[#out + 1] = { "head", v.status, v.headers }
        elseif ev == "done" then out[#out + 1] = { "done" }
        else out[#out + 1] = { "error" } return out end
      end
    end
  end
  if data then out[#out + 1] = { "data", data } end
  return out
end

describe("httpc", function()
  it("encodes a request with Host, Content-Type and Content-Length", function()
    local req = httpc.request("POST", "127.0.0.1:2379", "/v3/kv/range", { Authorization = "tok" }, "{}")
    assert.equal("POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nAuthorization: tok\r\n"
      .. "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", req)
    assert.has_error(function() httpc.request("POST", "h", "/", { X = "a\r\nB: c" }, "") end)
  end)
  it("reads Content-Length and chunked responses (with trailers) back to back", function()
    local text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello"
      .. "HTTP/1.1 400 Bad Request\r\nTrailer: Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "3\r\nabc\r\n10;ext=1\r\n0123456789abcdef\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n"
      .. "HTTP/1.1 204 No Content\r\n\r\n"
    local out = all_cuts(text, read_all)
    assert.equal(8, #out)
    assert.same({ "head", 200, { ["content-type"] = "application/json", ["content-length"] = "5" } }, out[1])
    assert.same({ "data", "hello" }, out[2])
    assert.same({ "done" }, out[3])
    assert.equal(400, out[4][2])
    assert.same({ "data", "abc0123456789abcdef" }, out[5])
    assert.same({ "done" }, out[6])
    assert.same({ "head", 204, {} }, { out[7][1], out[7][2], {} })
    assert.same({ "done" }, out[8])
  end)
  it("refuses bad framing and bodies over the bound", function()
    local function last(text, opts) local o = read_all({ text }, opts) return o[#o][1] end
    assert.equal("error", last("HTTX/1.1 200 OK\r\n\r\n"))
    assert.equal("error", last("HTTP/1.1 200 OK\r\n\r\n"))     -- no framing
    assert.equal("error", last("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"))
    assert.equal("error", last("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"))
    assert.equal("error", last("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
    assert.equal("error", last("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n"))
    assert.equal("error", last("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", { max_body = 10 }))
    assert.equal("error", last("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n",
      { max_body = 10 }))
    assert.equal("error", last("HTTP/1.1 200 OK\r\n" .. ("X: y\r\n"):rep(100), { max_header = 100 }))
    assert.equal("error", last("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" .. ("1"):rep(2000)))
  end)
end)

describe("watch stream splitting", function()
  -- what etcd's gateway sends for a watch: chunks, one JSON message + "\n"
  -- per chunk, here also several per chunk and one across two chunks
  local msgs = {
    { result = { header = { revision = "3" }, created = true } },
    { result = { header = { revision = "5" }, events = { { kv = { key = "L2E=", mod_revision = "5" } } } } },
    { result = { header = { revision = "6" }, events = { { type = "DELETE", kv = { key = "L2E=", mod_revision = "6" } } } } },
    { result = { header = { revision = "9007199254740000" }, canceled = true, compact_revision = "4" } },
  }
  local lines = {}
  for i, m in ipairs(msgs) do lines[i] = cjson.encode(m) .. "\n" end
  local stream_text = lines[1] .. lines[2] .. lines[3] .. lines[4]
  local function chunk(s) return string.format("%x\r\n%s\r\n", #s, s) end
  local http_text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. chunk(lines[1]) .. chunk(lines[2] .. lines[3]:sub(1, 20)) .. chunk(lines[3]:sub(21) .. lines[4])
    .. "0\r\n\r\n"

  local function split(pieces)
    local r = httpc.new_reader({ max_body = math.huge })
    local s = etcd.new_stream()
    local out = {}
    for _, p in ipairs(pieces) do
      r:feed(p)
      while true do
        local ev, v = r:next()
        if ev == "data" then
          for _, m in ipairs(assert(s.feed(v))) do out[#out + 1] = m end
        elseif ev == "done" then out[#out + 1] = "done"
        elseif ev == nil then assert.is_nil(v) break end
      end
    end
    return out
  end

  it("gives every message once, in order, whatever the byte boundaries", function()
    local out = all_cuts(http_text, split)
    assert.equal(5, #out)
    for i = 1, 4 do assert.same(msgs[i], out[i]) end
    assert.equal("done", out[5])
    -- int64 strings stay exact strings until the caller converts them
    assert.equal("9007199254740000", out[4].result.header.revision)
  end)
  it("splits a de-chunked stream cut anywhere", function()
    all_cuts(stream_text, function(pieces)
      local s, out = etcd.new_stream(), {}
      for _, p in ipairs(pieces) do
        for _, m in ipairs(assert(s.feed(p))) do out[#out + 1] = m end
      end
      assert.same(msgs, out)
      return out
    end)
  end)
  it("errors on a line that is not JSON or is over the bound", function()
    local s = etcd.new_stream(100)
    local out, err = s.feed("{\"result\":1}\nnot json\n")
    assert.is_nil(out)
    assert.matches("bad JSON", err)
    s = etcd.new_stream(100)
    assert.same({}, s.feed(("x"):rep(60)))
    out, err = s.feed(("x"):rep(60))
    assert.is_nil(out)
    assert.matches("over 100 bytes", err)
  end)
end)
