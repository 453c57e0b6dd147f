-- Routing policy of kvp (DESIGN §2). This file is data: kvp reads it once at
-- start (and `kvp -t` checks it) and compiles it into flat C tables; no Lua
-- runs per request. Edit it and restart the proxy.
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
}
