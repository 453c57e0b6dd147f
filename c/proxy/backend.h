/* backend.h -- a worker's connections to the Redis masters.
 *
 * States, one function per transition (backend.c):
 *
 *   DOWN --be_connect--> CONNECTING --be_connected--> AUTHING --be_ready--> READY
 *     ^                       |                          |                    |
 *     +------be_set_down------+--------------------------+     be_reset ------+
 *                                                               (fail in flight, reconnect)
 *
 * While CONNECTING/AUTHING, commands wait in `out` (their in-flight entries
 * already queued, in order); AUTH is sent alone first so a wrong password
 * fails the queue with a clear error instead of NOAUTH replies. While DOWN,
 * callers fail fast (kvp_backend_usable() == 0) until the back-off expires.
 *
 * Every command written into `out` is followed by kvp_backend_send, which
 * checks it landed whole and queues its in-flight entry: the callback that gets the command's reply
 * (a request fragment, a migrate-on-access step, a RESET). Replies are
 * matched to entries in order. When the oldest entry is older than
 * request_timeout the connection is dropped and every entry is answered
 * "-ERR request timeout", so a stuck path never holds a client longer.
 *
 * Shared and owned. The shared connection of a master carries every
 * client's pipelined commands. A client that needs a connection of its own
 * for a while (WATCH/MULTI, blocking commands, pub/sub) borrows one with
 * kvp_backends_lend -- at most owned_max per master and worker -- and gives
 * it back with kvp_backend_give_back: a connection with nothing in flight is
 * RESET (Redis's RESET: no transaction, no watch, no subscription, db 0) and
 * kept idle for the next borrower; any other is closed. An owned connection
 * that breaks is not reconnected: its state is gone and its owner must know.
 *
 * Subscriber. A connection in subscribed mode (kvp_backends_subscriber, the
 * pub/sub layer's: one per master and worker carries every subscription of
 * the worker's clients) gets no replies matched to requests: everything
 * Redis sends on it -- (un)subscribe confirmations, messages -- goes whole
 * to its push callback, and its state callback hears when it is READY (so
 * its owner subscribes again what a broken connection lost) and when it
 * breaks. It is reconnected like a shared one until its owner closes it.
 */
#ifndef KVP_BACKEND_H
#define KVP_BACKEND_H

#include "../core/buf.h"
#include "../core/resp.h"
#include "conf.h"

#include <event2/event.h>
#include <stdint.h>

struct kvp_backend;
/* A subscriber connection's callbacks: one whole RESP value Redis pushed;
 * the connection became READY (ready = 1) or broke (0). */
typedef void (*kvp_push_fn)(void *ctx, struct kvp_backend *be, const char *p, size_t n);
typedef void (*kvp_conn_state_fn)(void *ctx, struct kvp_backend *be, int ready);

/* An in-flight entry's callback: the reply (or an error in its place). */
typedef void (*kvp_reply_fn)(void *ctx, uint32_t tag, const char *p, size_t n);

typedef struct kvp_inflight {
    kvp_reply_fn cb;
    void *ctx;
    uint32_t tag;
    uint64_t sent_ms;
} kvp_inflight;

enum kvp_backend_state { KVP_BE_DOWN = 0, KVP_BE_CONNECTING, KVP_BE_AUTHING, KVP_BE_READY };

enum kvp_backend_mode {
    KVP_BE_SHARED = 0, /* the master's pipelined connection */
    KVP_BE_OWNED,      /* lent to one owner */
    KVP_BE_RESETTING,  /* given back: RESET sent, waiting for +RESET */
    KVP_BE_IDLE,       /* reset, ready to be lent again */
    KVP_BE_SUBSCRIBER, /* subscribed mode: what Redis sends goes to on_push */
};

struct kvp_backends;

typedef struct kvp_backend {
    struct kvp_backends *set;
    char addr[KVP_ADDR_MAX];
    char host[64];
    int port;
    int fd;
    int state;                 /* enum kvp_backend_state */
    int mode;                  /* enum kvp_backend_mode */
    uint8_t resp3;             /* speaks RESP3 (HELLO 3 at connect): for RESP3 clients */
    void *owner;               /* KVP_BE_OWNED: who borrowed it */
    kvp_push_fn on_push;       /* KVP_BE_SUBSCRIBER: its callbacks (ctx: owner) */
    kvp_conn_state_fn on_state;
    struct event *rev, *wev;
    kv_buf in;
    kv_reply_scanner scan;
    kv_buf out;                /* written when READY; held while connecting */
    kvp_inflight *ring;
    uint32_t ring_cap, ring_head, ring_len;
    uint64_t state_since_ms;   /* connect start / down since / idle since */
    uint64_t retry_at_ms;      /* when DOWN: next reconnect attempt */
    uint64_t last_read_ms;     /* last bytes from the backend: progress */
    int backoff_ms;
    int in_table;              /* still routed to by the worker's table */
    int dirty;                 /* queued on the set's flush list */
    int was_down_logged;
    int forced_down;           /* the health check says down: fail fast, no reconnect */
    int held_for;              /* the dispatcher's: commands held behind migrate-on-access
                                * steps that will be written here (an owned connection
                                * is given back only once they are out) */
    uint32_t conn_gen;         /* bumped when the socket closes */
    char unavailable[KVP_ADDR_MAX + 48]; /* "-ERR backend <addr> unavailable\r\n" */
    size_t unavailable_len;
} kvp_backend;

/* A worker's backends: every connection it holds, and those with output to
 * write at the end of this pass of the event loop. */
typedef struct kvp_backends {
    struct event_base *base;
    kvp_clock *clock;
    int idx;                   /* the worker, for logs */
    int owned_max;             /* owned connections per master (lent, resetting) */
    kvp_backend **all;
    int n, cap;
    kvp_backend **dirty;
    int ndirty, capdirty;
} kvp_backends;

#define KVP_OWNED_MAX_DEFAULT 64

void kvp_backends_init(kvp_backends *set, struct event_base *base, kvp_clock *clock, int idx);
void kvp_backends_free(kvp_backends *set);
/* The shared connection to addr: found, or made and connecting. NULL: out
 * of memory. */
kvp_backend *kvp_backends_get(kvp_backends *set, const char *addr);
/* The shared RESP3 connection to addr (RESP3 clients' commands: replies
 * forwarded as Redis writes them in RESP3): found (and marked in the
 * table), or with create made and connecting; NULL otherwise or out of
 * memory. */
kvp_backend *kvp_backends_get3(kvp_backends *set, const char *addr, int create);
/* Before a table install: no master is in the table until _get marks it. */
void kvp_backends_untable(kvp_backends *set);
/* Write every connection that got output. */
void kvp_backends_flush(kvp_backends *set);
/* Timeouts, reconnects, idle buffers, connections no table routes to. */
void kvp_backends_tick(kvp_backends *set);
/* The health check's verdict on addr. */
void kvp_backends_force(kvp_backends *set, const char *addr, int down);

/* 0 when the master is known down (fail fast); may start a reconnect. */
int kvp_backend_usable(kvp_backend *be);
/* The command written into be->out since mark (kv_buf_mark) goes out and
 * waits for its reply: cb(ctx, tag). KV_ENOMEM when a write of it failed or
 * its entry cannot be queued: every byte since mark is taken back, nothing
 * is queued and cb will not be called -- the caller answers the error. */
int kvp_backend_send(kvp_backend *be, size_t mark, kvp_reply_fn cb, void *ctx, uint32_t tag);

/* As kvp_backend_send, for a command that may block in Redis (BLPOP 0,
 * XREAD BLOCK): request_timeout does not apply to it -- it waits as long as
 * Redis makes it (the connection's keepalive and the health check still
 * end it when the master is gone). Only on an owned connection. */
int kvp_backend_send_blocking(kvp_backend *be, size_t mark, kvp_reply_fn cb, void *ctx, uint32_t tag);

/* A group of count commands written into be->out since mark that must
 * reach Redis back to back (MULTI ... EXEC): all of them go out with their
 * in-flight entries, or none (KV_ENOMEM, as kvp_backend_send). Only the
 * last command's reply goes to cb; the others' are dropped (the +QUEUED
 * of a transaction: EXEC's reply tells everything). */
int kvp_backend_send_group(kvp_backend *be, size_t mark, uint32_t count, kvp_reply_fn cb, void *ctx,
                           uint32_t tag);

/* A connection of owner's own to addr (an idle one, or a new one): NULL
 * when owned_max connections of that master are lent or resetting. */
kvp_backend *kvp_backends_lend(kvp_backends *set, const char *addr, void *owner, int resp3);
/* The owner is done with it (or gone): RESET and kept idle when nothing is
 * in flight, else closed. be must not be used by the owner afterwards. */
void kvp_backend_give_back(kvp_backend *be);
/* The owner is done with it and what it has in flight will answer (an
 * EXEC, a GET after WATCH): RESET goes out behind it, the replies still
 * reach their callbacks, and the connection is lendable once RESET
 * answers. Not for a command that may block: use kvp_backend_give_back. */
void kvp_backend_give_back_after(kvp_backend *be);
/* A new subscriber connection to addr, connecting; ctx is its owner
 * (be->owner). NULL: out of memory. */
kvp_backend *kvp_backends_subscriber(kvp_backends *set, const char *addr, kvp_push_fn on_push,
                                     kvp_conn_state_fn on_state, void *ctx);
/* The command written into be->out since mark goes out with no in-flight
 * entry (a subscriber's SUBSCRIBE: its confirmations are pushes). KV_ENOMEM
 * as kvp_backend_send. */
int kvp_backend_send_push(kvp_backend *be, size_t mark);
/* A subscriber connection out of sync with its owner: closed and
 * reconnected (the state callback hears both). */
void kvp_backend_reconnect(kvp_backend *be, const char *why);
/* The owner is done with a subscriber connection: closed (its
 * subscriptions end with it), no callback any more, freed by the tick. */
void kvp_backend_close(kvp_backend *be);

/* Owned connections of addr (lent or resetting), for the bound and tests. */
int kvp_backends_owned(const kvp_backends *set, const char *addr);

#endif
