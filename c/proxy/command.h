/* command.h -- the proxy's command table: what kvp does with each Redis command.
 *
 * Why: every request needs, before anything else, the answer to "which command
 * is this, are its arguments counted right, where are its keys, and does the
 * proxy answer it, route it by key, split it, fan it out or refuse it". That
 * knowledge is data, not code: one line per command in cmdtab_gen.inc, generated
 * from Redis's own COMMAND metadata by scripts/gen_commands.sh (key positions as
 * Redis 7 "key specs") plus the proxy's policy lists in scripts/gen_commands.lua.
 * This module turns the lines into a read-only lookup for the hot path (a hash
 * table built once by kvp_cmd_init; no allocation, no locale, no Lua per request).
 * The operator's deny/allow lists (lua/policy.lua) do not change it: each
 * policy carries its own class per command (policy.h).
 *
 * Containers (OBJECT, XINFO, MEMORY, XGROUP) have one entry per subcommand,
 * named "container|sub" as Redis names them; look the container up first, then
 * the subcommand with argv[1]. CLIENT and COMMAND are kept whole (one entry).
 *
 * Threads: kvp_cmd_init runs on the control thread before the workers start;
 * lookups and key extraction are read-only and may then run on any thread.
 */
#ifndef KVP_COMMAND_H
#define KVP_COMMAND_H

#include "../core/kv.h"

/* What the proxy does with a command. */
enum kvp_cmd_class {
    KVP_CLASS_UNSUPPORTED, /* refused: "-ERR command '<name>' is not supported by the proxy" */
    KVP_CLASS_LOCAL,       /* answered by the proxy itself; see enum kvp_local */
    KVP_CLASS_KEYED,       /* routed by its keys; several keys must share one bucket */
    KVP_CLASS_SPLIT,       /* keys split per backend, replies merged (enum kvp_merge) */
    KVP_CLASS_FANOUT,      /* sent to every master, replies merged (enum kvp_merge) */
    KVP_CLASS_ANY,         /* sent to any one master, reply forwarded as is */
    KVP_CLASS_SESSION,     /* connection state kept by the session layer (MULTI, WATCH) */
    KVP_CLASS_KEYSPACE,    /* key names from the masters, filtered (SCAN, KEYS, RANDOMKEY) */
    KVP_CLASS_PUBSUB       /* served by the pub/sub layer (SUBSCRIBE, PUBLISH, ...) */
};

/* How the replies of a SPLIT or FANOUT command are merged into one. */
enum kvp_merge {
    KVP_MERGE_NONE,
    KVP_MERGE_SUM,       /* integers added (DEL, EXISTS, DBSIZE, ...) */
    KVP_MERGE_MGET,      /* bulk replies put back in the client's key order */
    KVP_MERGE_OK_ALL,    /* +OK when every part said OK, else the first error */
    KVP_MERGE_RANDOMKEY, /* a non-nil reply, if any master has a key */
    KVP_MERGE_INFO,      /* proxy sections plus keyspace summed over masters */
    KVP_MERGE_EXEC,      /* EXEC's array: element i's key restored when its command names one */
    KVP_MERGE_SCAN,      /* one master's SCAN page, names filtered, cursor folded */
    KVP_MERGE_KEYS,      /* every master's names, filtered, one array */
    KVP_MERGE_SAME,      /* every master must answer the same (SCRIPT LOAD's sha) */
    KVP_MERGE_ALL_ONES,  /* integer arrays: 1 where every master said 1 (SCRIPT EXISTS) */
    KVP_MERGE_CONCAT,    /* every master's array, one array (PUBSUB CHANNELS) */
    KVP_MERGE_NUMSUB,    /* name, count pairs: the counts added (PUBSUB NUMSUB) */
    KVP_MERGE_MAX        /* the largest integer (PUBSUB NUMPAT: every master has every pattern) */
};

/* Which proxy-local command (class LOCAL), for a switch in the proxy. */
enum kvp_local {
    KVP_LOCAL_NONE,
    KVP_LOCAL_PING,
    KVP_LOCAL_ECHO,
    KVP_LOCAL_QUIT,
    KVP_LOCAL_SELECT,
    KVP_LOCAL_AUTH,
    KVP_LOCAL_CLIENT,
    KVP_LOCAL_HELLO,
    /* class SESSION: */
    KVP_LOCAL_MULTI,
    KVP_LOCAL_EXEC,
    KVP_LOCAL_DISCARD,
    KVP_LOCAL_WATCH,
    KVP_LOCAL_UNWATCH,
    KVP_LOCAL_RESET,
    /* class PUBSUB: */
    KVP_LOCAL_SUB,      /* SUBSCRIBE */
    KVP_LOCAL_UNSUB,    /* UNSUBSCRIBE */
    KVP_LOCAL_PSUB,     /* PSUBSCRIBE */
    KVP_LOCAL_PUNSUB,   /* PUNSUBSCRIBE */
    KVP_LOCAL_SSUB,     /* SSUBSCRIBE */
    KVP_LOCAL_SUNSUB,   /* SUNSUBSCRIBE */
    KVP_LOCAL_PUB,      /* PUBLISH */
    KVP_LOCAL_SPUB      /* SPUBLISH */,
    /* class LOCAL, answered from the proxy's own state: */
    KVP_LOCAL_CONFIG,
    KVP_LOCAL_CMDTAB   /* COMMAND: answered from this table */
};

/* Redis command flags the proxy keeps (bit set in kvp_cmd.flags). */
#define KVP_CF_WRITE             (1u << 0)
#define KVP_CF_READONLY          (1u << 1)
#define KVP_CF_DENYOOM           (1u << 2)
#define KVP_CF_ADMIN             (1u << 3)
#define KVP_CF_PUBSUB            (1u << 4)
#define KVP_CF_NOSCRIPT          (1u << 5)
#define KVP_CF_BLOCKING          (1u << 6)
#define KVP_CF_FAST              (1u << 7)
#define KVP_CF_MOVABLE           (1u << 8)  /* movablekeys: keys depend on the arguments */
#define KVP_CF_LOADING           (1u << 9)
#define KVP_CF_STALE             (1u << 10)
#define KVP_CF_NO_MANDATORY_KEYS (1u << 11) /* zero keys is valid (EVAL s 0) */
#define KVP_CF_REPLY_KEY         (1u << 12) /* proxy flag: reply element 0 names a key */
#define KVP_CF_REPLY_STREAMS     (1u << 13) /* proxy flag: the reply names stream keys (XREAD) */

/* Kinds of key spec (Redis 7 key specs reduced to what positions can tell). */
enum kvp_ks_type {
    KVP_KS_NONE,    /* unused slot */
    KVP_KS_RANGE,   /* argv[index] .. argv[last], every keystep */
    KVP_KS_KEYNUM,  /* argv[index+keynumidx] keys, from argv[index+firstkey], every keystep */
    KVP_KS_UNKNOWN, /* keys found by keyword or by content: not computable by the proxy */
    KVP_KS_FINDER   /* keys named by keyword: the command's own grammar, walked from index */
};

/* The keyword walkers (KVP_KS_FINDER). Each mirrors how Redis 7.0 parses the
 * command's options, so a word that only looks like a keyword (a STORE key
 * named "store") is never taken for one, and the key Redis writes is the one
 * the proxy rewrote. */
enum kvp_finder {
    KVP_FIND_NONE,
    KVP_FIND_GEO,        /* GEORADIUS[BYMEMBER]: the last STORE / STOREDIST key */
    KVP_FIND_SORT,       /* SORT / SORT_RO: the last STORE key (not for SORT_RO) */
    KVP_FIND_XREAD,      /* XREAD: the keys after STREAMS */
    KVP_FIND_XREADGROUP  /* XREADGROUP: the keys after STREAMS (GROUP, NOACK allowed) */
};

/* kvp_cmd_keys results other than a count. */
#define KVP_KEYS_MALFORMED (-1) /* Redis refuses these arguments before touching data */
#define KVP_KEYS_UNKNOWN   (-2) /* the command has a key spec the proxy cannot compute */

#define KVP_CMD_MAX_SPECS 3

/* One key spec. For RANGE, lastkey >= 0 means the last key is argv[index +
 * lastkey]; lastkey < 0 counts from the end (-1 = the last argument). */
typedef struct kvp_keyspec {
    uint8_t type;      /* enum kvp_ks_type */
    int16_t index;     /* where the search begins */
    int16_t lastkey;   /* RANGE */
    int16_t keynumidx; /* KEYNUM: the count is at argv[index + keynumidx] */
    int16_t firstkey;  /* KEYNUM: the first key is at argv[index + firstkey] */
    int16_t keystep;   /* distance between keys (2 for MSET's key value pairs) */
    uint8_t finder;    /* FINDER: enum kvp_finder */
} kvp_keyspec;

/* One command or subcommand. Entries live in a static table for the whole
 * process; pointers to them never change. */
typedef struct kvp_cmd {
    const char *name;  /* lower case; "container|sub" for a subcommand */
    uint16_t len;      /* strlen(name) */
    uint16_t id;       /* index in the table: 0 .. kvp_cmd_count()-1 (per-command stats) */
    int16_t arity;     /* as Redis, name included: n = exactly n, -n = at least n */
    uint32_t flags;    /* KVP_CF_* */
    uint8_t cls;       /* enum kvp_cmd_class as generated (a policy may override: policy.h) */
    uint8_t merge;     /* enum kvp_merge */
    uint8_t local;     /* enum kvp_local */
    kvp_keyspec ks[KVP_CMD_MAX_SPECS];
    const struct kvp_cmd *parent; /* the container of a subcommand, else NULL */
    uint16_t sub_first;           /* a container's subcommands: ids sub_first .. */
    uint16_t sub_count;           /* .. sub_first + sub_count - 1; 0 when none listed */
} kvp_cmd;

/* Builds the lookup index. Call once at start, before any lookup; a second call
 * does nothing. KV_ERR (with a message on stderr) when the table is broken: a
 * duplicate name, or a subcommand line that does not follow its container. */
int kvp_cmd_init(void);

/* The command called name (any case), or NULL when Redis has no such command.
 * Subcommands are not found here: use kvp_cmd_lookup_sub. No allocation. */
const kvp_cmd *kvp_cmd_lookup(const char *name, size_t len);

/* The subcommand sub (any case) of container, or NULL when it is unknown or
 * container has no subcommands listed. */
const kvp_cmd *kvp_cmd_lookup_sub(const kvp_cmd *container, const char *sub, size_t len);

/* True when c has subcommands in the table (then argv[1] selects the entry). */
int kvp_cmd_is_container(const kvp_cmd *c);

/* True when argc arguments (the name and, for a subcommand, the subcommand
 * included) fit c's arity. Also false when key/value groups are cut short
 * (MSET k v k): Redis answers both with the same wrong-number-of-arguments error. */
int kvp_cmd_arity_ok(const kvp_cmd *c, int argc);

/* Key positions of this invocation, in key spec order: writes the first max
 * indexes into argv to keys[] and returns how many keys there are (which can
 * exceed max; there are never more than argc, so max = argc gets them all).
 * Otherwise:
 *   KVP_KEYS_MALFORMED  the arguments do not say where the keys are, and Redis
 *       refuses them before it touches any data: a numkeys that is not a valid
 *       non-negative integer (as Redis parses it: no sign, no leading zero) or
 *       names keys past the end of argv; an XREAD without a balanced STREAMS
 *       list, with a misplaced option or a bad BLOCK timeout. The proxy can
 *       forward such a command as it is and let Redis word the error.
 *   KVP_KEYS_UNKNOWN    c has a key spec the proxy cannot compute.
 * Keys found by a finder come after the positional ones, ascending.
 * Call after kvp_cmd_arity_ok. argv is only read for KEYNUM and FINDER specs. */
int kvp_cmd_keys(const kvp_cmd *c, int argc, const kv_str *argv, int *keys, int max);
/* True when this invocation may block in Redis: a command flagged blocking
 * (BLPOP, BLMOVE, BZMPOP, ...), or XREAD / XREADGROUP with BLOCK. Such a
 * command waits on a connection of the client's own (its keys come from
 * kvp_cmd_keys as any command's). */
int kvp_cmd_blocks(const kvp_cmd *c, int argc, const kv_str *argv);

/* True when c's arguments may hold SORT BY / GET patterns (then call
 * kvp_cmd_patterns). Inline: asked for every keyed command. */
static inline int kvp_cmd_has_patterns(const kvp_cmd *c)
{
    return c->ks[1].type == KVP_KS_FINDER && c->ks[1].finder == KVP_FIND_SORT;
}

/* SORT / SORT_RO: positions of the BY and GET arguments that name keys (a
 * pattern with a '*', which Redis replaces by each element; BY without '*'
 * means "do not sort" and GET # is the element itself: neither names a key).
 * Only the last BY counts, as in Redis. Writes up to max positions to pos[],
 * ascending; returns how many there are. Other commands: 0. */
int kvp_cmd_patterns(const kvp_cmd *c, int argc, const kv_str *argv, int *pos, int max);

/* A SORT pattern addresses keys of one bucket only when every key it forms
 * has the same hash tag: a non-empty {tag} that ends before the first '*'
 * (a '*' before or inside it is replaced by element values, which can bring
 * their own braces). Returns the length of the pattern up to and including
 * that '}' -- a string whose hash tag is the pattern's -- or 0 when there is
 * no such tag. */
size_t kvp_cmd_pattern_tag(const char *p, size_t len);

/* Any entry by full name ("name" or "container|sub"), any case, or NULL
 * (for policies: their lists name subcommands too). */
const kvp_cmd *kvp_cmd_find(const char *name, size_t len);
/* Why e (refused as generated) cannot be served as KEYED, or NULL when it
 * can: it blocks, is pub/sub, has no keys or keys the proxy cannot find. */
const char *kvp_cmd_not_allowable(const kvp_cmd *e);

/* Number of entries, and entry by id (NULL when out of range): for per-command
 * counters and for listing the table. */
int kvp_cmd_count(void);
const kvp_cmd *kvp_cmd_at(int id);

/* Class name in upper case ("KEYED"), for logs and the admin API. */
const char *kvp_cmd_class_name(int cls);

#endif
