/* router.c -- what happens to one parsed command: checks in SPEC order, then
 * local answer, forward by key, split per backend, or fan out.
 *
 * Checks, in order: known command (unknown -> error), client AUTH, container
 * subcommand, arity, supported by the proxy, qps limit; then the class decides.
 * A command that needs the bucket table before the first one arrived returns
 * KV_AGAIN and the client waits (parked) without losing its place. */
#include "dp.h"
#include "errors.h"
#include "../core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------- encoding */

static size_t fmt_count(char *buf, char type, long long n)
{
    if (n >= 0 && n < 10) { /* "*2", "$3": most headers */
        buf[0] = type;
        buf[1] = (char)('0' + n);
        buf[2] = '\r';
        buf[3] = '\n';
        return 4;
    }
    char tmp[24];
    size_t i = 0, o = 0;
    unsigned long long v = n < 0 ? (unsigned long long)(-(n + 1)) + 1 : (unsigned long long)n;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf[o++] = type;
    if (n < 0)
        buf[o++] = '-';
    while (i)
        buf[o++] = tmp[--i];
    buf[o++] = '\r';
    buf[o++] = '\n';
    return o;
}

/* The encoders write straight into the output buffer: one reserve and
 * plain stores per argument (no per-piece calls, no allocation once the
 * buffer has grown to its working size). A failed reserve returns KV_ENOMEM
 * and marks the buffer (kv_buf_settle takes the group back). */
int kvp_write_count(kv_buf *out, char type, long long n)
{
    if (kv_buf_reserve(out, 32) != KV_OK)
        return KV_ENOMEM;
    out->wpos += fmt_count(out->data + out->wpos, type, n);
    return KV_OK;
}

int kvp_write_bulk(kv_buf *out, const char *p, size_t n)
{
    if (kv_buf_reserve(out, n + 32) != KV_OK)
        return KV_ENOMEM;
    char *d = out->data + out->wpos;
    size_t o = fmt_count(d, '$', (long long)n);
    memcpy(d + o, p, n);
    o += n;
    d[o++] = '\r';
    d[o++] = '\n';
    out->wpos += o;
    return KV_OK;
}

int kvp_write_bulk_prefixed(kv_buf *out, const char *pre, size_t prelen, const char *p, size_t n)
{
    if (kv_buf_reserve(out, n + prelen + 32) != KV_OK)
        return KV_ENOMEM;
    char *d = out->data + out->wpos;
    size_t o = fmt_count(d, '$', (long long)(n + prelen));
    memcpy(d + o, pre, prelen);
    o += prelen;
    memcpy(d + o, p, n);
    o += n;
    d[o++] = '\r';
    d[o++] = '\n';
    out->wpos += o;
    return KV_OK;
}

/* ------------------------------------------------------------- scratch */

static int scratch(kvp_worker *w, int n)
{
    if (n <= w->s_cap)
        return KV_OK;
    int cap = w->s_cap ? w->s_cap : 64;
    while (cap < n)
        cap *= 2;
    int *k = realloc(w->s_keys, (size_t)cap * sizeof(int));
    if (k == NULL)
        return KV_ENOMEM;
    w->s_keys = k;
    int *s = realloc(w->s_server, (size_t)cap * sizeof(int));
    if (s == NULL)
        return KV_ENOMEM;
    w->s_server = s;
    kvp_rkey *rk = realloc(w->s_rkey, (size_t)cap * sizeof(kvp_rkey));
    if (rk == NULL)
        return KV_ENOMEM;
    w->s_rkey = rk;
    char(*hex)[40] = realloc(w->s_hex, (size_t)cap * sizeof(*hex));
    if (hex == NULL)
        return KV_ENOMEM;
    w->s_hex = hex;
    uint8_t *in = realloc(w->s_in_frag, (size_t)cap);
    if (in == NULL)
        return KV_ENOMEM;
    w->s_in_frag = in;
    uint8_t *pick = realloc(w->s_pick, (size_t)cap);
    if (pick == NULL)
        return KV_ENOMEM;
    w->s_pick = pick;
    w->s_cap = cap;
    return KV_OK;
}

/* One mark per server of the table (which sources have had their MIGRATE). */
static int scratch_servers(kvp_worker *w, int n)
{
    if (n > w->s_src_cap) {
        uint8_t *d = realloc(w->s_src_done, (size_t)n);
        if (d == NULL)
            return KV_ENOMEM;
        w->s_src_done = d;
        w->s_src_cap = n;
    }
    memset(w->s_src_done, 0, (size_t)n);
    return KV_OK;
}

/* ------------------------------------------------------------ local cmds */

static int eq_nocase(const kv_str *a, const char *s)
{
    size_t n = strlen(s);
    return a->len == n && strncasecmp(a->p, s, n) == 0;
}

/* A locally built reply (kept whole in b) goes to the client, or out of
 * memory in its place. */
static void reply_built(kvp_client *c, kv_buf *b)
{
    if (b->failed)
        kvp_client_reply_str(c, KVP_ERR_OOM);
    else
        kvp_client_reply(c, kv_buf_rptr(b), kv_buf_len(b));
    kv_buf_deinit(b);
}

static void reply_bulk(kvp_client *c, const char *p, size_t n)
{
    kv_buf b;
    kv_buf_init(&b, KVP_OUT_MAX);
    kvp_write_bulk(&b, p, n);
    reply_built(c, &b);
}

static void reply_int(kvp_client *c, long long v)
{
    char buf[32];
    kvp_client_reply(c, buf, fmt_count(buf, ':', v));
}

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

static void local_client(kvp_client *c, int argc, kv_str *argv)
{
    if (eq_nocase(&argv[1], "setname") && argc == 3) {
        for (size_t i = 0; i < argv[2].len; i++) {
            unsigned char ch = (unsigned char)argv[2].p[i];
            if (ch <= ' ' || ch > '~') {
                kvp_client_reply_str(c, "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
                return;
            }
        }
        free(c->name);
        c->name = NULL;
        if (argv[2].len > 0) {
            c->name = malloc(argv[2].len + 1);
            if (c->name) {
                memcpy(c->name, argv[2].p, argv[2].len);
                c->name[argv[2].len] = 0;
            }
        }
        kvp_client_reply_str(c, "+OK\r\n");
    } else if (eq_nocase(&argv[1], "getname") && argc == 2) {
        if (c->name)
            reply_bulk(c, c->name, strlen(c->name));
        else
            kvp_client_reply_str(c, "$-1\r\n");
    } else if (eq_nocase(&argv[1], "id") && argc == 2) {
        reply_int(c, (long long)c->id);
    } else if (eq_nocase(&argv[1], "setname") || eq_nocase(&argv[1], "getname") ||
               eq_nocase(&argv[1], "id")) {
        char name[64];
        snprintf(name, sizeof(name), "client|%.*s", (int)(argv[1].len > 20 ? 20 : argv[1].len), argv[1].p);
        for (char *p = name; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        kvp_client_reply_err(c, KVP_ERR_ARITY_FMT, name);
    } else {
        char name[64];
        snprintf(name, sizeof(name), "client|%.*s", (int)(argv[1].len > 20 ? 20 : argv[1].len), argv[1].p);
        for (char *p = name; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, name);
    }
}

static void local_hello(kvp_client *c, int argc, kv_str *argv)
{
    int i = 1;
    if (argc >= 2) {
        long long v;
        if (kv_parse_ll(argv[1].p, argv[1].len, &v) != KV_OK || v != 2) {
            kvp_client_reply_str(c, KVP_ERR_NOPROTO);
            return;
        }
        i = 2;
    }
    for (; i < argc; i++) {
        if (eq_nocase(&argv[i], "auth") && i + 2 < argc) {
            if (!check_password(c, &argv[i + 1], &argv[i + 2]))
                return;
            i += 2;
        } else if (eq_nocase(&argv[i], "setname") && i + 1 < argc) {
            free(c->name);
            c->name = strndup(argv[i + 1].p, argv[i + 1].len);
            i += 1;
        } else {
            kvp_client_reply_str(c, KVP_ERR_SYNTAX);
            return;
        }
    }
    if (!c->authed) {
        kvp_client_reply_str(c, KVP_ERR_NOAUTH);
        return;
    }
    kv_buf bb;
    kv_buf_init(&bb, KVP_OUT_MAX);
    kv_buf *b = &bb;
    kvp_write_count(b, '*', 14);
    kvp_write_bulk(b, "server", 6);
    kvp_write_bulk(b, "kvp", 3);
    kvp_write_bulk(b, "version", 7);
    kvp_write_bulk(b, KV_VERSION, strlen(KV_VERSION));
    kvp_write_bulk(b, "proto", 5);
    kvp_write_count(b, ':', 2);
    kvp_write_bulk(b, "id", 2);
    kvp_write_count(b, ':', (long long)c->id);
    kvp_write_bulk(b, "mode", 4);
    kvp_write_bulk(b, "standalone", 10);
    kvp_write_bulk(b, "role", 4);
    kvp_write_bulk(b, "master", 6);
    kvp_write_bulk(b, "modules", 7);
    kvp_write_count(b, '*', 0);
    reply_built(c, b);
}

static void dispatch_local(kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    switch (cmd->local) {
    case KVP_LOCAL_PING:
        if (argc == 1)
            kvp_client_reply_str(c, "+PONG\r\n");
        else
            reply_bulk(c, argv[1].p, argv[1].len);
        break;
    case KVP_LOCAL_ECHO:
        reply_bulk(c, argv[1].p, argv[1].len);
        break;
    case KVP_LOCAL_QUIT:
        kvp_client_reply_str(c, "+OK\r\n");
        c->closing = 1;
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
    default:
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
    }
}

/* --------------------------------------------------------------- routed */

/* Write argv as a multibulk; the arguments at keys[] are replaced by their
 * routed form "<bucket>_<key or its SHA-1 hex>" (rkeys[], same order). */
static void write_routed(kv_buf *out, int argc, const kv_str *argv, const int *keys,
                         int nk, const kvp_table *t, const kvp_rkey *rkeys)
{
    /* a failed reserve marks out; the caller settles the group */
    kvp_write_count(out, '*', argc);
    int k = 0;
    for (int i = 0; i < argc; i++) {
        /* keys[] is ascending for every command in the table; fall back to a
         * scan for any that is not */
        int kb = -1;
        if (k < nk && keys[k] == i)
            kb = k++;
        else
            for (int j = 0; j < nk; j++)
                if (keys[j] == i) {
                    kb = j;
                    break;
                }
        if (kb >= 0) {
            uint32_t b = rkeys[kb].bucket;
            kvp_write_bulk_prefixed(out, t->prefix[b], t->prefix_len[b], rkeys[kb].p, rkeys[kb].len);
        } else {
            kvp_write_bulk(out, argv[i].p, argv[i].len);
        }
    }
}

/* Route every key of argv listed in w->s_keys[0..nk) into w->s_rkey. */
static void route_keys(kvp_worker *w, const kvp_table *t, const kv_str *argv, int nk)
{
    for (int i = 0; i < nk; i++) {
        const kv_str *a = &argv[w->s_keys[i]];
        kvp_table_route(t, a->p, a->len, &w->s_rkey[i], w->s_hex[i]);
    }
}

/* One more command executed for a client (refused ones are not counted). */
static void count_cmd(kvp_worker *w, const kvp_cmd *cmd)
{
    kvp_stat_add(&w->st.total, 1);
    int id = cmd->parent ? cmd->parent->id : cmd->id;
    if (w->st.cmd)
        kvp_stat_add(&w->st.cmd[id], 1);
}

/* Fragment f's command could not be written whole (out of memory): what
 * was written of it is taken back and it answers an error, in its place. */
static void frag_oom(kvp_req *r, int f)
{
    kvp_req_frag_reply(r, f, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
}

/* ---------------------------------------------------- migrate on access */

/* MIGRATE <dst host> <dst port> "" 0 <timeout> [AUTH pw] KEYS <routed keys>:
 * moves the named keys whose source is src (keys from..nk) from the bucket's
 * owner to the migration destination, atomically per key (the ones that
 * still exist). */
static void write_migrate(kv_buf *out, const kvp_backend *dst, const kvp_table *t,
                          const kvp_rkey *rk, const uint8_t *named, uint16_t src, int from, int nk)
{
    const char *pw = atomic_load(&kvp_g.redis_password);
    int auth = pw != NULL && pw[0] != '\0';
    char port[16], tmo[16];
    int pl = snprintf(port, sizeof(port), "%d", dst->port);
    int tl = snprintf(tmo, sizeof(tmo), "%d", atomic_load(&kvp_g.request_timeout_ms));
    int nsel = 0;
    for (int i = from; i < nk; i++)
        nsel += named[i] && rk[i].src == src;
    kvp_write_count(out, '*', 7 + (auth ? 2 : 0) + nsel);
    kvp_write_bulk(out, "MIGRATE", 7);
    kvp_write_bulk(out, dst->host, strlen(dst->host));
    kvp_write_bulk(out, port, (size_t)pl);
    kvp_write_bulk(out, "", 0);
    kvp_write_bulk(out, "0", 1);
    kvp_write_bulk(out, tmo, (size_t)tl);
    if (auth) {
        kvp_write_bulk(out, "AUTH", 4);
        kvp_write_bulk(out, pw, strlen(pw));
    }
    kvp_write_bulk(out, "KEYS", 4);
    for (int i = from; i < nk; i++)
        if (named[i] && rk[i].src == src)
            kvp_write_bulk_prefixed(out, t->prefix[rk[i].bucket], t->prefix_len[rk[i].bucket], rk[i].p,
                                    rk[i].len);
}

/* Fragment f of r goes to `target` and has keys (among w->s_rkey[0..nk)
 * selected by w->s_in_frag) in migrating buckets: hold its command and send
 * one MIGRATE per source, naming each key once (MGET k k: Redis would answer
 * BUSYKEY for the second copy of a key it has just moved). Linear in nk.
 * Returns the buffer the caller writes the command into, or NULL when it
 * was answered (a source is down, or out of memory). */
static kv_buf *premig_start(kvp_worker *w, kvp_req *r, int f, kvp_backend *target, int nk)
{
    const kvp_table *t = w->table;
    kvp_frag *fr = &r->frags[f];
    const uint8_t *in_frag = w->s_in_frag;
    /* every source must be reachable, or nothing is sent */
    for (int i = 0; i < nk; i++) {
        if (!in_frag[i] || w->s_rkey[i].src == KVP_NO_SERVER)
            continue;
        kvp_backend *src = w->route[w->s_rkey[i].src];
        if (src == NULL || !kvp_backend_usable(src)) {
            if (src)
                kvp_req_frag_reply(r, f, src->unavailable, src->unavailable_len);
            else
                kvp_req_frag_reply(r, f, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
            return NULL;
        }
    }
    if (scratch_servers(w, t->nservers) != KV_OK || kv_keyset_reset(&w->s_seen, (size_t)nk) != KV_OK) {
        kvp_req_frag_reply(r, f, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
        return NULL;
    }
    /* a repeated key has the same bucket, hence the same source: one set
     * over the fragment finds every repeat */
    uint8_t *named = w->s_pick;
    for (int i = 0; i < nk; i++)
        named[i] = in_frag[i] && w->s_rkey[i].src != KVP_NO_SERVER &&
                   kv_keyset_add(&w->s_seen, w->s_rkey[i].p, w->s_rkey[i].len);
    if (!fr->holding) {
        kv_buf_init(&fr->held, KVP_OUT_MAX);
        fr->holding = 1;
    }
    fr->target = target;
    fr->premig_pending = 0;
    fr->premig_failed = 0;
    for (int i = 0; i < nk; i++) {
        if (!named[i] || w->s_src_done[w->s_rkey[i].src])
            continue;
        uint16_t src = w->s_rkey[i].src;
        w->s_src_done[src] = 1;
        kvp_backend *sbe = w->route[src];
        size_t mark = kv_buf_mark(&sbe->out);
        write_migrate(&sbe->out, target, t, w->s_rkey, named, src, i, nk);
        if (kv_buf_settle(&sbe->out, mark) != KV_OK) {
            /* this source's keys stay there: the command must not run */
            kvp_frag_premig_fail(r, f, KVP_ERR_OOM);
            continue;
        }
        fr->premig_pending++;
        kvp_backend_enqueue_premig(sbe, r, f);
    }
    if (fr->premig_pending == 0) {
        /* no MIGRATE went out: answered now */
        frag_oom(r, f);
        return NULL;
    }
    w->premig_inflight++;
    kv_buf_mark(&fr->held);
    return &fr->held;
}

static kvp_backend *pick_backend(kvp_client *c, int server)
{
    kvp_backend *be = c->w->route[server];
    if (be == NULL || !kvp_backend_usable(be)) {
        if (be)
            kvp_client_reply(c, be->unavailable, be->unavailable_len);
        else
            kvp_client_reply_str(c, KVP_ERR_OOM);
        return NULL;
    }
    return be;
}

static void forward_one(kvp_client *c, kvp_backend *be, int argc, const kv_str *argv,
                        const int *keys, int nk, const kvp_rkey *rkeys, uint32_t flags)
{
    kvp_req *r = kvp_req_new(c, KVP_MERGE_NONE, 1);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    r->strip_key = (flags & KVP_CF_REPLY_KEY) != 0;
    kvp_req_routed(r);
    r->pending = 1;
    size_t mark = kv_buf_mark(&be->out);
    write_routed(&be->out, argc, argv, keys, nk, c->w->table, rkeys);
    if (kv_buf_settle(&be->out, mark) != KV_OK)
        frag_oom(r, 0);
    else
        kvp_backend_enqueue(be, r, 0);
}

static int dispatch_keyed(kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    kvp_worker *w = c->w;
    const kvp_table *t = w->table;
    if (scratch(w, argc) != KV_OK) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return KV_OK;
    }
    int nk = kvp_cmd_keys(cmd, argc, argv, w->s_keys, argc);
    if (nk < 0) {
        kvp_client_reply_str(c, KVP_ERR_BAD_NUMKEYS);
        return KV_OK;
    }
    if (nk == 0) {
        kvp_client_reply_err(c, KVP_ERR_NO_KEYS_FMT, cmd->name);
        return KV_OK;
    }
    route_keys(w, t, argv, nk);
    if (w->s_rkey[0].blocked) {
        c->park_reason = KVP_PARK_BLOCKED; /* about to migrate: wait for the next table */
        return KV_AGAIN;
    }
    for (int i = 1; i < nk; i++) {
        if (w->s_rkey[i].bucket != w->s_rkey[0].bucket) {
            kvp_client_reply_str(c, KVP_ERR_CROSSSLOT);
            return KV_OK;
        }
    }
    count_cmd(w, cmd);
    kvp_backend *be = pick_backend(c, w->s_rkey[0].server);
    if (be == NULL)
        return KV_OK;
    if (w->s_rkey[0].src == KVP_NO_SERVER) {
        forward_one(c, be, argc, argv, w->s_keys, nk, w->s_rkey, cmd->flags);
        return KV_OK;
    }
    /* the bucket is migrating: MIGRATE the keys to `be` first */
    kvp_req *r = kvp_req_new(c, KVP_MERGE_NONE, 1);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return KV_OK;
    }
    if (kvp_req_ensure_frags(r) != KV_OK) {
        kvp_req_abort(r, KVP_ERR_OOM);
        return KV_OK;
    }
    r->strip_key = (cmd->flags & KVP_CF_REPLY_KEY) != 0;
    r->pending = 1;
    kvp_req_routed(r);
    memset(w->s_in_frag, 1, (size_t)nk);
    kv_buf *held = premig_start(w, r, 0, be, nk);
    if (held) {
        write_routed(held, argc, argv, w->s_keys, nk, t, w->s_rkey);
        if (kv_buf_settle(held, 0) != KV_OK)
            kvp_frag_premig_fail(r, 0, KVP_ERR_OOM);
    }
    return KV_OK;
}

/* DEL/UNLINK/EXISTS/TOUCH/MGET/MSET: one fragment per backend, keys in the
 * client's order inside each; merged by kvp_merge_*. */
static int dispatch_split(kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    kvp_worker *w = c->w;
    const kvp_table *t = w->table;
    if (scratch(w, argc) != KV_OK || scratch(w, t->nservers) != KV_OK) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return KV_OK;
    }
    int nk = kvp_cmd_keys(cmd, argc, argv, w->s_keys, argc);
    int step = cmd->ks[0].keystep > 0 ? cmd->ks[0].keystep : 1; /* MSET: key value */
    if (nk <= 0) {
        kvp_client_reply_err(c, KVP_ERR_ARITY_FMT, cmd->name);
        return KV_OK;
    }
    route_keys(w, t, argv, nk);
    for (int i = 0; i < nk; i++)
        if (w->s_rkey[i].blocked) {
            c->park_reason = KVP_PARK_BLOCKED; /* about to migrate: wait for the next table */
            return KV_AGAIN;
        }
    count_cmd(w, cmd);
    int first_server = -1, single = 1, migrating = 0;
    for (int i = 0; i < nk; i++) {
        w->s_server[i] = w->s_rkey[i].server;
        migrating |= w->s_rkey[i].src != KVP_NO_SERVER;
        if (first_server < 0)
            first_server = w->s_server[i];
        else if (w->s_server[i] != first_server)
            single = 0;
    }
    if (single && !migrating) {
        /* one backend: its reply is already the right merged reply */
        kvp_backend *be = pick_backend(c, first_server);
        if (be)
            forward_one(c, be, argc, argv, w->s_keys, nk, w->s_rkey, 0);
        return KV_OK;
    }
    /* fragment index per server, in order of first appearance */
    int frag_of_server[256];
    int *fos = t->nservers <= 256 ? frag_of_server : malloc(sizeof(int) * (size_t)t->nservers);
    if (fos == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return KV_OK;
    }
    for (int s = 0; s < t->nservers; s++)
        fos[s] = -1;
    int nfrags = 0;
    int frag_server[256 + 1];
    int *fsrv = frag_server;
    if (t->nservers > 256 && (fsrv = malloc(sizeof(int) * (size_t)t->nservers)) == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        goto done;
    }
    for (int i = 0; i < nk; i++)
        if (fos[w->s_server[i]] < 0) {
            fsrv[nfrags] = w->s_server[i];
            fos[w->s_server[i]] = nfrags++;
        }
    kvp_req *r = kvp_req_new(c, cmd->merge, nfrags);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        goto done;
    }
    r->pending = nfrags + 1; /* guard: released by kvp_req_setup_done */
    kvp_req_routed(r);
    int map_keys = cmd->merge == KVP_MERGE_MGET && kvp_req_map_keys(r, nk) == KV_OK;
    for (int f = 0; f < nfrags; f++) {
        kvp_backend *be = w->route[fsrv[f]];
        r->frags[f].be = be;
        if (map_keys)
            for (int i = 0, pos = 0; i < nk; i++)
                if (fos[w->s_server[i]] == f) {
                    r->key_frag[i] = (uint16_t)f;
                    r->key_pos[i] = (uint32_t)pos++;
                }
        if (be == NULL || !kvp_backend_usable(be)) {
            if (be)
                kvp_req_frag_reply(r, f, be->unavailable, be->unavailable_len);
            else
                kvp_req_frag_reply(r, f, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
            continue;
        }
        int cnt = 0, mig = 0;
        for (int i = 0; i < nk; i++)
            if (fos[w->s_server[i]] == f) {
                cnt++;
                mig |= w->s_rkey[i].src != KVP_NO_SERVER;
            }
        kv_buf *out = &be->out;
        size_t mark = kv_buf_mark(out);
        if (mig) {
            for (int i = 0; i < nk; i++)
                w->s_in_frag[i] = fos[w->s_server[i]] == f;
            out = premig_start(w, r, f, be, nk);
            if (out == NULL)
                continue; /* a source is down: answered */
            mark = 0;
        }
        kvp_write_count(out, '*', 1 + (long long)cnt * step);
        kvp_write_bulk(out, argv[0].p, argv[0].len);
        for (int i = 0; i < nk; i++) {
            if (fos[w->s_server[i]] != f)
                continue;
            int ki = w->s_keys[i];
            const kvp_rkey *rk = &w->s_rkey[i];
            kvp_write_bulk_prefixed(out, t->prefix[rk->bucket], t->prefix_len[rk->bucket], rk->p, rk->len);
            for (int v = 1; v < step; v++)
                kvp_write_bulk(out, argv[ki + v].p, argv[ki + v].len);
        }
        if (kv_buf_settle(out, mark) != KV_OK) {
            if (mig)
                kvp_frag_premig_fail(r, f, KVP_ERR_OOM); /* answered when its MIGRATEs are */
            else
                frag_oom(r, f);
        } else if (!mig) {
            kvp_backend_enqueue(be, r, f);
        }
    }
    kvp_req_setup_done(r);
done:
    if (fos != frag_of_server)
        free(fos);
    if (fsrv != frag_server)
        free(fsrv);
    return KV_OK;
}

/* Every master gets the command as it is (FLUSHALL, DBSIZE, RANDOMKEY, INFO). */
static void dispatch_fanout(kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    kvp_worker *w = c->w;
    const kvp_table *t = w->table;
    count_cmd(w, cmd);
    kvp_req *r = kvp_req_new(c, cmd->merge, t->nservers);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    r->pending = t->nservers + 1;
    kvp_req_routed(r);
    static const kv_str info_args[3] = {{"INFO", 4}, {"server", 6}, {"keyspace", 8}};
    if (cmd->merge == KVP_MERGE_INFO) {
        /* which sections the client wants: 0 = default set */
        r->info_section = 0;
        if (argc >= 2) {
            static const char *names[] = {"server", "clients", "stats", "keyspace"};
            for (int a = 1; a < argc; a++) {
                if (eq_nocase(&argv[a], "all") || eq_nocase(&argv[a], "everything") ||
                    eq_nocase(&argv[a], "default")) {
                    r->info_section = 0;
                    break;
                }
                for (int s = 0; s < 4; s++)
                    if (eq_nocase(&argv[a], names[s]))
                        r->info_section |= 1 << s;
            }
            if (r->info_section == 0) {
                int any = 0;
                for (int a = 1; a < argc; a++)
                    if (eq_nocase(&argv[a], "all") || eq_nocase(&argv[a], "everything") ||
                        eq_nocase(&argv[a], "default"))
                        any = 1;
                if (!any)
                    r->info_section = 1 << 8; /* asked only for sections we do not have */
            }
        }
    }
    for (int s = 0; s < t->nservers; s++) {
        kvp_backend *be = w->route[s];
        r->frags[s].be = be;
        if (be == NULL || !kvp_backend_usable(be)) {
            if (be)
                kvp_req_frag_reply(r, s, be->unavailable, be->unavailable_len);
            else
                kvp_req_frag_reply(r, s, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
            continue;
        }
        size_t mark = kv_buf_mark(&be->out);
        if (cmd->merge == KVP_MERGE_INFO)
            write_routed(&be->out, 3, info_args, NULL, 0, t, NULL);
        else
            write_routed(&be->out, argc, argv, NULL, 0, t, NULL);
        if (kv_buf_settle(&be->out, mark) != KV_OK)
            frag_oom(r, s);
        else
            kvp_backend_enqueue(be, r, s);
    }
    kvp_req_setup_done(r);
}

static void dispatch_any(kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    const kvp_table *t = c->w->table;
    count_cmd(c->w, cmd);
    int server = (int)(c->id % (uint64_t)t->nservers);
    kvp_backend *be = pick_backend(c, server);
    if (be)
        forward_one(c, be, argc, argv, NULL, 0, NULL, 0);
}

/* ------------------------------------------------------------- dispatch */

static int qps_allowed(kvp_worker *w)
{
    int max = atomic_load_explicit(&kvp_g.max_qps, memory_order_relaxed);
    if (max <= 0)
        return 1;
    int share = max / (kvp_g.io_threads > 0 ? kvp_g.io_threads : 1);
    if (share < 1)
        share = 1;
    uint64_t sec = w->now_ms / 1000;
    if (sec != w->qps_sec) {
        w->qps_sec = sec;
        w->qps_count = 0;
    }
    return ++w->qps_count <= share;
}

int kvp_dispatch(kvp_client *c, int argc, kv_str *argv)
{
    kvp_worker *w = c->w;
    const kvp_cmd *cmd = kvp_cmd_lookup(argv[0].p, argv[0].len);
    if (cmd == NULL) {
        int n = argv[0].len > 128 ? 128 : (int)argv[0].len;
        kvp_client_reply_err(c, KVP_ERR_UNKNOWN_FMT, n, argv[0].p);
        return KV_OK;
    }
    if (!c->authed && cmd->local != KVP_LOCAL_AUTH && cmd->local != KVP_LOCAL_HELLO &&
        cmd->local != KVP_LOCAL_QUIT) {
        kvp_client_reply_str(c, KVP_ERR_NOAUTH);
        return KV_OK;
    }
    if (kvp_cmd_is_container(cmd)) {
        if (argc < 2) {
            kvp_client_reply_err(c, KVP_ERR_ARITY_FMT, cmd->name);
            return KV_OK;
        }
        const kvp_cmd *sub = kvp_cmd_lookup_sub(cmd, argv[1].p, argv[1].len);
        if (sub == NULL) {
            char upper[32];
            size_t i = 0;
            for (; cmd->name[i] && i < sizeof(upper) - 1; i++)
                upper[i] = (char)(cmd->name[i] >= 'a' && cmd->name[i] <= 'z' ? cmd->name[i] - 32 : cmd->name[i]);
            upper[i] = 0;
            int n = argv[1].len > 64 ? 64 : (int)argv[1].len;
            kvp_client_reply_err(c, KVP_ERR_UNKNOWN_SUB_FMT, n, argv[1].p, upper);
            return KV_OK;
        }
        cmd = sub;
    }
    if (!kvp_cmd_arity_ok(cmd, argc)) {
        kvp_client_reply_err(c, KVP_ERR_ARITY_FMT, cmd->name);
        return KV_OK;
    }
    if (cmd->cls == KVP_CLASS_UNSUPPORTED) {
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
        return KV_OK;
    }
    if (cmd->cls == KVP_CLASS_LOCAL) {
        count_cmd(w, cmd);
        dispatch_local(c, cmd, argc, argv);
        return KV_OK;
    }
    if (w->table == NULL) {
        if (!w->table_wait_expired) {
            c->park_reason = KVP_PARK_NO_TABLE;
            return KV_AGAIN;
        }
        kvp_client_reply_str(c, KVP_ERR_NO_TABLE);
        return KV_OK;
    }
    if (w->next_table != NULL) {
        /* a new table waits for migrate-on-access steps to finish: start no
         * new one, so the swap happens within a round trip (the client
         * resumes with the new table; see worker_install_table) */
        c->park_reason = KVP_PARK_TABLE_SWAP;
        return KV_AGAIN;
    }
    if (!qps_allowed(w)) {
        kvp_client_reply_str(c, KVP_ERR_QPS);
        return KV_OK;
    }
    switch (cmd->cls) {
    case KVP_CLASS_KEYED:
        return dispatch_keyed(c, cmd, argc, argv);
    case KVP_CLASS_SPLIT:
        return dispatch_split(c, cmd, argc, argv);
    case KVP_CLASS_FANOUT:
        dispatch_fanout(c, cmd, argc, argv);
        break;
    case KVP_CLASS_ANY:
        dispatch_any(c, cmd, argc, argv);
        break;
    default:
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
    }
    return KV_OK;
}
