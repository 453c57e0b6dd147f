/* glob.h -- glob matching with Redis's rules (KEYS/SCAN MATCH): '*', '?',
 * '[abc]', '[^a]', '[a-z]', and '\' escaping the next byte; case-sensitive,
 * binary-safe. Used for key-rewrite patterns (SPEC §4). */
#ifndef KV_GLOB_H
#define KV_GLOB_H

#include <stddef.h>

int kv_glob_match(const char *pat, size_t plen, const char *str, size_t slen);

#endif
