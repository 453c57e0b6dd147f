/* pubsub.h -- pub/sub for the proxy's clients: SUBSCRIBE / PSUBSCRIBE /
 * SSUBSCRIBE and their UNSUBSCRIBEs, PUBLISH / SPUBLISH, and the subscribed
 * mode a client is in while it has a subscription.
 *
 * Where: a channel (and a shard channel) lives on the master its name
 * hashes to -- the same hash and bucket table as keys, the bucket's owner,
 * the name NOT prefixed, so two proxies of a namespace (and any client of
 * the master) share it. A pattern is subscribed on every master, since a
 * channel matching it may live on any.
 *
 * How: a worker does not give each subscribed client connections of its
 * own (1 000 subscribers x N masters would be 1 000 x N connections). Per
 * master it holds one subscriber connection (backend.h, KVP_BE_SUBSCRIBER)
 * carrying the union of its clients' subscriptions, reference-counted: the
 * first client of a channel makes the worker SUBSCRIBE on its master, the
 * last one leaving UNSUBSCRIBEs. Each message Redis pushes is looked up
 * (channel -> entry, pattern -> entry) and its bytes fanned out to the
 * entry's clients as they are: no allocation per message and client beyond
 * the client's output buffer, whose limits (client_output_*,
 * maxmemory_clients) bound a slow subscriber.
 *
 * Order: a client's "subscribe" confirmation is not written before the
 * master confirmed the subscription, when this client's command caused it
 * (else a PUBLISH sent right after the confirmation could be missed): the
 * command's reply then waits as a request in the client's FIFO (a "gate"),
 * behind which everything later for the client queues, and the client gets
 * no message of that channel before it. Counts in confirmations are the
 * client's own, as Redis computes them.
 *
 * Failures: a subscriber connection that breaks is reconnected and
 * everything is subscribed again (logged; messages in between are lost, as
 * with Redis). A new table that gives a channel's bucket to another master
 * moves the subscription there. A confirmation that does not come within
 * request_timeout is given to the client anyway (the subscription stays
 * wanted and is made when the master is back).
 *
 * Layering: beside the dispatcher, above backends and clients; the session
 * layer calls in. Replies are RESP2; confirmations, messages and the
 * subscribed PING reply are written in one place each (pubsub.c, "wire"),
 * so RESP3 pushes change only those. */
#ifndef KVP_PUBSUB_H
#define KVP_PUBSUB_H

#include "backend.h"
#include "client.h"
#include "command.h"
#include "table.h"

typedef struct kvp_pubsub kvp_pubsub;

kvp_pubsub *kvp_pubsub_new(kvp_backends *backends, kvp_clock *clock, kvp_wstats *st, int worker);
/* Subscriber connections closed, every structure freed (clients gone first). */
void kvp_pubsub_free(kvp_pubsub *ps);
/* The worker's new table: channels follow their bucket's owner, patterns
 * go onto every master of it. */
void kvp_pubsub_table(kvp_pubsub *ps, kvp_table *t);
/* Confirmations overdue (request_timeout): given to their clients. */
void kvp_pubsub_tick(kvp_pubsub *ps);

/* A command of class PUBSUB, checked (known, arity, a table in). */
int kvp_pubsub_command(kvp_pubsub *ps, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv);
/* c has a subscription: only the SUBSCRIBE family, PING, QUIT and RESET. */
int kvp_pubsub_subscribed(const kvp_client *c);
/* PING in subscribed mode: ["pong", arg or ""], as Redis answers it. */
void kvp_pubsub_ping(kvp_client *c, int argc, const kv_str *argv);
/* Any other command in subscribed mode: Redis's error. */
void kvp_pubsub_refuse(kvp_client *c, const kvp_cmd *cmd, int argc, const kv_str *argv);
/* c leaves every subscription (RESET, or c is closing): no reply. */
void kvp_pubsub_client_gone(kvp_pubsub *ps, kvp_client *c);

/* For tests: subscriber connections open, entries (channels + patterns). */
int kvp_pubsub_conns(const kvp_pubsub *ps);
int kvp_pubsub_entries(const kvp_pubsub *ps);

#endif
