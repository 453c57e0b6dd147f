/* runtime.h -- the embedded LuaJIT runtime every binary is built on.
 *
 * One control thread owns a libevent base and one lua_State. C modules
 * (kv.core, and kvp's data-path binding in kvp) are preloaded; the binary's
 * entry module is required and its main(args) is run in a protected call.
 * Lua schedules its work as coroutines over the callback events of kv.core
 * (see lua/kv/loop.lua). */
#ifndef KV_RUNTIME_H
#define KV_RUNTIME_H

#include <lua.h>

struct event_base;

typedef void (*kv_runtime_open_fn)(lua_State *L);

/* Runs `module`.main(arg) and returns the process exit status. */
int kv_runtime_main(const char *module, int argc, char **argv, kv_runtime_open_fn extra);

struct event_base *kv_runtime_base(void);
lua_State *kv_runtime_L(void);

/* Calls the function on the stack top (with nargs below it... see .c) under
 * a traceback handler; logs and returns non-zero on error. */
int kv_runtime_pcall(lua_State *L, int nargs, int nresults);

int luaopen_kv_core(lua_State *L);

#endif
