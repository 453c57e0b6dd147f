/* sha1.h -- SHA-1 (FIPS 180-4), used to rewrite keys that match a
 * key-rewrite pattern into "<bucket>_<sha1 hex of the key>" (SPEC §4), as the
 * old kvstore did, and HMAC-SHA1 (RFC 2104) for the control ports'
 * challenge-response (lua/kv/handshake.lua). HMAC-SHA1 is still a sound MAC
 * (SHA-1's collisions do not make its HMAC forgeable); the keys are the
 * operators' cluster_secret. */
#ifndef KV_SHA1_H
#define KV_SHA1_H

#include <stddef.h>
#include <stdint.h>

void kv_sha1(const void *data, size_t len, uint8_t out[20]);
/* 40 lowercase hex characters (no terminator written). */
void kv_sha1_hex(const void *data, size_t len, char out[40]);
/* HMAC-SHA1 of msg under key (any lengths). KV_OK, or KV_ENOMEM. */
int kv_hmac_sha1(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[20]);

#endif
