/* dispatch_keyspace.c -- see dispatch_keyspace.h.
 *
 *   SCAN c [MATCH p] [COUNT n] [TYPE t]
 *     c -> (master, its cursor)            kvp_scan_locate
 *     -> that master: SCAN <its cursor> [MATCH *_p | <b>_p] [COUNT n] [TYPE t]
 *     <- *2 [next] [names]                 merge SCAN: names filtered and
 *                                          stripped, next folded (kvp_scan_next)
 *   KEYS p       -> every master KEYS *_p (or only the masters of p's bucket)
 *   RANDOMKEY    -> every master; a foreign key is asked again, RK_TRIES times
 *
 * COUNT and TYPE go to the master as they are: TYPE filters the stored keys
 * as it would the client's, COUNT stays approximate as in Redis. */
#include "dispatch_keyspace.h"
#include "errors.h"

#include <stdio.h>
#include <strings.h>

/* How many times RANDOMKEY asks a master again after a key that is not the
 * namespace's, before counting that master as having none. */
#define RK_TRIES 16

static int arg_is(const kv_str *a, const char *s)
{
    size_t n = strlen(s);
    return a->len == n && strncasecmp(a->p, s, n) == 0;
}

/* One more command executed for a client (as dispatch.c counts). */
static void count_cmd(kvp_dispatcher *d, const kvp_cmd *cmd)
{
    kvp_stat_add(&d->st->total, 1);
    int id = cmd->parent ? cmd->parent->id : cmd->id;
    if (d->st->cmd)
        kvp_stat_add(&d->st->cmd[id], 1);
}

/* Table server s's backend, or NULL when it cannot take a command now. */
static kvp_backend *usable(kvp_dispatcher *d, int s)
{
    kvp_backend *be = d->route[s];
    return be && kvp_backend_usable(be) ? be : NULL;
}

/* Fragment f cannot be sent: its master's error, or out of memory. */
static void frag_fail(kvp_req *r, int f, const kvp_backend *be)
{
    if (be)
        kvp_req_frag_reply(r, f, be->unavailable, be->unavailable_len);
    else
        kvp_req_frag_reply(r, f, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
}

/* A new request with its key filter (MATCH pattern pat, or none). */
static kvp_req *ks_req(kvp_dispatcher *d, kvp_client *c, uint8_t merge, int nfrags, const kv_str *pat)
{
    kvp_req *r = kvp_client_req_new(c, merge, nfrags);
    if (r == NULL)
        return NULL;
    kvp_req_routed(r);
    if (kvp_req_keyfilter(r, (kvp_table *)d->table, pat ? pat->p : NULL, pat ? pat->len : 0) == NULL)
        r->oom = 1; /* answered out of memory once its fragments are in */
    return r;
}

/* ------------------------------------------------------------------ SCAN */

/* The argument index of the MATCH pattern Redis would use (the last one),
 * or -1. Options come in pairs; at the first that is not one, Redis answers
 * a syntax error, which the master will. */
static int scan_match_arg(int argc, const kv_str *argv, int *end)
{
    int m = -1, i = 2;
    for (; i + 1 < argc; i += 2) {
        if (arg_is(&argv[i], "match"))
            m = i + 1;
        else if (!arg_is(&argv[i], "count") && !arg_is(&argv[i], "type"))
            break;
    }
    *end = i; /* options before this are pairs */
    return m;
}

static void ks_scan(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    const kvp_table *t = d->table;
    uint64_t cursor;
    if (kvp_scan_cursor_parse(argv[1].p, argv[1].len, &cursor) != KV_OK) {
        kvp_client_reply_str(c, KVP_ERR_INVALID_CURSOR);
        return;
    }
    int end, m = scan_match_arg(argc, argv, &end);
    int bucket = m >= 0 ? kvp_match_bucket(t, argv[m].p, argv[m].len) : -1;
    kvp_scan_at at;
    int rc = kvp_scan_locate(t, cursor, bucket, &at);
    if (rc != KV_OK) {
        kvp_client_reply_str(c, rc == KV_ERR ? KVP_ERR_INVALID_CURSOR : KVP_ERR_OOM);
        return;
    }
    count_cmd(d, cmd);
    if (at.server < 0) {
        kvp_client_reply_str(c, "*2\r\n$1\r\n0\r\n*0\r\n"); /* nothing to walk */
        return;
    }
    kvp_req *r = ks_req(d, c, KVP_MERGE_SCAN, 1, m >= 0 ? &argv[m] : NULL);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    if (r->kf) {
        r->kf->at = at;
        r->kf->bucket = bucket;
    }
    kvp_backend *be = usable(d, at.server);
    r->frags[0].be = d->route[at.server];
    if (be == NULL || r->oom) {
        frag_fail(r, 0, r->oom ? NULL : d->route[at.server]);
        kvp_req_sent(r);
        return;
    }
    size_t plen;
    const char *pre = kvp_match_prefix(t, bucket, &plen);
    char num[24];
    int nl = snprintf(num, sizeof(num), "%llu", (unsigned long long)at.redis);
    size_t mark = kv_buf_mark(&be->out);
    kv_resp_write_count(&be->out, '*', argc);
    kv_resp_write_bulk(&be->out, argv[0].p, argv[0].len);
    kv_resp_write_bulk(&be->out, num, (size_t)nl);
    for (int i = 2; i < argc; i++) {
        if (i < end && i % 2 == 1 && arg_is(&argv[i - 1], "match"))
            kv_resp_write_bulk2(&be->out, pre, plen, argv[i].p, argv[i].len);
        else
            kv_resp_write_bulk(&be->out, argv[i].p, argv[i].len);
    }
    if (kvp_backend_send(be, mark, kvp_req_on_reply, r, 0) != KV_OK)
        frag_fail(r, 0, NULL);
    kvp_req_sent(r);
}

/* ------------------------------------------------------------------ KEYS */

static void ks_keys(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    const kvp_table *t = d->table;
    int bucket = kvp_match_bucket(t, argv[1].p, argv[1].len);
    count_cmd(d, cmd);
    kvp_req *r = ks_req(d, c, KVP_MERGE_KEYS, t->nservers, &argv[1]);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    size_t plen;
    const char *pre = kvp_match_prefix(t, bucket, &plen);
    for (int s = 0; s < t->nservers; s++) {
        r->frags[s].be = d->route[s];
        if (bucket >= 0 && t->owner[bucket] != s && t->mig_dst[bucket] != s) {
            kvp_req_frag_reply(r, s, "*0\r\n", 4); /* holds none of p's keys */
            continue;
        }
        kvp_backend *be = usable(d, s);
        if (be == NULL || r->oom) {
            frag_fail(r, s, r->oom ? NULL : d->route[s]);
            continue;
        }
        size_t mark = kv_buf_mark(&be->out);
        kv_resp_write_count(&be->out, '*', 2);
        kv_resp_write_bulk(&be->out, argv[0].p, argv[0].len);
        kv_resp_write_bulk2(&be->out, pre, plen, argv[1].p, argv[1].len);
        if (kvp_backend_send(be, mark, kvp_req_on_reply, r, (uint32_t)s) != KV_OK)
            frag_fail(r, s, NULL);
    }
    kvp_req_sent(r);
}

/* ------------------------------------------------------------- RANDOMKEY */

static int rk_send(kvp_backend *be, kvp_req *r, uint32_t tag);

/* A master's RANDOMKEY reply (tag: fragment = table server, tries << 16). A
 * key that is not the namespace's is asked for again; anything else goes to
 * the merge, which never returns a foreign key. */
static void rk_reply(void *ctx, uint32_t tag, const char *p, size_t n)
{
    kvp_req *r = ctx;
    int f = (int)(tag & 0xffff);
    uint32_t tries = tag >> 16;
    if (tries < RK_TRIES && n > 4 && p[0] == '$' && p[1] != '-' && r->kf && r->kf->t) {
        const char *crlf = memchr(p, '\r', n);
        size_t nl;
        if (crlf && crlf + 4 <= p + n) {
            const char *key = crlf + 2;
            size_t len = (size_t)(p + n - key) - 2;
            kvp_backend *be = r->frags[f].be;
            if (kvp_key_visible(r->kf->t, f, key, len, &nl) == NULL && be && kvp_backend_usable(be) &&
                rk_send(be, r, (uint32_t)f | (tries + 1) << 16) == KV_OK)
                return;
        }
    }
    kvp_req_frag_reply(r, f, p, n);
}

static int rk_send(kvp_backend *be, kvp_req *r, uint32_t tag)
{
    size_t mark = kv_buf_mark(&be->out);
    kv_resp_write_count(&be->out, '*', 1);
    kv_resp_write_bulk(&be->out, "RANDOMKEY", 9);
    return kvp_backend_send(be, mark, rk_reply, r, tag);
}

static void ks_randomkey(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd)
{
    const kvp_table *t = d->table;
    count_cmd(d, cmd);
    kvp_req *r = ks_req(d, c, KVP_MERGE_RANDOMKEY, t->nservers, NULL);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    for (int s = 0; s < t->nservers; s++) {
        r->frags[s].be = d->route[s];
        kvp_backend *be = usable(d, s);
        if (be == NULL || r->oom)
            frag_fail(r, s, r->oom ? NULL : d->route[s]);
        else if (rk_send(be, r, (uint32_t)s) != KV_OK)
            frag_fail(r, s, NULL);
    }
    kvp_req_sent(r);
}

int kvp_dispatch_keyspace(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    switch (cmd->merge) {
    case KVP_MERGE_SCAN:
        ks_scan(d, c, cmd, argc, argv);
        break;
    case KVP_MERGE_KEYS:
        ks_keys(d, c, cmd, argc, argv);
        break;
    case KVP_MERGE_RANDOMKEY:
        ks_randomkey(d, c, cmd);
        break;
    default:
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
    }
    return KV_OK;
}
