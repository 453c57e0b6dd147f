/* pubsub.c -- see pubsub.h.
 *
 * Structures (one set per worker):
 *   entry   a channel, pattern or shard channel some client of the worker
 *           wants (or wanted, while an UNSUBSCRIBE is unconfirmed): its
 *           members (client, slot), the subscriber connection it is on
 *           (channels), and its confirmations outstanding. In a hash by
 *           (kind, name).
 *   client  c->pubsub: the client's subscriptions (entry, member index,
 *           the gate its confirmation waits on) and counts per kind.
 *   gate    a command's reply held in the client's FIFO until the masters
 *           confirmed what it subscribed.
 *   conn    a subscriber connection and the ring of (entry, sub/unsub) it
 *           sent, in order: Redis confirms each name of a (P|S)(UN)SUBSCRIBE
 *           in order, so each confirmation pops the ring's head, and a
 *           connection that breaks gives back exactly what it owed.
 * A member is confirmed (gets messages) when its subscription has no gate. */
#include "pubsub.h"
#include "errors.h"
#include "../core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { PS_CHANNEL, PS_PATTERN, PS_SHARD, PS_KINDS };

typedef struct ps_entry ps_entry;
typedef struct ps_client ps_client;
typedef struct ps_gate ps_gate;

typedef struct ps_member {
    ps_client *pc;
    uint32_t slot;            /* its subscription in pc->subs */
} ps_member;

struct ps_entry {
    ps_entry *hnext;
    uint32_t hash;
    uint8_t kind;
    uint8_t live;             /* confirmed on its master(s), nothing pending:
                               * a new member is confirmed at once */
    int conn;                 /* channels: its subscriber connection, -1 none */
    uint32_t pend;            /* SUBSCRIBE confirmations owed */
    uint32_t unsub_pend;      /* UNSUBSCRIBE confirmations owed */
    ps_member *m;
    uint32_t n, cap;
    size_t len;
    char name[];
};

typedef struct ps_sub {
    ps_entry *e;
    uint32_t midx;            /* its member in e->m */
    ps_gate *gate;            /* unconfirmed: the reply waiting for it */
} ps_sub;

struct ps_client {
    kvp_client *c;
    ps_sub *subs;
    uint32_t n, cap;
    int count[PS_KINDS];
    ps_gate *gates;           /* its gates, oldest first (g->next) */
};

struct ps_gate {
    ps_gate *next;            /* the client's list */
    ps_gate *wprev, *wnext;   /* the worker's list, oldest first (timeouts) */
    ps_client *pc;
    kvp_req *r;               /* its place in the client's FIFO */
    uint32_t pending;
    uint64_t since_ms;
    kv_buf bytes;
};

typedef struct ps_op {
    ps_entry *e;
    uint8_t unsub;
} ps_op;

typedef struct ps_conn {
    kvp_pubsub *ps;
    int idx;
    kvp_backend *be;          /* NULL: slot free */
    int in_table;
    int was_ready;            /* READY before: a READY now is a reconnect */
    ps_op *ops;
    uint32_t head, len, cap;  /* ring, cap a power of two */
} ps_conn;

struct kvp_pubsub {
    kvp_backends *backends;
    kvp_clock *clock;
    kvp_wstats *st;
    int worker;
    kvp_table *table;
    ps_entry **hash;
    uint32_t nhash, nentries;
    ps_conn **conns;
    int nconns;
    ps_gate *gates_head, *gates_tail;
    kv_buf out;               /* a command's reply being built */
};

static const char *const SUB_CMD[PS_KINDS] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"};
static const char *const UNSUB_CMD[PS_KINDS] = {"UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"};
static const char *const SUB_REPLY[PS_KINDS] = {"subscribe", "psubscribe", "ssubscribe"};
static const char *const UNSUB_REPLY[PS_KINDS] = {"unsubscribe", "punsubscribe", "sunsubscribe"};

/* ------------------------------------------------------------------ wire
 * What clients read, in one place: arrays for a RESP2 client, '>' pushes
 * (the same elements) for a RESP3 one. */

/* A (un)subscribe confirmation: [kind, name or nil, count]. */
static void wire_confirm(kv_buf *out, int resp3, const char *kind, const char *name, size_t len,
                         long long count)
{
    kv_resp_write_count(out, resp3 ? '>' : '*', 3);
    kv_resp_write_bulk(out, kind, strlen(kind));
    if (name)
        kv_resp_write_bulk(out, name, len);
    else if (resp3)
        kv_buf_append(out, "_\r\n", 3);
    else
        kv_buf_append(out, "$-1\r\n", 5);
    kv_resp_write_count(out, ':', count);
}

/* A message as the master pushed it on a RESP2 subscriber connection
 * ("message", "pmessage", "smessage" arrays): as it is for a RESP2
 * client; for a RESP3 one the array header becomes a push's. */
static void wire_message(kvp_client *c, const char *p, size_t n)
{
    if (c->resp == 3 && n > 1 && p[0] == '*') {
        kvp_client_reply(c, ">", 1);
        kvp_client_reply(c, p + 1, n - 1);
        return;
    }
    kvp_client_reply(c, p, n);
}

void kvp_pubsub_ping(kvp_client *c, int argc, const kv_str *argv)
{
    kv_buf b;
    kv_buf_init(&b, KVP_OUT_MAX);
    kv_resp_write_count(&b, '*', 2);
    kv_resp_write_bulk(&b, "pong", 4);
    if (argc > 1)
        kv_resp_write_bulk(&b, argv[1].p, argv[1].len);
    else
        kv_resp_write_bulk(&b, "", 0);
    if (b.failed)
        kvp_client_reply_str(c, KVP_ERR_OOM);
    else
        kvp_client_reply(c, kv_buf_rptr(&b), kv_buf_len(&b));
    kv_buf_deinit(&b);
}

void kvp_pubsub_refuse(kvp_client *c, const kvp_cmd *cmd, int argc, const kv_str *argv)
{
    char name[96];
    /* containers the proxy keeps whole are named as Redis names the
     * subcommand ("client|list") */
    if (cmd->parent == NULL && argc > 1 && (cmd->local == KVP_LOCAL_CLIENT || strcmp(cmd->name, "command") == 0)) {
        int l = snprintf(name, sizeof(name), "%s|%.*s", cmd->name,
                         (int)(argv[1].len > 40 ? 40 : argv[1].len), argv[1].p);
        for (int i = 0; i < l && i < (int)sizeof(name); i++)
            name[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    } else {
        snprintf(name, sizeof(name), "%s", cmd->name);
    }
    kvp_client_reply_err(c, KVP_ERR_PUBSUB_CONTEXT_FMT, name);
}

/* --------------------------------------------------------------- entries */

static uint32_t entry_hash(int kind, const char *p, size_t len)
{
    uint32_t h = 2166136261u ^ (uint32_t)kind;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static ps_entry *entry_find(kvp_pubsub *ps, int kind, const char *p, size_t len)
{
    uint32_t h = entry_hash(kind, p, len);
    for (ps_entry *e = ps->hash[h & (ps->nhash - 1)]; e; e = e->hnext)
        if (e->hash == h && e->kind == kind && e->len == len && memcmp(e->name, p, len) == 0)
            return e;
    return NULL;
}

static void hash_grow(kvp_pubsub *ps)
{
    uint32_t nn = ps->nhash * 2;
    ps_entry **nh = calloc(nn, sizeof(*nh));
    if (nh == NULL)
        return; /* longer chains, still correct */
    for (uint32_t i = 0; i < ps->nhash; i++) {
        ps_entry *e = ps->hash[i];
        while (e) {
            ps_entry *next = e->hnext;
            e->hnext = nh[e->hash & (nn - 1)];
            nh[e->hash & (nn - 1)] = e;
            e = next;
        }
    }
    free(ps->hash);
    ps->hash = nh;
    ps->nhash = nn;
}

static int conn_for_channel(kvp_pubsub *ps, const char *name, size_t len);

static ps_entry *entry_new(kvp_pubsub *ps, int kind, const char *p, size_t len)
{
    ps_entry *e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
        return NULL;
    e->kind = (uint8_t)kind;
    e->len = len;
    memcpy(e->name, p, len);
    e->hash = entry_hash(kind, p, len);
    e->conn = kind == PS_PATTERN ? -1 : conn_for_channel(ps, p, len);
    if (ps->nentries >= ps->nhash)
        hash_grow(ps);
    uint32_t b = e->hash & (ps->nhash - 1);
    e->hnext = ps->hash[b];
    ps->hash[b] = e;
    ps->nentries++;
    return e;
}

/* Freed once nobody wants it and nothing about it is owed by a master. */
static void entry_maybe_free(kvp_pubsub *ps, ps_entry *e)
{
    if (e->n > 0 || e->pend > 0 || e->unsub_pend > 0)
        return;
    ps_entry **pp = &ps->hash[e->hash & (ps->nhash - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    ps->nentries--;
    free(e->m);
    free(e);
}

/* --------------------------------------------------------- connections */

static void conn_push(void *ctx, kvp_backend *be, const char *p, size_t n);
static void conn_state(void *ctx, kvp_backend *be, int ready);

/* The subscriber connection to addr: found, or opened. -1: out of memory. */
static int conn_get(kvp_pubsub *ps, const char *addr)
{
    int free_slot = -1;
    for (int i = 0; i < ps->nconns; i++) {
        ps_conn *k = ps->conns[i];
        if (k->be == NULL) {
            if (free_slot < 0)
                free_slot = i;
        } else if (strcmp(k->be->addr, addr) == 0) {
            return i;
        }
    }
    if (free_slot < 0) {
        ps_conn **nc = realloc(ps->conns, (size_t)(ps->nconns + 1) * sizeof(*nc));
        if (nc == NULL)
            return -1;
        ps->conns = nc;
        ps_conn *k = calloc(1, sizeof(*k));
        if (k == NULL)
            return -1;
        k->ps = ps;
        k->idx = ps->nconns;
        ps->conns[ps->nconns] = k;
        free_slot = ps->nconns++;
    }
    ps_conn *k = ps->conns[free_slot];
    k->in_table = 1;
    k->was_ready = 0;
    k->head = k->len = 0;
    k->be = kvp_backends_subscriber(ps->backends, addr, conn_push, conn_state, k);
    if (k->be == NULL)
        return -1;
    kv_log_info("worker %d: pub/sub connection to %s opened", ps->worker, addr);
    return free_slot;
}

static int conn_for_channel(kvp_pubsub *ps, const char *name, size_t len)
{
    const kvp_table *t = ps->table;
    if (t == NULL)
        return -1;
    uint32_t b = kvp_table_bucket(t, name, len);
    return conn_get(ps, t->servers[t->owner[b]]);
}

static int conn_ready(const kvp_pubsub *ps, int i)
{
    return i >= 0 && ps->conns[i]->be != NULL && ps->conns[i]->be->state == KVP_BE_READY;
}

static int ring_push(ps_conn *k, ps_entry *e, int unsub)
{
    if (k->len == k->cap) {
        uint32_t nc = k->cap ? k->cap * 2 : 64;
        ps_op *no = malloc(nc * sizeof(*no));
        if (no == NULL)
            return KV_ENOMEM;
        for (uint32_t i = 0; i < k->len; i++)
            no[i] = k->ops[(k->head + i) & (k->cap - 1)];
        free(k->ops);
        k->ops = no;
        k->cap = nc;
        k->head = 0;
    }
    ps_op *o = &k->ops[(k->head + k->len) & (k->cap - 1)];
    o->e = e;
    o->unsub = (uint8_t)unsub;
    k->len++;
    return KV_OK;
}

/* (UN)SUBSCRIBE e on connection i, when it is READY (else the ready
 * callback subscribes what is wanted). */
static void conn_send(kvp_pubsub *ps, int i, ps_entry *e, int unsub)
{
    if (!conn_ready(ps, i))
        return;
    ps_conn *k = ps->conns[i];
    kv_buf *out = &k->be->out;
    const char *cmd = unsub ? UNSUB_CMD[e->kind] : SUB_CMD[e->kind];
    size_t mark = kv_buf_mark(out);
    kv_resp_write_count(out, '*', 2);
    kv_resp_write_bulk(out, cmd, strlen(cmd));
    kv_resp_write_bulk(out, e->name, e->len);
    if (ring_push(k, e, unsub) != KV_OK) {
        out->failed = 1;
        kv_buf_settle(out, mark);
        kv_log_every(1000, KV_LOG_ERROR, "worker %d: out of memory for a pub/sub %s", ps->worker, cmd);
        return;
    }
    if (kvp_backend_send_push(k->be, mark) != KV_OK) {
        k->len--; /* taken back: never sent */
        kv_log_every(1000, KV_LOG_ERROR, "worker %d: out of memory for a pub/sub %s", ps->worker, cmd);
        return;
    }
    if (unsub)
        e->unsub_pend++;
    else
        e->pend++;
}

/* The first member came: subscribe on the entry's master(s). */
static void entry_want(kvp_pubsub *ps, ps_entry *e)
{
    if (e->kind != PS_PATTERN) {
        conn_send(ps, e->conn, e, 0);
        return;
    }
    /* every master of the table, connected to now if need be (a new
     * connection subscribes it once ready) */
    const kvp_table *t = ps->table;
    for (int s = 0; t != NULL && s < t->nservers; s++)
        conn_get(ps, t->servers[s]);
    for (int i = 0; i < ps->nconns; i++)
        if (ps->conns[i]->in_table)
            conn_send(ps, i, e, 0);
}

/* The last member left: unsubscribe (freed once confirmed). */
static void entry_unwant(kvp_pubsub *ps, ps_entry *e)
{
    e->live = 0;
    if (e->kind != PS_PATTERN) {
        conn_send(ps, e->conn, e, 1);
    } else {
        for (int i = 0; i < ps->nconns; i++)
            if (ps->conns[i]->be != NULL)
                conn_send(ps, i, e, 1);
    }
    entry_maybe_free(ps, e);
}

/* ----------------------------------------------------------------- gates */

static void gate_release(kvp_pubsub *ps, ps_gate *g)
{
    ps_client *pc = g->pc;
    ps_gate **pp = &pc->gates;
    while (*pp != g)
        pp = &(*pp)->next;
    *pp = g->next;
    if (g->wprev)
        g->wprev->wnext = g->wnext;
    else
        ps->gates_head = g->wnext;
    if (g->wnext)
        g->wnext->wprev = g->wprev;
    else
        ps->gates_tail = g->wprev;
    if (g->bytes.failed)
        kvp_req_frag_reply(g->r, 0, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
    else
        kvp_req_frag_reply(g->r, 0, kv_buf_rptr(&g->bytes), kv_buf_len(&g->bytes));
    kv_buf_deinit(&g->bytes);
    free(g);
}

static void gate_dec(kvp_pubsub *ps, ps_gate *g)
{
    if (--g->pending == 0)
        gate_release(ps, g);
}

/* A gate for the reply being built for pc's client: a request holding its
 * place in the client's FIFO. NULL: out of memory (then nothing waits). */
static ps_gate *gate_new(kvp_pubsub *ps, ps_client *pc)
{
    ps_gate *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->r = kvp_client_req_new(pc->c, KVP_MERGE_NONE, 1);
    if (g->r == NULL) {
        free(g);
        return NULL;
    }
    kvp_req_sent(g->r);
    kv_buf_init(&g->bytes, KVP_OUT_MAX);
    g->pc = pc;
    g->since_ms = ps->clock->now_ms;
    ps_gate **pp = &pc->gates;
    while (*pp)
        pp = &(*pp)->next;
    *pp = g;
    g->wprev = ps->gates_tail;
    if (ps->gates_tail)
        ps->gates_tail->wnext = g;
    else
        ps->gates_head = g;
    ps->gates_tail = g;
    return g;
}

/* The entry is confirmed everywhere: its members get messages, and the
 * replies that waited for it go out. */
static void entry_live(kvp_pubsub *ps, ps_entry *e)
{
    e->live = 1;
    for (uint32_t i = 0; i < e->n; i++) {
        ps_sub *s = &e->m[i].pc->subs[e->m[i].slot];
        ps_gate *g = s->gate;
        if (g) {
            s->gate = NULL;
            gate_dec(ps, g);
        }
    }
}

/* --------------------------------------------------------------- clients */

static ps_client *client_get(kvp_client *c)
{
    if (c->pubsub == NULL) {
        ps_client *pc = calloc(1, sizeof(*pc));
        if (pc == NULL)
            return NULL;
        pc->c = c;
        c->pubsub = pc;
    }
    return c->pubsub;
}

static long long client_count(const ps_client *pc, int kind)
{
    /* as Redis: channels and patterns together, shard channels apart */
    return kind == PS_SHARD ? pc->count[PS_SHARD] : pc->count[PS_CHANNEL] + pc->count[PS_PATTERN];
}

/* pc's subscription to e (its slot), or -1. The shorter of the two lists
 * is walked: a client with 10 000 channels, or a channel with 10 000
 * clients, costs the other side's length. */
static int client_find(const ps_client *pc, const ps_entry *e)
{
    if (e->n < pc->n) {
        for (uint32_t i = 0; i < e->n; i++)
            if (e->m[i].pc == pc)
                return (int)e->m[i].slot;
        return -1;
    }
    for (uint32_t i = 0; i < pc->n; i++)
        if (pc->subs[i].e == e)
            return (int)i;
    return -1;
}

/* pc joins e; its subscription waits on gate g when e is not live yet. */
static int client_add(kvp_pubsub *ps, ps_client *pc, ps_entry *e)
{
    if (pc->n == pc->cap) {
        uint32_t nc = pc->cap ? pc->cap * 2 : 4;
        ps_sub *ns = realloc(pc->subs, nc * sizeof(*ns));
        if (ns == NULL)
            return KV_ENOMEM;
        pc->subs = ns;
        pc->cap = nc;
    }
    if (e->n == e->cap) {
        uint32_t nc = e->cap ? e->cap * 2 : 4;
        ps_member *nm = realloc(e->m, nc * sizeof(*nm));
        if (nm == NULL)
            return KV_ENOMEM;
        e->m = nm;
        e->cap = nc;
    }
    ps_sub *s = &pc->subs[pc->n];
    s->e = e;
    s->midx = e->n;
    s->gate = NULL;
    e->m[e->n].pc = pc;
    e->m[e->n].slot = pc->n;
    pc->n++;
    e->n++;
    pc->count[e->kind]++;
    if (e->n == 1)
        entry_want(ps, e);
    return KV_OK;
}

/* pc leaves its subscription at slot i. */
static void client_remove(kvp_pubsub *ps, ps_client *pc, uint32_t i)
{
    ps_sub *s = &pc->subs[i];
    ps_entry *e = s->e;
    ps_gate *g = s->gate;
    s->gate = NULL;
    uint32_t mi = s->midx;
    e->m[mi] = e->m[--e->n];
    if (mi < e->n)
        e->m[mi].pc->subs[e->m[mi].slot].midx = mi;
    pc->subs[i] = pc->subs[--pc->n];
    if (i < pc->n)
        pc->subs[i].e->m[pc->subs[i].midx].slot = i;
    pc->count[e->kind]--;
    if (g)
        gate_dec(ps, g); /* its reply goes before the unsubscribe's */
    if (e->n == 0)
        entry_unwant(ps, e);
}

int kvp_pubsub_subscribed(const kvp_client *c)
{
    const ps_client *pc = c->pubsub;
    return pc != NULL && pc->n > 0;
}

/* In subscribed mode while a subscription is held; the struct goes with
 * the last subscription once nothing waits either. */
static void client_maybe_free(kvp_client *c)
{
    ps_client *pc = c->pubsub;
    c->subscribed = pc != NULL && pc->n > 0;
    if (pc == NULL || pc->n > 0 || pc->gates != NULL)
        return;
    free(pc->subs);
    free(pc);
    c->pubsub = NULL;
}

void kvp_pubsub_client_gone(kvp_pubsub *ps, kvp_client *c)
{
    ps_client *pc = c->pubsub;
    if (pc == NULL)
        return;
    while (pc->n > 0)
        client_remove(ps, pc, pc->n - 1);
    while (pc->gates) /* none should be left: each waited on a subscription */
        gate_release(ps, pc->gates);
    client_maybe_free(c);
}

/* ------------------------------------------------------------- commands */

/* The reply built in ps->out goes to the client: through gate g when some
 * of it waits for a master, else now. */
static void reply_out(kvp_pubsub *ps, kvp_client *c, ps_gate *g)
{
    kv_buf *b = &ps->out;
    if (g) {
        kv_buf_append(&g->bytes, kv_buf_rptr(b), kv_buf_len(b));
        if (b->failed)
            g->bytes.failed = 1;
    } else if (b->failed) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
    } else {
        kvp_client_reply(c, kv_buf_rptr(b), kv_buf_len(b));
    }
    kv_buf_consume(b, kv_buf_len(b));
    b->failed = 0;
    kv_buf_shrink(b, 16 * 1024);
}

static void cmd_subscribe(kvp_pubsub *ps, kvp_client *c, int kind, int argc, const kv_str *argv)
{
    ps_client *pc = client_get(c);
    if (pc == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    ps_gate *g = NULL;
    for (int a = 1; a < argc; a++) {
        const kv_str *nm = &argv[a];
        ps_entry *e = entry_find(ps, kind, nm->p, nm->len);
        if (e == NULL || client_find(pc, e) < 0) {
            if ((e == NULL && (e = entry_new(ps, kind, nm->p, nm->len)) == NULL) ||
                client_add(ps, pc, e) != KV_OK) {
                if (e)
                    entry_maybe_free(ps, e);
                ps->out.failed = 1;
                break;
            }
            if (!e->live) {
                /* the master has not confirmed it yet: this reply waits */
                if (g == NULL)
                    g = gate_new(ps, pc);
                if (g) {
                    pc->subs[pc->n - 1].gate = g;
                    g->pending++;
                } else {
                    kv_log_every(1000, KV_LOG_WARN, "worker %d: out of memory: a subscribe confirmed "
                                 "before its master did", ps->worker);
                }
            }
        }
        wire_confirm(&ps->out, c->resp == 3, SUB_REPLY[kind], nm->p, nm->len, client_count(pc, kind));
    }
    reply_out(ps, c, g);
    client_maybe_free(c);
}

static void cmd_unsubscribe(kvp_pubsub *ps, kvp_client *c, int kind, int argc, const kv_str *argv)
{
    ps_client *pc = c->pubsub;
    if (argc == 1) {
        /* every subscription of the kind, one reply each; nil when none */
        int any = 0;
        for (uint32_t i = pc ? pc->n : 0; i-- > 0;) {
            if (i >= pc->n || pc->subs[i].e->kind != kind)
                continue;
            ps_entry *e = pc->subs[i].e;
            /* written before it goes (e may be freed with it), with the
             * count it leaves */
            wire_confirm(&ps->out, c->resp == 3, UNSUB_REPLY[kind], e->name, e->len, client_count(pc, kind) - 1);
            client_remove(ps, pc, i);
            any = 1;
        }
        if (!any)
            wire_confirm(&ps->out, c->resp == 3, UNSUB_REPLY[kind], NULL, 0, pc ? client_count(pc, kind) : 0);
    } else {
        for (int a = 1; a < argc; a++) {
            const kv_str *nm = &argv[a];
            ps_entry *e = pc ? entry_find(ps, kind, nm->p, nm->len) : NULL;
            int i = e ? client_find(pc, e) : -1;
            if (i >= 0)
                client_remove(ps, pc, (uint32_t)i);
            wire_confirm(&ps->out, c->resp == 3, UNSUB_REPLY[kind], nm->p, nm->len, pc ? client_count(pc, kind) : 0);
        }
    }
    reply_out(ps, c, NULL);
    client_maybe_free(c);
}

/* PUBLISH / SPUBLISH: to the shared connection of the channel's master,
 * as it is (the channel is not prefixed). */
static void cmd_publish(kvp_pubsub *ps, kvp_client *c, int argc, const kv_str *argv)
{
    const kvp_table *t = ps->table;
    if (t == NULL) {
        kvp_client_reply_str(c, KVP_ERR_NO_TABLE);
        return;
    }
    uint32_t b = kvp_table_bucket(t, argv[1].p, argv[1].len);
    kvp_backend *be = kvp_backends_get(ps->backends, t->servers[t->owner[b]]);
    if (be == NULL || !kvp_backend_usable(be)) {
        if (be)
            kvp_client_reply(c, be->unavailable, be->unavailable_len);
        else
            kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    kvp_req *r = kvp_client_req_new(c, KVP_MERGE_NONE, 1);
    if (r == NULL) {
        kvp_client_reply_str(c, KVP_ERR_OOM);
        return;
    }
    kvp_req_routed(r);
    size_t mark = kv_buf_mark(&be->out);
    kv_resp_write_count(&be->out, '*', argc);
    for (int i = 0; i < argc; i++)
        kv_resp_write_bulk(&be->out, argv[i].p, argv[i].len);
    if (kvp_backend_send(be, mark, kvp_req_on_reply, r, 0) != KV_OK)
        kvp_req_frag_reply(r, 0, KVP_ERR_OOM, sizeof(KVP_ERR_OOM) - 1);
    kvp_req_sent(r);
}

static void count_cmd(kvp_pubsub *ps, const kvp_cmd *cmd)
{
    if (ps->st == NULL)
        return;
    kvp_stat_add(&ps->st->total, 1);
    if (ps->st->cmd)
        kvp_stat_add(&ps->st->cmd[cmd->id], 1);
}

int kvp_pubsub_command(kvp_pubsub *ps, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv)
{
    count_cmd(ps, cmd);
    switch (cmd->local) {
    case KVP_LOCAL_SUB:
        cmd_subscribe(ps, c, PS_CHANNEL, argc, argv);
        break;
    case KVP_LOCAL_PSUB:
        cmd_subscribe(ps, c, PS_PATTERN, argc, argv);
        break;
    case KVP_LOCAL_SSUB:
        cmd_subscribe(ps, c, PS_SHARD, argc, argv);
        break;
    case KVP_LOCAL_UNSUB:
        cmd_unsubscribe(ps, c, PS_CHANNEL, argc, argv);
        break;
    case KVP_LOCAL_PUNSUB:
        cmd_unsubscribe(ps, c, PS_PATTERN, argc, argv);
        break;
    case KVP_LOCAL_SUNSUB:
        cmd_unsubscribe(ps, c, PS_SHARD, argc, argv);
        break;
    case KVP_LOCAL_PUB:
    case KVP_LOCAL_SPUB:
        cmd_publish(ps, c, argc, argv);
        break;
    default:
        kvp_client_reply_err(c, KVP_ERR_UNSUPPORTED_FMT, cmd->name);
    }
    return KV_OK;
}

/* -------------------------------------------------------------- pushes */

/* The bulk string at *pos of p (n bytes): its bytes. KV_ERR if not one. */
static int read_bulk(const char *p, size_t n, size_t *pos, const char **s, size_t *len)
{
    size_t at = *pos;
    if (at >= n || p[at] != '$')
        return KV_ERR;
    const char *crlf = memchr(p + at, '\r', n - at);
    long long l;
    if (crlf == NULL || kv_parse_ll(p + at + 1, (size_t)(crlf - p - at - 1), &l) != KV_OK || l < 0)
        return KV_ERR;
    size_t body = (size_t)(crlf - p) + 2;
    if (body + (size_t)l + 2 > n)
        return KV_ERR;
    *s = p + body;
    *len = (size_t)l;
    *pos = body + (size_t)l + 2;
    return KV_OK;
}

static int word_is(const char *s, size_t len, const char *w)
{
    size_t wl = strlen(w);
    return len == wl && strncasecmp(s, w, wl) == 0;
}

/* A message: its bytes to every confirmed member. */
static void fan_out(ps_entry *e, const char *p, size_t n)
{
    for (uint32_t i = 0; i < e->n; i++) {
        ps_client *pc = e->m[i].pc;
        if (pc->subs[e->m[i].slot].gate == NULL)
            wire_message(pc->c, p, n);
    }
}

/* A confirmation from connection k of (un)subscribing name: the head of
 * its ring. */
static void confirmation(kvp_pubsub *ps, ps_conn *k, int kind, int unsub, const char *name, size_t len)
{
    ps_op *o = k->len ? &k->ops[k->head] : NULL;
    if (o == NULL || o->unsub != unsub || o->e->kind != kind || o->e->len != len ||
        memcmp(o->e->name, name, len) != 0) {
        kv_log_warn("worker %d: pub/sub connection to %s: unexpected %s confirmation, reconnecting",
                    ps->worker, k->be->addr, unsub ? UNSUB_REPLY[kind] : SUB_REPLY[kind]);
        kvp_backend_reconnect(k->be, "pub/sub confirmations out of order");
        return;
    }
    ps_entry *e = o->e;
    k->head = (k->head + 1) & (k->cap - 1);
    k->len--;
    if (unsub) {
        e->unsub_pend--;
        entry_maybe_free(ps, e);
    } else if (--e->pend == 0 && e->n > 0) {
        entry_live(ps, e);
    } else if (e->n == 0) {
        entry_maybe_free(ps, e);
    }
}

/* Everything Redis sends on a subscriber connection. */
static void conn_push(void *ctx, kvp_backend *be, const char *p, size_t n)
{
    ps_conn *k = ctx;
    kvp_pubsub *ps = k->ps;
    const char *crlf = memchr(p, '\r', n);
    long long count;
    size_t pos;
    const char *w, *name;
    size_t wl, nl;
    if (p[0] != '*' || crlf == NULL || kv_parse_ll(p + 1, (size_t)(crlf - p - 1), &count) != KV_OK ||
        count < 2 || (pos = (size_t)(crlf - p) + 2, read_bulk(p, n, &pos, &w, &wl)) != KV_OK ||
        read_bulk(p, n, &pos, &name, &nl) != KV_OK) {
        kv_log_warn("worker %d: pub/sub connection to %s: unexpected reply %.*s, reconnecting", ps->worker,
                    be->addr, (int)(n > 80 ? 80 : (n > 2 ? n - 2 : n)), p);
        kvp_backend_reconnect(be, "unexpected reply on a pub/sub connection");
        return;
    }
    ps_entry *e;
    if (word_is(w, wl, "message")) {
        if ((e = entry_find(ps, PS_CHANNEL, name, nl)) != NULL)
            fan_out(e, p, n);
    } else if (word_is(w, wl, "pmessage")) {
        if ((e = entry_find(ps, PS_PATTERN, name, nl)) != NULL)
            fan_out(e, p, n);
    } else if (word_is(w, wl, "smessage")) {
        if ((e = entry_find(ps, PS_SHARD, name, nl)) != NULL)
            fan_out(e, p, n);
    } else {
        for (int kind = 0; kind < PS_KINDS; kind++) {
            if (word_is(w, wl, SUB_REPLY[kind])) {
                confirmation(ps, k, kind, 0, name, nl);
                return;
            }
            if (word_is(w, wl, UNSUB_REPLY[kind])) {
                confirmation(ps, k, kind, 1, name, nl);
                return;
            }
        }
        /* anything else ("pong") carries nothing for us */
    }
}

/* What connection k owed is forgotten (it broke): the entries no longer
 * wait for it. */
static void conn_forget(kvp_pubsub *ps, ps_conn *k)
{
    while (k->len > 0) {
        ps_op o = k->ops[k->head];
        k->head = (k->head + 1) & (k->cap - 1);
        k->len--;
        if (o.unsub)
            o.e->unsub_pend--;
        else
            o.e->pend--;
    }
    for (uint32_t b = 0; b < ps->nhash; b++) {
        ps_entry *e = ps->hash[b];
        while (e) {
            ps_entry *next = e->hnext;
            if (e->kind != PS_PATTERN && e->conn == k->idx)
                e->live = 0; /* subscribed again, then confirmed, on reconnect */
            entry_maybe_free(ps, e);
            e = next;
        }
    }
}

/* Connection k is READY (again): everything wanted on it is subscribed. */
static void conn_resubscribe(kvp_pubsub *ps, ps_conn *k)
{
    int nch = 0, npat = 0;
    for (uint32_t b = 0; b < ps->nhash; b++)
        for (ps_entry *e = ps->hash[b]; e; e = e->hnext) {
            if (e->n == 0)
                continue;
            if (e->kind == PS_PATTERN ? k->in_table : e->conn == k->idx) {
                conn_send(ps, k->idx, e, 0);
                if (e->kind == PS_PATTERN)
                    npat++;
                else
                    nch++;
            }
        }
    if (k->was_ready && nch + npat > 0)
        kv_log_warn("worker %d: pub/sub connection to %s reconnected: subscribing %d channels and %d patterns "
                    "again (messages published meanwhile are lost)", ps->worker, k->be->addr, nch, npat);
    k->was_ready = 1;
}

static void conn_state(void *ctx, kvp_backend *be, int ready)
{
    ps_conn *k = ctx;
    KV_UNUSED(be);
    if (ready)
        conn_resubscribe(k->ps, k);
    else
        conn_forget(k->ps, k);
}

static void conn_close(kvp_pubsub *ps, ps_conn *k)
{
    kv_log_info("worker %d: pub/sub connection to %s closed (not in the table)", ps->worker, k->be->addr);
    kvp_backend_close(k->be);
    k->be = NULL;
    conn_forget(ps, k);
    k->in_table = 0;
}

/* ---------------------------------------------------------------- table */

void kvp_pubsub_table(kvp_pubsub *ps, kvp_table *t)
{
    kvp_table_ref(t);
    kvp_table_unref(ps->table);
    ps->table = t;
    int npat = 0;
    for (int i = 0; i < ps->nconns; i++)
        ps->conns[i]->in_table = 0;
    for (int s = 0; s < t->nservers; s++)
        for (int i = 0; i < ps->nconns; i++)
            if (ps->conns[i]->be && strcmp(ps->conns[i]->be->addr, t->servers[s]) == 0)
                ps->conns[i]->in_table = 1;
    /* channels follow their bucket's owner */
    for (uint32_t b = 0; b < ps->nhash; b++)
        for (ps_entry *e = ps->hash[b]; e; e = e->hnext) {
            if (e->kind == PS_PATTERN) {
                npat += e->n > 0;
                continue;
            }
            int to = conn_for_channel(ps, e->name, e->len);
            if (to == e->conn || to < 0)
                continue;
            if (e->n > 0) {
                conn_send(ps, e->conn, e, 1);
                e->conn = to;
                e->live = 0;
                conn_send(ps, to, e, 0);
                /* its members stay confirmed: they are subscribed, and
                 * the new master's confirmation is not theirs to wait for */
            } else {
                e->conn = to;
            }
        }
    /* patterns are on every master */
    if (npat > 0)
        for (int s = 0; s < t->nservers; s++)
            conn_get(ps, t->servers[s]); /* a new one subscribes them when ready */
    /* a master that left the table: its connection goes, with what it
     * carried (channels were moved above) */
    for (int i = 0; i < ps->nconns; i++)
        if (ps->conns[i]->be && !ps->conns[i]->in_table)
            conn_close(ps, ps->conns[i]);
}

void kvp_pubsub_tick(kvp_pubsub *ps)
{
    uint64_t limit = (uint64_t)kvp_conf_int(&kvp_g.request_timeout_ms);
    while (ps->gates_head && ps->clock->now_ms - ps->gates_head->since_ms > limit) {
        ps_gate *g = ps->gates_head;
        ps_client *pc = g->pc;
        kv_log_every(1000, KV_LOG_WARN, "worker %d: a master did not confirm a subscription within "
                     "request_timeout: the client is told it is subscribed (it is once the master is back)",
                     ps->worker);
        for (uint32_t i = 0; i < pc->n; i++)
            if (pc->subs[i].gate == g)
                pc->subs[i].gate = NULL;
        gate_release(ps, g);
    }
}

/* ------------------------------------------------------------- lifecycle */

kvp_pubsub *kvp_pubsub_new(kvp_backends *backends, kvp_clock *clock, kvp_wstats *st, int worker)
{
    kvp_pubsub *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return NULL;
    ps->backends = backends;
    ps->clock = clock;
    ps->st = st;
    ps->worker = worker;
    ps->nhash = 256;
    ps->hash = calloc(ps->nhash, sizeof(*ps->hash));
    kv_buf_init(&ps->out, KVP_OUT_MAX);
    if (ps->hash == NULL) {
        free(ps);
        return NULL;
    }
    return ps;
}

void kvp_pubsub_free(kvp_pubsub *ps)
{
    if (ps == NULL)
        return;
    for (int i = 0; i < ps->nconns; i++) {
        ps_conn *k = ps->conns[i];
        if (k->be)
            kvp_backend_close(k->be);
        free(k->ops);
        free(k);
    }
    free(ps->conns);
    for (uint32_t b = 0; b < ps->nhash; b++) {
        ps_entry *e = ps->hash[b];
        while (e) {
            ps_entry *next = e->hnext;
            free(e->m);
            free(e);
            e = next;
        }
    }
    free(ps->hash);
    kv_buf_deinit(&ps->out);
    kvp_table_unref(ps->table);
    free(ps);
}

int kvp_pubsub_conns(const kvp_pubsub *ps)
{
    int n = 0;
    for (int i = 0; i < ps->nconns; i++)
        n += ps->conns[i]->be != NULL;
    return n;
}

int kvp_pubsub_entries(const kvp_pubsub *ps)
{
    return (int)ps->nentries;
}
