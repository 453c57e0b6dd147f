/* session.c -- see session.h. */
#include "session.h"
#include "errors.h"
#include "pubsub.h"

#include <stdlib.h>

/* ------------------------------------------------------------ lifecycle */

static kvp_session *session_new(void)
{
    kvp_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->bucket = -1;
    kv_buf_init(&s->queue, KVP_TX_MAX_BYTES);
    return s;
}

static void session_free(kvp_client *c)
{
    kvp_session *s = c->session;
    if (s == NULL)
        return;
    kv_buf_deinit(&s->queue);
    free(s);
    c->session = NULL;
    c->session_mem = 0;
}

/* ---------------------------------------------------------- transitions */

/* (none) -> QUEUING */
static void session_multi(kvp_client *c)
{
    if ((c->session = session_new()) == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    kvp_client_reply_str(c, "+OK\r\n");
}

/* QUEUING -> (none): the transaction and any WATCH are over. */
static void session_end(kvp_dispatcher *d, kvp_client *c)
{
    session_free(c);
    kvp_dispatch_unpin(d, c);
}

/* QUEUING -> (none), after sending MULTI ... EXEC; KV_AGAIN: still
 * QUEUING, parked until the bucket can be used. */
static int session_exec(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *exec)
{
    kvp_session *s = c->session;
    if (s->aborted) {
        kvp_client_reply_str(c, KVP_ERR_EXECABORT);
    } else if (s->ncmds == 0 && !c->lent_pinned) {
        kvp_client_reply_str(c, "*0\r\n"); /* nothing to run, nothing watched */
    } else if (kvp_dispatch_exec(d, c, exec, &s->queue, s->ncmds) == KV_AGAIN) {
        return KV_AGAIN;
    }
    session_end(d, c);
    return KV_OK;
}

static void session_discard(kvp_dispatcher *d, kvp_client *c)
{
    kvp_client_reply_str(c, "+OK\r\n");
    session_end(d, c);
}

/* RESET, as Redis: no transaction, no WATCH, no subscription, no name,
 * logged out when a password is needed. */
static void session_reset(kvp_dispatcher *d, kvp_client *c)
{
    session_end(d, c);
    if (d->pubsub)
        kvp_pubsub_client_gone(d->pubsub, c);
    free(c->name);
    c->name = NULL;
    c->authed = kvp_g.client_password[0] == '\0';
    c->resp = 2; /* RESET goes back to RESP2, as in Redis */
    kvp_dispatch_release(d, c); /* its own connection too, after what it sent on it */
    kvp_client_reply_str(c, "+RESET\r\n");
}

/* ---------------------------------------------------------------- queue */

static void queue_append(kvp_session *s, int argc, const kv_str *argv)
{
    kv_resp_write_count(&s->queue, '*', argc);
    for (int i = 0; i < argc; i++)
        kv_resp_write_bulk(&s->queue, argv[i].p, argv[i].len);
}

/* A command while QUEUING: +QUEUED, or its error (and the transaction is
 * aborted). KV_AGAIN: parked (no table to check its keys with yet). */
static int session_queue(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    kvp_session *s = c->session;
    int rc = kvp_dispatch_tx_check(d, c, &cmd, argc, argv, &s->bucket);
    if (rc == KV_AGAIN)
        return KV_AGAIN;
    if (rc != KV_OK) {
        s->aborted = 1;
        return KV_OK;
    }
    size_t bytes = 24 * ((size_t)argc + 1); /* headers, at most */
    for (int i = 0; i < argc; i++)
        bytes += argv[i].len;
    if (s->ncmds >= KVP_TX_MAX_CMDS || kv_buf_len(&s->queue) + bytes > KVP_TX_MAX_BYTES) {
        kvp_client_reply_str(c, KVP_ERR_TX_TOO_BIG);
        s->aborted = 1;
        return KV_OK;
    }
    size_t mark = kv_buf_mark(&s->queue);
    queue_append(s, argc, argv);
    if (kv_buf_settle(&s->queue, mark) != KV_OK) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        s->aborted = 1;
        return KV_OK;
    }
    s->ncmds++;
    c->session_mem = s->queue.cap;
    kvp_client_reply_str(c, "+QUEUED\r\n");
    return KV_OK;
}

/* ------------------------------------------------------------- dispatch */

/* A client QUEUING: what Redis runs at once (EXEC, DISCARD, MULTI, WATCH,
 * QUIT), the rest queued. */
static int session_queuing(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    int local = cmd ? cmd->local : KVP_LOCAL_NONE;
    switch (local) {
    case KVP_LOCAL_EXEC:
        return session_exec(d, c, cmd);
    case KVP_LOCAL_DISCARD:
        session_discard(d, c);
        return KV_OK;
    case KVP_LOCAL_MULTI:
        kvp_client_reply_str(c, KVP_ERR_MULTI_NESTED);
        return KV_OK;
    case KVP_LOCAL_WATCH:
        kvp_client_reply_str(c, KVP_ERR_WATCH_IN_MULTI);
        return KV_OK;
    case KVP_LOCAL_QUIT:
        return kvp_dispatch_cmd(d, c, cmd, argc, argv);
    case KVP_LOCAL_RESET:
        session_reset(d, c);
        return KV_OK;
    default:
        return session_queue(d, c, cmd, argc, argv);
    }
}

/* A client with a subscription (RESP2): the SUBSCRIBE family, PING, QUIT
 * and RESET; anything else is refused as Redis refuses it (after its own
 * checks: unknown, arity). */
static int session_subscribed(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    if (kvp_dispatch_check(d, c, &cmd, argc, argv) != KV_OK)
        return KV_OK;
    switch (cmd->local) {
    case KVP_LOCAL_SUB:
    case KVP_LOCAL_UNSUB:
    case KVP_LOCAL_PSUB:
    case KVP_LOCAL_PUNSUB:
    case KVP_LOCAL_SSUB:
    case KVP_LOCAL_SUNSUB:
        return kvp_pubsub_command(d->pubsub, c, cmd, argc, argv);
    case KVP_LOCAL_PING:
        kvp_pubsub_ping(c, argc, argv);
        return KV_OK;
    case KVP_LOCAL_QUIT:
        return kvp_dispatch_cmd(d, c, cmd, argc, argv);
    case KVP_LOCAL_RESET:
        session_reset(d, c);
        return KV_OK;
    default:
        kvp_pubsub_refuse(c, cmd, argc, argv);
        return KV_OK;
    }
}

int kvp_session_command(void *ctx, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    kvp_dispatcher *d = ctx;
    if (c->session != NULL)
        return session_queuing(d, c, cmd, argc, argv);
    if (c->subscribed && c->resp != 3 && d->pubsub != NULL)
        return session_subscribed(d, c, cmd, argc, argv);
    /* a SESSION or PUBSUB command, checked by the dispatcher */
    if (kvp_policy_cls(d->pol, cmd) == KVP_CLASS_PUBSUB && d->pubsub != NULL)
        return kvp_pubsub_command(d->pubsub, c, cmd, argc, argv);
    switch (cmd->local) {
    case KVP_LOCAL_MULTI:
        session_multi(c);
        return KV_OK;
    case KVP_LOCAL_EXEC:
        kvp_client_reply_str(c, KVP_ERR_EXEC_NO_MULTI);
        return KV_OK;
    case KVP_LOCAL_DISCARD:
        kvp_client_reply_str(c, KVP_ERR_DISCARD_NO_MULTI);
        return KV_OK;
    case KVP_LOCAL_WATCH:
        return kvp_dispatch_watch(d, c, cmd, argc, argv);
    case KVP_LOCAL_UNWATCH:
        kvp_dispatch_unpin(d, c);
        kvp_client_reply_str(c, "+OK\r\n");
        return KV_OK;
    case KVP_LOCAL_RESET:
        session_reset(d, c);
        return KV_OK;
    default:
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
        return KV_OK;
    }
}

void kvp_session_client_gone(void *ctx, kvp_client *c)
{
    kvp_dispatcher *d = ctx;
    session_free(c);
    if (d->pubsub)
        kvp_pubsub_client_gone(d->pubsub, c);
    kvp_dispatch_client_gone(ctx, c);
}
