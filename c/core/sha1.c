/* sha1.c -- see sha1.h. Written from the FIPS 180-4 description. */
#include "sha1.h"
#include "kv.h"

#include <stdlib.h>

#include <string.h>

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void kv_sha1(const void *data, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    const uint8_t *p = data;
    size_t left = len;
    while (left >= 64) {
        block(h, p);
        p += 64;
        left -= 64;
    }
    /* padding: 0x80, zeros, then the bit length big-endian in the last 8 bytes */
    uint8_t tail[128];
    memset(tail, 0, sizeof(tail));
    memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t n = left + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[n - 1 - i] = (uint8_t)(bits >> (8 * i));
    block(h, tail);
    if (n == 128)
        block(h, tail + 64);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

void kv_sha1_hex(const void *data, size_t len, char out[40])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[20];
    kv_sha1(data, len, d);
    for (int i = 0; i < 20; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
}

/* RFC 2104: H((K ^ opad) || H((K ^ ipad) || msg)), K the key padded to one
 * 64-byte block (hashed first when longer). */
int kv_hmac_sha1(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[20])
{
    uint8_t k[64], inner[20], outer[64 + 20];
    memset(k, 0, sizeof(k));
    if (keylen > 64)
        kv_sha1(key, keylen, k);
    else if (keylen > 0)
        memcpy(k, key, keylen);
    uint8_t *buf = malloc(64 + msglen);
    if (buf == NULL)
        return KV_ENOMEM;
    for (int i = 0; i < 64; i++)
        buf[i] = k[i] ^ 0x36;
    if (msglen > 0)
        memcpy(buf + 64, msg, msglen);
    kv_sha1(buf, 64 + msglen, inner);
    free(buf);
    for (int i = 0; i < 64; i++)
        outer[i] = k[i] ^ 0x5c;
    memcpy(outer + 64, inner, 20);
    kv_sha1(outer, sizeof(outer), out);
    return KV_OK;
}
