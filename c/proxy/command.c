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
 *
 * The entries are not const: policy overrides (deny/allow from lua/policy.lua)
 * rewrite an entry's class on the control thread before the workers start.
 */
#include "command.h"

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

#define KVP_CMD(nm, ar, cl, mg, loc, k1, k2, k3, fl)                                            \
    {.name = nm,                                                                                \
     .len = sizeof(nm) - 1,                                                                     \
     .arity = (ar),                                                                             \
     .flags = (fl),                                                                             \
     .cls = KVP_CLASS_##cl,                                                                     \
     .gen_cls = KVP_CLASS_##cl,                                                                 \
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
            return -1;
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
                return -1;
            if (count == 0)
                continue;
            first = s->index + s->firstkey;
            last = first + (count - 1) * step;
            if (last >= argc)
                return -1;
            break;
        }
        default:
            return -1;
        }

        for (int k = first; k <= last; k += step) {
            if (n < max)
                keys[n] = k;
            n++;
        }
    }
    return n;
}

/* ---------------------------------------------------------------------------
 * Policy overrides (control thread, before the workers start)
 * ------------------------------------------------------------------------- */

static kvp_cmd *policy_find(const char *name, const char **err)
{
    kvp_cmd *e = name ? find_entry(name, strlen(name)) : NULL;
    if (e == NULL && err)
        *err = "unknown command";
    return e;
}

int kvp_cmd_policy_deny(const char *name, const char **err)
{
    kvp_cmd *e = policy_find(name, err);
    if (e == NULL)
        return KV_ERR;
    e->cls = KVP_CLASS_UNSUPPORTED;
    for (int i = 0; i < e->sub_count; i++)
        cmd_table[e->sub_first + i].cls = KVP_CLASS_UNSUPPORTED;
    return KV_OK;
}

/* Why e cannot be made KEYED, or NULL when it can. */
static const char *not_allowable(const kvp_cmd *e)
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

int kvp_cmd_policy_allow(const char *name, const char **err)
{
    kvp_cmd *e = policy_find(name, err);
    if (e == NULL)
        return KV_ERR;
    if (e->sub_count > 0) {
        /* A container: undo a deny of it or of its subcommands. */
        for (int i = 0; i < e->sub_count; i++) {
            kvp_cmd *s = &cmd_table[e->sub_first + i];
            s->cls = s->gen_cls;
        }
        return KV_OK;
    }
    if (e->gen_cls != KVP_CLASS_UNSUPPORTED) {
        e->cls = e->gen_cls;
        return KV_OK;
    }
    const char *why = not_allowable(e);
    if (why != NULL) {
        if (err)
            *err = why;
        return KV_ERR;
    }
    e->cls = KVP_CLASS_KEYED;
    return KV_OK;
}

void kvp_cmd_policy_reset(void)
{
    for (int i = 0; i < CMD_COUNT; i++)
        cmd_table[i].cls = cmd_table[i].gen_cls;
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
                                         "KEYSPACE"};
    return (cls >= 0 && cls < (int)KV_ARRAY_LEN(names)) ? names[cls] : "?";
}
