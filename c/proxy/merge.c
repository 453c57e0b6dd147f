/* merge.c -- see merge.h. */
#include "merge.h"
#include "errors.h"
#include "info.h"
#include "../core/resp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What a merge keeps of a fragment's reply; if it cannot be kept the whole
 * request answers out of memory (a partial merge would be a wrong answer). */
static void keep(kvp_req *r, kv_buf *b, const char *p, size_t n)
{
    if (kv_buf_append(b, p, n) != KV_OK)
        r->oom = 1;
}

static void keep_err(kvp_req *r, const char *p, size_t n)
{
    if (r->nerr++ == 0) {
        if (n > 0 && p[0] == '-')
            keep(r, &r->first_err, p, n);
        else
            keep(r, &r->first_err, KVP_ERR_BAD_REPLY, sizeof(KVP_ERR_BAD_REPLY) - 1);
    }
}

static uint32_t rand_u32(void)
{
    static __thread uint64_t s;
    if (s == 0)
        s = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)&s;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (uint32_t)(s >> 11);
}

/* The bulk payload of a "$n\r\n...\r\n" reply, or NULL for nil/other. */
static const char *bulk_payload(const char *p, size_t n, size_t *len)
{
    if (n < 4 || p[0] != '$' || p[1] == '-')
        return NULL;
    const char *crlf = memchr(p, '\r', n);
    if (crlf == NULL)
        return NULL;
    const char *data = crlf + 2;
    *len = n - (size_t)(data - p) - 2;
    return data;
}

/* Add up "dbN:keys=..,expires=.." lines of an INFO keyspace section. */
static void info_accumulate(kvp_req *r, const char *text, size_t len)
{
    const char *end = text + len;
    for (const char *line = text; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL)
            nl = end;
        if (line + 3 < nl && line[0] == 'd' && line[1] == 'b') {
            const char *k = memchr(line, ':', (size_t)(nl - line));
            if (k && nl - k > 6 && memcmp(k + 1, "keys=", 5) == 0) {
                r->sum += strtoll(k + 6, NULL, 10);
                /* memmem: the reply is not NUL-terminated */
                const char *e = memmem(k, (size_t)(nl - k), "expires=", 8);
                if (e)
                    r->sum2 += strtoll(e + 8, NULL, 10);
            }
        } else if (line[0] == 'k' || line[0] == 'e') {
            /* keyspace_hits:12, expired_keys:3, ...: the data's counters */
            for (int i = 0; i < KVP_INFO_NSTAT; i++) {
                size_t l = strlen(kvp_info_stat_names[i]);
                if ((size_t)(nl - line) > l && memcmp(line, kvp_info_stat_names[i], l) == 0 && line[l] == ':')
                    r->info_stat[i] += strtoll(line + l + 1, NULL, 10);
            }
        } else if (kv_buf_len(&r->pick) == 0 && nl - line > 14 &&
                   strncmp(line, "redis_version:", 14) == 0) {
            size_t vl = (size_t)(nl - line - 14);
            if (vl > 0 && line[14 + vl - 1] == '\r')
                vl--;
            keep(r, &r->pick, line + 14, vl);
        }
        line = nl + 1;
    }
}

void kvp_merge_fragment(kvp_req *r, int frag, const char *p, size_t n)
{
    if (n > 0 && p[0] == '-') {
        keep_err(r, p, n);
        if (r->merge == KVP_MERGE_MGET)
            keep(r, &r->frags[frag].reply, p, n);
        return;
    }
    switch (r->merge) {
    case KVP_MERGE_SUM: {
        long long v;
        if (n >= 3 && p[0] == ':' && kv_parse_ll(p + 1, n - 3, &v) == KV_OK)
            r->sum += v;
        else
            keep_err(r, p, n);
        break;
    }
    case KVP_MERGE_OK_ALL:
        if (!(n >= 3 && p[0] == '+'))
            keep_err(r, p, n);
        break;
    case KVP_MERGE_MGET:
        if (n > 0 && p[0] == '*')
            keep(r, &r->frags[frag].reply, p, n);
        else {
            keep_err(r, p, n);
            keep(r, &r->frags[frag].reply, KVP_ERR_BAD_REPLY, sizeof(KVP_ERR_BAD_REPLY) - 1);
        }
        break;
    case KVP_MERGE_RANDOMKEY: {
        size_t len;
        const char *key = bulk_payload(p, n, &len);
        if (key == NULL)
            break; /* nil: that master has no key */
        /* reservoir sampling over the masters that have a key */
        if (rand_u32() % (uint32_t)(++r->picks) == 0) {
            const char *us = memchr(key, '_', len);
            size_t skip = us ? (size_t)(us - key) + 1 : 0;
            kv_buf_consume(&r->pick, kv_buf_len(&r->pick));
            keep(r, &r->pick, key + skip, len - skip);
        }
        break;
    }
    case KVP_MERGE_INFO: {
        size_t len;
        const char *text = bulk_payload(p, n, &len);
        if (text)
            info_accumulate(r, text, len);
        break;
    }
    default:
        break;
    }
}

/* Element boundaries of an array reply: starts[i]..starts[i+1]. Returns the
 * element count, or -1 if the bytes are not an array of count elements. */
static long array_elements(const char *p, size_t n, size_t *starts, long max)
{
    long long count;
    const char *crlf = memchr(p, '\r', n);
    if (p[0] != '*' || crlf == NULL || kv_parse_ll(p + 1, (size_t)(crlf - p - 1), &count) != KV_OK ||
        count != max)
        return -1;
    size_t pos = (size_t)(crlf - p) + 2;
    kv_reply_scanner s;
    kv_reply_scanner_reset(&s);
    for (long i = 0; i < count; i++) {
        size_t rl;
        if (kv_reply_scan(&s, p + pos, n - pos, &rl) != KV_OK)
            return -1;
        starts[i] = pos;
        pos += rl;
    }
    starts[count] = pos;
    return count;
}

/* MGET: each key's value, in the client's order, from the array replies of
 * the fragments. One flat index (on the stack for ordinary sizes): per
 * fragment its key count and where its element offsets start, then the
 * offsets, count + 1 per fragment. */
#define MGET_NOT_PARSED ((size_t)-1)
static void finish_mget(kvp_req *r, kv_buf *out)
{
    int nf = r->nfrags;
    if (r->nkeys < 0 || r->key_frag == NULL) {
        kv_buf_append(out, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
        return;
    }
    size_t small[256];
    size_t need = 3 * (size_t)nf + (size_t)r->nkeys;
    size_t *mem = need <= sizeof(small) / sizeof(small[0]) ? small : malloc(need * sizeof(size_t));
    if (mem == NULL) {
        kv_buf_append(out, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
        return;
    }
    size_t *cnt = mem, *base = mem + nf, *starts = mem + 2 * (size_t)nf;
    memset(cnt, 0, sizeof(size_t) * (size_t)nf);
    for (int i = 0; i < r->nkeys; i++)
        cnt[r->key_frag[i]]++;
    size_t off = 0;
    for (int f = 0; f < nf; f++) {
        kv_buf *b = &r->frags[f].reply;
        base[f] = MGET_NOT_PARSED;
        if (kv_buf_len(b) > 0 && kv_buf_rptr(b)[0] != '-' &&
            array_elements(kv_buf_rptr(b), kv_buf_len(b), starts + off, (long)cnt[f]) == (long)cnt[f])
            base[f] = off;
        off += cnt[f] + 1;
    }
    kv_resp_write_count(out, '*', r->nkeys);
    for (int i = 0; i < r->nkeys; i++) {
        int f = r->key_frag[i];
        kv_buf *b = &r->frags[f].reply;
        if (base[f] != MGET_NOT_PARSED) {
            const size_t *st = starts + base[f] + r->key_pos[i];
            kv_buf_append(out, kv_buf_rptr(b) + st[0], st[1] - st[0]);
        } else if (kv_buf_len(b) > 0 && kv_buf_rptr(b)[0] == '-') {
            /* that backend failed: its keys carry its error, in place */
            kv_buf_append(out, kv_buf_rptr(b), kv_buf_len(b));
        } else {
            kv_buf_append(out, KVP_ERR_BAD_REPLY, sizeof(KVP_ERR_BAD_REPLY) - 1);
        }
    }
    if (mem != small)
        free(mem);
}

/* INFO: the proxy's sections (info.c) around the masters' figures, as one
 * bulk string (RESP3 will frame the same text as a verbatim string). */
static void finish_info(kvp_req *r, kv_buf *out)
{
    kvp_info_masters m = {
        .redis_version = kv_buf_len(&r->pick) ? kv_buf_rptr(&r->pick) : NULL,
        .version_len = kv_buf_len(&r->pick),
        .keys = r->sum,
        .expires = r->sum2,
        .nmasters = r->nfrags,
        .nfailed = r->nerr,
        .stat = r->info_stat,
    };
    kv_buf text;
    kv_buf_init(&text, KVP_OUT_MAX);
    if (kvp_info_write(&text, r->info_section, &m) != KV_OK)
        kv_buf_append(out, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
    else
        kv_resp_write_bulk(out, kv_buf_len(&text) ? kv_buf_rptr(&text) : "", kv_buf_len(&text));
    kv_buf_deinit(&text);
}

/* The merged reply, written whole into out, or KV_ENOMEM with nothing of it
 * left in out. */
int kvp_merge_finish(kvp_req *r, kv_buf *out)
{
    size_t mark = kv_buf_mark(out);
    switch (r->merge) {
    case KVP_MERGE_SUM:
        if (r->nerr)
            kv_buf_append(out, kv_buf_rptr(&r->first_err), kv_buf_len(&r->first_err));
        else
            kv_resp_write_count(out, ':', r->sum);
        break;
    case KVP_MERGE_OK_ALL:
        if (r->nerr)
            kv_buf_append(out, kv_buf_rptr(&r->first_err), kv_buf_len(&r->first_err));
        else
            kv_buf_append(out, "+OK\r\n", 5);
        break;
    case KVP_MERGE_MGET:
        finish_mget(r, out);
        break;
    case KVP_MERGE_RANDOMKEY:
        if (r->picks > 0)
            kv_resp_write_bulk(out, kv_buf_rptr(&r->pick), kv_buf_len(&r->pick));
        else if (r->nerr)
            kv_buf_append(out, kv_buf_rptr(&r->first_err), kv_buf_len(&r->first_err));
        else
            kv_buf_append(out, "$-1\r\n", 5);
        break;
    case KVP_MERGE_INFO:
        finish_info(r, out);
        break;
    default:
        break;
    }
    return kv_buf_settle(out, mark);
}

int kvp_reply_strip_key0(const char *p, size_t n, kv_buf *out)
{
    size_t mark = kv_buf_mark(out);
    /* *N\r\n $L\r\n <bucket>_key \r\n ...rest */
    const char *end = p + n;
    const char *l1 = memchr(p, '\n', n);
    if (l1 == NULL || l1 + 1 >= end || l1[1] != '$') {
        kv_buf_append(out, p, n); /* nil array or not a key: as is */
        return kv_buf_settle(out, mark);
    }
    const char *hdr = l1 + 1;
    const char *l2 = memchr(hdr, '\n', (size_t)(end - hdr));
    long long len;
    if (l2 == NULL || kv_parse_ll(hdr + 1, (size_t)(l2 - hdr - 2), &len) != KV_OK || len < 0 ||
        l2 + 1 + len > end) {
        kv_buf_append(out, p, n);
        return kv_buf_settle(out, mark);
    }
    const char *key = l2 + 1;
    const char *us = memchr(key, '_', (size_t)len);
    if (us == NULL) {
        kv_buf_append(out, p, n);
        return kv_buf_settle(out, mark);
    }
    size_t skip = (size_t)(us - key) + 1;
    kv_buf_append(out, p, (size_t)(hdr - p));
    kv_resp_write_count(out, '$', len - (long long)skip);
    kv_buf_append(out, key + skip, (size_t)(end - key - skip));
    return kv_buf_settle(out, mark);
}
