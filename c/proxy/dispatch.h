/* dispatch.h -- what happens to one parsed command: checks in SPEC order,
 * then a local answer, forward by key, split per backend, or fan out; and
 * migrate-on-access (DESIGN §5.2) for keys in migrating buckets.
 *
 * A worker's dispatcher holds what routing needs: the table in use and its
 * server -> backend map, the scratch arrays of multi-key commands (sized by
 * the biggest command so far, never the stack), the qps window, and the
 * migrate-on-access steps in flight. Clients call kvp_dispatch through their
 * set's on_command pointer; the worker installs tables. */
#ifndef KVP_DISPATCH_H
#define KVP_DISPATCH_H

#include "../core/keyset.h"
#include "backend.h"
#include "client.h"
#include "command.h"
#include "local.h"
#include "table.h"

typedef struct kvp_dispatcher {
    kvp_clock *clock;
    kvp_wstats *st;
    kvp_backends *backends;    /* the worker's: connections lent to clients come from it */
    const kvp_table *table;    /* NULL until the first one */
    kvp_backend **route;       /* table server index -> shared backend */
    int table_waits;           /* a newer table waits for the steps below */
    uint64_t no_table_since;   /* the first command that waited for a table */
    int table_wait_expired;    /* no table came within request_timeout of it */
    int premig_inflight;       /* fragments waiting for their MIGRATEs */
    void (*on_steps_done)(void *ctx); /* premig_inflight came to 0 */
    void *steps_ctx;
    uint64_t qps_sec;
    int qps_count;
    /* scratch for routing multi-key commands */
    int *s_keys;
    int *s_server;
    kvp_rkey *s_rkey;
    char (*s_hex)[40];
    uint8_t *s_in_frag;        /* key i goes to the fragment being written */
    uint8_t *s_pick;           /* key i is named by the MIGRATEs being written */
    int s_cap;
    uint8_t *s_src_done;       /* per table server: marked (its MIGRATE written, its fragment made) */
    int *s_frag_of;            /* per table server: its fragment of a split command */
    int *s_frag_server;        /* per fragment: its server */
    int s_src_cap;
    kv_keyset s_seen;          /* keys already named by a fragment's MIGRATEs */
    kvp_locals local;          /* local commands' scratch (local.h) */
} kvp_dispatcher;

void kvp_dispatcher_init(kvp_dispatcher *d, kvp_clock *clock, kvp_wstats *st);
void kvp_dispatcher_free(kvp_dispatcher *d);
/* The client set's kvp_command_fn (ctx = the dispatcher). */
int kvp_dispatch(void *ctx, kvp_client *c, int argc, kv_str *argv);
/* A connection of c's own to table server `server` (for WATCH/MULTI,
 * blocking commands, pub/sub: none uses it yet); NULL at the bound or when
 * c already holds one elsewhere. It goes back when c goes. */
kvp_backend *kvp_dispatch_lend(kvp_dispatcher *d, kvp_client *c, int server);
/* The client set's on_close: what c borrowed is given back (RESET, or
 * closed when a command is still in flight). */
void kvp_dispatch_client_gone(void *ctx, kvp_client *c);

#endif
