/* Hash vectors of SPEC §2 (computed by the old kvstore's own header). */
#include "../../c/core/hash.h"
#include "tap.h"
#include <string.h>

static void vec(const char *key, size_t len, uint32_t want, int bucket1023)
{
    uint32_t h = kv_hash_murmur2_kvstore(key, len);
    TAP_CHECK(h == want, "murmur2 kvstore of %zu-byte key '%s' = %u (got %u)", len, key, want, h);
    if (bucket1023 >= 0)
        TAP_CHECK((int)(h % 1023) == bucket1023, "bucket of '%s' with 1023 buckets = %d", key,
                  bucket1023);
}

int main(void)
{
    vec("foo", 3, 2197288083u, 705);
    vec("hello", 5, 867496620u, 804);
    vec("key:1", 5, 777818676u, 63);
    vec("str_key_1", 9, 1398556042u, 466);
    vec("a", 1, 3914231485u, 241);
    vec("abc", 3, 1834890600u, 972);
    vec("", 0, 3397915750u, 790);
    vec("\xff", 1, 713507990u, -1);
    vec("\xe4\xb8\xad\xe6\x96\x87", 6, 248600121u, -1);
    vec("ab\xe4", 3, 3551178459u, -1);

    TAP_CHECK(kv_hash_crc16("123456789", 9) == 0x31C3, "crc16 check value");

    const char *t;
    size_t tl;
    kv_hash_tag("{user1000}.following", 20, &t, &tl);
    TAP_CHECK(tl == 8 && memcmp(t, "user1000", 8) == 0, "hash tag inside braces");
    kv_hash_tag("foo{}{bar}", 10, &t, &tl);
    TAP_CHECK(tl == 10, "empty first tag hashes the whole key");
    kv_hash_tag("foo{{bar}}zap", 13, &t, &tl);
    TAP_CHECK(tl == 4 && memcmp(t, "{bar", 4) == 0, "tag is up to the first close brace");
    kv_hash_tag("foo{bar", 7, &t, &tl);
    TAP_CHECK(tl == 7, "unclosed brace hashes the whole key");
    kv_hash_tag("{a}", 3, &t, &tl);
    TAP_CHECK(tl == 1 && t[0] == 'a', "one-byte tag");

    /* kv_hash_bucket: the proxy's and the config server's one computation */
    TAP_CHECK(kv_hash_bucket(KV_HASH_MURMUR2_KVSTORE, 1, "foo", 3, 1023) == 705, "bucket of foo, murmur2");
    TAP_CHECK(kv_hash_bucket(KV_HASH_MURMUR2_KVSTORE, 1, "x{foo}y", 7, 1023) == 705,
              "the tag decides with tags on");
    TAP_CHECK(kv_hash_bucket(KV_HASH_MURMUR2_KVSTORE, 0, "x{foo}y", 7, 1023) ==
                  kv_hash_murmur2_kvstore("x{foo}y", 7) % 1023,
              "the whole key with tags off");
    TAP_CHECK(kv_hash_bucket(KV_HASH_CRC16, 1, "123456789", 9, 16384) == 0x31C3 % 16384,
              "crc16 bucket");
    TAP_CHECK(kv_hash_bucket(KV_HASH_CRC16, 1, "{123456789}abc", 14, 1000) == 0x31C3 % 1000,
              "crc16 bucket of a tag");
    return tap_done();
}
