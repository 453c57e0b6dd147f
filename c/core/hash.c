/* hash.c -- see hash.h. */
#include "hash.h"

#include <string.h>

uint32_t kv_hash_murmur2_kvstore(const char *key, size_t len)
{
    const uint32_t m = 0x5bd1e995;
    const int r = 24;
    uint32_t h = 97u ^ (uint32_t)len;
    const unsigned char *data = (const unsigned char *)key;

    while (len >= 4) {
        uint32_t k = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                     (uint32_t)data[3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
        data += 4;
        len -= 4;
    }
    /* The sign extension below is the kvstore quirk (signed char tails). */
    switch (len) {
    case 3:
        h ^= (uint32_t)(int32_t)(signed char)data[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)(int32_t)(signed char)data[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t)(int32_t)(signed char)data[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

uint16_t kv_hash_crc16(const char *key, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)key[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

void kv_hash_tag(const char *key, size_t len, const char **out, size_t *outlen)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1) {
            *out = open + 1;
            *outlen = (size_t)(close - open - 1);
            return;
        }
    }
    *out = key;
    *outlen = len;
}

uint32_t kv_hash_bucket(int kind, int tags, const char *key, size_t len, uint32_t bucket_count)
{
    const char *h = key;
    size_t hl = len;
    if (tags)
        kv_hash_tag(key, len, &h, &hl);
    uint32_t v = kind == KV_HASH_CRC16 ? kv_hash_crc16(h, hl) : kv_hash_murmur2_kvstore(h, hl);
    return v % bucket_count;
}
