-- Fuzz target "btable": the table-file validator (kv.btable.decode, which
-- kvcs runs on every table file it loads and every table a master sends).
-- Checked: decode never raises; it gives a table or nil and a message; a
-- table it accepts encodes to text that decodes to a table encoding to the
-- same text (what kvcs writes, it reads back unchanged).
package.path = KV_ROOT .. "/tests/?.lua;" .. package.path
local lib = require "fuzz.lib"
local btable = require "kv.btable"

return function(data)
  -- with an expected namespace too: old files (no "namespace") take it
  local nok, nt, nerr = pcall(btable.decode, data, "fuzzns")
  lib.check(nok, "decode(text, ns) raised: %s", tostring(nt))
  lib.check(type(nt) == "table" or (nt == nil and type(nerr) == "string"), "decode(text, ns) gave %s",
    type(nt))
  local ok, t, err = pcall(btable.decode, data)
  lib.check(ok, "decode raised: %s", tostring(t))
  lib.check(type(t) == "table" or (t == nil and type(err) == "string"), "decode gave %s, %s", type(t),
    type(err))
  if not t then return end
  local eok, text = pcall(btable.encode, t)
  lib.check(eok and type(text) == "string", "encode of an accepted table failed: %s", tostring(text))
  local t2, err2 = btable.decode(text)
  lib.check(t2 ~= nil, "its encoding does not decode: %s\n%s", tostring(err2), text)
  lib.check(btable.encode(t2) == text, "encode(decode(encode(t))) differs")
end
