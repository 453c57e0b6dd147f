/* dispatch.c -- see dispatch.h.
 *
 * Checks, in order: known command (unknown -> error), client AUTH, container
 * subcommand, arity, supported by the proxy, qps limit; then the class
 * decides. A command that must wait (no table yet, a blocked bucket, a table
 * swap held back) returns KV_AGAIN with the client's park_reason set, and
 * the client waits (parked) without losing its place.
 *
 * Every command for a backend is written between kv_buf_mark and
 * kvp_backend_send, so it lands whole with its in-flight entry or not at
 * all (the request then answers out of memory in its place). */
#include "dispatch.h"
#include "dispatch_keyspace.h"
#include "errors.h"
#include "info.h"
#include "merge.h"
#include "../core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------- scratch */

static int scratch(kvp_dispatcher *d, int n)
{
    if (n <= d->s_cap)
        return KV_OK;
    int cap = d->s_cap ? d->s_cap : 64;
    while (cap < n)
        cap *= 2;
    int *k = realloc(d->s_keys, (size_t)cap * sizeof(int));
    if (k == NULL)
        return KV_ENOMEM;
    d->s_keys = k;
    int *s = realloc(d->s_server, (size_t)cap * sizeof(int));
    if (s == NULL)
        return KV_ENOMEM;
    d->s_server = s;
    kvp_rkey *rk = realloc(d->s_rkey, (size_t)cap * sizeof(kvp_rkey));
    if (rk == NULL)
        return KV_ENOMEM;
    d->s_rkey = rk;
    char(*hex)[40] = realloc(d->s_hex, (size_t)cap * sizeof(*hex));
    if (hex == NULL)
        return KV_ENOMEM;
    d->s_hex = hex;
    uint8_t *in = realloc(d->s_in_frag, (size_t)cap);
    if (in == NULL)
        return KV_ENOMEM;
    d->s_in_frag = in;
    uint8_t *pick = realloc(d->s_pick, (size_t)cap);
    if (pick == NULL)
        return KV_ENOMEM;
    d->s_pick = pick;
    d->s_cap = cap;
    return KV_OK;
}

/* Per server of the table: a mark (cleared), its fragment, and the server
 * of each fragment. */
static int scratch_servers(kvp_dispatcher *d, int n)
{
    if (n > d->s_src_cap) {
        uint8_t *m = realloc(d->s_src_done, (size_t)n);
        if (m == NULL)
            return KV_ENOMEM;
        d->s_src_done = m;
        int *fo = realloc(d->s_frag_of, (size_t)n * sizeof(int));
        if (fo == NULL)
            return KV_ENOMEM;
        d->s_frag_of = fo;
        int *fs = realloc(d->s_frag_server, (size_t)n * sizeof(int));
        if (fs == NULL)
            return KV_ENOMEM;
        d->s_frag_server = fs;
        d->s_src_cap = n;
    }
    memset(d->s_src_done, 0, (size_t)n);
    return KV_OK;
}

/* --------------------------------------------------------------- routed */

/* Write argv as a multibulk; the arguments at keys[] are replaced by their
 * routed form "<bucket>_<key or its SHA-1 hex>" (rkeys[], same order). */
static void write_routed(kv_buf *out, int argc, const kv_str *argv, const int *keys,
                         int nk, const kvp_table *t, const kvp_rkey *rkeys)
{
    /* a failed reserve marks out; the caller settles the group */
    kv_resp_write_count(out, '*', argc);
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
            kv_resp_write_bulk2(out, t->prefix[b], t->prefix_len[b], rkeys[kb].p, rkeys[kb].len);
        } else {
            kv_resp_write_bulk(out, argv[i].p, argv[i].len);
        }
    }
}

/* Rule r's max_qps: this worker's share of it, per second. */
static int rule_qps_allowed(kvp_dispatcher *d, const kvp_rule *r)
{
    int share = r->max_qps / (kvp_g.io_threads > 0 ? kvp_g.io_threads : 1);
    if (share < 1)
        share = 1;
    int i = kvp_rule_index(d->pol, r);
    uint64_t sec = d->clock->now_ms / 1000;
    if (sec != d->rule_qps[i].sec) {
        d->rule_qps[i].sec = sec;
        d->rule_qps[i].count = 0;
    }
    return ++d->rule_qps[i].count <= share;
}

/* Key i's rule lets cmd run (counted once per rule for max_qps: `counted`
 * has a bit per rule already counted); KV_ERR answered. */
static int rule_admits(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, const kvp_rule *r,
                       uint64_t *counted)
{
    switch (r->refuse[cmd->id]) {
    case KVP_RULE_DENIED:
        kvp_client_reply_err(c, KVP_ERR_POLICY_DENIED_FMT, cmd->name, r->match);
        return KV_ERR;
    case KVP_RULE_READ_ONLY:
        kvp_client_reply_err(c, KVP_ERR_POLICY_READ_ONLY_FMT, r->match);
        return KV_ERR;
    }
    uint64_t bit = 1ull << kvp_rule_index(d->pol, r);
    if (r->max_qps > 0 && !(*counted & bit)) {
        *counted |= bit;
        if (!rule_qps_allowed(d, r)) {
            kvp_client_reply_err(c, KVP_ERR_POLICY_QPS_FMT, r->match);
            return KV_ERR;
        }
    }
    return KV_OK;
}

/* Key a, whose first matching rule is r (or NULL), into out: by r's
 * route function when it has one (run by the worker's Lua state through
 * d->route_key), else by the table's hash. KV_ERR: the function failed
 * (err says why). */
static int route_by_rule(kvp_dispatcher *d, const kvp_cmd *cmd, const kvp_table *t, const kv_str *a,
                         const kvp_rule *r, kvp_rkey *out, char *hex, char *err, size_t errlen)
{
    if (r == NULL || !r->route || d->route_key == NULL) {
        kvp_table_route(t, a->p, a->len, out, hex);
        return KV_OK;
    }
    uint32_t b;
    if (d->route_key(d->route_ctx, d->pol, kvp_rule_index(d->pol, r), a->p, a->len, cmd, t, &b, err, errlen) !=
        KV_OK)
        return KV_ERR;
    kvp_table_route_in(t, a->p, a->len, b, out, hex);
    return KV_OK;
}

/* route_keys under a policy with rules: each key's first matching rule
 * admits the command or answers it, and a rule's route function picks
 * the bucket of its keys. d->s_rule0: the first key's rule. */
static int route_keys_ruled(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, const kvp_table *t,
                            const kv_str *argv, int nk)
{
    uint64_t counted = 0;
    d->s_rule0 = NULL;
    for (int i = 0; i < nk; i++) {
        const kv_str *a = &argv[d->s_keys[i]];
        const kvp_rule *r = kvp_policy_match(d->pol, a->p, a->len);
        if (i == 0)
            d->s_rule0 = r;
        if (r == NULL) {
            kvp_table_route(t, a->p, a->len, &d->s_rkey[i], d->s_hex[i]);
            continue;
        }
        if (rule_admits(d, c, cmd, r, &counted) != KV_OK)
            return KV_ERR;
        char err[256];
        if (route_by_rule(d, cmd, t, a, r, &d->s_rkey[i], d->s_hex[i], err, sizeof(err)) != KV_OK) {
            kvp_client_reply_err(c, KVP_ERR_POLICY_ROUTE_FMT, r->match, err);
            return KV_ERR;
        }
    }
    return KV_OK;
}

/* Route every key of argv listed in d->s_keys[0..nk) into d->s_rkey.
 * KV_ERR: the policy's rules refused it (answered). */
static int route_keys(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, const kvp_table *t,
                      const kv_str *argv, int nk)
{
    if (d->pol->nrules > 0)
        return route_keys_ruled(d, c, cmd, t, argv, nk);
    d->s_rule0 = NULL;
    for (int i = 0; i < nk; i++) {
        const kv_str *a = &argv[d->s_keys[i]];
        kvp_table_route(t, a->p, a->len, &d->s_rkey[i], d->s_hex[i]);
    }
    return KV_OK;
}

/* One more command executed for a client (refused ones are not counted). */
static void count_cmd(kvp_dispatcher *d, const kvp_cmd *cmd)
{
    kvp_stat_add(&d->st->total, 1);
    int id = cmd->parent ? cmd->parent->id : cmd->id;
    if (d->st->cmd)
        kvp_stat_add(&d->st->cmd[id], 1);
}

/* Fragment f's command could not be written whole (out of memory): what
 * was written of it is taken back and it answers an error, in its place. */
static void frag_oom(kvp_req *r, int f)
{
    kvp_req_frag_reply(r, f, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
}

/* Fragment f's backend is known down (or missing): fail fast. */
static void frag_unavailable(kvp_req *r, int f, const kvp_backend *be)
{
    if (be)
        kvp_req_frag_reply(r, f, be->unavailable, be->unavailable_len);
    else
        frag_oom(r, f);
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
    kv_resp_write_count(out, '*', 7 + (auth ? 2 : 0) + nsel);
    kv_resp_write_bulk(out, "MIGRATE", 7);
    kv_resp_write_bulk(out, dst->host, strlen(dst->host));
    kv_resp_write_bulk(out, port, (size_t)pl);
    kv_resp_write_bulk(out, "", 0);
    kv_resp_write_bulk(out, "0", 1);
    kv_resp_write_bulk(out, tmo, (size_t)tl);
    if (auth) {
        kv_resp_write_bulk(out, "AUTH", 4);
        kv_resp_write_bulk(out, pw, strlen(pw));
    }
    kv_resp_write_bulk(out, "KEYS", 4);
    for (int i = from; i < nk; i++)
        if (named[i] && rk[i].src == src)
            kv_resp_write_bulk2(out, t->prefix[rk[i].bucket], t->prefix_len[rk[i].bucket], rk[i].p,
                                    rk[i].len);
}

/* Fragment f's held command must not run (a MIGRATE failed or could not be
 * sent): it will answer msg, a whole error line, once its MIGRATEs are in.
 * The first failure is the one reported. */
static void premig_fail(kvp_req *r, int f, const char *msg)
{
    kvp_frag *fr = &r->frags[f];
    if (fr->premig_failed)
        return;
    fr->premig_failed = 1;
    kv_buf_consume(&fr->reply, kv_buf_len(&fr->reply));
    if (kv_buf_append(&fr->reply, msg, strlen(msg)) != KV_OK)
        kv_buf_consume(&fr->reply, kv_buf_len(&fr->reply)); /* empty: answered as out of memory */
}

static void premig_step_done(kvp_dispatcher *d)
{
    if (--d->premig_inflight == 0 && d->on_steps_done)
        d->on_steps_done(d->steps_ctx);
}

/* Every MIGRATE of fragment f has answered: its held command goes to its
 * target -- or, if any MIGRATE failed, the fragment fails and nothing runs
 * on the target (running it would act on an empty key while the data is
 * still on the source). */
static void premig_release(kvp_req *r, int f)
{
    kvp_frag *fr = &r->frags[f];
    kvp_dispatcher *d = r->route_ctx;
    if (fr->premig_failed) {
        char msg[400];
        size_t m = kv_buf_len(&fr->reply);
        if (m == 0 || m > sizeof(msg)) {
            m = sizeof(KVP_ERR_OOM) - 1;
            memcpy(msg, KVP_ERR_OOM, m);
        } else {
            memcpy(msg, kv_buf_rptr(&fr->reply), m);
        }
        kv_buf_consume(&fr->reply, kv_buf_len(&fr->reply));
        kv_buf_consume(&fr->held, kv_buf_len(&fr->held));
        kvp_req_frag_reply(r, f, msg, m);
    } else if (!kvp_backend_usable(fr->target)) {
        kv_buf_consume(&fr->held, kv_buf_len(&fr->held));
        kvp_req_frag_reply(r, f, fr->target->unavailable, fr->target->unavailable_len);
    } else {
        kv_buf *out = &fr->target->out;
        size_t mark = kv_buf_mark(out);
        kv_buf_append(out, kv_buf_rptr(&fr->held), kv_buf_len(&fr->held));
        kv_buf_consume(&fr->held, kv_buf_len(&fr->held));
        int rc = fr->held_blocks ? kvp_backend_send_blocking(fr->target, mark, kvp_req_on_reply, r, (uint32_t)f)
                                 : kvp_backend_send_group(fr->target, mark, fr->held_group, kvp_req_on_reply, r,
                                                          (uint32_t)f);
        if (rc != KV_OK)
            kvp_req_frag_reply(r, f, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
    }
    kvp_backend *tg = fr->target;
    if (--tg->held_for == 0 && tg->mode == KVP_BE_OWNED && tg->owner == NULL)
        kvp_backend_give_back_after(tg); /* its borrower let go while this was held */
    premig_step_done(d);
}

/* The in-flight callback of a migrate-on-access MIGRATE (ctx = the request,
 * tag = the fragment). */
static void premig_reply(void *ctx, uint32_t tag, const char *p, size_t n)
{
    kvp_req *r = ctx;
    int f = (int)tag;
    kvp_frag *fr = &r->frags[f];
    int ok = n >= 5 && (memcmp(p, "+OK\r\n", 5) == 0 || (n >= 8 && memcmp(p, "+NOKEY\r\n", 8) == 0));
    if (!ok && !fr->premig_failed) {
        char msg[400];
        size_t body = n > 2 ? n - 2 : 0;
        if (body > 300)
            body = 300;
        const char *text = p;
        if (body > 0 && p[0] == '-') {
            text++;
            body--;
        }
        snprintf(msg, sizeof(msg), "-ERR migrate-on-access failed: %.*s\r\n", (int)body, text);
        premig_fail(r, f, msg);
    }
    if (--fr->premig_pending == 0)
        premig_release(r, f);
}

/* Fragment f of r goes to `target` and has keys (among d->s_rkey[0..nk)
 * selected by d->s_in_frag) in migrating buckets: hold its command and send
 * one MIGRATE per source, naming each key once (MGET k k: Redis would answer
 * BUSYKEY for the second copy of a key it has just moved). Linear in nk.
 * Returns the buffer the caller writes the command into, or NULL when it
 * was answered (a source is down, or out of memory). */
static kv_buf *premig_start(kvp_dispatcher *d, kvp_req *r, int f, kvp_backend *target, int nk)
{
    const kvp_table *t = d->table;
    kvp_frag *fr = &r->frags[f];
    const uint8_t *in_frag = d->s_in_frag;
    /* every source must be reachable, or nothing is sent */
    for (int i = 0; i < nk; i++) {
        if (!in_frag[i] || d->s_rkey[i].src == KVP_NO_SERVER)
            continue;
        kvp_backend *src = d->route[d->s_rkey[i].src];
        if (src == NULL || !kvp_backend_usable(src)) {
            frag_unavailable(r, f, src);
            return NULL;
        }
    }
    if (scratch_servers(d, t->nservers) != KV_OK || kv_keyset_reset(&d->s_seen, (size_t)nk) != KV_OK) {
        kvp_req_frag_reply(r, f, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
        return NULL;
    }
    /* a repeated key has the same bucket, hence the same source: one set
     * over the fragment finds every repeat */
    uint8_t *named = d->s_pick;
    for (int i = 0; i < nk; i++)
        named[i] = in_frag[i] && d->s_rkey[i].src != KVP_NO_SERVER &&
                   kv_keyset_add(&d->s_seen, d->s_rkey[i].p, d->s_rkey[i].len);
    if (!fr->holding) {
        kv_buf_init(&fr->held, KVP_OUT_MAX);
        fr->holding = 1;
    }
    fr->target = target;
    fr->held_group = 1;
    fr->held_blocks = 0;
    fr->premig_pending = 0;
    fr->premig_failed = 0;
    for (int i = 0; i < nk; i++) {
        if (!named[i] || d->s_src_done[d->s_rkey[i].src])
            continue;
        uint16_t src = d->s_rkey[i].src;
        d->s_src_done[src] = 1;
        kvp_backend *sbe = d->route[src];
        size_t mark = kv_buf_mark(&sbe->out);
        write_migrate(&sbe->out, target, t, d->s_rkey, named, src, i, nk);
        if (kvp_backend_send(sbe, mark, premig_reply, r, (uint32_t)f) != KV_OK) {
            /* this source's keys stay there: the command must not run */
            premig_fail(r, f, KVP_ERR_OOM);
            continue;
        }
        fr->premig_pending++;
    }
    if (fr->premig_pending == 0) {
        /* no MIGRATE went out: answered now (premig_fail's message dropped,
         * or an MGET merge would see two errors for this fragment) */
        kv_buf_consume(&fr->reply, kv_buf_len(&fr->reply));
        fr->premig_failed = 0;
        frag_oom(r, f);
        return NULL;
    }
    d->premig_inflight++;
    target->held_for++; /* kept (an owned one not given back) until premig_release */
    r->route_ctx = d;
    kv_buf_mark(&fr->held);
    return &fr->held;
}

/* The connection c's command for table server `server` goes on: c's own
 * when it holds one to that master (after WATCH, its reads and its
 * transaction must follow the WATCH on that connection: on the shared one
 * a read could run before the WATCH and miss a change), else the shared. */
static kvp_backend *merge_backend(kvp_dispatcher *d, const kvp_client *c, int server)
{
    kvp_backend *be = d->route[server];
    kvp_backend *own = c->lent;
    if (own != NULL && be != NULL && strcmp(own->addr, be->addr) == 0)
        return own;
    return be;
}

/* The shared RESP3 connection to table server `server`, made on first use
 * (most proxies never see a RESP3 client). NULL: out of memory. */
static kvp_backend *route3(kvp_dispatcher *d, int server)
{
    if (d->route3 == NULL || d->backends == NULL)
        return d->route[server]; /* no RESP3 set (unit tests): RESP2 */
    kvp_backend *be = d->route3[server];
    if (be == NULL)
        be = d->route3[server] = kvp_backends_get3(d->backends, d->table->servers[server], 1);
    return be;
}

/* A command whose reply is forwarded as it is: for a RESP3 client on a
 * connection that speaks RESP3 (Redis then writes maps, sets, doubles
 * itself), else as merge_backend. Merged replies (split, fan-out) come
 * from RESP2 connections and are written in the client's protocol. */
static kvp_backend *backend_for(kvp_dispatcher *d, const kvp_client *c, int server)
{
    if (c->resp != 3)
        return merge_backend(d, c, server);
    kvp_backend *own = c->lent;
    if (own != NULL && strcmp(own->addr, d->table->servers[server]) == 0)
        return own;
    return route3(d, server);
}

static kvp_backend *pick_backend(kvp_dispatcher *d, kvp_client *c, int server)
{
    kvp_backend *be = backend_for(d, c, server);
    if (be == NULL || !kvp_backend_usable(be)) {
        if (be)
            kvp_client_reply(c, be->unavailable, be->unavailable_len);
        else
            kvp_client_reply_str(c, KVP_ERR_OOM);
        return NULL;
    }
    return be;
}

/* c gets a connection of its own to table server `server` (pin: for a
 * WATCH, kept until EXEC/DISCARD/UNWATCH; else for a blocking command, kept
 * for the next one). One it holds elsewhere is given back first when that
 * is safe; KV_ERR (answered) when it is not -- a WATCH there, or a command
 * still waiting there -- or at owned_connections_max. */
static int own_connection(kvp_dispatcher *d, kvp_client *c, int server, int pin)
{
    kvp_backend *own = c->lent;
    if (own != NULL && strcmp(own->addr, d->table->servers[server]) != 0) {
        if (c->lent_pinned) {
            kvp_client_reply_str(c, pin ? KVP_ERR_CROSSSLOT_WATCH : KVP_ERR_OWNED_BUSY);
            return KV_ERR;
        }
        if (own->ring_len > 0 || own->held_for > 0) {
            kvp_client_reply_str(c, KVP_ERR_OWNED_BUSY);
            return KV_ERR;
        }
        kvp_dispatch_client_gone(d, c); /* idle: given back (RESET) */
    }
    if (kvp_dispatch_lend(d, c, server) == NULL) {
        kvp_client_reply_str(c, KVP_ERR_NO_OWNED);
        return KV_ERR;
    }
    if (pin)
        c->lent_pinned = 1;
    return KV_OK;
}

/* The reply of a blocking command (ctx = its request, route_ctx = the
 * dispatcher): one blocked client fewer (INFO blocked_clients). */
static void blocked_reply(void *ctx, uint32_t tag, const char *p, size_t n)
{
    kvp_req *r = ctx;
    kvp_dispatcher *d = r->route_ctx;
    atomic_fetch_sub_explicit(&d->st->blocked, 1, memory_order_relaxed);
    kvp_req_frag_reply(r, (int)tag, p, n);
}

static void forward_one(kvp_dispatcher *d, kvp_client *c, kvp_backend *be, int argc, const kv_str *argv,
                        const int *keys, int nk, const kvp_rkey *rkeys, uint32_t flags, int blocks)
{
    kvp_req *r = kvp_client_req_new(c, KVP_MERGE_NONE, 1);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    r->strip_key = kvp_req_restorer(flags);
    kvp_req_routed(r);
    size_t mark = kv_buf_mark(&be->out);
    write_routed(&be->out, argc, argv, keys, nk, d->table, rkeys);
    if (!blocks) {
        if (kvp_backend_send(be, mark, kvp_req_on_reply, r, 0) != KV_OK)
            frag_oom(r, 0);
    } else {
        r->route_ctx = d; /* for blocked_reply */
        if (kvp_backend_send_blocking(be, mark, blocked_reply, r, 0) != KV_OK)
            frag_oom(r, 0);
        else
            atomic_fetch_add_explicit(&d->st->blocked, 1, memory_order_relaxed);
    }
    kvp_req_sent(r);
}

/* ------------------------------------------------ keys named by keyword */

static void dispatch_any(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv);

/* A keyed command with no key to route by (kvp_cmd_keys gave nk <= 0).
 * Arguments Redis refuses before touching any data (a bad numkeys, an
 * XREAD without a balanced STREAMS list, ...) go to a master as they are, so
 * the client reads Redis's own error, worded as Redis words it; so do
 * EVAL/FCALL with no keys, which may run on any master. */
static void keys_unrouted(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv,
                          int nk)
{
    if (nk == KVP_KEYS_MALFORMED || nk == 0)
        dispatch_any(d, c, cmd, argc, argv); /* or EVAL/FCALL with no keys: any master */
    else
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
}

/* SORT's BY / GET patterns name keys Redis forms from the sorted elements.
 * They are allowed when every such key falls in the sorted key's bucket
 * (the pattern's {hash tag}, before its first '*', hashes there), and then
 * are rewritten with that bucket's prefix like a key ("w_{t}_*->f" becomes
 * "<bucket>_w_{t}_*->f", so Redis looks up the stored names). They join
 * d->s_keys / d->s_rkey, in argument order, as arguments of key 0's bucket
 * that write_routed prefixes. Migrate-on-access cannot move keys it cannot
 * name: on a migrating bucket the command is answered TRYAGAIN, as Redis
 * Cluster answers multi-key commands on a slot being resharded.
 * KV_OK, or KV_ERR when the client was answered. */
static int route_patterns(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, const kv_str *argv,
                          int *nk)
{
    int *pos = d->s_server; /* unused on the keyed path; sized like s_keys */
    int np = kvp_cmd_patterns(cmd, argc, argv, pos, argc);
    if (np == 0)
        return KV_OK;
    const kvp_table *t = d->table;
    kvp_rkey k0 = d->s_rkey[0];
    for (int i = 0; i < np; i++) {
        const kv_str *a = &argv[pos[i]];
        size_t tl = kvp_cmd_pattern_tag(a->p, a->len);
        if (tl == 0 || !t->hash_tags || kvp_table_bucket(t, a->p, tl) != k0.bucket) {
            const kv_str *opt = &argv[pos[i] - 1];
            int by = opt->len == 2 && strncasecmp(opt->p, "by", 2) == 0;
            kvp_client_reply_err(c, KVP_ERR_SORT_PATTERN_FMT, by ? "BY" : "GET");
            return KV_ERR;
        }
    }
    if (k0.src != KVP_NO_SERVER) {
        kvp_client_reply_str(c, KVP_ERR_SORT_MIGRATING);
        return KV_ERR;
    }
    /* merge two ascending lists from the end; positions are distinct
     * arguments, so nk + np < argc fits the scratch */
    int i = *nk - 1, j = np - 1;
    for (int w = *nk + np - 1; j >= 0; w--) {
        if (i >= 0 && d->s_keys[i] > pos[j]) {
            d->s_keys[w] = d->s_keys[i];
            d->s_rkey[w] = d->s_rkey[i--];
        } else {
            kvp_rkey *rk = &d->s_rkey[w];
            *rk = k0;
            rk->p = argv[pos[j]].p;
            rk->len = argv[pos[j]].len;
            d->s_keys[w] = pos[j--];
        }
    }
    *nk += np;
    return KV_OK;
}

/* COPY ... DB n: the proxy serves db 0 only (SELECT of another is out of
 * range); a copy into another db of the master would be out of every
 * client's reach. 1 when answered. */
static int copy_to_other_db(kvp_client *c, int argc, const kv_str *argv)
{
    for (int i = 3; i + 1 < argc; i++) {
        if (argv[i].len == 2 && strncasecmp(argv[i].p, "db", 2) == 0) {
            long long db;
            if (kv_parse_ll(argv[i + 1].p, argv[i + 1].len, &db) == KV_OK && db != 0) {
                kvp_client_reply_str(c, KVP_ERR_DB_RANGE);
                return 1;
            }
            i++;
        }
    }
    return 0;
}

/* A replica may answer this read: a command flagged read-only that does
 * not block, on a bucket that is not migrating (its keys may be on the
 * destination only), from a client that holds no connection of its own
 * (after WATCH its reads must follow the WATCH on the master). */
static int replica_readable(const kvp_dispatcher *d, const kvp_client *c, const kvp_cmd *cmd, int blocks)
{
    return (cmd->flags & KVP_CF_READONLY) && !blocks && d->s_rkey[0].src == KVP_NO_SERVER && c->lent == NULL &&
           d->reps != NULL;
}

/* A usable replica of table server `server` under rule r: up, its lag
 * measured and within r's bound, its connection ready; the next one in
 * turn. NULL when none is. */
static kvp_backend *replica_for(kvp_dispatcher *d, const kvp_client *c, int server, const kvp_rule *r)
{
    int m = d->srv_reps ? d->srv_reps[server] : -1;
    if (m < 0)
        return NULL;
    const kvp_replica_master *rm = &d->reps->masters[m];
    for (int k = 0; k < rm->n; k++) {
        int i = rm->first + (int)((d->rep_next + (uint32_t)k) % (uint32_t)rm->n);
        int lag = atomic_load_explicit(&d->reps->rep[i].lag_ms, memory_order_relaxed);
        if (lag < 0 || (r->max_replica_lag_ms >= 0 && lag > r->max_replica_lag_ms))
            continue;
        kvp_backend *be = d->rep_be[i];
        if (c->resp == 3 && d->backends != NULL) {
            if (d->rep_be3[i] == NULL)
                d->rep_be3[i] = kvp_backends_get3(d->backends, d->reps->rep[i].addr, 1);
            be = d->rep_be3[i];
        }
        if (be != NULL && kvp_backend_usable(be)) {
            d->rep_next++;
            return be;
        }
    }
    return NULL;
}

static int dispatch_keyed(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    const kvp_table *t = d->table;
    if (scratch(d, argc) != KV_OK) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return KV_OK;
    }
    int nk = kvp_cmd_keys(cmd, argc, argv, d->s_keys, argc);
    if (nk <= 0) {
        keys_unrouted(d, c, cmd, argc, argv, nk);
        return KV_OK;
    }
    if (route_keys(d, c, cmd, t, argv, nk) != KV_OK)
        return KV_OK;
    if (d->s_rkey[0].blocked) {
        c->park_reason = KVP_PARK_BLOCKED; /* about to migrate: wait for the next table */
        return KV_AGAIN;
    }
    for (int i = 1; i < nk; i++) {
        if (d->s_rkey[i].bucket != d->s_rkey[0].bucket) {
            kvp_client_reply_str(c, KVP_ERR_CROSSSLOT);
            return KV_OK;
        }
    }
    if (kvp_cmd_has_patterns(cmd) && route_patterns(d, c, cmd, argc, argv, &nk) != KV_OK)
        return KV_OK;
    if (cmd == d->cmd_copy && copy_to_other_db(c, argc, argv))
        return KV_OK;
    /* a command that may block waits on a connection of c's own */
    int blocks = (cmd->flags & KVP_CF_BLOCKING) && kvp_cmd_blocks(cmd, argc, argv);
    if (blocks && own_connection(d, c, d->s_rkey[0].server, 0) != KV_OK)
        return KV_OK;
    count_cmd(d, cmd);
    kvp_backend *be = NULL;
    if (d->s_rule0 != NULL && d->s_rule0->replica_reads != KVP_REPLICA_NEVER &&
        replica_readable(d, c, cmd, blocks)) {
        be = replica_for(d, c, d->s_rkey[0].server, d->s_rule0);
        if (be == NULL && d->s_rule0->replica_reads == KVP_REPLICA_ONLY) {
            kvp_client_reply_err(c, KVP_ERR_NO_REPLICA_FMT, d->table->servers[d->s_rkey[0].server],
                                 d->s_rule0->match);
            return KV_OK;
        }
    }
    if (be == NULL)
        be = pick_backend(d, c, d->s_rkey[0].server);
    if (be == NULL)
        return KV_OK;
    if (d->s_rkey[0].src == KVP_NO_SERVER) {
        forward_one(d, c, be, argc, argv, d->s_keys, nk, d->s_rkey, cmd->flags, blocks);
        return KV_OK;
    }
    /* the bucket is migrating: MIGRATE the keys to `be` first */
    kvp_req *r = kvp_client_req_new(c, KVP_MERGE_NONE, 1);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return KV_OK;
    }
    r->strip_key = kvp_req_restorer(cmd->flags);
    kvp_req_routed(r);
    if (kvp_req_ensure_frags(r) != KV_OK) {
        frag_oom(r, 0);
    } else {
        memset(d->s_in_frag, 1, (size_t)nk);
        kv_buf *held = premig_start(d, r, 0, be, nk);
        if (held) {
            r->frags[0].held_blocks = (uint8_t)blocks;
            write_routed(held, argc, argv, d->s_keys, nk, t, d->s_rkey);
            if (kv_buf_settle(held, 0) != KV_OK)
                premig_fail(r, 0, KVP_ERR_OOM);
        }
    }
    kvp_req_sent(r);
    return KV_OK;
}

/* Fragment f of a split command: its keys (d->s_server[i] == f), in the
 * client's order, to its backend -- or held behind its MIGRATEs. */
static void split_send(kvp_dispatcher *d, kvp_req *r, int f, const kv_str *argv, int nk, int step)
{
    const kvp_table *t = d->table;
    kvp_backend *be = r->frags[f].be;
    if (be == NULL || !kvp_backend_usable(be)) {
        frag_unavailable(r, f, be);
        return;
    }
    int cnt = 0, mig = 0;
    for (int i = 0; i < nk; i++)
        if (d->s_server[i] == f) {
            cnt++;
            mig |= d->s_rkey[i].src != KVP_NO_SERVER;
        }
    kv_buf *out = &be->out;
    size_t mark = 0;
    if (mig) {
        for (int i = 0; i < nk; i++)
            d->s_in_frag[i] = d->s_server[i] == f;
        if ((out = premig_start(d, r, f, be, nk)) == NULL)
            return; /* answered: a source is down */
    } else {
        mark = kv_buf_mark(out);
    }
    kv_resp_write_count(out, '*', 1 + (long long)cnt * step);
    kv_resp_write_bulk(out, argv[0].p, argv[0].len);
    for (int i = 0; i < nk; i++) {
        if (d->s_server[i] != f)
            continue;
        int ki = d->s_keys[i];
        const kvp_rkey *rk = &d->s_rkey[i];
        kv_resp_write_bulk2(out, t->prefix[rk->bucket], t->prefix_len[rk->bucket], rk->p, rk->len);
        for (int v = 1; v < step; v++)
            kv_resp_write_bulk(out, argv[ki + v].p, argv[ki + v].len);
    }
    if (mig) {
        if (kv_buf_settle(out, 0) != KV_OK)
            premig_fail(r, f, KVP_ERR_OOM); /* answered when its MIGRATEs are */
    } else if (kvp_backend_send(be, mark, kvp_req_on_reply, r, (uint32_t)f) != KV_OK) {
        frag_oom(r, f);
    }
}

/* DEL/UNLINK/EXISTS/TOUCH/MGET/MSET: one fragment per backend, keys in the
 * client's order inside each; merged by merge.c. */
static int dispatch_split(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    const kvp_table *t = d->table;
    if (scratch(d, argc) != KV_OK || scratch_servers(d, t->nservers) != KV_OK) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return KV_OK;
    }
    int nk = kvp_cmd_keys(cmd, argc, argv, d->s_keys, argc);
    int step = cmd->ks[0].keystep > 0 ? cmd->ks[0].keystep : 1; /* MSET: key value */
    if (nk <= 0) {
        kvp_client_reply_err(c, KVP_ERR_ARITY_FMT, cmd->name);
        return KV_OK;
    }
    if (route_keys(d, c, cmd, t, argv, nk) != KV_OK)
        return KV_OK;
    for (int i = 0; i < nk; i++)
        if (d->s_rkey[i].blocked) {
            c->park_reason = KVP_PARK_BLOCKED; /* about to migrate: wait for the next table */
            return KV_AGAIN;
        }
    count_cmd(d, cmd);
    int single = 1, migrating = 0;
    for (int i = 0; i < nk; i++) {
        migrating |= d->s_rkey[i].src != KVP_NO_SERVER;
        single &= d->s_rkey[i].server == d->s_rkey[0].server;
    }
    if (single && !migrating) {
        /* one backend: its reply is already the right merged reply */
        kvp_backend *be = pick_backend(d, c, d->s_rkey[0].server);
        if (be)
            forward_one(d, c, be, argc, argv, d->s_keys, nk, d->s_rkey, 0, 0);
        return KV_OK;
    }
    /* fragment of each key: per server, in order of first appearance */
    int *fsrv = d->s_frag_server;
    int nfrags = 0;
    for (int i = 0; i < nk; i++) {
        int s = d->s_rkey[i].server;
        if (d->s_src_done[s] == 0) {
            fsrv[nfrags] = s;
            d->s_src_done[s] = 1;
            d->s_frag_of[s] = nfrags++;
        }
        d->s_server[i] = d->s_frag_of[s];
    }
    kvp_req *r = kvp_client_req_new(c, cmd->merge, nfrags);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return KV_OK;
    }
    kvp_req_routed(r);
    int map_keys = cmd->merge == KVP_MERGE_MGET && kvp_req_map_keys(r, nk) == KV_OK;
    for (int f = 0; f < nfrags; f++)
        r->frags[f].be = merge_backend(d, c, fsrv[f]);
    if (map_keys) {
        /* element index of each key inside its fragment's reply; the counts
         * run in s_src_done, reset per server */
        for (int f = 0; f < nfrags; f++)
            d->s_frag_of[fsrv[f]] = 0;
        for (int i = 0; i < nk; i++) {
            r->key_frag[i] = (uint16_t)d->s_server[i];
            r->key_pos[i] = (uint32_t)d->s_frag_of[fsrv[d->s_server[i]]]++;
        }
    }
    for (int f = 0; f < nfrags; f++)
        split_send(d, r, f, argv, nk, step);
    kvp_req_sent(r);
    return KV_OK;
}

/* Every master gets the command as it is (FLUSHALL, DBSIZE, RANDOMKEY, INFO). */
static void dispatch_fanout(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    const kvp_table *t = d->table;
    count_cmd(d, cmd);
    kvp_req *r = kvp_client_req_new(c, cmd->merge, t->nservers);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    kvp_req_routed(r);
    static const kv_str info_args[4] = {{"INFO", 4}, {"server", 6}, {"stats", 5}, {"keyspace", 8}};
    if (cmd->merge == KVP_MERGE_INFO)
        r->info_section = kvp_info_sections(argc, argv);
    for (int s = 0; s < t->nservers; s++) {
        kvp_backend *be = merge_backend(d, c, s);
        r->frags[s].be = be;
        if (be == NULL || !kvp_backend_usable(be)) {
            frag_unavailable(r, s, be);
            continue;
        }
        size_t mark = kv_buf_mark(&be->out);
        if (cmd->merge == KVP_MERGE_INFO)
            write_routed(&be->out, 4, info_args, NULL, 0, t, NULL);
        else
            write_routed(&be->out, argc, argv, NULL, 0, t, NULL);
        if (kvp_backend_send(be, mark, kvp_req_on_reply, r, (uint32_t)s) != KV_OK)
            frag_oom(r, s);
    }
    kvp_req_sent(r);
}

static void dispatch_any(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    const kvp_table *t = d->table;
    count_cmd(d, cmd);
    int server = (int)(c->id % (uint64_t)t->nservers);
    kvp_backend *be = pick_backend(d, c, server);
    if (be)
        forward_one(d, c, be, argc, argv, NULL, 0, NULL, 0, 0);
}

/* ------------------------------------------------------------- dispatch */

static int qps_allowed(kvp_dispatcher *d)
{
    int max = kvp_conf_int(&kvp_g.max_qps);
    if (max <= 0)
        return 1;
    int share = max / (kvp_g.io_threads > 0 ? kvp_g.io_threads : 1);
    if (share < 1)
        share = 1;
    uint64_t sec = d->clock->now_ms / 1000;
    if (sec != d->qps_sec) {
        d->qps_sec = sec;
        d->qps_count = 0;
    }
    return ++d->qps_count <= share;
}

/* The entry for a container's subcommand, or NULL when answered. */
static const kvp_cmd *lookup_sub(kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    if (argc < 2) {
        kvp_client_reply_err(c, KVP_ERR_ARITY_FMT, cmd->name);
        return NULL;
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
    }
    return sub;
}

int kvp_dispatch_check(kvp_dispatcher *d, kvp_client *c, const kvp_cmd **cmdp, int argc, kv_str *argv)
{
    KV_UNUSED(d);
    const kvp_cmd *cmd = *cmdp;
    if (cmd == NULL) {
        int n = argv[0].len > 128 ? 128 : (int)argv[0].len;
        kvp_client_reply_err(c, KVP_ERR_UNKNOWN_FMT, n, argv[0].p);
        return KV_ERR;
    }
    if (!c->authed && cmd->local != KVP_LOCAL_AUTH && cmd->local != KVP_LOCAL_HELLO &&
        cmd->local != KVP_LOCAL_QUIT) {
        kvp_client_reply_str(c, KVP_ERR_NOAUTH);
        return KV_ERR;
    }
    if (kvp_cmd_is_container(cmd) && (cmd = lookup_sub(c, cmd, argc, argv)) == NULL)
        return KV_ERR;
    *cmdp = cmd;
    if (!kvp_cmd_arity_ok(cmd, argc)) {
        kvp_client_reply_err(c, KVP_ERR_ARITY_FMT, cmd->name);
        return KV_ERR;
    }
    if (kvp_policy_cls(d->pol, cmd) == KVP_CLASS_UNSUPPORTED) {
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
        return KV_ERR;
    }
    return KV_OK;
}

/* KV_OK when a table is in for routing; KV_AGAIN (c parked) while one is
 * awaited or a table swap waits; KV_ERR when answered (none came in time). */
static int table_ready(kvp_dispatcher *d, kvp_client *c)
{
    if (d->table == NULL) {
        if (!d->table_wait_expired) {
            if (d->no_table_since == 0)
                d->no_table_since = d->clock->now_ms;
            c->park_reason = KVP_PARK_NO_TABLE;
            return KV_AGAIN;
        }
        kvp_client_reply_str(c, KVP_ERR_NO_TABLE);
        return KV_ERR;
    }
    if (d->table_waits) {
        /* a new table waits for migrate-on-access steps to finish: start no
         * new one, so the swap happens within a round trip (the client
         * resumes with the new table) */
        c->park_reason = KVP_PARK_TABLE_SWAP;
        return KV_AGAIN;
    }
    return KV_OK;
}

/* HELLO 2|3 that changes c's protocol. */
static int hello_switches(const kvp_client *c, int argc, const kv_str *argv)
{
    if (argc < 2 || argv[1].len != 1 || (argv[1].p[0] != '2' && argv[1].p[0] != '3'))
        return 0;
    return (argv[1].p[0] == '3') != (c->resp == 3);
}

/* c's own connection speaks its old protocol: an idle one goes back (the
 * next is lent in the new protocol); one that holds a WATCH or a waiting
 * command cannot change, so the HELLO is refused (KV_ERR, answered). */
static int own_before_switch(kvp_dispatcher *d, kvp_client *c)
{
    const kvp_backend *own = c->lent;
    if (c->lent_pinned || own->ring_len > 0 || own->held_for > 0 || kv_buf_len(&own->out) > 0) {
        kvp_client_reply_str(c, KVP_ERR_HELLO_OWNED);
        return KV_ERR;
    }
    kvp_dispatch_client_gone(d, c);
    return KV_OK;
}

int kvp_dispatch_cmd(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    if (kvp_dispatch_check(d, c, &cmd, argc, argv) != KV_OK)
        return KV_OK;
    atomic_store_explicit(&c->last_cmd, cmd->name, memory_order_relaxed); /* CLIENT LIST's cmd= */
    if (cmd->local == KVP_LOCAL_HELLO && c->lent != NULL && hello_switches(c, argc, argv) &&
        own_before_switch(d, c) != KV_OK)
        return KV_OK;
    if (kvp_policy_cls(d->pol, cmd) == KVP_CLASS_LOCAL &&
        kvp_local_run(&d->local, c, cmd, &argc, &argv) == KVP_LOCAL_DONE) {
        /* the proxy's own introspection (CONFIG GET, COMMAND) is not the
         * clients' traffic: redis-benchmark's CONFIG GETs must not show up
         * in stats_info (TEST_GUIDE 5.2: only its SETs) */
        if (cmd->local != KVP_LOCAL_CONFIG && cmd->local != KVP_LOCAL_CMDTAB)
            count_cmd(d, cmd);
        return KV_OK;
    }
    /* else a local command asks a master (COMMAND DOCS): as class ANY */
    if (kvp_policy_cls(d->pol, cmd) == KVP_CLASS_PUBSUB) {
        int rc = d->on_session ? table_ready(d, c) : KV_OK; /* PUBLISH routes by the table */
        if (rc != KV_OK)
            return rc == KV_AGAIN ? KV_AGAIN : KV_OK;
    }
    if (kvp_policy_cls(d->pol, cmd) == KVP_CLASS_SESSION || kvp_policy_cls(d->pol, cmd) == KVP_CLASS_PUBSUB) {
        if (d->on_session == NULL) {
            kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
            return KV_OK;
        }
        return d->on_session(d->session_ctx, c, cmd, argc, argv);
    }
    int rc = table_ready(d, c);
    if (rc != KV_OK)
        return rc == KV_AGAIN ? KV_AGAIN : KV_OK;
    if (!qps_allowed(d)) {
        kvp_client_reply_str(c, KVP_ERR_QPS);
        return KV_OK;
    }
    switch (kvp_policy_cls(d->pol, cmd)) {
    case KVP_CLASS_KEYED:
        return dispatch_keyed(d, c, cmd, argc, argv);
    case KVP_CLASS_SPLIT:
        return dispatch_split(d, c, cmd, argc, argv);
    case KVP_CLASS_FANOUT:
        dispatch_fanout(d, c, cmd, argc, argv);
        break;
    case KVP_CLASS_ANY:
    case KVP_CLASS_LOCAL:
        dispatch_any(d, c, cmd, argc, argv);
        break;
    case KVP_CLASS_KEYSPACE:
        return kvp_dispatch_keyspace(d, c, cmd, argc, argv);
    default:
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
    }
    return KV_OK;
}

int kvp_dispatch(void *ctx, kvp_client *c, int argc, kv_str *argv)
{
    kvp_dispatcher *d = ctx;
    const kvp_cmd *cmd = kvp_cmd_lookup(argv[0].p, argv[0].len);
    /* a RESP3 subscriber may run any command (pushes are apart), as in Redis */
    if (c->session != NULL || (c->subscribed && c->resp != 3))
        return d->on_session(d->session_ctx, c, cmd, argc, argv);
    return kvp_dispatch_cmd(d, c, cmd, argc, argv);
}

/* --------------------------------------------------------- transactions */

static const char TX_MULTI[] = "*1\r\n$5\r\nMULTI\r\n";
static const char TX_EXEC[] = "*1\r\n$4\r\nEXEC\r\n";

int kvp_dispatch_tx_check(kvp_dispatcher *d, kvp_client *c, const kvp_cmd **cmdp, int argc, kv_str *argv,
                          int *bucket)
{
    if (kvp_dispatch_check(d, c, cmdp, argc, argv) != KV_OK)
        return KV_ERR;
    const kvp_cmd *cmd = *cmdp;
    switch (kvp_policy_cls(d->pol, cmd)) {
    case KVP_CLASS_ANY:
    case KVP_CLASS_SESSION: /* UNWATCH: Redis queues it too */
        return KV_OK;
    case KVP_CLASS_LOCAL:
        if (cmd->local == KVP_LOCAL_PING || cmd->local == KVP_LOCAL_ECHO)
            return KV_OK; /* the master answers them the same, inside EXEC's array */
        kvp_client_reply_err(c, KVP_ERR_IN_MULTI_FMT, cmd->name);
        return KV_ERR;
    case KVP_CLASS_KEYED:
    case KVP_CLASS_SPLIT:
        break;
    default: /* FANOUT: a transaction runs on one master */
        kvp_client_reply_err(c, KVP_ERR_IN_MULTI_FMT, cmd->name);
        return KV_ERR;
    }
    int rc = table_ready(d, c);
    if (rc != KV_OK)
        return rc;
    if (scratch(d, argc) != KV_OK) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return KV_ERR;
    }
    int nk = kvp_cmd_keys(cmd, argc, argv, d->s_keys, argc);
    if (nk == 0 && kvp_policy_cls(d->pol, cmd) == KVP_CLASS_KEYED && (cmd->flags & KVP_CF_NO_MANDATORY_KEYS))
        return KV_OK; /* EVAL s 0: wherever the transaction runs */
    if (nk <= 0) {
        /* arguments Redis refuses before touching data: its own error,
         * from a master, answers the queuing (as keys_unrouted does) */
        keys_unrouted(d, c, cmd, argc, argv, nk);
        return KV_ERR;
    }
    if (route_keys(d, c, cmd, d->table, argv, nk) != KV_OK)
        return KV_ERR;
    uint32_t b = d->s_rkey[0].bucket;
    for (int i = 1; i < nk; i++)
        if (d->s_rkey[i].bucket != b) {
            kvp_client_reply_str(c, KVP_ERR_CROSSSLOT);
            return KV_ERR;
        }
    if (*bucket >= 0 && (uint32_t)*bucket != b) {
        kvp_client_reply_str(c, KVP_ERR_CROSSSLOT);
        return KV_ERR;
    }
    if (kvp_cmd_has_patterns(cmd)) {
        /* SORT's BY/GET patterns: checked as outside MULTI; one that names
         * keys would need its arguments rewritten at EXEC: refused */
        int with = nk;
        if (route_patterns(d, c, cmd, argc, argv, &with) != KV_OK)
            return KV_ERR;
        if (with != nk) {
            kvp_client_reply_err(c, KVP_ERR_IN_MULTI_FMT, "sort with BY/GET patterns");
            return KV_ERR;
        }
    }
    const kvp_backend *own = c->lent;
    if (own != NULL && c->lent_pinned && strcmp(own->addr, d->table->servers[d->s_rkey[0].server]) != 0) {
        kvp_client_reply_str(c, KVP_ERR_CROSSSLOT_WATCH);
        return KV_ERR;
    }
    *bucket = (int)b;
    return KV_OK;
}

/* The next queued command of a transaction (at *pos in q): its entry, and
 * argc/argv in d->s_parser. NULL at the end. The queue holds only commands
 * that passed kvp_dispatch_tx_check, so each parses whole and is known. */
static const kvp_cmd *tx_next(kvp_dispatcher *d, kv_buf *q, size_t *pos)
{
    kv_req_parser *ps = &d->s_parser;
    size_t used = 0;
    if (*pos >= kv_buf_len(q) || kv_req_parse(ps, kv_buf_rptr(q) + *pos, kv_buf_len(q) - *pos, &used) != KV_OK)
        return NULL;
    *pos += used;
    const kvp_cmd *cmd = kvp_cmd_lookup(ps->argv[0].p, ps->argv[0].len);
    if (cmd != NULL && kvp_cmd_is_container(cmd))
        cmd = kvp_cmd_lookup_sub(cmd, ps->argv[1].p, ps->argv[1].len);
    return cmd;
}

/* The keys of a queued command (written at keys, at most max). */
static int tx_keys(const kvp_dispatcher *d, const kvp_cmd *cmd, const kv_req_parser *ps, int *keys, int max)
{
    if (kvp_policy_cls(d->pol, cmd) != KVP_CLASS_KEYED && kvp_policy_cls(d->pol, cmd) != KVP_CLASS_SPLIT)
        return 0;
    int nk = kvp_cmd_keys(cmd, ps->argc, ps->argv, keys, max);
    return nk > 0 ? nk : 0;
}

/* MULTI, the queued commands with their keys routed (d->s_keys/s_rkey, in
 * queue order, as tx_route left them), EXEC. */
static void tx_write(kvp_dispatcher *d, kv_buf *out, kv_buf *q, int total)
{
    kv_buf_append(out, TX_MULTI, sizeof(TX_MULTI) - 1);
    size_t pos = 0;
    int off = 0;
    const kvp_cmd *cmd;
    while ((cmd = tx_next(d, q, &pos)) != NULL) {
        int nk = tx_keys(d, cmd, &d->s_parser, d->s_keys + off, total - off);
        write_routed(out, d->s_parser.argc, d->s_parser.argv, d->s_keys + off, nk, d->table, d->s_rkey + off);
        off += nk;
    }
    kv_buf_append(out, TX_EXEC, sizeof(TX_EXEC) - 1);
}

/* Every key of the queue routed with the current table into d->s_rkey
 * (pointing into q, which lives until EXEC is sent). Returns the key count,
 * -1 out of memory, -2 a route function failed; *reply_key: some command names a key in its reply. */
static int tx_route(kvp_dispatcher *d, kv_buf *q, int *total, int *reply_key)
{
    size_t pos = 0;
    int args = 0;
    while (tx_next(d, q, &pos) != NULL)
        args += d->s_parser.argc;
    if (scratch(d, args + 1) != KV_OK)
        return -1;
    *total = args + 1;
    *reply_key = 0;
    int off = 0;
    const kvp_cmd *cmd;
    pos = 0;
    while ((cmd = tx_next(d, q, &pos)) != NULL) {
        const kv_req_parser *ps = &d->s_parser;
        int nk = tx_keys(d, cmd, ps, d->s_keys + off, *total - off);
        for (int i = 0; i < nk; i++) {
            const kv_str *a = &ps->argv[d->s_keys[off + i]];
            const kvp_rule *r = d->pol->nroutes > 0 ? kvp_policy_match(d->pol, a->p, a->len) : NULL;
            char err[256];
            /* it routed when queued: it routes again unless the function
             * is not deterministic -- then the transaction is refused */
            if (route_by_rule(d, cmd, d->table, a, r, &d->s_rkey[off + i], d->s_hex[off + i], err,
                              sizeof(err)) != KV_OK)
                return -2;
        }
        *reply_key |= kvp_req_restorer(cmd->flags) != KVP_RESTORE_NONE;
        off += nk;
    }
    return off;
}

/* EXEC's reply will need keys restored: each command's restorer. */
static void tx_mark_reply_keys(kvp_dispatcher *d, kvp_req *r, kv_buf *q)
{
    size_t pos = 0;
    int i = 0;
    const kvp_cmd *cmd;
    while ((cmd = tx_next(d, q, &pos)) != NULL)
        r->key_frag[i++] = kvp_req_restorer(cmd->flags);
}

/* Where the transaction runs: c's own connection after WATCH, else the
 * shared one of the bucket's master (or of any master, with no key). NULL:
 * answered (nil when the WATCH connection is not the master's any more). */
static kvp_backend *tx_target(kvp_dispatcher *d, kvp_client *c, int nk)
{
    kvp_backend *own = c->lent;
    if (own != NULL && c->lent_pinned) {
        if (own->state == KVP_BE_DOWN ||
            (nk > 0 && strcmp(own->addr, d->table->servers[d->s_rkey[0].server]) != 0)) {
            /* the WATCH cannot hold: as if a key changed */
            kvp_client_reply_str(c, c->resp == 3 ? "_\r\n" : "*-1\r\n");
            return NULL;
        }
        return own;
    }
    int server = nk > 0 ? d->s_rkey[0].server : (int)(c->id % (uint64_t)d->table->nservers);
    return pick_backend(d, c, server);
}

int kvp_dispatch_exec(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *exec, kv_buf *queue, int ncmds)
{
    int rc = table_ready(d, c);
    if (rc != KV_OK)
        return rc == KV_AGAIN ? KV_AGAIN : KV_OK;
    int total = 0, reply_key = 0;
    int nk = tx_route(d, queue, &total, &reply_key);
    if (nk < 0) {
        kvp_client_reply_str(c, nk == -1 ? KVP_ERR_OOM : KVP_ERR_EXECABORT);
        return KV_OK;
    }
    for (int i = 0; i < nk; i++) {
        if (d->s_rkey[i].blocked) {
            c->park_reason = KVP_PARK_BLOCKED; /* about to migrate: wait for the next table */
            return KV_AGAIN;
        }
        if (d->s_rkey[i].bucket != d->s_rkey[0].bucket) {
            kvp_client_reply_str(c, KVP_ERR_EXECABORT); /* tx_check let it in: cannot happen */
            return KV_OK;
        }
    }
    count_cmd(d, exec);
    kvp_backend *be = tx_target(d, c, nk);
    if (be == NULL)
        return KV_OK;
    kvp_req *r = kvp_client_req_new(c, reply_key ? KVP_MERGE_EXEC : KVP_MERGE_NONE, 1);
    if (r == NULL || (reply_key && kvp_req_map_keys(r, ncmds) != KV_OK)) {
        if (r)
            kvp_req_answer(r, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
        else
            kvp_client_reply_str(c, KVP_ERR_OOM);
        return KV_OK;
    }
    if (reply_key)
        tx_mark_reply_keys(d, r, queue);
    kvp_req_routed(r);
    uint32_t group = (uint32_t)ncmds + 2;
    if (nk > 0 && d->s_rkey[0].src != KVP_NO_SERVER) {
        /* the bucket is migrating: its keys move to `be` first, and the
         * whole block waits for them */
        kv_buf *held = NULL;
        if (kvp_req_ensure_frags(r) == KV_OK) {
            memset(d->s_in_frag, 1, (size_t)nk);
            held = premig_start(d, r, 0, be, nk);
        } else {
            frag_oom(r, 0);
        }
        if (held) {
            r->frags[0].held_group = (uint16_t)(group > 65535 ? 0 : group);
            tx_write(d, held, queue, total);
            if (group > 65535 || kv_buf_settle(held, 0) != KV_OK)
                premig_fail(r, 0, KVP_ERR_OOM);
        }
    } else {
        size_t mark = kv_buf_mark(&be->out);
        tx_write(d, &be->out, queue, total);
        if (kvp_backend_send_group(be, mark, group, kvp_req_on_reply, r, 0) != KV_OK)
            frag_oom(r, 0);
    }
    kvp_req_sent(r);
    return KV_OK;
}

int kvp_dispatch_watch(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    int rc = table_ready(d, c);
    if (rc != KV_OK)
        return rc == KV_AGAIN ? KV_AGAIN : KV_OK;
    if (scratch(d, argc) != KV_OK) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return KV_OK;
    }
    int nk = kvp_cmd_keys(cmd, argc, argv, d->s_keys, argc);
    if (route_keys(d, c, cmd, d->table, argv, nk) != KV_OK)
        return KV_OK;
    for (int i = 0; i < nk; i++)
        if (d->s_rkey[i].blocked) {
            c->park_reason = KVP_PARK_BLOCKED;
            return KV_AGAIN;
        }
    for (int i = 1; i < nk; i++)
        if (d->s_rkey[i].bucket != d->s_rkey[0].bucket) {
            kvp_client_reply_str(c, KVP_ERR_CROSSSLOT);
            return KV_OK;
        }
    if (own_connection(d, c, d->s_rkey[0].server, 1) != KV_OK)
        return KV_OK;
    /* routed like any keyed command: backend_for now picks c's own */
    return dispatch_keyed(d, c, cmd, argc, argv);
}

void kvp_dispatch_release(kvp_dispatcher *d, kvp_client *c)
{
    KV_UNUSED(d);
    kvp_backend *own = c->lent;
    if (own == NULL)
        return;
    c->lent = NULL;
    c->lent_pinned = 0;
    own->owner = NULL;
    if (own->held_for == 0)
        kvp_backend_give_back_after(own);
    /* else premig_release gives it back once its held commands are out */
}

void kvp_dispatch_unpin(kvp_dispatcher *d, kvp_client *c)
{
    if (c->lent_pinned)
        kvp_dispatch_release(d, c); /* else kept from a blocking command: stays with c */
}

kvp_backend *kvp_dispatch_lend(kvp_dispatcher *d, kvp_client *c, int server)
{
    if (d->table == NULL || server < 0 || server >= d->table->nservers || d->backends == NULL)
        return NULL;
    const char *addr = d->table->servers[server];
    kvp_backend *be = c->lent;
    if (be)
        return strcmp(be->addr, addr) == 0 ? be : NULL;
    be = kvp_backends_lend(d->backends, addr, c, c->resp == 3);
    c->lent = be;
    return be;
}

void kvp_dispatch_client_gone(void *ctx, kvp_client *c)
{
    (void)ctx;
    kvp_backend *own = c->lent;
    if (own == NULL)
        return;
    c->lent = NULL;
    c->lent_pinned = 0;
    own->owner = NULL;
    if (own->held_for == 0)
        kvp_backend_give_back(own); /* closed if a command still waits on it */
    /* else premig_release gives it back once its held commands are out */
}

void kvp_dispatcher_init(kvp_dispatcher *d, kvp_clock *clock, kvp_wstats *st)
{
    memset(d, 0, sizeof(*d));
    d->clock = clock;
    d->st = st;
    kv_req_parser_init(&d->s_parser);
    kvp_local_init(&d->local);
    d->cmd_copy = kvp_cmd_lookup("copy", 4);
    d->pol = kvp_g.policy;
    if (d->pol == NULL)
        d->pol = d->own_pol = kvp_policy_new();
    d->local.cls = d->pol ? d->pol->cls : NULL;
}

void kvp_dispatch_set_table(kvp_dispatcher *d, const kvp_table *t)
{
    d->table = t;
    const kvp_policy *p = t->policy ? t->policy : kvp_g.policy ? kvp_g.policy : d->own_pol;
    if (p != d->pol) {
        memset(d->rule_qps, 0, sizeof(d->rule_qps)); /* windows are per rule of a policy */
        d->pol = p;
        d->local.cls = p->cls;
    }
}

void kvp_dispatcher_free(kvp_dispatcher *d)
{
    free(d->s_keys);
    free(d->s_server);
    free(d->s_rkey);
    free(d->s_hex);
    free(d->s_in_frag);
    free(d->s_pick);
    free(d->s_src_done);
    free(d->s_frag_of);
    free(d->s_frag_server);
    free(d->srv_reps);
    free(d->rep_be);
    free(d->rep_be3);
    kv_keyset_free(&d->s_seen);
    kv_req_parser_deinit(&d->s_parser);
    kvp_policy_unref(d->own_pol);
    kvp_local_free(&d->local);
    memset(d, 0, sizeof(*d));
}
