-- kvcs.policy: the config server's side of a namespace's routing policy
-- (issue 13). The policy (lua/policy.lua text, compiled by kv.policy) lives
-- in the namespace's bucket table (kv.btable's policy field), so a change is
-- a new table version committed like any other: persisted atomically, then
-- pushed to the proxies and the slave config servers (cs.publish).
--
--   set(cs, ns, source, force) -> code, msg, data   (kv.codes)
--       Publishes source as ns's policy; data = {namespace, version,
--       table_version}. Refused (nothing changes):
--         NOT_MASTER       on a slave config server;
--         BAD_POLICY       the source does not compile (the error names the
--                          line: "policy.lua:12: ...");
--         TABLE_CHANGE_FAILED  routing (kv.policy.routing: hash, tags,
--                          route rules) changes while buckets migrate, or
--                          on a namespace that holds data (a master answers
--                          DBSIZE > 0, or does not answer) unless force:
--                          every key would move to another bucket.
--       The same source again is a no-op answering the current versions.
--   get(cs, ns) -> code, msg, {namespace, version (0: none), source (null:
--       none published), routing}
--   locate(cs, ns, key, cmd) -> code, msg, {namespace, key, bucket, master,
--       replicas, migrating_to (when the bucket migrates), policy_version,
--       stored_key (the name on the master), rule (the index of the
--       matching rule, when one matches)}
--       The bucket is the proxy's: core.key_bucket (c/core/hash.c
--       kv_hash_bucket, which kvp_table_bucket calls), key-rewrite patterns
--       matched by core.glob_match and renamed by core.sha1_hex, as
--       kvp_table_route does. The first rule whose glob matches the key
--       decides; with a route function, its result is the routing key (a
--       string, hashed like a key) or the bucket (an integer 0..B-1);
--       anything else, an error, or more than ROUTE_LIMIT instructions (a
--       loop) is ROUTE_FAILED.
--   limited(fn, ...) -> pcall(fn, ...) stopped after ROUTE_LIMIT Lua
--       instructions. Policy code (the file's top level at compile, a route
--       function) always runs this way, so it cannot hang the config server.
--
-- I/O is injected: cs.probe(addr, password) -> facts (kvcs.probe.facts by
-- default) for the masters' DBSIZE; cs.core = {key_bucket, glob_match,
-- sha1_hex} (kv.core by default); cs.ha.replicas (kvcs.failover) for the
-- replicas.
local btable = require "kv.btable"
local kpolicy = require "kv.policy"
local codes = require "kv.codes"
local store = require "kvcs.store"
local probe = require "kvcs.probe"

local M = {}

M.ROUTE_LIMIT = 1000000     -- Lua instructions for one run of policy code
M.MAX_SOURCE = 256 * 1024   -- bytes of policy text
M.DEFAULT_SOURCE = "return {}"
M.NAME = "policy.lua"

local function array(t) return setmetatable(t, btable.array_mt) end

-- A count hook stops the code after ROUTE_LIMIT instructions. LuaJIT does
-- not run hooks inside compiled traces, so the JIT is off meanwhile: policy
-- code only ever runs here, so it never has a trace that would skip them.
-- Once over the limit the hook fires on every instruction, so that code
-- catching the error with pcall cannot go on looping; it spares the
-- instructions of limited and pack themselves (after pcall returns).
local limited, pack
local function over()
  local f = debug.getinfo(2, "f").func
  if f == limited or f == pack then return end
  debug.sethook(over, "", 1)
  error("the policy ran more than " .. M.ROUTE_LIMIT .. " instructions (a loop?)", 0)
end

function pack(...)
  return { n = select("#", ...), ... }
end

function limited(fn, ...)
  local was_on = jit.status()
  jit.off()
  debug.sethook(over, "", M.ROUTE_LIMIT)
  local r = pack(pcall(fn, ...))
  debug.sethook()
  if was_on then jit.on() end
  return unpack(r, 1, r.n)
end
M.limited = limited

-- kv.policy.compile under the limit. -> p | nil, err
function M.compile(source)
  local ok, p, err = M.limited(kpolicy.compile, source, M.NAME)
  if not ok then return nil, M.NAME .. ": " .. tostring(p) end
  return p, err
end

-- The compiled policy a table routes with (the default when none was
-- published), cached per namespace and source. -> p | nil, err
local cache = {}
function M.of(t)
  local src = t.policy and t.policy.source or M.DEFAULT_SOURCE
  local c = cache[t.namespace]
  if c and c.source == src then return c.p end
  local p, err = M.compile(src)
  if not p then return nil, err end
  cache[t.namespace] = { source = src, p = p }
  return p
end

local function need(cs, ns)
  if type(ns) ~= "string" then return nil, codes.BAD_PARAM, "namespace (a string) is required" end
  local t = store.get(cs.store, ns)
  if not t then return nil, codes.NO_NAMESPACE, ("no such namespace '%s'"):format(ns) end
  return t
end

-- The first owner that holds keys (or does not answer: it may). -> nil |
-- a sentence naming it
local function holds_data(cs, t)
  local pw = cs.cfg and cs.cfg.redis_password or ""
  for _, a in ipairs(btable.servers(t)) do
    local f, _, msg
    if cs.probe then f, _, msg = cs.probe(a, pw) else f, _, msg = probe.facts(a, pw) end
    if not f then return ("%s does not answer (%s), so it may hold keys"):format(a, tostring(msg)) end
    if (f.dbsize or 0) > 0 then return ("%s holds %d key(s)"):format(a, f.dbsize) end
  end
  return nil
end

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

-- What stops a change of routing on t now. -> nil | code, msg
local function routing_refusal(cs, t, force)
  local n = count(t.migrating)
  if n > 0 then
    return codes.TABLE_CHANGE_FAILED, ("namespace '%s' has %d migrating bucket(s): its routing "
      .. "(hash, hash_tags, route rules) cannot change until the migration ends"):format(t.namespace, n)
  end
  if force then return nil end
  local why = holds_data(cs, t)
  if why then
    return codes.TABLE_CHANGE_FAILED, ("namespace '%s' holds data (%s): this policy changes what "
      .. "decides a key's bucket (hash, hash_tags or a route rule), so every key would move to "
      .. "another bucket and be out of reach of clients; publish with force to do it anyway")
      :format(t.namespace, why)
  end
  return nil
end

local function answer(t)
  return codes.OK, "OK", { namespace = t.namespace, version = t.policy and t.policy.version or 0,
                           table_version = t.version }
end

-- Keys a glob matches, for trying a route function before publishing:
-- '*' as nothing and as "42:a:b", '?' as "x", a class as its first byte.
function M.sample_keys(glob)
  local function build(star)
    local out, i = {}, 1
    while i <= #glob do
      local c = glob:sub(i, i)
      if c == "*" then out[#out + 1] = star
      elseif c == "?" then out[#out + 1] = "x"
      elseif c == "\\" then i = i + 1; out[#out + 1] = glob:sub(i, i)
      elseif c == "[" then
        local close = glob:find("]", i + 2, true) or #glob
        local first = glob:sub(i + 1, i + 1)
        out[#out + 1] = (first == "^" or first == "]") and "\0" or first
        i = close
      else out[#out + 1] = c end
      i = i + 1
    end
    return table.concat(out)
  end
  return { build(""), build("42:a:b") }
end

-- Every route function run on keys of its glob under the budget: one that
-- does not return (a loop) is refused before any proxy runs it (a proxy's
-- JIT-compiled loop cannot be stopped). Errors for these keys are the
-- function's own business. -> nil | err
local function try_routes(p)
  for i, r in ipairs(p.rules) do
    if r.route then
      for _, key in ipairs(M.sample_keys(r.match)) do
        local ok, err = M.limited(r.route, key, "get")
        if not ok and tostring(err):find("instructions (a loop?)", 1, true) then
          return ("%s: rules[%d].route did not return for key '%s': %s"):format(M.NAME, i, key, err)
        end
      end
    end
  end
  return nil
end

function M.set(cs, ns, source, force)
  local c, m, d = require("kvcs.api").need_master(cs)
  if c then return c, m, d end
  local t, code, msg = need(cs, ns)
  if not t then return code, msg end
  if type(source) ~= "string" then return codes.BAD_PARAM, "source (the policy's text) is required" end
  if #source > M.MAX_SOURCE then
    return codes.BAD_POLICY, ("%s: the policy is longer than %d bytes"):format(M.NAME, M.MAX_SOURCE)
  end
  if force ~= nil and type(force) ~= "boolean" then return codes.BAD_PARAM, "force must be true or false" end
  local p, err = M.compile(source)
  if not p then return codes.BAD_POLICY, err end
  if t.policy and t.policy.source == source then return answer(t) end
  local loop_err = try_routes(p)
  if loop_err then return codes.BAD_POLICY, loop_err end
  local new_routing = kpolicy.routing(p)
  local function changes_routing(cur)
    local old = M.of(cur)
    return not old or kpolicy.routing(old) ~= new_routing
  end
  if changes_routing(t) then
    code, msg = routing_refusal(cs, t, force) -- I/O: the table may change meanwhile
    if code then return code, msg end
    t, code, msg = need(cs, ns)
    if not t then return code, msg end
    if t.policy and t.policy.source == source then return answer(t) end
    if changes_routing(t) then
      code, msg = routing_refusal(cs, t, true)
      if code then return code, msg end
    end
  end
  local nt = assert(btable.with_policy(t, source))
  local ok, serr = store.put(cs.store, nt)
  if not ok then return codes.SAVE_FAILED, "could not save the table: " .. tostring(serr) end
  cs.publish(nt)
  -- kv.log needs the runtime, so it is loaded here (specs of kvcs.api run without it)
  require("kv.log").info("policy of %s: v%d published (table v%d%s)", ns, nt.policy.version, nt.version,
    force and ", forced" or "")
  return answer(nt)
end

function M.get(cs, ns)
  local t, code, msg = need(cs, ns)
  if not t then return code, msg end
  local p, err = M.of(t)
  if not p then return codes.INTERNAL, "the stored policy does not compile: " .. tostring(err) end
  local cjson = require "cjson"
  return codes.OK, "OK", {
    namespace = ns, version = t.policy and t.policy.version or 0,
    source = t.policy and t.policy.source or cjson.null, routing = kpolicy.routing(p),
  }
end

local function core_of(cs)
  return cs.core or require "kv.core"
end

-- The name key has on its master (kvp_table_route: a key matching a
-- key-rewrite pattern is stored as its SHA-1 hex), without the prefix.
local function stored_name(core, t, key)
  for _, pat in ipairs(t.patterns) do
    if core.glob_match(pat, key) then return core.sha1_hex(key) end
  end
  return key
end

-- The bucket of key without a route: that of its stored name. -> bucket, name
local function plain_bucket(core, p, t, key)
  local name = stored_name(core, t, key)
  return core.key_bucket(p.hash, p.hash_tags, name, t.bucket_count), name
end

local function describe(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return type(v) == "number" and tostring(v) or ("a " .. type(v))
end

-- -> bucket, stored name, rule index | nil, err
local function bucket_of(core, p, t, key, cmd)
  for i, r in ipairs(p.rules) do
    if core.glob_match(r.match, key) then
      if not r.route then
        local b, name = plain_bucket(core, p, t, key)
        return b, name, i
      end
      local ok, v = M.limited(r.route, key, cmd)
      local where = ("route of rules[%d] (%s)"):format(i, r.match)
      if not ok then return nil, ("%s failed: %s"):format(where, tostring(v)) end
      local name = stored_name(core, t, key)
      if type(v) == "string" then
        return core.key_bucket(p.hash, p.hash_tags, v, t.bucket_count), name, i
      elseif type(v) == "number" and v % 1 == 0 and v >= 0 and v < t.bucket_count then
        return v, name, i
      end
      return nil, ("%s returned %s: want a routing key (a string) or a bucket 0..%d")
        :format(where, describe(v), t.bucket_count - 1)
    end
  end
  return plain_bucket(core, p, t, key)
end

function M.locate(cs, ns, key, cmd)
  local t, code, msg = need(cs, ns)
  if not t then return code, msg end
  if type(key) ~= "string" then return codes.BAD_PARAM, "key (a string) is required" end
  if cmd ~= nil and (type(cmd) ~= "string" or cmd == "") then
    return codes.BAD_PARAM, "command must be a command name"
  end
  local p, err = M.of(t)
  if not p then return codes.INTERNAL, "the stored policy does not compile: " .. tostring(err) end
  local b, name, rule = bucket_of(core_of(cs), p, t, key, (cmd or "get"):lower())
  if not b then return codes.ROUTE_FAILED, name end
  local master = t.owner[b]
  local reps = {}
  for i, a in ipairs(cs.ha and cs.ha.replicas[master] or {}) do reps[i] = a end
  return codes.OK, "OK", {
    namespace = ns, key = key, bucket = b, master = master, replicas = array(reps),
    migrating_to = t.migrating[b], policy_version = t.policy and t.policy.version or 0,
    stored_key = b .. "_" .. name, rule = rule,
  }
end

return M
