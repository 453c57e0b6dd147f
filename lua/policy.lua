-- Routing policy of a kvp namespace (README "Routing policy"). It belongs to
-- the namespace: the config server keeps it with the bucket table and every
-- proxy of the namespace routes with the same version. To change it, edit
-- this file and run `kvp --reload -c kvp.conf` (or send the proxy SIGHUP, or
-- POST /kvstore/proxy/reload_policy): the file is checked (a mistake is
-- refused with its line) and published; every proxy swaps to it between two
-- requests. A change of what decides a key's bucket (hash, hash_tags, a
-- route function) on a namespace that holds data is refused unless forced
-- (`kvp --reload --force`): every key would move to another bucket.
--
-- The file runs in a sandbox (string, math, table, bit; no io, os, require).
return {
  -- Key hash: "murmur2_kvstore" (the old kvstore's MurmurHash2 variant: keeps
  -- an existing deployment's keys where they are) or "crc16" (Redis Cluster's).
  hash = "murmur2_kvstore",

  -- Hash tags: when a key contains {...} with a non-empty inside, only the
  -- inside is hashed, so related keys share a bucket. Turn off for byte-exact
  -- routing of old kvstore keys that contain braces.
  hash_tags = true,

  -- Commands to refuse although the proxy could serve them, e.g. {"flushall"}.
  deny = {},

  -- Commands refused by default that you want served (only commands whose keys
  -- the proxy can find, e.g. {"sort"}); blocking and pub/sub ones cannot be.
  allow = {},

  -- Rules by key glob, first match wins (compiled to C: no Lua per request
  -- unless a rule has a route function). Each may say:
  --   read_only = true            writes to its keys are refused (-READONLY)
  --   deny = {...} / allow = {...}  commands refused on its keys / the only
  --                               ones served on its keys (-NOPERM)
  --   max_qps = n                 commands per second on its keys, per proxy
  --   replica_reads = "never" | "prefer" | "only", max_replica_lag_ms = n
  --                               read-only commands served by a replica
  --                               that is up and at most n ms behind
  --   route = function(key, cmd) ... end   the routing key (a string, routed
  --                               as a key) or the bucket number of its keys
  -- e.g.
  --   rules = {
  --     { match = "config:*", read_only = true },
  --     { match = "cache:*", replica_reads = "prefer", max_replica_lag_ms = 500 },
  --     { match = "tenant:*", route = function(key) return key:match("^tenant:([^:]*)") end },
  --   },
  rules = {},
}
