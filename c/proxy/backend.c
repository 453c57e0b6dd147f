/* backend.c -- see backend.h. */
#include "backend.h"
#include "errors.h"
#include "../core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BE_READ_CHUNK (16 * 1024)
/* Reads per readable event: a master streaming a huge pipeline's replies
 * must not keep the worker from its other clients; the event fires again on
 * the next pass (it is level-triggered). */
#define BE_READS_PER_EVENT 16
#define BE_IN_MAX (1024UL * 1024 * 1024)
#define BE_IN_KEEP (64 * 1024) /* reply buffer kept between big replies */
#define BE_BACKOFF_MIN_MS 100
#define BE_BACKOFF_MAX_MS 2000
#define BE_IDLE_KEEP_MS 30000  /* an idle lendable connection is closed after this */
#define BE_NO_DEADLINE UINT64_MAX /* sent_ms of a blocking command: no request_timeout */

static void be_read_cb(evutil_socket_t fd, short what, void *arg);
static int be_handshake(const kvp_backend *be, char *buf, size_t cap, const char *pw);
static int be_handshake_ok(const kvp_backend *be, const char *p);
static void be_write_cb(evutil_socket_t fd, short what, void *arg);
static void be_connect(kvp_backend *be);
static void be_flush(kvp_backend *be);

static uint64_t be_now(const kvp_backend *be) { return be->set->clock->now_ms; }

static int connect_timeout_ms(void)
{
    int t = kvp_conf_int(&kvp_g.request_timeout_ms);
    if (t > 2000)
        t = 2000;
    if (t < 100)
        t = 100;
    return t;
}

/* ------------------------------------------------------------ lifecycle */

static kvp_backend *be_new(kvp_backends *set, const char *addr, int mode)
{
    kvp_backend *be = calloc(1, sizeof(*be));
    if (be == NULL)
        return NULL;
    be->set = set;
    be->mode = mode;
    be->fd = -1;
    snprintf(be->addr, sizeof(be->addr), "%s", addr);
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : strlen(addr);
    if (hl >= sizeof(be->host))
        hl = sizeof(be->host) - 1;
    memcpy(be->host, addr, hl);
    be->host[hl] = 0;
    be->port = colon ? atoi(colon + 1) : 6379;
    kv_buf_init(&be->in, BE_IN_MAX);
    kv_reply_scanner_reset(&be->scan);
    kv_buf_init(&be->out, KVP_OUT_MAX);
    be->ring_cap = 64;
    be->ring = calloc(be->ring_cap, sizeof(*be->ring));
    be->backoff_ms = BE_BACKOFF_MIN_MS;
    be->unavailable_len = (size_t)snprintf(be->unavailable, sizeof(be->unavailable),
                                           KVP_ERR_BACKEND_UNAVAILABLE_FMT, be->addr);
    be->state = KVP_BE_DOWN;
    be->in_table = 1;
    if (be->ring == NULL) {
        free(be);
        return NULL;
    }
    return be;
}

static void be_close_fd(kvp_backend *be)
{
    be->conn_gen++; /* a reply being handled belongs to a closed connection */
    if (be->rev) {
        event_free(be->rev);
        be->rev = NULL;
    }
    if (be->wev) {
        event_free(be->wev);
        be->wev = NULL;
    }
    if (be->fd >= 0) {
        close(be->fd);
        be->fd = -1;
    }
    kv_buf_consume(&be->in, kv_buf_len(&be->in));
    kv_buf_shrink(&be->in, BE_IN_KEEP);
    kv_reply_scanner_reset(&be->scan);
}

/* The oldest in-flight entry, taken off the ring. */
static kvp_inflight be_pop(kvp_backend *be)
{
    kvp_inflight e = be->ring[be->ring_head];
    be->ring_head = (be->ring_head + 1) & (be->ring_cap - 1);
    be->ring_len--;
    return e;
}

/* Answer every pending entry with msg and forget their unsent commands.
 * The caller has set the state first (no longer READY): a callback may
 * queue a new command here (a resumed client), whose bytes and entry then
 * stay together, after the ones failed, for the next connection. */
static void be_fail_pending(kvp_backend *be, const char *msg, size_t len)
{
    kv_buf_consume(&be->out, kv_buf_len(&be->out));
    for (uint32_t n = be->ring_len; n > 0; n--) {
        kvp_inflight e = be_pop(be);
        if (e.cb)
            e.cb(e.ctx, e.tag, msg, len);
    }
}

static void be_free(kvp_backend *be)
{
    be_fail_pending(be, be->unavailable, be->unavailable_len);
    be_close_fd(be);
    kv_buf_deinit(&be->in);
    kv_buf_deinit(&be->out);
    free(be->ring);
    free(be);
}

/* --------------------------------------------------------- transitions */

/* A subscriber's owner hears of a state change. */
static void be_notify(kvp_backend *be, int ready)
{
    if (be->mode == KVP_BE_SUBSCRIBER && be->on_state)
        be->on_state(be->owner, be, ready);
}

/* The modes reconnected after a failure: their users stay. */
static int be_reconnects(const kvp_backend *be)
{
    return be->mode == KVP_BE_SHARED || be->mode == KVP_BE_SUBSCRIBER;
}

/* -> DOWN: a connect failed (or the health check says so): fail what waits,
 * retry after the back-off. */
static void be_set_down(kvp_backend *be, const char *why)
{
    be_close_fd(be);
    if (!be->was_down_logged) {
        kv_log_warn("backend %s down: %s (worker %d)", be->addr, why, be->set->idx);
        be->was_down_logged = 1;
    }
    be->state = KVP_BE_DOWN;
    be->state_since_ms = be_now(be);
    be->retry_at_ms = be_now(be) + (uint64_t)be->backoff_ms;
    be->backoff_ms = be->backoff_ms * 2 > BE_BACKOFF_MAX_MS ? BE_BACKOFF_MAX_MS : be->backoff_ms * 2;
    be_fail_pending(be, be->unavailable, be->unavailable_len);
    be_notify(be, 0);
}

/* READY -> DOWN -> CONNECTING: a working connection broke (EOF, error,
 * timeout): fail what was in flight with msg and reconnect at once; only a
 * failed connect counts as down. */
static void be_reset(kvp_backend *be, const char *why, const char *msg, size_t len)
{
    kv_log_warn("backend %s connection reset: %s (worker %d, %u in flight)", be->addr, why,
                be->set->idx, be->ring_len);
    be_close_fd(be);
    be->state = KVP_BE_DOWN;
    be->retry_at_ms = 0;
    be_fail_pending(be, msg, len);
    be_notify(be, 0);
    /* an owned connection's state (a transaction, a watch) is gone with it:
     * its owner finds it down and gives it back */
    if (be_reconnects(be))
        be_connect(be);
}

/* -> READY: queued commands go out. */
static void be_ready(kvp_backend *be)
{
    if (be->was_down_logged)
        kv_log_info("backend %s up (worker %d)", be->addr, be->set->idx);
    be->was_down_logged = 0;
    be->backoff_ms = BE_BACKOFF_MIN_MS;
    be->state = KVP_BE_READY;
    be->state_since_ms = be_now(be);
    event_add(be->rev, NULL);
    be_notify(be, 1); /* a subscriber's owner subscribes (again) */
    be_flush(be);
}

/* CONNECTING -> AUTHING (or READY without a password). */
static void be_connected(kvp_backend *be)
{
    int one = 1;
    setsockopt(be->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* A black-holed path must be noticed within redis_down_timeout, not the
     * kernel's ~15 minutes: keepalive probes on an idle connection, and a
     * user timeout on unacknowledged data. */
    int down_s = kvp_conf_int(&kvp_g.redis_down_timeout_s);
    if (down_s < 2)
        down_s = 2;
    int idle = down_s / 2, intvl = 1, cnt = down_s - idle;
    unsigned int user_ms = (unsigned int)down_s * 1000;
    setsockopt(be->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(be->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(be->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(be->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    setsockopt(be->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof(user_ms));
    const char *pw = atomic_load(&kvp_g.redis_password);
    int auth = pw != NULL && pw[0] != '\0';
    if (!auth && !be->resp3) {
        be_ready(be);
        return;
    }
    char cmd[512];
    int n = be_handshake(be, cmd, sizeof(cmd), auth ? pw : NULL);
    if (n < 0 || write(be->fd, cmd, (size_t)n) != n) {
        be_set_down(be, be->resp3 ? "cannot send HELLO 3" : "cannot send AUTH");
        return;
    }
    be->state = KVP_BE_AUTHING;
    event_add(be->rev, NULL);
}

/* The first command on a new connection (or after RESET): AUTH, or for a
 * RESP3 connection HELLO 3 with AUTH (one round trip). Its length, or -1
 * when it does not fit. */
static int be_handshake(const kvp_backend *be, char *buf, size_t cap, const char *pw)
{
    int n;
    size_t pl = pw ? strlen(pw) : 0;
    if (be->resp3 && pw)
        n = snprintf(buf, cap, "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$%zu\r\n%s\r\n",
                     pl, pw);
    else if (be->resp3)
        n = snprintf(buf, cap, "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
    else
        n = snprintf(buf, cap, "*2\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n", pl, pw);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* The handshake's reply says the connection is ready: +OK to AUTH, the
 * server's map to HELLO 3. */
static int be_handshake_ok(const kvp_backend *be, const char *p)
{
    return be->resp3 ? p[0] == '%' : p[0] == '+';
}

/* DOWN -> CONNECTING. */
static void be_connect(kvp_backend *be)
{
    if (be->state != KVP_BE_DOWN)
        return;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)be->port);
    if (inet_pton(AF_INET, strcmp(be->host, "localhost") == 0 ? "127.0.0.1" : be->host,
                  &sa.sin_addr) != 1) {
        be_set_down(be, "invalid address");
        return;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        be_set_down(be, strerror(errno));
        return;
    }
    be->fd = fd;
    be->rev = event_new(be->set->base, fd, EV_READ | EV_PERSIST, be_read_cb, be);
    be->wev = event_new(be->set->base, fd, EV_WRITE, be_write_cb, be);
    be->state = KVP_BE_CONNECTING;
    be->state_since_ms = be_now(be);
    if (be->rev == NULL || be->wev == NULL) {
        be_set_down(be, "out of memory");
        return;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        be_connected(be);
    } else if (errno == EINPROGRESS) {
        event_add(be->wev, NULL);
    } else {
        be_set_down(be, strerror(errno));
    }
}

int kvp_backend_usable(kvp_backend *be)
{
    if (be->forced_down)
        return 0;
    if (be->state != KVP_BE_DOWN)
        return 1;
    if (be->mode == KVP_BE_SHARED && be_now(be) >= be->retry_at_ms) {
        be_connect(be);
        return be->state != KVP_BE_DOWN;
    }
    return 0;
}

/* ------------------------------------------------------------- sending */

static void be_mark(kvp_backend *be)
{
    kvp_backends *set = be->set;
    if (be->dirty)
        return;
    if (set->ndirty == set->capdirty) {
        int nc = set->capdirty ? set->capdirty * 2 : 64;
        kvp_backend **d = realloc(set->dirty, (size_t)nc * sizeof(*d));
        if (d == NULL) {
            /* no room on the list: written when the socket is writable
             * (never synchronously: the caller may be mid-command) */
            if (be->wev)
                event_add(be->wev, NULL);
            return;
        }
        set->dirty = d;
        set->capdirty = nc;
    }
    set->dirty[set->ndirty++] = be;
    be->dirty = 1;
}

/* Room for one more in-flight entry. */
/* Room for n more in-flight entries. */
static int be_ring_reserve(kvp_backend *be, uint32_t n)
{
    if (be->ring_len + n <= be->ring_cap)
        return KV_OK;
    uint32_t ncap = be->ring_cap * 2;
    while (ncap < be->ring_len + n)
        ncap *= 2;
    kvp_inflight *nr = malloc(ncap * sizeof(*nr));
    if (nr == NULL)
        return KV_ENOMEM;
    for (uint32_t i = 0; i < be->ring_len; i++)
        nr[i] = be->ring[(be->ring_head + i) & (be->ring_cap - 1)];
    free(be->ring);
    be->ring = nr;
    be->ring_cap = ncap;
    be->ring_head = 0;
    return KV_OK;
}

static void be_ring_push(kvp_backend *be, kvp_reply_fn cb, void *ctx, uint32_t tag)
{
    kvp_inflight *e = &be->ring[(be->ring_head + be->ring_len) & (be->ring_cap - 1)];
    e->cb = cb;
    e->ctx = ctx;
    e->tag = tag;
    e->sent_ms = be_now(be);
    be->ring_len++;
}

int kvp_backend_send_group(kvp_backend *be, size_t mark, uint32_t count, kvp_reply_fn cb, void *ctx,
                           uint32_t tag)
{
    if (count == 0 || be_ring_reserve(be, count) != KV_OK)
        be->out.failed = 1;
    if (kv_buf_settle(&be->out, mark) != KV_OK)
        return KV_ENOMEM;
    for (uint32_t i = 1; i < count; i++)
        be_ring_push(be, NULL, NULL, 0);
    be_ring_push(be, cb, ctx, tag);
    be_mark(be);
    return KV_OK;
}

int kvp_backend_send_blocking(kvp_backend *be, size_t mark, kvp_reply_fn cb, void *ctx, uint32_t tag)
{
    if (kvp_backend_send(be, mark, cb, ctx, tag) != KV_OK)
        return KV_ENOMEM;
    be->ring[(be->ring_head + be->ring_len - 1) & (be->ring_cap - 1)].sent_ms = BE_NO_DEADLINE;
    return KV_OK;
}

int kvp_backend_send_push(kvp_backend *be, size_t mark)
{
    if (kv_buf_settle(&be->out, mark) != KV_OK)
        return KV_ENOMEM;
    be_mark(be);
    return KV_OK;
}

int kvp_backend_send(kvp_backend *be, size_t mark, kvp_reply_fn cb, void *ctx, uint32_t tag)
{
    if (be_ring_reserve(be, 1) != KV_OK)
        be->out.failed = 1;
    if (kv_buf_settle(&be->out, mark) != KV_OK)
        return KV_ENOMEM;
    be_ring_push(be, cb, ctx, tag);
    be_mark(be);
    return KV_OK;
}

static void be_flush(kvp_backend *be)
{
    if (be->state != KVP_BE_READY)
        return;
    while (kv_buf_len(&be->out) > 0) {
        ssize_t n = kv_buf_write_fd(&be->out, be->fd);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            be_reset(be, strerror(errno), be->unavailable, be->unavailable_len);
            return;
        }
    }
    if (kv_buf_len(&be->out) > 0)
        event_add(be->wev, NULL);
}

static void be_write_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_backend *be = arg;
    KV_UNUSED(what);
    kvp_clock_read(be->set->clock);
    if (be->state == KVP_BE_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            be_set_down(be, strerror(err));
            return;
        }
        be_connected(be);
        return;
    }
    be_flush(be);
}

/* ------------------------------------------------------------- replies */

/* One complete reply of rl bytes at the head of be->in. 0, or -1 when the
 * connection was reset (be->in is gone). */
static int be_reply(kvp_backend *be, const char *p, size_t rl)
{
    if (be->state == KVP_BE_AUTHING) {
        if (!be_handshake_ok(be, p)) {
            kv_log_error("backend %s refused %s: %.*s", be->addr, be->resp3 ? "HELLO 3" : "AUTH",
                         (int)(rl > 2 && rl < 300 ? rl - 2 : rl < 300 ? rl : 300), p);
            be->was_down_logged = 1;
            be_set_down(be, "authentication failed");
            return -1;
        }
        kv_buf_consume(&be->in, rl);
        be_ready(be);
        return 0;
    }
    if (be->mode == KVP_BE_SUBSCRIBER) {
        uint32_t gen = be->conn_gen;
        if (be->on_push)
            be->on_push(be->owner, be, p, rl);
        if (be->conn_gen != gen)
            return -1; /* the owner reconnected it: in is gone */
        kv_buf_consume(&be->in, rl);
        return 0;
    }
    if (be->ring_len == 0) {
        be_reset(be, "reply without a request", be->unavailable, be->unavailable_len);
        return -1;
    }
    kvp_inflight e = be_pop(be);
    uint32_t gen = be->conn_gen;
    if (e.cb)
        e.cb(e.ctx, e.tag, p, rl);
    if (be->conn_gen != gen)
        return -1; /* the callback closed it (given back mid-command): in is gone */
    kv_buf_consume(&be->in, rl);
    return 0;
}

static void be_read_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_backend *be = arg;
    KV_UNUSED(what);
    kvp_clock_read(be->set->clock);
    for (int reads = 0; reads < BE_READS_PER_EVENT; reads++) {
        ssize_t n = kv_buf_read_fd(&be->in, fd, BE_READ_CHUNK);
        if (n > 0)
            be->last_read_ms = be_now(be);
        if (n == 0) {
            be_reset(be, "closed by peer", be->unavailable, be->unavailable_len);
            return;
        }
        if (n < 0) {
            if (n == -1 && (errno == EAGAIN || errno == EINTR))
                return;
            be_reset(be, n == -2 ? "reply too large" : strerror(errno), be->unavailable,
                     be->unavailable_len);
            return;
        }
        for (;;) {
            size_t rl;
            int rc = kv_reply_scan(&be->scan, kv_buf_rptr(&be->in), kv_buf_len(&be->in), &rl);
            if (rc == KV_AGAIN)
                break;
            if (rc == KV_ERR) {
                be_reset(be, "protocol error in reply", be->unavailable, be->unavailable_len);
                return;
            }
            if (be_reply(be, kv_buf_rptr(&be->in), rl) != 0)
                return;
        }
        if ((size_t)n < BE_READ_CHUNK)
            return;
    }
}

/* -------------------------------------------------------------- timers */

static void be_tick(kvp_backend *be)
{
    uint64_t now = be_now(be);
    /* a big reply (10 MB GET) grew the buffer: give it back once it is empty */
    if (kv_buf_len(&be->in) == 0)
        kv_buf_shrink(&be->in, BE_IN_KEEP);
    if (kv_buf_len(&be->out) == 0)
        kv_buf_shrink(&be->out, BE_IN_KEEP);
    switch (be->state) {
    case KVP_BE_DOWN:
        if (((be->mode == KVP_BE_SHARED && be->in_table) || be->mode == KVP_BE_SUBSCRIBER) &&
            !be->forced_down && now >= be->retry_at_ms)
            be_connect(be);
        break;
    case KVP_BE_CONNECTING:
    case KVP_BE_AUTHING:
        if (now - be->state_since_ms > (uint64_t)connect_timeout_ms())
            be_set_down(be, be->state == KVP_BE_CONNECTING ? "connect timeout" : "AUTH timeout");
        break;
    case KVP_BE_READY:
        if (be->ring_len > 0) {
            uint64_t t = (uint64_t)kvp_conf_int(&kvp_g.request_timeout_ms);
            /* from the later of the oldest send and the last bytes read: a
             * backend still streaming a big pipeline's replies is slow,
             * not stuck, and other clients share this connection */
            uint64_t since = be->ring[be->ring_head].sent_ms;
            if (since == BE_NO_DEADLINE)
                break; /* a blocking command: it waits as long as Redis makes it */
            if (be->last_read_ms > since)
                since = be->last_read_ms;
            if (now - since > t)
                be_reset(be, "request timeout", KVP_ERR_TIMEOUT, sizeof(KVP_ERR_TIMEOUT) - 1);
        }
        break;
    }
}

/* The health check (control thread) found the master down or back. Down:
 * everything in flight fails now, requests fail fast, no reconnect until it
 * is back; up: reconnect at once. */
static void be_force(kvp_backend *be, int down)
{
    if (down) {
        be->forced_down = 1;
        if (be->state != KVP_BE_DOWN) {
            be->was_down_logged = 0;
            be_set_down(be, "the health check reports it down");
        }
    } else if (be->forced_down) {
        be->forced_down = 0;
        be->retry_at_ms = 0;
        be->backoff_ms = BE_BACKOFF_MIN_MS;
        if (((be->mode == KVP_BE_SHARED && be->in_table) || be->mode == KVP_BE_SUBSCRIBER) &&
            be->state == KVP_BE_DOWN)
            be_connect(be);
    }
}

/* ------------------------------------------------------------------ set */

void kvp_backends_init(kvp_backends *set, struct event_base *base, kvp_clock *clock, int idx)
{
    memset(set, 0, sizeof(*set));
    set->base = base;
    set->clock = clock;
    set->idx = idx;
    set->owned_max = KVP_OWNED_MAX_DEFAULT;
}

static int set_add(kvp_backends *set, kvp_backend *be)
{
    if (set->n == set->cap) {
        int nc = set->cap ? set->cap * 2 : 16;
        kvp_backend **a = realloc(set->all, (size_t)nc * sizeof(*a));
        if (a == NULL)
            return KV_ENOMEM;
        set->all = a;
        set->cap = nc;
    }
    set->all[set->n++] = be;
    return KV_OK;
}

/* Off the set and freed (not on the dirty list: the caller checked). */
static void set_drop(kvp_backends *set, int i)
{
    kvp_backend *be = set->all[i];
    set->all[i] = set->all[--set->n];
    be_free(be);
}

void kvp_backends_free(kvp_backends *set)
{
    while (set->n > 0)
        set_drop(set, set->n - 1);
    free(set->all);
    free(set->dirty);
    memset(set, 0, sizeof(*set));
}

static kvp_backend *set_find(kvp_backends *set, const char *addr, int mode, int resp3)
{
    for (int i = 0; i < set->n; i++) {
        kvp_backend *be = set->all[i];
        if (be->mode == mode && be->resp3 == resp3 && strcmp(be->addr, addr) == 0)
            return be;
    }
    return NULL;
}

/* A new connection to addr in the set, connecting. */
static kvp_backend *set_open(kvp_backends *set, const char *addr, int mode, int resp3)
{
    kvp_backend *be = be_new(set, addr, mode);
    if (be == NULL)
        return NULL;
    be->resp3 = (uint8_t)resp3;
    if (set_add(set, be) != KV_OK) {
        be_free(be);
        return NULL;
    }
    be_connect(be);
    return be;
}

kvp_backend *kvp_backends_get(kvp_backends *set, const char *addr)
{
    kvp_backend *be = set_find(set, addr, KVP_BE_SHARED, 0);
    if (be) {
        be->in_table = 1;
        return be;
    }
    return set_open(set, addr, KVP_BE_SHARED, 0);
}

kvp_backend *kvp_backends_get3(kvp_backends *set, const char *addr, int create)
{
    kvp_backend *be = set_find(set, addr, KVP_BE_SHARED, 1);
    if (be) {
        be->in_table = 1;
        return be;
    }
    return create ? set_open(set, addr, KVP_BE_SHARED, 1) : NULL;
}

void kvp_backends_untable(kvp_backends *set)
{
    for (int i = 0; i < set->n; i++)
        set->all[i]->in_table = 0;
}

void kvp_backends_flush(kvp_backends *set)
{
    while (set->ndirty > 0) {
        kvp_backend *be = set->dirty[--set->ndirty];
        be->dirty = 0;
        be_flush(be);
    }
}

/* An idle or shared connection nothing needs any more. */
static int set_unneeded(kvp_backends *set, kvp_backend *be)
{
    if (be->dirty || be->ring_len > 0 || be->held_for > 0)
        return 0;
    if (be->mode == KVP_BE_SHARED)
        return !be->in_table;
    if (be->mode == KVP_BE_IDLE) {
        kvp_backend *shared = set_find(set, be->addr, KVP_BE_SHARED, 0);
        return shared == NULL || !shared->in_table || be->state != KVP_BE_READY ||
               be_now(be) - be->state_since_ms > BE_IDLE_KEEP_MS;
    }
    return 0;
}

void kvp_backends_tick(kvp_backends *set)
{
    for (int i = 0; i < set->n; i++) {
        kvp_backend *be = set->all[i];
        be_tick(be);
        if (set_unneeded(set, be)) {
            if (be->mode == KVP_BE_SHARED)
                kv_log_info("worker %d: dropping backend %s (not in the table)", set->idx, be->addr);
            set_drop(set, i);
            i--;
        }
    }
}

void kvp_backends_force(kvp_backends *set, const char *addr, int down)
{
    for (int i = 0; i < set->n; i++)
        if (strcmp(set->all[i]->addr, addr) == 0)
            be_force(set->all[i], down);
}

/* ----------------------------------------------------------- subscriber */

kvp_backend *kvp_backends_subscriber(kvp_backends *set, const char *addr, kvp_push_fn on_push,
                                     kvp_conn_state_fn on_state, void *ctx)
{
    kvp_backend *be = be_new(set, addr, KVP_BE_SUBSCRIBER);
    if (be == NULL)
        return NULL;
    be->owner = ctx;
    be->on_push = on_push;
    be->on_state = on_state;
    if (set_add(set, be) != KV_OK) {
        be_free(be);
        return NULL;
    }
    be_connect(be);
    return be;
}

void kvp_backend_reconnect(kvp_backend *be, const char *why)
{
    if (be->state == KVP_BE_DOWN)
        return;
    be_reset(be, why, be->unavailable, be->unavailable_len);
}

void kvp_backend_close(kvp_backend *be)
{
    be->on_push = NULL;
    be->on_state = NULL;
    be->owner = NULL;
    be_close_fd(be);
    kv_buf_consume(&be->out, kv_buf_len(&be->out));
    be->state = KVP_BE_DOWN;
    be->mode = KVP_BE_IDLE;
    be->state_since_ms = 0; /* dropped by the next tick */
}

/* -------------------------------------------------------------- lending */

int kvp_backends_owned(const kvp_backends *set, const char *addr)
{
    int n = 0;
    for (int i = 0; i < set->n; i++) {
        const kvp_backend *be = set->all[i];
        if ((be->mode == KVP_BE_OWNED || be->mode == KVP_BE_RESETTING) && strcmp(be->addr, addr) == 0)
            n++;
    }
    return n;
}

kvp_backend *kvp_backends_lend(kvp_backends *set, const char *addr, void *owner, int resp3)
{
    if (kvp_backends_owned(set, addr) >= set->owned_max)
        return NULL;
    kvp_backend *be = set_find(set, addr, KVP_BE_IDLE, resp3);
    if (be && be->state != KVP_BE_READY)
        be = NULL; /* closed, waiting for the tick to drop it: never lent */
    if (be == NULL && (be = set_open(set, addr, KVP_BE_OWNED, resp3)) == NULL)
        return NULL;
    be->mode = KVP_BE_OWNED;
    be->owner = owner;
    return be;
}

/* Tags of the commands that clean a given-back connection: RESET, then the
 * handshake again (RESET logs the connection out and goes back to RESP2):
 * AUTH when the masters have a password, HELLO 3 on a RESP3 connection. */
#define BE_CLEAN_AUTH 1u /* the reply is the handshake's, not RESET's */
#define BE_CLEAN_LAST 2u /* the last one: the connection is clean after it */

/* A reply of the clean-up: after the last, lendable again. */
static void be_reset_reply(void *ctx, uint32_t tag, const char *p, size_t n)
{
    kvp_backend *be = ctx;
    int ok = (tag & BE_CLEAN_AUTH) ? n > 0 && be_handshake_ok(be, p)
                                   : n >= 8 && memcmp(p, "+RESET\r\n", 8) == 0;
    if (ok && be->state == KVP_BE_READY) {
        if (tag & BE_CLEAN_LAST) {
            be->mode = KVP_BE_IDLE;
            be->state_since_ms = be_now(be);
        }
        return;
    }
    /* anything else (a Redis without RESET, a password changed): its
     * state is unknown, so it is closed (be_reply sees that) and the tick
     * drops it */
    be->mode = KVP_BE_IDLE;
    be->state_since_ms = 0;
    if (be->state == KVP_BE_READY) {
        be_close_fd(be);
        be->state = KVP_BE_DOWN;
        be_fail_pending(be, be->unavailable, be->unavailable_len);
    }
}

/* RESET (and AUTH) queued on be; KV_ENOMEM when they could not be. */
static int be_send_clean(kvp_backend *be)
{
    static const char reset[] = "*1\r\n$5\r\nRESET\r\n";
    const char *pw = atomic_load(&kvp_g.redis_password);
    int auth = pw != NULL && pw[0] != '\0';
    int again = auth || be->resp3; /* the handshake after RESET */
    size_t mark = kv_buf_mark(&be->out);
    kv_buf_append(&be->out, reset, sizeof(reset) - 1);
    if (kvp_backend_send(be, mark, be_reset_reply, be, again ? 0 : BE_CLEAN_LAST) != KV_OK)
        return KV_ENOMEM;
    if (!again)
        return KV_OK;
    char cmd[512];
    int n = be_handshake(be, cmd, sizeof(cmd), auth ? pw : NULL);
    if (n < 0)
        return KV_ENOMEM;
    mark = kv_buf_mark(&be->out);
    kv_buf_append(&be->out, cmd, (size_t)n);
    return kvp_backend_send(be, mark, be_reset_reply, be, BE_CLEAN_AUTH | BE_CLEAN_LAST);
}

/* Given back: RESET queued (behind what is in flight when after_inflight),
 * the connection lendable again once it answers; or, when its state cannot
 * be known, closed and never lent again. */
static void be_give_back(kvp_backend *be, int after_inflight)
{
    be->owner = NULL;
    be->mode = KVP_BE_RESETTING;
    int quiet = be->state == KVP_BE_READY && be->ring_len == 0 && kv_buf_len(&be->out) == 0;
    if ((quiet || (after_inflight && be->state != KVP_BE_DOWN)) && be_send_clean(be) == KV_OK)
        return;
    /* commands still in flight (a blocked BLPOP), or not connected: its
     * state cannot be known, so it is never lent again */
    be_close_fd(be);
    be->state = KVP_BE_DOWN;
    be->mode = KVP_BE_IDLE;
    be->state_since_ms = 0; /* dropped by the next tick */
    be_fail_pending(be, be->unavailable, be->unavailable_len);
}

void kvp_backend_give_back(kvp_backend *be)
{
    be_give_back(be, 0);
}

void kvp_backend_give_back_after(kvp_backend *be)
{
    be_give_back(be, 1);
}
