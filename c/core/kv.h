/* kv.h -- types and status codes shared by every part of the C runtime. */
#ifndef KV_H
#define KV_H

#include <stddef.h>
#include <stdint.h>

/* Status codes of every C function that can fail (STYLE.md rule 6). */
#define KV_OK      0
#define KV_ERR    -1
#define KV_AGAIN  -2   /* need more input bytes */
#define KV_ENOMEM -3

#define KV_VERSION "0.1.0"

/* A borrowed byte string: a pointer into someone else's buffer. */
typedef struct kv_str {
    const char *p;
    size_t len;
} kv_str;

#define KV_UNUSED(x) ((void)(x))
#define KV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
