/* router.h -- a worker's own LuaJIT state for the policy's route functions
 * (issue 13: `route = function(key, cmd)` in a rule of lua/policy.lua).
 *
 * The OpenResty model: one Lua VM per worker thread, no lock, no sharing;
 * the JIT compiles the functions like any Lua code. The control thread
 * never runs them. A state is made the first time a key matches a rule
 * with a route under a policy, by compiling that policy's source with
 * kv.policy (the same sandbox the config server checked it in); a new
 * policy replaces the state. Keys of other rules never reach Lua.
 *
 * A function's result: a string is routed as a key would be (the table's
 * hash, hash tags when on); an integer 0..bucket_count-1 is the bucket.
 * Anything else, or an error, answers the command with an error naming
 * the rule; the worker goes on. A function that runs away while LuaJIT
 * interprets it is stopped after a budget of instructions; a loop the JIT
 * has compiled is not counted (LuaJIT calls count hooks only in the
 * interpreter), so a policy whose function never returns blocks its
 * worker, as a Lua loop blocks an OpenResty worker: the config server's
 * check runs each function before it publishes (kvcs). */
#ifndef KVP_ROUTER_H
#define KVP_ROUTER_H

#include "policy.h"
#include "table.h"

typedef struct kvp_router kvp_router;

kvp_router *kvp_router_new(void);
void kvp_router_free(kvp_router *r);

/* The dispatcher's route_key (ctx = the router): the bucket of key under
 * rule `rule` of p, or KV_ERR with err (a client-safe line). */
int kvp_router_route(void *ctx, const kvp_policy *p, int rule, const char *key, size_t len, const kvp_cmd *cmd,
                     const kvp_table *t, uint32_t *bucket, char *err, size_t errlen);

#endif
