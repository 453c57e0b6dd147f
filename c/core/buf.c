/* buf.c -- see buf.h. */
#include "buf.h"
#include "kv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* First allocation: most buffers (a client's replies, a small request's
 * bytes) stay small, and a connection's memory is what idle clients cost;
 * a big one doubles up from here in a few steps. */
#define KV_BUF_FIRST 512

void kv_buf_init(kv_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max > UINT32_MAX ? UINT32_MAX : (uint32_t)max;
}

void kv_buf_deinit(kv_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int kv_buf_grow(kv_buf *b, size_t n)
{
    if (b->cap - b->wpos >= n)
        return KV_OK;
    size_t len = b->wpos - b->rpos;
    if (b->rpos > 0 && b->cap - len >= n) {
        memmove(b->data, b->data + b->rpos, len);
        b->rpos = 0;
        b->wpos = len;
        return KV_OK;
    }
    if (len + n > b->max) {
        b->failed = 1;
        return KV_ENOMEM;
    }
    size_t cap = b->cap ? b->cap : KV_BUF_FIRST;
    while (cap < len + n)
        cap *= 2;
    if (cap > b->max)
        cap = b->max;
    char *d = malloc(cap);
    if (d == NULL) {
        b->failed = 1;
        return KV_ENOMEM;
    }
    if (len)
        memcpy(d, b->data + b->rpos, len);
    free(b->data);
    b->data = d;
    b->cap = cap;
    b->rpos = 0;
    b->wpos = len;
    return KV_OK;
}

int kv_buf_settle(kv_buf *b, size_t mark)
{
    if (!b->failed)
        return KV_OK;
    b->failed = 0;
    b->wpos = b->rpos + mark;
    if (mark == 0)
        b->rpos = b->wpos = 0;
    return KV_ENOMEM;
}

int kv_buf_append(kv_buf *b, const void *p, size_t n)
{
    if (kv_buf_reserve(b, n) != KV_OK)
        return KV_ENOMEM;
    memcpy(b->data + b->wpos, p, n);
    b->wpos += n;
    return KV_OK;
}

ssize_t kv_buf_read_fd(kv_buf *b, int fd, size_t want)
{
    if (kv_buf_reserve(b, want) != KV_OK) {
        /* Not enough for a full chunk: take whatever room is left. */
        if (b->cap - b->wpos == 0 && kv_buf_reserve(b, 1) != KV_OK)
            return -2;
    }
    size_t room = b->cap - b->wpos;
    ssize_t n = read(fd, b->data + b->wpos, room);
    if (n > 0)
        b->wpos += n;
    return n;
}

ssize_t kv_buf_write_fd(kv_buf *b, int fd)
{
    size_t len = b->wpos - b->rpos;
    if (len == 0)
        return 0;
    ssize_t n = write(fd, b->data + b->rpos, len);
    if (n > 0)
        kv_buf_consume(b, (size_t)n);
    return n;
}

void kv_buf_release(kv_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->rpos = b->wpos = b->cap = 0;
}

void kv_buf_shrink(kv_buf *b, size_t keep)
{
    if (b->cap <= keep || b->wpos - b->rpos > keep / 2)
        return;
    size_t len = b->wpos - b->rpos;
    char *d = malloc(keep);
    if (d == NULL)
        return;
    memcpy(d, b->data + b->rpos, len);
    free(b->data);
    b->data = d;
    b->cap = keep;
    b->rpos = 0;
    b->wpos = len;
}
