/* dispatch_keyspace.h -- commands that return key names the masters store
 * (class KEYSPACE): SCAN walks one master per call with a cursor that names
 * the master (keyspace.h), KEYS asks every master, RANDOMKEY every master,
 * asking a master again when it answers a key that is not the namespace's.
 * The names are filtered and stripped of their "<bucket>_" prefix by the
 * merges (merge.c). Same layer as dispatch.c, which calls in; nothing here
 * calls dispatch.c. */
#ifndef KVP_DISPATCH_KEYSPACE_H
#define KVP_DISPATCH_KEYSPACE_H

#include "dispatch.h"

/* Always answers (or queues a request): returns KV_OK. d->table is set. */
int kvp_dispatch_keyspace(kvp_dispatcher *d, kvp_client *c, const kvp_cmd *cmd, int argc, kv_str *argv);

#endif
