/* test_local.c -- the proxy's own commands (c/proxy/local.c): CLIENT over
 * every worker's clients, CONFIG GET, COMMAND from the table. Two client
 * sets stand for two workers; clients are real socketpairs. Links
 * kvp_dispatch and below: no worker.
 *
 * Why: kvp runs several workers, each with its own clients; CLIENT LIST or
 * KILL that saw only the caller's worker would miss most clients, and a
 * kill must close the client on its own worker, never under its feet. */
#include "../../c/proxy/local.h"
#include "../../c/proxy/errors.h"
#include "tap.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static kvp_clock clk;
static kvp_wstats st;
static kvp_req_pool pool;
static kvp_clients set_a, set_b; /* two workers' clients */
static kvp_locals locals;
static int peer[3];

static int on_command(void *ctx, kvp_client *c, int argc, kv_str *argv) { return KV_OK; }

/* Runs line (words split at spaces) as a local command of c; returns what
 * c got, and the code in *rc. */
static const char *run(kvp_client *c, const char *line, int *rc, int *argc_out, kv_str **argv_out)
{
    static char buf[1024], out[65536];
    static kv_str argv[32];
    int argc = 0;
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *t = strtok(buf, " "); t; t = strtok(NULL, " ")) {
        argv[argc].p = t;
        argv[argc++].len = strlen(t);
    }
    kv_str *av = argv;
    const kvp_cmd *cmd = kvp_cmd_lookup(argv[0].p, argv[0].len);
    int r = kvp_local_run(&locals, c, cmd, &argc, &av);
    if (rc)
        *rc = r;
    if (argc_out) {
        *argc_out = argc;
        *argv_out = av;
    }
    snprintf(out, sizeof(out), "%.*s", (int)kv_buf_len(&c->out), kv_buf_rptr(&c->out));
    kv_buf_consume(&c->out, kv_buf_len(&c->out));
    return out;
}

static const char *R(kvp_client *c, const char *line) { return run(c, line, NULL, NULL, NULL); }

static int count_lines(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static kvp_client *accept_one(kvp_clients *set, int i)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", 40000 + i);
    kvp_clients_accept(set, sv[0], addr, 1);
    peer[i] = sv[1];
    return set->list; /* the newest is first */
}

static void test_client(void)
{
    kvp_client *a1 = accept_one(&set_a, 0);
    kvp_client *a2 = accept_one(&set_a, 1);
    kvp_client *b1 = accept_one(&set_b, 2);
    TAP_CHECK(strcmp(R(a1, "CLIENT SETNAME one"), "+OK\r\n") == 0, "SETNAME");
    R(b1, "CLIENT SETNAME other");
    atomic_store(&b1->last_cmd, kvp_cmd_lookup("get", 3)->name);
    const char *list = R(a1, "CLIENT LIST");
    TAP_CHECK(count_lines(list, "resp=2\n") == 3 && strstr(list, "name=other") && strstr(list, "name=one"),
              "CLIENT LIST on one worker lists the other worker's client too");
    char want[128];
    snprintf(want, sizeof(want), "id=%llu addr=127.0.0.1:40002 laddr= fd=%d name=other age=0 idle=0 flags=N db=0 ",
             (unsigned long long)b1->id, b1->fd);
    TAP_CHECK(strstr(list, want) != NULL, "a line starts as Redis's");
    TAP_CHECK(strstr(list, " cmd=get user=default redir=-1 resp=2\n") != NULL, "and ends as Redis's, cmd= its last");
    snprintf(want, sizeof(want), "CLIENT LIST ID %llu", (unsigned long long)b1->id);
    TAP_CHECK(count_lines(R(a1, want), "resp=2\n") == 1, "LIST ID: that one");
    TAP_CHECK(strstr(R(a1, "CLIENT LIST TYPE master"), "$0\r\n") != NULL, "TYPE master: none");
    TAP_CHECK(strcmp(R(a1, "CLIENT LIST TYPE x"), "-ERR Unknown client type 'x'\r\n") == 0, "TYPE x: Redis's error");
    TAP_CHECK(strcmp(R(a1, "CLIENT LIST ID 0"), "-ERR Invalid client ID\r\n") == 0, "LIST ID 0");
    const char *info = R(a1, "CLIENT INFO");
    TAP_CHECK(strstr(info, "name=one") && info[strlen(info) - 3] == '\n', "CLIENT INFO: the caller's line, newline ended");
    TAP_CHECK(strstr(info, " cmd=client|info ") != NULL, "cmd= names the subcommand, as Redis");

    /* a kill across workers: the victim's socket is shut down now, the
     * client closed by its own worker (here: its tick) */
    snprintf(want, sizeof(want), "CLIENT KILL ID %llu", (unsigned long long)b1->id);
    TAP_CHECK(strcmp(R(a1, want), ":1\r\n") == 0, "KILL ID on another worker: 1 killed");
    TAP_CHECK(atomic_load(&b1->killed) && set_b.n == 1, "marked, still its worker's");
    char c;
    TAP_CHECK(read(peer[2], &c, 1) == 0, "its connection sees end of file at once");
    TAP_CHECK(strstr(R(a1, "CLIENT LIST"), "flags=A ") != NULL, "listed as closing (flags=A) meanwhile");
    kvp_clients_tick(&set_b);
    TAP_CHECK(set_b.n == 0, "closed by its own worker's tick");
    TAP_CHECK(count_lines(R(a1, "CLIENT LIST"), "resp=2\n") == 2, "gone from CLIENT LIST");
    TAP_CHECK(strcmp(R(a1, want), ":0\r\n") == 0, "a second kill finds nobody");

    snprintf(want, sizeof(want), "CLIENT KILL ID %llu", (unsigned long long)a1->id);
    TAP_CHECK(strcmp(R(a1, want), ":0\r\n") == 0, "SKIPME defaults to yes");
    snprintf(want, sizeof(want), "CLIENT KILL ID %llu SKIPME no", (unsigned long long)a2->id);
    TAP_CHECK(strcmp(R(a2, want), ":1\r\n") == 0 && a2->state == KVP_CLIENT_DRAINING,
              "killing oneself: answered, then closed after the reply");
    TAP_CHECK(strcmp(R(a1, "CLIENT KILL 9.9.9.9:1"), "-ERR No such client\r\n") == 0, "old form, nobody");
    TAP_CHECK(strcmp(R(a1, "CLIENT KILL ID x"), "-ERR client-id should be greater than 0\r\n") == 0, "ID x");
    TAP_CHECK(strcmp(R(a1, "CLIENT KILL ID 1 SKIPME maybe"), KVP_ERR_SYNTAX) == 0, "SKIPME maybe");
    TAP_CHECK(strcmp(R(a1, "CLIENT KILL USER bob"), "-ERR No such user 'bob'\r\n") == 0, "USER bob");
    TAP_CHECK(strcmp(R(a1, "CLIENT KILL"), "-ERR wrong number of arguments for 'client|kill' command\r\n") == 0,
              "KILL arity");
    TAP_CHECK(strcmp(R(a1, "CLIENT SETINFO lib-name redis-py"), "+OK\r\n") == 0, "SETINFO: +OK as Redis 7.2");
    TAP_CHECK(strcmp(R(a1, "CLIENT SETINFO lib-x y"), "-ERR Unrecognized option 'lib-x'\r\n") == 0, "SETINFO bad");
    TAP_CHECK(strcmp(R(a1, "CLIENT NO-EVICT on"), "+OK\r\n") == 0 && atomic_load(&a1->no_evict), "NO-EVICT on");
    TAP_CHECK(strcmp(R(a1, "CLIENT REPLY off"), "-ERR command 'client|reply' is not supported by the proxy\r\n") == 0,
              "REPLY refused");
    TAP_CHECK(strcmp(R(a1, "CLIENT nope"), "-ERR unknown subcommand 'nope'. Try CLIENT HELP.\r\n") == 0, "unknown");
    TAP_CHECK(strcmp(R(a1, "CLIENT ID x"), "-ERR wrong number of arguments for 'client|id' command\r\n") == 0, "ID x");
    TAP_CHECK(strcmp(R(a1, "CLIENT GETNAME"), "$3\r\none\r\n") == 0, "GETNAME");
    char longname[3100] = "CLIENT SETNAME ";
    memset(longname + 15, 'n', 3000);
    R(a1, longname);
    TAP_CHECK(strstr(R(a1, "CLIENT INFO"), " cmd=client|info user=default redir=-1 resp=2\n") != NULL,
              "a 3000-byte name: the line is whole");
    R(a1, "CLIENT SETNAME one");
}

static void test_config(kvp_client *c)
{
    TAP_CHECK(strcmp(R(c, "CONFIG GET MAXMEMORY-P*"), "*2\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n") == 0,
              "CONFIG GET: a glob in any case");
    TAP_CHECK(strcmp(R(c, "CONFIG GET save save s?ve"), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n") == 0,
              "each parameter once");
    TAP_CHECK(strcmp(R(c, "CONFIG GET nosuch"), "*0\r\n") == 0, "nothing matches");
    TAP_CHECK(strstr(R(c, "CONFIG GET *"), "requirepass") == NULL, "no secret is listed");
    TAP_CHECK(strcmp(R(c, "CONFIG SET a b"), "-ERR command 'config|set' is not supported by the proxy\r\n") == 0,
              "CONFIG SET refused");
    TAP_CHECK(strcmp(R(c, "CONFIG GET"), "-ERR wrong number of arguments for 'config|get' command\r\n") == 0, "arity");
}

static void test_command(kvp_client *c)
{
    int served = 0;
    for (int id = 0; id < kvp_cmd_count(); id++) {
        const kvp_cmd *k = kvp_cmd_at(id);
        if (k->parent)
            continue;
        int any = k->cls != KVP_CLASS_UNSUPPORTED;
        for (int s = 0; s < k->sub_count; s++)
            any |= kvp_cmd_at(k->sub_first + s)->cls != KVP_CLASS_UNSUPPORTED;
        served += any;
    }
    char want[64];
    snprintf(want, sizeof(want), ":%d\r\n", served);
    TAP_CHECK(strcmp(R(c, "COMMAND COUNT"), want) == 0, "COUNT: the served commands (%d)", served);
    TAP_CHECK(strncmp(R(c, "COMMAND INFO get"),
                      "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n", 56) == 0,
              "INFO get: Redis's first fields");
    TAP_CHECK(strcmp(R(c, "COMMAND INFO wait"), "*1\r\n$-1\r\n") == 0, "INFO of a refused command: nil");
    TAP_CHECK(strcmp(R(c, "COMMAND GETKEYS zunionstore dst 2 a b"), "*3\r\n$3\r\ndst\r\n$1\r\na\r\n$1\r\nb\r\n") == 0,
              "GETKEYS: the proxy's key extraction");
    TAP_CHECK(strcmp(R(c, "COMMAND GETKEYS eval s 3 a"), "-ERR Invalid arguments specified for command\r\n") == 0,
              "GETKEYS: numkeys past the end");
    TAP_CHECK(strcmp(R(c, "COMMAND GETKEYS object encoding k"), "*1\r\n$1\r\nk\r\n") == 0, "GETKEYS of a subcommand");
    int rc, argc;
    kv_str *argv;
    const char *out = run(c, "COMMAND DOCS get wait", &rc, &argc, &argv);
    TAP_CHECK(rc == KVP_LOCAL_FORWARD && argc == 3 && argv[2].len == 3 && memcmp(argv[2].p, "get", 3) == 0 && !*out,
              "DOCS: asked of a master for the served names only");
    out = run(c, "COMMAND DOCS wait", &rc, &argc, &argv);
    TAP_CHECK(rc == KVP_LOCAL_DONE && strcmp(out, "*0\r\n") == 0, "DOCS of refused commands only: empty, not all");
    run(c, "COMMAND DOCS", &rc, &argc, &argv);
    TAP_CHECK(rc == KVP_LOCAL_FORWARD && argc == served + 2, "DOCS: every served command named");
    TAP_CHECK(strcmp(R(c, "COMMAND nope"), "-ERR unknown subcommand 'nope'. Try COMMAND HELP.\r\n") == 0, "unknown");
}

int main(void)
{
    kvp_cmd_init();
    struct event_base *base = event_base_new();
    kvp_g.max_client_num = 100;
    kvp_clock_read(&clk);
    kvp_req_pool_init(&pool, &clk, &st, NULL);
    kvp_clients_init(&set_a, base, &clk, &pool, on_command, NULL);
    kvp_clients_init(&set_b, base, &clk, &pool, on_command, NULL);
    kvp_local_init(&locals);
    test_client();
    test_config(set_a.list);
    test_command(set_a.list);
    kvp_local_free(&locals);
    kvp_clients_free(&set_a);
    kvp_clients_free(&set_b);
    for (int i = 0; i < 3; i++)
        close(peer[i]);
    event_base_free(base);
    return tap_done();
}
