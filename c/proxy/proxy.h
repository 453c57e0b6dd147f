/* proxy.h -- what kvp's main() needs from the data path. */
#ifndef KVP_PROXY_H
#define KVP_PROXY_H

#include <lua.h>

/* Preloads the Lua module "kvp.dp" (the data path's control functions). */
void kvp_open_lua(lua_State *L);

#endif
