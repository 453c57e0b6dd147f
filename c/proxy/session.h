/* session.h -- the connection state Redis keeps per client that the proxy
 * must keep for it, since a client's commands share backend connections
 * with everyone else's: a transaction being queued (MULTI ... EXEC).
 *
 * States of a client's session (one field, one function per transition):
 *
 *   (none) --session_multi--> QUEUING --session_exec / session_discard--> (none)
 *
 * QUEUING: each command is checked as Redis checks it when queuing (known,
 * arity, then the proxy's own: one bucket, one master, no fan-out) and
 * answered +QUEUED, or with its error -- which marks the transaction
 * aborted: EXEC then answers EXECABORT and nothing of it runs, anywhere.
 * The queue is kept here, in the proxy, and sent only at EXEC, as one
 * MULTI ... EXEC block on one connection (dispatch.h, kvp_dispatch_exec).
 * Without a session (almost every client) c->session is NULL and the
 * dispatcher never calls up.
 *
 * WATCH lends the client a backend connection of its own (the dispatch
 * layer's c->lent, independent of the state here); EXEC, DISCARD and
 * UNWATCH give it back.
 *
 * A layer above dispatch: the dispatcher calls up through its on_session
 * pointer; this layer calls down to check, route and send. */
#ifndef KVP_SESSION_H
#define KVP_SESSION_H

#include "dispatch.h"

/* Bounds of one transaction's queue (counted in the client's memory too):
 * past either, the command is refused and the transaction aborted. */
#define KVP_TX_MAX_CMDS 65000          /* the EXEC block's replies fit a uint16 */
#define KVP_TX_MAX_BYTES (64u << 20)

typedef struct kvp_session {
    int aborted;      /* a command failed to queue: EXEC answers EXECABORT */
    int bucket;       /* the transaction's bucket so far; -1 none yet */
    int ncmds;
    kv_buf queue;     /* the queued commands, as multibulks */
} kvp_session;

/* The dispatcher's on_session (ctx = the dispatcher). */
int kvp_session_command(void *ctx, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv);
/* The client set's on_close: the session dropped, then the dispatcher's
 * kvp_dispatch_client_gone (ctx = the dispatcher). */
void kvp_session_client_gone(void *ctx, kvp_client *c);

#endif
