/* test_req.c -- the request layer alone (c/proxy/req.c, merge.c): its
 * lifecycle, the merges of split and fanned-out commands, and the table
 * accounting behind acks. Links kvp_req and below: no client, no backend.
 *
 * Why: a request freed while a backend entry still points at it, or
 * completed before all its fragments are sent, is a use-after-free or a
 * wrong reply; an MGET whose failed master's keys do not carry its error
 * in place, or an MSET that says OK with one part failed, lies to the
 * application; an ack sent while a request routed with the old table is
 * still in flight loses writes during a migration. */
#include "../../c/proxy/merge.h"
#include "../../c/proxy/req.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static kvp_clock clk;
static kvp_wstats st;
static char got[4096];
static int ndone, ndrained;

static void on_done(kvp_req *r, const char *p, size_t n)
{
    (void)r;
    memcpy(got, p, n);
    got[n] = 0;
    ndone++;
}

static void on_drained(void *ctx)
{
    (void)ctx;
    ndrained++;
}

static kvp_req_pool pool;
static size_t held;

static kvp_req *req(uint8_t merge, int nfrags)
{
    return kvp_req_new(&pool, &held, &held, merge, nfrags);
}

static void test_lifecycle(void)
{
    kvp_req *r = req(KVP_MERGE_NONE, 1);
    TAP_CHECK(r && r->state == KVP_REQ_SETUP && r->pending == 1, "new: SETUP, one fragment pending");
    kvp_req_frag_reply(r, 0, "-ERR backend x unavailable\r\n", 28);
    TAP_CHECK(ndone == 0 && r->state == KVP_REQ_SETUP, "answered during SETUP: not complete before it is sent");
    kvp_req_sent(r);
    TAP_CHECK(ndone == 1 && r->state == KVP_REQ_DONE && strcmp(got, "-ERR backend x unavailable\r\n") == 0,
              "sent: DONE, the kept reply handed to the owner");
    kvp_req_release(r);
    TAP_CHECK(r->state == KVP_REQ_FREE && pool.nfree == 1 && held == 0, "released: back in the pool, nothing held");

    r = req(KVP_MERGE_NONE, 1);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "+OK\r\n", 5);
    TAP_CHECK(ndone == 2 && strcmp(got, "+OK\r\n") == 0 && kv_buf_len(&r->reply) == 0,
              "a single fragment's reply passes through (not copied)");
    kvp_req_release(r);

    r = req(KVP_MERGE_SUM, 2);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, ":1\r\n", 4);
    kvp_req_orphan(r);
    TAP_CHECK(r->state == KVP_REQ_ORPHANED && held == 0, "owner gone while waiting: ORPHANED, its bytes no longer held");
    int nfree = pool.nfree;
    kvp_req_frag_reply(r, 1, ":1\r\n", 4);
    TAP_CHECK(ndone == 2 && pool.nfree == nfree + 1, "its last fragment frees it, nobody is told");

    r = req(KVP_MERGE_NONE, 0);
    kvp_req_answer(r, "+PONG\r\n", 7);
    TAP_CHECK(ndone == 3 && r->state == KVP_REQ_DONE && held == 7, "a local reply kept in a request counts as held");
    kvp_req_orphan(r);
    TAP_CHECK(r->state == KVP_REQ_FREE && held == 0, "orphaning a DONE request frees it");
}

static void test_merges(void)
{
    /* DEL over three masters, one failing: the first error */
    kvp_req *r = req(KVP_MERGE_SUM, 3);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 2, ":2\r\n", 4);
    kvp_req_frag_reply(r, 0, "-ERR backend a unavailable\r\n", 28);
    kvp_req_frag_reply(r, 1, ":1\r\n", 4);
    TAP_CHECK(strcmp(got, "-ERR backend a unavailable\r\n") == 0, "DEL with a failed part: its error");
    kvp_req_release(r);
    r = req(KVP_MERGE_SUM, 2);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 1, ":2\r\n", 4);
    kvp_req_frag_reply(r, 0, ":3\r\n", 4);
    TAP_CHECK(strcmp(got, ":5\r\n") == 0, "DEL parts summed");
    kvp_req_release(r);

    /* MSET: +OK only when every part is */
    r = req(KVP_MERGE_OK_ALL, 2);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "+OK\r\n", 5);
    kvp_req_frag_reply(r, 1, "-OOM command not allowed\r\n", 26);
    TAP_CHECK(strcmp(got, "-OOM command not allowed\r\n") == 0, "MSET with a failed part: the error");
    kvp_req_release(r);

    /* MGET k0 k1 k2 k3: k0, k2 on fragment 0; k1, k3 on fragment 1, which failed */
    r = req(KVP_MERGE_MGET, 2);
    kvp_req_map_keys(r, 4);
    uint16_t kf[4] = {0, 1, 0, 1};
    uint32_t kp[4] = {0, 0, 1, 1};
    memcpy(r->key_frag, kf, sizeof(kf));
    memcpy(r->key_pos, kp, sizeof(kp));
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 1, "-ERR request timeout\r\n", 22);
    kvp_req_frag_reply(r, 0, "*2\r\n$2\r\nv0\r\n$-1\r\n", 17);
    TAP_CHECK(strcmp(got, "*4\r\n$2\r\nv0\r\n-ERR request timeout\r\n$-1\r\n-ERR request timeout\r\n") == 0,
              "MGET: values in key order, the failed master's error in place of each of its keys");
    kvp_req_release(r);

    /* a reply naming a key (BLPOP-like, SCAN-like): our prefix dropped */
    r = req(KVP_MERGE_NONE, 1);
    r->strip_key = 1;
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "*2\r\n$7\r\n705_foo\r\n$1\r\nx\r\n", 24);
    TAP_CHECK(strcmp(got, "*2\r\n$3\r\nfoo\r\n$1\r\nx\r\n") == 0, "element 0's bucket prefix dropped");
    kvp_req_release(r);

    /* XREAD / XREADGROUP: every stream key restored, entries as they are */
    static const struct {
        const char *in, *out, *what;
    } xr[] = {
        {"*2\r\n*2\r\n$5\r\n705_a\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$4\r\n7_xy\r\n"
         "*2\r\n$6\r\n12_b_c\r\n*0\r\n",
         "*2\r\n*2\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$4\r\n7_xy\r\n"
         "*2\r\n$3\r\nb_c\r\n*0\r\n",
         "RESP2 pairs: each key restored (a value like a prefix is left alone)"},
        {"%1\r\n$5\r\n705_a\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*-1\r\n",
         "%1\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*-1\r\n", "RESP3 map: keys restored"},
        {"*-1\r\n", "*-1\r\n", "nil as is"},
        {"-NOGROUP No such key '705_{x}a' or consumer group 'g' in XREADGROUP with GROUP option\r\n",
         "-NOGROUP No such key '{x}a' or consumer group 'g' in XREADGROUP with GROUP option\r\n",
         "XREADGROUP's NOGROUP error: the key restored"},
        {"-ERR syntax error\r\n", "-ERR syntax error\r\n", "another error as is"},
        {"*1\r\n*2\r\n$3\r\nabc\r\n*0\r\n", "*1\r\n*2\r\n$3\r\nabc\r\n*0\r\n",
         "a name without our prefix as is"},
        {"*1\r\n*3\r\n$5\r\n705_a\r\n*0\r\n:1\r\n", "*1\r\n*3\r\n$5\r\n705_a\r\n*0\r\n:1\r\n",
         "a shape not understood: as is"},
    };
    for (size_t i = 0; i < sizeof(xr) / sizeof(xr[0]); i++) {
        r = req(KVP_MERGE_NONE, 1);
        r->strip_key = KVP_RESTORE_STREAMS;
        kvp_req_sent(r);
        kvp_req_frag_reply(r, 0, xr[i].in, strlen(xr[i].in));
        TAP_CHECK(strcmp(got, xr[i].out) == 0, "XREAD reply: %s", xr[i].what);
        kvp_req_release(r);
    }
    /* PUBSUB over three masters: CHANNELS concatenated, NUMSUB's counts
     * added per channel (names kept in the order asked), NUMPAT the max */
    r = req(KVP_MERGE_CONCAT, 3);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "*2\r\n$1\r\na\r\n$2\r\nbb\r\n", 19);
    kvp_req_frag_reply(r, 1, "*0\r\n", 4);
    kvp_req_frag_reply(r, 2, "*1\r\n$1\r\nc\r\n", 11);
    TAP_CHECK(strcmp(got, "*3\r\n$1\r\na\r\n$2\r\nbb\r\n$1\r\nc\r\n") == 0, "PUBSUB CHANNELS: one array of every master's");
    kvp_req_release(r);
    r = req(KVP_MERGE_NUMSUB, 3);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 1, "*4\r\n$1\r\nx\r\n:0\r\n$1\r\ny\r\n:2\r\n", 26);
    kvp_req_frag_reply(r, 0, "*4\r\n$1\r\nx\r\n:3\r\n$1\r\ny\r\n:0\r\n", 26);
    kvp_req_frag_reply(r, 2, "*4\r\n$1\r\nx\r\n:1\r\n$1\r\ny\r\n:0\r\n", 26);
    TAP_CHECK(strcmp(got, "*4\r\n$1\r\nx\r\n:4\r\n$1\r\ny\r\n:2\r\n") == 0, "PUBSUB NUMSUB: counts added per channel");
    kvp_req_release(r);
    r = req(KVP_MERGE_NUMSUB, 2);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "*2\r\n$1\r\nx\r\n:3\r\n", 15);
    kvp_req_frag_reply(r, 1, "-ERR backend b unavailable\r\n", 28);
    TAP_CHECK(strcmp(got, "-ERR backend b unavailable\r\n") == 0, "PUBSUB NUMSUB with a master down: its error");
    kvp_req_release(r);
    r = req(KVP_MERGE_NUMSUB, 1);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, "*0\r\n", 4);
    TAP_CHECK(strcmp(got, "*0\r\n") == 0, "PUBSUB NUMSUB with no channel: empty");
    kvp_req_release(r);
    r = req(KVP_MERGE_MAX, 3);
    kvp_req_sent(r);
    kvp_req_frag_reply(r, 0, ":2\r\n", 4);
    kvp_req_frag_reply(r, 1, ":3\r\n", 4);
    kvp_req_frag_reply(r, 2, ":2\r\n", 4);
    TAP_CHECK(strcmp(got, ":3\r\n") == 0, "PUBSUB NUMPAT: every master has every pattern, the largest count");
    kvp_req_release(r);

    TAP_CHECK(kvp_req_restorer(KVP_CF_REPLY_STREAMS) == KVP_RESTORE_STREAMS &&
                  kvp_req_restorer(KVP_CF_REPLY_KEY) == KVP_RESTORE_KEY0 && kvp_req_restorer(0) == KVP_RESTORE_NONE,
              "restorer chosen by the command's flags");
}

static void test_table_accounting(void)
{
    kvp_req_pool_table(&pool, 1);
    ndrained = 0;
    kvp_req *a = req(KVP_MERGE_NONE, 1);
    kvp_req_routed(a);
    kvp_req_sent(a);
    kvp_req_pool_table(&pool, 2);
    TAP_CHECK(ndrained == 0 && pool.inflight_old == 1, "a new table with one request of the old in flight: not drained");
    kvp_req *b = req(KVP_MERGE_NONE, 1);
    kvp_req_routed(b);
    kvp_req_sent(b);
    kvp_req_frag_reply(b, 0, "+OK\r\n", 5);
    kvp_req_release(b);
    TAP_CHECK(ndrained == 0, "a request of the new table completing does not drain the old");
    kvp_req_frag_reply(a, 0, "+OK\r\n", 5);
    kvp_req_release(a);
    TAP_CHECK(ndrained == 1 && pool.inflight_old == 0, "the last old request completing drains it");
    kvp_req_pool_table(&pool, 3);
    TAP_CHECK(ndrained == 2, "a table with nothing in flight is drained at once");
}

int main(void)
{
    kvp_req_pool_init(&pool, &clk, &st, on_done);
    pool.on_drained = on_drained;
    test_lifecycle();
    test_merges();
    test_table_accounting();
    kvp_req_pool_free(&pool);
    return tap_done();
}
