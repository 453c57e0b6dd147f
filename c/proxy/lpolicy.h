/* lpolicy.h -- a compiled policy (kv.policy's table) into the data path's
 * kvp_policy; lpolicy.c has the fields. Control thread only. */
#ifndef KVP_LPOLICY_H
#define KVP_LPOLICY_H

#include "policy.h"

#include <lua.h>

/* The policy table at idx, built; NULL with err (what is wrong). */
kvp_policy *kvp_lua_policy(lua_State *L, int idx, char *err, size_t n);

#endif
