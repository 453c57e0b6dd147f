/* test_keyspace.c -- the namespace's key names as clients see them
 * (c/proxy/keyspace.c) and the merges that use them (SCAN, KEYS, RANDOMKEY,
 * SCRIPT EXISTS / LOAD in merge.c). Links kvp_req and below.
 *
 * Why: a SCAN cursor that names the wrong master, or skips one, loses or
 * repeats keys for every client that iterates (redis-py's scan_iter, redis-cli
 * --scan); a filter that lets through a key of another namespace, a leftover
 * of a moved bucket or a name a rewrite pattern hides shows clients keys they
 * cannot read; stripping a "prefix" from a key that has none invents names
 * (RANDOMKEY returned "a_bucket_key" for "not_a_bucket_key"). */
#include "../../c/proxy/errors.h"
#include "../../c/proxy/keyspace.h"
#include "../../c/proxy/merge.h"
#include "../../c/proxy/req.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static kvp_table *table3(void)
{
    kvp_table *t = kvp_table_new(1023, 3);
    strcpy(t->servers[0], "127.0.0.1:6371");
    strcpy(t->servers[1], "127.0.0.1:6373");
    strcpy(t->servers[2], "127.0.0.1:6375");
    for (uint32_t b = 0; b < 1023; b++)
        t->owner[b] = (uint16_t)(b % 3);
    return t;
}

#define SHIFT (KVP_SCAN_POS_BITS + KVP_SCAN_TAG_BITS)

static void test_cursor(void)
{
    uint64_t v;
    TAP_CHECK(kvp_scan_cursor_parse("0", 1, &v) == KV_OK && v == 0, "cursor 0");
    TAP_CHECK(kvp_scan_cursor_parse("18446744073709551615", 20, &v) == KV_OK && v == UINT64_MAX,
              "cursor 2^64-1");
    TAP_CHECK(kvp_scan_cursor_parse("18446744073709551616", 20, &v) == KV_ERR, "cursor 2^64 refused");
    TAP_CHECK(kvp_scan_cursor_parse("", 0, &v) == KV_ERR && kvp_scan_cursor_parse("1x", 2, &v) == KV_ERR &&
                  kvp_scan_cursor_parse("-1", 2, &v) == KV_ERR,
              "not a number refused");

    kvp_table *t = table3();
    kvp_scan_at at;
    TAP_CHECK(kvp_scan_locate(t, 0, -1, &at) == KV_OK && at.server == 0 && at.pos == 0 && at.redis == 0,
              "cursor 0 starts at bucket 0's owner, its cursor 0");
    uint64_t c;
    TAP_CHECK(kvp_scan_next(t, &at, 1234, -1, &c) == KV_OK && c != 0 && (c >> SHIFT) == 1234,
              "a master's cursor is folded in the high bits");
    TAP_CHECK(kvp_scan_locate(t, c, -1, &at) == KV_OK && at.server == 0 && at.redis == 1234,
              "and unfolded to the same master and cursor");
    /* walk: 0 -> 1 -> 2 -> done, each master once */
    int seen[3] = {0}, steps = 0;
    c = 0;
    do {
        TAP_CHECK(kvp_scan_locate(t, c, -1, &at) == KV_OK && at.server >= 0 && at.redis == 0, "step %d", steps);
        seen[at.server]++;
        kvp_scan_next(t, &at, 0, -1, &c);
    } while (c != 0 && ++steps < 10);
    TAP_CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1 && steps == 2, "every master once, in order");

    /* the master at a cursor's position changed (fail-over): restart it */
    kvp_scan_locate(t, 0, -1, &at);
    kvp_scan_next(t, &at, 0, -1, &c); /* -> server 1, position 2 */
    kvp_scan_locate(t, c, -1, &at);
    kvp_scan_next(t, &at, 777, -1, &c);
    strcpy(t->servers[1], "127.0.0.1:6374");
    TAP_CHECK(kvp_scan_locate(t, c, -1, &at) == KV_OK && at.server == 1 && at.redis == 0 && at.pos == 2,
              "a replaced master is walked again from its cursor 0");
    strcpy(t->servers[1], "127.0.0.1:6373");

    /* a migration destination has its own position (2b + 1) */
    t->mig_dst[0] = 2;
    kvp_scan_locate(t, 0, -1, &at);
    kvp_scan_next(t, &at, 0, -1, &c);
    kvp_scan_locate(t, c, -1, &at);
    TAP_CHECK(at.server == 2 && at.pos == 1, "bucket 0's destination comes right after its owner");
    t->mig_dst[0] = KVP_NO_SERVER;

    TAP_CHECK(kvp_scan_locate(t, 2046 + 10, -1, &at) == KV_ERR, "a position past the buckets is invalid");
    TAP_CHECK(kvp_scan_next(t, &at, 1ULL << KVP_SCAN_REDIS_BITS, -1, &c) == KV_ERR,
              "a master's cursor too big to fold is refused");

    /* a MATCH naming one bucket walks only its master */
    int b = kvp_match_bucket(t, "{user1}*", 8);
    TAP_CHECK(b == (int)kvp_table_bucket(t, "user1", 5), "{user1}* names user1's bucket");
    kvp_scan_locate(t, 0, b, &at);
    TAP_CHECK(at.server == b % 3 && at.pos == 2u * (uint32_t)b, "the walk starts at that bucket's owner");
    kvp_scan_next(t, &at, 0, b, &c);
    TAP_CHECK(c == 0, "and ends after it");
    kvp_table_unref(t);
}

static void test_match(void)
{
    kvp_table *t = table3();
    TAP_CHECK(kvp_match_bucket(t, "x{a}*", 5) == (int)kvp_table_bucket(t, "a", 1), "tag after a literal");
    TAP_CHECK(kvp_match_bucket(t, "\\{a}*", 5) == (int)kvp_table_bucket(t, "a", 1), "escaped brace is literal");
    TAP_CHECK(kvp_match_bucket(t, "{a*}", 4) == -1, "a tag cut by '*' names no bucket");
    TAP_CHECK(kvp_match_bucket(t, "{}a*", 4) == -1, "an empty tag names no bucket");
    TAP_CHECK(kvp_match_bucket(t, "?{a}", 4) == -1, "a wildcard before the tag: none");
    TAP_CHECK(kvp_match_bucket(t, "{a}{b}", 6) == (int)kvp_table_bucket(t, "a", 1), "the first tag counts");
    t->hash_tags = 0;
    TAP_CHECK(kvp_match_bucket(t, "{a}*", 4) == -1, "without hash tags: none");
    t->hash_tags = 1;
    size_t pl;
    const char *pre = kvp_match_prefix(t, -1, &pl);
    TAP_CHECK(pl == 2 && memcmp(pre, "*_", 2) == 0, "superset prefix *_");
    pre = kvp_match_prefix(t, 705, &pl);
    TAP_CHECK(pl == 4 && memcmp(pre, "705_", 4) == 0, "exact prefix <bucket>_");

    kvp_match m;
    kvp_match_init(&m, "k:1*", 4);
    TAP_CHECK(kvp_match_name(&m, "k:123", 5) && !kvp_match_name(&m, "k:2", 3), "glob on the client's name");
    kvp_match_init(&m, "**", 2);
    TAP_CHECK(m.any && kvp_match_name(&m, "x", 1), "only stars: everything");
    kvp_match_init(&m, NULL, 0);
    TAP_CHECK(m.any && kvp_match_name(&m, "x", 1), "no MATCH: everything");
    kvp_match_init(&m, "", 0);
    TAP_CHECK(!m.any && kvp_match_name(&m, "", 0) && !kvp_match_name(&m, "x", 1),
              "MATCH \"\": only the empty name, as Redis");
    char longpat[200];
    memset(longpat, 'a', 100);
    memcpy(longpat + 100, "*b", 2);
    kvp_match_init(&m, longpat, 102);
    char name[300];
    memset(name, 'a', 250);
    name[250] = 'b';
    TAP_CHECK(!m.compiled && kvp_match_name(&m, name, 251) && !kvp_match_name(&m, name, 250),
              "a pattern past the compiled bound still matches");
    kvp_table_unref(t);
}

static void test_visible(void)
{
    kvp_table *t = table3();
    size_t n;
    const char *s;
    /* foo is bucket 705, 705 % 3 == 0 */
    s = kvp_key_visible(t, 0, "705_foo", 7, &n);
    TAP_CHECK(s && n == 3 && memcmp(s, "foo", 3) == 0, "705_foo on its owner is foo");
    TAP_CHECK(kvp_key_visible(t, 1, "705_foo", 7, &n) == NULL, "705_foo on another master is a leftover");
    TAP_CHECK(kvp_key_visible(t, 0, "not_a_bucket_key", 16, &n) == NULL, "no digits: not ours");
    TAP_CHECK(kvp_key_visible(t, 0, "0705_foo", 8, &n) == NULL, "leading zero: not ours");
    TAP_CHECK(kvp_key_visible(t, 0, "1023_x", 6, &n) == NULL, "bucket past the table: not ours");
    TAP_CHECK(kvp_key_visible(t, 0, "705foo", 6, &n) == NULL, "no '_': not ours");
    s = kvp_key_visible(t, 0, "0_", 2, &n);
    TAP_CHECK(s && n == 0, "the empty key");
    t->mig_dst[705] = 2;
    TAP_CHECK(kvp_key_visible(t, 2, "705_foo", 7, &n) != NULL && kvp_key_visible(t, 0, "705_foo", 7, &n) != NULL,
              "a migrating bucket's keys on its owner and its destination");
    t->mig_dst[705] = KVP_NO_SERVER;

    const char *pats[] = {"sec*"};
    size_t lens[] = {4};
    kvp_table_set_patterns(t, pats, lens, 1);
    /* bucket of "secret" */
    uint32_t b = kvp_table_bucket(t, "secret", 6);
    char k[64];
    int kl = snprintf(k, sizeof k, "%u_secret", b);
    TAP_CHECK(kvp_key_visible(t, (int)(b % 3), k, (size_t)kl, &n) == NULL,
              "a name a rewrite pattern hides is not returned");
    const char *hex = "e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4";
    b = kvp_table_bucket(t, hex, 40);
    kl = snprintf(k, sizeof k, "%u_%s", b, hex);
    s = kvp_key_visible(t, (int)(b % 3), k, (size_t)kl, &n);
    TAP_CHECK(s && n == 40, "a rewritten key comes back as its hex name");
    kvp_table_unref(t);
}

/* ------------------------------------------------------------ merges */

static kvp_clock clk;
static kvp_wstats st;
static char got[8192];
static kvp_req_pool pool;
static size_t held;

static void on_done(kvp_req *r, const char *p, size_t n)
{
    (void)r;
    memcpy(got, p, n);
    got[n] = 0;
}

static void test_merges(void)
{
    kvp_req_pool_init(&pool, &clk, &st, on_done);
    kvp_table *t = table3();

    /* SCAN: names filtered and stripped, the master's cursor folded */
    kvp_req *r = kvp_req_new(&pool, &held, &held, KVP_MERGE_SCAN, 1);
    kvp_keyfilter *kf = kvp_req_keyfilter(r, t, "f*", 2);
    kvp_scan_locate(t, 0, -1, &kf->at);
    kvp_req_sent(r);
    const char *page = "*2\r\n$2\r\n17\r\n*5\r\n$7\r\n705_foo\r\n$16\r\nnot_a_bucket_key\r\n"
                       "$7\r\n804_fab\r\n$7\r\n705_bar\r\n$6\r\n0_fizz\r\n";
    kvp_req_frag_reply(r, 0, page, strlen(page));
    char want[256], num[24];
    uint64_t c;
    kvp_scan_next(t, &kf->at, 17, -1, &c);
    int nl = snprintf(num, sizeof num, "%llu", (unsigned long long)c);
    /* 705, 804 and 0 are server 0's (b % 3); bar does not match f* */
    snprintf(want, sizeof want, "*2\r\n$%d\r\n%s\r\n*3\r\n$3\r\nfoo\r\n$3\r\nfab\r\n$4\r\nfizz\r\n", nl, num);
    TAP_CHECK(strcmp(got, want) == 0, "SCAN: namespace names that match, prefix stripped, cursor folded");
    kvp_req_release(r);
    TAP_CHECK(t->refs == 1, "the request gave its table reference back");

    /* SCAN, the master's cursor 0 on the last master: cursor 0 */
    r = kvp_req_new(&pool, &held, &held, KVP_MERGE_SCAN, 1);
    kf = kvp_req_keyfilter(r, t, NULL, 0);
    kf->at.server = 2;
    kf->at.pos = 4;
    kf->at.redis = 0;
    kvp_req_sent(r);
    page = "*2\r\n$1\r\n0\r\n*0\r\n";
    kvp_req_frag_reply(r, 0, page, strlen(page));
    TAP_CHECK(strcmp(got, "*2\r\n$1\r\n0\r\n*0\r\n") == 0, "SCAN: after the last master, cursor 0");
    kvp_req_release(r);

    /* KEYS over three masters; a leftover and a foreign key dropped */
    r = kvp_req_new(&pool, &held, &held, KVP_MERGE_KEYS, 3);
    kvp_req_keyfilter(r, t, "*", 1);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 1, "*2\r\n$5\r\n1_one\r\n$5\r\n0_bad\r\n", 26);
    kvp_req_frag_reply(r, 0, "*2\r\n$7\r\n705_foo\r\n$3\r\nxyz\r\n", 26);
    kvp_req_frag_reply(r, 2, "*0\r\n", 4);
    TAP_CHECK(strcmp(got, "*2\r\n$3\r\nfoo\r\n$3\r\none\r\n") == 0, "KEYS merged");
    kvp_req_release(r);

    r = kvp_req_new(&pool, &held, &held, KVP_MERGE_KEYS, 2);
    kvp_req_keyfilter(r, t, "*", 1);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "*0\r\n", 4);
    kvp_req_frag_reply(r, 1, "-ERR boom\r\n", 11);
    TAP_CHECK(strcmp(got, "-ERR boom\r\n") == 0, "KEYS: a master's error wins");
    kvp_req_release(r);

    r = kvp_req_new(&pool, &held, &held, KVP_MERGE_KEYS, 1);
    kvp_req_keyfilter(r, t, "*", 1);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "*1\r\n$9\r\n705_{foo}a\r\n", 21);
    TAP_CHECK(strcmp(got, KVP_ERR_BAD_REPLY) == 0, "KEYS: a bulk whose length is wrong is a bad reply");
    kvp_req_release(r);

    /* RANDOMKEY: never a key that is not the namespace's */
    r = kvp_req_new(&pool, &held, &held, KVP_MERGE_RANDOMKEY, 2);
    kvp_req_keyfilter(r, t, NULL, 0);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "$16\r\nnot_a_bucket_key\r\n", 23);
    kvp_req_frag_reply(r, 1, "$-1\r\n", 5);
    TAP_CHECK(strcmp(got, "$-1\r\n") == 0, "RANDOMKEY: a foreign key is none (was a_bucket_key)");
    kvp_req_release(r);
    r = kvp_req_new(&pool, &held, &held, KVP_MERGE_RANDOMKEY, 1);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "$16\r\nnot_a_bucket_key\r\n", 23);
    TAP_CHECK(strcmp(got, "$-1\r\n") == 0, "RANDOMKEY without a filter strips only <digits>_");
    kvp_req_release(r);

    /* SCRIPT EXISTS: 1 only where every master has it */
    r = kvp_req_new(&pool, &held, &held, KVP_MERGE_ALL_ONES, 3);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "*3\r\n:1\r\n:1\r\n:0\r\n", 16);
    kvp_req_frag_reply(r, 1, "*3\r\n:1\r\n:0\r\n:0\r\n", 16);
    kvp_req_frag_reply(r, 2, "*3\r\n:1\r\n:1\r\n:1\r\n", 16);
    TAP_CHECK(strcmp(got, "*3\r\n:1\r\n:0\r\n:0\r\n") == 0, "SCRIPT EXISTS ANDed");
    kvp_req_release(r);

    /* SCRIPT LOAD: the same sha everywhere, else an error */
    r = kvp_req_new(&pool, &held, &held, KVP_MERGE_SAME, 2);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "$3\r\nabc\r\n", 9);
    kvp_req_frag_reply(r, 1, "$3\r\nabc\r\n", 9);
    TAP_CHECK(strcmp(got, "$3\r\nabc\r\n") == 0, "SCRIPT LOAD: the common reply");
    kvp_req_release(r);
    r = kvp_req_new(&pool, &held, &held, KVP_MERGE_SAME, 2);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "$3\r\nabc\r\n", 9);
    kvp_req_frag_reply(r, 1, "$3\r\nabd\r\n", 9);
    TAP_CHECK(strncmp(got, "-ERR", 4) == 0, "SCRIPT LOAD: masters that differ are an error");
    kvp_req_release(r);

    kvp_req_pool_free(&pool);
    kvp_table_unref(t);
}

int main(void)
{
    /* JavaScript clients (node-redis 4) parse the cursor with Number() */
    TAP_CHECK(KVP_SCAN_POS_BITS + KVP_SCAN_TAG_BITS + KVP_SCAN_REDIS_BITS <= 53,
              "every cursor the proxy makes is below 2^53");
    test_cursor();
    test_match();
    test_visible();
    test_merges();
    return tap_done();
}
