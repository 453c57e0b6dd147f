/* test_client.c -- the client layer alone (c/proxy/client.c) over a
 * socketpair: reply order, held bytes, park / resume / deadline, close.
 * Links kvp_client and below: the dispatcher is a stand-in here, which is
 * what the function pointer between the layers allows.
 *
 * Why: replies come back from several backends in any order, but a client
 * must get them in request order; replies that wait behind a slow first
 * request count against the client's output bound, or a stuck backend lets
 * them pile up; a parked command must be run again when a table comes,
 * wait again if that table still blocks it (it used to be dropped and the
 * client never answered), and end in an error after request_timeout; a
 * client that goes away must leave its requests to be freed by their
 * backends' replies. */
#include "../../c/proxy/client.h"
#include "../../c/proxy/errors.h"
#include "tap.h"

#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static kvp_clock clk;
static kvp_wstats st;
static kvp_req_pool pool;
static kvp_clients set;
static struct event_base *base;

/* The stand-in dispatcher: "WAIT" parks (reason BLOCKED) while `blocked`,
 * "GET x" makes a request the test answers, anything else is echoed. */
static int blocked;
static kvp_req *reqs[16];
static int nreqs;
static int ncommands;

static int nclosed;
static void on_close(void *ctx, kvp_client *c)
{
    (void)ctx;
    nclosed += c->head == NULL; /* its requests were orphaned first */
}

static int on_command(void *ctx, kvp_client *c, int argc, kv_str *argv)
{
    (void)ctx;
    ncommands++;
    if (argv[0].len == 4 && memcmp(argv[0].p, "WAIT", 4) == 0) {
        if (blocked) {
            c->park_reason = KVP_PARK_BLOCKED;
            return KV_AGAIN;
        }
        kvp_client_reply_str(c, "+RAN\r\n");
        return KV_OK;
    }
    if (argv[0].len == 3 && memcmp(argv[0].p, "GET", 3) == 0 && argc == 2) {
        kvp_req *r = kvp_client_req_new(c, KVP_MERGE_NONE, 1);
        kvp_req_sent(r);
        reqs[nreqs++] = r;
        return KV_OK;
    }
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "+%.*s\r\n", (int)argv[0].len, argv[0].p);
    kvp_client_reply(c, buf, (size_t)n);
    return KV_OK;
}

/* One client on a socketpair; *peer is the test's end. */
static kvp_client *connect_client(int *peer)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    kvp_clients_accept(&set, sv[0], "test", 1);
    *peer = sv[1];
    return set.list;
}

/* Send bytes as the client, let the loop read them, flush replies. */
static void send_cmd(int peer, const char *s)
{
    ssize_t w = write(peer, s, strlen(s));
    (void)w;
    event_base_loop(base, EVLOOP_NONBLOCK);
    kvp_clients_flush(&set);
}

static const char *recv_all(int peer)
{
    static char buf[4096];
    kvp_clients_flush(&set);
    ssize_t n = recv(peer, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = 0;
    return buf;
}

static void test_order_and_held(void)
{
    int peer;
    kvp_client *c = connect_client(&peer);
    nreqs = 0;
    send_cmd(peer, "GET a\r\nGET b\r\nPING\r\n");
    TAP_CHECK(nreqs == 2 && c->nreq == 3, "two requests and a local reply wait in order (%d)", c->nreq);
    kvp_req_frag_reply(reqs[1], 0, "$3\r\nbbb\r\n", 9);
    TAP_CHECK(strcmp(recv_all(peer), "") == 0, "nothing goes out while the first request waits");
    TAP_CHECK(c->held == 9 + 7, "replies behind the head are counted as held (%zu)", c->held);
    kvp_req_frag_reply(reqs[0], 0, "$1\r\na\r\n", 7);
    TAP_CHECK(strcmp(recv_all(peer), "$1\r\na\r\n$3\r\nbbb\r\n+PING\r\n") == 0, "replies in request order");
    TAP_CHECK(c->held == 0 && c->nreq == 0 && c->head == NULL, "FIFO empty, nothing held");

    /* the client goes away with a request in flight: its reply frees it */
    nreqs = 0;
    send_cmd(peer, "GET c\r\n");
    kvp_req *r = reqs[0];
    close(peer);
    event_base_loop(base, EVLOOP_NONBLOCK);
    kvp_clients_flush(&set);
    TAP_CHECK(set.n == 0 && r->state == KVP_REQ_ORPHANED, "closed: its request is orphaned");
    TAP_CHECK(nclosed == 1, "and the layer above was told (after the orphaning), to take back what it lent");
    int nfree = pool.nfree;
    kvp_req_frag_reply(r, 0, "$1\r\nc\r\n", 7);
    TAP_CHECK(pool.nfree == nfree + 1, "and freed by its reply");
}

static void test_park_resume_deadline(void)
{
    int peer;
    kvp_client *c = connect_client(&peer);
    atomic_store(&kvp_g.request_timeout_ms, 1000);
    blocked = 1;
    ncommands = 0;
    send_cmd(peer, "WAIT\r\nPING\r\n"); /* the read reads the clock */
    uint64_t t0 = c->park_since_ms;
    TAP_CHECK(c->state == KVP_CLIENT_PARKED && set.parked_head == c && ncommands == 1,
              "a command that must wait parks the client; the next one is not run");
    TAP_CHECK(strcmp(recv_all(peer), "") == 0, "nothing answered yet");

    /* a new table that still blocks it: it waits again, keeping its time */
    clk.now_ms = t0 + 500;
    kvp_clients_resume_parked(&set);
    TAP_CHECK(c->state == KVP_CLIENT_PARKED && set.parked_head == c && c->park_since_ms == t0,
              "resumed while still blocked: parked again, since the first park");
    /* and one that frees it */
    blocked = 0;
    kvp_clients_resume_parked(&set);
    TAP_CHECK(c->state == KVP_CLIENT_OPEN && set.parked_head == NULL, "resumed when unblocked: open");
    TAP_CHECK(strcmp(recv_all(peer), "+RAN\r\n+PING\r\n") == 0, "its command and the next ran, in order");

    /* a wait past request_timeout ends in an error, then the rest runs */
    blocked = 1;
    send_cmd(peer, "WAIT\r\nPING\r\n");
    t0 = c->park_since_ms;
    clk.now_ms = t0 + 900;
    kvp_clients_expire_parked(&set);
    TAP_CHECK(c->state == KVP_CLIENT_PARKED, "within request_timeout: still waiting");
    clk.now_ms = t0 + 1001;
    kvp_clients_expire_parked(&set);
    TAP_CHECK(c->state == KVP_CLIENT_OPEN && set.parked_head == NULL, "past request_timeout: off the park list");
    TAP_CHECK(strcmp(recv_all(peer), KVP_ERR_TIMEOUT_BLOCKED "+PING\r\n") == 0,
              "answered with the timeout error in its turn, then the next command");

    /* a parked client is not read; one whose peer left is closed once its
     * wait ends, and is off the park list */
    send_cmd(peer, "WAIT\r\n");
    close(peer);
    clk.now_ms = c->park_since_ms + 1001;
    kvp_clients_expire_parked(&set);
    event_base_loop(base, EVLOOP_NONBLOCK);
    kvp_clients_flush(&set);
    TAP_CHECK(set.parked_head == NULL && set.n == 0, "a parked client whose peer left: closed after its wait");
    blocked = 0;
}

static void test_idle_buffers_shrink(void)
{
    int peer;
    kvp_client *c = connect_client(&peer);
    atomic_store(&kvp_g.client_timeout_s, 0);
    kv_buf_reserve(&c->in, 10 * 1024 * 1024); /* a 10 MB SET went through */
    c->last_active_ms = 1000;
    clk.now_ms = 1500;
    kvp_clients_tick(&set);
    TAP_CHECK(c->in.cap >= 10 * 1024 * 1024, "an active client keeps its query buffer");
    clk.now_ms = 2500;
    kvp_clients_tick(&set);
    TAP_CHECK(c->in.cap <= 64 * 1024, "an idle client gives it back (cap %zu)", c->in.cap);
    send_cmd(peer, "PING\r\n");
    TAP_CHECK(c->parser.argv != NULL && strcmp(recv_all(peer), "+PING\r\n") == 0, "a command: parser arrays in use");
    c->last_active_ms = clk.now_ms - 1000;
    kvp_clients_tick(&set);
    TAP_CHECK(c->parser.argv == NULL && c->parser.argv_cap == 0, "idle a second: the parser's arrays given back too");
    send_cmd(peer, "ECHO\r\n");
    TAP_CHECK(strcmp(recv_all(peer), "+ECHO\r\n") == 0, "and the next command is parsed as ever");
    close(peer);
    event_base_loop(base, EVLOOP_NONBLOCK);
    kvp_clients_flush(&set);
}

/* CLIENT NO-EVICT on: when all clients' buffers pass maxmemory_clients,
 * the biggest client that did not ask to be spared is closed, not it. */
static void test_no_evict(void)
{
    int p1, p2, sv[2];
    signal(SIGPIPE, SIG_IGN); /* as the proxy: a write to a gone peer is an error, not a signal */
    /* non-blocking, as accepted sockets are: the big reply must stay */
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    kvp_clients_accept(&set, sv[0], "big", 1);
    kvp_client *big = set.list;
    p1 = sv[1];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    kvp_clients_accept(&set, sv[0], "small", 1);
    kvp_client *small = set.list;
    p2 = sv[1];
    atomic_store(&big->no_evict, 1);
    uint64_t saved = kvp_g.maxmemory_clients;
    kvp_g.maxmemory_clients = 256 * 1024;
    size_t n = 8 * 1024 * 1024;
    char *blob = malloc(n);
    memset(blob, 'x', n);
    kvp_client_reply(big, blob, n); /* the peer reads nothing: it stays in out */
    kvp_client_reply_str(small, "+small\r\n");
    int before = set.n;
    kvp_clients_flush(&set);
    TAP_CHECK(set.n == before - 1 && set.list == big && small != big,
              "the spared client stays, the other one is closed");
    kvp_g.maxmemory_clients = saved;
    free(blob);
    close(p1);
    close(p2);
    event_base_loop(base, EVLOOP_NONBLOCK);
    kvp_clients_flush(&set);
}

int main(void)
{
    base = event_base_new();
    kvp_g.max_client_num = 100;
    kvp_req_pool_init(&pool, &clk, &st, NULL);
    kvp_clients_init(&set, base, &clk, &pool, on_command, NULL);
    set.on_close = on_close;
    test_order_and_held();
    test_park_resume_deadline();
    test_idle_buffers_shrink();
    test_no_evict();
    return tap_done();
}
