/* keyspace.h -- the namespace's keys as the masters store them
 * ("<bucket>_<name>") seen as its clients name them: SCAN's cursor over
 * every master, the MATCH pattern a master is sent, and the filter that
 * turns a stored name back into the client's (SCAN, KEYS, RANDOMKEY).
 *
 * Pure functions of a table snapshot; no I/O, no allocation per key.
 *
 * The cursor. A client's SCAN cursor names a master and that master's own
 * cursor, folded into one number below 2^53 (client libraries in
 * JavaScript parse cursors as doubles: node-redis 4 uses Number()):
 *
 *   bit 52 ........... 22 21 ......... 15 14 .......... 0
 *       master's cursor    tag of its addr   position
 *
 * Masters are walked in order of their *position*: the lowest of 2b for a
 * bucket b it owns and 2b+1 for a bucket b migrating to it. Positions are
 * unique (a slot names one owner or one destination), survive a fail-over
 * (the promoted replica owns the same buckets), and a walk that always moves
 * to a higher position ends whatever the table does meanwhile. The tag (a
 * hash of "ip:port") tells whether the master at a cursor's position is still
 * the one the cursor came from; when it is not (fail-over, the bucket moved),
 * the walk restarts at that position with the master's cursor 0: keys may
 * then come twice, none present all along is skipped for it. Cursor 0 starts
 * at position 0; 0 is answered when the last master is done.
 *
 * A MATCH pattern whose literal prefix holds a whole hash tag ("{user1}*")
 * names one bucket: only that bucket's master (and its migration
 * destination) is walked, and it is sent "<bucket>_<pattern>", exact. Any
 * other pattern P is sent as "*_P", a superset (the stored name is digits,
 * '_', then the client's name), and the names are matched again here. */
#ifndef KVP_KEYSPACE_H
#define KVP_KEYSPACE_H

#include "../core/buf.h"
#include "../core/glob.h"
#include "table.h"

#include <stddef.h>
#include <stdint.h>

#define KVP_SCAN_POS_BITS 15 /* 2 * 16384 buckets */
#define KVP_SCAN_TAG_BITS 7
#define KVP_SCAN_REDIS_BITS 31 /* a master's cursor: 2 billion hash-table slots */

/* Where a SCAN cursor points: table server index (-1: nothing left to
 * walk), its position, and the cursor to send that master. */
typedef struct kvp_scan_at {
    int server;
    uint32_t pos;
    uint64_t redis;
} kvp_scan_at;

/* A cursor as Redis parses one (unsigned decimal, up to 2^64 - 1): KV_OK,
 * or KV_ERR ("invalid cursor"). */
int kvp_scan_cursor_parse(const char *p, size_t n, uint64_t *out);

/* The master and its cursor for client cursor c over table t (bucket >= 0:
 * only the masters holding that bucket are walked). KV_OK; KV_ERR when the
 * cursor cannot be one of ours (invalid cursor); KV_ENOMEM. */
int kvp_scan_locate(const kvp_table *t, uint64_t c, int bucket, kvp_scan_at *at);

/* The client cursor after the master at `at` answered cursor next: the same
 * master again, the next one (next == 0), or 0 when it was the last.
 * KV_ERR when the master's cursor does not fit KVP_SCAN_REDIS_BITS;
 * KV_ENOMEM. */
int kvp_scan_next(const kvp_table *t, const kvp_scan_at *at, uint64_t next, int bucket, uint64_t *out);

/* The bucket every key matching pat lies in (its literal prefix holds a whole
 * hash tag and t hashes tags), or -1. */
int kvp_match_bucket(const kvp_table *t, const char *pat, size_t n);

/* What goes before the client's pattern in the one a master is sent (see
 * above): "<bucket>_" (bucket from kvp_match_bucket) or "*_" (bucket -1). */
const char *kvp_match_prefix(const kvp_table *t, int bucket, size_t *len);

/* The client's name of a key master `server` stores as s (n bytes), or
 * NULL when it is not a key clients of the namespace can reach: no
 * "<bucket>_" prefix of a bucket of t, a bucket the master neither owns
 * nor receives (a leftover), or a name a key-rewrite pattern hides (it
 * matches one and is not a 40-digit hex name: GET of it reads the SHA-1's
 * key, so the stored one is out of reach). A rewritten key comes back as its
 * hex name, as stored: the client's name cannot be recovered from it. */
const char *kvp_key_visible(const kvp_table *t, int server, const char *s, size_t n, size_t *len);

/* A client MATCH pattern, compiled once per command: matched in linear time
 * when it has at most KV_GLOB_MAX_ELEMS elements, else by kv_glob_match. */
typedef struct kvp_match {
    int any;          /* no pattern, or only '*'s: everything matches */
    int compiled;
    kv_glob glob;
    const char *pat;  /* the caller keeps it alive (not compiled only) */
    size_t plen;
} kvp_match;

/* pat NULL: no MATCH (everything matches); "" matches only the empty name,
 * as in Redis. */
void kvp_match_init(kvp_match *m, const char *pat, size_t n);
int kvp_match_name(const kvp_match *m, const char *name, size_t n);

#endif
