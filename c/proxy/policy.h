/* policy.h -- a namespace's routing policy as the data path runs it
 * (lua/policy.lua, compiled by kv.policy, built by lkvp.c; issue 13).
 *
 * Immutable once built and reference-counted, like a table: every table
 * points at the policy it routes with, so a worker that swaps tables
 * between events swaps policies with them, and a request is routed and
 * checked with exactly one policy. What it holds is precomputed for the
 * request path:
 *   - the key hash and hash tags (copied into each table);
 *   - the class of every command after the policy's deny/allow lists (one
 *     byte per command id: no lookup per request);
 *   - the rules, first match wins: a compiled glob per rule (linear in the
 *     key; a plain "prefix*" glob is a memcmp) and, per command id, whether
 *     the rule refuses it (deny/allow lists, read_only for write commands),
 *     plus max_qps, replica reads and whether a Lua route function decides
 *     the bucket of its keys (run by the worker's own Lua state, router.h).
 * A policy without rules costs nothing per request beyond the class byte. */
#ifndef KVP_POLICY_H
#define KVP_POLICY_H

#include "../core/glob.h"
#include "command.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum kvp_replica_reads { KVP_REPLICA_NEVER = 0, KVP_REPLICA_PREFER = 1, KVP_REPLICA_ONLY = 2 };
/* Why a rule refuses a command (kvp_rule.refuse[cmd id]). */
enum { KVP_RULE_OK = 0, KVP_RULE_DENIED = 1, KVP_RULE_READ_ONLY = 2 };

#define KVP_POLICY_MAX_RULES 64
#define KVP_POLICY_MAX_GLOB 256

typedef struct kvp_rule {
    char match[KVP_POLICY_MAX_GLOB + 1]; /* the glob, for errors and logs */
    size_t match_len;
    size_t prefix_len;        /* the glob is "<prefix>*" with a plain prefix: memcmp */
    kv_glob glob;
    uint8_t *refuse;          /* per command id: KVP_RULE_* */
    int max_qps;              /* 0: no limit */
    uint8_t replica_reads;    /* enum kvp_replica_reads */
    int max_replica_lag_ms;   /* -1: no bound */
    uint8_t route;            /* a Lua route function decides the bucket */
    uint8_t allow_list;       /* an allow list was given: refuse starts as all */
} kvp_rule;

typedef struct kvp_policy {
    atomic_int refs;
    uint64_t version;         /* the namespace's policy version; 0: the local file */
    int hash_kind;            /* enum kvp_hash_kind */
    int hash_tags;
    uint8_t *cls;             /* per command id: enum kvp_cmd_class after deny/allow */
    int nrules;
    kvp_rule *rules;
    int nroutes;              /* rules with a route function */
    int replica_rules;        /* rules with replica reads */
    char *source;             /* the policy's text (the workers' Lua states compile it) */
    size_t source_len;
} kvp_policy;

/* A policy with no rules, the generated command classes, murmur2_kvstore
 * and hash tags on: NULL when out of memory. */
kvp_policy *kvp_policy_new(void);
void kvp_policy_ref(kvp_policy *p);
void kvp_policy_unref(kvp_policy *p);
/* KV_OK or KV_ENOMEM. */
int kvp_policy_set_source(kvp_policy *p, const char *text, size_t len);

/* The policy's top-level lists. name is a command or "container|sub", any
 * case. deny: the command (and a container's subcommands) is refused.
 * allow: a command goes back to its generated class if that was not
 * UNSUPPORTED, else becomes KEYED when its keys are computable and it
 * neither blocks nor is pub/sub; a container's subcommands go back to
 * their generated classes. KV_OK, or KV_ERR with *err a static message. */
int kvp_policy_deny(kvp_policy *p, const char *name, const char **err);
int kvp_policy_allow(kvp_policy *p, const char *name, const char **err);

/* Appends a rule matching glob (KV_ERR with *err: too many rules, a glob
 * too long or with too many elements; KV_ENOMEM). Its lists come next. */
int kvp_policy_add_rule(kvp_policy *p, const char *glob, size_t len, const char **err);
/* The last rule's lists: deny refuses those commands on its keys; a
 * non-empty allow refuses every other command (a container named allows
 * or refuses its subcommands). KV_ERR with *err: an unknown name. */
int kvp_rule_deny(kvp_policy *p, const char *name, const char **err);
int kvp_rule_allow(kvp_policy *p, const char *name, const char **err);
/* read_only: every command flagged write is refused on its keys. */
void kvp_rule_read_only(kvp_policy *p);

static inline int kvp_policy_cls(const kvp_policy *p, const kvp_cmd *c)
{
    return p->cls[c->id];
}

/* The first rule whose glob matches key, or NULL. */
const kvp_rule *kvp_policy_match(const kvp_policy *p, const char *key, size_t len);
/* The index of r in p (for per-rule counters). */
static inline int kvp_rule_index(const kvp_policy *p, const kvp_rule *r)
{
    return (int)(r - p->rules);
}

#endif
