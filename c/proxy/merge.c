/* merge.c -- see merge.h. */
#include "merge.h"
#include "errors.h"
#include "info.h"
#include "../core/resp.h"

#include <stddef.h>
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

/* ------------------------------------------------------- reply writers
 * The shapes of merged replies, in one place: the masters answer merges on
 * RESP2 connections, and these write the client's protocol (r->resp3:
 * nulls, maps and text differ; arrays, integers and strings do not). */

static void write_array_head(kv_buf *out, long long n)
{
    kv_resp_write_count(out, '*', n);
}

static void write_name(kv_buf *out, const char *p, size_t n)
{
    kv_resp_write_bulk(out, p, n);
}

/* SCAN's page: the cursor, then count names already written in names. */
static void write_scan_page(kv_buf *out, uint64_t cursor, long long count, const kv_buf *names)
{
    char num[24];
    int l = snprintf(num, sizeof(num), "%llu", (unsigned long long)cursor);
    write_array_head(out, 2);
    kv_resp_write_bulk(out, num, (size_t)l);
    write_array_head(out, count);
    if (kv_buf_len(names) > 0)
        kv_buf_append(out, kv_buf_rptr(names), kv_buf_len(names));
}

static void write_int(kv_buf *out, long long v)
{
    kv_resp_write_count(out, ':', v);
}

/* Nil in the client's protocol (the masters answer merges in RESP2). */
static void write_nil(const kvp_req *r, kv_buf *out)
{
    if (r->resp3)
        kv_buf_append(out, "_\r\n", 3);
    else
        kv_buf_append(out, "$-1\r\n", 5);
}

/* An element of a master's RESP2 reply, for the client: a nil bulk
 * becomes RESP3's nil. */
static void write_element(const kvp_req *r, kv_buf *out, const char *p, size_t n)
{
    if (r->resp3 && n == 5 && memcmp(p, "$-1\r\n", 5) == 0)
        write_nil(r, out);
    else
        kv_buf_append(out, p, n);
}


/* Text for a person (INFO): a bulk string in RESP2, verbatim in RESP3. */
static void write_text(const kvp_req *r, kv_buf *out, const char *p, size_t n)
{
    if (!r->resp3) {
        kv_resp_write_bulk(out, n ? p : "", n);
        return;
    }
    kv_resp_write_count(out, '=', (long long)n + 4);
    kv_buf_append(out, "txt:", 4);
    if (n)
        kv_buf_append(out, p, n);
    kv_buf_append(out, "\r\n", 2);
}

/* ------------------------------------------------------ reading replies */

/* "*N\r\n" at p[*pos]: N (nil array: 0), *pos moved past it; -1 if not. */
static long long array_head(const char *p, size_t n, size_t *pos)
{
    long long count;
    const char *crlf = *pos < n ? memchr(p + *pos, '\r', n - *pos) : NULL;
    if (crlf == NULL || p[*pos] != '*' || crlf + 1 >= p + n ||
        kv_parse_ll(p + *pos + 1, (size_t)(crlf - p - (ptrdiff_t)*pos - 1), &count) != KV_OK)
        return -1;
    *pos = (size_t)(crlf - p) + 2;
    return count < 0 ? 0 : count;
}

/* The bulk string at p[*pos] (NULL data for a nil one), *pos moved past it.
 * KV_ERR when it is not a whole bulk string. */
static int bulk_at(const char *p, size_t n, size_t *pos, const char **data, size_t *len)
{
    long long l;
    const char *crlf = *pos < n ? memchr(p + *pos, '\r', n - *pos) : NULL;
    if (crlf == NULL || p[*pos] != '$' || crlf + 1 >= p + n ||
        kv_parse_ll(p + *pos + 1, (size_t)(crlf - p - (ptrdiff_t)*pos - 1), &l) != KV_OK)
        return KV_ERR;
    size_t at = (size_t)(crlf - p) + 2;
    if (l < 0) {
        *data = NULL;
        *len = 0;
        *pos = at;
        return KV_OK;
    }
    if ((unsigned long long)l > n - at || n - at - (size_t)l < 2 || p[at + (size_t)l] != '\r')
        return KV_ERR;
    *data = p + at;
    *len = (size_t)l;
    *pos = at + (size_t)l + 2;
    return KV_OK;
}

/* The names of an array of stored names (from master `server`) that the
 * client may see and that match, written into out; how many, or -1 when
 * the bytes are not such an array. */
static long long filter_names(const kvp_keyfilter *kf, int server, const char *p, size_t n, size_t *pos,
                              kv_buf *out)
{
    long long count = array_head(p, n, pos), kept = 0;
    for (long long i = 0; count >= 0 && i < count; i++) {
        const char *s, *name;
        size_t sl, nl;
        if (bulk_at(p, n, pos, &s, &sl) != KV_OK)
            return -1;
        if (s && (name = kvp_key_visible(kf->t, server, s, sl, &nl)) != NULL &&
            kvp_match_name(&kf->match, name, nl)) {
            write_name(out, name, nl);
            kept++;
        }
    }
    return count < 0 ? -1 : kept;
}

/* SCAN's reply: *2 [cursor] [names]. */
static void merge_scan(kvp_req *r, const char *p, size_t n)
{
    kvp_keyfilter *kf = r->kf;
    size_t pos = 0;
    const char *cur;
    size_t cl;
    long long kept = -1;
    if (kf && kf->t && array_head(p, n, &pos) == 2 && bulk_at(p, n, &pos, &cur, &cl) == KV_OK && cur &&
        kvp_scan_cursor_parse(cur, cl, &kf->next) == KV_OK)
        kept = filter_names(kf, kf->at.server, p, n, &pos, &r->frags[0].reply);
    if (kept < 0)
        keep_err(r, KVP_ERR_BAD_REPLY, sizeof(KVP_ERR_BAD_REPLY) - 1);
    else
        r->sum += kept;
    if (r->frags[0].reply.failed)
        r->oom = 1;
}

/* KEYS's reply from fragment f (= table server f). */
static void merge_keys(kvp_req *r, int f, const char *p, size_t n)
{
    size_t pos = 0;
    long long kept = r->kf && r->kf->t ? filter_names(r->kf, f, p, n, &pos, &r->frags[f].reply) : -1;
    if (kept < 0)
        keep_err(r, KVP_ERR_BAD_REPLY, sizeof(KVP_ERR_BAD_REPLY) - 1);
    else
        r->sum += kept;
    if (r->frags[f].reply.failed)
        r->oom = 1;
}

/* SCRIPT EXISTS: r->pick holds one byte per script, ANDed over masters. */
/* PUBSUB CHANNELS: a master's array of names, kept after the others'
 * (elements copied as they are; the count added up). */
static void merge_concat(kvp_req *r, int f, const char *p, size_t n)
{
    long long count;
    const char *crlf = memchr(p, '\r', n);
    if (p[0] != '*' || crlf == NULL || kv_parse_ll(p + 1, (size_t)(crlf - p - 1), &count) != KV_OK ||
        count < 0) {
        keep_err(r, KVP_ERR_BAD_REPLY, sizeof(KVP_ERR_BAD_REPLY) - 1);
        return;
    }
    size_t body = (size_t)(crlf - p) + 2;
    r->sum += count;
    if (n > body)
        keep(r, &r->frags[f].reply, p + body, n - body);
}

/* PUBSUB NUMSUB: name, count pairs in the order asked, the same from every
 * master; the counts go into r->pick (one long long per pair, added up) and
 * the first reply is kept for the names (r->picks: its fragment + 1). */
static void merge_numsub(kvp_req *r, int f, const char *p, size_t n)
{
    long long count;
    const char *crlf = memchr(p, '\r', n);
    if (p[0] != '*' || crlf == NULL || kv_parse_ll(p + 1, (size_t)(crlf - p - 1), &count) != KV_OK ||
        count < 0 || (count & 1)) {
        keep_err(r, KVP_ERR_BAD_REPLY, sizeof(KVP_ERR_BAD_REPLY) - 1);
        return;
    }
    int first = r->picks == 0;
    if (first) {
        r->picks = f + 1;
        keep(r, &r->frags[f].reply, p, n);
    } else if ((long long)(kv_buf_len(&r->pick) / sizeof(long long)) != count / 2) {
        keep_err(r, KVP_ERR_MASTERS_DIFFER, sizeof(KVP_ERR_MASTERS_DIFFER) - 1);
        return;
    }
    size_t pos = (size_t)(crlf - p) + 2;
    kv_reply_scanner s;
    for (long long i = 0; i < count; i++) {
        size_t rl;
        kv_reply_scanner_reset(&s);
        if (kv_reply_scan(&s, p + pos, n - pos, &rl) != KV_OK) {
            keep_err(r, KVP_ERR_BAD_REPLY, sizeof(KVP_ERR_BAD_REPLY) - 1);
            return;
        }
        if (i & 1) {
            long long v = 0;
            if (rl >= 3 && p[pos] == ':')
                kv_parse_ll(p + pos + 1, rl - 3, &v);
            if (first) {
                keep(r, &r->pick, (const char *)&v, sizeof(v));
            } else if (!r->oom) {
                char *at = r->pick.data + r->pick.rpos + (size_t)(i / 2) * sizeof(long long);
                long long sum;
                memcpy(&sum, at, sizeof(sum));
                sum += v;
                memcpy(at, &sum, sizeof(sum));
            }
        }
        pos += rl;
    }
}

/* The names of the first reply, each with its summed count. */
static void finish_numsub(kvp_req *r, kv_buf *out)
{
    if (r->picks == 0) {
        write_array_head(out, 0);
        return;
    }
    const kv_buf *b = &r->frags[r->picks - 1].reply;
    const char *p = kv_buf_rptr(b);
    size_t n = kv_buf_len(b);
    const char *crlf = memchr(p, '\r', n);
    size_t pos = (size_t)(crlf - p) + 2;
    size_t pairs = kv_buf_len(&r->pick) / sizeof(long long);
    const char *sums = kv_buf_rptr(&r->pick);
    write_array_head(out, (long long)pairs * 2); /* a flat array in RESP3 too, as Redis 7.0 */
    kv_reply_scanner s;
    for (size_t i = 0; i < pairs; i++) {
        size_t rl, vl;
        kv_reply_scanner_reset(&s);
        kv_reply_scan(&s, p + pos, n - pos, &rl); /* checked when kept */
        kv_buf_append(out, p + pos, rl);
        pos += rl;
        kv_reply_scanner_reset(&s);
        kv_reply_scan(&s, p + pos, n - pos, &vl);
        pos += vl;
        long long sum;
        memcpy(&sum, sums + i * sizeof(sum), sizeof(sum));
        write_int(out, sum);
    }
}

static void merge_all_ones(kvp_req *r, const char *p, size_t n)
{
    size_t pos = 0;
    long long count = array_head(p, n, &pos);
    if (count < 0 || (r->picks > 0 && (size_t)count != kv_buf_len(&r->pick))) {
        keep_err(r, KVP_ERR_BAD_REPLY, sizeof(KVP_ERR_BAD_REPLY) - 1);
        return;
    }
    for (long long i = 0; i < count; i++) {
        const char *crlf = pos < n ? memchr(p + pos, '\r', n - pos) : NULL;
        if (crlf == NULL || p[pos] != ':') {
            keep_err(r, KVP_ERR_BAD_REPLY, sizeof(KVP_ERR_BAD_REPLY) - 1);
            return;
        }
        char one = crlf - (p + pos) == 2 && p[pos + 1] == '1';
        if (r->picks == 0)
            keep(r, &r->pick, &one, 1);
        else
            kv_buf_rptr(&r->pick)[i] &= one;
        pos = (size_t)(crlf - p) + 2;
    }
    r->picks++;
}

/* SCRIPT LOAD, FUNCTION LOAD: every master's reply must be the same. */
static void merge_same(kvp_req *r, const char *p, size_t n)
{
    if (r->picks++ == 0)
        keep(r, &r->pick, p, n);
    else if (kv_buf_len(&r->pick) != n || memcmp(kv_buf_rptr(&r->pick), p, n) != 0)
        r->sum2 = 1;
}

/* RANDOMKEY: the client's name of a key fragment f's master returned, or
 * NULL when it is none of the namespace's. */
static const char *random_name(kvp_req *r, int f, const char *key, size_t len, size_t *nl)
{
    if (r->kf && r->kf->t)
        return kvp_key_visible(r->kf->t, f, key, len, nl);
    /* no table at hand: at least never strip what is not "<digits>_" */
    size_t i = 0;
    while (i < len && key[i] >= '0' && key[i] <= '9')
        i++;
    if (i == 0 || i >= len || key[i] != '_')
        return NULL;
    *nl = len - i - 1;
    return key + i + 1;
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
        if (r->merge == KVP_MERGE_MGET || r->merge == KVP_MERGE_EXEC)
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
        size_t len, nl;
        const char *key = bulk_payload(p, n, &len), *name;
        if (key == NULL || (name = random_name(r, frag, key, len, &nl)) == NULL)
            break; /* nil, or not the namespace's: that master has none to give */
        /* reservoir sampling over the masters that have a key */
        if (rand_u32() % (uint32_t)(++r->picks) == 0) {
            kv_buf_consume(&r->pick, kv_buf_len(&r->pick));
            keep(r, &r->pick, name, nl);
        }
        break;
    }
    case KVP_MERGE_EXEC:
        keep(r, &r->frags[frag].reply, p, n);
        break;
    case KVP_MERGE_SCAN:
        merge_scan(r, p, n);
        break;
    case KVP_MERGE_KEYS:
        merge_keys(r, frag, p, n);
        break;
    case KVP_MERGE_ALL_ONES:
        merge_all_ones(r, p, n);
        break;
    case KVP_MERGE_CONCAT:
        merge_concat(r, frag, p, n);
        break;
    case KVP_MERGE_NUMSUB:
        merge_numsub(r, frag, p, n);
        break;
    case KVP_MERGE_MAX: {
        long long v;
        if (n >= 3 && p[0] == ':' && kv_parse_ll(p + 1, n - 3, &v) == KV_OK) {
            if (v > r->sum)
                r->sum = v;
        } else {
            keep_err(r, p, n);
        }
        break;
    }
    case KVP_MERGE_SAME:
        merge_same(r, p, n);
        break;
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
            write_element(r, out, kv_buf_rptr(b) + st[0], st[1] - st[0]);
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
        write_text(r, out, kv_buf_rptr(&text), kv_buf_len(&text));
    kv_buf_deinit(&text);
}

static void finish_scan(kvp_req *r, kv_buf *out)
{
    kvp_keyfilter *kf = r->kf;
    uint64_t cursor;
    int rc = kvp_scan_next(kf->t, &kf->at, kf->next, kf->bucket, &cursor);
    if (rc == KV_ENOMEM)
        r->oom = 1;
    else if (rc != KV_OK)
        kv_buf_append(out, KVP_ERR_SCAN_CURSOR, sizeof(KVP_ERR_SCAN_CURSOR) - 1);
    else
        write_scan_page(out, cursor, r->sum, &r->frags[0].reply);
}

static void finish_keys(kvp_req *r, kv_buf *out)
{
    write_array_head(out, r->sum);
    for (int f = 0; f < r->nfrags; f++)
        if (kv_buf_len(&r->frags[f].reply) > 0)
            kv_buf_append(out, kv_buf_rptr(&r->frags[f].reply), kv_buf_len(&r->frags[f].reply));
}

static void finish_all_ones(kvp_req *r, kv_buf *out)
{
    size_t n = kv_buf_len(&r->pick);
    write_array_head(out, (long long)n);
    for (size_t i = 0; i < n; i++)
        write_int(out, kv_buf_rptr(&r->pick)[i]);
}

/* The merged reply, written whole into out, or KV_ENOMEM with nothing of it
 * left in out. */
/* EXEC: the array of the transaction's replies (or nil, or EXECABORT) as
 * the master sent it, but for the elements whose command names keys in its
 * reply (r->key_frag[i]: their enum kvp_restore -- LMPOP, XREAD, ...), whose
 * "<bucket>_" prefixes go. Only those: a value that merely looks prefixed is
 * left alone. */
static void finish_exec(kvp_req *r, kv_buf *out)
{
    const kv_buf *b = &r->frags[0].reply;
    const char *p = kv_buf_rptr(b);
    size_t n = kv_buf_len(b);
    long long count;
    const char *crlf = n > 0 ? memchr(p, '\r', n) : NULL;
    if (n == 0 || p[0] != '*' || crlf == NULL || kv_parse_ll(p + 1, (size_t)(crlf - p - 1), &count) != KV_OK ||
        count != r->nkeys) {
        kv_buf_append(out, p, n); /* nil, an error, or not the array we sent for */
        return;
    }
    size_t pos = (size_t)(crlf - p) + 2;
    kv_buf_append(out, p, pos);
    kv_reply_scanner s;
    kv_reply_scanner_reset(&s);
    for (long long i = 0; i < count; i++) {
        size_t rl;
        if (kv_reply_scan(&s, p + pos, n - pos, &rl) != KV_OK) {
            out->failed = 1; /* the master's reply was checked whole: cannot happen */
            return;
        }
        if (r->key_frag[i] != KVP_RESTORE_NONE && (p[pos] == '*' || p[pos] == '%')) {
            /* a restorer is a group of its own (its mark clears `failed`):
             * stop at an earlier failure, and carry its failure out */
            int rc = out->failed ? KV_ENOMEM
                     : r->key_frag[i] == KVP_RESTORE_STREAMS ? kvp_reply_strip_stream_keys(p + pos, rl, out)
                                                             : kvp_reply_strip_key0(p + pos, rl, out);
            if (rc != KV_OK) {
                out->failed = 1;
                return;
            }
        } else
            kv_buf_append(out, p + pos, rl);
        pos += rl;
    }
}

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
            write_nil(r, out);
        break;
    case KVP_MERGE_INFO:
        finish_info(r, out);
        break;
    case KVP_MERGE_EXEC:
        finish_exec(r, out);
        break;
    case KVP_MERGE_MAX:
    case KVP_MERGE_CONCAT:
    case KVP_MERGE_NUMSUB:
        if (r->nerr)
            kv_buf_append(out, kv_buf_rptr(&r->first_err), kv_buf_len(&r->first_err));
        else if (r->merge == KVP_MERGE_MAX)
            kv_resp_write_count(out, ':', r->sum);
        else if (r->merge == KVP_MERGE_CONCAT)
            finish_keys(r, out);
        else
            finish_numsub(r, out);
        break;
    case KVP_MERGE_SCAN:
    case KVP_MERGE_KEYS:
    case KVP_MERGE_ALL_ONES:
    case KVP_MERGE_SAME:
        if (r->nerr)
            kv_buf_append(out, kv_buf_rptr(&r->first_err), kv_buf_len(&r->first_err));
        else if (r->merge == KVP_MERGE_SCAN)
            finish_scan(r, out);
        else if (r->merge == KVP_MERGE_KEYS)
            finish_keys(r, out);
        else if (r->merge == KVP_MERGE_ALL_ONES)
            finish_all_ones(r, out);
        else if (r->sum2)
            kv_buf_append(out, KVP_ERR_MASTERS_DIFFER, sizeof(KVP_ERR_MASTERS_DIFFER) - 1);
        else
            kv_buf_append(out, kv_buf_rptr(&r->pick), kv_buf_len(&r->pick));
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

/* ------------------------------------------------------------------------
 * Stream key names (XREAD, XREADGROUP)
 * ---------------------------------------------------------------------- */

/* "<type><count>\r\n" at p: its count and length. */
static int resp_header(const char *p, size_t n, long long *count, size_t *hlen)
{
    const char *nl = n > 1 ? memchr(p, '\n', n) : NULL;
    if (nl == NULL || nl - p < 3 || nl[-1] != '\r' ||
        kv_parse_ll(p + 1, (size_t)(nl - 1 - (p + 1)), count) != KV_OK)
        return KV_ERR;
    *hlen = (size_t)(nl + 1 - p);
    return KV_OK;
}

/* Length of the "<bucket>_" prefix the proxy put on a stored name (digits,
 * then '_'), or 0 when name does not start with one. */
static size_t bucket_prefix_len(const char *name, size_t len)
{
    size_t i = 0;
    while (i < len && i < 8 && name[i] >= '0' && name[i] <= '9')
        i++;
    return (i > 0 && i < len && name[i] == '_') ? i + 1 : 0;
}

/* The bulk string at p (a stored key name), written to out without its
 * prefix; *used: its length in p. */
static int copy_key(const char *p, size_t n, kv_buf *out, size_t *used)
{
    long long len;
    size_t hl;
    if (n == 0 || p[0] != '$' || resp_header(p, n, &len, &hl) != KV_OK || len < 0 ||
        hl + (size_t)len + 2 > n)
        return KV_ERR;
    size_t skip = bucket_prefix_len(p + hl, (size_t)len);
    kv_resp_write_bulk(out, p + hl + skip, (size_t)len - skip);
    *used = hl + (size_t)len + 2;
    return KV_OK;
}

/* XREAD's reply is one element per stream: in RESP2 an array of [key,
 * entries] pairs, in RESP3 a map key -> entries. Each key is restored; the
 * entries are copied as they are (their length from the reply scanner).
 * XREADGROUP's NOGROUP error names the key too. Anything else (nil, another
 * error, a shape not understood) goes out as is. */
int kvp_reply_strip_stream_keys(const char *p, size_t n, kv_buf *out)
{
    size_t mark = kv_buf_mark(out);
    long long count;
    size_t at;
    int map = n > 0 && p[0] == '%';
    static const char nogroup[] = "-NOGROUP No such key '";
    if (n > sizeof(nogroup) - 1 && memcmp(p, nogroup, sizeof(nogroup) - 1) == 0) {
        /* XREADGROUP on a missing key or group names the key */
        size_t h = sizeof(nogroup) - 1;
        size_t skip = bucket_prefix_len(p + h, n - h);
        kv_buf_append(out, p, h);
        kv_buf_append(out, p + h + skip, n - h - skip);
        return kv_buf_settle(out, mark);
    }
    if (n == 0 || (p[0] != '*' && !map) || resp_header(p, n, &count, &at) != KV_OK || count <= 0)
        goto as_is;
    kv_buf_append(out, p, at);
    for (long long i = 0; i < count; i++) {
        long long two;
        size_t h2, used, vlen;
        if (!map) { /* the pair's own header */
            if (at >= n || p[at] != '*' || resp_header(p + at, n - at, &two, &h2) != KV_OK || two != 2)
                goto undo;
            kv_buf_append(out, p + at, h2);
            at += h2;
        }
        if (copy_key(p + at, n - at, out, &used) != KV_OK)
            goto undo;
        at += used;
        kv_reply_scanner sc;
        kv_reply_scanner_reset(&sc);
        if (at >= n || kv_reply_scan(&sc, p + at, n - at, &vlen) != KV_OK)
            goto undo;
        kv_buf_append(out, p + at, vlen);
        at += vlen;
    }
    if (at == n)
        return kv_buf_settle(out, mark);
undo:
    /* back to the mark (kv_buf_settle's rollback, done by hand) */
    out->failed = 0;
    out->wpos = out->rpos + mark;
    if (mark == 0)
        out->rpos = out->wpos = 0;
as_is:
    if (n > 0) /* (no reply is empty; an append of nothing to an unallocated buffer is UB) */
        kv_buf_append(out, p, n);
    return kv_buf_settle(out, mark);
}
