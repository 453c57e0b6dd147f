/* local.h -- the commands the proxy answers itself (class LOCAL): PING,
 * ECHO, QUIT, SELECT, AUTH, HELLO, and the introspection clients rely on:
 * CLIENT (SETNAME GETNAME ID LIST INFO KILL NO-EVICT SETINFO HELP), CONFIG
 * GET (what the proxy knows, in Redis's parameter names; SET, RESETSTAT,
 * REWRITE refused), COMMAND (COUNT INFO LIST GETKEYS DOCS HELP, from the
 * proxy's own table: only the commands it serves).
 *
 * Part of the dispatch layer, below dispatch.c: dispatch.c calls
 * kvp_local_run for a LOCAL command and never the other way round. CLIENT
 * LIST and KILL cover every worker through the client layer's registry
 * (kvp_clients_visit); INFO is not here: it needs the masters' keyspace, so
 * it is fanned out and merged (merge.c, info.c).
 *
 * Replies are written through a small writer (kvp_lw in local.c) that
 * knows the client's protocol, one function per reply shape, so RESP3
 * (maps, verbatim strings) is a change there, not in each command. */
#ifndef KVP_LOCAL_H
#define KVP_LOCAL_H

#include "client.h"
#include "command.h"

/* A worker's scratch for local commands. */
typedef struct kvp_locals {
    kv_str *fwd;               /* COMMAND DOCS: the arguments sent to a master */
    int fwd_cap;
    const uint8_t *cls;        /* the policy's class per command id (COMMAND lists
                                * what it serves); NULL: the generated classes */
} kvp_locals;

void kvp_local_init(kvp_locals *l);
void kvp_local_free(kvp_locals *l);

enum {
    KVP_LOCAL_DONE = 0,        /* answered */
    KVP_LOCAL_FORWARD = 1,     /* send the replaced argc, argv (l's scratch) to any master */
};

/* Runs local command cmd (checked: known, authorised, arity). May replace
 * argc and argv with a command for a master (COMMAND DOCS: asked of a master
 * for the served commands only); they stay valid until the next call. */
int kvp_local_run(kvp_locals *l, kvp_client *c, const kvp_cmd *cmd, int *argc, kv_str **argv);

/* One CLIENT LIST line of c (no newline) into buf, as Redis 7.0 prints it
 * with what the proxy knows; now_ms from the caller's clock. Returns the
 * length (truncated to n - 1). */
size_t kvp_local_client_line(const kvp_client *c, uint64_t now_ms, char *buf, size_t n);

#endif
