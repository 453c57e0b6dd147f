/* local.c -- see local.h.
 *
 * Errors are worded as Redis 7.0 words them (checked against redis-server
 * 7.0.15), or as SPEC §4 words the proxy's refusals (errors.h). */
#include "local.h"
#include "errors.h"
#include "../core/glob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------- writer */

/* A reply built whole, then handed to the client (or out of memory in its
 * place). resp is the client's protocol (2, or 3 after HELLO 3); the shapes
 * that differ in RESP3 (map, verbatim, null) go through their own function. */
typedef struct kvp_lw {
    kv_buf b;
    int resp;
} kvp_lw;

static void lw_init(kvp_lw *w, const kvp_client *c)
{
    kv_buf_init(&w->b, KVP_OUT_MAX);
    w->resp = c->resp == 3 ? 3 : 2;
}

static void lw_array(kvp_lw *w, long long n) { kv_resp_write_count(&w->b, '*', n); }
/* n pairs: a flat array in RESP2, a map in RESP3 */
static void lw_map(kvp_lw *w, long long n) { kv_resp_write_count(&w->b, w->resp == 3 ? '%' : '*', w->resp == 3 ? n : 2 * n); }
static void lw_int(kvp_lw *w, long long v) { kv_resp_write_count(&w->b, ':', v); }
/* p may be an empty buffer's NULL when n is 0 */
static void lw_bulk(kvp_lw *w, const char *p, size_t n) { kv_resp_write_bulk(&w->b, n ? p : "", n); }
static void lw_str(kvp_lw *w, const char *s) { lw_bulk(w, s, strlen(s)); }
static void lw_nil(kvp_lw *w) { kv_buf_append(&w->b, w->resp == 3 ? "_\r\n" : "$-1\r\n", w->resp == 3 ? 3 : 5); }

static void lw_status(kvp_lw *w, const char *s)
{
    kv_buf_append(&w->b, "+", 1);
    kv_buf_append(&w->b, s, strlen(s));
    kv_buf_append(&w->b, "\r\n", 2);
}

/* text for a person (CLIENT LIST, INFO): bulk in RESP2, verbatim in RESP3 */
static void lw_text(kvp_lw *w, const char *p, size_t n)
{
    if (w->resp == 3) {
        kv_resp_write_count(&w->b, '=', (long long)n + 4);
        kv_buf_append(&w->b, "txt:", 4);
        if (n)
            kv_buf_append(&w->b, p, n);
        kv_buf_append(&w->b, "\r\n", 2);
    } else {
        lw_bulk(w, p, n);
    }
}

static void lw_send(kvp_lw *w, kvp_client *c)
{
    if (w->b.failed)
        kvp_client_reply_str(c, KVP_ERR_OOM);
    else
        kvp_client_reply(c, kv_buf_rptr(&w->b), kv_buf_len(&w->b));
    kv_buf_deinit(&w->b);
}

static void reply_bulk(kvp_client *c, const char *p, size_t n)
{
    kvp_lw w;
    lw_init(&w, c);
    lw_bulk(&w, p, n);
    lw_send(&w, c);
}

static void reply_int(kvp_client *c, long long v)
{
    char buf[32];
    kvp_client_reply(c, buf, kv_resp_fmt_count(buf, ':', v));
}

static void reply_lines(kvp_client *c, const char *const *lines)
{
    kvp_lw w;
    lw_init(&w, c);
    int n = 0;
    while (lines[n])
        n++;
    lw_array(&w, n);
    for (int i = 0; i < n; i++)
        lw_status(&w, lines[i]);
    lw_send(&w, c);
}

/* ------------------------------------------------------------- helpers */

static int eq_nocase(const kv_str *a, const char *s)
{
    size_t n = strlen(s);
    return a->len == n && strncasecmp(a->p, s, n) == 0;
}

/* "container|sub" in lower case, for the errors that name a subcommand. */
static void sub_name(char *buf, size_t n, const char *container, const kv_str *sub)
{
    snprintf(buf, n, "%s|%.*s", container, (int)(sub->len > 32 ? 32 : sub->len), sub->p);
    for (char *p = buf; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
}

/* A subcommand of a container the proxy keeps whole (CLIENT, CONFIG,
 * COMMAND): its Redis 7.0 arity, and whether the proxy answers it. */
typedef struct local_sub {
    const char *name;
    int arity;
    int served;
    const char *full;          /* "container|sub", as CLIENT LIST's cmd= names it */
} local_sub;

/* Finds argv[1] among subs and checks its arity; NULL when answered (an
 * unknown subcommand, a wrong count, or one the proxy refuses). */
static const local_sub *find_sub(kvp_client *c, const char *container, const local_sub *subs, int argc,
                                 const kv_str *argv)
{
    const local_sub *s = subs;
    while (s->name && !eq_nocase(&argv[1], s->name))
        s++;
    char name[64];
    if (s->name == NULL) {
        char upper[16];
        size_t i = 0;
        for (; container[i] && i < sizeof(upper) - 1; i++)
            upper[i] = (char)(container[i] - 32);
        upper[i] = 0;
        int n = argv[1].len > 64 ? 64 : (int)argv[1].len;
        kvp_client_reply_err(c, KVP_ERR_UNKNOWN_SUB_FMT, n, argv[1].p, upper);
        return NULL;
    }
    sub_name(name, sizeof(name), container, &argv[1]);
    if (s->arity > 0 ? argc != s->arity : argc < -s->arity) {
        kvp_client_reply_err(c, KVP_ERR_ARITY_FMT, name);
        return NULL;
    }
    atomic_store_explicit(&c->last_cmd, s->full, memory_order_relaxed);
    if (!s->served) {
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, name);
        return NULL;
    }
    return s;
}

/* ---------------------------------------------------------------- AUTH */

static int check_password(kvp_client *c, const kv_str *user, const kv_str *pass)
{
    if (kvp_g.client_password[0] == '\0') {
        kvp_client_reply_str(c, KVP_ERR_AUTH_NOPASS);
        return 0;
    }
    size_t pl = strlen(kvp_g.client_password);
    int ok = (user == NULL || eq_nocase(user, "default")) && pass->len == pl;
    unsigned char diff = 0;
    for (size_t i = 0; ok && i < pl; i++)
        diff |= (unsigned char)(pass->p[i] ^ kvp_g.client_password[i]);
    if (!ok || diff) {
        kvp_client_reply_str(c, KVP_ERR_WRONGPASS);
        return 0;
    }
    c->authed = 1;
    return 1;
}

/* CLIENT SETNAME's and HELLO's name, checked as Redis checks it (CLIENT
 * LIST's lines are split at spaces). 1 when set, else 0 and answered. */
static int set_name_or_reply(kvp_client *c, const kv_str *name)
{
    for (size_t i = 0; i < name->len; i++) {
        unsigned char ch = (unsigned char)name->p[i];
        if (ch <= ' ' || ch > '~') {
            kvp_client_reply_str(c, "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
            return 0;
        }
    }
    if (kvp_client_set_name(c, name->p, name->len) != KV_OK) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return 0;
    }
    return 1;
}

/* --------------------------------------------------------------- HELLO */

/* HELLO [protover [AUTH user pass] [SETNAME name]]: the protocol switches
 * (2 or 3) only once everything else succeeded, and the reply is written
 * in the new one, as Redis does. */
static void local_hello(kvp_client *c, int argc, kv_str *argv)
{
    int i = 1;
    int proto = c->resp == 3 ? 3 : 2;
    if (argc >= 2) {
        long long v;
        if (kv_parse_ll(argv[1].p, argv[1].len, &v) != KV_OK) {
            kvp_client_reply_str(c, "-ERR Protocol version is not an integer or out of range\r\n");
            return;
        }
        if (v != 2 && v != 3) {
            kvp_client_reply_str(c, KVP_ERR_NOPROTO);
            return;
        }
        proto = (int)v;
        i = 2;
    }
    const kv_str *user = NULL, *pass = NULL, *name = NULL;
    for (; i < argc; i++) {
        if (eq_nocase(&argv[i], "auth") && i + 2 < argc) {
            user = &argv[i + 1];
            pass = &argv[i + 2];
            i += 2;
        } else if (eq_nocase(&argv[i], "setname") && i + 1 < argc) {
            name = &argv[i + 1];
            i += 1;
        } else {
            kvp_client_reply_err(c, "-ERR Syntax error in HELLO option '%.*s'\r\n", (int)(argv[i].len > 64 ? 64 : argv[i].len), argv[i].p);
            return;
        }
    }
    /* as Redis: AUTH (the default user without a password takes any),
     * then the NOAUTH check, then the name, then the switch */
    if (pass && kvp_g.client_password[0] != '\0' && !check_password(c, user, pass))
        return;
    if (!c->authed) {
        kvp_client_reply_str(c, KVP_ERR_HELLO_NOAUTH);
        return;
    }
    if (name && !set_name_or_reply(c, name))
        return;
    c->resp = (uint8_t)proto;
    kvp_lw w;
    lw_init(&w, c);
    lw_map(&w, 7);
    lw_str(&w, "server");
    lw_str(&w, "kvp");
    lw_str(&w, "version");
    lw_str(&w, KV_VERSION);
    lw_str(&w, "proto");
    lw_int(&w, proto);
    lw_str(&w, "id");
    lw_int(&w, (long long)c->id);
    lw_str(&w, "mode");
    lw_str(&w, "standalone");
    lw_str(&w, "role");
    lw_str(&w, "master");
    lw_str(&w, "modules");
    lw_array(&w, 0);
    lw_send(&w, c);
}

/* -------------------------------------------------------------- CLIENT */

size_t kvp_local_client_line(const kvp_client *c, uint64_t now_ms, char *buf, size_t n)
{
    char laddr[48];
    kvp_client_laddr(c, laddr, sizeof(laddr));
    uint64_t last = atomic_load_explicit(&c->last_active_ms, memory_order_relaxed);
    const char *cmd = atomic_load_explicit(&c->last_cmd, memory_order_relaxed);
    int killed = atomic_load_explicit(&c->killed, memory_order_relaxed);
    int no_evict = atomic_load_explicit(&c->no_evict, memory_order_relaxed);
    /* another worker's clock may be a little ahead of ours */
    unsigned long long age = now_ms > c->created_ms ? (now_ms - c->created_ms) / 1000 : 0;
    unsigned long long idle = now_ms > last ? (now_ms - last) / 1000 : 0;
    /* buffers belong to the client's worker: only their total, as that
     * worker last counted it, is read here */
    int len = snprintf(buf, n,
                       "id=%llu addr=%s laddr=%s fd=%d name=%s age=%llu idle=%llu flags=%s%s db=0 sub=0 "
                       "psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 "
                       "obl=0 oll=0 omem=0 tot-mem=%zu events=r cmd=%s user=default redir=-1 resp=%d",
                       (unsigned long long)c->id, c->peer, laddr, c->fd, c->name ? c->name : "", age, idle,
                       killed ? "A" : "", no_evict ? "e" : (killed ? "" : "N"),
                       atomic_load_explicit(&c->tot_mem, memory_order_relaxed), cmd ? cmd : "NULL",
                       c->resp == 3 ? 3 : 2); /* a byte another worker may change: 2 or 3 either way */
    if (len < 0)
        return 0;
    return (size_t)len < n ? (size_t)len : n - 1;
}

/* c's line and a newline, appended to b (a name has no length limit: the
 * line is sized for it). */
static void client_line_to(kv_buf *b, const kvp_client *c, uint64_t now_ms)
{
    char small[1024];
    size_t need = 512 + (c->name ? strlen(c->name) : 0);
    char *line = need <= sizeof(small) ? small : malloc(need);
    if (line == NULL) {
        b->failed = 1;
        return;
    }
    size_t n = kvp_local_client_line(c, now_ms, line, need <= sizeof(small) ? sizeof(small) : need);
    kv_buf_append(b, line, n);
    kv_buf_append(b, "\n", 1);
    if (line != small)
        free(line);
}

typedef struct list_ctx {
    kv_buf text;
    uint64_t now_ms;
    const kv_str *ids;         /* CLIENT LIST ID ...: only these */
    int nids;
    int none;                  /* TYPE master/replica/pubsub: no client of ours */
} list_ctx;

static int id_listed(const kvp_client *c, const kv_str *ids, int nids)
{
    for (int i = 0; i < nids; i++) {
        long long v;
        if (kv_parse_ll(ids[i].p, ids[i].len, &v) == KV_OK && (uint64_t)v == c->id)
            return 1;
    }
    return 0;
}

static void list_visit(void *ctx, kvp_client *c)
{
    list_ctx *l = ctx;
    if (l->none || (l->nids > 0 && !id_listed(c, l->ids, l->nids)))
        return;
    client_line_to(&l->text, c, l->now_ms);
}

/* TYPE's value: 1 normal (every client of the proxy), 0 another known
 * type, -1 answered with Redis's error. */
static int client_type(kvp_client *c, const kv_str *t)
{
    if (eq_nocase(t, "normal"))
        return 1;
    if (eq_nocase(t, "master") || eq_nocase(t, "replica") || eq_nocase(t, "slave") || eq_nocase(t, "pubsub"))
        return 0;
    kvp_client_reply_err(c, "-ERR Unknown client type '%.*s'\r\n", (int)(t->len > 64 ? 64 : t->len), t->p);
    return -1;
}

static void client_list(kvp_client *c, int argc, kv_str *argv)
{
    list_ctx l = {.now_ms = c->set->clock->now_ms};
    if (argc == 4 && eq_nocase(&argv[2], "type")) {
        int t = client_type(c, &argv[3]);
        if (t < 0)
            return;
        l.none = t == 0;
    } else if (argc >= 4 && eq_nocase(&argv[2], "id")) {
        for (int i = 3; i < argc; i++) {
            long long v;
            if (kv_parse_ll(argv[i].p, argv[i].len, &v) != KV_OK || v <= 0) {
                kvp_client_reply_str(c, "-ERR Invalid client ID\r\n");
                return;
            }
        }
        l.ids = &argv[3];
        l.nids = argc - 3;
    } else if (argc != 2) {
        kvp_client_reply_str(c, KVP_ERR_SYNTAX);
        return;
    }
    kv_buf_init(&l.text, KVP_OUT_MAX);
    kvp_clients_visit(list_visit, &l);
    kvp_lw w;
    lw_init(&w, c);
    lw_text(&w, kv_buf_rptr(&l.text), kv_buf_len(&l.text));
    if (l.text.failed)
        w.b.failed = 1;
    kv_buf_deinit(&l.text);
    lw_send(&w, c);
}

static void client_info(kvp_client *c)
{
    kv_buf text;
    kv_buf_init(&text, KVP_OUT_MAX);
    client_line_to(&text, c, c->set->clock->now_ms);
    kvp_lw w;
    lw_init(&w, c);
    lw_text(&w, kv_buf_rptr(&text), kv_buf_len(&text));
    if (text.failed)
        w.b.failed = 1;
    kv_buf_deinit(&text);
    lw_send(&w, c);
}

/* CLIENT KILL's filters (Redis 7.0: ID, TYPE, USER, ADDR, LADDR, SKIPME). */
typedef struct kill_ctx {
    kvp_client *self;
    int skipme;
    int none;                  /* a TYPE or USER no client of ours has */
    uint64_t id;               /* 0: any */
    const kv_str *addr, *laddr;
    int killed;
    int kill_self;
} kill_ctx;

static void kill_visit(void *ctx, kvp_client *c)
{
    kill_ctx *k = ctx;
    if (k->none || (k->skipme && c == k->self) || (k->id && c->id != k->id))
        return;
    if (k->addr && !(strlen(c->peer) == k->addr->len && memcmp(c->peer, k->addr->p, k->addr->len) == 0))
        return;
    if (k->laddr) {
        char la[48];
        kvp_client_laddr(c, la, sizeof(la));
        if (!(strlen(la) == k->laddr->len && memcmp(la, k->laddr->p, k->laddr->len) == 0))
            return;
    }
    if (c == k->self)
        k->kill_self = 1; /* after its reply, as Redis closes a client that kills itself */
    else
        kvp_client_kill(c);
    k->killed++;
}

static void client_kill(kvp_client *c, int argc, kv_str *argv)
{
    kill_ctx k = {.self = c, .skipme = 1};
    if (argc == 3) {
        /* the old form: CLIENT KILL ip:port, which may kill the caller */
        k.addr = &argv[2];
        k.skipme = 0;
    } else if ((argc - 2) % 2 != 0) {
        kvp_client_reply_str(c, KVP_ERR_SYNTAX);
        return;
    } else {
        for (int i = 2; i < argc; i += 2) {
            const kv_str *v = &argv[i + 1];
            if (eq_nocase(&argv[i], "id")) {
                long long id;
                if (kv_parse_ll(v->p, v->len, &id) != KV_OK || id <= 0) {
                    kvp_client_reply_str(c, "-ERR client-id should be greater than 0\r\n");
                    return;
                }
                k.id = (uint64_t)id;
            } else if (eq_nocase(&argv[i], "type")) {
                int t = client_type(c, v);
                if (t < 0)
                    return;
                k.none |= t == 0;
            } else if (eq_nocase(&argv[i], "user")) {
                if (!(v->len == 7 && memcmp(v->p, "default", 7) == 0)) {
                    kvp_client_reply_err(c, "-ERR No such user '%.*s'\r\n", (int)(v->len > 64 ? 64 : v->len), v->p);
                    return;
                }
            } else if (eq_nocase(&argv[i], "addr")) {
                k.addr = v;
            } else if (eq_nocase(&argv[i], "laddr")) {
                k.laddr = v;
            } else if (eq_nocase(&argv[i], "skipme")) {
                if (eq_nocase(v, "yes"))
                    k.skipme = 1;
                else if (eq_nocase(v, "no"))
                    k.skipme = 0;
                else {
                    kvp_client_reply_str(c, KVP_ERR_SYNTAX);
                    return;
                }
            } else {
                kvp_client_reply_str(c, KVP_ERR_SYNTAX);
                return;
            }
        }
    }
    kvp_clients_visit(kill_visit, &k);
    if (argc == 3) {
        if (k.killed == 0)
            kvp_client_reply_str(c, "-ERR No such client\r\n");
        else
            kvp_client_reply_str(c, "+OK\r\n");
    } else {
        reply_int(c, k.killed);
    }
    if (k.kill_self)
        kvp_client_drain(c);
}

static void client_setname(kvp_client *c, const kv_str *name)
{
    if (set_name_or_reply(c, name))
        kvp_client_reply_str(c, "+OK\r\n");
}

/* CLIENT SETINFO (Redis 7.2; redis-py and node-redis send it on connect):
 * checked as 7.2 checks it and answered +OK; the library's name is not
 * kept (CLIENT LIST prints 7.0's fields). */
static void client_setinfo(kvp_client *c, const kv_str *attr, const kv_str *val)
{
    if (!eq_nocase(attr, "lib-name") && !eq_nocase(attr, "lib-ver")) {
        kvp_client_reply_err(c, "-ERR Unrecognized option '%.*s'\r\n", (int)(attr->len > 64 ? 64 : attr->len),
                             attr->p);
        return;
    }
    for (size_t i = 0; i < val->len; i++) {
        unsigned char ch = (unsigned char)val->p[i];
        if (ch < '!' || ch > '~') {
            kvp_client_reply_err(c, "-ERR %s cannot contain spaces, newlines or special characters.\r\n",
                                 eq_nocase(attr, "lib-name") ? "lib-name" : "lib-ver");
            return;
        }
    }
    kvp_client_reply_str(c, "+OK\r\n");
}

static const local_sub client_subs[] = {
    {"caching", 3, 0, "client|caching"},
    {"getname", 2, 1, "client|getname"},
    {"getredir", 2, 0, "client|getredir"},
    {"help", 2, 1, "client|help"},
    {"id", 2, 1, "client|id"},
    {"info", 2, 1, "client|info"},
    {"kill", -3, 1, "client|kill"},
    {"list", -2, 1, "client|list"},
    {"no-evict", 3, 1, "client|no-evict"},
    {"pause", -3, 0, "client|pause"},
    {"reply", 3, 0, "client|reply"},
    {"setinfo", 4, 1, "client|setinfo"},
    {"setname", 3, 1, "client|setname"},
    {"tracking", -3, 0, "client|tracking"},
    {"trackinginfo", 2, 0, "client|trackinginfo"},
    {"unblock", -3, 0, "client|unblock"},
    {"unpause", 2, 0, "client|unpause"},
    {NULL, 0, 0, NULL},
};

static const char *const client_help[] = {
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are (kvp: for the proxy's own clients):",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are: ID <client-id>, TYPE normal, USER default,",
    "    ADDR <ip:port>, LADDR <ip:port>, SKIPME (YES|NO).",
    "LIST [options ...]",
    "    Return information about client connections. Options: TYPE normal, ID <id> [...].",
    "NO-EVICT (ON|OFF)",
    "    Protect the current client connection from eviction (maxmemory_clients).",
    "SETINFO <option> <value>",
    "    Accepted (LIB-NAME, LIB-VER) and not kept.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "HELP",
    "    Print this help.",
    NULL,
};

static void local_client(kvp_client *c, int argc, kv_str *argv)
{
    const local_sub *s = find_sub(c, "client", client_subs, argc, argv);
    if (s == NULL)
        return;
    const char *n = s->name;
    if (strcmp(n, "setname") == 0) {
        client_setname(c, &argv[2]);
    } else if (strcmp(n, "getname") == 0) {
        if (c->name)
            reply_bulk(c, c->name, strlen(c->name));
        else
            kvp_client_reply_str(c, c->resp == 3 ? "_\r\n" : "$-1\r\n");
    } else if (strcmp(n, "id") == 0) {
        reply_int(c, (long long)c->id);
    } else if (strcmp(n, "list") == 0) {
        client_list(c, argc, argv);
    } else if (strcmp(n, "info") == 0) {
        client_info(c);
    } else if (strcmp(n, "kill") == 0) {
        client_kill(c, argc, argv);
    } else if (strcmp(n, "no-evict") == 0) {
        if (eq_nocase(&argv[2], "on") || eq_nocase(&argv[2], "off")) {
            atomic_store_explicit(&c->no_evict, eq_nocase(&argv[2], "on"), memory_order_relaxed);
            kvp_client_reply_str(c, "+OK\r\n");
        } else {
            kvp_client_reply_str(c, KVP_ERR_SYNTAX);
        }
    } else if (strcmp(n, "setinfo") == 0) {
        client_setinfo(c, &argv[2], &argv[3]);
    } else {
        reply_lines(c, client_help);
    }
}

/* -------------------------------------------------------------- CONFIG */

/* The parameters CONFIG GET answers, in Redis's names, with the proxy's
 * values: what it really does (no persistence, one database, no eviction,
 * its own port, limits and timeouts). Secrets (requirepass) are not
 * listed. */
typedef struct conf_param {
    const char *name;
    void (*value)(char *buf, size_t n);
} conf_param;

static void v_empty(char *b, size_t n) { snprintf(b, n, "%s", ""); }
static void v_no(char *b, size_t n) { snprintf(b, n, "no"); }
static void v_zero(char *b, size_t n) { snprintf(b, n, "0"); }
static void v_one(char *b, size_t n) { snprintf(b, n, "1"); }
static void v_noeviction(char *b, size_t n) { snprintf(b, n, "noeviction"); }
static void v_port(char *b, size_t n) { snprintf(b, n, "%d", kvp_g.listen_port); }
static void v_bind(char *b, size_t n) { snprintf(b, n, "%s", kvp_g.listen_host); }
static void v_timeout(char *b, size_t n) { snprintf(b, n, "%d", kvp_conf_int(&kvp_g.client_timeout_s)); }
static void v_maxclients(char *b, size_t n) { snprintf(b, n, "%d", kvp_conf_int(&kvp_g.max_client_num)); }
static void v_io_threads(char *b, size_t n) { snprintf(b, n, "%d", kvp_g.io_threads); }
static void v_protected(char *b, size_t n) { snprintf(b, n, "%s", kvp_g.protected_mode ? "yes" : "no"); }
static void v_bulk_len(char *b, size_t n) { snprintf(b, n, "%lld", (long long)KV_RESP_MAX_BULK); }

static void v_slowlog(char *b, size_t n)
{
    snprintf(b, n, "%lld", (long long)kvp_conf_int(&kvp_g.slow_cmd_time_ms) * 1000);
}

static void v_maxmem_clients(char *b, size_t n)
{
    snprintf(b, n, "%llu", (unsigned long long)kvp_g.maxmemory_clients_mb << 20);
}

static void v_output_limit(char *b, size_t n)
{
    snprintf(b, n, "normal %llu %llu %d slave 0 0 0 pubsub 0 0 0",
             (unsigned long long)kvp_g.client_output_hard_mb << 20,
             (unsigned long long)kvp_g.client_output_soft_mb << 20, kvp_g.client_output_soft_seconds);
}

static const conf_param conf_params[] = {
    {"appendonly", v_no},
    {"bind", v_bind},
    {"client-output-buffer-limit", v_output_limit},
    {"cluster-enabled", v_no},
    {"databases", v_one},
    {"io-threads", v_io_threads},
    {"maxclients", v_maxclients},
    {"maxmemory", v_zero},
    {"maxmemory-clients", v_maxmem_clients},
    {"maxmemory-policy", v_noeviction},
    {"notify-keyspace-events", v_empty},
    {"port", v_port},
    {"proto-max-bulk-len", v_bulk_len},
    {"protected-mode", v_protected},
    {"save", v_empty},
    {"slowlog-log-slower-than", v_slowlog},
    {"timeout", v_timeout},
    {NULL, NULL},
};

/* CONFIG GET pattern [pattern ...]: name/value pairs of every parameter
 * some pattern matches (globs, any case, each parameter once, as 7.0). */
static void config_get(kvp_client *c, int argc, kv_str *argv)
{
    enum { NPARAMS = sizeof(conf_params) / sizeof(conf_params[0]) - 1 };
    uint8_t hit[NPARAMS] = {0};
    int nhit = 0;
    for (int a = 2; a < argc; a++) {
        char pat[128];
        size_t pl = argv[a].len < sizeof(pat) ? argv[a].len : sizeof(pat);
        for (size_t i = 0; i < pl; i++) {
            char ch = argv[a].p[i];
            pat[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        for (int p = 0; p < NPARAMS; p++) {
            const char *nm = conf_params[p].name;
            if (!hit[p] && kv_glob_match(pat, pl, nm, strlen(nm))) {
                hit[p] = 1;
                nhit++;
            }
        }
    }
    kvp_lw w;
    lw_init(&w, c);
    lw_map(&w, nhit);
    for (int p = 0; p < NPARAMS; p++) {
        if (!hit[p])
            continue;
        char val[256];
        conf_params[p].value(val, sizeof(val));
        lw_str(&w, conf_params[p].name);
        lw_str(&w, val);
    }
    lw_send(&w, c);
}

static const local_sub config_subs[] = {
    {"get", -3, 1, "config|get"},
    {"help", 2, 1, "config|help"},
    {"resetstat", 2, 0, "config|resetstat"},
    {"rewrite", 2, 0, "config|rewrite"},
    {"set", -4, 0, "config|set"},
    {NULL, 0, 0, NULL},
};

static const char *const config_help[] = {
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values (the proxy's own).",
    "SET, RESETSTAT, REWRITE",
    "    Not supported by the proxy: change kvp.conf, or /kvstore/proxy/set_config and",
    "    /kvstore/proxy/reset_stats on its HTTP port.",
    "HELP",
    "    Print this help.",
    NULL,
};

static void local_config(kvp_client *c, int argc, kv_str *argv)
{
    const local_sub *s = find_sub(c, "config", config_subs, argc, argv);
    if (s == NULL)
        return;
    if (strcmp(s->name, "get") == 0)
        config_get(c, argc, argv);
    else
        reply_lines(c, config_help);
}

/* ------------------------------------------------------------- COMMAND */

/* The policy's classes of the command being run (kvp_local_run sets it:
 * one local command at a time per worker thread). */
static _Thread_local const uint8_t *run_cls;

static int cls_of(const kvp_cmd *cmd)
{
    return run_cls ? run_cls[cmd->id] : cmd->cls;
}

/* The proxy serves a command when its class is not UNSUPPORTED, or (a
 * container refused whole) when it serves one of its subcommands. */
static int served(const kvp_cmd *cmd)
{
    if (cls_of(cmd) != KVP_CLASS_UNSUPPORTED)
        return 1;
    for (int i = 0; i < cmd->sub_count; i++)
        if (cls_of(kvp_cmd_at(cmd->sub_first + i)) != KVP_CLASS_UNSUPPORTED)
            return 1;
    return 0;
}

static int count_served(void)
{
    int n = 0;
    for (int id = 0; id < kvp_cmd_count(); id++) {
        const kvp_cmd *cmd = kvp_cmd_at(id);
        n += cmd->parent == NULL && served(cmd);
    }
    return n;
}

/* Flag names in the order Redis prints them, and the ACL categories Redis
 * derives from flags alone (the others, @string and the like, are not in
 * the proxy's table). */
static const struct {
    uint32_t bit;
    const char *name;
} flag_names[] = {
    {KVP_CF_WRITE, "write"},     {KVP_CF_READONLY, "readonly"}, {KVP_CF_DENYOOM, "denyoom"},
    {KVP_CF_ADMIN, "admin"},     {KVP_CF_PUBSUB, "pubsub"},     {KVP_CF_NOSCRIPT, "noscript"},
    {KVP_CF_BLOCKING, "blocking"}, {KVP_CF_LOADING, "loading"}, {KVP_CF_STALE, "stale"},
    {KVP_CF_FAST, "fast"},       {KVP_CF_NO_MANDATORY_KEYS, "no_mandatory_keys"},
    {KVP_CF_MOVABLE, "movablekeys"},
};
#define NFLAGS ((int)(sizeof(flag_names) / sizeof(flag_names[0])))

static int acl_categories(const kvp_cmd *cmd, const char **out)
{
    int n = 0;
    uint32_t f = cmd->flags;
    if (f & KVP_CF_WRITE)
        out[n++] = "@write";
    if (f & KVP_CF_READONLY)
        out[n++] = "@read";
    if (f & KVP_CF_ADMIN) {
        out[n++] = "@admin";
        out[n++] = "@dangerous";
    }
    if (f & KVP_CF_PUBSUB)
        out[n++] = "@pubsub";
    out[n++] = f & KVP_CF_FAST ? "@fast" : "@slow";
    if (f & KVP_CF_BLOCKING)
        out[n++] = "@blocking";
    return n;
}

/* Redis's legacy first/last/step: the consecutive plain range specs. */
static void legacy_range(const kvp_cmd *cmd, int *first, int *last, int *step)
{
    int fk = -1, lk = 0, prev = 0;
    *first = *last = *step = 0;
    for (int i = 0; i < KVP_CMD_MAX_SPECS; i++) {
        const kvp_keyspec *k = &cmd->ks[i];
        if (k->type == KVP_KS_NONE)
            break;
        if (k->type != KVP_KS_RANGE)
            continue;
        if (i == 0 && (i + 1 == KVP_CMD_MAX_SPECS || cmd->ks[1].type == KVP_KS_NONE)) {
            /* exactly one range spec: taken as it is, step included */
            *first = k->index;
            *last = k->lastkey < 0 ? k->lastkey : k->index + k->lastkey;
            *step = k->keystep;
            return;
        }
        if (k->keystep != 1 || (prev && prev != k->index - 1))
            continue;
        int abs_last = k->lastkey >= 0 ? k->index + k->lastkey : k->lastkey;
        if (fk < 0 || k->index < fk)
            fk = k->index;
        lk = (unsigned)lk > (unsigned)abs_last ? lk : abs_last;
        prev = lk;
    }
    if (fk >= 0) {
        *first = fk;
        *last = lk;
        *step = 1;
    }
}

static void write_keyspec(kvp_lw *w, const kvp_keyspec *k)
{
    lw_map(w, 3);
    lw_str(w, "flags");
    lw_array(w, 0); /* access flags (RW, RO, ...) are not in the proxy's table */
    lw_str(w, "begin_search");
    lw_map(w, 2);
    lw_str(w, "type");
    if (k->type == KVP_KS_UNKNOWN) {
        lw_str(w, "unknown");
        lw_str(w, "spec");
        lw_map(w, 0);
    } else {
        lw_str(w, "index");
        lw_str(w, "spec");
        lw_map(w, 1);
        lw_str(w, "index");
        lw_int(w, k->index);
    }
    lw_str(w, "find_keys");
    lw_map(w, 2);
    lw_str(w, "type");
    if (k->type == KVP_KS_RANGE) {
        lw_str(w, "range");
        lw_str(w, "spec");
        lw_map(w, 3);
        lw_str(w, "lastkey");
        lw_int(w, k->lastkey);
        lw_str(w, "keystep");
        lw_int(w, k->keystep);
        lw_str(w, "limit");
        lw_int(w, 0);
    } else if (k->type == KVP_KS_KEYNUM) {
        lw_str(w, "keynum");
        lw_str(w, "spec");
        lw_map(w, 3);
        lw_str(w, "keynumidx");
        lw_int(w, k->keynumidx);
        lw_str(w, "firstkey");
        lw_int(w, k->firstkey);
        lw_str(w, "keystep");
        lw_int(w, k->keystep);
    } else {
        lw_str(w, "unknown");
        lw_str(w, "spec");
        lw_map(w, 0);
    }
}

/* One COMMAND INFO entry, Redis 7's ten fields, with its served
 * subcommands. */
static void write_entry(kvp_lw *w, const kvp_cmd *cmd)
{
    lw_array(w, 10);
    lw_str(w, cmd->name);
    lw_int(w, cmd->arity);
    int nf = 0;
    for (int i = 0; i < NFLAGS; i++)
        nf += (cmd->flags & flag_names[i].bit) != 0;
    lw_array(w, nf);
    for (int i = 0; i < NFLAGS; i++)
        if (cmd->flags & flag_names[i].bit)
            lw_status(w, flag_names[i].name);
    int first, last, step;
    legacy_range(cmd, &first, &last, &step);
    lw_int(w, first);
    lw_int(w, last);
    lw_int(w, step);
    const char *cats[8];
    int nc = acl_categories(cmd, cats);
    lw_array(w, nc);
    for (int i = 0; i < nc; i++)
        lw_status(w, cats[i]);
    lw_array(w, 0); /* tips */
    int ns = 0;
    while (ns < KVP_CMD_MAX_SPECS && cmd->ks[ns].type != KVP_KS_NONE)
        ns++;
    lw_array(w, ns);
    for (int i = 0; i < ns; i++)
        write_keyspec(w, &cmd->ks[i]);
    int nsub = 0;
    for (int i = 0; i < cmd->sub_count; i++)
        nsub += cls_of(kvp_cmd_at(cmd->sub_first + i)) != KVP_CLASS_UNSUPPORTED;
    lw_array(w, nsub);
    for (int i = 0; i < cmd->sub_count; i++) {
        const kvp_cmd *s = kvp_cmd_at(cmd->sub_first + i);
        if (cls_of(s) != KVP_CLASS_UNSUPPORTED)
            write_entry(w, s);
    }
}

/* "name" or "container|sub" (any case): the served entry, or NULL. */
static const kvp_cmd *lookup_served(const kv_str *name)
{
    const char *bar = memchr(name->p, '|', name->len);
    const kvp_cmd *cmd = kvp_cmd_lookup(name->p, bar ? (size_t)(bar - name->p) : name->len);
    if (cmd && bar)
        cmd = kvp_cmd_is_container(cmd)
                  ? kvp_cmd_lookup_sub(cmd, bar + 1, name->len - (size_t)(bar + 1 - name->p))
                  : NULL;
    return cmd && served(cmd) ? cmd : NULL;
}

static void command_all(kvp_client *c)
{
    kvp_lw w;
    lw_init(&w, c);
    lw_array(&w, count_served());
    for (int id = 0; id < kvp_cmd_count(); id++) {
        const kvp_cmd *cmd = kvp_cmd_at(id);
        if (cmd->parent == NULL && served(cmd))
            write_entry(&w, cmd);
    }
    lw_send(&w, c);
}

static void command_info(kvp_client *c, int argc, kv_str *argv)
{
    if (argc == 2) {
        command_all(c);
        return;
    }
    kvp_lw w;
    lw_init(&w, c);
    lw_array(&w, argc - 2);
    for (int i = 2; i < argc; i++) {
        const kvp_cmd *cmd = lookup_served(&argv[i]);
        if (cmd)
            write_entry(&w, cmd);
        else
            lw_nil(&w);
    }
    lw_send(&w, c);
}

/* COMMAND LIST [FILTERBY MODULE m | ACLCAT cat | PATTERN p] */
static int list_match(const kvp_cmd *cmd, int by, const kv_str *v)
{
    if (by == 0)
        return 1;
    if (by == 1)
        return 0; /* MODULE: the proxy has none */
    if (by == 2) {
        const char *cats[8];
        int nc = acl_categories(cmd, cats);
        for (int i = 0; i < nc; i++)
            if (strlen(cats[i] + 1) == v->len && strncasecmp(cats[i] + 1, v->p, v->len) == 0)
                return 1;
        return 0;
    }
    char pat[128];
    size_t pl = v->len < sizeof(pat) ? v->len : sizeof(pat);
    for (size_t i = 0; i < pl; i++)
        pat[i] = (char)(v->p[i] >= 'A' && v->p[i] <= 'Z' ? v->p[i] + 32 : v->p[i]);
    return kv_glob_match(pat, pl, cmd->name, cmd->len);
}

static void command_list(kvp_client *c, int argc, kv_str *argv)
{
    int by = 0;
    if (argc == 5 && eq_nocase(&argv[2], "filterby")) {
        by = eq_nocase(&argv[3], "module") ? 1 : eq_nocase(&argv[3], "aclcat") ? 2
             : eq_nocase(&argv[3], "pattern") ? 3 : -1;
    }
    if ((argc != 2 && argc != 5) || (argc == 5 && by <= 0)) {
        kvp_client_reply_str(c, KVP_ERR_SYNTAX);
        return;
    }
    const kv_str *v = argc == 5 ? &argv[4] : NULL;
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        kvp_lw w;
        if (pass == 1) {
            lw_init(&w, c);
            lw_array(&w, n);
        }
        for (int id = 0; id < kvp_cmd_count(); id++) {
            const kvp_cmd *cmd = kvp_cmd_at(id);
            if (!(cmd->parent ? cls_of(cmd) != KVP_CLASS_UNSUPPORTED : served(cmd)) || !list_match(cmd, by, v))
                continue;
            if (pass == 0)
                n++;
            else
                lw_str(&w, cmd->name);
        }
        if (pass == 1)
            lw_send(&w, c);
    }
}

/* COMMAND GETKEYS: the keys the proxy itself finds (kvp_cmd_keys), so a
 * client sees how its command will be routed. */
static void command_getkeys(kvp_client *c, int argc, kv_str *argv)
{
    kv_str *a = &argv[2];
    int n = argc - 2;
    const kvp_cmd *cmd = kvp_cmd_lookup(a[0].p, a[0].len);
    if (cmd && kvp_cmd_is_container(cmd))
        cmd = n >= 2 ? kvp_cmd_lookup_sub(cmd, a[1].p, a[1].len) : NULL;
    if (cmd == NULL) {
        kvp_client_reply_str(c, "-ERR Invalid command specified\r\n");
        return;
    }
    if (!kvp_cmd_arity_ok(cmd, n)) {
        kvp_client_reply_str(c, "-ERR Invalid number of arguments specified for command\r\n");
        return;
    }
    if (cls_of(cmd) == KVP_CLASS_UNSUPPORTED) {
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
        return;
    }
    if (cmd->ks[0].type == KVP_KS_NONE) {
        kvp_client_reply_str(c, "-ERR The command has no key arguments\r\n");
        return;
    }
    int small[64];
    int *keys = n <= 64 ? small : malloc((size_t)n * sizeof(int));
    if (keys == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    int nk = kvp_cmd_keys(cmd, n, a, keys, n);
    if (nk < 0) {
        kvp_client_reply_str(c, "-ERR Invalid arguments specified for command\r\n");
    } else {
        kvp_lw w;
        lw_init(&w, c);
        lw_array(&w, nk);
        for (int i = 0; i < nk; i++)
            lw_bulk(&w, a[keys[i]].p, a[keys[i]].len);
        lw_send(&w, c);
    }
    if (keys != small)
        free(keys);
}

static int fwd_room(kvp_locals *l, int n)
{
    if (n <= l->fwd_cap)
        return KV_OK;
    kv_str *f = realloc(l->fwd, (size_t)n * sizeof(*f));
    if (f == NULL)
        return KV_ENOMEM;
    l->fwd = f;
    l->fwd_cap = n;
    return KV_OK;
}

/* COMMAND DOCS [name ...]: the docs are Redis's (summaries, arguments:
 * nothing the proxy's table holds), so a master is asked -- for the
 * served commands only: the names asked, less those the proxy refuses, or
 * every served command when none is named. The request is filtered, not
 * the reply, so nothing of it is parsed. */
static int command_docs(kvp_locals *l, kvp_client *c, int *argc, kv_str **argv)
{
    int n = *argc;
    kv_str *a = *argv;
    if (fwd_room(l, (n > 2 ? n : kvp_cmd_count()) + 2) != KV_OK) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return KVP_LOCAL_DONE;
    }
    l->fwd[0] = a[0];
    l->fwd[1] = a[1];
    int m = 2;
    if (n > 2) {
        for (int i = 2; i < n; i++)
            if (lookup_served(&a[i]))
                l->fwd[m++] = a[i];
        if (m == 2) {
            /* nothing served was asked: Redis's answer for unknown names */
            kvp_client_reply_str(c, "*0\r\n");
            return KVP_LOCAL_DONE;
        }
    } else {
        for (int id = 0; id < kvp_cmd_count(); id++) {
            const kvp_cmd *cmd = kvp_cmd_at(id);
            if (cmd->parent == NULL && served(cmd))
                l->fwd[m++] = (kv_str){cmd->name, cmd->len};
        }
    }
    *argc = m;
    *argv = l->fwd;
    return KVP_LOCAL_FORWARD;
}

static const local_sub command_subs[] = {
    {"count", 2, 1, "command|count"},
    {"docs", -2, 1, "command|docs"},
    {"getkeys", -3, 1, "command|getkeys"},
    {"getkeysandflags", -3, 0, "command|getkeysandflags"},
    {"help", 2, 1, "command|help"},
    {"info", -2, 1, "command|info"},
    {"list", -2, 1, "command|list"},
    {NULL, 0, 0, NULL},
};

static const char *const command_help[] = {
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are (kvp: the commands the proxy serves):",
    "(no subcommand)",
    "    Return details about all commands the proxy serves.",
    "COUNT",
    "    Return the total number of commands the proxy serves.",
    "LIST",
    "    Return a list of the commands the proxy serves.",
    "    Options: FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>).",
    "INFO [<command-name> ...]",
    "    Return details about multiple commands.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple commands (asked of a master).",
    "GETKEYS <full-command>",
    "    Return the keys from a full command, as the proxy finds them to route it.",
    "HELP",
    "    Print this help.",
    NULL,
};

static int local_command(kvp_locals *l, kvp_client *c, int *argc, kv_str **argv)
{
    if (*argc == 1) {
        command_all(c);
        return KVP_LOCAL_DONE;
    }
    const local_sub *s = find_sub(c, "command", command_subs, *argc, *argv);
    if (s == NULL)
        return KVP_LOCAL_DONE;
    if (strcmp(s->name, "count") == 0)
        reply_int(c, count_served());
    else if (strcmp(s->name, "info") == 0)
        command_info(c, *argc, *argv);
    else if (strcmp(s->name, "list") == 0)
        command_list(c, *argc, *argv);
    else if (strcmp(s->name, "getkeys") == 0)
        command_getkeys(c, *argc, *argv);
    else if (strcmp(s->name, "docs") == 0)
        return command_docs(l, c, argc, argv);
    else
        reply_lines(c, command_help);
    return KVP_LOCAL_DONE;
}

/* ------------------------------------------------------------ dispatch */

int kvp_local_run(kvp_locals *l, kvp_client *c, const kvp_cmd *cmd, int *argcp, kv_str **argvp)
{
    int argc = *argcp;
    kv_str *argv = *argvp;
    run_cls = l->cls;
    switch (cmd->local) {
    case KVP_LOCAL_PING:
        if (argc > 2)
            kvp_client_reply_err(c, KVP_ERR_ARITY_FMT, "ping");
        else if (argc == 1)
            kvp_client_reply_str(c, "+PONG\r\n");
        else
            reply_bulk(c, argv[1].p, argv[1].len);
        break;
    case KVP_LOCAL_ECHO:
        reply_bulk(c, argv[1].p, argv[1].len);
        break;
    case KVP_LOCAL_QUIT:
        kvp_client_reply_str(c, "+OK\r\n");
        kvp_client_drain(c);
        break;
    case KVP_LOCAL_SELECT: {
        long long db;
        if (kv_parse_ll(argv[1].p, argv[1].len, &db) != KV_OK)
            kvp_client_reply_str(c, KVP_ERR_NOT_INT);
        else if (db != 0)
            kvp_client_reply_str(c, KVP_ERR_DB_RANGE);
        else
            kvp_client_reply_str(c, "+OK\r\n");
        break;
    }
    case KVP_LOCAL_AUTH:
        if (argc == 2 ? check_password(c, NULL, &argv[1]) : check_password(c, &argv[1], &argv[2]))
            kvp_client_reply_str(c, "+OK\r\n");
        break;
    case KVP_LOCAL_CLIENT:
        local_client(c, argc, argv);
        break;
    case KVP_LOCAL_HELLO:
        local_hello(c, argc, argv);
        break;
    case KVP_LOCAL_CONFIG:
        local_config(c, argc, argv);
        break;
    case KVP_LOCAL_CMDTAB:
        return local_command(l, c, argcp, argvp);
    default:
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
    }
    return KVP_LOCAL_DONE;
}

void kvp_local_init(kvp_locals *l)
{
    memset(l, 0, sizeof(*l));
}

void kvp_local_free(kvp_locals *l)
{
    free(l->fwd);
    memset(l, 0, sizeof(*l));
}
