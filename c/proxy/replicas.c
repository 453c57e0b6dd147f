/* replicas.c -- see replicas.h. */
#include "replicas.h"

#include <stdlib.h>
#include <string.h>

kvp_replica_set *kvp_replica_set_new(int nmasters, int nreplicas)
{
    kvp_replica_set *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->masters = calloc((size_t)(nmasters > 0 ? nmasters : 1), sizeof(*s->masters));
    s->rep = calloc((size_t)(nreplicas > 0 ? nreplicas : 1), sizeof(*s->rep));
    if (s->masters == NULL || s->rep == NULL) {
        free(s->masters);
        free(s->rep);
        free(s);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->nmasters = nmasters;
    s->nreplicas = nreplicas;
    for (int i = 0; i < nreplicas; i++)
        atomic_init(&s->rep[i].lag_ms, KVP_REPLICA_LAG_UNKNOWN);
    return s;
}

void kvp_replica_set_ref(kvp_replica_set *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void kvp_replica_set_unref(kvp_replica_set *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(s->masters);
    free(s->rep);
    free(s);
}

int kvp_replica_set_master(const kvp_replica_set *s, const char *addr)
{
    for (int i = 0; i < s->nmasters; i++)
        if (strcmp(s->masters[i].addr, addr) == 0)
            return i;
    return -1;
}

int kvp_replica_set_lag(kvp_replica_set *s, const char *addr, int lag_ms)
{
    int found = 0;
    for (int i = 0; i < s->nreplicas; i++)
        if (strcmp(s->rep[i].addr, addr) == 0) {
            atomic_store_explicit(&s->rep[i].lag_ms, lag_ms, memory_order_relaxed);
            found = 1;
        }
    return found;
}
