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

/* The hashes a policy names (lua/policy.lua "hash"); the proxy's
 * enum kvp_hash_kind has the same values. */
enum kv_hash_kind { KV_HASH_MURMUR2_KVSTORE = 0, KV_HASH_CRC16 = 1 };

/* The bucket of a key: hash kind of the key (of its {tag} when tags), modulo
 * bucket_count. The one definition the proxy (kvp_table_bucket) and the
 * config server (core.key_bucket, for /kvstore/cs/locate) share, so they
 * cannot disagree on where a key lives. */
uint32_t kv_hash_bucket(int kind, int tags, const char *key, size_t len, uint32_t bucket_count);

#endif
