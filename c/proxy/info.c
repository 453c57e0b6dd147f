/* info.c -- see info.h. */
#include "info.h"
#include "command.h"
#include "conf.h"

#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const struct {
    const char *name;
    int bit;
} section_names[] = {
    {"server", KVP_INFO_SERVER},       {"clients", KVP_INFO_CLIENTS},
    {"memory", KVP_INFO_MEMORY},       {"persistence", KVP_INFO_PERSISTENCE},
    {"stats", KVP_INFO_STATS},         {"replication", KVP_INFO_REPLICATION},
    {"cpu", KVP_INFO_CPU},             {"commandstats", KVP_INFO_COMMANDSTATS},
    {"keyspace", KVP_INFO_KEYSPACE},
};
#define NSECTIONS ((int)(sizeof(section_names) / sizeof(section_names[0])))

const char *const kvp_info_stat_names[KVP_INFO_NSTAT] = {
    "keyspace_hits", "keyspace_misses", "expired_keys", "evicted_keys",
};

static int arg_is(const kv_str *a, const char *s)
{
    size_t n = strlen(s);
    return a->len == n && strncasecmp(a->p, s, n) == 0;
}

int kvp_info_sections(int argc, const kv_str *argv)
{
    if (argc < 2)
        return KVP_INFO_DEFAULT;
    int want = 0;
    for (int a = 1; a < argc; a++) {
        if (arg_is(&argv[a], "all") || arg_is(&argv[a], "everything"))
            want |= KVP_INFO_ALL;
        if (arg_is(&argv[a], "default"))
            want |= KVP_INFO_DEFAULT;
        for (int s = 0; s < NSECTIONS; s++)
            if (arg_is(&argv[a], section_names[s].name))
                want |= section_names[s].bit;
    }
    return want;
}

/* ------------------------------------------------------------- figures */

uint64_t kvp_info_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    unsigned long long size = 0, res = 0;
    int ok = fscanf(f, "%llu %llu", &size, &res) == 2;
    fclose(f);
    return ok ? (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

uint64_t kvp_info_heap(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
#else
    return 0;
#endif
}

static uint64_t system_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

/* The highest heap figure any INFO saw (Redis's used_memory_peak is the
 * allocator's; sampling it at INFO time is what the proxy can afford). */
static _Atomic uint64_t heap_peak;

static uint64_t note_peak(uint64_t v)
{
    uint64_t p = atomic_load_explicit(&heap_peak, memory_order_relaxed);
    while (v > p && !atomic_compare_exchange_weak(&heap_peak, &p, v))
        ;
    return v > p ? v : p;
}

/* Redis's bytesToHuman: 1023B, 1.50K, 2.00M, ... */
static void human(char *buf, size_t n, uint64_t b)
{
    static const char units[] = "KMGTP";
    if (b < 1024) {
        snprintf(buf, n, "%lluB", (unsigned long long)b);
        return;
    }
    double d = (double)b / 1024;
    int u = 0;
    while (d >= 1024 && u < 4) {
        d /= 1024;
        u++;
    }
    snprintf(buf, n, "%.2f%c", d, units[u]);
}

/* A run id, 40 hex characters, made once per process (from the kernel's
 * random source; the time and pid when it cannot be read). */
static char run_id_buf[41];
static pthread_once_t run_id_once = PTHREAD_ONCE_INIT;

static void make_run_id(void)
{
    unsigned char r[20];
    FILE *f = fopen("/dev/urandom", "r");
    size_t got = f ? fread(r, 1, sizeof(r), f) : 0;
    if (f)
        fclose(f);
    uint64_t x = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
    for (size_t i = got; i < sizeof(r); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        r[i] = (unsigned char)x;
    }
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(run_id_buf + 2 * i, 3, "%02x", r[i]);
}

static const char *run_id(void)
{
    pthread_once(&run_id_once, make_run_id);
    return run_id_buf;
}

/* ------------------------------------------------------------- writing */

static void add(kv_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(kv_buf *t, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        kv_buf_append(t, line, (size_t)(n < (int)sizeof(line) ? n : (int)sizeof(line) - 1));
}

static void section_server(kv_buf *t, const kvp_info_masters *m)
{
    struct utsname u;
    if (uname(&u) != 0)
        memset(&u, 0, sizeof(u));
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long up = (long long)(time(NULL) - (time_t)kvp_g.start_wall);
    int vl = m->redis_version && m->version_len ? (int)(m->version_len > 64 ? 64 : m->version_len) : 7;
    add(t, "# Server\r\nredis_version:%.*s\r\nkvp_version:%s\r\nredis_mode:standalone\r\n", vl,
        m->redis_version && m->version_len ? m->redis_version : "unknown", KV_VERSION);
    add(t, "os:%s %s %s\r\narch_bits:%d\r\nmultiplexing_api:epoll\r\nprocess_id:%d\r\nrun_id:%s\r\n",
        u.sysname, u.release, u.machine, (int)(sizeof(void *) * 8), (int)getpid(), run_id());
    add(t, "tcp_port:%d\r\nserver_time_usec:%lld\r\nuptime_in_seconds:%lld\r\nuptime_in_days:%lld\r\n",
        kvp_g.listen_port, (long long)tv.tv_sec * 1000000 + tv.tv_usec, up, up / 86400);
    add(t, "io_threads:%d\r\n", kvp_g.io_threads);
}

static void section_clients(kv_buf *t)
{
    kvp_stats_sum s;
    kvp_wstats_sum(&s);
    add(t, "# Clients\r\nconnected_clients:%d\r\ncluster_connections:0\r\nmaxclients:%d\r\n"
           "blocked_clients:%lld\r\ntracking_clients:0\r\n",
        atomic_load(&kvp_g.client_count), atomic_load(&kvp_g.max_client_num),
        (long long)(s.blocked > 0 ? s.blocked : 0));
}

static void section_memory(kv_buf *t)
{
    uint64_t heap = kvp_info_heap(), rss = kvp_info_rss(), sys = system_memory();
    if (heap == 0)
        heap = rss; /* no allocator figure: the resident set is the best there is */
    uint64_t peak = note_peak(heap);
    char h[32], hr[32], hp[32], hs[32];
    human(h, sizeof(h), heap);
    human(hr, sizeof(hr), rss);
    human(hp, sizeof(hp), peak);
    human(hs, sizeof(hs), sys);
    add(t, "# Memory\r\nused_memory:%llu\r\nused_memory_human:%s\r\nused_memory_rss:%llu\r\n"
           "used_memory_rss_human:%s\r\nused_memory_peak:%llu\r\nused_memory_peak_human:%s\r\n",
        (unsigned long long)heap, h, (unsigned long long)rss, hr, (unsigned long long)peak, hp);
    add(t, "total_system_memory:%llu\r\ntotal_system_memory_human:%s\r\nmaxmemory:0\r\n"
           "maxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\nmem_fragmentation_ratio:%.2f\r\n"
           "mem_allocator:libc\r\n",
        (unsigned long long)sys, hs, heap ? (double)rss / (double)heap : 0.0);
}

static void section_persistence(kv_buf *t)
{
    /* the proxy keeps no data: nothing loads, nothing is saved */
    add(t, "# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_bgsave_in_progress:0\r\n"
           "aof_enabled:0\r\naof_rewrite_in_progress:0\r\n");
}

static void section_stats(kv_buf *t, const kvp_info_masters *m)
{
    kvp_stats_sum s;
    kvp_wstats_sum(&s);
    add(t, "# Stats\r\ntotal_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
           "instantaneous_ops_per_sec:%llu\r\ntotal_net_input_bytes:%llu\r\ntotal_net_output_bytes:%llu\r\n",
        (unsigned long long)s.conns, (unsigned long long)s.total, (unsigned long long)s.inst_ops,
        (unsigned long long)s.net_in, (unsigned long long)s.net_out);
    add(t, "instantaneous_input_kbps:%.2f\r\ninstantaneous_output_kbps:%.2f\r\nrejected_connections:%llu\r\n"
           "slow_commands:%llu\r\nbackends:%d\r\nbackends_failed:%d\r\n",
        (double)s.inst_in / 1024, (double)s.inst_out / 1024, (unsigned long long)s.rejected,
        (unsigned long long)s.slow, m->nmasters, m->nfailed);
    for (int i = 0; i < KVP_INFO_NSTAT; i++)
        add(t, "%s:%lld\r\n", kvp_info_stat_names[i], m->stat ? m->stat[i] : 0);
}

static void section_replication(kv_buf *t)
{
    /* clients see one standalone master; the proxy's masters are its own */
    add(t, "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n");
}

static void section_cpu(kv_buf *t)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
#define SECS(tv) ((double)(tv).tv_sec + (double)(tv).tv_usec / 1000000)
    add(t, "# CPU\r\nused_cpu_sys:%.6f\r\nused_cpu_user:%.6f\r\nused_cpu_sys_children:%.6f\r\n"
           "used_cpu_user_children:%.6f\r\n",
        SECS(self.ru_stime), SECS(self.ru_utime), SECS(kids.ru_stime), SECS(kids.ru_utime));
#undef SECS
}

/* Calls per command, summed over the workers (the proxy counts calls, not
 * their time: only calls= is printed). */
static void section_commandstats(kv_buf *t)
{
    add(t, "# Commandstats\r\n");
    for (int id = 0; id < kvp_cmd_count(); id++) {
        uint64_t calls = kvp_wstats_cmd_calls(id);
        if (calls > 0)
            add(t, "cmdstat_%s:calls=%llu\r\n", kvp_cmd_at(id)->name, (unsigned long long)calls);
    }
}

static void section_keyspace(kv_buf *t, const kvp_info_masters *m)
{
    add(t, "# Keyspace\r\n");
    if (m->keys > 0)
        add(t, "db0:keys=%lld,expires=%lld,avg_ttl=0\r\n", m->keys, m->expires);
}

int kvp_info_write(kv_buf *t, int want, const kvp_info_masters *m)
{
    size_t mark = kv_buf_mark(t);
    int n = 0;
    for (int s = 0; s < NSECTIONS; s++) {
        int bit = section_names[s].bit;
        if (!(want & bit))
            continue;
        if (n++ > 0)
            add(t, "\r\n"); /* sections are separated by an empty line, as Redis does */
        switch (bit) {
        case KVP_INFO_SERVER: section_server(t, m); break;
        case KVP_INFO_CLIENTS: section_clients(t); break;
        case KVP_INFO_MEMORY: section_memory(t); break;
        case KVP_INFO_PERSISTENCE: section_persistence(t); break;
        case KVP_INFO_STATS: section_stats(t, m); break;
        case KVP_INFO_REPLICATION: section_replication(t); break;
        case KVP_INFO_CPU: section_cpu(t); break;
        case KVP_INFO_COMMANDSTATS: section_commandstats(t); break;
        case KVP_INFO_KEYSPACE: section_keyspace(t, m); break;
        }
    }
    return kv_buf_settle(t, mark);
}
