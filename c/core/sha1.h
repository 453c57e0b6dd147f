/* sha1.h -- SHA-1 (FIPS 180-4), used only to rewrite keys that match a
 * key-rewrite pattern into "<bucket>_<sha1 hex of the key>" (SPEC §4), as the
 * old kvstore did. Not for security. */
#ifndef KV_SHA1_H
#define KV_SHA1_H

#include <stddef.h>
#include <stdint.h>

void kv_sha1(const void *data, size_t len, uint8_t out[20]);
/* 40 lowercase hex characters (no terminator written). */
void kv_sha1_hex(const void *data, size_t len, char out[40]);

#endif
