/* merge.h -- the replies of a split or fanned-out command turned into the
 * one reply a client expects (SPEC §4: sums for counts, MGET in key order
 * with a failed master's error in place, MSET +OK only when every part
 * succeeded, else the first error; RANDOMKEY, INFO).
 *
 * Pure functions of a request's merge state: fragments arrive in any order,
 * kvp_merge_fragment keeps what the merge needs, kvp_merge_finish writes the
 * answer once the last one is in. What cannot be kept sets r->oom. */
#ifndef KVP_MERGE_H
#define KVP_MERGE_H

#include "req.h"

void kvp_merge_fragment(kvp_req *r, int frag, const char *p, size_t n);
/* KV_ENOMEM: out holds nothing of it. */
int kvp_merge_finish(kvp_req *r, kv_buf *out);
/* Reply p (an array whose first element is a prefixed key) without the
 * "<bucket>_" prefix. KV_ENOMEM: out holds nothing of it. */
int kvp_reply_strip_key0(const char *p, size_t n, kv_buf *out);
/* XREAD / XREADGROUP reply p (RESP2 array of [key, entries], or RESP3 map
 * key -> entries) with every stream key's "<bucket>_" prefix dropped; any
 * other reply as is. KV_ENOMEM: out holds nothing of it. */
int kvp_reply_strip_stream_keys(const char *p, size_t n, kv_buf *out);

#endif
