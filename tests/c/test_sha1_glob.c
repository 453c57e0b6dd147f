/* SHA-1 vectors (FIPS 180 examples, and the old kvstore's key rewrite) and
 * glob matching with Redis's rules. */
#include "../../c/core/glob.h"
#include "../../c/core/kv.h"
#include "../../c/core/hash.h"
#include "../../c/core/sha1.h"
#include "tap.h"
#include <stdio.h>
#include <string.h>

static void sha(const char *in, size_t n, const char *want)
{
    char hex[41];
    kv_sha1_hex(in, n, hex);
    hex[40] = 0;
    TAP_CHECK(strcmp(hex, want) == 0, "sha1 of %zu bytes = %s (got %s)", n, want, hex);
}

static void hmac(const char *key, size_t kn, const char *msg, size_t mn, const char *want)
{
    static const char hexd[] = "0123456789abcdef";
    uint8_t d[20];
    char hex[41];
    TAP_CHECK(kv_hmac_sha1(key, kn, msg, mn, d) == 0, "hmac-sha1 of %zu bytes", mn);
    for (int i = 0; i < 20; i++) {
        hex[2 * i] = hexd[d[i] >> 4];
        hex[2 * i + 1] = hexd[d[i] & 15];
    }
    hex[40] = 0;
    TAP_CHECK(strcmp(hex, want) == 0, "hmac-sha1 = %s (got %s)", want, hex);
}

/* Both matchers: the greedy one and the compiled linear one. */
static void glob(const char *p, const char *s, int want)
{
    kv_glob g;
    int compiled = kv_glob_compile(p, strlen(p), &g) == KV_OK;
    TAP_CHECK(kv_glob_match(p, strlen(p), s, strlen(s)) == want &&
                  (!compiled || kv_glob_exec(&g, s, strlen(s)) == want),
              "'%s' %s '%s'", p, want ? "matches" : "does not match", s);
}

/* The compiled matcher agrees with the greedy one on random patterns over a
 * small alphabet (stars, '?', classes, escapes) and random strings. */
static void glob_agree(void)
{
    static const char *pieces[] = {"*", "?", "a", "b", "[ab]", "[^a]", "[a-b]", "\\*", "**", "c"};
    unsigned seed = 12345;
    int disagree = 0, runs = 0;
    for (int t = 0; t < 20000; t++) {
        char pat[64] = "", str[16];
        int np = 1 + (int)((seed = seed * 1103515245 + 12345) >> 16) % 6;
        for (int i = 0; i < np; i++)
            strcat(pat, pieces[((seed = seed * 1103515245 + 12345) >> 16) % 10]);
        int ns = (int)((seed = seed * 1103515245 + 12345) >> 16) % 9;
        for (int i = 0; i < ns; i++)
            str[i] = "abc*"[((seed = seed * 1103515245 + 12345) >> 16) % 4];
        str[ns] = 0;
        kv_glob g;
        if (kv_glob_compile(pat, strlen(pat), &g) != KV_OK)
            continue;
        runs++;
        if (kv_glob_exec(&g, str, (size_t)ns) != kv_glob_match(pat, strlen(pat), str, (size_t)ns)) {
            if (disagree++ < 3)
                printf("# disagree: '%s' on '%s'\n", pat, str);
        }
    }
    TAP_CHECK(disagree == 0 && runs > 19000, "compiled and greedy matchers agree on %d random cases", runs);
}

int main(void)
{
    sha("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
    sha("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    char a64[64];
    memset(a64, 'a', 64);
    sha(a64, 64, "0098ba824b5c16427bd7a1122a5a442a25ec644d");
    sha(a64, 55, "c1c8bbdc22796e28c0e15163d20899b65621d65a");
    /* the old kvstore's example: aaa -> 520_7e240de74fb1ed08fa08d38063f6a6a91462a815 (1023 buckets) */
    sha("aaa", 3, "7e240de74fb1ed08fa08d38063f6a6a91462a815");
    TAP_CHECK(kv_hash_murmur2_kvstore("7e240de74fb1ed08fa08d38063f6a6a91462a815", 40) % 1023 == 520,
              "bucket of sha1(aaa) with 1023 buckets is 520");

    /* RFC 2202 test cases 1, 2, 6 (key longer than a block) */
    char k20[20], k80[80];
    memset(k20, 0x0b, 20);
    memset(k80, 0xaa, 80);
    hmac(k20, 20, "Hi There", 8, "b617318655057264e28bc0b6fb378c8ef146be00");
    hmac("Jefe", 4, "what do ya want for nothing?", 28, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    hmac(k80, 80, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
         "aa4ae5e15272d00e95705637ce8a3b55ed402112");

    glob("aa*", "aaa", 1);
    glob("aa*", "aa", 1);
    glob("aa*", "bbb", 0);
    glob("aa*", "Aaa", 0);
    glob("*", "", 1);
    glob("h?llo", "hello", 1);
    glob("h?llo", "hllo", 0);
    glob("h[ae]llo", "hallo", 1);
    glob("h[ae]llo", "hillo", 0);
    glob("h[^e]llo", "hallo", 1);
    glob("h[^e]llo", "hello", 0);
    glob("h[a-b]llo", "hbllo", 1);
    glob("h[b-a]llo", "hallo", 1);
    glob("h\\*llo", "h*llo", 1);
    glob("h\\*llo", "hello", 0);
    glob("*a*b*c*", "xxaxxbxxcxx", 1);
    glob("*a*b*c*", "xxaxxcxxbxx", 0);
    glob("a*b", "aXbXb", 1);
    glob("[\\]]x", "]x", 1);
    glob("**********************************z", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0);
    glob_agree();
    kv_glob g;
    char big[200];
    memset(big, 'a', sizeof(big));
    TAP_CHECK(kv_glob_compile(big, 63, &g) == KV_OK && kv_glob_compile(big, 64, &g) == KV_ERR,
              "63 elements compile, 64 do not");
    TAP_CHECK(kv_glob_compile("*[ab]*\\**", 9, &g) == KV_OK && kv_glob_exec(&g, "xxbyy*", 6) == 1,
              "stars do not count as elements; a class and an escape are one each");
    return tap_done();
}
