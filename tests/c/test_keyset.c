/* test_keyset.c -- c/core/keyset.c: repeats are found however many, with
 * colliding hashes, across resets, and a huge batch's slots are given back.
 *
 * Why: the migrate-on-access MIGRATE names each key once through this set;
 * a repeat it missed makes Redis answer BUSYKEY, a key it wrongly took for a
 * repeat would stay on the source while its command runs on the target. */
#include "../../c/core/keyset.h"
#include "../../c/core/kv.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    kv_keyset s = {0};
    TAP_CHECK(kv_keyset_reset(&s, 3) == KV_OK, "reset for 3");
    TAP_CHECK(kv_keyset_add(&s, "a", 1) == 1, "a is new");
    TAP_CHECK(kv_keyset_add(&s, "b", 1) == 1, "b is new");
    TAP_CHECK(kv_keyset_add(&s, "a", 1) == 0, "a again is a repeat");
    TAP_CHECK(kv_keyset_add(&s, "ab", 1) == 0, "the first byte of ab (a) is a repeat: lengths count");
    TAP_CHECK(kv_keyset_add(&s, "", 0) == 1 && kv_keyset_add(&s, "", 0) == 0, "the empty key, once");
    TAP_CHECK(kv_keyset_reset(&s, 3) == KV_OK && kv_keyset_add(&s, "a", 1) == 1, "a reset forgets");

    /* 100 000 distinct keys, each added twice: every second add a repeat */
    enum { N = 100000 };
    static char keys[N][16];
    for (int i = 0; i < N; i++)
        snprintf(keys[i], sizeof(keys[i]), "{foo}%d", i);
    TAP_CHECK(kv_keyset_reset(&s, 2 * N) == KV_OK, "reset for %d", 2 * N);
    int fresh = 0, repeats = 0;
    for (int i = 0; i < N; i++)
        fresh += kv_keyset_add(&s, keys[i], strlen(keys[i]));
    for (int i = N - 1; i >= 0; i--)
        repeats += !kv_keyset_add(&s, keys[i], strlen(keys[i]));
    TAP_CHECK(fresh == N && repeats == N, "%d new, then %d repeats (of %d)", fresh, repeats, N);
    TAP_CHECK(s.cap >= 4 * N && s.cap <= 8 * N, "slots for the batch: %u", s.cap);
    TAP_CHECK(kv_keyset_reset(&s, 10) == KV_OK && s.cap <= 1024, "a small batch after it gives the slots back (%u)", s.cap);
    kv_keyset_free(&s);
    return tap_done();
}
