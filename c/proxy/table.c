/* table.c -- see table.h. Each bucket's key prefix is precomputed so the
 * request path never formats a number. */
#include "table.h"
#include "../core/kv.h"
#include "../core/glob.h"
#include "../core/hash.h"
#include "../core/sha1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kvp_table *kvp_table_new(uint32_t bucket_count, int nservers)
{
    kvp_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    atomic_init(&t->refs, 1);
    t->bucket_count = bucket_count;
    t->hash_kind = KVP_HASH_MURMUR2_KVSTORE;
    t->hash_tags = 1;
    t->nservers = nservers;
    t->servers = calloc(nservers, sizeof(*t->servers));
    t->owner = calloc(bucket_count, sizeof(*t->owner));
    t->prefix = calloc(bucket_count, sizeof(*t->prefix));
    t->prefix_len = calloc(bucket_count, 1);
    t->mig_dst = malloc(bucket_count * sizeof(*t->mig_dst));
    t->blocked = calloc(bucket_count, 1);
    if (!t->blocked || !t->servers || !t->owner || !t->prefix || !t->prefix_len || !t->mig_dst) {
        kvp_table_unref(t);
        return NULL;
    }
    for (uint32_t b = 0; b < bucket_count; b++) {
        t->prefix_len[b] = (uint8_t)snprintf(t->prefix[b], sizeof(t->prefix[b]), "%u_", b);
        t->mig_dst[b] = KVP_NO_SERVER;
    }
    return t;
}

void kvp_table_set_policy(kvp_table *t, kvp_policy *p)
{
    kvp_policy_ref(p);
    kvp_policy_unref(t->policy);
    t->policy = p;
    t->hash_kind = p->hash_kind;
    t->hash_tags = p->hash_tags;
}

void kvp_table_ref(kvp_table *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void kvp_table_unref(kvp_table *t)
{
    if (t == NULL || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(t->servers);
    free(t->owner);
    free(t->prefix);
    free(t->prefix_len);
    free(t->mig_dst);
    free(t->blocked);
    for (int i = 0; i < t->npatterns; i++)
        free(t->patterns[i]);
    free(t->patterns);
    free(t->pattern_len);
    free(t->globs);
    kvp_policy_unref(t->policy);
    free(t);
}

uint32_t kvp_table_bucket(const kvp_table *t, const char *key, size_t len)
{
    _Static_assert((int)KVP_HASH_CRC16 == (int)KV_HASH_CRC16 &&
                       (int)KVP_HASH_MURMUR2_KVSTORE == (int)KV_HASH_MURMUR2_KVSTORE,
                   "the proxy's hash kinds are kv_hash_bucket's");
    return kv_hash_bucket(t->hash_kind, t->hash_tags, key, len, t->bucket_count);
}

int kvp_table_set_patterns(kvp_table *t, const char **pats, const size_t *lens, int n)
{
    if (n == 0)
        return KV_OK;
    if (n > KVP_MAX_PATTERNS)
        return KV_ERR;
    t->patterns = calloc((size_t)n, sizeof(char *));
    t->pattern_len = calloc((size_t)n, sizeof(size_t));
    t->globs = calloc((size_t)n, sizeof(kv_glob));
    if (t->patterns == NULL || t->pattern_len == NULL || t->globs == NULL)
        return KV_ENOMEM;
    for (int i = 0; i < n; i++) {
        if (lens[i] > KVP_MAX_PATTERN_LEN || kv_glob_compile(pats[i], lens[i], &t->globs[i]) != KV_OK)
            return KV_ERR;
        t->patterns[i] = malloc(lens[i] + 1);
        if (t->patterns[i] == NULL)
            return KV_ENOMEM;
        memcpy(t->patterns[i], pats[i], lens[i]);
        t->patterns[i][lens[i]] = 0;
        t->pattern_len[i] = lens[i];
        t->npatterns = i + 1;
    }
    return KV_OK;
}

/* out's server and src for its bucket. */
static void route_server(const kvp_table *t, kvp_rkey *out)
{
    out->blocked = t->blocked[out->bucket];
    if (t->mig_dst[out->bucket] != KVP_NO_SERVER) {
        out->server = t->mig_dst[out->bucket];
        out->src = t->owner[out->bucket];
    } else {
        out->server = t->owner[out->bucket];
        out->src = KVP_NO_SERVER;
    }
}

void kvp_table_route_in(const kvp_table *t, const char *key, size_t len, uint32_t bucket, kvp_rkey *out,
                        char hex[40])
{
    out->p = key;
    out->len = len;
    for (int i = 0; i < t->npatterns; i++) {
        if (kv_glob_exec(&t->globs[i], key, len)) {
            kv_sha1_hex(key, len, hex);
            out->p = hex;
            out->len = 40;
            break;
        }
    }
    out->bucket = bucket % t->bucket_count;
    route_server(t, out);
}

void kvp_table_route(const kvp_table *t, const char *key, size_t len, kvp_rkey *out, char hex[40])
{
    for (int i = 0; i < t->npatterns; i++) {
        if (kv_glob_exec(&t->globs[i], key, len)) {
            /* as the old kvstore: the key becomes its SHA-1 hex, and the
             * bucket is taken from that string */
            kv_sha1_hex(key, len, hex);
            out->p = hex;
            out->len = 40;
            out->bucket = kvp_table_bucket(t, hex, 40);
            goto server;
        }
    }
    out->p = key;
    out->len = len;
    out->bucket = kvp_table_bucket(t, key, len);
server:
    route_server(t, out);
}
