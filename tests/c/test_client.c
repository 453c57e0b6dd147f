/* test_client.c -- a client's request FIFO and buffers (c/proxy/client.c,
 * c/proxy/backend.c), without sockets or an event loop.
 *
 * Why: replies come back from several backends in any order, but a client
 * must get them in request order; replies that wait behind a slow first
 * request count against the client's output bound (c->held), or a stuck
 * backend lets them pile up without limit; the buffers a 10 MB value
 * grew must be given back once the connection is quiet, or every idle
 * connection keeps its peak; and a backend's INFO text, which is neither
 * NUL-terminated nor of bounded length, must not be read or copied past its
 * end.
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
    kv_buf_init(&c->out, KVP_OUT_MAX);
    kv_buf_init(&c->in, 1UL << 30);
    kv_req_parser_init(&c->parser);
    return c;
}

/* A request forwarded to one backend, as forward_one leaves it. */
static kvp_req *forwarded(kvp_client *c)
{
    kvp_req *r = kvp_req_new(c, KVP_MERGE_NONE, 1);
    r->pending = 1;
    return r;
}

/* What the client has been given so far (and drain it). */
static const char *out_text(kvp_client *c)
{
    static char buf[1024];
    size_t n = kv_buf_len(&c->out);
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    memcpy(buf, kv_buf_rptr(&c->out), n);
    kv_buf_consume(&c->out, n);
    buf[n] = 0;
    return buf;
}

static void test_order_and_held(void)
{
    kvp_client *c = fake_client();
    kvp_req *r1 = forwarded(c);
    kvp_req *r2 = forwarded(c);
    kvp_req *r3 = kvp_req_new(c, KVP_MERGE_SUM, 2); /* DEL over two backends */
    r3->pending = 2 + 1;
    kvp_req_setup_done(r3);
    kvp_client_reply_str(c, "+PONG\r\n"); /* local reply behind them */
    TAP_CHECK(c->nreq == 4, "four requests wait (%d)", c->nreq);

    kvp_req_frag_reply(r3, 1, ":2\r\n", 4);
    kvp_req_frag_reply(r2, 0, "$3\r\nbbb\r\n", 9);
    kvp_req_frag_reply(r3, 0, ":1\r\n", 4);
    TAP_CHECK(kv_buf_len(&c->out) == 0, "nothing goes out while the first request waits");
    TAP_CHECK(c->held == 9 + 4 + 4, "replies behind the head are counted as held (%zu)", c->held);

    kvp_req_frag_reply(r1, 0, "$1\r\na\r\n", 7);
    TAP_CHECK(strcmp(out_text(c), "$1\r\na\r\n$3\r\nbbb\r\n:3\r\n+PONG\r\n") == 0,
              "replies in request order, DEL parts summed");
    TAP_CHECK(c->held == 0 && c->nreq == 0 && c->head == NULL && c->tail == NULL,
              "FIFO empty and nothing held (held %zu, nreq %d)", c->held, c->nreq);

    /* The head answered first: straight out, nothing held. */
    kvp_req *a = forwarded(c);
    kvp_req *b = forwarded(c);
    kvp_req_frag_reply(a, 0, "+A\r\n", 4);
    TAP_CHECK(c->held == 0 && strcmp(out_text(c), "+A\r\n") == 0, "head reply goes straight out");
    kvp_req_frag_reply(b, 0, "+B\r\n", 4);
    TAP_CHECK(c->held == 0 && strcmp(out_text(c), "+B\r\n") == 0 && c->nreq == 0,
              "next one too");
}

static void test_idle_buffers_shrink(void)
{
    kvp_client *c = fake_client();
    w.clients = c;
    atomic_store(&kvp_g.client_timeout_s, 0);
    kv_buf_reserve(&c->in, 10 * 1024 * 1024); /* a 10 MB SET went through */
    c->last_active_ms = 1000;
    w.now_ms = 1500;
    kvp_client_tick(&w);
    TAP_CHECK(c->in.cap >= 10 * 1024 * 1024, "an active client keeps its query buffer");
    w.now_ms = 2500;
    kvp_client_tick(&w);
    TAP_CHECK(c->in.cap <= 64 * 1024, "an idle client gives it back (cap %zu)", c->in.cap);

    kv_buf_reserve(&c->in, 10 * 1024 * 1024);
    kv_buf_append(&c->in, "*2\r\n$3\r\nSET\r\n", 13); /* half a command */
    w.now_ms = 10000;
    kvp_client_tick(&w);
    TAP_CHECK(c->in.cap >= 10 * 1024 * 1024 && kv_buf_len(&c->in) == 13,
              "a buffer holding part of a command is left alone");
    w.clients = NULL;

    kvp_backend *be = kvp_backend_new(&w, "127.0.0.1:1");
    be->in_table = 0; /* so the tick does not connect */
    kv_buf_reserve(&be->in, 10 * 1024 * 1024);
    kvp_backend_tick(be);
    TAP_CHECK(be->in.cap <= 64 * 1024, "a backend's empty reply buffer shrinks (cap %zu)",
              be->in.cap);
    kvp_backend_free(be);
}

static void test_info_merge(void)
{
    kvp_client *c = fake_client();
    kvp_req *r = kvp_req_new(c, KVP_MERGE_INFO, 1);
    r->pending = 1 + 1;
    r->info_section = 1 | 8; /* server, keyspace */
    char text[4096];
    int tl = snprintf(text, sizeof(text), "# Server\r\nredis_version:%03000d\r\n\r\n# Keyspace\r\n"
                      "db0:keys=5,expires=2,avg_ttl=0\r\ndb1:keys=4\r\n", 7);
    char head[32];
    int hl = snprintf(head, sizeof(head), "$%d\r\n", tl);
    size_t n = (size_t)hl + (size_t)tl + 2;
    char *reply = malloc(n); /* exactly the reply: no NUL after it */
    if (reply == NULL)
        abort();
    memcpy(reply, head, (size_t)hl);
    memcpy(reply + hl, text, (size_t)tl);
    memcpy(reply + hl + tl, "\r\n", 2);
    kvp_req_frag_reply(r, 0, reply, n);
    kvp_req_setup_done(r);
    free(reply);
    size_t len = kv_buf_len(&c->out);
    char *out = calloc(1, len + 1);
    memcpy(out, kv_buf_rptr(&c->out), len);
    kv_buf_consume(&c->out, len);
    long blen = strtol(out + 1, NULL, 10);
    const char *body = strstr(out, "\r\n");
    TAP_CHECK(out[0] == '$' && body && (size_t)(body + 2 - out) + (size_t)blen + 2 == len,
              "INFO reply is one well-formed bulk (%zu bytes)", len);
    TAP_CHECK(strstr(out, "db0:keys=9,expires=2,avg_ttl=0\r\n") != NULL,
              "keyspace summed over db lines, one without expires=");
    TAP_CHECK(strstr(out, "redis_version:0000") != NULL && strlen(out) < 1024,
              "a 3000-byte redis_version from a backend is cut, not copied past the buffer");
    free(out);
}

int main(void)
{
    test_order_and_held();
    test_idle_buffers_shrink();
    test_info_merge();
    return tap_done();
}
