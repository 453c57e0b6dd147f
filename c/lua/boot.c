/* boot.c -- kv_runtime_main: the top of c/lua/. Creates the runtime's state,
 * preloads the bindings (kv.core, kv.hireader, kv.hiredis, kv.crypto, then the
 * binary's own), and runs the entry module's main(arg). When main returns
 * (kvp and kvcs on SIGTERM) the state is closed before the process exits. */
#include "runtime.h"
#include "../core/kv.h"

#include <signal.h>
#include <stdio.h>

int kv_runtime_main(const char *module, int argc, char **argv, kv_runtime_open_fn extra)
{
    signal(SIGPIPE, SIG_IGN);
    if (kv_runtime_init() != KV_OK)
        return 1;
    lua_State *L = kv_runtime_L();
    kv_runtime_preload(L, "kv.core", luaopen_kv_core);
    kv_runtime_preload(L, "kv.hireader", luaopen_kv_hireader);
    kv_runtime_preload(L, "kv.hiredis", luaopen_kv_hiredis);
    kv_runtime_preload(L, "kv.crypto", luaopen_kv_crypto);
    if (extra)
        extra(L);

    /* arg table: arg[0] = program, arg[1..] = arguments */
    lua_createtable(L, argc, 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");

    int status = 1;
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    if (kv_runtime_pcall(L, 1, 1) != 0) {
        fprintf(stderr, "cannot load %s (lua dir %s); see the log\n", module, kv_runtime_lua_dir());
        kv_runtime_deinit();
        return 1;
    }
    lua_getfield(L, -1, "main");
    lua_getglobal(L, "arg");
    if (kv_runtime_pcall(L, 1, 1) == 0)
        status = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    kv_runtime_deinit();
    return status;
}
