/* replicas.h -- the replicas of the namespace's masters, for the policy's
 * replica reads (issue 13: rules with replica_reads = "prefer" | "only").
 *
 * The config server learns each master's replicas for fail-over and pushes
 * them to proxies; the proxy's control thread measures each replica's
 * staleness (kvp.replicas: replication offsets, in ms) and stores it here.
 * A set is immutable but for the lags (atomics the control thread writes
 * and the workers read per replica read), reference-counted and posted to
 * every worker like a table. */
#ifndef KVP_REPLICAS_H
#define KVP_REPLICAS_H

#include "conf.h"

#include <stdatomic.h>

#define KVP_REPLICA_LAG_UNKNOWN (-1) /* down, or not measured yet: never read from */

typedef struct kvp_replica {
    char addr[KVP_ADDR_MAX];
    atomic_int lag_ms;          /* staleness bound, or KVP_REPLICA_LAG_UNKNOWN */
} kvp_replica;

typedef struct kvp_replica_master {
    char addr[KVP_ADDR_MAX];
    int first, n;               /* its replicas: rep[first .. first + n - 1] */
} kvp_replica_master;

typedef struct kvp_replica_set {
    atomic_int refs;
    int nmasters, nreplicas;
    kvp_replica_master *masters;
    kvp_replica *rep;
} kvp_replica_set;

/* Room for nmasters masters and nreplicas replicas (filled by the caller,
 * lags unknown); NULL when out of memory. */
kvp_replica_set *kvp_replica_set_new(int nmasters, int nreplicas);
void kvp_replica_set_ref(kvp_replica_set *s);
void kvp_replica_set_unref(kvp_replica_set *s);
/* The index of master addr in s, or -1. */
int kvp_replica_set_master(const kvp_replica_set *s, const char *addr);
/* Sets the lag of every replica called addr (a replica may serve two
 * masters only in a broken setup, but then both see it). 1 when found. */
int kvp_replica_set_lag(kvp_replica_set *s, const char *addr, int lag_ms);

#endif
