/* test_info.c -- INFO's text (c/proxy/info.c) and the whole-proxy counters
 * it reads (c/proxy/conf.c). Links kvp_base only.
 *
 * Why: redis-cli --stat and monitoring agents parse INFO by field name; a
 * missing field reads as garbage (redis-cli printed -9223372036854775808),
 * and counters of one worker only would show a fraction of the load. */
#include "../../c/proxy/command.h"
#include "../../c/proxy/conf.h"
#include "../../c/proxy/info.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static int sections(const char *line)
{
    static char buf[256];
    kv_str argv[8];
    int argc = 0;
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *t = strtok(buf, " "); t; t = strtok(NULL, " ")) {
        argv[argc].p = t;
        argv[argc++].len = strlen(t);
    }
    return kvp_info_sections(argc, argv);
}

static void test_sections(void)
{
    TAP_CHECK(sections("INFO") == KVP_INFO_DEFAULT, "plain INFO: the default sections");
    TAP_CHECK(sections("INFO memory") == KVP_INFO_MEMORY, "one section");
    TAP_CHECK(sections("info Server KEYSPACE") == (KVP_INFO_SERVER | KVP_INFO_KEYSPACE), "several, any case");
    TAP_CHECK(sections("INFO all") == KVP_INFO_ALL && (KVP_INFO_ALL & KVP_INFO_COMMANDSTATS), "all has commandstats");
    TAP_CHECK(sections("INFO default") == KVP_INFO_DEFAULT && !(KVP_INFO_DEFAULT & KVP_INFO_COMMANDSTATS),
              "default has not");
    TAP_CHECK(sections("INFO nosuch") == 0, "an unknown section: nothing");
}

static char *text_of(int want, const kvp_info_masters *m)
{
    static char out[16384];
    kv_buf b;
    kv_buf_init(&b, 1 << 20);
    int rc = kvp_info_write(&b, want, m);
    snprintf(out, sizeof(out), "%.*s", rc == KV_OK ? (int)kv_buf_len(&b) : 0, kv_buf_rptr(&b));
    kv_buf_deinit(&b);
    return out;
}

static void test_rates(void)
{
    kvp_wstats st;
    memset(&st, 0, sizeof(st));
    uint64_t now = 10000;
    kvp_wstats_sample(&st, now);
    for (int i = 0; i < KVP_STATS_SAMPLES; i++) {
        now += 100;
        kvp_stat_add(&st.total, 100);  /* 1000 commands a second */
        kvp_stat_add(&st.net_in, 2048); /* 20 KiB a second */
        kvp_wstats_sample(&st, now);
    }
    TAP_CHECK(st.inst_ops == 1000, "a steady 1000 ops/s reads 1000 (%llu)", (unsigned long long)st.inst_ops);
    TAP_CHECK(st.inst_in == 20480, "input bytes per second (%llu)", (unsigned long long)st.inst_in);
    for (int i = 0; i < KVP_STATS_SAMPLES / 2; i++) {
        now += 100;
        kvp_wstats_sample(&st, now);
    }
    TAP_CHECK(st.inst_ops == 500, "half the window idle: half the rate (%llu)", (unsigned long long)st.inst_ops);
    for (int i = 0; i < KVP_STATS_SAMPLES; i++) {
        now += 100;
        kvp_wstats_sample(&st, now);
    }
    TAP_CHECK(st.inst_ops == 0, "idle: 0");
}

static void test_text(void)
{
    kvp_cmd_init();
    int ncmd = kvp_cmd_count();
    kvp_wstats w[2];
    memset(w, 0, sizeof(w));
    w[0].cmd = calloc((size_t)ncmd, sizeof(*w[0].cmd));
    w[1].cmd = calloc((size_t)ncmd, sizeof(*w[1].cmd));
    kvp_stat_add(&w[0].total, 5);
    kvp_stat_add(&w[1].total, 7);
    kvp_stat_add(&w[0].conns, 2);
    kvp_stat_add(&w[1].conns, 3);
    int get = kvp_cmd_lookup("get", 3)->id;
    kvp_stat_add(&w[0].cmd[get], 4);
    kvp_stat_add(&w[1].cmd[get], 6);
    kvp_wstats *all[2] = {&w[0], &w[1]};
    kvp_wstats_publish(all, 2);

    long long stat[KVP_INFO_NSTAT] = {10, 3, 1, 0};
    kvp_info_masters m = {.redis_version = "7.0.15xyz", .version_len = 6, .keys = 5, .expires = 2,
                          .nmasters = 2, .nfailed = 0, .stat = stat};
    const char *s = text_of(KVP_INFO_STATS, &m);
    TAP_CHECK(strstr(s, "total_commands_processed:12\r\n") != NULL, "commands of every worker summed");
    TAP_CHECK(strstr(s, "total_connections_received:5\r\n") != NULL, "connections of every worker summed");
    TAP_CHECK(strstr(s, "instantaneous_ops_per_sec:0\r\n") != NULL, "ops per second present");
    TAP_CHECK(strstr(s, "keyspace_hits:10\r\nkeyspace_misses:3\r\nexpired_keys:1\r\n") != NULL,
              "the masters' hits, misses, expiries");
    TAP_CHECK(strncmp(s, "# Stats\r\n", 9) == 0 && strstr(s, "\r\n\r\n") == NULL, "one section, no trailing blank line");
    s = text_of(KVP_INFO_SERVER | KVP_INFO_KEYSPACE, &m);
    TAP_CHECK(strstr(s, "redis_version:7.0.15\r\n") != NULL, "the masters' version, its length only");
    TAP_CHECK(strstr(s, "\r\n\r\n# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=0\r\n") != NULL,
              "sections separated by a blank line; keyspace summed");
    m.keys = 0;
    s = text_of(KVP_INFO_KEYSPACE, &m);
    TAP_CHECK(strcmp(s, "# Keyspace\r\n") == 0, "no keys: no db0 line, as Redis");
    s = text_of(KVP_INFO_MEMORY, &m);
    TAP_CHECK(strstr(s, "used_memory:") && strstr(s, "used_memory_rss:") && strstr(s, "used_memory_human:") &&
                  strstr(s, "maxmemory:0\r\n"), "memory fields by Redis's names");
    TAP_CHECK(kvp_info_rss() > 0, "the process's RSS is read (%llu)", (unsigned long long)kvp_info_rss());
    s = text_of(KVP_INFO_COMMANDSTATS, &m);
    TAP_CHECK(strcmp(s, "# Commandstats\r\ncmdstat_get:calls=10\r\n") == 0, "commandstats: calls summed, used ones only");
    s = text_of(KVP_INFO_DEFAULT, &m);
    const char *want[] = {"# Server", "# Clients", "# Memory", "# Persistence", "# Stats", "# Replication", "# CPU",
                          "# Keyspace"};
    const char *p = s;
    int order = 1;
    for (int i = 0; i < 8 && order; i++)
        order = (p = strstr(p, want[i])) != NULL;
    TAP_CHECK(order && strstr(s, "# Commandstats") == NULL, "default sections in Redis's order");
    TAP_CHECK(text_of(0, &m)[0] == 0, "no section: empty text");
    kvp_wstats_publish(NULL, 0);
    kvp_stats_sum sum;
    kvp_wstats_sum(&sum);
    TAP_CHECK(sum.total == 0 && sum.workers == 0, "withdrawn: nothing is read");
    free(w[0].cmd);
    free(w[1].cmd);
}

int main(void)
{
    test_sections();
    test_rates();
    test_text();
    return tap_done();
}
