/* worker.c -- the io_threads event loops of the data path.
 *
 * Each worker binds its own listening socket on the client address with
 * SO_REUSEPORT, so the kernel spreads connections and no lock or hand-off is
 * needed. The control thread talks to a worker only through its message
 * queue (mutex + eventfd wake-up): new tables, stop. Workers never enter Lua.
 *
 * After each pass of its event loop (all the events one epoll_wait found)
 * the worker flushes, once, every client and backend that got output during
 * it (the "dirty" lists): replies of a whole pipeline go out in one write,
 * and so do the requests of many clients to one backend. */
#include "dp.h"
#include "errors.h"
#include "../core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 100

kvp_conf kvp_g;
static kvp_worker *workers;
static int nworkers;

/* Worker -> control thread: "worker i has nothing in flight routed with a
 * table older than v" (the proxy acks v once every worker said so). */
typedef struct drained_msg {
    struct drained_msg *next;
    int worker;
    uint64_t version;
} drained_msg;
static pthread_mutex_t drained_mu = PTHREAD_MUTEX_INITIALIZER;
static drained_msg *drained_head;
static int drained_fd = -1;

void kvp_client_flush_marked(kvp_client *c);

uint64_t kvp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One clock read per event: every request handled in it shares the time
 * (response times, timeouts), so there is no clock call per request. */
void kvp_worker_clock(kvp_worker *w)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    w->now_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    w->now_ms = w->now_us / 1000;
}

/* Sums of every worker's counters (read by the control thread). */
int kvp_workers_stats(uint64_t *total, uint64_t *slow, uint64_t *rt_sum, uint64_t *rt_count,
                      uint64_t *cmd, int ncmd)
{
    *total = *slow = *rt_sum = *rt_count = 0;
    memset(cmd, 0, sizeof(uint64_t) * (size_t)ncmd);
    for (int i = 0; i < nworkers; i++) {
        kvp_wstats *st = &workers[i].st;
        *total += atomic_load_explicit(&st->total, memory_order_relaxed);
        *slow += atomic_load_explicit(&st->slow, memory_order_relaxed);
        *rt_sum += atomic_load_explicit(&st->rt_sum_us, memory_order_relaxed);
        *rt_count += atomic_load_explicit(&st->rt_count, memory_order_relaxed);
        if (st->cmd)
            for (int c = 0; c < ncmd; c++)
                cmd[c] += atomic_load_explicit(&st->cmd[c], memory_order_relaxed);
    }
    return nworkers;
}

static int push_ptr(void ***arr, int *n, int *cap, void *p)
{
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        void **a = realloc(*arr, (size_t)nc * sizeof(void *));
        if (a == NULL)
            return KV_ENOMEM;
        *arr = a;
        *cap = nc;
    }
    (*arr)[(*n)++] = p;
    return KV_OK;
}

void kvp_worker_mark_client(kvp_worker *w, kvp_client *c)
{
    if (c->dirty)
        return;
    if (push_ptr((void ***)&w->cdirty, &w->ncdirty, &w->capcdirty, c) == KV_OK)
        c->dirty = 1;
}

void kvp_worker_mark_backend(kvp_worker *w, kvp_backend *be)
{
    if (be->dirty)
        return;
    if (push_ptr((void ***)&w->bdirty, &w->nbdirty, &w->capbdirty, be) == KV_OK)
        be->dirty = 1;
}

/* Park lists are intrusive (no allocation, so parking cannot fail) and a
 * resume of all of them detaches the list first: a client that must wait
 * again parks on the fresh list while the rest are resumed. */
void kvp_worker_park(kvp_worker *w, kvp_client *c)
{
    if (c->parked)
        return;
    c->parked = 1;
    c->park_next = NULL;
    c->park_prev = w->parked_tail;
    if (w->parked_tail)
        w->parked_tail->park_next = c;
    else
        w->parked_head = c;
    w->parked_tail = c;
}

void kvp_worker_unpark(kvp_worker *w, kvp_client *c)
{
    if (!c->parked)
        return;
    if (c->park_prev)
        c->park_prev->park_next = c->park_next;
    else
        w->parked_head = c->park_next;
    if (c->park_next)
        c->park_next->park_prev = c->park_prev;
    else
        w->parked_tail = c->park_prev;
    c->park_prev = c->park_next = NULL;
    c->parked = 0;
}

/* Every parked client tries its command again (a new table is in). */
static void worker_resume_parked(kvp_worker *w)
{
    kvp_client *c = w->parked_head;
    w->parked_head = w->parked_tail = NULL;
    while (c) {
        kvp_client *next = c->park_next;
        c->park_prev = c->park_next = NULL;
        c->parked = 0;
        kvp_client_resume(c);
        c = next;
    }
}

/* Parked commands older than request_timeout are answered with an error. */
static void worker_expire_parked(kvp_worker *w)
{
    uint64_t limit = (uint64_t)atomic_load_explicit(&kvp_g.request_timeout_ms, memory_order_relaxed);
    kvp_client *c = w->parked_head;
    while (c) {
        kvp_client *next = c->park_next;
        if (w->now_ms - c->park_since_ms > limit) {
            if (c->park_reason == KVP_PARK_NO_TABLE)
                w->table_wait_expired = 1;
            kvp_worker_unpark(w, c);
            kvp_client_park_expired(c);
        }
        c = next;
    }
}

/* Backends first (requests out), then clients (replies out). Flushing a
 * backend can fail its queue and so produce client output: loop. */
void kvp_worker_flush(kvp_worker *w)
{
    while (w->nbdirty > 0 || w->ncdirty > 0) {
        while (w->nbdirty > 0) {
            kvp_backend *be = w->bdirty[--w->nbdirty];
            be->dirty = 0;
            kvp_backend_flush(be);
        }
        while (w->ncdirty > 0) {
            kvp_client *c = w->cdirty[--w->ncdirty];
            kvp_client_flush_marked(c);
        }
    }
}

static kvp_backend *worker_backend(kvp_worker *w, const char *addr)
{
    for (int i = 0; i < w->nbackends; i++)
        if (strcmp(w->backends[i]->addr, addr) == 0)
            return w->backends[i];
    kvp_backend *be = kvp_backend_new(w, addr);
    if (be == NULL)
        return NULL;
    if (push_ptr((void ***)&w->backends, &w->nbackends, &w->capbackends, be) != KV_OK) {
        kvp_backend_free(be);
        return NULL;
    }
    kvp_backend_connect(be);
    return be;
}

static void report_drained(kvp_worker *w)
{
    drained_msg *m = malloc(sizeof(*m));
    if (m == NULL)
        return;
    m->worker = w->idx;
    m->version = w->table->version;
    pthread_mutex_lock(&drained_mu);
    m->next = drained_head;
    drained_head = m;
    pthread_mutex_unlock(&drained_mu);
    uint64_t one = 1;
    ssize_t r = write(drained_fd, &one, sizeof(one));
    (void)r;
}

int kvp_workers_notify_fd(void) { return drained_fd; }

int kvp_workers_poll_drained(kvp_drained_fn fn)
{
    uint64_t v;
    ssize_t r = read(drained_fd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&drained_mu);
    drained_msg *m = drained_head;
    drained_head = NULL;
    pthread_mutex_unlock(&drained_mu);
    int n = 0;
    while (m) {
        drained_msg *next = m->next;
        fn(m->worker, m->version);
        free(m);
        m = next;
        n++;
    }
    return n;
}

/* A routed request completed (reply in, or failed). */
void kvp_worker_req_done(kvp_worker *w, kvp_req *r)
{
    if (w->table && r->tver == w->table->version) {
        w->inflight_cur--;
    } else if (--w->inflight_old == 0) {
        report_drained(w);
    }
}

static void worker_install_table(kvp_worker *w, kvp_table *t)
{
    if (w->premig_inflight > 0) {
        /* A migrate-on-access step routed with the current table is between
         * its MIGRATE and its command: swapping now could let a later
         * command on the same key reach the new owner first. Install when
         * those steps are done (they end within request_timeout). */
        if (w->next_table)
            kvp_table_unref(w->next_table);
        w->next_table = t;
        return;
    }
    kvp_backend **route = calloc((size_t)t->nservers, sizeof(*route));
    if (route == NULL) {
        kv_log_error("worker %d: out of memory installing table v%llu", w->idx,
                     (unsigned long long)t->version);
        kvp_table_unref(t);
        return;
    }
    for (int i = 0; i < w->nbackends; i++)
        w->backends[i]->in_table = 0;
    for (int i = 0; i < t->nservers; i++) {
        route[i] = worker_backend(w, t->servers[i]);
        if (route[i])
            route[i]->in_table = 1;
    }
    free(w->route);
    w->route = route;
    kvp_table_unref(w->table);
    w->table = t;
    /* everything in flight was routed with an older table now */
    w->inflight_old += w->inflight_cur;
    w->inflight_cur = 0;
    if (w->inflight_old == 0)
        report_drained(w);
    /* waiting clients go on (or wait again, for this table's blocked buckets) */
    worker_resume_parked(w);
}

void kvp_worker_premig_done(kvp_worker *w)
{
    if (--w->premig_inflight == 0 && w->next_table) {
        kvp_table *t = w->next_table;
        w->next_table = NULL;
        worker_install_table(w, t);
    }
}

static void worker_notify_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_worker *w = arg;
    KV_UNUSED(what);
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    kvp_worker_clock(w);
    pthread_mutex_lock(&w->mu);
    kvp_msg *m = w->msgs;
    w->msgs = NULL;
    pthread_mutex_unlock(&w->mu);
    /* the queue was pushed at the head: reverse to handle in order */
    kvp_msg *rev = NULL;
    while (m) {
        kvp_msg *n = m->next;
        m->next = rev;
        rev = m;
        m = n;
    }
    for (m = rev; m;) {
        kvp_msg *n = m->next;
        if (m->type == KVP_MSG_TABLE)
            worker_install_table(w, m->ptr);
        else if (m->type == KVP_MSG_STOP) {
            w->stopping = 1;
            event_base_loopbreak(w->base);
        }
        else if (m->type == KVP_MSG_BACKEND_STATE) {
            kvp_backend_verdict *st = m->ptr;
            for (int i = 0; i < w->nbackends; i++)
                if (strcmp(w->backends[i]->addr, st->addr) == 0)
                    kvp_backend_force(w->backends[i], st->down);
            free(st);
        }
        free(m);
        m = n;
    }
}

static void worker_post(kvp_worker *w, int type, void *ptr)
{
    kvp_msg *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return;
    m->type = type;
    m->ptr = ptr;
    pthread_mutex_lock(&w->mu);
    m->next = w->msgs;
    w->msgs = m;
    pthread_mutex_unlock(&w->mu);
    uint64_t one = 1;
    ssize_t r = write(w->notify_fd, &one, sizeof(one));
    (void)r;
}

void kvp_workers_post_table(kvp_table *t)
{
    for (int i = 0; i < nworkers; i++) {
        kvp_table_ref(t);
        worker_post(&workers[i], KVP_MSG_TABLE, t);
    }
}

void kvp_workers_post_backend_state(const char *addr, int down)
{
    for (int i = 0; i < nworkers; i++) {
        kvp_backend_verdict *st = calloc(1, sizeof(*st));
        if (st == NULL)
            continue;
        snprintf(st->addr, sizeof(st->addr), "%s", addr);
        st->down = down;
        worker_post(&workers[i], KVP_MSG_BACKEND_STATE, st);
    }
}

static void worker_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_worker *w = arg;
    KV_UNUSED(fd);
    KV_UNUSED(what);
    kvp_worker_clock(w);
    for (int i = 0; i < w->nbackends; i++) {
        kvp_backend *be = w->backends[i];
        kvp_backend_tick(be);
        if (!be->in_table && be->ring_len == 0 && !be->dirty) {
            /* no longer routed to and nothing in flight */
            kv_log_info("worker %d: dropping backend %s (not in the table)", w->idx, be->addr);
            kvp_backend_free(be);
            w->backends[i] = w->backends[--w->nbackends];
            i--;
        }
    }
    static __thread uint64_t last_client_tick;
    if (w->now_ms - last_client_tick >= 1000) {
        last_client_tick = w->now_ms;
        kvp_client_tick(w);
    }
    /* a parked command waits at most request_timeout */
    worker_expire_parked(w);
}

static void worker_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_worker *w = arg;
    KV_UNUSED(what);
    kvp_worker_clock(w);
    for (int i = 0; i < 64; i++) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        int cfd = accept4(fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                kv_log_warn("worker %d: accept: %s", w->idx, strerror(errno));
            break;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char peer[48], ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
        snprintf(peer, sizeof(peer), "%s:%d", ip, ntohs(sa.sin_port));
        kvp_client_accept(w, cfd, peer);
    }
}

static int worker_listen(kvp_worker *w, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)kvp_g.listen_port);
    const char *host = kvp_g.listen_host;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "invalid listen address %s", kvp_g.listen_host);
        return KV_ERR;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", kvp_g.listen_host, kvp_g.listen_port,
                 strerror(errno));
        close(fd);
        return KV_ERR;
    }
    w->listen_fd = fd;
    return KV_OK;
}

/* One flush per pass of the event loop, not one per event: the requests of
 * every client found readable by one epoll_wait go to each backend in one
 * write (and Redis reads them with one read), as the replies of a pipeline
 * go to their client in one write. Callbacks only mark what has output. */
static void *worker_main(void *arg)
{
    kvp_worker *w = arg;
    while (!w->stopping && event_base_loop(w->base, EVLOOP_ONCE) == 0)
        kvp_worker_flush(w);
    kvp_worker_flush(w);
    return NULL;
}

int kvp_workers_start(char *err, size_t errlen)
{
    nworkers = kvp_g.io_threads > 0 ? kvp_g.io_threads : 1;
    workers = calloc((size_t)nworkers, sizeof(*workers));
    if (workers == NULL) {
        snprintf(err, errlen, "out of memory");
        return KV_ERR;
    }
    kvp_g.start_wall = (uint64_t)time(NULL);
    drained_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (drained_fd < 0) {
        snprintf(err, errlen, "cannot create the drained eventfd");
        return KV_ERR;
    }
    /* Buffers of big values (a 10 MB SET's query buffer, a 10 MB reply) come
     * from mmap and go back to the system when freed. glibc's default raises
     * this threshold after the first such free, and the memory then stays in
     * its arenas: RSS never came down after a burst of big values. */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    for (int i = 0; i < nworkers; i++) {
        kvp_worker *w = &workers[i];
        w->idx = i;
        w->listen_fd = -1;
        w->st.cmd = calloc((size_t)kvp_cmd_count(), sizeof(*w->st.cmd));
        w->in_scratch = malloc(KVP_IN_SCRATCH);
        pthread_mutex_init(&w->mu, NULL);
        struct event_config *cfg = event_config_new();
        event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
        w->base = event_base_new_with_config(cfg);
        event_config_free(cfg);
        w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->base == NULL || w->notify_fd < 0 || w->in_scratch == NULL) {
            snprintf(err, errlen, "cannot create worker %d event loop", i);
            return KV_ERR;
        }
        if (worker_listen(w, err, errlen) != KV_OK)
            return KV_ERR;
        kvp_worker_clock(w);
        w->listen_ev = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, worker_accept_cb, w);
        w->notify_ev = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, worker_notify_cb, w);
        w->tick_ev = event_new(w->base, -1, EV_PERSIST, worker_tick_cb, w);
        struct timeval tv = {0, TICK_MS * 1000};
        event_add(w->listen_ev, NULL);
        event_add(w->notify_ev, NULL);
        event_add(w->tick_ev, &tv);
    }
    for (int i = 0; i < nworkers; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            snprintf(err, errlen, "cannot start worker thread %d", i);
            return KV_ERR;
        }
    }
    return KV_OK;
}

int kvp_workers_count(void) { return nworkers; }
