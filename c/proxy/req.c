/* req.c -- see req.h. */
#include "req.h"
#include "errors.h"
#include "merge.h"
#include "../core/resp.h"

#include <stdlib.h>
#include <string.h>

#define REQ_POOL_MAX 4096
/* A pooled request keeps up to this many fragments and MGET keys' maps;
 * beyond, their memory goes back with the request (a rare huge MGET must not
 * pin memory in thousands of pooled requests). */
#define REQ_POOL_FRAGS 64
#define REQ_POOL_KEYS 1024
/* Bytes of fragment reply buffers a pooled request keeps in all: enough for
 * the replies of an ordinary MGET, and at most REQ_POOL_MAX times this per
 * worker (8 MB) however big the replies were. */
#define REQ_POOL_REPLY_BYTES 2048
#define FRAG_REPLY_MAX (KV_RESP_MAX_BULK + 64 * 1024 * 1024)

void kvp_req_pool_init(kvp_req_pool *pool, kvp_clock *clock, kvp_wstats *st, kvp_req_done_fn done)
{
    memset(pool, 0, sizeof(*pool));
    pool->clock = clock;
    pool->st = st;
    pool->done = done;
}

static void req_destroy(kvp_req *r);

void kvp_req_pool_free(kvp_req_pool *pool)
{
    while (pool->free) {
        kvp_req *r = pool->free;
        pool->free = r->next;
        req_destroy(r);
    }
    pool->nfree = 0;
}

void kvp_req_pool_table(kvp_req_pool *pool, uint64_t version)
{
    pool->table_version = version;
    pool->inflight_old += pool->inflight_cur;
    pool->inflight_cur = 0;
    if (pool->inflight_old == 0 && pool->on_drained)
        pool->on_drained(pool->drained_ctx);
}

/* ------------------------------------------------------------- storage */

/* Free fragments' and key maps' storage (all of it, or what is too big to
 * keep in a pooled request). */
static void req_drop_storage(kvp_req *r, int all)
{
    if (all || r->frag_pool_cap > REQ_POOL_FRAGS) {
        for (int i = 0; i < r->frag_pool_cap; i++) {
            kv_buf_deinit(&r->frag_pool[i].reply);
            kv_buf_deinit(&r->frag_pool[i].held);
        }
        free(r->frag_pool);
        r->frag_pool = NULL;
        r->frag_pool_cap = 0;
    }
    if (all || r->keys_cap > REQ_POOL_KEYS) {
        free(r->key_frag);
        free(r->key_pos);
        r->key_frag = NULL;
        r->key_pos = NULL;
        r->keys_cap = 0;
    }
}

static void req_destroy(kvp_req *r)
{
    req_drop_storage(r, 1);
    if (r->kf) {
        kvp_table_unref(r->kf->t);
        kv_buf_deinit(&r->kf->pat);
        free(r->kf);
    }
    kv_buf_deinit(&r->reply);
    kv_buf_deinit(&r->first_err);
    kv_buf_deinit(&r->pick);
    free(r);
}

/* -> FREE: back to the pool with the storage worth keeping, or freed. */
static void req_free(kvp_req *r)
{
    kvp_req_pool *pool = r->pool;
    int pooled = pool->nfree < REQ_POOL_MAX;
    if (r->frags) {
        size_t kept = 0;
        for (int i = 0; i < r->nfrags; i++) {
            kvp_frag *f = &r->frags[i];
            kv_buf_consume(&f->reply, kv_buf_len(&f->reply));
            /* keep the first buffers up to the budget, as they are */
            if (pooled && kept + f->reply.cap <= REQ_POOL_REPLY_BYTES)
                kept += f->reply.cap;
            else
                kv_buf_release(&f->reply);
            if (f->holding)
                kv_buf_deinit(&f->held);
            f->holding = 0;
        }
        r->frags = NULL;
    }
    r->state = KVP_REQ_FREE;
    r->owner = NULL;
    if (r->kf && r->kf->t) {
        kvp_table_unref(r->kf->t);
        r->kf->t = NULL;
        kv_buf_consume(&r->kf->pat, kv_buf_len(&r->kf->pat));
        kv_buf_shrink(&r->kf->pat, 256);
    }
    if (!pooled) {
        req_destroy(r);
        return;
    }
    kv_buf_consume(&r->reply, kv_buf_len(&r->reply));
    kv_buf_consume(&r->first_err, kv_buf_len(&r->first_err));
    kv_buf_consume(&r->pick, kv_buf_len(&r->pick));
    req_drop_storage(r, 0);
    kv_buf_shrink(&r->first_err, 256);
    kv_buf_shrink(&r->reply, 4096);
    kv_buf_shrink(&r->pick, 256);
    r->next = pool->free;
    pool->free = r;
    pool->nfree++;
}

/* Give r its r->nfrags fragments, from the storage it keeps while pooled
 * (grown when too small). Their reply buffers are empty: req_free left
 * them so. */
int kvp_req_ensure_frags(kvp_req *r)
{
    if (r->frags)
        return KV_OK;
    int n = r->nfrags;
    if (n > r->frag_pool_cap) {
        kvp_frag *p = realloc(r->frag_pool, (size_t)n * sizeof(*p));
        if (p == NULL)
            return KV_ENOMEM;
        for (int i = r->frag_pool_cap; i < n; i++) {
            memset(&p[i], 0, sizeof(p[i]));
            kv_buf_init(&p[i].reply, FRAG_REPLY_MAX);
        }
        r->frag_pool = p;
        r->frag_pool_cap = n;
    }
    for (int i = 0; i < n; i++) {
        kvp_frag *f = &r->frag_pool[i];
        f->be = f->target = NULL;
        f->holding = 0;
        f->premig_pending = 0;
        f->premig_failed = 0;
    }
    r->frags = r->frag_pool;
    return KV_OK;
}

/* MGET: room for the fragment and position of each of nkeys keys. */
int kvp_req_map_keys(kvp_req *r, int nkeys)
{
    if (nkeys > r->keys_cap) {
        uint16_t *kf = realloc(r->key_frag, sizeof(uint16_t) * (size_t)nkeys);
        if (kf == NULL)
            goto oom;
        r->key_frag = kf;
        uint32_t *kp = realloc(r->key_pos, sizeof(uint32_t) * (size_t)nkeys);
        if (kp == NULL)
            goto oom;
        r->key_pos = kp;
        r->keys_cap = nkeys;
    }
    r->nkeys = nkeys;
    return KV_OK;
oom:
    r->nkeys = -1; /* the merge answers out of memory */
    return KV_ENOMEM;
}

kvp_keyfilter *kvp_req_keyfilter(kvp_req *r, kvp_table *t, const char *pat, size_t plen)
{
    if (r->kf == NULL) {
        r->kf = calloc(1, sizeof(*r->kf));
        if (r->kf == NULL)
            return NULL;
        kv_buf_init(&r->kf->pat, 64 * 1024 * 1024);
    }
    kvp_keyfilter *kf = r->kf;
    if (pat && plen > 0 && kv_buf_append(&kf->pat, pat, plen) != KV_OK)
        return NULL;
    kvp_table_ref(t);
    kf->t = t;
    kf->bucket = -1;
    kf->next = 0;
    kf->at.server = -1;
    /* MATCH "" matches only the empty name; no MATCH, everything */
    kvp_match_init(&kf->match, pat == NULL ? NULL : plen > 0 ? kv_buf_rptr(&kf->pat) : "", plen);
    return kf;
}

/* ---------------------------------------------------------- transitions */

kvp_req *kvp_req_new(kvp_req_pool *pool, void *owner, size_t *held_counter, uint8_t merge, int nfrags)
{
    kvp_req *r = pool->free;
    if (r) {
        pool->free = r->next;
        pool->nfree--;
    } else {
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return NULL;
        kv_buf_init(&r->reply, KVP_OUT_MAX);
        kv_buf_init(&r->first_err, 64 * 1024);
        kv_buf_init(&r->pick, 1024 * 1024);
        r->pool = pool;
    }
    r->next = NULL;
    r->owner = owner;
    r->state = KVP_REQ_SETUP;
    r->merge = merge;
    r->strip_key = 0;
    r->resp3 = 0;
    r->oom = 0;
    r->nfrags = (uint16_t)nfrags;
    r->pending = nfrags;
    r->held_counter = held_counter;
    r->held = 0;
    r->start_us = pool->clock->now_us;
    r->tver = 0;
    r->route_ctx = NULL;
    r->sum = r->sum2 = 0;
    r->nerr = 0;
    r->picks = 0;
    r->nkeys = 0;
    r->info_section = 0;
    memset(r->info_stat, 0, sizeof(r->info_stat));
    if ((nfrags > 1 || merge != KVP_MERGE_NONE) && kvp_req_ensure_frags(r) != KV_OK) {
        req_free(r);
        return NULL;
    }
    return r;
}

void kvp_req_routed(kvp_req *r)
{
    r->tver = r->pool->table_version;
    r->pool->inflight_cur++;
}

static void req_untrack(kvp_req *r)
{
    kvp_req_pool *pool = r->pool;
    if (r->tver == 0)
        return;
    if (r->tver == pool->table_version)
        pool->inflight_cur--;
    else if (--pool->inflight_old == 0 && pool->on_drained)
        pool->on_drained(pool->drained_ctx);
    r->tver = 0;
}

/* Response time of a command that went to a backend. */
static void req_timed(kvp_req *r)
{
    kvp_req_pool *pool = r->pool;
    if (r->tver == 0 || pool->st == NULL)
        return;
    uint64_t rt = pool->clock->now_us - r->start_us;
    kvp_stat_add(&pool->st->rt_sum_us, rt);
    kvp_stat_add(&pool->st->rt_count, 1);
    if (rt > (uint64_t)kvp_conf_int(&kvp_g.slow_cmd_time_ms) * 1000)
        kvp_stat_add(&pool->st->slow, 1);
}

/* n reply bytes are kept in r: they count against its owner's output bound. */
static void req_hold(kvp_req *r, size_t n)
{
    r->held += n;
    if (r->held_counter)
        *r->held_counter += n;
}

static void req_unhold(kvp_req *r)
{
    if (r->held_counter)
        *r->held_counter -= r->held;
    r->held = 0;
}

static void req_copy(kvp_req *r, const char *p, size_t n)
{
    req_hold(r, n);
    if (kv_buf_append(&r->reply, p, n) != KV_OK)
        r->oom = 1;
}

/* WAITING/SETUP -> DONE (or ORPHANED -> FREE): the last fragment is in.
 * p, n: a single fragment's reply passing through, or NULL (r->reply). */
static void req_complete(kvp_req *r, const char *p, size_t n)
{
    req_timed(r);
    req_untrack(r);
    if (r->state == KVP_REQ_ORPHANED) {
        req_free(r); /* nobody reads this reply */
        return;
    }
    if (r->merge != KVP_MERGE_NONE && !r->oom && kvp_merge_finish(r, &r->reply) != KV_OK)
        r->oom = 1;
    r->state = KVP_REQ_DONE;
    if (r->oom) {
        kv_buf_consume(&r->reply, kv_buf_len(&r->reply));
        p = KVP_ERR_OOM;
        n = sizeof(KVP_ERR_OOM) - 1;
    } else if (p == NULL) {
        p = kv_buf_rptr(&r->reply);
        n = kv_buf_len(&r->reply);
    }
    r->pool->done(r, p, n);
}

void kvp_req_sent(kvp_req *r)
{
    if (r->state != KVP_REQ_SETUP)
        return; /* orphaned meanwhile: its last fragment frees it */
    r->state = KVP_REQ_WAITING;
    if (r->pending == 0)
        req_complete(r, NULL, 0);
}

/* The reply carries key names to restore (r->strip_key says which): an
 * array or a RESP3 map, or XREADGROUP's NOGROUP error. */
static int reply_names_keys(const kvp_req *r, const char *p, size_t n)
{
    if (r->strip_key == KVP_RESTORE_NONE || n == 0)
        return 0;
    return p[0] == '*' || p[0] == '%' || (p[0] == '-' && r->strip_key == KVP_RESTORE_STREAMS);
}

void kvp_req_frag_reply(kvp_req *r, int frag, const char *p, size_t n)
{
    r->pending--;
    if (r->merge != KVP_MERGE_NONE) {
        req_hold(r, n);
        kvp_merge_fragment(r, frag, p, n);
    } else if (reply_names_keys(r, p, n)) {
        req_hold(r, n);
        int rc = r->strip_key == KVP_RESTORE_STREAMS ? kvp_reply_strip_stream_keys(p, n, &r->reply)
                                                     : kvp_reply_strip_key0(p, n, &r->reply);
        if (rc != KV_OK)
            r->oom = 1;
    } else if (r->pending == 0 && r->state == KVP_REQ_WAITING) {
        req_complete(r, p, n); /* passes through: no copy here */
        return;
    } else if (r->state != KVP_REQ_ORPHANED) {
        req_copy(r, p, n); /* answered during SETUP: kept until kvp_req_sent */
    }
    if (r->pending == 0 && r->state != KVP_REQ_SETUP)
        req_complete(r, NULL, 0);
}

void kvp_req_on_reply(void *ctx, uint32_t frag, const char *p, size_t n)
{
    kvp_req_frag_reply(ctx, (int)frag, p, n);
}

void kvp_req_answer(kvp_req *r, const char *p, size_t n)
{
    r->merge = KVP_MERGE_NONE;
    r->pending = 0;
    req_copy(r, p, n);
    req_complete(r, NULL, 0);
}

void kvp_req_keep(kvp_req *r, const char *p, size_t n)
{
    /* r->reply already holds it (a merge, a kept reply), or r->oom says it */
    if (n > 0 && !r->oom && p != kv_buf_rptr(&r->reply))
        req_copy(r, p, n);
}

void kvp_req_orphan(kvp_req *r)
{
    req_unhold(r);
    r->held_counter = NULL;
    r->owner = NULL;
    r->next = NULL;
    if (r->state == KVP_REQ_DONE)
        req_free(r);
    else
        r->state = KVP_REQ_ORPHANED;
}

void kvp_req_release(kvp_req *r)
{
    req_unhold(r);
    req_free(r);
}
