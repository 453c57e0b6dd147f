/* test_pubsub.c -- the pub/sub layer (c/proxy/pubsub.c) with real client
 * connections (socket pairs) and a stand-in Redis in this process that the
 * test answers by hand, so the order of what the master says is ours to
 * choose. Links kvp_pubsub and below: no dispatcher.
 *
 * Why: a client's "subscribe" confirmation written before the master has
 * confirmed the subscription lets a PUBLISH sent right after it be missed;
 * a message before the confirmation breaks the client library's state; a
 * second subscriber must not cost a second SUBSCRIBE (nor the last one to
 * leave keep the master subscribed); a subscriber connection that breaks
 * must subscribe everything again. */
#include "../../c/proxy/pubsub.h"
#include "tap.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct event_base *base;
static kvp_clock clk;
static kvp_backends backends;
static kvp_clients clients;
static kvp_req_pool pool;
static kvp_pubsub *ps;
static int lfd;
static char addr[32];

static int no_command(void *ctx, kvp_client *c, int argc, kv_str *argv)
{
    (void)ctx;
    (void)c;
    (void)argc;
    (void)argv;
    return KV_OK;
}

static void on_close(void *ctx, kvp_client *c)
{
    (void)ctx;
    kvp_pubsub_client_gone(ps, c);
}

static void spin(void)
{
    for (int i = 0; i < 10; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        kvp_backends_flush(&backends);
        kvp_clients_flush(&clients);
        usleep(2000);
    }
}

static int accept_one(void)
{
    struct pollfd p = {lfd, POLLIN, 0};
    for (int i = 0; i < 100 && poll(&p, 1, 10) == 0; i++)
        spin();
    return accept(lfd, NULL, NULL);
}

/* What fd has to read now (after letting the loop run): "" when nothing. */
static const char *drain(int fd)
{
    static char buf[8192];
    spin();
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = 0;
    return buf;
}

static void put(int fd, const char *s)
{
    ssize_t w = write(fd, s, strlen(s));
    (void)w;
    spin();
}

/* A client connection: the proxy's side (returned) and the test's (*peer). */
static kvp_client *new_client(int *peer)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return NULL;
    kvp_clients_accept(&clients, sv[0], "127.0.0.1:1", 1);
    *peer = sv[1];
    return clients.list; /* the newest is at the head */
}

static void cmd(kvp_client *c, const char *name, const char *a1, const char *a2)
{
    kv_str argv[3] = {{name, strlen(name)}, {a1, a1 ? strlen(a1) : 0}, {a2, a2 ? strlen(a2) : 0}};
    int argc = a2 ? 3 : a1 ? 2 : 1;
    const kvp_cmd *k = kvp_cmd_lookup(name, strlen(name));
    kvp_pubsub_command(ps, c, k, argc, argv);
}

#define CONF_A "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
#define MSG_A "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"
#define SUB_A "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"
#define UNSUB_A "*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\na\r\n"

static void test_order_and_refcount(void)
{
    int pc, pd;
    kvp_client *c = new_client(&pc);
    cmd(c, "SUBSCRIBE", "a", NULL);
    int m = accept_one();
    TAP_CHECK(strcmp(drain(m), SUB_A) == 0, "the first subscriber makes the worker SUBSCRIBE on the master");
    TAP_CHECK(strcmp(drain(pc), "") == 0 && c->subscribed, "its confirmation waits for the master's");
    kv_str ping = {"PING", 4};
    kvp_pubsub_ping(c, 1, &ping); /* a later reply of the client waits behind it */
    TAP_CHECK(strcmp(drain(pc), "") == 0, "so does a later reply");
    put(m, CONF_A MSG_A);
    const char *got = drain(pc);
    TAP_CHECK(strcmp(got, CONF_A "*2\r\n$4\r\npong\r\n$0\r\n\r\n" MSG_A) == 0,
              "the master confirms: the confirmation, the later reply, then the message, in that order");

    kvp_client *d = new_client(&pd);
    cmd(d, "SUBSCRIBE", "a", NULL);
    TAP_CHECK(strcmp(drain(pd), CONF_A) == 0, "a second subscriber is confirmed at once");
    TAP_CHECK(strcmp(drain(m), "") == 0, "without a second SUBSCRIBE on the master");
    put(m, MSG_A);
    TAP_CHECK(strcmp(drain(pc), MSG_A) == 0 && strcmp(drain(pd), MSG_A) == 0, "one message, both clients");

    cmd(c, "UNSUBSCRIBE", NULL, NULL);
    TAP_CHECK(strcmp(drain(pc), "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n") == 0 && !c->subscribed,
              "UNSUBSCRIBE: the client's own count, out of subscribed mode");
    TAP_CHECK(strcmp(drain(m), "") == 0, "the master stays subscribed for the other client");
    put(m, MSG_A);
    TAP_CHECK(strcmp(drain(pc), "") == 0 && strcmp(drain(pd), MSG_A) == 0, "only the subscribed client gets it");

    /* the subscriber connection breaks: reconnected, subscribed again */
    close(m);
    m = accept_one();
    TAP_CHECK(strcmp(drain(m), SUB_A) == 0, "a broken subscriber connection subscribes again");
    put(m, CONF_A MSG_A);
    TAP_CHECK(strcmp(drain(pd), MSG_A) == 0, "and messages flow again");

    /* the last client goes: UNSUBSCRIBE, the entry freed once confirmed */
    close(pd);
    spin();
    TAP_CHECK(strcmp(drain(m), UNSUB_A) == 0, "the last subscriber gone: UNSUBSCRIBE on the master");
    TAP_CHECK(kvp_pubsub_entries(ps) == 1, "the channel is kept until the master confirms");
    put(m, "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n");
    TAP_CHECK(kvp_pubsub_entries(ps) == 0, "then freed");

    /* subscribe, unsubscribe, subscribe again before the master answers */
    cmd(c, "SUBSCRIBE", "a", NULL);
    cmd(c, "UNSUBSCRIBE", "a", NULL);
    cmd(c, "SUBSCRIBE", "a", NULL);
    TAP_CHECK(strcmp(drain(m), SUB_A UNSUB_A SUB_A) == 0, "each transition goes to the master, in order");
    got = drain(pc);
    TAP_CHECK(strcmp(got, CONF_A "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n") == 0,
              "a subscription left before the master confirmed it: both replies, the second SUBSCRIBE's waits");
    put(m, CONF_A);
    TAP_CHECK(strcmp(drain(pc), "") == 0, "the first confirmation does not release the second");
    put(m, "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n" MSG_A);
    TAP_CHECK(strcmp(drain(pc), "") == 0, "no message before the client's confirmation");
    put(m, CONF_A MSG_A);
    TAP_CHECK(strcmp(drain(pc), CONF_A MSG_A) == 0, "the last confirmation releases it, then messages");
    close(pc);
    spin();
    drain(m);
    put(m, "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n");
    TAP_CHECK(kvp_pubsub_entries(ps) == 0, "nothing left");
    close(m);
}

int main(void)
{
    base = event_base_new();
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t sl = sizeof(sa);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 16) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0)
        return 1;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    atomic_store(&kvp_g.request_timeout_ms, 1000);
    atomic_store(&kvp_g.max_client_num, 100);
    kvp_cmd_init();
    kvp_clock_read(&clk);
    kvp_req_pool_init(&pool, &clk, NULL, NULL);
    kvp_backends_init(&backends, base, &clk, 0);
    kvp_clients_init(&clients, base, &clk, &pool, no_command, NULL);
    clients.on_close = on_close;
    ps = kvp_pubsub_new(&backends, &clk, NULL, 0);
    kvp_table *t = kvp_table_new(16, 1);
    snprintf(t->servers[0], sizeof(t->servers[0]), "%s", addr);
    kvp_pubsub_table(ps, t);
    kvp_table_unref(t);
    test_order_and_refcount();
    kvp_clients_free(&clients);
    kvp_pubsub_free(ps);
    kvp_backends_free(&backends);
    kvp_req_pool_free(&pool);
    event_base_free(base);
    return tap_done();
}
