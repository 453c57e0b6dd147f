/* keyspace.c -- see keyspace.h. */
#include "keyspace.h"
#include "../core/hash.h"
#include "../core/kv.h"

#include <stdlib.h>
#include <string.h>

#define POS_MASK ((1ULL << KVP_SCAN_POS_BITS) - 1)
#define TAG_MASK ((1ULL << KVP_SCAN_TAG_BITS) - 1)
#define REDIS_MAX ((1ULL << KVP_SCAN_REDIS_BITS) - 1)
#define NO_POS UINT32_MAX

/* ---------------------------------------------------------------- cursor */

int kvp_scan_cursor_parse(const char *p, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return KV_ERR;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return KV_ERR;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return KV_ERR;
        v = v * 10 + d;
    }
    *out = v;
    return KV_OK;
}

static uint32_t addr_tag(const kvp_table *t, int server)
{
    const char *a = t->servers[server];
    return kv_hash_murmur2_kvstore(a, strlen(a)) & TAG_MASK;
}

/* Each server's position (NO_POS: it holds no bucket walked). bucket >= 0:
 * only that bucket's owner and destination have one. */
static void positions(const kvp_table *t, int bucket, uint32_t *pos)
{
    for (int s = 0; s < t->nservers; s++)
        pos[s] = NO_POS;
    uint32_t from = bucket >= 0 ? (uint32_t)bucket : 0;
    uint32_t to = bucket >= 0 ? (uint32_t)bucket + 1 : t->bucket_count;
    for (uint32_t b = from; b < to; b++) {
        uint16_t o = t->owner[b], d = t->mig_dst[b];
        if (o < t->nservers && pos[o] == NO_POS)
            pos[o] = 2 * b;
        if (d != KVP_NO_SERVER && d < t->nservers && pos[d] == NO_POS)
            pos[d] = 2 * b + 1;
    }
}

/* The server with the lowest position >= from, or -1. */
static int first_from(const kvp_table *t, const uint32_t *pos, uint32_t from)
{
    int best = -1;
    for (int s = 0; s < t->nservers; s++)
        if (pos[s] != NO_POS && pos[s] >= from && (best < 0 || pos[s] < pos[best]))
            best = s;
    return best;
}

/* The server a slot names: owner (even) or migration destination (odd). */
static int slot_server(const kvp_table *t, uint32_t slot)
{
    uint32_t b = slot / 2;
    if (b >= t->bucket_count)
        return -1;
    uint16_t s = slot % 2 ? t->mig_dst[b] : t->owner[b];
    return s != KVP_NO_SERVER && s < t->nservers ? s : -1;
}

int kvp_scan_locate(const kvp_table *t, uint64_t c, int bucket, kvp_scan_at *at)
{
    uint32_t slot = (uint32_t)(c & POS_MASK);
    uint32_t tag = (uint32_t)((c >> KVP_SCAN_POS_BITS) & TAG_MASK);
    uint64_t redis = c >> (KVP_SCAN_POS_BITS + KVP_SCAN_TAG_BITS);
    if (slot / 2 >= t->bucket_count)
        return KV_ERR;
    if (c != 0) {
        int s = slot_server(t, slot);
        if (s >= 0 && addr_tag(t, s) == tag && (bucket < 0 || (uint32_t)bucket == slot / 2)) {
            at->server = s;
            at->pos = slot;
            at->redis = redis;
            return KV_OK;
        }
    }
    /* start, or the master there changed: from this position, cursor 0 */
    uint32_t *pos = malloc(sizeof(uint32_t) * (size_t)(t->nservers ? t->nservers : 1));
    if (pos == NULL)
        return KV_ENOMEM;
    positions(t, bucket, pos);
    at->server = first_from(t, pos, slot);
    at->pos = at->server >= 0 ? pos[at->server] : 0;
    at->redis = 0;
    free(pos);
    return KV_OK;
}

static uint64_t fold(const kvp_table *t, int server, uint32_t pos, uint64_t redis)
{
    return (redis << (KVP_SCAN_POS_BITS + KVP_SCAN_TAG_BITS)) |
           ((uint64_t)addr_tag(t, server) << KVP_SCAN_POS_BITS) | pos;
}

int kvp_scan_next(const kvp_table *t, const kvp_scan_at *at, uint64_t next, int bucket, uint64_t *out)
{
    if (next != 0) {
        if (next > REDIS_MAX)
            return KV_ERR;
        *out = fold(t, at->server, at->pos, next);
        return KV_OK;
    }
    uint32_t *pos = malloc(sizeof(uint32_t) * (size_t)(t->nservers ? t->nservers : 1));
    if (pos == NULL)
        return KV_ENOMEM;
    positions(t, bucket, pos);
    int s = first_from(t, pos, at->pos + 1);
    *out = s >= 0 ? fold(t, s, pos[s], 0) : 0;
    free(pos);
    return KV_OK;
}

/* ---------------------------------------------------------------- MATCH */

int kvp_match_bucket(const kvp_table *t, const char *pat, size_t n)
{
    if (!t->hash_tags || (t->policy && t->policy->nroutes > 0))
        return -1; /* a route function may put a tag's keys anywhere */
    /* the literal prefix, unescaped: every matching key starts with it */
    char lit[256];
    size_t l = 0;
    for (size_t i = 0; i < n && l < sizeof(lit); i++) {
        char ch = pat[i];
        if (ch == '*' || ch == '?' || ch == '[')
            break;
        if (ch == '\\') {
            if (i + 1 == n)
                break;
            ch = pat[++i];
        }
        lit[l++] = ch;
    }
    /* a key's tag is the inside of its first '{' and the first '}' after it */
    const char *open = memchr(lit, '{', l);
    if (open == NULL)
        return -1;
    const char *close = memchr(open + 1, '}', l - (size_t)(open + 1 - lit));
    if (close == NULL || close == open + 1)
        return -1;
    return (int)kvp_table_bucket(t, lit, (size_t)(close + 1 - lit));
}

const char *kvp_match_prefix(const kvp_table *t, int bucket, size_t *len)
{
    if (bucket >= 0) {
        *len = t->prefix_len[bucket];
        return t->prefix[bucket];
    }
    *len = 2;
    return "*_";
}

/* --------------------------------------------------------------- filter */

static int is_hex40(const char *s, size_t n)
{
    if (n != 40)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

const char *kvp_key_visible(const kvp_table *t, int server, const char *s, size_t n, size_t *len)
{
    /* "<bucket>_": decimal without leading zeros, as the prefixes are made */
    size_t i = 0;
    uint32_t b = 0;
    while (i < n && i < 6 && s[i] >= '0' && s[i] <= '9') {
        b = b * 10 + (uint32_t)(s[i] - '0');
        i++;
    }
    if (i == 0 || i >= n || s[i] != '_' || (s[0] == '0' && i > 1) || b >= t->bucket_count)
        return NULL;
    if (t->owner[b] != server && t->mig_dst[b] != server)
        return NULL;
    const char *name = s + i + 1;
    size_t nl = n - i - 1;
    if (t->npatterns > 0 && !is_hex40(name, nl)) {
        for (int p = 0; p < t->npatterns; p++)
            if (kv_glob_exec(&t->globs[p], name, nl))
                return NULL;
    }
    *len = nl;
    return name;
}

void kvp_match_init(kvp_match *m, const char *pat, size_t n)
{
    m->pat = pat;
    m->plen = n;
    m->any = pat == NULL || n > 0;
    for (size_t i = 0; pat && i < n; i++)
        if (pat[i] != '*')
            m->any = 0;
    m->compiled = !m->any && kv_glob_compile(pat, n, &m->glob) == KV_OK;
}

int kvp_match_name(const kvp_match *m, const char *name, size_t n)
{
    if (m->any)
        return 1;
    if (m->compiled)
        return kv_glob_exec(&m->glob, name, n);
    return kv_glob_match(m->pat, m->plen, name, n);
}
