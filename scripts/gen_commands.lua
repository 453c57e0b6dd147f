--[[ gen_commands.lua -- turns Redis's own COMMAND metadata into kvp's command table.

Why: the proxy must know, for every Redis command, its arity, flags, where its keys
are and what the proxy does with it (answer locally, route by key, split per backend,
fan out, forward anywhere, walk the keyspace, refuse). Redis already describes arity, flags and key
positions exactly (COMMAND, "key specs"); copying that by hand would rot. So
scripts/gen_commands.sh asks a real redis-server and pipes `redis-cli --json COMMAND`
into this script, which adds the proxy's policy (the lists below, the only part
written by hand) and writes c/proxy/cmdtab_gen.inc: one KVP_CMD(...) line per command
or subcommand, sorted by name, included by c/proxy/command.c.

Usage: luajit scripts/gen_commands.lua OUTFILE [REDIS_VERSION] < command.json

The output is deterministic for a given Redis (sorted, no timestamps), so it diffs
cleanly when Redis changes. Operators adjust the policy at run time through
lua/policy.lua (deny/allow); this file sets the defaults.
]]

local cjson = require "cjson"

---------------------------------------------------------------------------
-- Policy: what the proxy does with each command (SPEC §4).
-- Every name here must exist in the Redis we read (checked below), so a typo
-- or a command Redis dropped fails the generator instead of being ignored.
---------------------------------------------------------------------------

-- Answered by the proxy itself; the value is the enum kvp_local the proxy
-- switches on. CLIENT, CONFIG and COMMAND are containers whose subcommands
-- are handled in C (c/proxy/local.c), so they are emitted whole, without
-- subcommand lines.
local LOCAL = {
    ping = "PING", echo = "ECHO", quit = "QUIT", select = "SELECT",
    auth = "AUTH", client = "CLIENT", hello = "HELLO",
    config = "CONFIG",   -- GET answered with the proxy's values (c/proxy/local.c)
    command = "CMDTAB",  -- COMMAND, from this table: only what the proxy serves
}

-- Connection state kept by the proxy's session layer (c/proxy/session.c):
-- transactions and WATCH. The value is the enum kvp_local the session
-- layer switches on.
local SESSION = {
    multi = "MULTI", exec = "EXEC", discard = "DISCARD",
    watch = "WATCH", unwatch = "UNWATCH", reset = "RESET",
}

-- Pub/sub, served by the pub/sub layer (c/proxy/pubsub.c): channels live on
-- the master their name hashes to, patterns on every master, and each
-- worker holds one subscriber connection per master for all its clients.
-- The value is the enum kvp_local the layer switches on.
local PUBSUB = {
    subscribe = "SUB", unsubscribe = "UNSUB",
    psubscribe = "PSUB", punsubscribe = "PUNSUB",
    ssubscribe = "SSUB", sunsubscribe = "SUNSUB",
    publish = "PUB", spublish = "SPUB",
}

-- Sent to every master; the value says how the replies are merged.
local FANOUT = {
    flushdb = "OK_ALL", flushall = "OK_ALL", -- +OK only if every master said OK
    dbsize = "SUM",
    info = "INFO",                           -- proxy sections + keyspace summed
    -- scripts and functions live on every master, so EVALSHA / FCALL find
    -- them wherever their keys are
    ["script|load"] = "SAME",                -- the sha, the same from every master
    ["script|exists"] = "ALL_ONES",          -- 1 only where every master has it
    ["script|flush"] = "OK_ALL",
    ["function|load"] = "SAME",              -- the library name
    ["function|delete"] = "OK_ALL",
    ["function|flush"] = "OK_ALL",
    ["function|restore"] = "OK_ALL",
    -- what the masters know of the channels (each on the master its name
    -- hashes to) and patterns (on every master)
    ["pubsub|channels"] = "CONCAT",          -- every master's names, one array
    ["pubsub|shardchannels"] = "CONCAT",
    ["pubsub|numsub"] = "NUMSUB",            -- per channel, the counts added
    ["pubsub|shardnumsub"] = "NUMSUB",
    ["pubsub|numpat"] = "MAX",               -- every master has every pattern
}

-- Key names come back from the masters: the proxy walks, filters and strips
-- them (c/proxy/dispatch_keyspace.c); the value is the merge.
local KEYSPACE = {
    scan = "SCAN",                           -- one master per call, cursor folded
    keys = "KEYS",                           -- every master, one array
    randomkey = "RANDOMKEY",                 -- a namespace key from some master
}

-- Containers whose subcommands get lines of their own although none has
-- keys (their classes differ).
local SUBS = { script = true, ["function"] = true, pubsub = true }

-- Sent to one master, reply forwarded as is: the answer is the same everywhere.
-- The HELP subcommands of the keyed containers are harmless and identical on
-- every master, so they are forwarded too.
local ANY = {
    time = true,
    -- the same on every master once loaded through the proxy (LIST and DUMP
    -- are read from one master: their order may differ between masters)
    ["script|help"] = true, ["function|list"] = true, ["function|dump"] = true,
    ["function|stats"] = true, ["function|help"] = true,
    ["object|help"] = true, ["memory|help"] = true,
    ["xinfo|help"] = true, ["xgroup|help"] = true, ["pubsub|help"] = true,
}

-- Keys split per backend, one sub-request per backend, replies merged.
local SPLIT = {
    del = "SUM", unlink = "SUM", exists = "SUM", touch = "SUM",
    mget = "MGET",     -- values put back in key order
    mset = "OK_ALL",   -- key/value pairs: key spec step 2
}

-- Containers emitted as one line even if some subcommand had keys.
local WHOLE = { client = true, command = true, config = true }

-- Refused even though Redis gives computable keys (or listed for clarity when
-- the keys are not computable anyway). The reason is printed in the output.
local DENY = {
    migrate = "moves keys to another server",
    move = "moves a key to another db",
    pfdebug = "debugging command",
    pfselftest = "debugging command",
    debug = "debugging command",
    ["restore-asking"] = "Redis Cluster internal",
}

-- Keys named by keyword: routed by the key spec Redis gives by position (the
-- source key) plus what a finder in c/proxy/command.c (enum kvp_finder) finds by
-- walking the options as Redis parses them, from argument `from`. These replace
-- Redis's keyword / unknown key specs, and make the command KEYED. XREAD and
-- XREADGROUP carry Redis's "blocking" flag; only their BLOCK form blocks
-- (kvp_cmd_blocks tells), and then waits on a connection of the client's own.
local FINDERS = {
    georadius = { kind = "GEO", from = 6 },          -- key lon lat radius unit
    georadiusbymember = { kind = "GEO", from = 5 },  -- key member radius unit
    sort = { kind = "SORT", from = 2 },
    sort_ro = { kind = "SORT", from = 2 },
    xread = { kind = "XREAD", from = 1 },
    xreadgroup = { kind = "XREADGROUP", from = 1 },
}

-- Redis command flags carried into the table, as KVP_CF_<value>.
local FLAGS = {
    write = "WRITE", readonly = "READONLY", denyoom = "DENYOOM", admin = "ADMIN",
    pubsub = "PUBSUB", noscript = "NOSCRIPT", blocking = "BLOCKING", fast = "FAST",
    movablekeys = "MOVABLE", loading = "LOADING", stale = "STALE",
    no_mandatory_keys = "NO_MANDATORY_KEYS",
    reply_key = "REPLY_KEY", reply_streams = "REPLY_STREAMS",
}

-- The proxy's own flag: the reply's first element names a key (the proxy
-- strips the "<bucket>_" prefix it added). Blocking ones are listed for
-- when a policy allows them.
local REPLY_NAMES_KEY = {
    lmpop = true, zmpop = true, blpop = true, brpop = true, bzpopmin = true,
    bzpopmax = true, blmpop = true, bzmpop = true,
}
-- The reply names stream keys ([key, entries] pairs, a map in RESP3).
local REPLY_NAMES_STREAMS = { xread = true, xreadgroup = true }
-- Order of the flags in a line (stable, readable).
local FLAG_ORDER = {
    "write", "readonly", "denyoom", "admin", "pubsub", "noscript", "blocking",
    "fast", "movablekeys", "loading", "stale", "no_mandatory_keys", "reply_key",
    "reply_streams",
}

local MAX_SPECS = 3 -- must match KVP_CMD_MAX_SPECS in c/proxy/command.h

---------------------------------------------------------------------------
-- Reading COMMAND's reply
---------------------------------------------------------------------------

local function die(fmt, ...)
    io.stderr:write("gen_commands: ", string.format(fmt, ...), "\n")
    os.exit(1)
end

local function set_of(list)
    local s = {}
    for _, v in ipairs(list or {}) do s[v] = true end
    return s
end

-- One COMMAND entry (array) -> a plain table. Redis 7 layout: name, arity,
-- flags, first, last, step, acl categories, tips, key specs, subcommands.
local function parse(e)
    if type(e) ~= "table" or type(e[1]) ~= "string" or type(e[2]) ~= "number" then
        die("unexpected COMMAND entry %s", cjson.encode(e))
    end
    if e[9] == nil then die("%s: no key specs; Redis 7 or newer is needed", e[1]) end
    local c = { name = e[1]:lower(), arity = e[2], flags = set_of(e[3]), subs = {} }
    if REPLY_NAMES_KEY[c.name] then c.flags.reply_key = true end
    if REPLY_NAMES_STREAMS[c.name] then c.flags.reply_streams = true end
    c.specs = e[9]
    for _, s in ipairs(e[10] or {}) do c.subs[#c.subs + 1] = parse(s) end
    table.sort(c.subs, function(a, b) return a.name < b.name end)
    return c
end

-- One key spec -> its C form, or nil for a spec that names no key (not_key:
-- shard channels), or "KS_UNKNOWN" when the proxy cannot find its keys from
-- positions alone (keyword search, unknown, incomplete, range with a limit).
local function spec_c(name, s)
    local f = set_of(s.flags)
    if f.not_key then return nil end
    if f.incomplete then return "KS_UNKNOWN" end
    local bs, fk = s.begin_search, s.find_keys
    if bs.type ~= "index" then return "KS_UNKNOWN" end
    local i = bs.spec.index
    if fk.type == "range" then
        local r = fk.spec
        if r.limit ~= 0 then return "KS_UNKNOWN" end
        return string.format("KS_RANGE(%d,%d,%d)", i, r.lastkey, r.keystep)
    elseif fk.type == "keynum" then
        local k = fk.spec
        return string.format("KS_KEYNUM(%d,%d,%d,%d)", i, k.keynumidx, k.firstkey, k.keystep)
    end
    return "KS_UNKNOWN"
end

---------------------------------------------------------------------------
-- Classification
---------------------------------------------------------------------------

-- Returns class, merge, local, specs (C strings), reason (comment or nil).
-- has_subs: the container's subcommands get lines of their own.
local function classify(c, has_subs)
    local specs, unknown = {}, false
    for _, s in ipairs(c.specs) do
        local k = spec_c(c.name, s)
        if k then
            specs[#specs + 1] = k
            if k == "KS_UNKNOWN" then unknown = true end
        end
    end
    if #specs > MAX_SPECS then die("%s has %d key specs, raise KVP_CMD_MAX_SPECS", c.name, #specs) end

    local n = c.name
    if FINDERS[n] then
        -- the positional specs Redis gives, then the finder for the rest
        local f, kept = FINDERS[n], {}
        for _, k in ipairs(specs) do
            if k ~= "KS_UNKNOWN" then kept[#kept + 1] = k end
        end
        kept[#kept + 1] = string.format("KS_FIND(%s,%d)", f.kind, f.from)
        if #kept > MAX_SPECS then die("%s: too many key specs with its finder", n) end
        return "KEYED", "NONE", "NONE", kept
    end
    if LOCAL[n] then return "LOCAL", "NONE", LOCAL[n], specs end
    if SESSION[n] then return "SESSION", "NONE", SESSION[n], specs end
    if PUBSUB[n] then return "PUBSUB", "NONE", PUBSUB[n], specs end
    if FANOUT[n] then return "FANOUT", FANOUT[n], "NONE", specs end
    if KEYSPACE[n] then return "KEYSPACE", KEYSPACE[n], "NONE", specs end
    if ANY[n] then return "ANY", "NONE", "NONE", specs end
    if SPLIT[n] then
        if unknown or #specs ~= 1 or not specs[1]:match("^KS_RANGE") then
            die("%s is listed as SPLIT but has no single range key spec", n)
        end
        return "SPLIT", SPLIT[n], "NONE", specs
    end
    local why
    if DENY[n] then why = "denied: " .. DENY[n]
    elseif c.flags.blocking and #specs == 0 then why = "blocking, no keys"
    elseif c.flags.pubsub then why = "pub/sub"
    elseif unknown then why = "keys not computable from positions"
    elseif #specs == 0 then why = has_subs and "container: see its subcommands" or "no keys"
    end
    if why then return "UNSUPPORTED", "NONE", "NONE", specs, why end
    return "KEYED", "NONE", "NONE", specs
end

---------------------------------------------------------------------------
-- Output
---------------------------------------------------------------------------

local function flags_c(c)
    local out = {}
    for _, f in ipairs(FLAG_ORDER) do
        if c.flags[f] then out[#out + 1] = "KVP_CF_" .. FLAGS[f] end
    end
    return #out > 0 and table.concat(out, "|") or "0"
end

local function pad(s, w) return s .. string.rep(" ", w - #s) end

local function main()
    local outfile, version = arg[1], arg[2] or "unknown"
    if not outfile then die("usage: luajit gen_commands.lua OUTFILE [REDIS_VERSION] < command.json") end

    local ok, raw = pcall(cjson.decode, io.read("*a"))
    if not ok or type(raw) ~= "table" or #raw == 0 then die("stdin is not COMMAND's JSON reply") end

    local cmds, byname = {}, {}
    for _, e in ipairs(raw) do
        local c = parse(e)
        cmds[#cmds + 1] = c
        byname[c.name] = c
        for _, s in ipairs(c.subs) do byname[s.name] = s end
    end
    table.sort(cmds, function(a, b) return a.name < b.name end)

    for _, list in ipairs({ LOCAL, SESSION, PUBSUB, FANOUT, KEYSPACE, ANY, SPLIT, WHOLE, DENY, FINDERS, SUBS }) do
        for n in pairs(list) do
            if not byname[n] then die("policy names '%s', which this Redis does not have", n) end
        end
    end

    -- Rows in output order: a command, then (for containers with a keyed
    -- subcommand) its subcommands, sorted.
    local rows, count = {}, {}
    local function row(c, has_subs)
        local cls, merge, loc, specs, why = classify(c, has_subs)
        for i = #specs + 1, MAX_SPECS do specs[i] = "KS_NONE" end
        count[cls] = (count[cls] or 0) + 1
        rows[#rows + 1] = {
            name = string.format("%q,", c.name), arity = tostring(c.arity) .. ",",
            cls = cls .. ",", merge = merge .. ",", loc = loc .. ",",
            specs = specs, flags = flags_c(c), why = why,
        }
    end
    local function has_keys(c)
        for _, s in ipairs(c.specs) do
            if not set_of(s.flags).not_key then return true end
        end
        return false
    end
    for _, c in ipairs(cmds) do
        local keyed = false
        for _, s in ipairs(c.subs) do keyed = keyed or has_keys(s) end
        local with_subs = (keyed or SUBS[c.name]) and not WHOLE[c.name]
        row(c, with_subs)
        if with_subs then
            for _, s in ipairs(c.subs) do row(s, false) end
        end
    end

    -- Column widths, so the table reads as a table.
    local w = { name = 0, arity = 0, cls = 0, merge = 0, loc = 0, 0, 0, 0 }
    for _, r in ipairs(rows) do
        for _, k in ipairs({ "name", "arity", "cls", "merge", "loc" }) do
            if #r[k] > w[k] then w[k] = #r[k] end
        end
        for i = 1, MAX_SPECS do
            if #r.specs[i] + 1 > w[i] then w[i] = #r.specs[i] + 1 end
        end
    end

    local out = {}
    out[#out + 1] = string.format([[
/* cmdtab_gen.inc -- GENERATED by scripts/gen_commands.sh from redis-server %s.
 * Do not edit by hand (the next run overwrites it): change the policy lists in
 * scripts/gen_commands.lua and re-run the script.
 *
 * KVP_CMD(name, arity, class, merge, local, keyspec1, keyspec2, keyspec3, flags)
 *   arity     as Redis: n = exactly n arguments (name included), -n = at least n
 *   class     UNSUPPORTED LOCAL KEYED SPLIT FANOUT ANY SESSION KEYSPACE (enum kvp_cmd_class)
 *   merge     how FANOUT/SPLIT replies are merged (enum kvp_merge)
 *   local     which proxy-local command (enum kvp_local)
 *   KS_RANGE(index, lastkey, keystep)   keys from argv[index] to argv[index+lastkey]
 *                                       (lastkey < 0: argv[argc+lastkey]), every keystep
 *   KS_KEYNUM(index, keynumidx, firstkey, keystep)
 *                                       argv[index+keynumidx] keys from argv[index+firstkey]
 *   KS_FIND(kind, from)                 keys named by keyword: the finder kind
 *                                       (enum kvp_finder) walks the options from argv[from]
 *   KS_UNKNOWN                          keys the proxy cannot locate by position
 *   KS_NONE                             unused slot
 * Subcommands ("object|encoding") follow their container. */
]], version)
    for _, r in ipairs(rows) do
        local line = "KVP_CMD(" .. pad(r.name, w.name) .. " " .. pad(r.arity, w.arity) .. " "
            .. pad(r.cls, w.cls) .. " " .. pad(r.merge, w.merge) .. " " .. pad(r.loc, w.loc) .. " "
        for i = 1, MAX_SPECS do line = line .. pad(r.specs[i] .. ",", w[i]) .. " " end
        line = line .. r.flags .. ")"
        if r.why then line = line .. " /* " .. r.why .. " */" end
        out[#out + 1] = line
    end
    out[#out + 1] = ""

    local tmp = outfile .. ".tmp"
    local f = assert(io.open(tmp, "w"))
    f:write(table.concat(out, "\n"))
    f:close()
    assert(os.rename(tmp, outfile))

    local names = {}
    for k in pairs(count) do names[#names + 1] = k end
    table.sort(names)
    local parts = {}
    for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. count[k] end
    io.stderr:write(string.format("gen_commands: wrote %s: %d entries (%s)\n",
        outfile, #rows, table.concat(parts, " ")))
end

main()
