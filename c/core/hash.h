/* hash.h -- key hashes the routing policy can choose from (DESIGN §2). */
#ifndef KV_HASH_H
#define KV_HASH_H

#include <stddef.h>
#include <stdint.h>

/* MurmurHash2 as the old kvstore computed it, kept bit for bit so an existing
 * deployment's keys stay where they are (SPEC §2, reference W12): seed 97,
 * 4-byte blocks read little-endian, and the 1-3 tail bytes read as *signed*
 * chars and sign-extended before they are mixed in. */
uint32_t kv_hash_murmur2_kvstore(const char *key, size_t len);

/* CRC16-CCITT (XMODEM) as Redis Cluster uses for slots. */
uint16_t kv_hash_crc16(const char *key, size_t len);

/* The part of a key that is hashed: the inside of the first {...} with a
 * non-empty inside, else the whole key (Redis Cluster hash tags). */
void kv_hash_tag(const char *key, size_t len, const char **out, size_t *outlen);

#endif
