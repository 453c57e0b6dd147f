/* table.h -- the routing snapshot: bucket -> master, migrating and blocked
 * buckets, key-rewrite patterns, and the hash that picks a key's bucket.
 *
 * Immutable once built and reference-counted: the control thread builds one
 * per table version (lkvp.c) and posts it to every worker, which swaps its
 * pointer between events, so a request is routed with exactly one table. */
#ifndef KVP_TABLE_H
#define KVP_TABLE_H

#include "../core/glob.h"
#include "conf.h"
#include "policy.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kvp_table {
    atomic_int refs;
    uint64_t version;
    uint32_t bucket_count;
    kvp_policy *policy;            /* what it routes with (NULL: unit tests' default) */
    int hash_kind;                 /* enum kvp_hash_kind, from the policy */
    int hash_tags;                 /* hash only the {tag} of a key */
    int nservers;
    char (*servers)[KVP_ADDR_MAX]; /* "ip:port" */
    uint16_t *owner;               /* bucket -> server index */
    char (*prefix)[8];             /* bucket -> "<bucket>_" */
    uint8_t *prefix_len;
    uint16_t *mig_dst;             /* bucket -> server index it migrates to, or KVP_NO_SERVER */
    uint8_t *blocked;              /* bucket -> 1 while commands on it wait (START, phase 1) */
    int nmigrating;
    int npatterns;                 /* key-rewrite globs (SPEC §4) */
    char **patterns;
    size_t *pattern_len;
    kv_glob *globs;                /* each compiled: matched in time linear in the key */
} kvp_table;

/* A table of bucket_count buckets over nservers masters, every bucket owned
 * by server 0, nothing migrating, no policy (murmur2_kvstore, hash tags). */
kvp_table *kvp_table_new(uint32_t bucket_count, int nservers);
/* t routes with p (t holds a reference): its hash and tags are p's. */
void kvp_table_set_policy(kvp_table *t, kvp_policy *p);
void kvp_table_ref(kvp_table *t);
void kvp_table_unref(kvp_table *t);
uint32_t kvp_table_bucket(const kvp_table *t, const char *key, size_t len);
/* At most KVP_MAX_PATTERNS, each at most KVP_MAX_PATTERN_LEN bytes and
 * KV_GLOB_MAX_ELEMS elements besides '*': KV_OK, KV_ERR (a bound), KV_ENOMEM. */
#define KVP_MAX_PATTERNS 64
#define KVP_MAX_PATTERN_LEN 256
int kvp_table_set_patterns(kvp_table *t, const char **pats, const size_t *lens, int n);

/* Where a client key goes: its bucket and the bytes stored after the
 * "<bucket>_" prefix -- the key itself, or the SHA-1 hex of the key when a
 * key-rewrite pattern matches it (then hex holds the bytes). */
typedef struct kvp_rkey {
    uint32_t bucket;
    uint16_t server;   /* where the command goes: the owner, or the migration dst */
    uint16_t src;      /* migrating bucket: the owner keys are MIGRATEd from first; else KVP_NO_SERVER */
    uint8_t blocked;   /* the bucket is blocked: the command waits for the next table */
    const char *p;
    size_t len;
} kvp_rkey;
void kvp_table_route(const kvp_table *t, const char *key, size_t len, kvp_rkey *out, char hex[40]);
/* The same for a key whose bucket a policy's route function chose (the
 * stored bytes still follow the key-rewrite patterns). */
void kvp_table_route_in(const kvp_table *t, const char *key, size_t len, uint32_t bucket, kvp_rkey *out,
                        char hex[40]);

#endif
