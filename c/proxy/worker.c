/* worker.c -- see worker.h.
 *
 * After each pass of its event loop (all the events one epoll_wait found)
 * a worker flushes, once, every client and backend that got output during
 * it (the sets' dirty lists): replies of a whole pipeline go out in one
 * write, and so do the requests of many clients to one backend. */
#include "worker.h"
#include "backend.h"
#include "client.h"
#include "dispatch.h"
#include "pubsub.h"
#include "req.h"
#include "router.h"
#include "session.h"
#include "../core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 100

typedef struct kvp_msg {
    struct kvp_msg *next;
    int type;
    void *ptr;
} kvp_msg;

enum { KVP_MSG_TABLE = 1, KVP_MSG_BACKEND_STATE, KVP_MSG_REPLICAS, KVP_MSG_STOP };

/* KVP_MSG_BACKEND_STATE payload (one per worker). */
typedef struct kvp_backend_verdict {
    char addr[KVP_ADDR_MAX];
    int down;
} kvp_backend_verdict;

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
    kvp_clock clock;
    kvp_wstats st;
    kvp_req_pool pool;
    kvp_backends backends;
    kvp_clients clients;
    kvp_dispatcher disp;
    kvp_router *router;        /* the policy's route functions (its own Lua state) */
    kvp_pubsub *pubsub;
    kvp_table *table;
    kvp_table *next_table;     /* waits while migrate-on-access steps run */
    kvp_replica_set *replicas; /* the masters' replicas (replica reads), or NULL */
    uint64_t last_client_tick;
    int accept_paused;         /* out of file descriptors: the tick listens again */
    int stopping;              /* KVP_MSG_STOP came: leave the loop */
    int running;               /* its thread was started (and not joined) */
} kvp_worker;

static kvp_worker *workers;
static int nworkers;
static kvp_wstats **wstats_all; /* published for whole-proxy views (INFO) */

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

/* Backends first (requests out), then clients (replies out). Flushing a
 * backend can fail its queue and so produce client output, and a client
 * under its bounds again runs the commands it held back: loop. */
static void worker_flush(kvp_worker *w)
{
    while (w->backends.ndirty > 0 || w->clients.ndirty > 0) {
        kvp_backends_flush(&w->backends);
        kvp_clients_flush(&w->clients);
    }
}

/* -------------------------------------------------------------- tables */

/* The pool's on_drained: nothing routed with an older table is in flight. */
static void worker_report_drained(void *ctx)
{
    kvp_worker *w = ctx;
    if (w->table == NULL)
        return;
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

static void worker_route_replicas(kvp_worker *w);

static void worker_install_table(kvp_worker *w, kvp_table *t)
{
    if (w->disp.premig_inflight > 0) {
        /* A migrate-on-access step routed with the current table is between
         * its MIGRATE and its command: swapping now could let a later
         * command on the same key reach the new owner first. Install when
         * those steps are done (they end within request_timeout). */
        if (w->next_table)
            kvp_table_unref(w->next_table);
        w->next_table = t;
        w->disp.table_waits = 1;
        return;
    }
    kvp_backend **route = calloc((size_t)t->nservers, sizeof(*route));
    if (route == NULL) {
        /* clients go on with the table they have; the tick tries again */
        kv_log_error("worker %d: out of memory installing table v%llu, trying again", w->idx,
                     (unsigned long long)t->version);
        if (w->next_table && w->next_table != t)
            kvp_table_unref(w->next_table);
        w->next_table = t;
        w->disp.table_waits = 0;
        return;
    }
    kvp_backend **route3 = calloc((size_t)t->nservers, sizeof(*route3));
    kvp_backends_untable(&w->backends);
    for (int i = 0; i < t->nservers; i++) {
        route[i] = kvp_backends_get(&w->backends, t->servers[i]);
        if (route3)
            route3[i] = kvp_backends_get3(&w->backends, t->servers[i], 0); /* kept if in use */
    }
    free(w->disp.route);
    w->disp.route = route;
    free(w->disp.route3);
    w->disp.route3 = route3; /* NULL (out of memory): RESP3 clients use RESP2 connections */
    kvp_table_unref(w->table);
    w->table = t;
    kvp_dispatch_set_table(&w->disp, t);
    if (w->pubsub)
        kvp_pubsub_table(w->pubsub, t); /* channels follow their buckets */
    worker_route_replicas(w);
    w->disp.table_waits = 0;
    /* everything in flight was routed with an older table now */
    kvp_req_pool_table(&w->pool, t->version);
    /* waiting clients go on (or wait again, for this table's blocked buckets) */
    kvp_clients_resume_parked(&w->clients);
}

/* The dispatcher's replica map for the current table and replica set:
 * per table server, its master entry in the set; per replica, its shared
 * connection (kept open as part of the table). */
static void worker_route_replicas(kvp_worker *w)
{
    kvp_dispatcher *d = &w->disp;
    free(d->srv_reps);
    free(d->rep_be);
    free(d->rep_be3);
    d->srv_reps = NULL;
    d->rep_be = d->rep_be3 = NULL;
    d->reps = w->replicas;
    if (w->replicas == NULL || w->table == NULL)
        return;
    const kvp_table *t = w->table;
    d->srv_reps = malloc((size_t)t->nservers * sizeof(*d->srv_reps));
    d->rep_be = calloc((size_t)(w->replicas->nreplicas + 1), sizeof(*d->rep_be));
    d->rep_be3 = calloc((size_t)(w->replicas->nreplicas + 1), sizeof(*d->rep_be3));
    if (d->srv_reps == NULL || d->rep_be == NULL || d->rep_be3 == NULL) {
        kv_log_error("worker %d: out of memory for the replica map: reads go to masters", w->idx);
        free(d->srv_reps);
        free(d->rep_be);
        free(d->rep_be3);
        d->srv_reps = NULL;
        d->rep_be = d->rep_be3 = NULL;
        d->reps = NULL;
        return;
    }
    for (int i = 0; i < t->nservers; i++)
        d->srv_reps[i] = kvp_replica_set_master(w->replicas, t->servers[i]);
    for (int i = 0; i < w->replicas->nreplicas; i++) {
        d->rep_be[i] = kvp_backends_get(&w->backends, w->replicas->rep[i].addr);
        d->rep_be3[i] = kvp_backends_get3(&w->backends, w->replicas->rep[i].addr, 0);
    }
}

static void worker_install_replicas(kvp_worker *w, kvp_replica_set *s)
{
    kvp_replica_set_unref(w->replicas);
    w->replicas = s;
    worker_route_replicas(w);
}

/* The dispatcher's on_steps_done: no migrate-on-access step is in flight. */
static void worker_steps_done(void *ctx)
{
    kvp_worker *w = ctx;
    if (w->next_table) {
        kvp_table *t = w->next_table;
        w->next_table = NULL;
        worker_install_table(w, t);
    }
}

/* ------------------------------------------------------------ messages */

static void worker_notify_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_worker *w = arg;
    KV_UNUSED(what);
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    kvp_clock_read(&w->clock);
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
        if (m->type == KVP_MSG_TABLE) {
            worker_install_table(w, m->ptr);
        } else if (m->type == KVP_MSG_BACKEND_STATE) {
            kvp_backend_verdict *st = m->ptr;
            kvp_backends_force(&w->backends, st->addr, st->down);
            free(st);
        } else if (m->type == KVP_MSG_REPLICAS) {
            worker_install_replicas(w, m->ptr);
        } else if (m->type == KVP_MSG_STOP) {
            w->stopping = 1;
            event_base_loopbreak(w->base);
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

void kvp_workers_post_replicas(kvp_replica_set *s)
{
    for (int i = 0; i < nworkers; i++) {
        if (s)
            kvp_replica_set_ref(s);
        worker_post(&workers[i], KVP_MSG_REPLICAS, s);
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

/* --------------------------------------------------------------- timers */

static void worker_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_worker *w = arg;
    KV_UNUSED(fd);
    KV_UNUSED(what);
    kvp_clock_read(&w->clock);
    if (w->accept_paused && event_add(w->listen_ev, NULL) == 0)
        w->accept_paused = 0;
    kvp_backends_tick(&w->backends);
    if (w->pubsub)
        kvp_pubsub_tick(w->pubsub);
    kvp_wstats_sample(&w->st, w->clock.now_ms);
    if (w->next_table && w->disp.premig_inflight == 0)
        worker_steps_done(w); /* an install that ran out of memory */
    if (w->clock.now_ms - w->last_client_tick >= 1000) {
        w->last_client_tick = w->clock.now_ms;
        kvp_clients_tick(&w->clients);
    }
    /* no table within request_timeout of the first command that wanted
     * one: commands get the error at once from now on */
    kvp_dispatcher *d = &w->disp;
    if (d->table == NULL && d->no_table_since &&
        w->clock.now_ms - d->no_table_since > (uint64_t)kvp_conf_int(&kvp_g.request_timeout_ms))
        d->table_wait_expired = 1;
    /* a parked command waits at most request_timeout */
    kvp_clients_expire_parked(&w->clients);
}

static void worker_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    kvp_worker *w = arg;
    KV_UNUSED(what);
    kvp_clock_read(&w->clock);
    for (int i = 0; i < 64; i++) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        int cfd = accept4(fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* the pending connection stays in the backlog and the
                 * listener stays readable: stop listening until the next
                 * tick instead of spinning on it */
                event_del(w->listen_ev);
                w->accept_paused = 1;
                kv_log_every(1000, KV_LOG_WARN, "worker %d: accept: %s: new clients wait (ulimit -n, max_client_num)",
                             w->idx, strerror(errno));
            } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                kv_log_every(1000, KV_LOG_WARN, "worker %d: accept: %s", w->idx, strerror(errno));
            }
            break;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char peer[48], ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
        snprintf(peer, sizeof(peer), "%s:%d", ip, ntohs(sa.sin_port));
        int loopback = (ntohl(sa.sin_addr.s_addr) >> 24) == 127;
        kvp_clients_accept(&w->clients, cfd, peer, loopback);
    }
}

/* ---------------------------------------------------------------- start */

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
static void worker_teardown(kvp_worker *w);

static void *worker_main(void *arg)
{
    kvp_worker *w = arg;
    while (!w->stopping && event_base_loop(w->base, EVLOOP_ONCE) == 0)
        worker_flush(w);
    worker_flush(w); /* what the last pass wrote */
    worker_teardown(w);
    return NULL;
}

/* The layers of one worker, wired bottom up: requests complete into
 * clients, clients' commands go to the dispatcher, the dispatcher's idle
 * steps and the pool's drained tables come back to the worker. */
static int worker_init(kvp_worker *w, int i, char *err, size_t errlen)
{
    w->idx = i;
    w->listen_fd = -1;
    w->notify_fd = -1;
    w->st.cmd = calloc((size_t)kvp_cmd_count(), sizeof(*w->st.cmd));
    pthread_mutex_init(&w->mu, NULL);
    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    kvp_clock_read(&w->clock);
    kvp_req_pool_init(&w->pool, &w->clock, &w->st, NULL);
    w->pool.on_drained = worker_report_drained;
    w->pool.drained_ctx = w;
    kvp_dispatcher_init(&w->disp, &w->clock, &w->st);
    w->router = kvp_router_new();
    if (w->router != NULL) {
        w->disp.route_key = kvp_router_route;
        w->disp.route_ctx = w->router;
    }
    w->disp.on_steps_done = worker_steps_done;
    w->disp.steps_ctx = w;
    w->disp.backends = &w->backends;
    if (w->base == NULL || w->notify_fd < 0 || w->st.cmd == NULL ||
        kvp_clients_init(&w->clients, w->base, &w->clock, &w->pool, kvp_dispatch, &w->disp) != KV_OK) {
        snprintf(err, errlen, "cannot create worker %d event loop", i);
        return KV_ERR;
    }
    kvp_backends_init(&w->backends, w->base, &w->clock, i);
    if (kvp_g.owned_connections_max > 0) {
        int share = (kvp_g.owned_connections_max + nworkers - 1) / nworkers;
        w->backends.owned_max = share;
    }
    w->pubsub = kvp_pubsub_new(&w->backends, &w->clock, &w->st, i);
    if (w->pubsub == NULL) {
        snprintf(err, errlen, "cannot create worker %d pub/sub", i);
        return KV_ERR;
    }
    w->disp.pubsub = w->pubsub;
    w->clients.on_close = kvp_session_client_gone;
    w->disp.on_session = kvp_session_command;
    w->disp.session_ctx = &w->disp;
    if (worker_listen(w, err, errlen) != KV_OK)
        return KV_ERR;
    w->listen_ev = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, worker_accept_cb, w);
    w->notify_ev = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, worker_notify_cb, w);
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, worker_tick_cb, w);
    struct timeval tv = {0, TICK_MS * 1000};
    if (w->listen_ev == NULL || w->notify_ev == NULL || w->tick_ev == NULL ||
        event_add(w->listen_ev, NULL) != 0 || event_add(w->notify_ev, NULL) != 0 ||
        event_add(w->tick_ev, &tv) != 0) {
        snprintf(err, errlen, "cannot create worker %d events", i);
        return KV_ERR;
    }
    return KV_OK;
}

/* ----------------------------------------------------------------- stop */

/* On the worker's own thread, after its loop: every layer freed top down.
 * Clients close first (their requests orphaned, lent connections given
 * back), then the dispatcher, then the backends (failing what waits, which
 * completes the orphans into the pool), then the pool's free list. */
static void worker_teardown(kvp_worker *w)
{
    kvp_clients_free(&w->clients);
    kvp_pubsub_free(w->pubsub); /* its connections closed, freed with the backends */
    w->pubsub = NULL;
    w->disp.pubsub = NULL;
    free(w->disp.route);
    w->disp.route = NULL;
    free(w->disp.route3);
    w->disp.route3 = NULL;
    kvp_dispatcher_free(&w->disp);
    kvp_router_free(w->router);
    w->router = NULL;
    kvp_backends_free(&w->backends);
    kvp_req_pool_free(&w->pool);
    kvp_table_unref(w->next_table);
    kvp_table_unref(w->table);
    w->next_table = w->table = NULL;
    kvp_replica_set_unref(w->replicas);
    w->replicas = NULL;
}

/* On the control thread: what worker_init made that the thread did not free
 * (a worker whose thread never ran frees its layers here too). */
static void worker_deinit(kvp_worker *w)
{
    if (w->base == NULL) { /* worker_init never got that far */
        free(w->st.cmd);
        memset(w, 0, sizeof(*w));
        return;
    }
    if (w->running) {
        pthread_join(w->thread, NULL);
        w->running = 0;
    } else {
        worker_teardown(w);
    }
    /* messages nobody read: tables hold a reference each */
    kvp_msg *m = w->msgs;
    w->msgs = NULL;
    while (m) {
        kvp_msg *n = m->next;
        if (m->type == KVP_MSG_TABLE)
            kvp_table_unref(m->ptr);
        else
            free(m->ptr);
        free(m);
        m = n;
    }
    if (w->listen_ev)
        event_free(w->listen_ev);
    if (w->notify_ev)
        event_free(w->notify_ev);
    if (w->tick_ev)
        event_free(w->tick_ev);
    if (w->base)
        event_base_free(w->base);
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    if (w->notify_fd >= 0)
        close(w->notify_fd);
    pthread_mutex_destroy(&w->mu);
    free(w->st.cmd);
    memset(w, 0, sizeof(*w));
}

void kvp_workers_stop(void)
{
    for (int i = 0; i < nworkers; i++)
        if (workers[i].running)
            worker_post(&workers[i], KVP_MSG_STOP, NULL);
    for (int i = 0; i < nworkers; i++)
        worker_deinit(&workers[i]);
    kvp_wstats_publish(NULL, 0); /* every worker is joined: nobody reads them */
    free(wstats_all);
    wstats_all = NULL;
    free(workers);
    workers = NULL;
    nworkers = 0;
    drained_msg *d = drained_head;
    drained_head = NULL;
    while (d) {
        drained_msg *n = d->next;
        free(d);
        d = n;
    }
    if (drained_fd >= 0)
        close(drained_fd);
    drained_fd = -1;
}

/* ---------------------------------------------------------------- start */

int kvp_workers_start(char *err, size_t errlen)
{
    nworkers = kvp_g.io_threads > 0 ? kvp_g.io_threads : 1;
    workers = calloc((size_t)nworkers, sizeof(*workers));
    if (workers == NULL) {
        snprintf(err, errlen, "out of memory");
        return KV_ERR;
    }
    kvp_g.start_wall = (uint64_t)time(NULL);
    uint64_t cap = (uint64_t)kvp_g.maxmemory_clients_mb << 20;
    if (cap == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        cap = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page / 8 : (uint64_t)1 << 30;
    }
    kvp_g.maxmemory_clients = cap / (uint64_t)nworkers;
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
    for (int i = 0; i < nworkers; i++)
        if (worker_init(&workers[i], i, err, errlen) != KV_OK)
            return KV_ERR;
    wstats_all = calloc((size_t)nworkers, sizeof(*wstats_all));
    if (wstats_all == NULL) {
        snprintf(err, errlen, "out of memory");
        return KV_ERR;
    }
    for (int i = 0; i < nworkers; i++)
        wstats_all[i] = &workers[i].st;
    kvp_wstats_publish(wstats_all, nworkers);
    for (int i = 0; i < nworkers; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            snprintf(err, errlen, "cannot start worker thread %d", i);
            return KV_ERR;
        }
        workers[i].running = 1;
    }
    return KV_OK;
}
