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
#include "replicas.h"
#include "table.h"

typedef struct kvp_dispatcher {
    kvp_clock *clock;
    kvp_wstats *st;
    kvp_backends *backends;    /* the worker's: connections lent to clients come from it */
    const kvp_table *table;    /* NULL until the first one */
    const kvp_policy *pol;     /* the table's policy; before a table, the local file's */
    kvp_policy *own_pol;       /* no policy anywhere (unit tests): a default one */
    struct { uint64_t sec; int count; } rule_qps[KVP_POLICY_MAX_RULES]; /* max_qps windows */
    const kvp_rule *s_rule0;   /* the rule of the first key routed last (replica reads) */
    const kvp_replica_set *reps; /* the masters' replicas (the worker's), or NULL */
    int *srv_reps;             /* per table server: its entry in reps, or -1 */
    kvp_backend **rep_be;      /* per replica: its shared connection */
    kvp_backend **rep_be3;     /* ... its shared RESP3 connection, made on first use */
    uint32_t rep_next;         /* round robin over a master's replicas */
    /* a rule's Lua route function (the worker's router.h): the bucket of
     * key, or KV_ERR with err; NULL: rules route by hash */
    int (*route_key)(void *ctx, const kvp_policy *p, int rule, const char *key, size_t len,
                     const kvp_cmd *cmd, const kvp_table *t, uint32_t *bucket, char *err, size_t errlen);
    void *route_ctx;
    kvp_backend **route;       /* table server index -> shared backend */
    kvp_backend **route3;      /* ... -> shared RESP3 backend, made on first use */
    int table_waits;           /* a newer table waits for the steps below */
    uint64_t no_table_since;   /* the first command that waited for a table */
    int table_wait_expired;    /* no table came within request_timeout of it */
    int premig_inflight;       /* fragments waiting for their MIGRATEs */
    void (*on_steps_done)(void *ctx); /* premig_inflight came to 0 */
    void *steps_ctx;
    /* the session layer above (session.h): every command of class SESSION,
     * and every command of a client with a session (c->session), goes up
     * through this; cmd is NULL for an unknown command */
    int (*on_session)(void *ctx, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv);
    void *session_ctx;
    void *pubsub;              /* the worker's pub/sub layer (pubsub.h), for the
                                * session layer; class PUBSUB commands and every
                                * command of a subscribed client go up through
                                * on_session too */
    kv_req_parser s_parser;    /* EXEC: reads the queued commands back */
    const kvp_cmd *cmd_copy;   /* COPY: its DB option is checked */
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
/* Routes with t (and t's policy) from now on: the worker's swap, between
 * events. */
void kvp_dispatch_set_table(kvp_dispatcher *d, const kvp_table *t);
/* The client set's kvp_command_fn (ctx = the dispatcher). */
int kvp_dispatch(void *ctx, kvp_client *c, int argc, kv_str *argv);
/* The checks every command passes, in SPEC order: known (cmd NULL: an
 * unknown command), AUTH, a container's subcommand (*cmd becomes it),
 * arity, supported. KV_ERR: the error is the client's reply. */
int kvp_dispatch_check(kvp_dispatcher *d, kvp_client *c, const kvp_cmd **cmd, int argc, kv_str *argv);
/* A looked-up command run as a client with no session runs it (the session
 * layer's way back down). KV_AGAIN: c must wait (parked). */
int kvp_dispatch_cmd(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv);

/* Transactions, for the session layer. */
/* Can this command be queued in c's transaction, whose keys so far are in
 * *bucket (-1: none yet)? KV_OK (and *bucket set when it has keys);
 * KV_ERR: no, the error is the client's reply (the transaction is then
 * aborted, as Redis's queuing errors abort it); KV_AGAIN: wait for a
 * table (parked). */
int kvp_dispatch_tx_check(kvp_dispatcher *d, kvp_client *c, const kvp_cmd **cmd, int argc, kv_str *argv,
                          int *bucket);
/* EXEC: the ncmds commands in queue (multibulks that passed tx_check) go to
 * their bucket's master as MULTI <commands> EXEC, back to back on one
 * connection (the shared one, or c's own after WATCH), after
 * migrate-on-access of their keys when the bucket is migrating; the client
 * gets EXEC's reply with key names restored. When c WATCHes on a master
 * that no longer holds the bucket (the table changed), nothing runs and the
 * reply is a nil array, as when a watched key changed. KV_AGAIN: the
 * bucket is blocked or a table is awaited (parked; queue untouched). */
int kvp_dispatch_exec(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *exec, kv_buf *queue, int ncmds);
/* WATCH: c borrows a connection to the keys' master and the WATCH goes on
 * it; c's later commands for that master use it too, in order. KV_AGAIN:
 * parked (a blocked bucket, no table). */
int kvp_dispatch_watch(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv);
/* c is done with its own connection (EXEC, DISCARD, UNWATCH): it goes back
 * (RESET) once what c sent on it has answered. */
void kvp_dispatch_unpin(kvp_dispatcher *d, kvp_client *c);
/* c's own connection goes back whatever it holds (RESET), once what c sent
 * on it has answered (as Redis runs a RESET after the commands before it). */
void kvp_dispatch_release(kvp_dispatcher *d, kvp_client *c);

/* A connection of c's own to table server `server` (WATCH; later blocking
 * commands, pub/sub); NULL at the bound or when c already holds one
 * elsewhere. It goes back when c goes. */
kvp_backend *kvp_dispatch_lend(kvp_dispatcher *d, kvp_client *c, int server);
/* The client set's on_close: what c borrowed is given back (RESET, or
 * closed when a command is still in flight). */
void kvp_dispatch_client_gone(void *ctx, kvp_client *c);

#endif
