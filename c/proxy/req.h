/* req.h -- a request: one client command that waits for backends, its
 * fragments (one per backend it was sent to), and the merge of their replies.
 *
 * Lifecycle, one state field and one function per transition:
 *
 *   FREE --kvp_req_new--> SETUP --kvp_req_sent--> WAITING --(last fragment)--> DONE
 *                           |                        |                          |
 *                           +------kvp_req_orphan----+--> ORPHANED              |
 *                                                          |(last fragment)     |
 *                                                          v                    |
 *                           FREE <---------------- kvp_req_release <------------+
 *
 * SETUP: fragments are being written and queued. A fragment can be answered
 * at once (its backend is down, a buffer could not grow); the request cannot
 * complete before kvp_req_sent, so the code sending fragment 2 never sees
 * fragment 1's request freed under it. WAITING: every fragment is out.
 * DONE: the reply is complete and was handed to the owner (pool->done); the
 * owner calls kvp_req_release once it has written it. ORPHANED: the owner
 * (the client) went away; the request is freed when its last fragment
 * answers, since a backend's in-flight entry still points at it.
 *
 * A fragment's reply arrives through kvp_req_frag_reply, the completion
 * callback of the backend's in-flight entry (backend.h). The owner learns the
 * final reply through the pool's done callback: an upward call through a
 * pointer, so this layer knows nothing of clients.
 *
 * Requests come from a per-worker pool that keeps their storage (fragment
 * arrays, reply buffers, MGET key maps) so a split command allocates
 * nothing in the steady state. */
#ifndef KVP_REQ_H
#define KVP_REQ_H

#include "../core/buf.h"
#include "command.h"
#include "conf.h"
#include "keyspace.h"
#include "info.h"

#include <stddef.h>
#include <stdint.h>

struct kvp_backend;

enum kvp_req_state {
    KVP_REQ_FREE = 0,
    KVP_REQ_SETUP,
    KVP_REQ_WAITING,
    KVP_REQ_DONE,
    KVP_REQ_ORPHANED,
};

/* A fragment: the part of a request sent to one backend. When some of its
 * keys are in migrating buckets, its command waits in `held` until the
 * MIGRATEs to its backend (`target`) from their sources have answered
 * (migrate-on-access, DESIGN §5.2, sequenced by dispatch.c); one failure
 * fails the fragment and nothing runs on the target. */
typedef struct kvp_frag {
    struct kvp_backend *be;
    kv_buf reply;        /* the fragment's raw reply, kept when the merge needs it */
    kv_buf held;
    uint8_t holding;     /* held is in use (the command waits for its MIGRATEs) */
    uint16_t held_group; /* commands in held that go back to back (MULTI ... EXEC); 1 else */
    uint8_t held_blocks; /* the held command may block in Redis: no request_timeout */
    struct kvp_backend *target;
    uint16_t premig_pending;
    uint8_t premig_failed;
} kvp_frag;

/* Which key names a command's reply carries, to be restored to the client's
 * names (the "<bucket>_" prefix dropped) before it is forwarded. */
enum kvp_restore {
    KVP_RESTORE_NONE,
    KVP_RESTORE_KEY0,    /* element 0 of an array (BLPOP, LMPOP, ...) */
    KVP_RESTORE_STREAMS  /* XREAD: [key, entries] pairs, or a RESP3 map key -> entries */
};

/* The restorer for a command with these KVP_CF_* flags. */
static inline uint8_t kvp_req_restorer(uint32_t cmd_flags)
{
    if (cmd_flags & KVP_CF_REPLY_KEY)
        return KVP_RESTORE_KEY0;
    return (cmd_flags & KVP_CF_REPLY_STREAMS) ? KVP_RESTORE_STREAMS : KVP_RESTORE_NONE;
}

typedef struct kvp_req kvp_req;
typedef struct kvp_req_pool kvp_req_pool;

/* SCAN / KEYS / RANDOMKEY: what turns the masters' stored names into the
 * client's (keyspace.h). A request gets one on first use and keeps it while
 * pooled; `t` is held (a reference) while the request uses it, so the merge
 * sees the table the command was routed with. */
typedef struct kvp_keyfilter {
    kvp_table *t;              /* NULL: not in use */
    kvp_scan_at at;            /* SCAN: the master walked */
    int bucket;                /* MATCH names one bucket, or -1 */
    uint64_t next;             /* SCAN: the master's next cursor */
    kv_buf pat;                /* the client's MATCH pattern */
    kvp_match match;
} kvp_keyfilter;

/* The request's reply is complete: p, n are its bytes (r->reply, or the
 * backend's input when a single fragment's reply passes through; valid only
 * during the call). The owner writes them or keeps them (kvp_req_keep). */
typedef void (*kvp_req_done_fn)(kvp_req *r, const char *p, size_t n);

struct kvp_req {
    kvp_req *next;             /* the owner's FIFO, or the pool's free list */
    void *owner;               /* the client; NULL once ORPHANED */
    kvp_req_pool *pool;
    uint8_t state;             /* enum kvp_req_state */
    uint8_t merge;             /* KVP_MERGE_*; NONE = one fragment, forwarded */
    uint8_t strip_key;         /* enum kvp_restore: key names in the reply lose our prefix */
    uint8_t oom;               /* a buffer of the reply could not grow: answer out of memory */
    uint8_t resp3;             /* the owner speaks RESP3: merged replies are written in it */
    uint16_t nfrags;
    int pending;               /* fragments not answered yet */
    size_t *held_counter;      /* the owner's count of reply bytes held in requests */
    size_t held;               /* this request's share of it */
    uint64_t start_us;         /* for the response time */
    uint64_t tver;             /* table version it was routed with (0: not routed) */
    void *route_ctx;           /* the dispatcher that sent it (migrate-on-access) */
    kv_buf reply;              /* final reply when it cannot go straight out */
    /* merge state */
    long long sum;
    long long sum2;
    int nerr;
    kv_buf first_err;
    kv_buf pick;               /* RANDOMKEY choice / INFO redis_version */
    int picks;
    int info_section;          /* INFO: which sections were asked for (KVP_INFO_* bits) */
    long long info_stat[KVP_INFO_NSTAT]; /* INFO: the masters' keyspace_hits, ... summed */
    kvp_frag *frags;           /* NULL, or frag_pool while this request uses it */
    int nkeys;                 /* MGET: keys mapped in key_frag/key_pos */
    uint16_t *key_frag;        /* MGET: fragment of each key, in client order */
    uint32_t *key_pos;         /* MGET: element index inside that fragment */
    /* storage a pooled request keeps for its next use */
    kvp_frag *frag_pool;
    int frag_pool_cap;
    int keys_cap;
    kvp_keyfilter *kf;         /* SCAN/KEYS/RANDOMKEY; storage kept while pooled */
};

/* A worker's requests: the free list, the owner's done callback, and the
 * count of requests in flight per table version, which tells the worker
 * when nothing routed with an older table is left (the proxy then acks the
 * new table, DESIGN §4). */
struct kvp_req_pool {
    kvp_req *free;
    int nfree;
    kvp_req_done_fn done;
    kvp_clock *clock;
    kvp_wstats *st;
    uint64_t table_version;    /* the worker's current table */
    long inflight_cur;         /* routed with it and not complete */
    long inflight_old;         /* routed with older ones */
    void (*on_drained)(void *ctx); /* inflight_old came to 0 */
    void *drained_ctx;
};

void kvp_req_pool_init(kvp_req_pool *pool, kvp_clock *clock, kvp_wstats *st, kvp_req_done_fn done);
void kvp_req_pool_free(kvp_req_pool *pool);
/* A new table is the worker's: what is in flight now counts as old. */
void kvp_req_pool_table(kvp_req_pool *pool, uint64_t version);

/* FREE -> SETUP. NULL when out of memory. */
kvp_req *kvp_req_new(kvp_req_pool *pool, void *owner, size_t *held_counter, uint8_t merge, int nfrags);
/* The request was routed with the worker's current table: counted until it
 * completes. */
void kvp_req_routed(kvp_req *r);
/* SETUP -> WAITING (or DONE when every fragment was answered meanwhile). */
void kvp_req_sent(kvp_req *r);
/* Fragment frag answered (a backend reply, or an error in its place). Has
 * the shape of a backend entry's callback (ctx = the request). */
void kvp_req_frag_reply(kvp_req *r, int frag, const char *p, size_t n);
void kvp_req_on_reply(void *ctx, uint32_t frag, const char *p, size_t n);
/* A request that needs no backend: its reply is p (kept), complete now. */
void kvp_req_answer(kvp_req *r, const char *p, size_t n);
/* The owner went away: DONE -> FREE, else -> ORPHANED. */
void kvp_req_orphan(kvp_req *r);
/* The owner has written the reply: DONE -> FREE. */
void kvp_req_release(kvp_req *r);
/* The owner keeps the reply (it must wait behind earlier ones). */
void kvp_req_keep(kvp_req *r, const char *p, size_t n);

/* Storage for r's fragments / MGET key maps (kept while pooled). */
int kvp_req_ensure_frags(kvp_req *r);
int kvp_req_map_keys(kvp_req *r, int nkeys);
/* r's key filter, set up for table t (referenced until r is freed) and the
 * MATCH pattern pat (NULL: none), or NULL when out of memory. */
kvp_keyfilter *kvp_req_keyfilter(kvp_req *r, kvp_table *t, const char *pat, size_t plen);

#endif
