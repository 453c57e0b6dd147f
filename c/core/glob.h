/* glob.h -- glob matching with Redis's rules (KEYS/SCAN MATCH): '*', '?',
 * '[abc]', '[^a]', '[a-z]', and '\' escaping the next byte; case-sensitive,
 * binary-safe. Used for key-rewrite patterns (SPEC §4). */
#ifndef KV_GLOB_H
#define KV_GLOB_H

#include <stddef.h>

#include <stdint.h>

/* Greedy, one back-track point: O(len(pat) * len(str)) at worst. */
int kv_glob_match(const char *pat, size_t plen, const char *str, size_t slen);

/* A glob compiled for matching in time linear in the string (one table
 * lookup and three word operations per byte, whatever the pattern): an
 * NFA over the pattern's elements ('?', a literal, a class) run as a bit
 * set (shift-and), each '*' a self-loop on the state before the next
 * element. Key-rewrite patterns are matched this way against every key a
 * client sends, so a pattern cannot make a long key stall the worker. */
#define KV_GLOB_MAX_ELEMS 63 /* elements other than '*': one bit each, plus the start */

typedef struct kv_glob {
    uint64_t accept[256]; /* bit i + 1: element i accepts that byte */
    uint64_t loop;        /* bit i: a '*' follows element i (bit 0: leads the pattern) */
    uint64_t final;       /* bit of the state after the last element */
} kv_glob;

/* KV_OK, or KV_ERR when pat has more than KV_GLOB_MAX_ELEMS elements. */
int kv_glob_compile(const char *pat, size_t plen, kv_glob *g);
int kv_glob_exec(const kv_glob *g, const char *str, size_t slen);

#endif
