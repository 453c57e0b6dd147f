/* client.c -- see client.h.
 *
 * Back-pressure: while `out` holds more than CLIENT_OUT_HIGH bytes or more
 * than CLIENT_MAX_INFLIGHT requests wait, the client is not read; a client
 * whose output passes client_output_hard_mb (or client_output_soft_mb for
 * client_output_soft_seconds) is closed, and when all the worker's clients'
 * buffers pass its share of maxmemory_clients the one using the most is
 * closed, as Redis 7 does (each logged, rate-limited). Output counts
 * the replies already in `out` plus those waiting (held) in requests behind
 * a slow head, so a stuck first request cannot make them pile up. A protocol
 * error is answered after the replies of the commands before it, then the
 * connection closes. */
#include "client.h"
#include "errors.h"
#include "../core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENT_READ_CHUNK KVP_IN_SCRATCH
#define CLIENT_IN_MAX (KV_RESP_MAX_BULK + 64 * 1024 * 1024)
#define CLIENT_OUT_HIGH (4 * 1024 * 1024)
#define CLIENT_MAX_INFLIGHT 8192

static void client_read_cb(evutil_socket_t fd, short what, void *arg);
static void client_write_cb(evutil_socket_t fd, short what, void *arg);
static void client_process(kvp_client *c);
static void client_close(kvp_client *c);

static uint64_t client_now(const kvp_client *c) { return c->set->clock->now_ms; }

/* Queued on the set's flush list (output to write, bounds to check). */
static void client_mark(kvp_client *c)
{
    kvp_clients *set = c->set;
    if (c->dirty)
        return;
    if (set->ndirty == set->capdirty) {
        int nc = set->capdirty ? set->capdirty * 2 : 64;
        kvp_client **d = realloc(set->dirty, (size_t)nc * sizeof(*d));
        if (d == NULL)
            return; /* written by its write event or the next mark */
        set->dirty = d;
        set->capdirty = nc;
    }
    set->dirty[set->ndirty++] = c;
    c->dirty = 1;
}

/* ---------------------------------------------------------- transitions */

/* -> BROKEN: a reply could not be kept, so every later one would go to the
 * wrong command: the connection is closed at the next flush. */
static void client_break(kvp_client *c)
{
    if (c->state == KVP_CLIENT_CLOSED)
        return;
    c->state = KVP_CLIENT_BROKEN;
    client_mark(c);
}

void kvp_client_drain(kvp_client *c)
{
    if (c->state == KVP_CLIENT_OPEN)
        c->state = KVP_CLIENT_DRAINING;
}

static void park_unlink(kvp_client *c)
{
    kvp_clients *set = c->set;
    if (c->park_prev)
        c->park_prev->park_next = c->park_next;
    else if (set->parked_head == c)
        set->parked_head = c->park_next;
    if (c->park_next)
        c->park_next->park_prev = c->park_prev;
    else if (set->parked_tail == c)
        set->parked_tail = c->park_prev;
    c->park_prev = c->park_next = NULL;
}

/* OPEN -> PARKED: the parsed command of len bytes at the head of `in` waits
 * (c->park_reason set by the dispatcher). Intrusive list: parking cannot
 * fail for want of memory. */
static void client_park(kvp_client *c, size_t len, int again)
{
    kvp_clients *set = c->set;
    c->state = KVP_CLIENT_PARKED;
    c->cmd_len = len;
    if (!again)
        c->park_since_ms = client_now(c);
    c->park_next = NULL;
    c->park_prev = set->parked_tail;
    if (set->parked_tail)
        set->parked_tail->park_next = c;
    else
        set->parked_head = c;
    set->parked_tail = c;
}

/* PARKED -> OPEN: the command was run (or answered); its bytes go. A
 * client that broke meanwhile (its answer could not be kept) stays broken. */
static void client_unpark(kvp_client *c)
{
    if (c->state == KVP_CLIENT_PARKED)
        c->state = KVP_CLIENT_OPEN;
    kv_buf_consume(&c->in, c->cmd_len);
    c->cmd_len = 0;
}

/* ------------------------------------------------------------- replies */

/* Bytes for the client's output; if they cannot be kept the client breaks. */
static void client_out(kvp_client *c, const char *p, size_t n)
{
    if (c->state >= KVP_CLIENT_BROKEN)
        return;
    if (kv_buf_append(&c->out, p, n) != KV_OK)
        client_break(c);
}

/* The head of the FIFO is written: off it, and back to the pool. */
static void client_pop(kvp_client *c)
{
    kvp_req *r = c->head;
    c->head = r->next;
    if (c->head == NULL)
        c->tail = NULL;
    c->nreq--;
    kvp_req_release(r);
}

/* Move every finished request at the head of the FIFO into out. */
static void client_advance(kvp_client *c)
{
    kvp_req *r;
    while ((r = c->head) != NULL && r->state == KVP_REQ_DONE) {
        if (r->oom)
            client_out(c, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
        else
            client_out(c, kv_buf_rptr(&r->reply), kv_buf_len(&r->reply));
        client_pop(c);
    }
    client_mark(c);
}

/* The pool's done callback: r's reply is complete. The oldest request's
 * goes straight out (no copy); any other waits in r. */
static void client_req_done(kvp_req *r, const char *p, size_t n)
{
    kvp_client *c = r->owner;
    if (c->head != r) {
        kvp_req_keep(r, p, n);
        if (c->held > CLIENT_OUT_HIGH)
            client_mark(c); /* its flush checks the bounds */
        return;
    }
    client_out(c, p, n);
    client_pop(c);
    if (c->head && c->head->state == KVP_REQ_DONE)
        client_advance(c);
    else
        client_mark(c);
}

kvp_req *kvp_client_req_new(kvp_client *c, uint8_t merge, int nfrags)
{
    kvp_req *r = kvp_req_new(c->set->pool, c, &c->held, merge, nfrags);
    if (r == NULL)
        return NULL;
    r->resp3 = c->resp == 3;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->nreq++;
    return r;
}

void kvp_client_reply(kvp_client *c, const char *p, size_t n)
{
    if (c->head == NULL) {
        client_out(c, p, n);
        client_mark(c);
        return;
    }
    /* earlier requests still wait: queue behind them */
    kvp_req *r = kvp_client_req_new(c, KVP_MERGE_NONE, 0);
    if (r == NULL) {
        client_break(c); /* its place in the order cannot be kept */
        return;
    }
    kvp_req_answer(r, p, n);
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

/* ------------------------------------------------------------- registry */

/* Every initialised set, for views of the whole proxy (CLIENT LIST, KILL).
 * Changed only when a worker starts or stops. */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static kvp_clients **registry;
static int nregistry, capregistry;

static int registry_add(kvp_clients *set)
{
    pthread_mutex_lock(&registry_mu);
    if (nregistry == capregistry) {
        int nc = capregistry ? capregistry * 2 : 8;
        kvp_clients **r = realloc(registry, (size_t)nc * sizeof(*r));
        if (r == NULL) {
            pthread_mutex_unlock(&registry_mu);
            return KV_ENOMEM;
        }
        registry = r;
        capregistry = nc;
    }
    registry[nregistry++] = set;
    pthread_mutex_unlock(&registry_mu);
    return KV_OK;
}

static void registry_remove(kvp_clients *set)
{
    pthread_mutex_lock(&registry_mu);
    for (int i = 0; i < nregistry; i++)
        if (registry[i] == set) {
            registry[i] = registry[--nregistry];
            break;
        }
    if (nregistry == 0) {
        free(registry);
        registry = NULL;
        capregistry = 0;
    }
    pthread_mutex_unlock(&registry_mu);
}

void kvp_clients_visit(kvp_client_visit_fn fn, void *ctx)
{
    pthread_mutex_lock(&registry_mu);
    for (int i = 0; i < nregistry; i++) {
        kvp_clients *set = registry[i];
        pthread_mutex_lock(&set->mu);
        for (kvp_client *c = set->list; c; c = c->next)
            fn(ctx, c);
        pthread_mutex_unlock(&set->mu);
    }
    pthread_mutex_unlock(&registry_mu);
}

void kvp_client_kill(kvp_client *c)
{
    atomic_store(&c->killed, 1);
    /* its worker sees end of file at its next read; the fd is still open
     * (the visitor holds the set's lock, and close unlinks first) */
    shutdown(c->fd, SHUT_RDWR);
}

int kvp_client_set_name(kvp_client *c, const char *p, size_t len)
{
    char *name = NULL;
    if (len > 0 && (name = strndup(p, len)) == NULL)
        return KV_ENOMEM;
    pthread_mutex_lock(&c->set->mu);
    char *old = c->name;
    c->name = name;
    pthread_mutex_unlock(&c->set->mu);
    free(old);
    return KV_OK;
}

void kvp_client_laddr(const kvp_client *c, char *buf, size_t n)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    char ip[INET_ADDRSTRLEN];
    buf[0] = 0;
    if (getsockname(c->fd, (struct sockaddr *)&sa, &sl) == 0 && sa.sin_family == AF_INET &&
        inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip)))
        snprintf(buf, n, "%s:%d", ip, ntohs(sa.sin_port));
}

/* ------------------------------------------------------------ lifecycle */

/* Answer err and close: a refused connection. */
static void refuse(int fd, const char *err, size_t len)
{
    ssize_t wr = write(fd, err, len);
    (void)wr;
    close(fd);
}

void kvp_clients_accept(kvp_clients *set, int fd, const char *peer, int loopback)
{
    if (!loopback && kvp_g.protected_mode && kvp_g.client_password[0] == '\0') {
        refuse(fd, KVP_ERR_PROTECTED, sizeof(KVP_ERR_PROTECTED) - 1);
        kv_log_every(10000, KV_LOG_WARN, "refused client %s: protected_mode and no client_password "
                     "(only loopback clients are served)", peer);
        return;
    }
    int count = atomic_fetch_add(&kvp_g.client_count, 1) + 1;
    if (count > atomic_load(&kvp_g.max_client_num)) {
        refuse(fd, KVP_ERR_MAX_CLIENTS, sizeof(KVP_ERR_MAX_CLIENTS) - 1);
        if (set->pool->st)
            kvp_stat_add(&set->pool->st->rejected, 1);
        atomic_fetch_sub(&kvp_g.client_count, 1);
        kv_log_every(10000, KV_LOG_WARN, "refused client %s: max_client_num %d reached", peer,
                     atomic_load(&kvp_g.max_client_num));
        return;
    }
    kvp_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        atomic_fetch_sub(&kvp_g.client_count, 1);
        return;
    }
    c->set = set;
    c->fd = fd;
    c->state = KVP_CLIENT_OPEN;
    c->id = atomic_fetch_add(&kvp_g.next_client_id, 1) + 1;
    c->created_ms = set->clock->now_ms;
    atomic_store_explicit(&c->last_active_ms, set->clock->now_ms, memory_order_relaxed);
    c->authed = kvp_g.client_password[0] == '\0';
    c->resp = 2;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    kv_buf_init(&c->in, CLIENT_IN_MAX);
    kv_req_parser_init(&c->parser);
    kv_buf_init(&c->out, KVP_OUT_MAX);
    c->rev = event_new(set->base, fd, EV_READ | EV_PERSIST, client_read_cb, c);
    c->wev = event_new(set->base, fd, EV_WRITE, client_write_cb, c);
    if (c->rev == NULL || c->wev == NULL || event_add(c->rev, NULL) != 0) {
        if (c->rev)
            event_free(c->rev);
        if (c->wev)
            event_free(c->wev);
        kv_req_parser_deinit(&c->parser);
        close(fd);
        free(c);
        atomic_fetch_sub(&kvp_g.client_count, 1);
        return;
    }
    pthread_mutex_lock(&set->mu);
    c->next = set->list;
    if (set->list)
        set->list->prev = c;
    set->list = c;
    pthread_mutex_unlock(&set->mu);
    set->n++;
    if (set->pool->st)
        kvp_stat_add(&set->pool->st->conns, 1);
}

/* -> CLOSED, the one release path. Requests still waiting for a backend are
 * orphaned (freed when their last fragment answers); the struct is freed
 * now, or by the flush when it is on the flush list. */
static void client_close(kvp_client *c)
{
    kvp_clients *set = c->set;
    if (c->state == KVP_CLIENT_CLOSED)
        return;
    if (c->state == KVP_CLIENT_PARKED)
        park_unlink(c);
    c->state = KVP_CLIENT_CLOSED;
    set->mem -= c->mem;
    c->mem = 0;
    kvp_req *r = c->head;
    while (r) {
        kvp_req *next = r->next;
        kvp_req_orphan(r);
        r = next;
    }
    c->head = c->tail = NULL;
    c->nreq = 0;
    if (set->on_close)
        set->on_close(set->cmd_ctx, c);
    event_free(c->rev);
    event_free(c->wev);
    /* off the list before the fd is closed: a visitor holding the lock
     * never shuts down a descriptor number already reused */
    pthread_mutex_lock(&set->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        set->list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&set->mu);
    close(c->fd);
    set->n--;
    atomic_fetch_sub(&kvp_g.client_count, 1);
    if (c->in.data == set->in_scratch)
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
    int pause = kv_buf_len(&c->out) + c->held > CLIENT_OUT_HIGH || c->nreq > CLIENT_MAX_INFLIGHT ||
                c->state != KVP_CLIENT_OPEN;
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

/* The client's buffers counted into the set's total (after each flush, and
 * when the idle pass gives buffers back). */
static void client_account(kvp_client *c)
{
    size_t in = c->in.data == c->set->in_scratch ? 0 : c->in.cap;
    size_t now = c->out.cap + in + c->held + c->session_mem;
    c->set->mem += now;
    c->set->mem -= c->mem;
    c->mem = now;
    atomic_store_explicit(&c->tot_mem, now, memory_order_relaxed);
}

/* Output past the client's limits (hard at once, soft for a while): the
 * reason it is closed, or NULL. */
static const char *client_over_limits(kvp_client *c, size_t pending)
{
    uint64_t hard = (uint64_t)kvp_g.client_output_hard_mb << 20;
    uint64_t soft = (uint64_t)kvp_g.client_output_soft_mb << 20;
    if (hard && pending > hard)
        return "client_output_hard_mb";
    if (!soft || pending <= soft) {
        c->soft_since_ms = 0;
        return NULL;
    }
    if (c->soft_since_ms == 0)
        c->soft_since_ms = client_now(c);
    else if (client_now(c) - c->soft_since_ms > (uint64_t)kvp_g.client_output_soft_seconds * 1000)
        return "client_output_soft_mb for client_output_soft_seconds";
    return NULL;
}

/* Write what is in out; returns -1 if the client was closed. */
static int client_flush(kvp_client *c)
{
    if (c->state == KVP_CLIENT_CLOSED)
        return -1;
    if (c->state == KVP_CLIENT_BROKEN) {
        kv_log_every(10000, KV_LOG_WARN, "closing client %s: out of memory for its replies", c->peer);
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
        if (c->set->pool->st)
            kvp_stat_add(&c->set->pool->st->net_out, (uint64_t)n);
    }
    size_t left = kv_buf_len(&c->out);
    const char *over = client_over_limits(c, left + c->held);
    if (over) {
        kv_log_every(1000, KV_LOG_WARN, "closing client %s: %zu bytes of output waiting, over %s (slow reader)",
                     c->peer, left + c->held, over);
        client_close(c);
        return -1;
    }
    client_account(c);
    if (left > 0) {
        event_add(c->wev, NULL);
    } else if (c->state == KVP_CLIENT_DRAINING && c->head == NULL) {
        client_close(c);
        return -1;
    }
    return 0;
}

/* All clients' buffers over the worker's share of maxmemory_clients: the
 * client using the most goes, then the next, until under it. */
static void clients_evict(kvp_clients *set)
{
    while (kvp_g.maxmemory_clients && set->mem > kvp_g.maxmemory_clients && set->list) {
        kvp_client *big = NULL;
        for (kvp_client *c = set->list; c; c = c->next)
            if (!atomic_load_explicit(&c->no_evict, memory_order_relaxed) && (big == NULL || c->mem > big->mem))
                big = c;
        if (big == NULL)
            break; /* every client asked CLIENT NO-EVICT on */
        kv_log_every(1000, KV_LOG_WARN, "closing client %s: it uses the most of all clients' buffers "
                     "(%zu of %llu bytes, maxmemory_clients_mb)", big->peer, big->mem,
                     (unsigned long long)set->mem);
        client_close(big);
    }
}

void kvp_clients_flush(kvp_clients *set)
{
    while (set->ndirty > 0) {
        kvp_client *c = set->dirty[--set->ndirty];
        c->dirty = 0;
        if (c->state == KVP_CLIENT_CLOSED) {
            free(c);
            continue;
        }
        if (client_flush(c) == 0)
            client_update_reading(c);
    }
    if (kvp_g.maxmemory_clients && set->mem > kvp_g.maxmemory_clients)
        clients_evict(set);
}

static void client_write_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_client *c = arg;
    KV_UNUSED(fd);
    KV_UNUSED(what);
    kvp_clock_read(c->set->clock);
    if (client_flush(c) == 0) /* may close and free c */
        client_update_reading(c);
}

/* ---------------------------------------------------------- processing */

/* The parsed command waiting in a PARKED client runs again: argv from the
 * offsets, since the bytes have moved out of the scratch buffer. */
static void client_retry(kvp_client *c)
{
    kvp_clients *set = c->set;
    for (int i = 0; i < c->parser.argc; i++)
        c->parser.argv[i].p = kv_buf_rptr(&c->in) + c->parser.arg_off[i];
    if (set->on_command(set->cmd_ctx, c, c->parser.argc, c->parser.argv) == KV_AGAIN)
        client_park(c, c->cmd_len, 1); /* the new table blocks it too: wait again */
    else
        client_unpark(c);
}

/* Parse and dispatch every complete command in the input buffer. */
static void client_process(kvp_client *c)
{
    kvp_clients *set = c->set;
    while (c->state == KVP_CLIENT_OPEN && kv_buf_len(&c->in) > 0) {
        if (c->nreq > CLIENT_MAX_INFLIGHT || kv_buf_len(&c->out) + c->held > CLIENT_OUT_HIGH) {
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
            kv_log_every(1000, KV_LOG_DEBUG, "client %s protocol error: %s", c->peer, c->parser.err);
            kvp_client_drain(c);
            kv_buf_consume(&c->in, kv_buf_len(&c->in));
            break;
        }
        if (c->parser.argc == 0) {
            kv_buf_consume(&c->in, consumed);
            continue;
        }
        if (set->on_command(set->cmd_ctx, c, c->parser.argc, c->parser.argv) == KV_AGAIN) {
            client_park(c, consumed, 0);
            break;
        }
        kv_buf_consume(&c->in, consumed);
    }
    client_mark(c);
}

/* PARKED, taken off the list by the set: its command runs again, then
 * what follows it. */
static void client_resume(kvp_client *c)
{
    client_retry(c);
    if (c->state == KVP_CLIENT_OPEN)
        client_process(c);
    client_update_reading(c);
}

/* PARKED past its deadline: answered with an error in its turn, then what
 * follows it runs. */
static void client_expire(kvp_client *c)
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
    client_unpark(c);
    if (c->state == KVP_CLIENT_OPEN)
        client_process(c);
    client_update_reading(c);
}

/* The list is detached first: a client that must wait again parks on the
 * fresh list while the rest are resumed. */
void kvp_clients_resume_parked(kvp_clients *set)
{
    kvp_client *c = set->parked_head;
    set->parked_head = set->parked_tail = NULL;
    while (c) {
        kvp_client *next = c->park_next;
        c->park_prev = c->park_next = NULL;
        client_resume(c);
        c = next;
    }
}

void kvp_clients_expire_parked(kvp_clients *set)
{
    uint64_t limit = (uint64_t)kvp_conf_int(&kvp_g.request_timeout_ms);
    kvp_client *c = set->parked_head;
    while (c) {
        kvp_client *next = c->park_next;
        if (set->clock->now_ms - c->park_since_ms > limit) {
            park_unlink(c);
            client_expire(c);
        }
        c = next;
    }
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
    if (len > 0 && c->state != KVP_CLIENT_CLOSED && kv_buf_append(b, rest, len) != KV_OK) {
        kv_log_every(1000, KV_LOG_WARN, "closing client %s: out of memory for its query buffer", c->peer);
        client_close(c);
    }
}

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_client *c = arg;
    kvp_clients *set = c->set;
    KV_UNUSED(what);
    kvp_clock_read(set->clock);
    int borrowed = c->in.data == NULL;
    if (borrowed) {
        c->in.data = set->in_scratch;
        c->in.cap = KVP_IN_SCRATCH;
    }
    ssize_t n = kv_buf_read_fd(&c->in, fd, CLIENT_READ_CHUNK);
    if (n == 0 || (n < 0 && n != -1) || (n == -1 && errno != EAGAIN && errno != EINTR)) {
        if (n == -2)
            kv_log_every(1000, KV_LOG_WARN, "closing client %s: query buffer limit reached", c->peer);
        client_close(c);
        return;
    }
    if (n > 0) {
        atomic_store_explicit(&c->last_active_ms, set->clock->now_ms, memory_order_relaxed);
        if (set->pool->st)
            kvp_stat_add(&set->pool->st->net_in, (uint64_t)n);
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
void kvp_clients_tick(kvp_clients *set)
{
    int idle_s = kvp_conf_int(&kvp_g.client_timeout_s);
    uint64_t limit = idle_s > 0 ? (uint64_t)idle_s * 1000 : 0;
    kvp_client *c = set->list;
    while (c) {
        kvp_client *next = c->next;
        uint64_t idle = set->clock->now_ms - atomic_load_explicit(&c->last_active_ms, memory_order_relaxed);
        if (atomic_load_explicit(&c->killed, memory_order_relaxed)) {
            client_close(c); /* CLIENT KILL found it reading nothing */
        } else if (limit && c->head == NULL && !c->subscribed && c->state == KVP_CLIENT_OPEN && idle > limit) {
            /* a subscriber waits for messages: never idle, as in Redis */
            kv_log_every(1000, KV_LOG_DEBUG, "closing idle client %s", c->peer);
            client_close(c);
        } else if (idle >= 1000) {
            if (kv_buf_len(&c->in) == 0 && c->state == KVP_CLIENT_OPEN) {
                kv_buf_release(&c->in);
                kv_req_parser_release(&c->parser);
            }
            if (kv_buf_len(&c->out) == 0)
                kv_buf_release(&c->out);
            client_account(c);
        }
        c = next;
    }
}

void kvp_clients_free(kvp_clients *set)
{
    if (set->in_scratch == NULL)
        return; /* never initialised */
    registry_remove(set);
    while (set->list)
        client_close(set->list);
    /* closed clients still on the flush list are freed there */
    while (set->ndirty > 0)
        free(set->dirty[--set->ndirty]);
    free(set->dirty);
    free(set->in_scratch);
    pthread_mutex_destroy(&set->mu);
    memset(set, 0, sizeof(*set));
}

int kvp_clients_init(kvp_clients *set, struct event_base *base, kvp_clock *clock, kvp_req_pool *pool,
                     kvp_command_fn on_command, void *cmd_ctx)
{
    memset(set, 0, sizeof(*set));
    set->base = base;
    set->clock = clock;
    set->pool = pool;
    set->on_command = on_command;
    set->cmd_ctx = cmd_ctx;
    pool->done = client_req_done;
    pthread_mutex_init(&set->mu, NULL);
    set->in_scratch = malloc(KVP_IN_SCRATCH);
    if (set->in_scratch == NULL || registry_add(set) != KV_OK) {
        free(set->in_scratch);
        set->in_scratch = NULL;
        pthread_mutex_destroy(&set->mu);
        return KV_ENOMEM;
    }
    return KV_OK;
}
