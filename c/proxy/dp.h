/* dp.h -- the proxy data path's objects and how they pair up.
 *
 * Each worker thread owns an event loop, a listener (SO_REUSEPORT), its client
 * connections and its own connections to every master; nothing on the request
 * path is shared between workers or locked.
 *
 *   client c                              backend b (one master)
 *   ┌─────────────┐   fragments          ┌──────────────────────┐
 *   │ in  (kv_buf)│──parse──route──────▶ │ out (kv_buf)          │──▶ Redis
 *   │ head ▸ req1 ▸ req2 ▸ req3          │ pending ring:         │
 *   │ out (kv_buf) ◀─ in order ─┐        │  {req1,0}{req3,1}...  │◀── replies
 *   └─────────────┘               │      └──────────────────────┘
 *                                 └── replies complete reqs (any order);
 *                                     the client writes only from its head.
 *
 * A request (kvp_req) is created per command that must wait for a backend
 * (or behind one that does). It has one fragment per backend it was sent to;
 * a multi-key command (MGET, DEL, ...) or a fan-out (FLUSHALL, DBSIZE, ...)
 * merges its fragments' replies when the last one arrives. A request is freed
 * when its reply has gone to the client (or the client is gone) and no
 * backend still holds a pending entry for it.
 *
 * The bucket table reaches workers as an immutable, reference-counted
 * snapshot (kvp_table) posted to each worker's message queue; a worker swaps
 * its pointer between events, so a request is routed with exactly one table. */
#ifndef KVP_DP_H
#define KVP_DP_H

#include "../core/buf.h"
#include "../core/keyset.h"
#include "../core/kv.h"
#include "../core/resp.h"
#include "command.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define KVP_ADDR_MAX 64
#define KVP_NO_BUCKET 0xFFFFFFFFu
#define KVP_NO_SERVER 0xFFFFu

enum kvp_hash_kind { KVP_HASH_MURMUR2_KVSTORE = 0, KVP_HASH_CRC16 = 1 };

/* Settings of the data path. Workers read the atomics on the request path;
 * the control thread may change them at any time (set_config). */
typedef struct kvp_conf {
    char listen_host[64];
    int listen_port;
    int io_threads;
    int hash_kind;
    int hash_tags;
    atomic_int request_timeout_ms;
    atomic_int client_timeout_s;
    atomic_int max_client_num;
    atomic_int max_qps;
    atomic_int slow_cmd_time_ms;
    atomic_int redis_down_timeout_s;
    /* AUTH for new backend connections; replaced whole by set_config (the
     * old string is leaked on purpose: a worker may be reading it) */
    _Atomic(const char *) redis_password;
    char client_password[256];
    atomic_int client_count;      /* across workers */
    atomic_ullong next_client_id;
    uint64_t start_wall;          /* unix seconds at start, for INFO */
} kvp_conf;

extern kvp_conf kvp_g;

/* An immutable routing snapshot. */
typedef struct kvp_table {
    atomic_int refs;
    uint64_t version;
    uint32_t bucket_count;
    int nservers;
    char (*servers)[KVP_ADDR_MAX]; /* "ip:port" */
    uint16_t *owner;               /* bucket -> server index */
    char (*prefix)[8];             /* bucket -> "<bucket>_" */
    uint8_t *prefix_len;
    uint16_t *mig_dst;             /* bucket -> server index it migrates to, or KVP_NO_SERVER */
    uint8_t *blocked;              /* bucket -> 1 while commands on it wait (START, phase 1) */
    int nmigrating;
    int npatterns;                 /* key-rewrite globs (SPEC §4) */
    char **patterns;
    size_t *pattern_len;
} kvp_table;

kvp_table *kvp_table_new(uint32_t bucket_count, int nservers);
void kvp_table_ref(kvp_table *t);
void kvp_table_unref(kvp_table *t);
uint32_t kvp_table_bucket(const kvp_table *t, const char *key, size_t len);
int kvp_table_set_patterns(kvp_table *t, const char **pats, const size_t *lens, int n);

/* Where a client key goes: its bucket and the bytes stored after the
 * "<bucket>_" prefix -- the key itself, or the SHA-1 hex of the key when a
 * key-rewrite pattern matches it (then hex holds the bytes). */
typedef struct kvp_rkey {
    uint32_t bucket;
    uint16_t server;   /* where the command goes: the owner, or the migration dst */
    uint16_t src;      /* migrating bucket: the owner keys are MIGRATEd from first; else KVP_NO_SERVER */
    uint8_t blocked;   /* the bucket is blocked: the command waits for the next table */
    const char *p;
    size_t len;
} kvp_rkey;
void kvp_table_route(const kvp_table *t, const char *key, size_t len, kvp_rkey *out, char hex[40]);

struct kvp_worker;
struct kvp_client;
struct kvp_backend;

/* A fragment: the part of a request sent to one backend. When some of its
 * keys are in migrating buckets, its command waits in `held` until the
 * MIGRATEs to its backend (`target`) from their sources have answered
 * (migrate-on-access, DESIGN §5.2); one failure fails the fragment and
 * nothing runs on the target. */
typedef struct kvp_frag {
    struct kvp_backend *be;
    kv_buf reply;        /* the fragment's raw reply, kept when the merge needs it */
    kv_buf held;
    uint8_t holding;     /* held is in use (the command waits for its MIGRATEs) */
    struct kvp_backend *target;
    uint16_t premig_pending;
    uint8_t premig_failed;
} kvp_frag;

/* A client with no bytes held reads into its worker's scratch buffer and
 * keeps (copies) only what is left unparsed: idle connections hold no
 * input buffer. */
#define KVP_IN_SCRATCH (16 * 1024)

typedef struct kvp_req {
    struct kvp_req *next;      /* client FIFO */
    struct kvp_client *c;      /* NULL once the client has gone */
    struct kvp_worker *w;
    kv_buf reply;              /* final reply when it cannot go straight out */
    uint8_t merge;             /* KVP_MERGE_*; NONE = one fragment, forwarded */
    uint8_t done;
    uint8_t strip_key;         /* reply element 0 names a key: drop our prefix */
    uint8_t oom;               /* a buffer of the reply could not grow: answer out of memory */
    uint16_t nfrags;
    int pending;               /* fragments (plus set-up guard) outstanding */
    size_t held;               /* reply bytes counted in c->held for this request */
    uint64_t start_ms;
    uint64_t start_us;         /* for the response time */
    uint64_t tver;             /* table version it was routed with (0: not routed) */
    /* merge state */
    long long sum;
    long long sum2;
    int nerr;
    kv_buf first_err;
    kv_buf pick;               /* RANDOMKEY choice / INFO redis_version */
    int picks;
    kvp_frag *frags;           /* NULL, or frag_pool while this request uses it */
    int nkeys;                 /* MGET: keys mapped in key_frag/key_pos */
    uint16_t *key_frag;        /* MGET: fragment of each key, in client order */
    uint32_t *key_pos;         /* MGET: element index inside that fragment */
    /* Storage a pooled request keeps for its next use, so a split command
     * allocates nothing in the steady state. */
    kvp_frag *frag_pool;
    int frag_pool_cap;
    int keys_cap;              /* entries of key_frag and key_pos */
    int info_section;          /* INFO: which sections were asked for */
} kvp_req;

/* An entry of a backend's in-flight ring: which request fragment the next
 * reply belongs to. */
typedef struct kvp_pending {
    kvp_req *req;
    uint16_t frag;
    uint8_t premig;            /* the reply is a migrate-on-access MIGRATE's */
    uint64_t sent_ms;
} kvp_pending;

enum kvp_backend_state { KVP_BE_DOWN = 0, KVP_BE_CONNECTING, KVP_BE_AUTHING, KVP_BE_READY };

typedef struct kvp_backend {
    struct kvp_worker *w;
    char addr[KVP_ADDR_MAX];
    char host[64];
    int port;
    int fd;
    int state;
    struct event *rev, *wev;
    kv_buf in;
    kv_reply_scanner scan;
    kv_buf out;                /* written when READY; held while connecting */
    kvp_pending *ring;
    uint32_t ring_cap, ring_head, ring_len;
    uint64_t state_since_ms;   /* connect start / down since */
    uint64_t retry_at_ms;      /* when DOWN: next reconnect attempt */
    uint64_t last_read_ms;     /* last bytes from the backend: progress */
    int backoff_ms;
    int in_table;              /* still routed to by the worker's table */
    int dirty;                 /* queued on the worker's flush list */
    int was_down_logged;
    int forced_down;           /* the health check says down: fail fast, no reconnect */
    char unavailable[KVP_ADDR_MAX + 48]; /* "-ERR backend <addr> unavailable\r\n" */
    size_t unavailable_len;
} kvp_backend;

typedef struct kvp_client {
    struct kvp_worker *w;
    struct kvp_client *prev, *next; /* worker's client list */
    int fd;
    struct event *rev, *wev;
    kv_buf in;
    kv_req_parser parser;
    kv_buf out;
    kvp_req *head, *tail;
    int nreq;
    size_t held;               /* reply bytes waiting in requests behind the head */
    uint64_t id;
    uint64_t last_active_ms;
    char *name;
    char peer[48];
    unsigned closing : 1;      /* close once out is flushed */
    unsigned authed : 1;
    unsigned dirty : 1;
    unsigned parked : 1;       /* on the worker's park list (see park_reason) */
    unsigned read_paused : 1;  /* back-pressure: too much output or in flight */
    unsigned has_cmd : 1;      /* a parsed command waits in parser (parked) */
    unsigned dead : 1;
    unsigned broken : 1;       /* a reply could not be kept: close at the flush */
    size_t cmd_len;            /* bytes of that parsed command */
    /* Parked: why, since when (the first park of this command; a resume
     * that parks it again keeps it), and the worker's park list links. */
    uint8_t park_reason;       /* KVP_PARK_* */
    uint64_t park_since_ms;
    struct kvp_client *park_prev, *park_next;
} kvp_client;

/* Why a client's parsed command waits (kvp_dispatch returned KV_AGAIN). */
enum kvp_park_reason {
    KVP_PARK_NO_TABLE = 1,     /* no bucket table yet */
    KVP_PARK_BLOCKED,          /* a key's bucket is blocked (MIGRATE.START, phase 1) */
    KVP_PARK_TABLE_SWAP,       /* a new table waits for migrate-on-access steps */
};

typedef struct kvp_msg {
    struct kvp_msg *next;
    int type;
    void *ptr;
} kvp_msg;

enum { KVP_MSG_TABLE = 1, KVP_MSG_STOP, KVP_MSG_BACKEND_STATE };

/* KVP_MSG_BACKEND_STATE payload (one per worker). */
typedef struct kvp_backend_verdict {
    char addr[KVP_ADDR_MAX];
    int down;
} kvp_backend_verdict;

/* A worker's counters. Only the worker writes them (a plain load+store,
 * no lock, no atomic read-modify-write); the control thread sums all
 * workers' on read (dp.stats), so counting costs no lock and no Lua call. */
typedef struct kvp_wstats {
    _Atomic uint64_t total;     /* commands executed for clients */
    _Atomic uint64_t slow;      /* ... slower than slow_cmd_time */
    _Atomic uint64_t rt_sum_us; /* response times of forwarded commands */
    _Atomic uint64_t rt_count;
    _Atomic uint64_t *cmd;      /* per command table id */
} kvp_wstats;

static inline void kvp_stat_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

typedef struct kvp_worker {
    int idx;
    pthread_t thread;
    struct event_base *base;
    int listen_fd;
    struct event *listen_ev;
    int notify_fd;
    struct event *notify_ev;
    struct event *tick_ev;
    pthread_mutex_t mu;
    kvp_msg *msgs;

    kvp_table *table;
    kvp_table *next_table;     /* waits while migrate-on-access steps run */
    kvp_backend **route;       /* table server index -> backend */
    /* requests routed with the current table / with older ones, for acks */
    long inflight_cur, inflight_old;
    int premig_inflight;       /* fragments waiting for their MIGRATEs */
    kvp_backend **backends;    /* every backend this worker holds */
    int nbackends, capbackends;

    kvp_client *clients;
    int nclients;
    kvp_client **cdirty;
    int ncdirty, capcdirty;
    kvp_backend **bdirty;
    int nbdirty, capbdirty;
    kvp_client *parked_head, *parked_tail; /* clients whose command waits */
    int stopping;              /* a STOP message came: leave the loop */
    int table_wait_expired;

    kvp_req *free_reqs;
    int nfree_reqs;
    char *in_scratch;          /* KVP_IN_SCRATCH bytes clients read into (client.c) */

    uint64_t now_ms;           /* clock read once per event (kvp_worker_clock) */
    uint64_t now_us;
    kvp_wstats st;
    uint64_t qps_sec;
    int qps_count;

    /* scratch for routing multi-key commands, sized by the biggest
     * command so far (never the stack: a client chooses argc) */
    int *s_keys;
    int *s_server;
    kvp_rkey *s_rkey;
    char (*s_hex)[40];
    uint8_t *s_in_frag;        /* key i goes to the fragment being written */
    uint8_t *s_pick;           /* key i is named by the MIGRATE being written */
    int s_cap;
    uint8_t *s_src_done;       /* per table server: its MIGRATE is written */
    int s_src_cap;
    kv_keyset s_seen;          /* keys already named by a fragment's MIGRATEs */
} kvp_worker;

/* worker.c */
int kvp_workers_start(char *err, size_t errlen);
void kvp_workers_post_table(kvp_table *t);
void kvp_workers_post_backend_state(const char *addr, int down);
int kvp_workers_count(void);
void kvp_worker_mark_client(kvp_worker *w, kvp_client *c);
void kvp_worker_mark_backend(kvp_worker *w, kvp_backend *be);
void kvp_worker_flush(kvp_worker *w);
void kvp_worker_park(kvp_worker *w, kvp_client *c);
void kvp_worker_unpark(kvp_worker *w, kvp_client *c);
void kvp_worker_premig_done(kvp_worker *w);
void kvp_worker_req_done(kvp_worker *w, kvp_req *r);
/* Control thread: drained-table reports from workers (see lkvp.c). */
typedef void (*kvp_drained_fn)(int worker, uint64_t version);
int kvp_workers_poll_drained(kvp_drained_fn fn);
int kvp_workers_notify_fd(void);
uint64_t kvp_now_ms(void);
void kvp_worker_clock(kvp_worker *w);
int kvp_workers_stats(uint64_t *total, uint64_t *slow, uint64_t *rt_sum, uint64_t *rt_count,
                      uint64_t *cmd, int ncmd);

/* client.c */
void kvp_client_accept(kvp_worker *w, int fd, const char *peer);
void kvp_client_resume(kvp_client *c);
void kvp_client_park_expired(kvp_client *c);
void kvp_client_reply(kvp_client *c, const char *p, size_t n);
void kvp_client_reply_str(kvp_client *c, const char *s);
void kvp_client_reply_err(kvp_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
kvp_req *kvp_req_new(kvp_client *c, uint8_t merge, int nfrags);
void kvp_req_frag_reply(kvp_req *r, int frag, const char *p, size_t n);
void kvp_req_setup_done(kvp_req *r);
void kvp_req_premig_reply(kvp_req *r, int frag, const char *p, size_t n);
void kvp_frag_premig_fail(kvp_req *r, int frag, const char *msg);
int kvp_req_ensure_frags(kvp_req *r);
int kvp_req_map_keys(kvp_req *r, int nkeys);
void kvp_req_abort(kvp_req *r, const char *msg);
void kvp_req_routed(kvp_req *r);
void kvp_client_tick(kvp_worker *w);

/* backend.c */
kvp_backend *kvp_backend_new(kvp_worker *w, const char *addr);
void kvp_backend_free(kvp_backend *be);
/* Queue a fragment; the caller has written the command into be->out. */
void kvp_backend_enqueue(kvp_backend *be, kvp_req *r, int frag);
void kvp_backend_enqueue_premig(kvp_backend *be, kvp_req *r, int frag);
int kvp_backend_usable(kvp_backend *be); /* 0: known down, fail fast */
void kvp_backend_flush(kvp_backend *be);
void kvp_backend_tick(kvp_backend *be);
void kvp_backend_connect(kvp_backend *be);
void kvp_backend_force(kvp_backend *be, int down);

/* router.c */
/* KV_OK: handled (replied or queued); KV_AGAIN: the command must wait,
 * c->park_reason says for what. */
int kvp_dispatch(kvp_client *c, int argc, kv_str *argv);

/* merge.c */
void kvp_merge_fragment(kvp_req *r, int frag, const char *p, size_t n);
int kvp_merge_finish(kvp_req *r, kv_buf *out); /* KV_ENOMEM: out holds nothing of it */
/* Write reply p (an array whose first element is a prefixed key) without the prefix. */
#define KVP_OUT_MAX (2048UL * 1024 * 1024) /* hard bound of output buffers; clients are closed far below */
int kvp_reply_strip_key0(const char *p, size_t n, kv_buf *out);

/* encode helpers (router.c) */
int kvp_write_bulk(kv_buf *out, const char *p, size_t n);
int kvp_write_bulk_prefixed(kv_buf *out, const char *pre, size_t prelen, const char *p,
                            size_t n);
int kvp_write_count(kv_buf *out, char type, long long n);

#endif
