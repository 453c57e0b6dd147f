/* fuzz_keyword.c -- libFuzzer target "keyword": where the proxy finds keys
 * (kvp_cmd_keys, with the keyword finders of GEORADIUS, SORT, XREAD),
 * SORT's key-naming patterns (kvp_cmd_patterns, kvp_cmd_pattern_tag), and
 * the XREAD reply restorer (kvp_reply_strip_stream_keys).
 *
 * A key position the proxy gets wrong is an argument it does not rewrite:
 * Redis then reads or writes a name outside the namespace. So the input, a
 * command line split on spaces, must give (once its arity passes, as in
 * dispatch) either a result code or key positions inside argv, strictly
 * ascending; pattern positions inside argv, ascending, each after a BY or
 * GET, never a key, each with a '*'; a pattern tag that ends at a '}' before
 * any '*' and holds a non-empty {tag}. The same bytes, read as a backend
 * reply, go through the stream restorer, which may only drop bytes (never
 * add any) and must stay within them (ASan). */
#include "../../c/core/hash.h"
#include "../../c/proxy/command.h"
#include "../../c/proxy/merge.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXARGS 256

#define FAILF(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "fuzz_keyword: " __VA_ARGS__);                                             \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

static int is_word(const kv_str *a, const char *w)
{
    size_t n = strlen(w);
    if (a->len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = a->p[i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != w[i])
            return 0;
    }
    return 1;
}

static void check_tag(const kv_str *a)
{
    size_t tl = kvp_cmd_pattern_tag(a->p, a->len);
    if (tl == 0)
        return;
    if (tl > a->len || a->p[tl - 1] != '}' || memchr(a->p, '*', tl) != NULL)
        FAILF("pattern tag ends at %zu of %zu", tl, a->len);
    const char *h;
    size_t hl;
    kv_hash_tag(a->p, tl, &h, &hl);
    if (h == a->p || hl == 0 || h + hl >= a->p + tl)
        FAILF("pattern tag is not a {tag}");
}

static void check_command(const char *data, size_t size)
{
    kv_str argv[MAXARGS];
    int argc = 0;
    for (size_t i = 0; i < size && argc < MAXARGS;) {
        const char *sp = memchr(data + i, ' ', size - i);
        size_t end = sp ? (size_t)(sp - data) : size;
        argv[argc].p = data + i;
        argv[argc].len = end - i;
        argc++;
        i = end + 1;
    }
    if (argc == 0)
        return;
    const kvp_cmd *c = kvp_cmd_lookup(argv[0].p, argv[0].len);
    if (c && kvp_cmd_is_container(c))
        c = argc > 1 ? kvp_cmd_lookup_sub(c, argv[1].p, argv[1].len) : NULL;
    if (c == NULL || !kvp_cmd_arity_ok(c, argc))
        return;

    int keys[MAXARGS], pos[MAXARGS];
    int n = kvp_cmd_keys(c, argc, argv, keys, argc);
    if (n < KVP_KEYS_UNKNOWN || n >= argc)
        FAILF("%s: %d keys of %d arguments", c->name, n, argc);
    for (int i = 0; i < n; i++)
        if (keys[i] < 1 || keys[i] >= argc || (i > 0 && keys[i] <= keys[i - 1]))
            FAILF("%s: key %d at %d", c->name, i, keys[i]);

    int np = kvp_cmd_patterns(c, argc, argv, pos, argc);
    if (np < 0 || np >= argc || (np > 0 && !kvp_cmd_has_patterns(c)))
        FAILF("%s: %d patterns", c->name, np);
    for (int i = 0; i < np; i++) {
        const kv_str *a = &argv[pos[i]];
        if (pos[i] < 3 || pos[i] >= argc || (i > 0 && pos[i] <= pos[i - 1]))
            FAILF("%s: pattern %d at %d", c->name, i, pos[i]);
        if (!is_word(&argv[pos[i] - 1], "by") && !is_word(&argv[pos[i] - 1], "get"))
            FAILF("%s: pattern at %d follows neither BY nor GET", c->name, pos[i]);
        if (memchr(a->p, '*', a->len) == NULL)
            FAILF("%s: pattern at %d has no '*'", c->name, pos[i]);
        for (int k = 0; k < n; k++)
            if (keys[k] == pos[i])
                FAILF("%s: argument %d is a key and a pattern", c->name, pos[i]);
        check_tag(a);
    }
    if (n > 0 && n + np >= argc)
        FAILF("%s: %d keys and %d patterns in %d arguments", c->name, n, np, argc);
}

static void check_restore(const char *data, size_t size)
{
    kv_buf out;
    kv_buf_init(&out, 1 << 24);
    if (kvp_reply_strip_stream_keys(data, size, &out) == KV_OK && kv_buf_len(&out) > size)
        FAILF("the restorer added bytes: %zu of %zu", kv_buf_len(&out), size);
    kv_buf_deinit(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (kvp_cmd_init() != KV_OK)
            abort();
        ready = 1;
    }
    if (size > 1 << 16)
        return 0;
    /* copies of exactly the input's size, so ASan sees any read past it */
    char *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    check_command(copy, size);
    check_restore(copy, size);
    free(copy);
    return 0;
}
