/* client.h -- a client connection: socket, parser, and replies written
 * strictly in request order.
 *
 * States, one field, one function per transition (client.c):
 *
 *   OPEN --client_park--> PARKED --client_resume / client_expire--> OPEN
 *   OPEN --kvp_client_drain--> DRAINING   (QUIT, protocol error: answer what
 *                                          is in flight, then close)
 *   any --client_break--> BROKEN          (a reply could not be kept: close
 *                                          at the next flush, never a
 *                                          shifted reply)
 *   any --client_close--> CLOSED          (the one release path: requests
 *                                          orphaned, off every list, the
 *                                          struct freed once off the flush
 *                                          list)
 *
 * PARKED: the client's parsed command must wait (kvp_command_fn returned
 * KV_AGAIN) for a reason -- no table yet, its bucket blocked, a table swap
 * held back behind migrate-on-access steps. It waits on its set's park list
 * until the worker resumes the list (a new table) or request_timeout passes
 * since it first parked (an error reply, in its turn). Nothing is read
 * meanwhile, so the commands after it keep their order.
 *
 * Reply order: each client has a FIFO of requests (req.h). A reply that
 * completes the oldest request goes straight into `out`; others wait in
 * their request and are moved when everything before them is done. All
 * output of a pass of the event loop is written by one flush at its end.
 *
 * Commands go up to the dispatcher through the set's on_command pointer:
 * this layer knows nothing of routing. */
#ifndef KVP_CLIENT_H
#define KVP_CLIENT_H

#include "../core/buf.h"
#include "../core/resp.h"
#include "conf.h"
#include "req.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>

enum kvp_client_state {
    KVP_CLIENT_OPEN = 0,
    KVP_CLIENT_PARKED,
    KVP_CLIENT_DRAINING,
    KVP_CLIENT_BROKEN,
    KVP_CLIENT_CLOSED,
};

/* Why a client's parsed command waits. */
enum kvp_park_reason {
    KVP_PARK_NO_TABLE = 1,     /* no bucket table yet */
    KVP_PARK_BLOCKED,          /* a key's bucket is blocked (MIGRATE.START, phase 1) */
    KVP_PARK_TABLE_SWAP,       /* a new table waits for migrate-on-access steps */
};

/* A client with no bytes held reads into its worker's scratch buffer and
 * keeps (copies) only what is left unparsed: idle connections hold no
 * input buffer. */
#define KVP_IN_SCRATCH (16 * 1024)

struct kvp_clients;

typedef struct kvp_client {
    struct kvp_clients *set;
    struct kvp_client *prev, *next; /* the set's client list */
    int fd;
    uint8_t state;             /* enum kvp_client_state */
    uint8_t park_reason;       /* PARKED: enum kvp_park_reason */
    unsigned authed : 1;
    uint8_t resp;              /* the client's protocol: 2, or 3 after HELLO 3 */
    unsigned dirty : 1;        /* on the set's flush list */
    unsigned read_paused : 1;  /* back-pressure: too much output or in flight */
    unsigned subscribed : 1;   /* the pub/sub layer's: a subscription is held, so
                                * only the SUBSCRIBE family, PING, QUIT, RESET */
    struct event *rev, *wev;
    kv_buf in;
    kv_req_parser parser;
    kv_buf out;
    kvp_req *head, *tail;
    int nreq;
    size_t held;               /* reply bytes waiting in requests behind the head */
    uint64_t id;
    uint64_t created_ms;       /* accepted at (the worker's clock) */
    /* read by other workers' CLIENT LIST (relaxed: a plain load/store) */
    _Atomic uint64_t last_active_ms;
    /* the last command's name, a static string ("get", "client|list"),
     * set by the dispatcher */
    const char *_Atomic last_cmd;
    _Atomic size_t tot_mem;    /* mem as last counted, for CLIENT LIST */
    atomic_int killed;         /* CLIENT KILL from any worker: closed by its own */
    atomic_uchar no_evict;     /* CLIENT NO-EVICT on: maxmemory_clients spares it */
    char *name;                /* changed under the set's lock (kvp_client_set_name) */
    char peer[24];             /* "255.255.255.255:65535" */
    /* PARKED: the command's bytes, since when it waits (a resume that
     * parks it again keeps the time), the park list links */
    size_t cmd_len;
    uint64_t park_since_ms;
    struct kvp_client *park_prev, *park_next;
    void *lent;                /* the dispatcher's: a backend connection lent to
                                * this client, given back when it goes */
    unsigned lent_pinned : 1;  /* the dispatcher's: lent holds a WATCH (kept
                                * until EXEC/DISCARD/UNWATCH); else it is kept
                                * from the client's last blocking command */
    void *session;             /* the session layer's: a transaction being
                                * queued (NULL for almost every client) */
    void *pubsub;              /* the pub/sub layer's: the client's subscriptions
                                * (NULL for almost every client) */
    size_t session_mem;        /* bytes the session holds, counted in mem
                                * (maxmemory_clients sees a huge MULTI queue) */
    size_t mem;                /* its buffers as last counted in the set's mem */
    uint64_t soft_since_ms;    /* over client_output_soft_mb since (0: not over) */
} kvp_client;

/* KV_OK: handled (replied, or requests queued); KV_AGAIN: the command must
 * wait, c->park_reason says for what. */
typedef int (*kvp_command_fn)(void *ctx, kvp_client *c, int argc, kv_str *argv);

/* A worker's clients. */
typedef struct kvp_clients {
    struct event_base *base;
    kvp_clock *clock;
    kvp_req_pool *pool;
    kvp_command_fn on_command;
    void *cmd_ctx;
    /* a client is closing (after its requests were orphaned): what the
     * layer above lent it goes back (ctx = cmd_ctx) */
    void (*on_close)(void *ctx, kvp_client *c);
    kvp_client *list;
    int n;
    kvp_client **dirty;
    int ndirty, capdirty;
    kvp_client *parked_head, *parked_tail;
    char *in_scratch;          /* KVP_IN_SCRATCH bytes clients read into */
    uint64_t mem;              /* all its clients' buffers (counted at each flush) */
    /* Guards the list's membership and the clients' names against readers
     * on other workers (kvp_clients_visit): taken by the owner at accept,
     * close and SETNAME, never per command. */
    pthread_mutex_t mu;
} kvp_clients;

/* The set's pool gets its done callback here (requests complete into
 * their clients). */
int kvp_clients_init(kvp_clients *set, struct event_base *base, kvp_clock *clock, kvp_req_pool *pool,
                     kvp_command_fn on_command, void *cmd_ctx);
/* Every client closed (requests orphaned, no reply), the set's storage
 * freed: the worker is stopping. */
void kvp_clients_free(kvp_clients *set);
/* A new connection from peer; loopback: the peer is 127.0.0.0/8 (with no
 * client_password, protected_mode serves only those). */
void kvp_clients_accept(kvp_clients *set, int fd, const char *peer, int loopback);
/* Write every client that got output; close those broken or done. */
void kvp_clients_flush(kvp_clients *set);
/* Once a second: idle clients closed (client_timeout), idle buffers given back. */
void kvp_clients_tick(kvp_clients *set);
/* Every parked client tries its command again (a new table is in). */
void kvp_clients_resume_parked(kvp_clients *set);
/* Parked commands older than request_timeout are answered with an error. */
void kvp_clients_expire_parked(kvp_clients *set);

/* Every client of every worker's set (the sets register themselves at
 * init), each set under its lock, so the clients stay allocated during
 * fn: for CLIENT LIST / KILL over the whole proxy. fn must not block nor
 * take a set's lock. */
typedef void (*kvp_client_visit_fn)(void *ctx, kvp_client *c);
void kvp_clients_visit(kvp_client_visit_fn fn, void *ctx);
/* Inside a visit, from any thread: c is closed by its own worker (its
 * socket is shut down, so the close comes at its next event, or at the
 * tick if it reads nothing). Killing oneself: see kvp_client_drain. */
void kvp_client_kill(kvp_client *c);
/* The client's name (len 0: none). KV_ENOMEM leaves it unchanged. */
int kvp_client_set_name(kvp_client *c, const char *p, size_t len);
/* The socket's local address ("ip:port"), or "" when unknown. */
void kvp_client_laddr(const kvp_client *c, char *buf, size_t n);

/* For the dispatcher: replies in the client's order. */
void kvp_client_reply(kvp_client *c, const char *p, size_t n);
void kvp_client_reply_str(kvp_client *c, const char *s);
void kvp_client_reply_err(kvp_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A request that waits for backends, queued in the client's order. */
kvp_req *kvp_client_req_new(kvp_client *c, uint8_t merge, int nfrags);
/* OPEN -> DRAINING: answer what is in flight, then close (QUIT). */
void kvp_client_drain(kvp_client *c);

#endif
