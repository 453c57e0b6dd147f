/* keyset.h -- which byte strings of a batch were seen before: an open-
 * addressing hash set over borrowed strings, linear in the batch.
 *
 * Why: a migrate-on-access MIGRATE must name each key once (Redis answers
 * BUSYKEY for the second copy of a key it has just moved), and an MGET of
 * 50 000 keys must not cost 50 000^2 / 2 comparisons on the worker every
 * other client shares. The set keeps its slots between batches, so a worker
 * allocates only when a batch is bigger than any before. */
#ifndef KV_KEYSET_H
#define KV_KEYSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct kv_keyset_slot {
    const char *p;      /* NULL: empty */
    size_t len;
    uint32_t hash;
} kv_keyset_slot;

typedef struct kv_keyset {
    kv_keyset_slot *slots;
    uint32_t cap;       /* a power of two, at least twice the batch */
} kv_keyset;

/* Empty the set for a batch of up to n strings. KV_OK | KV_ENOMEM. */
int kv_keyset_reset(kv_keyset *s, size_t n);
/* 1 when (p, len) is new (and now in the set), 0 when it was seen. The
 * bytes are borrowed: they must stay put until the next reset. */
int kv_keyset_add(kv_keyset *s, const char *p, size_t len);
void kv_keyset_free(kv_keyset *s);

#endif
