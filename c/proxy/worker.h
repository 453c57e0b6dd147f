/* worker.h -- the io_threads event loops of the data path, and the control
 * thread's handle on them (lkvp.c).
 *
 * Each worker owns an event loop, a listener (SO_REUSEPORT), its clients
 * (client.h), its connections to every master (backend.h), its requests
 * (req.h) and its dispatcher (dispatch.h); nothing on the request path is
 * shared between workers or locked. The control thread talks to a worker
 * only through its message queue (mutex + eventfd): new tables and the
 * health check's verdicts; workers report drained tables back the same way.
 * Workers never enter Lua. */
#ifndef KVP_WORKER_H
#define KVP_WORKER_H

#include "table.h"
#include "replicas.h"

#include <stddef.h>
#include <stdint.h>

int kvp_workers_start(char *err, size_t errlen);
/* Control thread: every worker leaves its loop and frees its clients
 * (closed without a reply), backends, requests and tables; the threads are
 * joined and the listeners closed. Nothing is left to free (a clean exit
 * for LeakSanitizer); start may run again after it. */
void kvp_workers_stop(void);
/* Every worker installs t (each takes a reference). */
void kvp_workers_post_table(kvp_table *t);
/* Every worker reads from s's replicas from now on (each takes a
 * reference; NULL: no replica reads). */
void kvp_workers_post_replicas(kvp_replica_set *s);
/* The health check's verdict on a master, for every worker. */
void kvp_workers_post_backend_state(const char *addr, int down);
/* Control thread: drained-table reports (worker i has nothing in flight
 * routed with a table older than version), read when notify_fd is readable. */
typedef void (*kvp_drained_fn)(int worker, uint64_t version);
int kvp_workers_poll_drained(kvp_drained_fn fn);
int kvp_workers_notify_fd(void);
/* Sums of every worker's counters; returns the number of workers. */
int kvp_workers_stats(uint64_t *total, uint64_t *slow, uint64_t *rt_sum, uint64_t *rt_count,
                      uint64_t *cmd, int ncmd);

#endif
