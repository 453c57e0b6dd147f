/* command.c -- the command table and its hot-path lookup (see command.h).
 *
 * Why this shape: the table is one line per command (cmdtab_gen.inc, generated
 * from Redis's COMMAND by scripts/gen_commands.sh), so adding or changing a
 * command never touches code here. At start kvp_cmd_init links subcommands to
 * their containers and fills an open-addressing hash table of entry indexes,
 * keyed by the lower-case name; a lookup then hashes the client's bytes while
 * lowercasing them by hand (no copy, no allocation, no locale) and compares
 * lengths before bytes. A subcommand is found by hashing "container|sub" the
 * same way without building that string.
 */
#include "command.h"
#include "../core/resp.h"

#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------- */

#define KS_NONE {.type = KVP_KS_NONE}
#define KS_UNKNOWN {.type = KVP_KS_UNKNOWN}
#define KS_RANGE(i, l, s) {.type = KVP_KS_RANGE, .index = (i), .lastkey = (l), .keystep = (s)}
#define KS_KEYNUM(i, k, f, s)                                                                   \
    {.type = KVP_KS_KEYNUM, .index = (i), .keynumidx = (k), .firstkey = (f), .keystep = (s)}
#define KS_FIND(kind, i) {.type = KVP_KS_FINDER, .index = (i), .finder = KVP_FIND_##kind}

#define KVP_CMD(nm, ar, cl, mg, loc, k1, k2, k3, fl)                                            \
    {.name = nm,                                                                                \
     .len = sizeof(nm) - 1,                                                                     \
     .arity = (ar),                                                                             \
     .flags = (fl),                                                                             \
     .cls = KVP_CLASS_##cl,                                                                     \
     .merge = KVP_MERGE_##mg,                                                                   \
     .local = KVP_LOCAL_##loc,                                                                  \
     .ks = {k1, k2, k3}},

static kvp_cmd cmd_table[] = {
#include "cmdtab_gen.inc"
};

#undef KVP_CMD
#undef KS_NONE
#undef KS_UNKNOWN
#undef KS_RANGE
#undef KS_KEYNUM
#undef KS_FIND

#define CMD_COUNT ((int)KV_ARRAY_LEN(cmd_table))

/* Open addressing, linear probing; a slot holds entry index + 1, 0 = empty,
 * so an index never built (init not called) finds nothing. Kept at most half
 * full so probes stay short. */
#define HASH_SIZE 1024
#define HASH_MASK (HASH_SIZE - 1)

_Static_assert(KV_ARRAY_LEN(cmd_table) * 2 <= HASH_SIZE, "command hash table too small");
_Static_assert(KV_ARRAY_LEN(cmd_table) < UINT16_MAX, "command ids are 16 bits");

static uint16_t hash_slots[HASH_SIZE];
static size_t name_max; /* longest name: longer input cannot match */
static int init_state;  /* 0 not run, 1 ok, -1 failed */

/* ---------------------------------------------------------------------------
 * Hashing and comparing, case-insensitively, by hand
 * ------------------------------------------------------------------------- */

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* FNV-1a, 32 bits, fed byte by byte so a name can be hashed in pieces. */
#define FNV_BASIS 2166136261u
#define FNV_PRIME 16777619u

static inline uint32_t hash_feed(uint32_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= lower((unsigned char)s[i]);
        h *= FNV_PRIME;
    }
    return h;
}

/* lc is a lower-case table name; s is the client's bytes in any case. */
static inline int eq_lower(const char *lc, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)lc[i] != lower((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

/* Any entry (command or subcommand) by full name, any case. */
static kvp_cmd *find_entry(const char *name, size_t len)
{
    if (len == 0 || len > name_max)
        return NULL;
    uint32_t slot = hash_feed(FNV_BASIS, name, len) & HASH_MASK;
    for (uint16_t v; (v = hash_slots[slot]) != 0; slot = (slot + 1) & HASH_MASK) {
        kvp_cmd *e = &cmd_table[v - 1];
        if (e->len == len && eq_lower(e->name, name, len))
            return e;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Start-up
 * ------------------------------------------------------------------------- */

static int init_fail(const kvp_cmd *e, const char *why)
{
    fprintf(stderr, "kvp: command table: '%s': %s\n", e->name, why);
    init_state = -1;
    return KV_ERR;
}

/* A line's key specs must be usable by kvp_cmd_keys: a positive step, and
 * no spec after an empty slot. */
static int specs_valid(const kvp_cmd *e)
{
    int seen_none = 0;
    for (int i = 0; i < KVP_CMD_MAX_SPECS; i++) {
        const kvp_keyspec *s = &e->ks[i];
        if (s->type == KVP_KS_NONE) {
            seen_none = 1;
            continue;
        }
        if (seen_none)
            return 0;
        int positional = s->type == KVP_KS_RANGE || s->type == KVP_KS_KEYNUM;
        if (positional && (s->keystep < 1 || s->index < 0))
            return 0;
        /* a finder walks to the end of argv: nothing can follow it */
        if (s->type == KVP_KS_FINDER &&
            (s->finder == KVP_FIND_NONE || s->index < 1 ||
             (i + 1 < KVP_CMD_MAX_SPECS && e->ks[i + 1].type != KVP_KS_NONE)))
            return 0;
    }
    return 1;
}

int kvp_cmd_init(void)
{
    if (init_state != 0)
        return init_state > 0 ? KV_OK : KV_ERR;

    kvp_cmd *container = NULL; /* the last top-level entry: owner of following subs */
    for (int i = 0; i < CMD_COUNT; i++) {
        kvp_cmd *e = &cmd_table[i];
        e->id = (uint16_t)i;
        for (size_t j = 0; j < e->len; j++) {
            if (e->name[j] != (char)lower((unsigned char)e->name[j]))
                return init_fail(e, "name is not lower case");
        }
        if (!specs_valid(e))
            return init_fail(e, "bad key spec");

        const char *bar = memchr(e->name, '|', e->len);
        if (bar == NULL) {
            container = e;
        } else {
            size_t plen = (size_t)(bar - e->name);
            if (container == NULL || container->len != plen ||
                memcmp(container->name, e->name, plen) != 0 || plen + 1 == e->len)
                return init_fail(e, "subcommand does not follow its container");
            if (container->sub_count == 0)
                container->sub_first = (uint16_t)i;
            container->sub_count++;
            e->parent = container;
        }

        if (find_entry(e->name, e->len) != NULL)
            return init_fail(e, "listed twice");
        uint32_t slot = hash_feed(FNV_BASIS, e->name, e->len) & HASH_MASK;
        while (hash_slots[slot] != 0)
            slot = (slot + 1) & HASH_MASK;
        hash_slots[slot] = (uint16_t)(i + 1);
        if (e->len > name_max)
            name_max = e->len;
    }
    init_state = 1;
    return KV_OK;
}

/* ---------------------------------------------------------------------------
 * Lookups (hot path)
 * ------------------------------------------------------------------------- */

const kvp_cmd *kvp_cmd_lookup(const char *name, size_t len)
{
    const kvp_cmd *e = find_entry(name, len);
    /* "object|encoding" typed as a command name is unknown, as in Redis. */
    return (e != NULL && e->parent == NULL) ? e : NULL;
}

const kvp_cmd *kvp_cmd_lookup_sub(const kvp_cmd *container, const char *sub, size_t len)
{
    if (container == NULL || container->sub_count == 0 || len == 0)
        return NULL;
    size_t full = (size_t)container->len + 1 + len;
    if (full > name_max)
        return NULL;
    uint32_t h = hash_feed(FNV_BASIS, container->name, container->len);
    h = hash_feed(h, "|", 1);
    uint32_t slot = hash_feed(h, sub, len) & HASH_MASK;
    for (uint16_t v; (v = hash_slots[slot]) != 0; slot = (slot + 1) & HASH_MASK) {
        const kvp_cmd *e = &cmd_table[v - 1];
        if (e->parent == container && e->len == full &&
            eq_lower(e->name + container->len + 1, sub, len))
            return e;
    }
    return NULL;
}

int kvp_cmd_is_container(const kvp_cmd *c)
{
    return c->sub_count > 0;
}

int kvp_cmd_arity_ok(const kvp_cmd *c, int argc)
{
    if (c->arity >= 0 ? argc != c->arity : argc < -c->arity)
        return 0;
    /* Keys to the end in groups (MSET key value ...): the last group must be whole. */
    for (int i = 0; i < KVP_CMD_MAX_SPECS; i++) {
        const kvp_keyspec *s = &c->ks[i];
        if (s->type == KVP_KS_RANGE && s->lastkey == -1 && s->keystep > 1 && argc > s->index &&
            (argc - s->index) % s->keystep != 0)
            return 0;
    }
    return 1;
}

/* A numkeys argument as Redis accepts it: "0" or digits without a leading
 * zero or sign. Values above limit fail early (they cannot fit argv anyway). */
static int parse_count(const kv_str *a, int limit, int *out)
{
    if (a->len == 0 || (a->p[0] == '0' && a->len > 1))
        return KV_ERR;
    long v = 0;
    for (size_t i = 0; i < a->len; i++) {
        char ch = a->p[i];
        if (ch < '0' || ch > '9')
            return KV_ERR;
        v = v * 10 + (ch - '0');
        if (v > limit)
            return KV_ERR;
    }
    *out = (int)v;
    return KV_OK;
}

/* ---------------------------------------------------------------------------
 * Keyword finders: each walks the options as Redis 7.0's own parser does
 * (georadiusGeneric, sortCommandGeneric, xreadCommand), so the key found is
 * the one Redis uses. Where Redis would stop with an error, the walk stops
 * too: what follows is never executed.
 * ------------------------------------------------------------------------- */

static int arg_is(const kv_str *a, const char *lc)
{
    size_t n = strlen(lc);
    return a->len == n && eq_lower(lc, a->p, n);
}

static void add_key(int *keys, int max, int *n, int pos)
{
    if (*n < max)
        keys[*n] = pos;
    (*n)++;
}

/* GEORADIUS key lon lat radius unit [opts] / GEORADIUSBYMEMBER key member
 * radius unit [opts], options from `from`: the last STORE / STOREDIST key
 * is the one written (an earlier one is overwritten in Redis's parse). */
static int find_geo(int argc, const kv_str *argv, int from)
{
    int store = 0;
    for (int i = from; i < argc; i++) {
        const kv_str *a = &argv[i];
        if (arg_is(a, "withdist") || arg_is(a, "withhash") || arg_is(a, "withcoord") ||
            arg_is(a, "any") || arg_is(a, "asc") || arg_is(a, "desc"))
            continue;
        if (i + 1 < argc && arg_is(a, "count")) {
            i++;
        } else if (i + 1 < argc && (arg_is(a, "store") || arg_is(a, "storedist"))) {
            store = ++i;
        } else {
            break; /* Redis: syntax error */
        }
    }
    return store;
}

/* SORT key [BY p] [LIMIT o c] [GET p ...] [ASC|DESC] [ALPHA] [STORE dst],
 * options from `from`: the last STORE key (none for SORT_RO: STORE is a
 * syntax error there), and, when pats is not NULL, the BY / GET arguments
 * that name keys (see kvp_cmd_patterns). */
static int walk_sort(int argc, const kv_str *argv, int from, int can_store, int *pats, int max,
                     int *npats)
{
    int store = 0, by = 0, np = 0;
    for (int j = from; j < argc; j++) {
        const kv_str *a = &argv[j];
        int left = argc - j - 1;
        if (arg_is(a, "asc") || arg_is(a, "desc") || arg_is(a, "alpha"))
            continue;
        if (left >= 2 && arg_is(a, "limit")) {
            j += 2;
        } else if (left >= 1 && can_store && arg_is(a, "store")) {
            store = ++j;
        } else if (left >= 1 && arg_is(a, "by")) {
            by = ++j; /* the last BY is the one used */
        } else if (left >= 1 && arg_is(a, "get")) {
            j++;
            /* GET # is the element itself; without '*' nothing is looked up */
            if (pats && memchr(argv[j].p, '*', argv[j].len) != NULL)
                add_key(pats, max, &np, j);
        } else {
            break; /* Redis: syntax error */
        }
    }
    if (pats && by > 0 && memchr(argv[by].p, '*', argv[by].len) != NULL) {
        /* the last BY, put in argument order among the GETs */
        int i = np++;
        if (np <= max) {
            for (; i > 0 && pats[i - 1] > by; i--)
                pats[i] = pats[i - 1];
            pats[i] = by;
        }
    }
    if (npats)
        *npats = np;
    return store;
}

/* A count or timeout Redis refuses (getLongLongFromObject is string2ll, as
 * kv_parse_ll; a timeout must not be negative). Only sure refusals count:
 * the command is then forwarded unrewritten for Redis to word the error. */
static int xread_refused(const kv_str *a, int is_timeout)
{
    long long v;
    if (kv_parse_ll(a->p, a->len, &v) != KV_OK)
        return 1;
    return is_timeout && v < 0;
}

/* XREAD [COUNT n] [BLOCK ms] STREAMS key ... id ... and XREADGROUP GROUP g c
 * [COUNT n] [BLOCK ms] [NOACK] STREAMS key ... id ...: the first half of
 * what follows STREAMS. */
static int find_xread(int argc, const kv_str *argv, int from, int group, int *keys, int max, int *n,
                      int *blocks)
{
    int blocking = 0, has_group = 0;
    for (int i = from; i < argc; i++) {
        const kv_str *a = &argv[i];
        int more = argc - i - 1;
        if (more && arg_is(a, "block")) {
            if (xread_refused(&argv[++i], 1))
                return KVP_KEYS_MALFORMED;
            blocking = 1;
        } else if (more && arg_is(a, "count")) {
            if (xread_refused(&argv[++i], 0))
                return KVP_KEYS_MALFORMED;
        } else if (more && arg_is(a, "streams")) {
            int first = i + 1, count = argc - first;
            if (count % 2 != 0 || (group && !has_group))
                return KVP_KEYS_MALFORMED; /* unbalanced; XREADGROUP without GROUP */
            if (blocks)
                *blocks = blocking;
            for (int k = first; k < first + count / 2; k++)
                add_key(keys, max, n, k);
            return *n;
        } else if (group && more >= 2 && arg_is(a, "group")) {
            has_group = 1;
            i += 2;
        } else if (group && arg_is(a, "noack")) {
            continue;
        } else {
            return KVP_KEYS_MALFORMED; /* syntax error, or GROUP/NOACK in XREAD */
        }
    }
    return KVP_KEYS_MALFORMED; /* no STREAMS */
}

static int run_finder(const kvp_cmd *c, const kvp_keyspec *s, int argc, const kv_str *argv,
                      int *keys, int max, int n)
{
    int store;
    switch (s->finder) {
    case KVP_FIND_GEO:
        store = find_geo(argc, argv, s->index);
        break;
    case KVP_FIND_SORT:
        store = walk_sort(argc, argv, s->index, !(c->flags & KVP_CF_READONLY), NULL, 0, NULL);
        break;
    case KVP_FIND_XREAD:
    case KVP_FIND_XREADGROUP:
        return find_xread(argc, argv, s->index, s->finder == KVP_FIND_XREADGROUP, keys, max, &n, NULL);
    default:
        return KVP_KEYS_UNKNOWN;
    }
    if (store > 0)
        add_key(keys, max, &n, store);
    return n;
}

int kvp_cmd_blocks(const kvp_cmd *c, int argc, const kv_str *argv)
{
    if (!(c->flags & KVP_CF_BLOCKING))
        return 0;
    const kvp_keyspec *s = NULL;
    for (int i = 0; i < KVP_CMD_MAX_SPECS; i++)
        if (c->ks[i].type == KVP_KS_FINDER)
            s = &c->ks[i];
    if (s == NULL || (s->finder != KVP_FIND_XREAD && s->finder != KVP_FIND_XREADGROUP))
        return 1; /* BLPOP, BZMPOP, ...: always (a timeout of 0.001 blocks too) */
    int n = 0, blocks = 0;
    if (find_xread(argc, argv, s->index, s->finder == KVP_FIND_XREADGROUP, NULL, 0, &n, &blocks) < 0)
        return 0;
    return blocks;
}

int kvp_cmd_patterns(const kvp_cmd *c, int argc, const kv_str *argv, int *pos, int max)
{
    if (!kvp_cmd_has_patterns(c))
        return 0;
    int np = 0;
    walk_sort(argc, argv, c->ks[1].index, !(c->flags & KVP_CF_READONLY), pos, max, &np);
    return np;
}

size_t kvp_cmd_pattern_tag(const char *p, size_t len)
{
    const char *star = memchr(p, '*', len);
    size_t lim = star ? (size_t)(star - p) : len;
    const char *open = memchr(p, '{', lim);
    if (open == NULL)
        return 0;
    size_t after = (size_t)(open - p) + 1;
    const char *close = memchr(open + 1, '}', lim - after);
    if (close == NULL || close == open + 1)
        return 0;
    return (size_t)(close - p) + 1;
}

/* ---------------------------------------------------------------------------
 * Key positions
 * ------------------------------------------------------------------------- */

int kvp_cmd_keys(const kvp_cmd *c, int argc, const kv_str *argv, int *keys, int max)
{
    int n = 0;
    for (int i = 0; i < KVP_CMD_MAX_SPECS; i++) {
        const kvp_keyspec *s = &c->ks[i];
        int first, last, step = s->keystep;

        switch (s->type) {
        case KVP_KS_NONE:
            return n;
        case KVP_KS_UNKNOWN:
            return KVP_KEYS_UNKNOWN;
        case KVP_KS_FINDER:
            return run_finder(c, s, argc, argv, keys, max, n);
        case KVP_KS_RANGE:
            first = s->index;
            if (first >= argc)
                continue;
            last = s->lastkey >= 0 ? first + s->lastkey : argc + s->lastkey;
            if (last >= argc)
                last = argc - 1;
            break;
        case KVP_KS_KEYNUM: {
            int at = s->index + s->keynumidx, count;
            if (at >= argc || parse_count(&argv[at], argc, &count) != KV_OK)
                return KVP_KEYS_MALFORMED;
            if (count == 0)
                continue;
            first = s->index + s->firstkey;
            last = first + (count - 1) * step;
            if (last >= argc)
                return KVP_KEYS_MALFORMED;
            break;
        }
        default:
            return KVP_KEYS_UNKNOWN;
        }

        for (int k = first; k <= last; k += step)
            add_key(keys, max, &n, k);
    }
    return n;
}

/* ---------------------------------------------------------------------------
 * For policies (policy.c)
 * ------------------------------------------------------------------------- */

const kvp_cmd *kvp_cmd_find(const char *name, size_t len)
{
    return find_entry(name, len);
}

const char *kvp_cmd_not_allowable(const kvp_cmd *e)
{
    if (e->flags & KVP_CF_BLOCKING)
        return "blocking command";
    if (e->flags & KVP_CF_PUBSUB)
        return "pub/sub command";
    if (e->ks[0].type == KVP_KS_NONE)
        return "command has no keys";
    for (int i = 0; i < KVP_CMD_MAX_SPECS; i++) {
        if (e->ks[i].type == KVP_KS_UNKNOWN)
            return "keys not computable from argument positions";
    }
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Listing
 * ------------------------------------------------------------------------- */

int kvp_cmd_count(void)
{
    return CMD_COUNT;
}

const kvp_cmd *kvp_cmd_at(int id)
{
    return (id >= 0 && id < CMD_COUNT) ? &cmd_table[id] : NULL;
}

const char *kvp_cmd_class_name(int cls)
{
    static const char *const names[] = {"UNSUPPORTED", "LOCAL", "KEYED", "SPLIT", "FANOUT", "ANY",
                                         "SESSION", "KEYSPACE", "PUBSUB"};
    return (cls >= 0 && cls < (int)KV_ARRAY_LEN(names)) ? names[cls] : "?";
}
