/* table.c -- the routing snapshot: bucket -> master, plus each bucket's key
 * prefix precomputed so the request path never formats a number. */
#include "dp.h"
#include "../core/hash.h"

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
    t->nservers = nservers;
    t->servers = calloc(nservers, sizeof(*t->servers));
    t->owner = calloc(bucket_count, sizeof(*t->owner));
    t->prefix = calloc(bucket_count, sizeof(*t->prefix));
    t->prefix_len = calloc(bucket_count, 1);
    if (!t->servers || !t->owner || !t->prefix || !t->prefix_len) {
        kvp_table_unref(t);
        return NULL;
    }
    for (uint32_t b = 0; b < bucket_count; b++)
        t->prefix_len[b] = (uint8_t)snprintf(t->prefix[b], sizeof(t->prefix[b]), "%u_", b);
    return t;
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
    free(t);
}

uint32_t kvp_table_bucket(const kvp_table *t, const char *key, size_t len)
{
    const char *h = key;
    size_t hl = len;
    if (kvp_g.hash_tags)
        kv_hash_tag(key, len, &h, &hl);
    uint32_t v = kvp_g.hash_kind == KVP_HASH_CRC16 ? kv_hash_crc16(h, hl)
                                                   : kv_hash_murmur2_kvstore(h, hl);
    return v % t->bucket_count;
}
