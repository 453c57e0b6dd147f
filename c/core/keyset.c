/* keyset.c -- see keyset.h. Linear probing; FNV-1a, since the keys come
 * from clients and only the batch's own duplicates matter (a pathological
 * batch costs its own sender, still bounded by its size squared over the
 * table's load, never another client's keys). */
#include "keyset.h"
#include "kv.h"

#include <stdlib.h>
#include <string.h>

#define KEYSET_MAX_CAP (1u << 30)

static uint32_t fnv1a(const char *p, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}

int kv_keyset_reset(kv_keyset *s, size_t n)
{
    if (n > KEYSET_MAX_CAP / 2)
        return KV_ENOMEM;
    uint32_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    /* grow for a bigger batch; give back what a rare huge one took */
    if (cap > s->cap || (s->cap > 1024 && cap < s->cap / 4)) {
        kv_keyset_slot *slots = malloc(cap * sizeof(*slots));
        if (slots == NULL)
            return KV_ENOMEM;
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    memset(s->slots, 0, s->cap * sizeof(*s->slots));
    return KV_OK;
}

int kv_keyset_add(kv_keyset *s, const char *p, size_t len)
{
    uint32_t h = fnv1a(p, len), mask = s->cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        kv_keyset_slot *e = &s->slots[i];
        if (e->p == NULL) {
            e->p = p == NULL ? "" : p;
            e->len = len;
            e->hash = h;
            return 1;
        }
        if (e->hash == h && e->len == len && memcmp(e->p, p, len) == 0)
            return 0;
    }
}

void kv_keyset_free(kv_keyset *s)
{
    free(s->slots);
    s->slots = NULL;
    s->cap = 0;
}
