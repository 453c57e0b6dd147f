local names = require "kv.names"

describe("kv.names", function()
  describe("valid_namespace", function()
    it("accepts names of 1..64 allowed characters", function()
      for _, n in ipairs({ "test", "a", "A-z_0.9", ("x"):rep(64), "...", ".a", "-" }) do
        assert.is_true(names.valid_namespace(n), n)
      end
    end)

    it("rejects each kind of bad name with a reason", function()
      local cases = {
        { nil, "must be a string" },
        { 5, "must be a string" },
        { "", "empty" },
        { ("x"):rep(65), "longer than 64" },
        { "a/b", "may only contain" },
        { "../etc", "may only contain" },
        { "a b", "may only contain" },
        { "a\0b", "may only contain" },
        { "é", "may only contain" },
        { ".", "not allowed" },
        { "..", "not allowed" },
      }
      for _, c in ipairs(cases) do
        local ok, err = names.valid_namespace(c[1])
        assert.is_nil(ok)
        assert.matches(c[2], err, 1, true)
      end
    end)
  end)

  describe("valid_addr", function()
    it("returns host and port of strict IPv4 addresses", function()
      local h, p = names.valid_addr("127.0.0.1:6371")
      assert.equals("127.0.0.1", h)
      assert.equals(6371, p)
      assert.equals(65535, select(2, names.valid_addr("255.255.255.255:65535")))
      assert.equals(1, select(2, names.valid_addr("0.0.0.0:1")))
      assert.equals("10.0.0.1", names.valid_addr("10.0.0.1:80"))
    end)

    it("rejects everything else", function()
      local bad = {
        { nil, "must be a string" },
        { 6379, "must be a string" },
        { "", "not of the form" },
        { "127.0.0.1", "not of the form" },
        { "127.0.0.1:6379:1", "not of the form" },
        { "localhost:6379", "host must be" },
        { "127.0.0:6379", "host must be" },
        { "127.0.0.1.1:6379", "host must be" },
        { "256.0.0.1:6379", "host must be" },
        { "01.0.0.1:6379", "host must be" },
        { "1.2.3.-4:6379", "host must be" },
        { " 127.0.0.1:6379", "host must be" },
        { "127.0.0.1:0", "port must be" },
        { "127.0.0.1:65536", "port must be" },
        { "127.0.0.1:06379", "port must be" },
        { "127.0.0.1:", "port must be" },
        { "127.0.0.1:+80", "port must be" },
        { "127.0.0.1:80 ", "port must be" },
        { "127.0.0.1:1e3", "port must be" },
      }
      for _, c in ipairs(bad) do
        local ok, err = names.valid_addr(c[1])
        assert.is_nil(ok, tostring(c[1]))
        assert.matches(c[2], err, 1, true)
      end
    end)
  end)

  describe("valid_endpoint", function()
    it("also accepts localhost", function()
      assert.equals("localhost", names.valid_endpoint("localhost:7400"))
      assert.equals("0.0.0.0", names.valid_endpoint("0.0.0.0:7400"))
      assert.is_nil(names.valid_endpoint("example.com:80"))
      assert.is_nil(names.valid_endpoint("localhost:0"))
    end)
  end)

  describe("endpoint_list", function()
    it("splits a comma-separated list, spaces after commas allowed", function()
      assert.same({ "127.0.0.1:7100" }, names.endpoint_list("127.0.0.1:7100", 16))
      assert.same({ "127.0.0.1:7100", "localhost:7101", "10.0.0.3:7100" },
        names.endpoint_list("127.0.0.1:7100, localhost:7101 ,10.0.0.3:7100", 16))
    end)

    it("rejects a bad element, an empty one, a duplicate, too many", function()
      local many = {}
      for i = 1, 17 do many[i] = "127.0.0.1:" .. (7100 + i) end
      local bad = {
        { 7100, "must be a string" },
        { "", "empty element" },
        { "127.0.0.1:7100,", "empty element" },
        { "127.0.0.1:7100,,127.0.0.1:7101", "empty element" },
        { "127.0.0.1:7100,host:7101", "host must be" },
        { "127.0.0.1:7100,127.0.0.1:0", "port must be" },
        { "127.0.0.1:7100;127.0.0.1:7101", "not of the form" },
        { "127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7100", "\"127.0.0.1:7100\" is listed twice" },
        { table.concat(many, ","), "has 17 addresses, at most 16" },
      }
      for _, c in ipairs(bad) do
        local ok, err = names.endpoint_list(c[1], 16)
        assert.is_nil(ok, tostring(c[1]))
        assert.matches(c[2], err, 1, true)
      end
      assert.equals(16, #names.endpoint_list(table.concat(many, ",", 1, 16), 16))
    end)
  end)
end)
