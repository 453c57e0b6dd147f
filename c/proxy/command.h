/* command.h -- the proxy's command table: what kvp does with each Redis command.
 *
 * Why: every request needs, before anything else, the answer to "which command
 * is this, are its arguments counted right, where are its keys, and does the
 * proxy answer it, route it by key, split it, fan it out or refuse it". That
 * knowledge is data, not code: one line per command in cmdtab_gen.inc, generated
 * from Redis's own COMMAND metadata by scripts/gen_commands.sh (key positions as
 * Redis 7 "key specs") plus the proxy's policy lists in scripts/gen_commands.lua.
 * This module turns the lines into a read-only lookup for the hot path (a hash
 * table built once by kvp_cmd_init; no allocation, no locale, no Lua per request)
 * and applies the operator's deny/allow overrides from lua/policy.lua at start.
 *
 * Containers (OBJECT, XINFO, MEMORY, XGROUP) have one entry per subcommand,
 * named "container|sub" as Redis names them; look the container up first, then
 * the subcommand with argv[1]. CLIENT and COMMAND are kept whole (one entry).
 *
 * Threads: kvp_cmd_init and the policy functions run on the control thread
 * before the workers start; lookups and key extraction are read-only and may
 * then run on any thread.
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
    KVP_CLASS_ANY          /* sent to any one master, reply forwarded as is */
};

/* How the replies of a SPLIT or FANOUT command are merged into one. */
enum kvp_merge {
    KVP_MERGE_NONE,
    KVP_MERGE_SUM,       /* integers added (DEL, EXISTS, DBSIZE, ...) */
    KVP_MERGE_MGET,      /* bulk replies put back in the client's key order */
    KVP_MERGE_OK_ALL,    /* +OK when every part said OK, else the first error */
    KVP_MERGE_RANDOMKEY, /* a non-nil reply, if any master has a key */
    KVP_MERGE_INFO       /* proxy sections plus keyspace summed over masters */
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

/* Kinds of key spec (Redis 7 key specs reduced to what positions can tell). */
enum kvp_ks_type {
    KVP_KS_NONE,    /* unused slot */
    KVP_KS_RANGE,   /* argv[index] .. argv[last], every keystep */
    KVP_KS_KEYNUM,  /* argv[index+keynumidx] keys, from argv[index+firstkey], every keystep */
    KVP_KS_UNKNOWN  /* keys found by keyword or by content: not computable by the proxy */
};

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
} kvp_keyspec;

/* One command or subcommand. Entries live in a static table for the whole
 * process; pointers to them never change. */
typedef struct kvp_cmd {
    const char *name;  /* lower case; "container|sub" for a subcommand */
    uint16_t len;      /* strlen(name) */
    uint16_t id;       /* index in the table: 0 .. kvp_cmd_count()-1 (per-command stats) */
    int16_t arity;     /* as Redis, name included: n = exactly n, -n = at least n */
    uint32_t flags;    /* KVP_CF_* */
    uint8_t cls;       /* enum kvp_cmd_class, after policy overrides */
    uint8_t merge;     /* enum kvp_merge */
    uint8_t local;     /* enum kvp_local */
    uint8_t gen_cls;   /* class as generated, before policy overrides */
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
 * Returns -1 when a numkeys argument is not a valid non-negative integer (as
 * Redis parses it: no sign, no leading zero) or names keys past the end of
 * argv, or when c has a key spec the proxy cannot compute (KVP_KS_UNKNOWN).
 * Call after kvp_cmd_arity_ok. argv is only read for KEYNUM specs. */
int kvp_cmd_keys(const kvp_cmd *c, int argc, const kv_str *argv, int *keys, int max);

/* Policy overrides (lua/policy.lua), applied on the control thread before the
 * workers start. name is a command or "container|sub", any case.
 * deny: the command (and a container's subcommands) becomes UNSUPPORTED.
 * allow: a command goes back to its generated class if that was not
 *   UNSUPPORTED, else becomes KEYED when its keys are computable and it neither
 *   blocks nor is pub/sub (those would hold a shared backend connection); a
 *   container's subcommands go back to their generated classes.
 * Both: KV_OK, or KV_ERR with *err (when err is not NULL) set to a static
 * message: an unknown name, or why the command cannot be allowed. */
int kvp_cmd_policy_deny(const char *name, const char **err);
int kvp_cmd_policy_allow(const char *name, const char **err);

/* Drops every override: each command back to its generated class (reload). */
void kvp_cmd_policy_reset(void);

/* Number of entries, and entry by id (NULL when out of range): for per-command
 * counters and for listing the table. */
int kvp_cmd_count(void);
const kvp_cmd *kvp_cmd_at(int id);

/* Class name in upper case ("KEYED"), for logs and the admin API. */
const char *kvp_cmd_class_name(int cls);

#endif
