/* info.h -- the text of INFO: the proxy's own sections, in Redis's field
 * names, so redis-cli --stat and monitoring agents read real numbers.
 *
 * Why a module: INFO's text is built where the masters' keyspace replies
 * are merged (merge.c), but what it reports belongs to the whole proxy
 * (every worker's counters, the process's memory and CPU), not to a
 * request. Everything here reads published counters (conf.h) and the
 * process's own figures (/proc, getrusage): no lock, no call upward. */
#ifndef KVP_INFO_H
#define KVP_INFO_H

#include "../core/buf.h"
#include "../core/kv.h"

/* Sections, as bits; KVP_INFO_DEFAULT is what plain INFO prints. */
enum {
    KVP_INFO_SERVER = 1 << 0,
    KVP_INFO_CLIENTS = 1 << 1,
    KVP_INFO_MEMORY = 1 << 2,
    KVP_INFO_PERSISTENCE = 1 << 3,
    KVP_INFO_STATS = 1 << 4,
    KVP_INFO_REPLICATION = 1 << 5,
    KVP_INFO_CPU = 1 << 6,
    KVP_INFO_KEYSPACE = 1 << 7,
    KVP_INFO_DEFAULT = (1 << 8) - 1,
    KVP_INFO_COMMANDSTATS = 1 << 8,    /* in "all", not in the default set (as Redis) */
    KVP_INFO_ALL = KVP_INFO_DEFAULT | KVP_INFO_COMMANDSTATS,
};

/* The sections INFO's arguments ask for (names in any case, "all",
 * "default", "everything"); 0 when none the proxy has (the reply is then
 * empty, as Redis answers an unknown section). */
int kvp_info_sections(int argc, const kv_str *argv);

/* Counters of the masters' INFO stats that describe the data, summed over
 * the masters (the proxy cannot see hits or expiries itself). */
#define KVP_INFO_NSTAT 4
extern const char *const kvp_info_stat_names[KVP_INFO_NSTAT];

/* What the masters said (merged over every master of the table). */
typedef struct kvp_info_masters {
    const char *redis_version; /* the first master's, NULL when none answered */
    size_t version_len;
    long long keys, expires;   /* keyspace summed */
    int nmasters, nfailed;
    const long long *stat;     /* KVP_INFO_NSTAT sums, in kvp_info_stat_names order; NULL: none */
} kvp_info_masters;

/* Appends the asked sections' text (no RESP framing) to text. KV_ENOMEM
 * when text could not grow (text is then marked failed). */
int kvp_info_write(kv_buf *text, int sections, const kvp_info_masters *m);

/* The process's resident set and what malloc holds, in bytes (0 unknown). */
uint64_t kvp_info_rss(void);
uint64_t kvp_info_heap(void);

#endif
