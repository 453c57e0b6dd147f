/* backend.c -- one worker's connection to one Redis master.
 *
 * States: DOWN -> CONNECTING -> (AUTHING) -> READY, and back to DOWN when a
 * connect fails. While CONNECTING/AUTHING, commands wait in `out` (their
 * pending entries already queued, in order); AUTH is sent alone first so a
 * wrong password fails the queue with a clear error instead of NOAUTH
 * replies. While DOWN, callers fail fast (kvp_backend_usable() == 0) until
 * the back-off expires and the worker's tick reconnects.
 *
 * Every command sent gets an entry in the pending ring; replies are matched
 * to entries in order. When the oldest entry is older than request_timeout
 * the connection is dropped: every entry gets "-ERR request timeout" and a
 * fresh connection is made, so a stuck or black-holed path never holds
 * clients longer than the timeout. */
#include "dp.h"
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
#define BE_IN_MAX (1024UL * 1024 * 1024)
#define BE_IN_KEEP (64 * 1024) /* reply buffer kept between big replies */
#define BE_BACKOFF_MIN_MS 100
#define BE_BACKOFF_MAX_MS 2000

static void be_read_cb(evutil_socket_t fd, short what, void *arg);
static void be_write_cb(evutil_socket_t fd, short what, void *arg);

static int connect_timeout_ms(void)
{
    int t = atomic_load_explicit(&kvp_g.request_timeout_ms, memory_order_relaxed);
    if (t > 2000)
        t = 2000;
    if (t < 100)
        t = 100;
    return t;
}

kvp_backend *kvp_backend_new(kvp_worker *w, const char *addr)
{
    kvp_backend *be = calloc(1, sizeof(*be));
    if (be == NULL)
        return NULL;
    be->w = w;
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
        kvp_backend_free(be);
        return NULL;
    }
    return be;
}

static void be_close_fd(kvp_backend *be)
{
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

/* Answer every pending entry with msg and forget the unsent commands. */
static void be_fail_pending(kvp_backend *be, const char *msg, size_t len)
{
    kv_buf_consume(&be->out, kv_buf_len(&be->out));
    while (be->ring_len > 0) {
        kvp_pending e = be->ring[be->ring_head];
        be->ring_head = (be->ring_head + 1) & (be->ring_cap - 1);
        be->ring_len--;
        if (e.premig)
            kvp_req_premig_reply(e.req, e.frag, msg, len);
        else
            kvp_req_frag_reply(e.req, e.frag, msg, len);
    }
    be->ring_head = 0;
}

void kvp_backend_free(kvp_backend *be)
{
    if (be == NULL)
        return;
    be_fail_pending(be, be->unavailable, be->unavailable_len);
    be_close_fd(be);
    kv_buf_deinit(&be->in);
    kv_buf_deinit(&be->out);
    free(be->ring);
    free(be);
}

static void be_set_down(kvp_backend *be, const char *why)
{
    be_close_fd(be);
    if (!be->was_down_logged) {
        kv_log_warn("backend %s down: %s (worker %d)", be->addr, why, be->w->idx);
        be->was_down_logged = 1;
    }
    be->state = KVP_BE_DOWN;
    be->state_since_ms = be->w->now_ms;
    be->retry_at_ms = be->w->now_ms + (uint64_t)be->backoff_ms;
    be->backoff_ms = be->backoff_ms * 2 > BE_BACKOFF_MAX_MS ? BE_BACKOFF_MAX_MS : be->backoff_ms * 2;
    be_fail_pending(be, be->unavailable, be->unavailable_len);
}

/* A working connection broke (EOF, error, timeout): fail what was in flight
 * and reconnect at once; only a failed connect counts as down. */
static void be_reset(kvp_backend *be, const char *why, const char *msg, size_t len)
{
    kv_log_warn("backend %s connection reset: %s (worker %d, %u in flight)", be->addr, why,
                be->w->idx, be->ring_len);
    be_close_fd(be);
    be_fail_pending(be, msg, len);
    be->state = KVP_BE_DOWN;
    be->retry_at_ms = 0;
    kvp_backend_connect(be);
}

static void be_ready(kvp_backend *be)
{
    if (be->was_down_logged)
        kv_log_info("backend %s up (worker %d)", be->addr, be->w->idx);
    be->was_down_logged = 0;
    be->backoff_ms = BE_BACKOFF_MIN_MS;
    be->state = KVP_BE_READY;
    be->state_since_ms = be->w->now_ms;
    event_add(be->rev, NULL);
    kvp_backend_flush(be);
}

static void be_connected(kvp_backend *be)
{
    int one = 1;
    setsockopt(be->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* A black-holed path must be noticed within redis_down_timeout, not the
     * kernel's ~15 minutes: keepalive probes on an idle connection, and a
     * user timeout on unacknowledged data. */
    int down_s = atomic_load_explicit(&kvp_g.redis_down_timeout_s, memory_order_relaxed);
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
    if (pw == NULL || pw[0] == '\0') {
        be_ready(be);
        return;
    }
    char cmd[512];
    size_t pl = strlen(pw);
    int n = snprintf(cmd, sizeof(cmd), "*2\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n", pl, pw);
    if (write(be->fd, cmd, (size_t)n) != n) {
        be_set_down(be, "cannot send AUTH");
        return;
    }
    be->state = KVP_BE_AUTHING;
    event_add(be->rev, NULL);
}

void kvp_backend_connect(kvp_backend *be)
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
    be->rev = event_new(be->w->base, fd, EV_READ | EV_PERSIST, be_read_cb, be);
    be->wev = event_new(be->w->base, fd, EV_WRITE, be_write_cb, be);
    be->state = KVP_BE_CONNECTING;
    be->state_since_ms = be->w->now_ms;
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
    if (be->w->now_ms >= be->retry_at_ms) {
        kvp_backend_connect(be);
        return be->state != KVP_BE_DOWN;
    }
    return 0;
}

static void be_enqueue(kvp_backend *be, kvp_req *r, int frag, int premig)
{
    if (be->ring_len == be->ring_cap) {
        uint32_t ncap = be->ring_cap * 2;
        kvp_pending *n = malloc(ncap * sizeof(*n));
        if (n == NULL) {
            /* the command is already in `out`: without its entry the next
             * replies would go to the wrong requests, so start over */
            if (premig)
                kvp_req_premig_reply(r, frag, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
            else
                kvp_req_frag_reply(r, frag, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
            be_reset(be, "out of memory", KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
            return;
        }
        for (uint32_t i = 0; i < be->ring_len; i++)
            n[i] = be->ring[(be->ring_head + i) & (be->ring_cap - 1)];
        free(be->ring);
        be->ring = n;
        be->ring_cap = ncap;
        be->ring_head = 0;
    }
    kvp_pending *e = &be->ring[(be->ring_head + be->ring_len) & (be->ring_cap - 1)];
    e->req = r;
    e->frag = (uint16_t)frag;
    e->premig = (uint8_t)premig;
    e->sent_ms = be->w->now_ms;
    be->ring_len++;
    kvp_worker_mark_backend(be->w, be);
}

void kvp_backend_enqueue(kvp_backend *be, kvp_req *r, int frag)
{
    be_enqueue(be, r, frag, 0);
}

void kvp_backend_enqueue_premig(kvp_backend *be, kvp_req *r, int frag)
{
    be_enqueue(be, r, frag, 1);
}

void kvp_backend_flush(kvp_backend *be)
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
    kvp_worker_clock(be->w);
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
    kvp_backend_flush(be);
}

static void be_read_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_backend *be = arg;
    kvp_worker *w = be->w;
    KV_UNUSED(what);
    kvp_worker_clock(w);
    for (;;) {
        ssize_t n = kv_buf_read_fd(&be->in, fd, BE_READ_CHUNK);
        if (n > 0)
            be->last_read_ms = w->now_ms;
        if (n == 0) {
            be_reset(be, "closed by peer", be->unavailable, be->unavailable_len);
            goto out;
        }
        if (n < 0) {
            if (n == -1 && (errno == EAGAIN || errno == EINTR))
                break;
            be_reset(be, n == -2 ? "reply too large" : strerror(errno), be->unavailable,
                     be->unavailable_len);
            goto out;
        }
        for (;;) {
            size_t rl;
            int rc = kv_reply_scan(&be->scan, kv_buf_rptr(&be->in), kv_buf_len(&be->in), &rl);
            if (rc == KV_AGAIN)
                break;
            if (rc == KV_ERR) {
                be_reset(be, "protocol error in reply", be->unavailable, be->unavailable_len);
                goto out;
            }
            const char *p = kv_buf_rptr(&be->in);
            if (be->state == KVP_BE_AUTHING) {
                if (p[0] != '+') {
                    kv_log_error("backend %s refused AUTH: %.*s", be->addr,
                                 (int)(rl > 2 ? rl - 2 : rl), p);
                    be->was_down_logged = 1;
                    be_set_down(be, "authentication failed");
                    goto out;
                }
                kv_buf_consume(&be->in, rl);
                be_ready(be);
                continue;
            }
            if (be->ring_len == 0) {
                be_reset(be, "reply without a request", be->unavailable, be->unavailable_len);
                goto out;
            }
            kvp_pending e = be->ring[be->ring_head];
            be->ring_head = (be->ring_head + 1) & (be->ring_cap - 1);
            be->ring_len--;
            if (e.premig)
                kvp_req_premig_reply(e.req, e.frag, p, rl);
            else
                kvp_req_frag_reply(e.req, e.frag, p, rl);
            kv_buf_consume(&be->in, rl);
        }
        if ((size_t)n < BE_READ_CHUNK)
            break;
    }
out:
    return;
}

/* The health check (control thread) found the master down or back. Down:
 * everything in flight fails now, requests fail fast, no reconnect until it
 * is back; up: reconnect at once. */
void kvp_backend_force(kvp_backend *be, int down)
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
        if (be->in_table && be->state == KVP_BE_DOWN)
            kvp_backend_connect(be);
    }
}

void kvp_backend_tick(kvp_backend *be)
{
    uint64_t now = be->w->now_ms;
    /* a big reply (10 MB GET) grew the buffer: give it back once it is empty */
    if (kv_buf_len(&be->in) == 0)
        kv_buf_shrink(&be->in, BE_IN_KEEP);
    if (kv_buf_len(&be->out) == 0)
        kv_buf_shrink(&be->out, BE_IN_KEEP);
    switch (be->state) {
    case KVP_BE_DOWN:
        if (be->in_table && !be->forced_down && now >= be->retry_at_ms)
            kvp_backend_connect(be);
        break;
    case KVP_BE_CONNECTING:
    case KVP_BE_AUTHING:
        if (now - be->state_since_ms > (uint64_t)connect_timeout_ms())
            be_set_down(be, be->state == KVP_BE_CONNECTING ? "connect timeout" : "AUTH timeout");
        break;
    case KVP_BE_READY:
        if (be->ring_len > 0) {
            uint64_t t = (uint64_t)atomic_load_explicit(&kvp_g.request_timeout_ms, memory_order_relaxed);
            /* from the later of the oldest send and the last bytes read: a
             * backend still streaming a big pipeline's replies is slow,
             * not stuck, and other clients share this connection */
            uint64_t since = be->ring[be->ring_head].sent_ms;
            if (be->last_read_ms > since)
                since = be->last_read_ms;
            if (now - since > t)
                be_reset(be, "request timeout", KVP_ERR_TIMEOUT, sizeof(KVP_ERR_TIMEOUT) - 1);
        }
        break;
    }
}
