local codes = require "kv.codes"
local cjson = require "cjson"
local btable = require "kv.btable"

describe("kv.codes", function()
  it("defines each code once, with a name, a status and a message", function()
    local seen = {}
    for i, e in ipairs(codes.list) do
      assert.equals(1000 + i, e.code)
      assert.is_nil(seen[e.name])
      seen[e.name] = true
      assert.equals(e.code, codes[e.name])
      assert.equals(e, codes.by_code[e.code])
      assert.is_string(e.msg)
      if e.code == 1001 then assert.equals(200, e.status)
      else assert.is_true(e.status >= 400 and e.status < 600) end
    end
    assert.equals(1001, codes.OK)
    assert.equals(1019, codes.INTERNAL)
    assert.equals(401, codes.by_code[codes.UNAUTHORIZED].status)
    assert.equals(403, codes.by_code[codes.NOT_MASTER].status)
  end)

  describe("reply", function()
    it("merges data into {code, msg} with the default message", function()
      local status, text = codes.reply(codes.OK, nil, { namespace_list = { "a", "b" } })
      assert.equals(200, status)
      assert.equals('{"code":1001,"msg":"OK","namespace_list":["a","b"]}\n', text)
      status, text = codes.reply(codes.NO_NAMESPACE, "no such namespace 'x'")
      assert.equals(404, status)
      assert.same({ code = 1004, msg = "no such namespace 'x'" }, cjson.decode(text))
    end)

    it("writes empty arrays marked as arrays, and nested objects sorted", function()
      local _, text = codes.reply(codes.OK, nil, {
        list = setmetatable({}, btable.array_mt), obj = {}, z = { b = 1, a = { 1.5, true, cjson.null } },
      })
      assert.equals('{"code":1001,"list":[],"msg":"OK","obj":{},"z":{"a":[1.5,true,null],"b":1}}\n', text)
    end)

    it("carries a bucket table", function()
      local t = assert(btable.init("test", 256, { "127.0.0.1:6371" }))
      local _, text = codes.reply(codes.OK, nil, btable.to_json(t))
      local obj = cjson.decode(text)
      assert.equals(1001, obj.code)
      assert.matches('"patterns":[]', text, 1, true)
      t.lineage = nil -- not in the HTTP form (kv.btable)
      assert.same(t, assert(btable.from_json(obj)))
    end)

    it("escapes strings", function()
      local _, text = codes.reply(codes.BAD_PARAM, 'a"b\\c\n\1/')
      assert.equals('{"code":1003,"msg":"a\\"b\\\\c\\n\\u0001/"}\n', text)
      assert.equals('a"b\\c\n\1/', cjson.decode(text).msg)
    end)

    it("raises on misuse", function()
      assert.has_error(function() codes.reply(999) end)
      assert.has_error(function() codes.reply(nil) end)
      assert.has_error(function() codes.reply(codes.OK, 5) end)
      assert.has_error(function() codes.reply(codes.OK, nil, "x") end)
      assert.has_error(function() codes.reply(codes.OK, nil, { code = 1 }) end)
      assert.has_error(function() codes.reply(codes.OK, nil, { f = print }) end)
      assert.has_error(function() codes.reply(codes.OK, nil, { n = 0 / 0 }) end)
      local cyc = {}
      cyc.self = cyc
      assert.has_error(function() codes.reply(codes.OK, nil, { c = cyc }) end)
    end)
  end)

  describe("encode_json", function()
    it("writes numbers, arrays and objects", function()
      assert.equals("[1,-2,0.5,1e+300]", codes.encode_json({ 1, -2, 0.5, 1e300 }))
      assert.equals("{}", codes.encode_json({}))
      assert.equals('{"1":"a","x":"b"}', codes.encode_json({ ["1"] = "a", x = "b" }))
      assert.equals("9007199254740991", codes.encode_json(2 ^ 53 - 1))
    end)
  end)

  describe("handle", function()
    local function req(body)
      return { method = "POST", path = "/p", query = "", headers = {}, body = body }
    end

    it("passes the decoded body and returns the handler's reply", function()
      local got
      local status, text = codes.handle(function(body, r)
        got = { body = body, path = r.path }
        return codes.OK, nil, { n = body.n + 1 }
      end, req('{"n": 41}'))
      assert.equals(200, status)
      assert.same({ body = { n = 41 }, path = "/p" }, got)
      assert.same({ code = 1001, msg = "OK", n = 42 }, cjson.decode(text))
    end)

    it("gives {} for an empty body", function()
      for _, b in ipairs({ "", "  \r\n", nil }) do
        local seen
        codes.handle(function(body) seen = body return codes.OK end, req(b))
        assert.same({}, seen)
      end
    end)

    it("answers 1002 to a body that is not a JSON object", function()
      for _, b in ipairs({ "{", "nul", '"x"', "5", "[1,2]", "null" }) do
        local called = false
        local status, text = codes.handle(function() called = true return codes.OK end, req(b))
        assert.is_false(called)
        assert.equals(400, status)
        assert.equals(1002, cjson.decode(text).code)
      end
    end)

    it("answers 1019 and logs the traceback when the handler fails", function()
      local logged
      local status, text = codes.handle(function() error("boom") end, req("{}"),
        function(msg) logged = msg end)
      assert.equals(500, status)
      assert.same({ code = 1019, msg = "internal error" }, cjson.decode(text))
      assert.matches("boom", logged, 1, true)
      assert.matches("stack traceback", logged, 1, true)
      assert.matches("/p", logged, 1, true)
      -- no logger: still a reply
      status = codes.handle(function() error({}) end, req("{}"))
      assert.equals(500, status)
      -- a logger that fails does not escape either
      status = codes.handle(function() error("x") end, req("{}"), function() error("log") end)
      assert.equals(500, status)
    end)

    it("answers 1019 to a bad handler result", function()
      local bad = {
        function() end,
        function() return 42 end,
        function() return codes.OK, 5 end,
        function() return codes.OK, nil, "data" end,
        function() return codes.OK, nil, { code = 1 } end,
        function() return codes.OK, nil, { f = print } end,
      }
      for _, h in ipairs(bad) do
        local logged
        local status, text = codes.handle(h, req(""), function(m) logged = m end)
        assert.equals(500, status)
        assert.equals(1019, cjson.decode(text).code)
        assert.is_string(logged)
      end
    end)

    it("passes error codes through", function()
      local status, text = codes.handle(function() return codes.NOT_MASTER, "this is a slave" end, req(""))
      assert.equals(403, status)
      assert.same({ code = 1008, msg = "this is a slave" }, cjson.decode(text))
    end)
  end)
end)
