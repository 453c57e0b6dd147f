/* test_append_fail.c -- a buffer that cannot grow never leaves half a
 * command in a backend's output or half a reply in a client's.
 *
 * Why: a command is written into the backend's output piece by piece and its
 * in-flight entry queued after it; if a piece did not fit, the truncated
 * command went to Redis anyway (which then read the next command as its
 * missing argument) and every later reply on that connection went to the
 * wrong request. The failure is injected with the buffers' hard bound
 * (kv_buf.max), which fails a reserve exactly as malloc returning NULL does.
 */
#include "../../c/proxy/dp.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static kvp_worker w;

static kvp_client *fake_client(void)
{
    kvp_client *c = calloc(1, sizeof(*c));
    c->w = &w;
    c->authed = 1;
    kv_buf_init(&c->out, KVP_OUT_MAX);
    kv_buf_init(&c->in, 1UL << 30);
    kv_req_parser_init(&c->parser);
    return c;
}

static kvp_backend *fake_backend(const char *addr)
{
    kvp_backend *be = kvp_backend_new(&w, addr);
    be->state = KVP_BE_CONNECTING; /* usable; commands wait in out */
    return be;
}

/* Two masters: even buckets on the first, odd on the second. */
static void fake_worker(kvp_backend **be)
{
    kvp_cmd_init();
    kvp_table *t = kvp_table_new(1023, 2);
    strcpy(t->servers[0], "127.0.0.1:1");
    strcpy(t->servers[1], "127.0.0.1:2");
    for (int b = 0; b < 1023; b++)
        t->owner[b] = (uint16_t)(b % 2);
    t->version = 1;
    w.table = t;
    w.route = calloc(2, sizeof(*w.route));
    w.route[0] = be[0];
    w.route[1] = be[1];
    atomic_store(&kvp_g.request_timeout_ms, 1000);
}

static int dispatch(kvp_client *c, int argc, const char **args)
{
    kv_str argv[16];
    for (int i = 0; i < argc; i++) {
        argv[i].p = args[i];
        argv[i].len = strlen(args[i]);
    }
    return kvp_dispatch(c, argc, argv);
}

static int out_is(kv_buf *b, const char *want)
{
    size_t n = strlen(want);
    return kv_buf_len(b) == n && memcmp(kv_buf_rptr(b), want, n) == 0;
}

static void drain(kv_buf *b) { kv_buf_consume(b, kv_buf_len(b)); }

int main(void)
{
    kvp_backend *be[2] = {fake_backend("127.0.0.1:1"), fake_backend("127.0.0.1:2")};
    fake_worker(be);
    kvp_client *c = fake_client();
    char big[200];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;

    /* "foo" is in bucket 705: the second master */
    be[1]->out.max = 64;
    const char *set[] = {"SET", "foo", big};
    dispatch(c, 3, set);
    TAP_CHECK(kv_buf_len(&be[1]->out) == 0, "no part of a SET that did not fit is left to send (%zu bytes)",
              kv_buf_len(&be[1]->out));
    TAP_CHECK(be[1]->ring_len == 0, "and nothing waits for its reply (%u)", be[1]->ring_len);
    TAP_CHECK(out_is(&c->out, "-ERR proxy out of memory\r\n"), "the client is answered out of memory");
    drain(&c->out);

    const char *get[] = {"GET", "foo"};
    dispatch(c, 2, get);
    TAP_CHECK(out_is(&be[1]->out, "*2\r\n$3\r\nGET\r\n$7\r\n705_foo\r\n") && be[1]->ring_len == 1,
              "the next command goes out whole, alone");
    kvp_req_frag_reply(be[1]->ring[be[1]->ring_head].req, 0, "$1\r\nx\r\n", 7);
    be[1]->ring_len = 0;
    drain(&be[1]->out);
    TAP_CHECK(out_is(&c->out, "$1\r\nx\r\n"), "and its reply is its own");
    drain(&c->out);

    /* MSET over both masters, the second cannot take its part: the first
     * part is sent whole, the second not at all, the reply is the error */
    const char *mset[] = {"MSET", "foo", big, "hello", "1"}; /* hello: bucket 804, the first */
    dispatch(c, 5, mset);
    TAP_CHECK(kv_buf_len(&be[1]->out) == 0 && be[1]->ring_len == 0, "MSET: no part for the full backend");
    TAP_CHECK(out_is(&be[0]->out, "*3\r\n$4\r\nMSET\r\n$9\r\n804_hello\r\n$1\r\n1\r\n") && be[0]->ring_len == 1,
              "MSET: the other part whole");
    kvp_req_frag_reply(be[0]->ring[be[0]->ring_head].req, 0, "+OK\r\n", 5);
    be[0]->ring_len = 0;
    drain(&be[0]->out);
    TAP_CHECK(out_is(&c->out, "-ERR proxy out of memory\r\n"), "MSET answers the error");
    drain(&c->out);
    be[1]->out.max = KVP_OUT_MAX;

    /* A merged MGET reply that cannot be built answers the error, never a
     * truncated array */
    const char *mget[] = {"MGET", "foo", "hello"};
    dispatch(c, 3, mget);
    kvp_req *r = be[1]->ring[be[1]->ring_head].req;
    kv_buf_release(&r->reply);
    r->reply.max = 16;
    kvp_req_frag_reply(r, 0, "*1\r\n$10\r\n0123456789\r\n", 22);
    kvp_req_frag_reply(be[0]->ring[be[0]->ring_head].req, 1, "*1\r\n$10\r\n9876543210\r\n", 22);
    be[0]->ring_len = be[1]->ring_len = 0;
    drain(&be[0]->out);
    drain(&be[1]->out);
    TAP_CHECK(out_is(&c->out, "-ERR proxy out of memory\r\n"), "MGET merge that does not fit: the error");
    drain(&c->out);

    /* A client whose output cannot take a reply is closed, never given the
     * replies after it */
    kv_buf_release(&c->out);
    c->out.max = 8;
    const char *echo[] = {"ECHO", big};
    dispatch(c, 2, echo);
    TAP_CHECK(kv_buf_len(&c->out) == 0 && c->broken, "a reply the client's output cannot take: marked for closing");
    return tap_done();
}
