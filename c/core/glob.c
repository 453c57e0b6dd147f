/* glob.c -- see glob.h. Iterative with one back-track point for '*' (the
 * classic linear-ish matcher), so a hostile pattern cannot recurse deeply. */
#include "glob.h"
#include "kv.h"

#include <string.h>

/* Match one class "[...]" at pat[*pi] (just after '[') against c; advances
 * *pi past the closing ']'. */
static int class_match(const char *pat, size_t plen, size_t *pi, unsigned char c)
{
    size_t i = *pi;
    int neg = 0, hit = 0;
    if (i < plen && pat[i] == '^') {
        neg = 1;
        i++;
    }
    while (i < plen && pat[i] != ']') {
        if (pat[i] == '\\' && i + 1 < plen) {
            if ((unsigned char)pat[i + 1] == c)
                hit = 1;
            i += 2;
        } else if (i + 2 < plen && pat[i + 1] == '-' && pat[i + 2] != ']') {
            unsigned char lo = (unsigned char)pat[i], hi = (unsigned char)pat[i + 2];
            if (lo > hi) {
                unsigned char t = lo;
                lo = hi;
                hi = t;
            }
            if (c >= lo && c <= hi)
                hit = 1;
            i += 3;
        } else {
            if ((unsigned char)pat[i] == c)
                hit = 1;
            i++;
        }
    }
    if (i < plen)
        i++; /* the ']' (an unterminated class runs to the end, as in Redis) */
    *pi = i;
    return neg ? !hit : hit;
}

int kv_glob_match(const char *pat, size_t plen, const char *str, size_t slen)
{
    size_t p = 0, s = 0;
    size_t star_p = (size_t)-1, star_s = 0;
    while (s < slen) {
        if (p < plen) {
            char pc = pat[p];
            if (pc == '*') {
                while (p < plen && pat[p] == '*')
                    p++;
                if (p == plen)
                    return 1;
                star_p = p;
                star_s = s;
                continue;
            }
            if (pc == '?') {
                p++;
                s++;
                continue;
            }
            if (pc == '[') {
                size_t np = p + 1;
                if (class_match(pat, plen, &np, (unsigned char)str[s])) {
                    p = np;
                    s++;
                    continue;
                }
            } else {
                if (pc == '\\' && p + 1 < plen)
                    pc = pat[++p];
                if (pc == str[s]) {
                    p++;
                    s++;
                    continue;
                }
            }
        }
        if (star_p == (size_t)-1)
            return 0;
        /* back-track: let the last '*' take one more byte */
        p = star_p;
        s = ++star_s;
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

int kv_glob_compile(const char *pat, size_t plen, kv_glob *g)
{
    memset(g, 0, sizeof(*g));
    int k = 0; /* elements compiled so far = the state reached after them */
    size_t p = 0;
    while (p < plen) {
        char pc = pat[p];
        if (pc == '*') {
            g->loop |= 1ULL << k;
            p++;
            continue;
        }
        if (k == KV_GLOB_MAX_ELEMS)
            return KV_ERR;
        uint64_t bit = 1ULL << (k + 1);
        if (pc == '?') {
            for (int c = 0; c < 256; c++)
                g->accept[c] |= bit;
            p++;
        } else if (pc == '[') {
            size_t np = p + 1;
            for (int c = 0; c < 256; c++) {
                np = p + 1;
                if (class_match(pat, plen, &np, (unsigned char)c))
                    g->accept[c] |= bit;
            }
            p = np;
        } else {
            if (pc == '\\' && p + 1 < plen)
                pc = pat[++p];
            g->accept[(unsigned char)pc] |= bit;
            p++;
        }
        k++;
    }
    g->final = 1ULL << k;
    return KV_OK;
}

int kv_glob_exec(const kv_glob *g, const char *str, size_t slen)
{
    uint64_t d = 1; /* the start state */
    for (size_t i = 0; i < slen; i++) {
        if (d & g->final & g->loop)
            return 1; /* a trailing '*' takes the rest */
        d = ((d << 1) & g->accept[(unsigned char)str[i]]) | (d & g->loop);
        if (d == 0)
            return 0;
    }
    return (d & g->final) != 0;
}
