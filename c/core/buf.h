/* buf.h -- a linear, growable byte buffer with a read and a write position.
 *
 * Sockets read straight into the free tail; parsers look at [rpos, wpos) as
 * one contiguous span, so they can keep argument pointers into it.
 *
 *   data          rpos              wpos              cap
 *    |  consumed   |  unread bytes   |   free space    |
 *
 * kv_buf_reserve() first slides unread bytes to the front, and grows (up to
 * max) only when that does not make room. */
#ifndef KV_BUF_H
#define KV_BUF_H

#include <stddef.h>
#include <sys/types.h>

#include <stdint.h>

typedef struct kv_buf {
    char *data;
    size_t rpos, wpos, cap;
    uint32_t max;     /* hard bound (at most 4 GiB - 1): reserve fails past it */
    uint32_t failed;  /* a reserve failed since the last kv_buf_mark */
} kv_buf;

void kv_buf_init(kv_buf *b, size_t max);
void kv_buf_deinit(kv_buf *b);
int kv_buf_grow(kv_buf *b, size_t n); /* kv_buf_reserve's slow path */
/* Room for n more bytes: KV_OK or KV_ENOMEM (bound or malloc; latched in
 * b->failed). The common case, room already there, is inline. */
static inline int kv_buf_reserve(kv_buf *b, size_t n)
{
    if (b->cap - b->wpos >= n)
        return 0; /* KV_OK */
    return kv_buf_grow(b, n);
}
int kv_buf_append(kv_buf *b, const void *p, size_t n);
ssize_t kv_buf_read_fd(kv_buf *b, int fd, size_t want); /* read(2) result; -2 if full */
ssize_t kv_buf_write_fd(kv_buf *b, int fd);            /* write(2) of the unread bytes, consumed */

static inline size_t kv_buf_len(const kv_buf *b) { return b->wpos - b->rpos; }
static inline char *kv_buf_rptr(const kv_buf *b) { return b->data + b->rpos; }
static inline void kv_buf_consume(kv_buf *b, size_t n)
{
    b->rpos += n;
    if (b->rpos == b->wpos)
        b->rpos = b->wpos = 0;
}
/* A group of appends that lands whole or not at all (a command for a
 * backend, a reply for a client): mark, append, then kv_buf_settle, which
 * takes every byte since the mark back if any reserve failed in between
 * (KV_ENOMEM) -- so a half-written command can never be sent. */
static inline size_t kv_buf_mark(kv_buf *b)
{
    b->failed = 0;
    return b->wpos - b->rpos;
}
int kv_buf_settle(kv_buf *b, size_t mark);

/* Give memory back after a burst (a big value passed through). */
void kv_buf_shrink(kv_buf *b, size_t keep);
/* Free the storage of an empty buffer (it is allocated again on demand). */
void kv_buf_release(kv_buf *b);

#endif
