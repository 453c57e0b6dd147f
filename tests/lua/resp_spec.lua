-- kv.resp: the Lua encoder and, for decoding, hiredis's reader (kv.hireader,
-- C: build/lua/kv/hireader.so, found through .busted's cpath).
local resp = require "kv.resp"

local null = resp.null

-- a sample stream: every kind of reply, nested arrays, binary bulk
local SAMPLE = {
  { "+OK\r\n", resp.status("OK") },
  { "$2\r\nOK\r\n", "OK" },
  { "-ERR unknown command 'x'\r\n", resp.error("ERR unknown command 'x'") },
  { ":0\r\n", 0 },
  { ":-42\r\n", -42 },
  { ":9007199254740992\r\n", 2 ^ 53 },
  { "$0\r\n\r\n", "" },
  { "$-1\r\n", null },
  { "*-1\r\n", null },
  { "*0\r\n", { n = 0 } },
  { "$6\r\na\r\nb\0c\r\n", "a\r\nb\0c" },
  { "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n:5\r\n", { n = 3, "SET", "k", 5 } },
  { "*2\r\n*2\r\n+a\r\n$-1\r\n*0\r\n", { n = 2, { n = 2, resp.status("a"), null }, { n = 0 } } },
  { "*3\r\n$-1\r\n-E\r\n*1\r\n*1\r\n:1\r\n", { n = 3, null, resp.error("E"), { n = 1, { n = 1, 1 } } } },
}

local function stream()
  local parts, values = {}, {}
  for i, s in ipairs(SAMPLE) do
    parts[i] = s[1]
    values[i] = s[2]
  end
  return table.concat(parts), values
end

-- decodes all values of buf with M.decode, as a caller keeping the buffer does
local function decode_all(buf)
  local out, pos = {}, 1
  while true do
    local v, nxt = resp.decode(buf, pos)
    if v == nil then return out, nxt end
    out[#out + 1] = v
    pos = nxt
  end
end

describe("kv.resp", function()
  describe("encode", function()
    it("writes commands as multibulk, binary safe", function()
      assert.equals("*3\r\n$3\r\nSET\r\n$3\r\nk\0y\r\n$2\r\n12\r\n", resp.encode("SET", "k\0y", 12))
      assert.equals("*0\r\n", resp.encode())
      assert.equals("*2\r\n$4\r\nINCR\r\n$4\r\n-1.5\r\n", resp.encode_array({ "INCR", -1.5 }))
      assert.equals("*1\r\n$1\r\na\r\n", resp.encode_array({ n = 1, "a", "ignored" }))
      assert.equals("*1\r\n$5\r\n65535\r\n", resp.encode(65535))
    end)

    it("raises on values that are not strings or numbers", function()
      assert.has_error(function() resp.encode("GET", nil) end)
      assert.has_error(function() resp.encode("GET", {}) end)
      assert.has_error(function() resp.encode(true) end)
      assert.has_error(function() resp.encode(0 / 0) end)
      assert.has_error(function() resp.encode_array("x") end)
    end)
  end)

  describe("encode_reply", function()
    it("writes each kind", function()
      for _, s in ipairs(SAMPLE) do
        if s[1] ~= "*-1\r\n" then assert.equals(s[1], resp.encode_reply(s[2])) end
      end
      assert.equals("*2\r\n$1\r\na\r\n:1\r\n", resp.encode_reply({ "a", 1 }))
      assert.equals("*0\r\n", resp.encode_reply({}))
    end)

    it("raises on what RESP cannot carry", function()
      assert.has_error(function() resp.encode_reply(1.5) end)
      assert.has_error(function() resp.encode_reply(true) end)
      assert.has_error(function() resp.encode_reply(nil) end)
      assert.has_error(function() resp.encode_reply(resp.status("a\r\nb")) end)
      assert.has_error(function() resp.encode_reply(resp.error("a\nb")) end)
      assert.has_error(function() resp.encode_reply({ n = 2, "a" }) end)
      assert.has_error(function() null.x = 1 end)
    end)
  end)

  describe("decode", function()
    it("decodes each kind with its convention", function()
      for _, s in ipairs(SAMPLE) do
        local v, nxt = resp.decode(s[1])
        assert.same(s[2], v)
        assert.equals(#s[1] + 1, nxt)
      end
      assert.equals(null, (resp.decode("$-1\r\n")))
      assert.equals(null, (resp.decode("*-1\r\n")))
    end)

    it("tells status from bulk and errors from strings", function()
      local st, bulk, err = resp.decode("+OK\r\n"), resp.decode("$2\r\nOK\r\n"), resp.decode("-OK\r\n")
      assert.equals("status", resp.kind(st))
      assert.equals("bulk", resp.kind(bulk))
      assert.equals("error", resp.kind(err))
      assert.equals("OK", st.status)
      assert.equals("OK", err.err)
      assert.equals("integer", resp.kind((resp.decode(":1\r\n"))))
      assert.equals("null", resp.kind((resp.decode("$-1\r\n"))))
      assert.equals("array", resp.kind((resp.decode("*0\r\n"))))
      assert.is_nil(resp.kind(true))
    end)

    it("round-trips", function()
      for _, s in ipairs(SAMPLE) do
        local text = resp.encode_reply(s[2])
        assert.same(s[2], (resp.decode(text)))
      end
      local cmd = resp.decode(resp.encode("MIGRATE", "127.0.0.1", 6375, "", 0, 1000, "KEYS", "a\r\n"))
      assert.same({ n = 8, "MIGRATE", "127.0.0.1", "6375", "", "0", "1000", "KEYS", "a\r\n" }, cmd)
    end)

    it("decodes a stream from a position", function()
      local buf, values = stream()
      local out, last = decode_all(buf)
      assert.same(values, out)
      assert.is_nil(last)
    end)

    it("gives the same values for every split point (caller keeps the buffer)", function()
      local buf, values = stream()
      for i = 0, #buf do
        local out, pos = {}, 1
        local have = buf:sub(1, i)
        local function drain()
          while true do
            local v, nxt = resp.decode(have, pos)
            if v == nil then
              assert.is_nil(nxt, "no error at split " .. i)
              return
            end
            out[#out + 1] = v
            pos = nxt
          end
        end
        drain()
        have = buf
        drain()
        assert.same(values, out, "split at " .. i)
      end
    end)

    it("reports incomplete input as nil without an error", function()
      for _, s in ipairs({ "", "+", "+OK", "+OK\r", ":1", "$3\r\nab", "$3\r\nabc", "$3\r\nabc\r",
          "*2\r\n", "*2\r\n:1\r\n", "*2\r\n*1\r\n:1\r\n", "$-1" }) do
        local v, err = resp.decode(s)
        assert.is_nil(v, s)
        assert.is_nil(err, s)
      end
    end)

    -- hiredis's reader with the checks kv.hireader adds (c/lua/lhireader.c)
    local garbage = {
      { "?x\r\n", 'got "?" as reply type byte' },
      { "\0", 'got "\\x00" as reply type byte' },
      { "GET / HTTP/1.1\r\n", 'got "G" as reply type byte' },
      { "+OK\n", "line not ended by CRLF" },
      { "\n", 'got "\\n" as reply type byte' },
      { "+\n", "line not ended by CRLF" },
      { ":\r\n", "Bad integer value" },
      { ":1.5\r\n", "Bad integer value" },
      { ":abc\r\n", "Bad integer value" },
      { ":99999999999999999999\r\n", "Bad integer value" },
      { "$-2\r\n", "Bulk string length out of range" },
      { "$x\r\n", "Bad bulk string length" },
      { "$\r\n", "Bad bulk string length" },
      { "$99999999999999\r\n", "bulk of 99999999999999 bytes is too long" },
      { "$3\r\nabcd\r\n", "bulk data not followed by CRLF" },
      { "$3\r\nabc\n\n", "bulk data not followed by CRLF" },
      { "*-5\r\n", "Multi-bulk length out of range" },
      { "*1\r\n?\r\n", 'got "?" as reply type byte' },
      { "*2\r\n:1\r\n$3\r\nabc\rX", "bulk data not followed by CRLF" },
      { "$600000000\r\n", "bulk of 600000000 bytes is too long" },
      { "*99999999\r\n", "array of 99999999 elements is too long" },
      { ("*1\r\n"):rep(9) .. ":1\r\n", "No support for nested multi bulk replies with depth > 7" },
      { "+" .. ("x"):rep(70000), "line too long" },
      { "*1\r\n$" .. ("9"):rep(70000), "line too long" },
    }
    for _, c in ipairs(garbage) do
      it("rejects garbage: " .. c[2], function()
        local v, err = resp.decode(c[1])
        assert.is_nil(v)
        assert.matches("protocol error: " .. c[2], err, 1, true)
      end)
    end

    it("nests 8 arrays (hiredis's limit)", function()
      local v = assert(resp.decode(("*1\r\n"):rep(8) .. ":1\r\n"))
      for _ = 1, 8 do v = v[1] end
      assert.equals(1, v)
      assert.has_error(function() resp.encode_reply({ { { { { { { { { 1 } } } } } } } } }) end)
      assert.equals(("*1\r\n"):rep(8) .. ":1\r\n", resp.encode_reply({ { { { { { { { 1 } } } } } } } }))
    end)

    it("reads integers up to 2^63 - 1 (as numbers: beyond 2^53 precision is lost)", function()
      assert.equals(2 ^ 63, (resp.decode(":9223372036854775807\r\n")))
      assert.equals(-2 ^ 63, (resp.decode(":-9223372036854775808\r\n")))
    end)
  end)

  describe("reader", function()
    it("gives the same values for every split point and byte by byte", function()
      local buf, values = stream()
      for i = 0, #buf do
        local r = resp.new_reader()
        local out = {}
        for _, piece in ipairs({ buf:sub(1, i), buf:sub(i + 1) }) do
          r:feed(piece)
          while true do
            local v, err = r:next()
            assert.is_nil(err)
            if v == nil then break end
            out[#out + 1] = v
          end
        end
        assert.same(values, out, "split at " .. i)
        assert.equals(0, r:buffered())
      end
      local r, out = resp.new_reader(), {}
      for i = 1, #buf do
        r:feed(buf:sub(i, i))
        local v = r:next()
        while v ~= nil do
          out[#out + 1] = v
          v = r:next()
        end
      end
      assert.same(values, out)
    end)

    it("keeps an error", function()
      local r = resp.new_reader()
      r:feed(":1\r\n!")
      assert.equals(1, r:next())
      local v, err = r:next()
      assert.is_nil(v)
      assert.matches('protocol error: got "!" as reply type byte', err, 1, true)
      r:feed(":2\r\n")
      assert.equals(err, select(2, r:next()))
      assert.has_error(function() r:feed(5) end)
    end)

    it("reads a long array in small chunks in linear time", function()
      local n = 20000
      local items = {}
      for i = 1, n do items[i] = "key:" .. i end
      local text = resp.encode_reply(items)
      local r = resp.new_reader()
      local v
      local t0 = os.clock()
      for i = 1, #text, 7 do
        r:feed(text:sub(i, i + 6))
        v = r:next() or v
      end
      assert.equals(n, v.n)
      assert.equals("key:" .. n, v[n])
      assert.is_true(os.clock() - t0 < 2, "took " .. (os.clock() - t0) .. " s")
    end)

    it("waits for a big bulk without re-parsing it", function()
      local big = ("x"):rep(1000000)
      local text = resp.encode_reply(big)
      local r = resp.new_reader()
      local t0 = os.clock()
      local got
      for i = 1, #text, 100 do
        r:feed(text:sub(i, i + 99))
        local v = r:next()
        if v then got = v end
      end
      assert.equals(big, got)
      assert.is_true(os.clock() - t0 < 2, "took " .. (os.clock() - t0) .. " s")
      assert.equals(0, r:buffered())
    end)
  end)
end)
