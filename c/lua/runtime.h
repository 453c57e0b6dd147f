/* runtime.h -- the embedded LuaJIT runtime every binary is built on.
 *
 * One control thread owns a libevent base and one lua_State. The files of
 * c/lua/ are layered:
 *
 *   boot.c       kv_runtime_main: preloads the bindings, runs the entry module
 *     |
 *   lcore.c      kv.core: event loop, sockets, timers, files
 *   lhiredis.c   kv.hiredis: hiredis async client on the control loop
 *     |            |
 *     |          lhireader.c  kv.hireader: hiredis's reader -> Lua values
 *     |
 *   runtime.c    the state: event base, lua_State, protected calls
 *
 * Bindings call down into runtime.c; nothing calls up. The binary's entry
 * module is required and its main(args) is run in a protected call. Lua
 * schedules its work as coroutines over the callback events of kv.core and
 * kv.hiredis (see lua/kv/loop.lua and lua/kv/redis.lua). */
#ifndef KV_RUNTIME_H
#define KV_RUNTIME_H

#include <lua.h>

struct event_base;

typedef void (*kv_runtime_open_fn)(lua_State *L);

/* boot.c: runs `module`.main(arg) and returns the process exit status.
 * `extra` (may be NULL) preloads the binary's own modules. */
int kv_runtime_main(const char *module, int argc, char **argv, kv_runtime_open_fn extra);

/* runtime.c: creates the event base and the Lua state (standard libraries,
 * package.path on the repository's lua/, KV_ROOT). KV_OK or KV_ERR. */
int kv_runtime_init(void);
/* Closes the Lua state (every finalizer runs) and frees the event base:
 * a process that returns from main leaves nothing for LeakSanitizer. */
void kv_runtime_deinit(void);

/* A binding's set_handler(fn): the function at stack index idx becomes the
 * one *ref names in the registry (the previous one released). Raises a Lua
 * error when it is not a function. */
void kv_runtime_set_ref(lua_State *L, int idx, int *ref);

/* Where the Lua modules are: $KV_LUA_DIR, else the build's lua/. */
const char *kv_runtime_lua_dir(void);

/* Registers `open` as package.preload[name]. */
void kv_runtime_preload(lua_State *L, const char *name, lua_CFunction open);

struct event_base *kv_runtime_base(void);
lua_State *kv_runtime_L(void);

/* Calls the function below its nargs arguments on the stack under a
 * traceback handler; logs and returns non-zero on error. */
int kv_runtime_pcall(lua_State *L, int nargs, int nresults);

/* The bindings boot.c preloads. */
int luaopen_kv_core(lua_State *L);
int luaopen_kv_hireader(lua_State *L);
int luaopen_kv_hiredis(lua_State *L);
int luaopen_kv_crypto(lua_State *L);

#endif
