/* fuzz_reply.c -- libFuzzer target "reply": the reply scanner
 * (kv_reply_scan, c/core/resp.c) against hiredis's reader as the oracle.
 *
 * The proxy frames every backend reply with kv_reply_scan and forwards the
 * bytes unparsed: a reply it cuts at another place than Redis's own clients
 * would shift every later reply of that connection. So the input is scanned
 * reply by reply, and fed to a redisReader (no reply objects built) as well;
 * while both accept the bytes they must agree on every boundary:
 *   - kv_reply_scan KV_OK with length L  <=> hiredis gives a reply that
 *     consumed exactly L bytes;
 *   - kv_reply_scan KV_AGAIN             <=> hiredis wants more bytes too.
 * Where either calls the bytes bad the comparison stops (their limits
 * differ: hiredis reads 7 nested arrays, the scanner 64; hiredis checks
 * less of an integer line). The scanner gets its bytes in a heap block of
 * exactly their size, so ASan sees any read past them. */
#include "../../c/core/kv.h"
#include "../../c/core/resp.h"

#include <hiredis/read.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAILF(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "fuzz_reply: " __VA_ARGS__);                                               \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

/* hiredis: 1 a reply, 0 wants more, -1 bad bytes; *used = bytes consumed. */
static int hi_next(redisReader *r, size_t fed, size_t *used)
{
    void *reply = NULL;
    if (redisReaderGetReply(r, &reply) != REDIS_OK)
        return -1;
    *used = fed - (r->len - r->pos);
    /* no create functions: a reply is a type tag, nothing to free */
    return reply != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20)
        return 0;
    redisReader *r = redisReaderCreateWithFunctions(NULL);
    if (r == NULL)
        return 0;
    r->maxbuf = 0;
    if (size > 0 && redisReaderFeed(r, (const char *)data, size) != REDIS_OK)
        FAILF("redisReaderFeed failed");
    size_t off = 0, hi_used = 0;
    for (;;) {
        size_t left = size - off;
        char *copy = malloc(left ? left : 1);
        if (copy == NULL)
            break;
        memcpy(copy, data + off, left);
        kv_reply_scanner s;
        kv_reply_scanner_reset(&s);
        size_t len = 0;
        int rc = left ? kv_reply_scan(&s, copy, left, &len) : KV_AGAIN;
        free(copy);
        size_t used = 0;
        int hi = hi_next(r, size, &used);
        if (rc == KV_ERR || hi < 0)
            break;
        if (rc == KV_AGAIN) {
            if (hi == 1)
                FAILF("at byte %zu: the scanner wants more, hiredis read a %zu-byte reply", off,
                      used - hi_used);
            break;
        }
        if (len == 0 || len > left)
            FAILF("at byte %zu: reply length %zu of %zu bytes", off, len, left);
        if (hi == 0)
            FAILF("at byte %zu: the scanner read a %zu-byte reply, hiredis wants more", off, len);
        if (used - hi_used != len)
            FAILF("at byte %zu: the scanner read %zu bytes, hiredis %zu", off, len, used - hi_used);
        off += len;
        hi_used = used;
    }
    redisReaderFree(r);
    return 0;
}
