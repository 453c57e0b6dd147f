-- Fuzz target "http": kv.http's request parser (the admin APIs of kvp and
-- kvcs). The input (after its chunk-size byte) is fed whole and in chunks;
-- checked: feed never raises, the same requests and the same error either
-- way, an error has one of the documented statuses and sticks, a request
-- has the documented fields and a body within max_body.
package.path = KV_ROOT .. "/tests/?.lua;" .. package.path
local lib = require "fuzz.lib"
local http = require "kv.http"

local STATUSES = { [400] = true, [413] = true, [431] = true, [501] = true, [505] = true }
local OPTS = { max_header = 2048, max_body = 4096 }

local function check_req(r)
  lib.check(type(r) == "table", "request is a %s", type(r))
  for _, f in ipairs({ "method", "path", "query", "body", "version" }) do
    lib.check(type(r[f]) == "string", "request.%s is a %s", f, type(r[f]))
  end
  lib.check(type(r.headers) == "table", "request.headers is a %s", type(r.headers))
  for k, v in pairs(r.headers) do
    lib.check(type(k) == "string" and k == k:lower() and type(v) == "string", "header %s", lib.show(k))
  end
  lib.check(#r.body <= OPTS.max_body, "body of %d bytes", #r.body)
  lib.check(not r.path:find("?", 1, true), "path %q keeps its query", r.path)
end

local function run(pieces)
  local p = http.new_parser(OPTS)
  local reqs = {}
  for piece in pieces do
    local chunk = piece
    while true do
      local r, err, status = p:feed(chunk)
      chunk = nil
      if r == nil then
        if err ~= nil then
          lib.check(type(err) == "string" and STATUSES[status], "error %s with status %s",
            tostring(err), tostring(status))
          local r2, err2, status2 = p:feed("x")
          lib.check(r2 == nil and err2 == err and status2 == status, "the error does not stick")
          return reqs, err, status
        end
        break
      end
      check_req(r)
      p:wants_continue()
      reqs[#reqs + 1] = r
    end
  end
  return reqs, nil, nil, p:buffered()
end

return function(data)
  local payload, pieces = lib.chunks(data)
  local done = false
  local whole, werr, wst = run(function() if done then return nil end done = true return payload end)
  local cut, cerr, cst = run(pieces)
  -- a head over max_header may be found in one feed and not in small ones
  -- only when the error is 431; otherwise the cut must not matter
  if werr == nil and cerr == nil or (werr and cerr and wst == cst) then
    lib.check(#whole == #cut, "%d requests whole, %d in chunks", #whole, #cut)
    for i = 1, #whole do
      lib.check(lib.eq(whole[i], cut[i]), "request %d: %s whole, %s in chunks", i,
        lib.show(whole[i]), lib.show(cut[i]))
    end
  else
    lib.check(wst == 431 or cst == 431 or wst == 413 or cst == 413,
      "whole: %s (%s), in chunks: %s (%s)", tostring(werr), tostring(wst), tostring(cerr), tostring(cst))
  end
end
