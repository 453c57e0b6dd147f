/* test_dispatch_keyspace.c -- the commands that name keys the masters store
 * (c/proxy/dispatch_keyspace.c: SCAN, KEYS, RANDOMKEY) and scripts without
 * keys, as written to the masters and answered to the client. Backends are
 * left connecting (commands wait in their output, no socket); replies are fed
 * to the in-flight entries by hand, as test_dispatch.c does. Links
 * kvp_dispatch and below.
 *
 * Why: SCAN must ask one master per call with its own cursor and a MATCH the
 * stored names can match, and hand the client a cursor that leads to the
 * next master; a pattern naming one bucket must not cost a walk over every
 * master; RANDOMKEY must not give a client a key of another namespace. */
#include "../../c/proxy/dispatch.h"
#include "../../c/proxy/errors.h"
#include "tap.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kvp_clock clk;
static kvp_wstats st;
static kvp_req_pool pool;
static kvp_clients clients;
static kvp_backends backends;
static kvp_dispatcher d;
static kvp_backend *be[2];
static kvp_table *t;

/* Two masters: even buckets on the first, odd on the second ("foo" is in
 * bucket 705, on the second). */
static void setup(void)
{
    kvp_cmd_init();
    kvp_clock_read(&clk);
    atomic_store(&kvp_g.request_timeout_ms, 1000);
    kvp_req_pool_init(&pool, &clk, &st, NULL);
    kvp_clients_init(&clients, NULL, &clk, &pool, kvp_dispatch, &d);
    kvp_backends_init(&backends, event_base_new(), &clk, 0);
    kvp_dispatcher_init(&d, &clk, &st);
    d.backends = &backends;
    t = kvp_table_new(1023, 2);
    strcpy(t->servers[0], "127.0.0.1:1");
    strcpy(t->servers[1], "127.0.0.1:2");
    for (int b = 0; b < 1023; b++)
        t->owner[b] = (uint16_t)(b % 2);
    t->version = 1;
    d.table = t;
    d.route = calloc(2, sizeof(*d.route));
    for (int i = 0; i < 2; i++) {
        be[i] = calloc(1, sizeof(kvp_backend));
        be[i]->set = &backends;
        be[i]->state = KVP_BE_CONNECTING;
        be[i]->ring_cap = 64;
        be[i]->ring = calloc(64, sizeof(kvp_inflight));
        kv_buf_init(&be[i]->out, KVP_OUT_MAX);
        snprintf(be[i]->addr, sizeof(be[i]->addr), "%s", t->servers[i]);
        be[i]->unavailable_len = (size_t)snprintf(be[i]->unavailable, sizeof(be[i]->unavailable),
                                                  "-ERR backend %s unavailable\r\n", be[i]->addr);
        d.route[i] = be[i];
    }
}

static kvp_client *fake_client(void)
{
    kvp_client *c = calloc(1, sizeof(*c));
    c->set = &clients;
    c->authed = 1;
    c->state = KVP_CLIENT_OPEN;
    kv_buf_init(&c->out, KVP_OUT_MAX);
    return c;
}

static int run(kvp_client *c, const char *line)
{
    static char buf[1024];
    kv_str argv[32];
    int argc = 0;
    strcpy(buf, line);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        argv[argc].p = tok;
        argv[argc++].len = strlen(tok);
    }
    return kvp_dispatch(&d, c, argc, argv);
}

static void answer(int i, const char *p)
{
    kvp_backend *b = be[i];
    kvp_inflight e = b->ring[b->ring_head];
    b->ring_head = (b->ring_head + 1) & (b->ring_cap - 1);
    b->ring_len--;
    e.cb(e.ctx, e.tag, p, strlen(p));
}

static int text_is(kv_buf *b, const char *want)
{
    size_t n = strlen(want);
    int ok = kv_buf_len(b) == n && memcmp(kv_buf_rptr(b), want, n) == 0;
    if (!ok)
        fprintf(stderr, "# got [%.*s]\n", (int)kv_buf_len(b), kv_buf_rptr(b));
    kv_buf_consume(b, kv_buf_len(b));
    return ok;
}

/* The cursor of a SCAN page in c->out (consumed). */
static int page_cursor(kvp_client *c, char *cur, size_t n)
{
    const char *p = kv_buf_rptr(&c->out);
    int len, off;
    if (sscanf(p, "*2\r\n$%d\r\n%n", &len, &off) != 1 || (size_t)len >= n)
        return 0;
    memcpy(cur, p + off, (size_t)len);
    cur[len] = 0;
    return 1;
}

static void test_scan(kvp_client *c)
{
    char cur[32], cmd[128];
    run(c, "SCAN 0");
    TAP_CHECK(text_is(&be[0]->out, "*2\r\n$4\r\nSCAN\r\n$1\r\n0\r\n") && be[1]->ring_len == 0,
              "SCAN 0: bucket 0's master, its cursor 0");
    answer(0, "*2\r\n$2\r\n37\r\n*3\r\n$5\r\n0_abc\r\n$3\r\nxyz\r\n$5\r\n1_odd\r\n");
    TAP_CHECK(page_cursor(c, cur, sizeof cur) && strcmp(cur, "0") != 0, "a cursor to go on: %s", cur);
    TAP_CHECK(strstr(kv_buf_rptr(&c->out), "\r\n*1\r\n$3\r\nabc\r\n") != NULL,
              "the page: namespace names of that master, stripped");
    kv_buf_consume(&c->out, kv_buf_len(&c->out));

    snprintf(cmd, sizeof cmd, "SCAN %s MATCH k* COUNT 10", cur);
    run(c, cmd);
    TAP_CHECK(text_is(&be[0]->out, "*6\r\n$4\r\nSCAN\r\n$2\r\n37\r\n$5\r\nMATCH\r\n$4\r\n*_k*\r\n"
                                   "$5\r\nCOUNT\r\n$2\r\n10\r\n"),
              "the same master with its cursor; MATCH sent as a superset");
    answer(0, "*2\r\n$1\r\n0\r\n*2\r\n$5\r\n0_kay\r\n$6\r\n2_nope\r\n");
    page_cursor(c, cur, sizeof cur);
    TAP_CHECK(strstr(kv_buf_rptr(&c->out), "\r\n*1\r\n$3\r\nkay\r\n") != NULL, "names matched again in the proxy");
    kv_buf_consume(&c->out, kv_buf_len(&c->out));

    snprintf(cmd, sizeof cmd, "SCAN %s", cur);
    run(c, cmd);
    TAP_CHECK(text_is(&be[1]->out, "*2\r\n$4\r\nSCAN\r\n$1\r\n0\r\n") && be[0]->ring_len == 0,
              "that master done: the next one from its cursor 0");
    answer(1, "*2\r\n$1\r\n0\r\n*1\r\n$7\r\n705_foo\r\n");
    TAP_CHECK(text_is(&c->out, "*2\r\n$1\r\n0\r\n*1\r\n$3\r\nfoo\r\n"), "the last master done: cursor 0");

    run(c, "SCAN 0 MATCH {foo}*");
    TAP_CHECK(text_is(&be[1]->out, "*4\r\n$4\r\nSCAN\r\n$1\r\n0\r\n$5\r\nMATCH\r\n$10\r\n705_{foo}*\r\n") &&
                  be[0]->ring_len == 0,
              "a hash tag names one bucket: only its master, the exact pattern");
    answer(1, "*2\r\n$1\r\n0\r\n*1\r\n$10\r\n705_{foo}a\r\n");
    TAP_CHECK(text_is(&c->out, "*2\r\n$1\r\n0\r\n*1\r\n$6\r\n{foo}a\r\n"), "and the walk ends with it");

    run(c, "SCAN x");
    TAP_CHECK(text_is(&c->out, KVP_ERR_INVALID_CURSOR), "SCAN x: invalid cursor");
    run(c, "SCAN 0 COUNT");
    TAP_CHECK(text_is(&be[0]->out, "*3\r\n$4\r\nSCAN\r\n$1\r\n0\r\n$5\r\nCOUNT\r\n"),
              "an option without its value goes as is (Redis answers the syntax error)");
    answer(0, "-ERR syntax error\r\n");
    TAP_CHECK(text_is(&c->out, "-ERR syntax error\r\n"), "Redis's error to the client");

    be[0]->forced_down = 1;
    run(c, "SCAN 0");
    TAP_CHECK(text_is(&c->out, "-ERR backend 127.0.0.1:1 unavailable\r\n") && be[0]->ring_len == 0,
              "the master walked is down: its error");
    be[0]->forced_down = 0;
}

static void test_keys(kvp_client *c)
{
    run(c, "KEYS k*");
    TAP_CHECK(text_is(&be[0]->out, "*2\r\n$4\r\nKEYS\r\n$4\r\n*_k*\r\n") &&
                  text_is(&be[1]->out, "*2\r\n$4\r\nKEYS\r\n$4\r\n*_k*\r\n"),
              "KEYS: every master, the superset pattern");
    answer(1, "*1\r\n$5\r\n1_kay\r\n");
    answer(0, "*2\r\n$5\r\n0_kev\r\n$3\r\nkxx\r\n");
    TAP_CHECK(text_is(&c->out, "*2\r\n$3\r\nkev\r\n$3\r\nkay\r\n"), "KEYS: the names of every master, filtered");
    run(c, "KEYS {foo}*");
    TAP_CHECK(be[0]->ring_len == 0 && text_is(&be[1]->out, "*2\r\n$4\r\nKEYS\r\n$10\r\n705_{foo}*\r\n"),
              "KEYS with a hash tag: only its master");
    answer(1, "*0\r\n");
    TAP_CHECK(text_is(&c->out, "*0\r\n"), "an empty array");
}

static void test_randomkey(kvp_client *c)
{
    run(c, "RANDOMKEY");
    TAP_CHECK(be[0]->ring_len == 1 && be[1]->ring_len == 1, "RANDOMKEY: every master");
    kv_buf_consume(&be[0]->out, kv_buf_len(&be[0]->out));
    kv_buf_consume(&be[1]->out, kv_buf_len(&be[1]->out));
    answer(0, "$16\r\nnot_a_bucket_key\r\n");
    TAP_CHECK(be[0]->ring_len == 1 && text_is(&be[0]->out, "*1\r\n$9\r\nRANDOMKEY\r\n"),
              "a key that is not the namespace's: that master is asked again");
    answer(1, "$-1\r\n");
    answer(0, "$5\r\n0_abc\r\n");
    TAP_CHECK(text_is(&c->out, "$3\r\nabc\r\n"), "and its namespace key is the answer");

    run(c, "RANDOMKEY");
    kv_buf_consume(&be[0]->out, kv_buf_len(&be[0]->out));
    kv_buf_consume(&be[1]->out, kv_buf_len(&be[1]->out));
    answer(1, "$-1\r\n");
    int asked = 0;
    while (be[0]->ring_len > 0) {
        answer(0, "$16\r\nnot_a_bucket_key\r\n");
        asked++;
    }
    kv_buf_consume(&be[0]->out, kv_buf_len(&be[0]->out));
    TAP_CHECK(asked == 17 && text_is(&c->out, "$-1\r\n"),
              "only foreign keys: asked 1 + 16 times, then nil (was 'a_bucket_key')");
}

static void test_scripts(kvp_client *c)
{
    run(c, "EVAL return 0");
    int s = (int)(c->id % 2);
    TAP_CHECK(text_is(&be[s]->out, "*3\r\n$4\r\nEVAL\r\n$6\r\nreturn\r\n$1\r\n0\r\n") && be[1 - s]->ring_len == 0,
              "EVAL with no keys: one master, as is");
    answer(s, ":0\r\n");
    TAP_CHECK(text_is(&c->out, ":0\r\n"), "its reply");
    run(c, "FCALL f 1 foo");
    TAP_CHECK(text_is(&be[1]->out, "*4\r\n$5\r\nFCALL\r\n$1\r\nf\r\n$1\r\n1\r\n$7\r\n705_foo\r\n"),
              "FCALL with a key: its master, the key routed");
    answer(1, ":1\r\n");
    kv_buf_consume(&c->out, kv_buf_len(&c->out));
    run(c, "SCRIPT LOAD x");
    TAP_CHECK(text_is(&be[0]->out, "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$1\r\nx\r\n") &&
                  text_is(&be[1]->out, "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$1\r\nx\r\n"),
              "SCRIPT LOAD: every master");
    answer(0, "$2\r\nab\r\n");
    answer(1, "$2\r\nab\r\n");
    TAP_CHECK(text_is(&c->out, "$2\r\nab\r\n"), "the sha they agree on");
    run(c, "SCRIPT EXISTS a b");
    kv_buf_consume(&be[0]->out, kv_buf_len(&be[0]->out));
    kv_buf_consume(&be[1]->out, kv_buf_len(&be[1]->out));
    answer(0, "*2\r\n:1\r\n:1\r\n");
    answer(1, "*2\r\n:1\r\n:0\r\n");
    TAP_CHECK(text_is(&c->out, "*2\r\n:1\r\n:0\r\n"), "SCRIPT EXISTS: 0 where one master lacks it");
}

int main(void)
{
    setup();
    kvp_client *c = fake_client();
    test_scan(c);
    test_keys(c);
    test_randomkey(c);
    test_scripts(c);
    return tap_done();
}
