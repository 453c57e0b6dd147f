/* fuzz_resp.c -- libFuzzer harness for the RESP request parser and the reply
 * scanner (c/core/resp.c). See README in this directory for how to run it.
 *
 * Input layout:
 *
 *   byte 0        k = byte0 % 8: how many chunk-size bytes follow
 *   bytes 1..k    chunk sizes, used in turn: b < 128 -> b + 1 bytes,
 *                 b >= 128 -> (b - 127) * 64 bytes; k == 0 -> one byte at a time
 *                 (never less than payload / 1024 + 1, so big inputs stay fast)
 *   the rest      the payload, fed to both kv_req_parse and kv_reply_scan
 *
 * Each payload is parsed twice: all at once, and cut into the chunks above,
 * the way TCP reads would cut it. The unread bytes live in a heap block of
 * exactly their size, re-allocated before every call, so the sanitizer sees
 * any read past the bytes handed in and any pointer kept from an earlier
 * call. Checked:
 *   - consumed / reply length is > 0 and <= the bytes handed in;
 *   - every argv[i] lies inside the consumed bytes;
 *   - a protocol error has a "Protocol error: " message;
 *   - both runs give the same commands (argc, bytes of every argument,
 *     inline or not), the same replies, and end the same way (error, or
 *     waiting with the same number of unread bytes);
 *   - every reply found scans again, alone, to the same length. */
#include "../../c/core/resp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAILF(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "fuzz_resp: " __VA_ARGS__);                                                \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

/* ------------------------------------------------------------ chunking */

typedef struct chunker {
    const uint8_t *sizes;
    size_t nsizes, next;
    size_t min; /* payload / 1024 + 1: big inputs are not fed byte by byte */
} chunker;

static size_t chunk_next(chunker *ch, size_t left)
{
    size_t n = 1;
    if (ch->nsizes > 0) {
        uint8_t b = ch->sizes[ch->next++ % ch->nsizes];
        n = b < 128 ? (size_t)b + 1 : (size_t)(b - 127) * 64;
    }
    if (n < ch->min)
        n = ch->min;
    return n < left ? n : left;
}

/* --------------------------------------------------------------- trace */

/* What a run saw, flattened so two runs compare with memcmp. */
typedef struct trace {
    uint8_t *data;
    size_t len, cap;
    size_t items;
    int err;      /* ended on KV_ERR */
    size_t left;  /* unread bytes at the end (when no error) */
} trace;

static void tr_add(trace *t, const void *p, size_t n)
{
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        while (cap < t->len + n)
            cap *= 2;
        t->data = realloc(t->data, cap);
        if (t->data == NULL)
            abort();
        t->cap = cap;
    }
    memcpy(t->data + t->len, p, n);
    t->len += n;
}

static void tr_u64(trace *t, uint64_t v) { tr_add(t, &v, sizeof(v)); }

static int tr_same(const trace *a, const trace *b)
{
    return a->err == b->err && a->items == b->items && a->len == b->len &&
           (a->err || a->left == b->left) && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* The unread input: [off, len) of a heap block of exactly len bytes. */
typedef struct unread {
    char *p;
    size_t off, len;
    unsigned drops;
} unread;

/* Replace the block by a fresh one holding [off + drop, len) of it plus add. */
static void unread_move(unread *u, size_t drop, const uint8_t *add, size_t addlen)
{
    drop += u->off;
    u->off = 0;
    size_t keep = u->len - drop;
    size_t n = keep + addlen;
    char *p = n ? malloc(n) : NULL;
    if (n && p == NULL)
        abort();
    if (keep)
        memcpy(p, u->p + drop, keep);
    if (addlen)
        memcpy(p + keep, add, addlen);
    free(u->p);
    u->p = p;
    u->len = n;
}

/* Drop n bytes from the front. Usually into a fresh block, so a pointer kept
 * from before is caught; on big inputs only now and then (cost). */
static void unread_drop(unread *u, size_t n)
{
    if (u->len - u->off - n <= 4096 || ++u->drops % 64 == 0)
        unread_move(u, n, NULL, 0);
    else
        u->off += n;
}

/* ------------------------------------------------------ request parser */

/* Parse every command now in u; 1 when the run must stop (error). */
static int req_drain(kv_req_parser *p, unread *u, trace *t)
{
    for (;;) {
        size_t consumed = (size_t)-1;
        char *buf = u->p ? u->p + u->off : NULL;
        size_t len = u->len - u->off;
        int rc = kv_req_parse(p, buf, len, &consumed);
        if (rc == KV_AGAIN)
            return 0;
        if (rc == KV_ERR) {
            if (p->err == NULL || strncmp(p->err, "Protocol error: ", 16) != 0)
                FAILF("KV_ERR without a protocol error message");
            t->err = 1;
            return 1;
        }
        if (rc != KV_OK)
            FAILF("kv_req_parse returned %d", rc);
        if (consumed == 0 || consumed > len)
            FAILF("consumed %zu of %zu bytes", consumed, len);
        if (p->argc < 0 || (p->argc > 0 && p->argv == NULL))
            FAILF("argc %d, argv %p", p->argc, (void *)p->argv);
        tr_u64(t, (uint64_t)p->argc);
        tr_u64(t, (uint64_t)p->inline_cmd);
        for (int i = 0; i < p->argc; i++) {
            const char *a = p->argv[i].p;
            size_t n = p->argv[i].len;
            if (a < buf || n > consumed || a > buf + consumed - n)
                FAILF("argv[%d] (%zu bytes at offset %td) outside the %zu consumed bytes", i, n,
                      a - buf, consumed);
            tr_u64(t, (uint64_t)n);
            tr_add(t, a, n);
        }
        t->items++;
        unread_drop(u, consumed);
    }
}

static void req_run(const uint8_t *data, size_t size, chunker *ch, trace *t)
{
    kv_req_parser p;
    kv_req_parser_init(&p);
    unread u = {NULL, 0, 0, 0};
    size_t off = 0;
    while (off < size) {
        size_t n = ch ? chunk_next(ch, size - off) : size - off;
        unread_move(&u, 0, data + off, n);
        off += n;
        if (req_drain(&p, &u, t))
            break;
    }
    t->left = u.len - u.off;
    free(u.p);
    kv_req_parser_deinit(&p);
}

/* -------------------------------------------------------- reply scanner */

static void reply_again(const char *r, size_t n)
{
    /* the reply alone, in a block of its exact size, scans to its length */
    char *copy = malloc(n);
    if (copy == NULL)
        abort();
    memcpy(copy, r, n);
    kv_reply_scanner s;
    kv_reply_scanner_reset(&s);
    size_t rl = 0;
    int rc = kv_reply_scan(&s, copy, n, &rl);
    if (rc != KV_OK || rl != n)
        FAILF("a %zu-byte reply scanned alone gives rc %d, length %zu", n, rc, rl);
    free(copy);
}

static int reply_drain(kv_reply_scanner *s, unread *u, trace *t)
{
    for (;;) {
        size_t rl = (size_t)-1;
        const char *buf = u->p ? u->p + u->off : NULL;
        size_t len = u->len - u->off;
        int rc = kv_reply_scan(s, buf, len, &rl);
        if (rc == KV_AGAIN)
            return 0;
        if (rc == KV_ERR) {
            t->err = 1;
            return 1;
        }
        if (rc != KV_OK)
            FAILF("kv_reply_scan returned %d", rc);
        if (rl == 0 || rl > len)
            FAILF("reply of %zu bytes in %zu", rl, len);
        if (buf[0] == 0 || strchr("+-:$*", buf[0]) == NULL)
            FAILF("reply starts with byte 0x%02x", (unsigned char)buf[0]);
        reply_again(buf, rl);
        tr_u64(t, (uint64_t)rl);
        t->items++;
        unread_drop(u, rl);
    }
}

static void reply_run(const uint8_t *data, size_t size, chunker *ch, trace *t)
{
    kv_reply_scanner s;
    kv_reply_scanner_reset(&s);
    unread u = {NULL, 0, 0, 0};
    size_t off = 0;
    while (off < size) {
        size_t n = ch ? chunk_next(ch, size - off) : size - off;
        unread_move(&u, 0, data + off, n);
        off += n;
        if (reply_drain(&s, &u, t))
            break;
    }
    t->left = u.len - u.off;
    free(u.p);
}

/* ----------------------------------------------------------------- entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t k = data[0] % 8;
    if (size < 1 + k)
        return 0;
    const uint8_t *payload = data + 1 + k;
    size_t plen = size - 1 - k;
    chunker ch = {data + 1, k, 0, plen / 1024 + 1};

    trace whole = {0}, cut = {0};
    req_run(payload, plen, NULL, &whole);
    req_run(payload, plen, &ch, &cut);
    if (!tr_same(&whole, &cut))
        FAILF("requests: whole input gives %zu commands%s (%zu unread), chunked %zu%s (%zu unread)",
              whole.items, whole.err ? " then an error" : "", whole.left, cut.items,
              cut.err ? " then an error" : "", cut.left);
    free(whole.data);
    free(cut.data);

    trace rwhole = {0}, rcut = {0};
    ch.next = 0;
    reply_run(payload, plen, NULL, &rwhole);
    reply_run(payload, plen, &ch, &rcut);
    if (!tr_same(&rwhole, &rcut))
        FAILF("replies: whole input gives %zu replies%s (%zu unread), chunked %zu%s (%zu unread)",
              rwhole.items, rwhole.err ? " then an error" : "", rwhole.left, rcut.items,
              rcut.err ? " then an error" : "", rcut.left);
    free(rwhole.data);
    free(rcut.data);
    return 0;
}
