/* test_dispatch.c -- routing alone (c/proxy/dispatch.c): split commands,
 * unreachable backends, migrate-on-access sequencing, the reasons a command
 * waits, and commands that cannot be written whole. Backends are left
 * connecting (commands wait in their output, no socket); replies are fed to
 * the in-flight entries by hand. Links kvp_dispatch and below: no worker.
 *
 * Why: a split command must send one fragment per master with its keys in
 * the client's order, or MGET answers values in the wrong places; a key of
 * a migrating bucket must be MIGRATEd before its command runs on the
 * destination, and nothing may run there when the MIGRATE failed; a
 * truncated command in a backend's output shifts every later reply. */
#include "../../c/proxy/dispatch.h"
#include "../../c/proxy/errors.h"
#include "tap.h"

#include <event2/event.h>
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

static kvp_client *fake_client(void)
{
    kvp_client *c = calloc(1, sizeof(*c));
    c->set = &clients;
    c->authed = 1;
    c->state = KVP_CLIENT_OPEN;
    kv_buf_init(&c->out, KVP_OUT_MAX);
    return c;
}

/* Two masters: even buckets on the first, odd on the second ("foo" is in
 * bucket 705, "hello" in 804, "a" in 58, "b" in 227 with murmur2). */
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
        /* made by hand: kvp_backends_get would connect */
        be[i] = calloc(1, sizeof(kvp_backend));
        be[i]->set = &backends;
        be[i]->state = KVP_BE_CONNECTING;
        be[i]->ring_cap = 64;
        be[i]->ring = calloc(64, sizeof(kvp_inflight));
        kv_buf_init(&be[i]->out, KVP_OUT_MAX);
        snprintf(be[i]->addr, sizeof(be[i]->addr), "%s", t->servers[i]);
        snprintf(be[i]->host, sizeof(be[i]->host), "127.0.0.1");
        be[i]->port = i + 1;
        be[i]->unavailable_len = (size_t)snprintf(be[i]->unavailable, sizeof(be[i]->unavailable),
                                                  "-ERR backend %s unavailable\r\n", be[i]->addr);
        d.route[i] = be[i];
    }
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

/* The oldest entry waiting on backend i gets reply p. */
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

/* A key of the even master other than hello, and its routed form. */
static const char *even_key(char *routed, size_t n) /* n >= 64 */
{
    static char key[16];
    for (int i = 0;; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        uint32_t b = kvp_table_bucket(t, key, strlen(key));
        if (b % 2 == 0 && b != 804) {
            snprintf(routed, n, "$%zu\r\n%u_%s\r\n", strlen(key) + strlen(t->prefix[b]), b, key);
            return key;
        }
    }
}

static void test_split(kvp_client *c)
{
    char routed[64], cmd[96], want[160];
    const char *k = even_key(routed, sizeof(routed));
    snprintf(cmd, sizeof(cmd), "MGET foo hello %s foo", k);
    run(c, cmd);
    TAP_CHECK(be[1]->ring_len == 1 && be[0]->ring_len == 1, "MGET over two masters: one fragment each");
    TAP_CHECK(text_is(&be[1]->out, "*3\r\n$4\r\nMGET\r\n$7\r\n705_foo\r\n$7\r\n705_foo\r\n"),
              "the odd master's keys, in the client's order");
    snprintf(want, sizeof(want), "*3\r\n$4\r\nMGET\r\n$9\r\n804_hello\r\n%s", routed);
    TAP_CHECK(text_is(&be[0]->out, want), "the even master's keys, in the client's order");
    answer(0, "*2\r\n$1\r\nH\r\n$1\r\nK\r\n");
    answer(1, "*2\r\n$1\r\nF\r\n$1\r\nG\r\n");
    TAP_CHECK(text_is(&c->out, "*4\r\n$1\r\nF\r\n$1\r\nH\r\n$1\r\nK\r\n$1\r\nG\r\n"), "values back in key order");

    /* one master known down: its keys carry its error in place */
    be[1]->forced_down = 1;
    run(c, "MGET foo hello");
    TAP_CHECK(be[1]->ring_len == 0 && kv_buf_len(&be[1]->out) == 0, "nothing sent to the master known down");
    answer(0, "*1\r\n$1\r\nH\r\n");
    TAP_CHECK(text_is(&c->out, "*2\r\n-ERR backend 127.0.0.1:2 unavailable\r\n$1\r\nH\r\n"),
              "MGET: the unavailable master's error in its key's place");
    run(c, "MSET foo 1 hello 2");
    kv_buf_consume(&be[0]->out, kv_buf_len(&be[0]->out));
    answer(0, "+OK\r\n");
    TAP_CHECK(text_is(&c->out, "-ERR backend 127.0.0.1:2 unavailable\r\n"), "MSET with a part down: the error");
    be[1]->forced_down = 0;

    /* all keys on one master: forwarded as is, no merge */
    run(c, "DEL foo foo");
    TAP_CHECK(text_is(&be[1]->out, "*3\r\n$3\r\nDEL\r\n$7\r\n705_foo\r\n$7\r\n705_foo\r\n") && be[1]->ring_len == 1,
              "keys of one master: one command");
    answer(1, ":1\r\n");
    TAP_CHECK(text_is(&c->out, ":1\r\n"), "its reply as is");
}

static void test_migrate_on_access(kvp_client *c)
{
    /* bucket 705 (foo) migrates from the odd master to the even one */
    t->mig_dst[705] = 0;
    run(c, "GET foo");
    TAP_CHECK(be[1]->ring_len == 1 && be[0]->ring_len == 0 && d.premig_inflight == 1,
              "a key of a migrating bucket: a MIGRATE on the source first, nothing on the destination");
    TAP_CHECK(text_is(&be[1]->out, "*8\r\n$7\r\nMIGRATE\r\n$9\r\n127.0.0.1\r\n$1\r\n1\r\n$0\r\n\r\n$1\r\n0\r\n"
                                   "$4\r\n1000\r\n$4\r\nKEYS\r\n$7\r\n705_foo\r\n"),
              "MIGRATE to the destination names the key");
    answer(1, "+NOKEY\r\n");
    TAP_CHECK(text_is(&be[0]->out, "*2\r\n$3\r\nGET\r\n$7\r\n705_foo\r\n") && be[0]->ring_len == 1 &&
                  d.premig_inflight == 0,
              "MIGRATE answered: the command goes to the destination");
    answer(0, "$1\r\nv\r\n");
    TAP_CHECK(text_is(&c->out, "$1\r\nv\r\n"), "and its reply to the client");

    /* a failed MIGRATE: nothing runs on the destination */
    run(c, "SET foo w");
    kv_buf_consume(&be[1]->out, kv_buf_len(&be[1]->out));
    answer(1, "-IOERR error or timeout\r\n");
    TAP_CHECK(kv_buf_len(&be[0]->out) == 0 && be[0]->ring_len == 0, "MIGRATE failed: nothing sent to the destination");
    TAP_CHECK(text_is(&c->out, "-ERR migrate-on-access failed: IOERR error or timeout\r\n"), "the client gets why");

    /* a split command over a migrating bucket and an owned one */
    run(c, "MGET foo hello");
    TAP_CHECK(be[1]->ring_len == 1 && be[0]->ring_len == 0, "MGET: the MIGRATE for foo's fragment first");
    kv_buf_consume(&be[1]->out, kv_buf_len(&be[1]->out));
    answer(1, "+OK\r\n");
    TAP_CHECK(text_is(&be[0]->out, "*3\r\n$4\r\nMGET\r\n$7\r\n705_foo\r\n$9\r\n804_hello\r\n"),
              "then one fragment on the destination with both keys");
    answer(0, "*2\r\n$1\r\nF\r\n$1\r\nH\r\n");
    TAP_CHECK(text_is(&c->out, "*2\r\n$1\r\nF\r\n$1\r\nH\r\n"), "merged");
    t->mig_dst[705] = KVP_NO_SERVER;
}

static void test_waits(kvp_client *c)
{
    t->blocked[705] = 1;
    TAP_CHECK(run(c, "GET foo") == KV_AGAIN && c->park_reason == KVP_PARK_BLOCKED, "a blocked bucket: wait (blocked)");
    TAP_CHECK(run(c, "MGET hello foo") == KV_AGAIN && kv_buf_len(&be[0]->out) == 0, "a split with one: wait, nothing sent");
    t->blocked[705] = 0;
    d.table_waits = 1;
    TAP_CHECK(run(c, "GET hello") == KV_AGAIN && c->park_reason == KVP_PARK_TABLE_SWAP, "a table swap held back: wait");
    TAP_CHECK(run(c, "PING") == KV_OK && text_is(&c->out, "+PONG\r\n"), "a local command does not");
    d.table_waits = 0;
    d.table = NULL;
    TAP_CHECK(run(c, "GET hello") == KV_AGAIN && c->park_reason == KVP_PARK_NO_TABLE, "no table: wait");
    d.table_wait_expired = 1;
    TAP_CHECK(run(c, "GET hello") == KV_OK && text_is(&c->out, KVP_ERR_NO_TABLE), "no table past the wait: the error");
    d.table = t;
}

static void test_append_fail(kvp_client *c)
{
    char big[300] = "SET foo ";
    memset(big + 8, 'v', 200);
    /* the odd master's output cannot take the SET */
    kv_buf_release(&be[1]->out);
    be[1]->out.max = 64;
    run(c, big);
    TAP_CHECK(kv_buf_len(&be[1]->out) == 0 && be[1]->ring_len == 0, "no part of a SET that did not fit is left, nothing queued");
    TAP_CHECK(text_is(&c->out, KVP_ERR_OOM), "the client is answered out of memory");
    run(c, "GET foo");
    TAP_CHECK(text_is(&be[1]->out, "*2\r\n$3\r\nGET\r\n$7\r\n705_foo\r\n") && be[1]->ring_len == 1,
              "the next command goes out whole, alone");
    answer(1, "$1\r\nx\r\n");
    TAP_CHECK(text_is(&c->out, "$1\r\nx\r\n"), "and its reply is its own");
    char mset[300] = "MSET hello 1 foo ";
    memset(mset + 17, 'v', 200);
    run(c, mset);
    TAP_CHECK(kv_buf_len(&be[1]->out) == 0 && be[1]->ring_len == 0, "MSET: no part for the full backend");
    TAP_CHECK(text_is(&be[0]->out, "*3\r\n$4\r\nMSET\r\n$9\r\n804_hello\r\n$1\r\n1\r\n"), "MSET: the other part whole");
    answer(0, "+OK\r\n");
    TAP_CHECK(text_is(&c->out, KVP_ERR_OOM), "MSET answers the error");
    be[1]->out.max = KVP_OUT_MAX;
}

static void test_lending(kvp_client *c)
{
    kvp_backend *own = kvp_dispatch_lend(&d, c, 1);
    TAP_CHECK(own && own->mode == KVP_BE_OWNED && own != be[1] && c->lent == own,
              "a client borrows a connection of its own to a master (not the shared one)");
    TAP_CHECK(kvp_dispatch_lend(&d, c, 1) == own && kvp_dispatch_lend(&d, c, 0) == NULL,
              "asked again it has the same; one elsewhere is refused while it holds one");
    TAP_CHECK(kvp_backends_owned(&backends, t->servers[1]) == 1, "it counts against the master's bound");
    kvp_dispatch_client_gone(&d, c);
    TAP_CHECK(c->lent == NULL && kvp_backends_owned(&backends, t->servers[1]) == 0,
              "the client gone: given back (not connected yet, so closed, never lent again)");
}

/* The multibulk of a space-separated line, as the proxy writes it. */
static const char *mb(const char *line)
{
    static char out[1024];
    char buf[512];
    int n = 0;
    size_t o = 0;
    strcpy(buf, line);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " "))
        n++;
    o += (size_t)snprintf(out, sizeof(out), "*%d\r\n", n);
    strcpy(buf, line);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " "))
        o += (size_t)snprintf(out + o, sizeof(out) - o, "$%zu\r\n%s\r\n", strlen(tok), tok);
    return out;
}

/* Keys named by keyword (STORE, STREAMS), SORT's BY / GET patterns, and
 * malformed arguments forwarded for Redis to word the error. "{foo}..." is
 * in foo's bucket 705 (odd master) once hash tags are on. */
static void test_keyword(kvp_client *c)
{
    t->hash_tags = 1;
    run(c, "SORT {foo}l BY w_{foo}_* GET # GET h_{foo}_*->f LIMIT 0 5 STORE {foo}d");
    TAP_CHECK(text_is(&be[1]->out, mb("SORT 705_{foo}l BY 705_w_{foo}_* GET # GET 705_h_{foo}_*->f LIMIT 0 5 "
                                      "STORE 705_{foo}d")) && be[1]->ring_len == 1,
              "SORT: key, STORE key and BY/GET patterns with the bucket prefix; # as is");
    answer(1, ":3\r\n");
    TAP_CHECK(text_is(&c->out, ":3\r\n"), "SORT ... STORE: its reply");

    run(c, "SORT_RO {foo}l BY nosort GET # GET nostar");
    TAP_CHECK(text_is(&be[1]->out, mb("SORT_RO 705_{foo}l BY nosort GET # GET nostar")),
              "SORT_RO: BY without '*' (no sorting) and GET without '*' name no key: as they are");
    answer(1, "*0\r\n");
    kv_buf_consume(&c->out, kv_buf_len(&c->out));

    char want[512];
    run(c, "SORT {foo}l BY w_*");
    snprintf(want, sizeof(want), KVP_ERR_SORT_PATTERN_FMT, "BY");
    TAP_CHECK(text_is(&c->out, want) && be[1]->ring_len == 0 && be[0]->ring_len == 0,
              "SORT BY a pattern without the key's hash tag: refused, nothing sent");
    run(c, "SORT {foo}l GET # GET w_{hello}_*");
    snprintf(want, sizeof(want), KVP_ERR_SORT_PATTERN_FMT, "GET");
    TAP_CHECK(text_is(&c->out, want) && be[1]->ring_len == 0, "SORT GET with another bucket's tag: refused");
    run(c, "SORT {foo}l GET w_*_{foo}");
    TAP_CHECK(text_is(&c->out, want), "SORT GET with the tag after the '*': refused");
    run(c, "SORT {foo}l STORE hello");
    TAP_CHECK(text_is(&c->out, KVP_ERR_CROSSSLOT) && be[0]->ring_len == 0 && be[1]->ring_len == 0,
              "SORT STORE into another bucket: CROSSSLOT");
    t->mig_dst[705] = 0;
    run(c, "SORT {foo}l BY w_{foo}_*");
    TAP_CHECK(text_is(&c->out, KVP_ERR_SORT_MIGRATING) && be[0]->ring_len == 0 && be[1]->ring_len == 0,
              "SORT with patterns on a migrating bucket: TRYAGAIN, no MIGRATE");
    run(c, "GEORADIUS {foo}g 0 0 1 km STORE {foo}d");
    TAP_CHECK(text_is(&be[1]->out, "*9\r\n$7\r\nMIGRATE\r\n$9\r\n127.0.0.1\r\n$1\r\n1\r\n$0\r\n\r\n$1\r\n0\r\n"
                                   "$4\r\n1000\r\n$4\r\nKEYS\r\n$10\r\n705_{foo}g\r\n$10\r\n705_{foo}d\r\n") &&
                  be[0]->ring_len == 0,
              "GEORADIUS ... STORE on a migrating bucket: both keys MIGRATEd first");
    answer(1, "+OK\r\n");
    TAP_CHECK(text_is(&be[0]->out, mb("GEORADIUS 705_{foo}g 0 0 1 km STORE 705_{foo}d")), "then run on the destination");
    answer(0, ":0\r\n");
    kv_buf_consume(&c->out, kv_buf_len(&c->out));
    t->mig_dst[705] = KVP_NO_SERVER;
    t->hash_tags = 0;
    run(c, "SORT {foo}l BY w_{foo}_*");
    snprintf(want, sizeof(want), KVP_ERR_SORT_PATTERN_FMT, "BY");
    TAP_CHECK(text_is(&c->out, want), "hash tags off: a pattern never provably shares the bucket");
    t->hash_tags = 1;

    run(c, "GEORADIUS {foo}g 0 0 100 km ASC COUNT 2 STORE {foo}d");
    TAP_CHECK(text_is(&be[1]->out, mb("GEORADIUS 705_{foo}g 0 0 100 km ASC COUNT 2 STORE 705_{foo}d")),
              "GEORADIUS ... STORE: both keys rewritten");
    answer(1, ":2\r\n");
    TAP_CHECK(text_is(&c->out, ":2\r\n"), "its reply");
    run(c, "GEORADIUSBYMEMBER {foo}g m 1 km STOREDIST hello");
    TAP_CHECK(text_is(&c->out, KVP_ERR_CROSSSLOT), "GEORADIUSBYMEMBER STOREDIST into another bucket: CROSSSLOT");

    run(c, "XREAD COUNT 1 STREAMS {foo}a {foo}b 0 0");
    TAP_CHECK(text_is(&be[1]->out, mb("XREAD COUNT 1 STREAMS 705_{foo}a 705_{foo}b 0 0")), "XREAD: stream keys rewritten");
    answer(1, "*2\r\n*2\r\n$10\r\n705_{foo}a\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
              "*2\r\n$10\r\n705_{foo}b\r\n*0\r\n");
    TAP_CHECK(text_is(&c->out, "*2\r\n*2\r\n$6\r\n{foo}a\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
                               "*2\r\n$6\r\n{foo}b\r\n*0\r\n"),
              "XREAD: the client's stream names in the reply");
    run(c, "XREADGROUP GROUP g c STREAMS {foo}a >");
    TAP_CHECK(text_is(&be[1]->out, mb("XREADGROUP GROUP g c STREAMS 705_{foo}a >")), "XREADGROUP: rewritten");
    answer(1, "*-1\r\n");
    TAP_CHECK(text_is(&c->out, "*-1\r\n"), "XREADGROUP: nil as is");
    run(c, "XREAD STREAMS {foo}a hello 0 0");
    TAP_CHECK(text_is(&c->out, KVP_ERR_CROSSSLOT), "XREAD over two buckets: CROSSSLOT");
    run(c, "XREAD BLOCK 0 STREAMS foo 0");
    kvp_backend *own = c->lent;
    TAP_CHECK(own && own->mode == KVP_BE_OWNED && own != be[1] && !c->lent_pinned &&
                  text_is(&own->out, mb("XREAD BLOCK 0 STREAMS 705_foo 0")) && own->ring_len == 1 &&
                  own->ring[own->ring_head].sent_ms == UINT64_MAX && be[0]->ring_len == 0 && be[1]->ring_len == 0,
              "XREAD with BLOCK: on a connection of the client's own, with no request deadline");
    run(c, "BLPOP {foo}q 0");
    TAP_CHECK(c->lent == own && own->ring_len == 2 && be[1]->ring_len == 0,
              "BLPOP on the same master: the same connection, behind it (as on one Redis connection)");
    char other[64] = "";
    for (int i = 0; other[0] == 0; i++) { /* a key of the other master */
        char k[32];
        snprintf(k, sizeof(k), "k%d", i);
        if (t->owner[kvp_table_bucket(t, k, strlen(k))] == 0)
            snprintf(other, sizeof(other), "BLPOP %s 0", k);
    }
    run(c, other);
    TAP_CHECK(c->lent == own && be[0]->ring_len == 0 && kvp_backends_owned(&backends, t->servers[0]) == 0,
              "BLPOP on the other master while it waits: nothing sent, the connection kept");
    kvp_dispatch_client_gone(&d, c);
    size_t ol = kv_buf_len(&c->out), el = strlen(KVP_ERR_OWNED_BUSY);
    TAP_CHECK(c->lent == NULL && ol > el && memcmp(kv_buf_rptr(&c->out) + ol - el, KVP_ERR_OWNED_BUSY, el) == 0,
              "the client gone: its connection closed (commands waited on it), and the refusal answered "
              "in its turn, after them");
    kv_buf_consume(&c->out, kv_buf_len(&c->out));

    /* malformed: Redis words the error (the command goes as it is) */
    int s = (int)(c->id % 2);
    run(c, "XREAD STREAMS foo 0 0");
    TAP_CHECK(text_is(&be[s]->out, mb("XREAD STREAMS foo 0 0")) && be[s]->ring_len == 1,
              "XREAD with an unbalanced STREAMS list: forwarded as is");
    answer(s, "-ERR Unbalanced XREAD list\r\n");
    TAP_CHECK(text_is(&c->out, "-ERR Unbalanced XREAD list\r\n"), "Redis's error to the client");
    run(c, "LMPOP 5 a left");
    TAP_CHECK(text_is(&be[s]->out, mb("LMPOP 5 a left")), "LMPOP with numkeys past the end: forwarded as is");
    answer(s, "-ERR syntax error\r\n");
    kv_buf_consume(&c->out, kv_buf_len(&c->out));
    run(c, "SINTERCARD 0 a");
    TAP_CHECK(text_is(&be[s]->out, mb("SINTERCARD 0 a")), "SINTERCARD 0: forwarded as is");
    answer(s, "-ERR numkeys should be greater than 0\r\n");
    kv_buf_consume(&c->out, kv_buf_len(&c->out));
    run(c, "EVAL s 0");
    TAP_CHECK(text_is(&be[s]->out, mb("EVAL s 0")) && be[s]->ring_len == 1,
              "EVAL with no keys (valid for Redis): runs on one master, as it is");
    answer(s, "$1\r\nx\r\n");
    kv_buf_consume(&c->out, kv_buf_len(&c->out));
    t->hash_tags = 0;
}

int main(void)
{
    setup();
    kvp_client *c = fake_client();
    test_split(c);
    test_migrate_on_access(c);
    test_waits(c);
    test_append_fail(c);
    test_lending(c);
    test_keyword(c);
    return tap_done();
}
