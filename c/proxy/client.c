/* client.c -- a client connection: read, parse, dispatch, and write replies
 * strictly in request order.
 *
 * Replies that can go out at once (the request is the oldest one still
 * waiting) are copied straight into `out`; others wait in their request's
 * own buffer and are copied into `out` when everything before
 * them is done. All output of one event is written by one flush at its end.
 *
 * Back-pressure: while `out` holds more than CLIENT_OUT_HIGH bytes or more
 * than CLIENT_MAX_INFLIGHT requests wait, the client is not read; a client
 * whose output passes CLIENT_OUT_MAX is closed (and logged). Output counts
 * the replies already in `out` plus those waiting (held) in requests behind
 * a slow head, so a stuck first request cannot make them pile up. A protocol error
 * is answered after the replies of the commands before it, then the
 * connection closes. */
#include "dp.h"
#include "errors.h"
#include "../core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLIENT_READ_CHUNK KVP_IN_SCRATCH
#define CLIENT_IN_MAX (KV_RESP_MAX_BULK + 64 * 1024 * 1024)
#define CLIENT_OUT_HIGH (4 * 1024 * 1024)
#define CLIENT_OUT_MAX (512UL * 1024 * 1024)
#define CLIENT_MAX_INFLIGHT 8192
#define REQ_POOL_MAX 4096
/* A pooled request keeps up to this many fragments and MGET keys' maps;
 * beyond, their memory goes back with the request (a rare huge MGET must not
 * pin memory in thousands of pooled requests). */
#define REQ_POOL_FRAGS 64
#define REQ_POOL_KEYS 1024
/* Bytes of fragment reply buffers a pooled request keeps in all: enough for
 * the replies of an ordinary MGET, and at most REQ_POOL_MAX times this per
 * worker (8 MB) however big the replies were. */
#define REQ_POOL_REPLY_BYTES 2048

static void client_read_cb(evutil_socket_t fd, short what, void *arg);
static void client_write_cb(evutil_socket_t fd, short what, void *arg);
static void client_process(kvp_client *c);
static void req_free(kvp_worker *w, kvp_req *r);

/* ------------------------------------------------------------- requests */

kvp_req *kvp_req_new(kvp_client *c, uint8_t merge, int nfrags)
{
    kvp_worker *w = c->w;
    kvp_req *r = w->free_reqs;
    if (r) {
        w->free_reqs = r->next;
        w->nfree_reqs--;
    } else {
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return NULL;
        kv_buf_init(&r->reply, KVP_OUT_MAX);
        kv_buf_init(&r->first_err, 64 * 1024);
        kv_buf_init(&r->pick, 1024 * 1024);
    }
    r->next = NULL;
    r->c = c;
    r->w = w;
    r->merge = merge;
    r->done = 0;
    r->strip_key = 0;
    r->nfrags = (uint16_t)nfrags;
    r->pending = 0;
    r->held = 0;
    r->start_ms = w->now_ms;
    r->start_us = w->now_us;
    r->tver = 0;
    r->sum = r->sum2 = 0;
    r->nerr = 0;
    r->picks = 0;
    r->nkeys = 0;
    r->info_section = 0;
    r->oom = 0;
    if ((nfrags > 1 || merge != KVP_MERGE_NONE) && kvp_req_ensure_frags(r) != KV_OK) {
        req_free(w, r);
        return NULL;
    }
    /* append to the client's FIFO */
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->nreq++;
    return r;
}

/* Free fragments' and key maps' storage (all of it, or what is too big to
 * keep in a pooled request). */
static void req_drop_storage(kvp_req *r, int all)
{
    if (all || r->frag_pool_cap > REQ_POOL_FRAGS) {
        for (int i = 0; i < r->frag_pool_cap; i++)
            kv_buf_deinit(&r->frag_pool[i].reply);
        free(r->frag_pool);
        r->frag_pool = NULL;
        r->frag_pool_cap = 0;
    }
    if (all || r->keys_cap > REQ_POOL_KEYS) {
        free(r->key_frag);
        free(r->key_pos);
        r->key_frag = NULL;
        r->key_pos = NULL;
        r->keys_cap = 0;
    }
}

static void req_free(kvp_worker *w, kvp_req *r)
{
    int pooled = w->nfree_reqs < REQ_POOL_MAX;
    if (r->frags) {
        size_t kept = 0;
        for (int i = 0; i < r->nfrags; i++) {
            kvp_frag *f = &r->frags[i];
            kv_buf_consume(&f->reply, kv_buf_len(&f->reply));
            /* keep the first buffers up to the budget, as they are */
            if (pooled && kept + f->reply.cap <= REQ_POOL_REPLY_BYTES)
                kept += f->reply.cap;
            else
                kv_buf_release(&f->reply);
            if (f->holding)
                kv_buf_deinit(&f->held);
            f->holding = 0;
        }
        r->frags = NULL;
    }
    kv_buf_consume(&r->reply, kv_buf_len(&r->reply));
    kv_buf_consume(&r->first_err, kv_buf_len(&r->first_err));
    kv_buf_consume(&r->pick, kv_buf_len(&r->pick));
    req_drop_storage(r, !pooled);
    if (pooled) {
        kv_buf_shrink(&r->first_err, 256);
        kv_buf_shrink(&r->reply, 4096);
        kv_buf_shrink(&r->pick, 256);
        r->next = w->free_reqs;
        w->free_reqs = r;
        w->nfree_reqs++;
        return;
    }
    kv_buf_deinit(&r->reply);
    kv_buf_deinit(&r->first_err);
    kv_buf_deinit(&r->pick);
    free(r);
}

/* Bytes for the client's output. If they cannot be kept the connection is
 * closed at the next flush: a reply left out would give every later reply
 * to the wrong command. */
static void client_out(kvp_client *c, const char *p, size_t n)
{
    if (c->broken || kv_buf_append(&c->out, p, n) == KV_OK)
        return;
    c->broken = 1;
    kvp_worker_mark_client(c->w, c);
}

/* A request's own reply buffer could not keep its reply: it answers out of
 * memory in its turn instead (the merge buffers latch the same way). */
static void req_keep(kvp_req *r, kv_buf *b, const char *p, size_t n)
{
    if (kv_buf_append(b, p, n) != KV_OK)
        r->oom = 1;
}

/* Move every finished request at the head of the FIFO into out. */
static void client_advance(kvp_client *c)
{
    kvp_req *r;
    while ((r = c->head) != NULL && r->done) {
        c->held -= r->held;
        if (r->oom)
            client_out(c, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
        else
            client_out(c, kv_buf_rptr(&r->reply), kv_buf_len(&r->reply));
        c->head = r->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->nreq--;
        if (r->pending == 0)
            req_free(c->w, r);
        else
            r->c = NULL; /* cannot happen for done requests; kept for safety */
    }
    kvp_worker_mark_client(c->w, c);
}

/* Response time of a command that went to a backend, counted once its
 * reply is complete. */
static void req_timed(kvp_req *r)
{
    kvp_worker *w = r->w;
    uint64_t rt = w->now_us - r->start_us;
    kvp_stat_add(&w->st.rt_sum_us, rt);
    kvp_stat_add(&w->st.rt_count, 1);
    if (rt > (uint64_t)atomic_load_explicit(&kvp_g.slow_cmd_time_ms, memory_order_relaxed) * 1000)
        kvp_stat_add(&w->st.slow, 1);
}

/* The request was routed with the worker's current table: count it until
 * it completes, so the worker knows when an older table is drained. */
void kvp_req_routed(kvp_req *r)
{
    r->tver = r->w->table->version;
    r->w->inflight_cur++;
}

static void req_untrack(kvp_req *r)
{
    if (r->tver) {
        kvp_worker_req_done(r->w, r);
        r->tver = 0;
    }
}

/* Give r its r->nfrags fragments, from the storage it keeps while pooled
 * (grown when too small). Their reply buffers are empty: req_free left
 * them so. */
int kvp_req_ensure_frags(kvp_req *r)
{
    if (r->frags)
        return KV_OK;
    int n = r->nfrags;
    if (n > r->frag_pool_cap) {
        kvp_frag *p = realloc(r->frag_pool, (size_t)n * sizeof(*p));
        if (p == NULL)
            return KV_ENOMEM;
        for (int i = r->frag_pool_cap; i < n; i++) {
            memset(&p[i], 0, sizeof(p[i]));
            kv_buf_init(&p[i].reply, CLIENT_IN_MAX);
        }
        r->frag_pool = p;
        r->frag_pool_cap = n;
    }
    for (int i = 0; i < n; i++) {
        kvp_frag *f = &r->frag_pool[i];
        f->be = f->target = NULL;
        f->holding = 0;
        f->premig_pending = 0;
        f->premig_failed = 0;
    }
    r->frags = r->frag_pool;
    return KV_OK;
}

/* MGET: room for the fragment and position of each of nkeys keys. */
int kvp_req_map_keys(kvp_req *r, int nkeys)
{
    if (nkeys > r->keys_cap) {
        uint16_t *kf = realloc(r->key_frag, sizeof(uint16_t) * (size_t)nkeys);
        if (kf == NULL)
            goto oom;
        r->key_frag = kf;
        uint32_t *kp = realloc(r->key_pos, sizeof(uint32_t) * (size_t)nkeys);
        if (kp == NULL)
            goto oom;
        r->key_pos = kp;
        r->keys_cap = nkeys;
    }
    r->nkeys = nkeys;
    return KV_OK;
oom:
    r->nkeys = -1; /* the merge answers out of memory */
    return KV_ENOMEM;
}

/* The reply of one migrate-on-access MIGRATE of fragment f. When the last
 * one is in, the held command goes to its target -- or, if any MIGRATE
 * failed, the fragment fails and nothing runs on the target (running it
 * would act on an empty key while the data is still on the source). */
/* Fragment f's held command must not run (a MIGRATE failed or could not be
 * sent): it will answer msg, a whole error line, once its MIGRATEs are in.
 * The first failure is the one reported. */
void kvp_frag_premig_fail(kvp_req *r, int f, const char *msg)
{
    kvp_frag *fr = &r->frags[f];
    if (fr->premig_failed)
        return;
    fr->premig_failed = 1;
    kv_buf_consume(&fr->reply, kv_buf_len(&fr->reply));
    if (kv_buf_append(&fr->reply, msg, strlen(msg)) != KV_OK)
        kv_buf_consume(&fr->reply, kv_buf_len(&fr->reply)); /* empty: answered as out of memory */
}

void kvp_req_premig_reply(kvp_req *r, int f, const char *p, size_t n)
{
    kvp_frag *fr = &r->frags[f];
    int ok = n >= 5 && (memcmp(p, "+OK\r\n", 5) == 0 || (n >= 8 && memcmp(p, "+NOKEY\r\n", 8) == 0));
    if (!ok && !fr->premig_failed) {
        char msg[400];
        size_t body = n > 2 ? n - 2 : 0;
        if (body > 300)
            body = 300;
        const char *text = p;
        if (body > 0 && p[0] == '-') {
            text++;
            body--;
        }
        snprintf(msg, sizeof(msg), "-ERR migrate-on-access failed: %.*s\r\n", (int)body, text);
        kvp_frag_premig_fail(r, f, msg);
    }
    if (--fr->premig_pending > 0)
        return;
    kvp_worker *w = r->w;
    if (fr->premig_failed) {
        char msg[400];
        size_t m = kv_buf_len(&fr->reply);
        if (m == 0 || m > sizeof(msg)) {
            m = sizeof(KVP_ERR_OOM) - 1;
            memcpy(msg, KVP_ERR_OOM, m);
        } else {
            memcpy(msg, kv_buf_rptr(&fr->reply), m);
        }
        kv_buf_consume(&fr->reply, kv_buf_len(&fr->reply));
        kv_buf_consume(&fr->held, kv_buf_len(&fr->held));
        kvp_req_frag_reply(r, f, msg, m);
    } else if (!kvp_backend_usable(fr->target)) {
        kv_buf_consume(&fr->held, kv_buf_len(&fr->held));
        kvp_req_frag_reply(r, f, fr->target->unavailable, fr->target->unavailable_len);
    } else {
        kv_buf *out = &fr->target->out;
        size_t mark = kv_buf_mark(out);
        kv_buf_append(out, kv_buf_rptr(&fr->held), kv_buf_len(&fr->held));
        kv_buf_consume(&fr->held, kv_buf_len(&fr->held));
        if (kv_buf_settle(out, mark) != KV_OK)
            kvp_req_frag_reply(r, f, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
        else
            kvp_backend_enqueue(fr->target, r, f);
    }
    kvp_worker_premig_done(w);
}

/* The request's final reply is ready in r->reply (or must be built). */
static void req_complete(kvp_req *r)
{
    req_untrack(r);
    req_timed(r);
    if (r->merge != KVP_MERGE_NONE && !r->oom && kvp_merge_finish(r, &r->reply) != KV_OK)
        r->oom = 1;
    r->done = 1;
    kvp_client *c = r->c;
    if (c == NULL) {
        /* the client is gone: nobody reads this reply */
        if (r->pending == 0)
            req_free(r->w, r);
        return;
    }
    if (c->head == r)
        client_advance(c);
}

/* A reply of n bytes stays with r until the requests before it are done. */
static void req_hold(kvp_req *r, size_t n)
{
    kvp_client *c = r->c;
    if (c == NULL)
        return;
    r->held += n;
    c->held += n;
    if (c->held > CLIENT_OUT_HIGH)
        kvp_worker_mark_client(c->w, c); /* its flush checks the bounds */
}

void kvp_req_frag_reply(kvp_req *r, int frag, const char *p, size_t n)
{
    if (r->merge == KVP_MERGE_NONE) {
        r->pending--;
        kvp_client *c = r->c;
        if (r->strip_key && n > 0 && p[0] == '*') {
            req_hold(r, n);
            if (kvp_reply_strip_key0(p, n, &r->reply) != KV_OK)
                r->oom = 1;
            if (r->pending == 0)
                req_complete(r);
            return;
        }
        if (c && c->head == r && r->pending == 0) {
            /* fast path: oldest request, reply goes straight out */
            req_untrack(r);
            req_timed(r);
            client_out(c, p, n);
            c->head = r->next;
            if (c->head == NULL)
                c->tail = NULL;
            c->nreq--;
            req_free(c->w, r);
            if (c->head && c->head->done)
                client_advance(c);
            else
                kvp_worker_mark_client(c->w, c);
            return;
        }
        req_hold(r, n);
        req_keep(r, &r->reply, p, n);
        if (r->pending == 0)
            req_complete(r);
        return;
    }
    req_hold(r, n);
    kvp_merge_fragment(r, frag, p, n);
    if (--r->pending == 0)
        req_complete(r);
}

/* Setting up r failed (out of memory) before anything was sent: it
 * answers msg in its turn instead of waiting forever. */
void kvp_req_abort(kvp_req *r, const char *msg)
{
    req_keep(r, &r->reply, msg, strlen(msg));
    r->merge = KVP_MERGE_NONE;
    r->pending = 0;
    req_untrack(r);
    r->done = 1;
    if (r->c && r->c->head == r)
        client_advance(r->c);
}

/* Called after all fragments were sent: drops the set-up guard. */
void kvp_req_setup_done(kvp_req *r)
{
    if (--r->pending == 0)
        req_complete(r);
}

/* -------------------------------------------------------------- replies */

void kvp_client_reply(kvp_client *c, const char *p, size_t n)
{
    if (c->head == NULL) {
        client_out(c, p, n);
        kvp_worker_mark_client(c->w, c);
        return;
    }
    /* earlier requests still wait: queue behind them */
    kvp_req *r = kvp_req_new(c, KVP_MERGE_NONE, 1);
    if (r == NULL) {
        c->broken = 1; /* its place in the order cannot be kept */
        kvp_worker_mark_client(c->w, c);
        return;
    }
    req_keep(r, &r->reply, p, n);
    r->done = 1;
}

void kvp_client_reply_str(kvp_client *c, const char *s)
{
    kvp_client_reply(c, s, strlen(s));
}

void kvp_client_reply_err(kvp_client *c, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n >= (int)sizeof(buf)) {
        n = sizeof(buf) - 1;
        buf[n - 2] = '\r';
        buf[n - 1] = '\n';
    }
    kvp_client_reply(c, buf, (size_t)n);
}

/* ------------------------------------------------------------ lifecycle */

void kvp_client_accept(kvp_worker *w, int fd, const char *peer)
{
    int count = atomic_fetch_add(&kvp_g.client_count, 1) + 1;
    if (count > atomic_load(&kvp_g.max_client_num)) {
        ssize_t wr = write(fd, KVP_ERR_MAX_CLIENTS, sizeof(KVP_ERR_MAX_CLIENTS) - 1);
        (void)wr;
        close(fd);
        atomic_fetch_sub(&kvp_g.client_count, 1);
        static __thread uint64_t last_log;
        if (w->now_ms - last_log > 10000) {
            kv_log_warn("refused client %s: max_client_num %d reached", peer,
                        atomic_load(&kvp_g.max_client_num));
            last_log = w->now_ms;
        }
        return;
    }
    kvp_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        atomic_fetch_sub(&kvp_g.client_count, 1);
        return;
    }
    c->w = w;
    c->fd = fd;
    c->id = atomic_fetch_add(&kvp_g.next_client_id, 1) + 1;
    c->last_active_ms = w->now_ms;
    c->authed = kvp_g.client_password[0] == '\0';
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    kv_buf_init(&c->in, CLIENT_IN_MAX);
    kv_req_parser_init(&c->parser);
    kv_buf_init(&c->out, KVP_OUT_MAX);
    c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, client_read_cb, c);
    c->wev = event_new(w->base, fd, EV_WRITE, client_write_cb, c);
    event_add(c->rev, NULL);
    c->next = w->clients;
    if (w->clients)
        w->clients->prev = c;
    w->clients = c;
    w->nclients++;
}

/* Close now. Requests still waiting for a backend are orphaned: they are
 * freed when their last fragment answers. */
static void client_close(kvp_client *c)
{
    kvp_worker *w = c->w;
    if (c->dead)
        return;
    c->dead = 1;
    kvp_req *r = c->head;
    while (r) {
        kvp_req *next = r->next;
        r->next = NULL;
        if (r->pending == 0)
            req_free(w, r);
        else
            r->c = NULL;
        r = next;
    }
    c->head = c->tail = NULL;
    event_free(c->rev);
    event_free(c->wev);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nclients--;
    atomic_fetch_sub(&kvp_g.client_count, 1);
    kvp_worker_unpark(w, c);
    /* the struct is freed once it is off the flush list (see kvp_worker_flush) */
    if (c->in.data == w->in_scratch)
        c->in.data = NULL; /* borrowed: the worker's */
    kv_buf_deinit(&c->in);
    kv_req_parser_deinit(&c->parser);
    kv_buf_deinit(&c->out);
    free(c->name);
    if (!c->dirty)
        free(c);
}

static void client_update_reading(kvp_client *c)
{
    int pause = kv_buf_len(&c->out) + c->held > CLIENT_OUT_HIGH ||
                c->nreq > CLIENT_MAX_INFLIGHT || c->parked || c->closing;
    if (pause && !c->read_paused) {
        event_del(c->rev);
        c->read_paused = 1;
    } else if (!pause && c->read_paused) {
        event_add(c->rev, NULL);
        c->read_paused = 0;
        /* bytes may already wait in the input buffer */
        if (kv_buf_len(&c->in) > 0)
            client_process(c);
    }
}

/* Write what is in out; returns -1 if the client was closed. */
static int client_flush(kvp_client *c)
{
    if (c->dead)
        return -1;
    if (c->broken) {
        static __thread uint64_t last_log;
        if (c->w->now_ms - last_log > 10000) {
            kv_log_warn("closing client %s: out of memory for its replies", c->peer);
            last_log = c->w->now_ms;
        }
        client_close(c);
        return -1;
    }
    while (kv_buf_len(&c->out) > 0) {
        ssize_t n = kv_buf_write_fd(&c->out, c->fd);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            client_close(c);
            return -1;
        }
        if (n == 0)
            break;
    }
    size_t left = kv_buf_len(&c->out);
    if (left + c->held > CLIENT_OUT_MAX) {
        kv_log_warn("closing client %s: output buffer over %lu bytes (slow reader)", c->peer,
                    CLIENT_OUT_MAX);
        client_close(c);
        return -1;
    }
    if (left > 0) {
        event_add(c->wev, NULL);
    } else if (c->closing && c->head == NULL) {
        client_close(c);
        return -1;
    }
    return 0;
}

/* Flush entry point for the worker: also frees clients closed meanwhile. */
void kvp_client_flush_marked(kvp_client *c);
void kvp_client_flush_marked(kvp_client *c)
{
    c->dirty = 0;
    if (c->dead) {
        free(c);
        return;
    }
    if (client_flush(c) == 0)
        client_update_reading(c);
}

static void client_write_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_client *c = arg;
    kvp_worker *w = c->w; /* client_flush may close and free c */
    KV_UNUSED(fd);
    KV_UNUSED(what);
    kvp_worker_clock(w);
    if (client_flush(c) == 0)
        client_update_reading(c);
}

/* Parse and dispatch every complete command in the input buffer. */
static void client_process(kvp_client *c)
{
    if (c->has_cmd) {
        /* a command parked for want of a table: run it first (argv from
         * offsets: the bytes have moved since, out of the scratch buffer) */
        for (int i = 0; i < c->parser.argc; i++)
            c->parser.argv[i].p = kv_buf_rptr(&c->in) + c->parser.arg_off[i];
        int rc = kvp_dispatch(c, c->parser.argc, c->parser.argv);
        if (rc == KV_AGAIN) {
            /* still waiting (the new table blocks its bucket too): park
             * again, keeping the time it first parked */
            kvp_worker_park(c->w, c);
            return;
        }
        c->has_cmd = 0;
        kv_buf_consume(&c->in, c->cmd_len);
    }
    while (!c->closing && !c->dead && !c->broken && kv_buf_len(&c->in) > 0) {
        if (c->nreq > CLIENT_MAX_INFLIGHT ||
            kv_buf_len(&c->out) + c->held > CLIENT_OUT_HIGH) {
            /* Over a bound with commands left in `in`: pause, so that
             * client_update_reading runs them once under it again, even if
             * the client sends nothing more (ECHO <5 MB> then PING in one
             * write used to leave the PING unanswered). */
            if (!c->read_paused) {
                event_del(c->rev);
                c->read_paused = 1;
            }
            break;
        }
        size_t consumed = 0;
        int rc = kv_req_parse(&c->parser, kv_buf_rptr(&c->in), kv_buf_len(&c->in), &consumed);
        if (rc == KV_AGAIN)
            break;
        if (rc == KV_ERR) {
            kvp_client_reply_err(c, "-ERR %s\r\n", c->parser.err);
            kv_log_debug("client %s protocol error: %s", c->peer, c->parser.err);
            c->closing = 1;
            kv_buf_consume(&c->in, kv_buf_len(&c->in));
            break;
        }
        if (c->parser.argc == 0) {
            kv_buf_consume(&c->in, consumed);
            continue;
        }
        rc = kvp_dispatch(c, c->parser.argc, c->parser.argv);
        if (rc == KV_AGAIN) {
            /* keep the parsed command and wait (c->park_reason says for what) */
            c->has_cmd = 1;
            c->cmd_len = consumed;
            c->park_since_ms = c->w->now_ms;
            kvp_worker_park(c->w, c);
            break;
        }
        kv_buf_consume(&c->in, consumed);
    }
    kvp_worker_mark_client(c->w, c);
}

/* The worker took c off its park list: try the command again. */
void kvp_client_resume(kvp_client *c)
{
    client_process(c);
    client_update_reading(c);
}

/* c's command waited request_timeout: it is answered with an error (in its
 * turn) and the client goes on with what follows it. */
void kvp_client_park_expired(kvp_client *c)
{
    switch (c->park_reason) {
    case KVP_PARK_NO_TABLE:
        kvp_client_reply_str(c, KVP_ERR_NO_TABLE);
        break;
    case KVP_PARK_BLOCKED:
        kvp_client_reply_str(c, KVP_ERR_TIMEOUT_BLOCKED);
        break;
    default:
        kvp_client_reply_str(c, KVP_ERR_TIMEOUT_TABLE_SWAP);
        break;
    }
    c->has_cmd = 0;
    kv_buf_consume(&c->in, c->cmd_len);
    client_process(c);
    client_update_reading(c);
}

/* After a read into the worker's scratch buffer: keep a copy of what is
 * left (a partial command, commands held back) in the client's own buffer. */
static void client_unborrow(kvp_client *c)
{
    kv_buf *b = &c->in;
    size_t len = kv_buf_len(b);
    const char *rest = kv_buf_rptr(b);
    b->data = NULL;
    b->rpos = b->wpos = b->cap = 0;
    if (len > 0 && !c->dead && kv_buf_append(b, rest, len) != KV_OK) {
        kv_log_warn("closing client %s: out of memory for its query buffer", c->peer);
        client_close(c);
    }
}

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_client *c = arg;
    kvp_worker *w = c->w;
    KV_UNUSED(what);
    kvp_worker_clock(w);
    int borrowed = c->in.data == NULL;
    if (borrowed) {
        c->in.data = w->in_scratch;
        c->in.cap = KVP_IN_SCRATCH;
    }
    ssize_t n = kv_buf_read_fd(&c->in, fd, CLIENT_READ_CHUNK);
    if (n == 0 || (n < 0 && n != -1) || (n == -1 && errno != EAGAIN && errno != EINTR)) {
        if (n == -2)
            kv_log_warn("closing client %s: query buffer limit reached", c->peer);
        client_close(c);
        return;
    }
    if (n > 0) {
        c->last_active_ms = w->now_ms;
        client_process(c);
    }
    /* c is still allocated: client_process marked it for the flush */
    if (borrowed)
        client_unborrow(c);
}

/* Once a second: close clients idle past client_timeout, and give back the
 * query buffer a big request grew (10 MB SET) once the client has been
 * quiet for a second, as Redis does, so idle connections hold no such
 * memory. */
void kvp_client_tick(kvp_worker *w)
{
    int idle_s = atomic_load_explicit(&kvp_g.client_timeout_s, memory_order_relaxed);
    uint64_t limit = idle_s > 0 ? (uint64_t)idle_s * 1000 : 0;
    kvp_client *c = w->clients;
    while (c) {
        kvp_client *next = c->next;
        uint64_t idle = w->now_ms - c->last_active_ms;
        if (limit && c->head == NULL && idle > limit) {
            kv_log_debug("closing idle client %s", c->peer);
            client_close(c);
        } else if (idle >= 1000) {
            if (kv_buf_len(&c->in) == 0)
                kv_buf_release(&c->in);
            if (kv_buf_len(&c->out) == 0)
                kv_buf_release(&c->out);
        }
        c = next;
    }
}
