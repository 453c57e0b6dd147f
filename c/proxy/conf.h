/* conf.h -- the bottom of the data path: its settings, its clock, its
 * counters, and the bounds every layer above shares.
 *
 * Settings: workers read the atomics on the request path; the control thread
 * may change them at any time (dp.configure). Nothing here calls upward. */
#ifndef KVP_CONF_H
#define KVP_CONF_H

#include <stdatomic.h>
#include <stdint.h>

#define KVP_ADDR_MAX 64
#define KVP_NO_SERVER 0xFFFFu
/* hard bound of output buffers; clients are closed far below */
#define KVP_OUT_MAX (2048UL * 1024 * 1024)

enum kvp_hash_kind { KVP_HASH_MURMUR2_KVSTORE = 0, KVP_HASH_CRC16 = 1 };

typedef struct kvp_conf {
    char listen_host[64];
    int listen_port;
    int io_threads;
    struct kvp_policy *policy;    /* the local file's (dp.set_policy): routes until a
                                   * table brings the namespace's */
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
    int protected_mode;           /* no client_password: serve loopback clients only */
    /* Client output limits (as Redis's client-output-buffer-limit and
     * maxmemory-clients), in MiB and seconds; 0 = none. A client's output
     * is what waits for it: its reply buffer plus replies held behind a
     * slow first request. */
    int client_output_hard_mb;    /* over it: closed at once */
    int client_output_soft_mb;    /* over it for client_output_soft_seconds: closed */
    int client_output_soft_seconds;
    int maxmemory_clients_mb;     /* all clients' buffers; 0 = an eighth of RAM */
    int owned_connections_max;    /* clients' own connections per master, all workers */
    uint64_t maxmemory_clients;   /* bytes, per worker: computed at start */
    atomic_int client_count;      /* across workers */
    atomic_ullong next_client_id;
    uint64_t start_wall;          /* unix seconds at start, for INFO */
} kvp_conf;

extern kvp_conf kvp_g;

static inline int kvp_conf_int(atomic_int *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* A worker's clock, read once per event (kvp_clock_read): every request
 * handled in it shares the time, so there is no clock call per request. */
typedef struct kvp_clock {
    uint64_t now_ms;
    uint64_t now_us;
} kvp_clock;

void kvp_clock_read(kvp_clock *clk);

#define KVP_STATS_SAMPLES 16

/* A worker's counters. Only the worker writes them (a plain load+store,
 * no lock, no atomic read-modify-write); the control thread sums all
 * workers' on read (dp.stats), so counting costs no lock and no Lua call. */
typedef struct kvp_wstats {
    _Atomic uint64_t total;     /* commands executed for clients */
    _Atomic uint64_t slow;      /* ... slower than slow_cmd_time */
    _Atomic uint64_t rt_sum_us; /* response times of forwarded commands */
    _Atomic uint64_t rt_count;
    _Atomic uint64_t *cmd;      /* per command table id */
    /* for INFO stats (Redis's names in the comments) */
    _Atomic uint64_t conns;     /* total_connections_received */
    _Atomic uint64_t rejected;  /* rejected_connections (max_client_num) */
    _Atomic uint64_t net_in;    /* total_net_input_bytes */
    _Atomic uint64_t net_out;   /* total_net_output_bytes */
    _Atomic int64_t blocked;    /* blocked_clients: blocking commands waiting now */
    /* instantaneous_* (per second), set by kvp_wstats_sample */
    _Atomic uint64_t inst_ops, inst_in, inst_out;
    /* the sampler's state: the worker's only */
    uint64_t samp_ms, samp_ops, samp_in, samp_out;
    uint64_t ring_ops[KVP_STATS_SAMPLES], ring_in[KVP_STATS_SAMPLES], ring_out[KVP_STATS_SAMPLES];
    int ring_idx;
} kvp_wstats;

/* Worker: called every tick (about 100 ms). The instantaneous rates are the
 * mean of the last KVP_STATS_SAMPLES per-interval rates, as Redis computes
 * instantaneous_ops_per_sec. */
void kvp_wstats_sample(kvp_wstats *st, uint64_t now_ms);

/* Every worker's counters, for views of the whole proxy from any worker
 * (INFO): published by worker.c before the worker threads start, withdrawn
 * (n = 0) after they are joined, so a reader never sees freed ones. */
void kvp_wstats_publish(kvp_wstats **all, int n);

/* Sums over the published workers (relaxed loads: no lock, no wait). */
typedef struct kvp_stats_sum {
    uint64_t total, slow, conns, rejected, net_in, net_out;
    uint64_t inst_ops, inst_in, inst_out;
    int64_t blocked;
    int workers;
} kvp_stats_sum;
void kvp_wstats_sum(kvp_stats_sum *out);
/* Calls of command table id over the published workers. */
uint64_t kvp_wstats_cmd_calls(int id);

static inline void kvp_stat_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

#endif
