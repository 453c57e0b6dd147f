/* test_backend.c -- the backend layer alone (c/proxy/backend.c) against a
 * stand-in Redis in this process (a listening socket the test answers by
 * hand): connect, AUTH, ready, replies to their callbacks in order, request
 * timeout, a connection closed by the peer, a refused AUTH, and lending:
 * the bound, RESET on give-back, reuse, and never reusing a connection in
 * an unknown state. Links kvp_backend and below: no request, no client.
 *
 * Why: a reply matched to the wrong entry goes to the wrong client; a
 * stalled master must not hold requests past request_timeout; a wrong
 * password must fail requests with a clear error; a connection lent to a
 * client (MULTI, BLPOP, SUBSCRIBE) and reused without a RESET would carry
 * that client's transaction or subscription into the next one's. */
#include "../../c/proxy/backend.h"
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
static kvp_backends set;
static int lfd, port;
static char addr[32];

static char got[8][128];
static int ngot;

static void on_reply(void *ctx, uint32_t tag, const char *p, size_t n)
{
    (void)ctx;
    snprintf(got[ngot % 8], sizeof(got[0]), "%u:%.*s", tag, (int)n, p);
    ngot++;
}

static void spin(void)
{
    for (int i = 0; i < 20; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        kvp_backends_flush(&set);
        usleep(2000);
    }
}

/* The stand-in accepts the next connection. */
static int accept_one(void)
{
    struct pollfd p = {lfd, POLLIN, 0};
    for (int i = 0; i < 100 && poll(&p, 1, 10) == 0; i++)
        spin();
    return accept(lfd, NULL, NULL);
}

/* What the stand-in has read (waits a little for it). */
static const char *server_read(int fd)
{
    static char buf[4096];
    struct pollfd p = {fd, POLLIN, 0};
    for (int i = 0; i < 100 && poll(&p, 1, 10) == 0; i++)
        spin();
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = 0;
    return buf;
}

static void server_write(int fd, const char *s)
{
    ssize_t w = write(fd, s, strlen(s));
    (void)w;
    spin();
}

static void send_cmd(kvp_backend *be, const char *cmd, uint32_t tag)
{
    size_t mark = kv_buf_mark(&be->out);
    kv_buf_append(&be->out, cmd, strlen(cmd));
    kvp_backend_send(be, mark, on_reply, NULL, tag);
    kvp_backends_flush(&set);
}

static void test_states(void)
{
    atomic_store(&kvp_g.redis_password, "pw");
    atomic_store(&kvp_g.request_timeout_ms, 1000);
    kvp_backend *be = kvp_backends_get(&set, addr);
    TAP_CHECK(be && be->mode == KVP_BE_SHARED && be->state == KVP_BE_CONNECTING, "get: connecting");
    send_cmd(be, "*1\r\n$4\r\nPING\r\n", 1); /* queued while connecting */
    int s = accept_one();
    spin();
    TAP_CHECK(be->state == KVP_BE_AUTHING, "connected: AUTH sent first");
    TAP_CHECK(strcmp(server_read(s), "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n") == 0, "the server sees AUTH alone");
    server_write(s, "+OK\r\n");
    TAP_CHECK(be->state == KVP_BE_READY, "+OK: ready");
    TAP_CHECK(strcmp(server_read(s), "*1\r\n$4\r\nPING\r\n") == 0, "the queued command follows");
    send_cmd(be, "*1\r\n$4\r\nECHO\r\n", 2);
    server_read(s);
    server_write(s, "+PONG\r\n$1\r\nx\r\n");
    TAP_CHECK(ngot == 2 && strcmp(got[0], "1:+PONG\r\n") == 0 && strcmp(got[1], "2:$1\r\nx\r\n") == 0,
              "replies reach their callbacks in order");

    /* request timeout: the master does not answer */
    send_cmd(be, "*1\r\n$4\r\nPING\r\n", 3);
    server_read(s);
    clk.now_ms += 1500;
    kvp_backends_tick(&set);
    TAP_CHECK(ngot == 3 && strcmp(got[2], "3:-ERR request timeout\r\n") == 0, "past request_timeout: the entry fails");
    TAP_CHECK(be->state == KVP_BE_CONNECTING || be->state == KVP_BE_AUTHING, "and a new connection is made");
    close(s);
    s = accept_one();
    server_read(s);
    server_write(s, "+OK\r\n");
    TAP_CHECK(be->state == KVP_BE_READY, "ready again");

    /* closed by the peer with a command in flight */
    send_cmd(be, "*1\r\n$4\r\nPING\r\n", 4);
    server_read(s);
    close(s);
    spin();
    TAP_CHECK(ngot == 4 && strstr(got[3], "4:-ERR backend") && strstr(got[3], "unavailable"),
              "a connection closed by the peer fails what was in flight");

    /* a refused AUTH: down, with the error for what waits */
    s = accept_one();
    send_cmd(be, "*1\r\n$4\r\nPING\r\n", 5);
    server_read(s);
    server_write(s, "-WRONGPASS invalid\r\n");
    TAP_CHECK(be->state == KVP_BE_DOWN && ngot == 5 && strstr(got[4], "5:-ERR backend"),
              "a refused AUTH: down, the queued command fails");
    TAP_CHECK(kvp_backend_usable(be) == 0, "and callers fail fast during the back-off");
    close(s);
}

/* A callback that, told its command failed, sends a new one at once (a
 * client resumed by a table that the failure let in). */
static kvp_backend *requeue_be;
static void requeue_cb(void *ctx, uint32_t tag, const char *p, size_t n)
{
    on_reply(ctx, tag, p, n);
    if (tag == 10 && kvp_backend_usable(requeue_be))
        send_cmd(requeue_be, "*1\r\n$4\r\nPING\r\n", 11);
}

static void test_reset_with_requeue(void)
{
    atomic_store(&kvp_g.redis_password, "");
    kvp_backend *be = kvp_backends_get(&set, addr);
    kvp_backends_force(&set, addr, 0);
    be->retry_at_ms = 0;
    kvp_backend_usable(be);
    int s = accept_one();
    spin();
    requeue_be = be;
    size_t mark = kv_buf_mark(&be->out);
    kv_buf_append(&be->out, "*1\r\n$4\r\nECHO\r\n", 14);
    kvp_backend_send(be, mark, requeue_cb, NULL, 10);
    kvp_backends_flush(&set);
    server_read(s);
    close(s); /* the reset fails 10, whose callback sends 11 */
    spin();
    TAP_CHECK(strstr(got[(ngot - 1) % 8], "10:-ERR backend") != NULL, "the command in flight fails with the reset");
    TAP_CHECK(be->ring_len == 1, "a command sent from its callback keeps its entry (and its bytes, below)");
    s = accept_one();
    TAP_CHECK(strcmp(server_read(s), "*1\r\n$4\r\nPING\r\n") == 0, "it goes to the new connection");
    server_write(s, "+PONG\r\n");
    TAP_CHECK(strcmp(got[(ngot - 1) % 8], "11:+PONG\r\n") == 0, "and gets its own reply");
    /* the shared connection goes (no table routes to it), so the stand-in
     * accepts only lent ones from here on */
    kvp_backends_untable(&set);
    kvp_backends_tick(&set);
    close(s);
    spin();
    TAP_CHECK(set.n == 0, "a shared connection no table routes to is dropped");
}

/* Gives its connection back from inside a reply callback. */
static void giveback_cb(void *ctx, uint32_t tag, const char *p, size_t n)
{
    on_reply(ctx, tag, p, n);
    if (tag == 20)
        kvp_backend_give_back(ctx);
}

static void test_lending(void)
{
    atomic_store(&kvp_g.redis_password, "");
    set.owned_max = 2;
    kvp_backend *a = kvp_backends_lend(&set, addr, &set, 0);
    kvp_backend *b = kvp_backends_lend(&set, addr, &set, 0);
    kvp_backend *c = kvp_backends_lend(&set, addr, &set, 0);
    TAP_CHECK(a && b && a != b && a->mode == KVP_BE_OWNED, "two connections of their own");
    TAP_CHECK(c == NULL && kvp_backends_owned(&set, addr) == 2, "a third is refused at owned_max");
    int sa = accept_one(), sb = accept_one();
    spin();
    TAP_CHECK(a->state == KVP_BE_READY && b->state == KVP_BE_READY, "both connected");

    /* a given back with nothing in flight: RESET, then idle and lent again */
    kvp_backend_give_back(a);
    const char *seen = server_read(sa);
    int sa_got_reset = strcmp(seen, "*1\r\n$5\r\nRESET\r\n") == 0;
    int sb_got_reset = !sa_got_reset && strcmp(seen = server_read(sb), "*1\r\n$5\r\nRESET\r\n") == 0;
    TAP_CHECK(sa_got_reset || sb_got_reset, "given back: RESET sent");
    TAP_CHECK(a->mode == KVP_BE_RESETTING && kvp_backends_owned(&set, addr) == 2,
              "while resetting it still counts against the bound");
    server_write(sa_got_reset ? sa : sb, "+RESET\r\n");
    TAP_CHECK(a->mode == KVP_BE_IDLE && kvp_backends_owned(&set, addr) == 1, "+RESET: idle, off the bound");
    kvp_backend *again = kvp_backends_lend(&set, addr, &set, 0);
    TAP_CHECK(again == a && a->mode == KVP_BE_OWNED, "the idle connection is lent again");

    /* b given back with a command in flight (a BLPOP): never reused */
    send_cmd(b, "*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n", 9);
    int before = ngot;
    kvp_backend_give_back(b);
    TAP_CHECK(b->state == KVP_BE_DOWN && b->mode == KVP_BE_IDLE && ngot == before + 1,
              "given back mid-command: closed, its entry answered");
    clk.now_ms += 1;
    kvp_backends_tick(&set);
    TAP_CHECK(kvp_backends_owned(&set, addr) == 1 && set.n == 1,
              "and dropped by the tick, never lent again (%d connections)", set.n);
    /* an owned connection that breaks is not reconnected */
    close(sa);
    close(sb);
    spin();
    TAP_CHECK(a->state == KVP_BE_DOWN && kvp_backend_usable(a) == 0, "an owned connection that breaks stays down");
    kvp_backend_give_back(a);
    kvp_backends_tick(&set);
    TAP_CHECK(kvp_backends_owned(&set, addr) == 0, "given back, it is gone");

    /* given back from inside its own reply callback, another command in
     * flight: closed there, the rest of that read is not touched */
    kvp_backend *e = kvp_backends_lend(&set, addr, &set, 0);
    int se = accept_one();
    spin();
    size_t mark = kv_buf_mark(&e->out);
    kv_buf_append(&e->out, "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", 28);
    kvp_backend_send(e, mark, giveback_cb, e, 20);
    mark = kv_buf_mark(&e->out);
    kvp_backend_send(e, mark, giveback_cb, e, 21);
    kvp_backends_flush(&set);
    server_read(se);
    server_write(se, "+A\r\n+B\r\n");
    TAP_CHECK(strcmp(got[(ngot - 2) % 8], "20:+A\r\n") == 0 && strstr(got[(ngot - 1) % 8], "21:-ERR backend"),
              "given back in its callback with one more in flight: closed, the other answered unavailable");
    kvp_backend *f = kvp_backends_lend(&set, addr, &set, 0);
    TAP_CHECK(f != NULL && f != e, "a closed idle connection is never lent, even before the tick drops it");
    kvp_backend_give_back(f);
    close(se);
    kvp_backends_tick(&set);
}

/* A transaction's block: MULTI, the commands, EXEC go out back to back,
 * only EXEC's reply reaches the callback; a block that cannot be queued
 * whole leaves nothing behind. Then a lent connection given back with
 * that EXEC still in flight: the reply still arrives, and RESET plus AUTH
 * (RESET logs the connection out) follow it before it is lent again. */
static void test_group_and_give_back_after(void)
{
    atomic_store(&kvp_g.redis_password, "pw");
    set.owned_max = 4;
    /* connections of the tests before, still in the listen backlog */
    struct pollfd lp = {lfd, POLLIN, 0};
    while (poll(&lp, 1, 50) > 0)
        close(accept(lfd, NULL, NULL));
    kvp_backend *t = kvp_backends_lend(&set, addr, &set, 0);
    int st = accept_one();
    server_read(st);
    server_write(st, "+OK\r\n");
    TAP_CHECK(t && t->state == KVP_BE_READY, "a lent connection, authenticated");
    static const char block[] = "*1\r\n$5\r\nMULTI\r\n*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nEXEC\r\n";
    size_t mark = kv_buf_mark(&t->out);
    kv_buf_append(&t->out, block, sizeof(block) - 1);
    int before = ngot;
    TAP_CHECK(kvp_backend_send_group(t, mark, 3, on_reply, NULL, 30) == KV_OK && t->ring_len == 3,
              "a group of 3: three entries queued");
    kvp_backends_flush(&set);
    TAP_CHECK(strcmp(server_read(st), block) == 0, "the block reaches the server whole, back to back");
    kvp_backend_give_back_after(t);
    TAP_CHECK(t->mode == KVP_BE_RESETTING && t->state == KVP_BE_READY,
              "given back with EXEC in flight: not closed, resetting");
    const char *seen = server_read(st);
    TAP_CHECK(strcmp(seen, "*1\r\n$5\r\nRESET\r\n*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n") == 0,
              "RESET then AUTH queued behind it (%s)", seen);
    server_write(st, "+OK\r\n+QUEUED\r\n*1\r\n+PONG\r\n");
    TAP_CHECK(ngot == before + 1 && strcmp(got[before % 8], "30:*1\r\n+PONG\r\n") == 0,
              "only EXEC's reply reaches the callback");
    TAP_CHECK(t->mode == KVP_BE_RESETTING, "still resetting until AUTH answers");
    server_write(st, "+RESET\r\n+OK\r\n");
    TAP_CHECK(t->mode == KVP_BE_IDLE, "+RESET, +OK: idle, lendable again");
    TAP_CHECK(kvp_backends_lend(&set, addr, &set, 0) == t, "and lent again");

    /* a group that cannot be queued whole: nothing written, nothing queued */
    size_t len0 = kv_buf_len(&t->out);
    uint32_t ring0 = t->ring_len;
    mark = kv_buf_mark(&t->out);
    kv_buf_append(&t->out, block, sizeof(block) - 1);
    t->out.failed = 1; /* as a failed reserve leaves it */
    TAP_CHECK(kvp_backend_send_group(t, mark, 3, on_reply, NULL, 31) == KV_ENOMEM &&
                  kv_buf_len(&t->out) == len0 && t->ring_len == ring0,
              "a failed group takes every byte back and queues no entry");
    kvp_backend_give_back(t);
    server_read(st);
    server_write(st, "-ERR wrong\r\n");
    TAP_CHECK(t->state == KVP_BE_DOWN, "a clean-up that fails (RESET refused): closed, never lent again");
    close(st);
    kvp_backends_tick(&set);
    atomic_store(&kvp_g.redis_password, "");
}

/* Subscriber mode: pushes to the callback whole (split over reads or
 * several in one), state changes heard, reconnected after a close, closed
 * for good by its owner. */
static char pushed[8][128];
static int npushed, nready, ndown;

static void on_push(void *ctx, kvp_backend *be, const char *p, size_t n)
{
    (void)ctx;
    (void)be;
    snprintf(pushed[npushed % 8], sizeof(pushed[0]), "%.*s", (int)n, p);
    npushed++;
}

static void on_state(void *ctx, kvp_backend *be, int ready)
{
    (void)ctx;
    if (ready) {
        nready++;
        /* the owner subscribes (again) as soon as it is ready */
        size_t mark = kv_buf_mark(&be->out);
        static const char sub[] = "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n";
        kv_buf_append(&be->out, sub, sizeof(sub) - 1);
        kvp_backend_send_push(be, mark);
    } else {
        ndown++;
    }
}

static void test_subscriber(void)
{
    int owner = 0;
    kvp_backend *be = kvp_backends_subscriber(&set, addr, on_push, on_state, &owner);
    TAP_CHECK(be && be->mode == KVP_BE_SUBSCRIBER && be->owner == &owner, "a subscriber connection");
    int s = accept_one();
    spin();
    TAP_CHECK(nready == 1 && be->state == KVP_BE_READY, "ready: its owner is told");
    TAP_CHECK(strcmp(server_read(s), "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n") == 0,
              "what the owner wrote when told goes out, with no in-flight entry");
    TAP_CHECK(be->ring_len == 0, "nothing in flight");
    server_write(s, "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\na");
    TAP_CHECK(npushed == 1 && strcmp(pushed[0], "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n") == 0,
              "a confirmation is pushed whole; half a message waits");
    server_write(s, "\r\n$2\r\nhi\r\n");
    TAP_CHECK(npushed == 2 && strcmp(pushed[1], "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n") == 0,
              "the message once complete");
    clk.now_ms += 60000;
    kvp_backends_tick(&set);
    TAP_CHECK(be->state == KVP_BE_READY && kvp_backends_owned(&set, addr) == 0,
              "no request timeout (nothing is in flight) and not an owned connection");
    close(s); /* CLIENT KILL on the master */
    spin();
    TAP_CHECK(ndown == 1, "a close by the peer: its owner is told");
    s = accept_one();
    spin();
    TAP_CHECK(nready == 2 && strstr(server_read(s), "SUBSCRIBE"), "reconnected at once, and subscribed again");
    kvp_backend_close(be);
    TAP_CHECK(be->state == KVP_BE_DOWN && ndown == 1, "closed by its owner: no callback");
    kvp_backends_tick(&set);
    TAP_CHECK(set.n == 0 || set.all[set.n - 1] != be, "and freed by the tick");
    close(s);
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
    port = ntohs(sa.sin_port);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    kvp_clock_read(&clk);
    kvp_backends_init(&set, base, &clk, 0);
    test_states();
    test_reset_with_requeue();
    test_lending();
    test_group_and_give_back_after();
    test_subscriber();
    kvp_backends_free(&set);
    return tap_done();
}
