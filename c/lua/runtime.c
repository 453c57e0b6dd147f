/* runtime.c -- see runtime.h. */
#include "runtime.h"
#include "../core/log.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#ifndef KV_LUA_DIR
#define KV_LUA_DIR "lua"
#endif

static struct event_base *rt_base;
static lua_State *rt_L;

struct event_base *kv_runtime_base(void) { return rt_base; }
lua_State *kv_runtime_L(void) { return rt_L; }

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL)
        msg = "(error object is not a string)";
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int kv_runtime_pcall(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (rc != 0) {
        kv_log_error("lua: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return rc;
}

static const char *lua_dir(void)
{
    const char *d = getenv("KV_LUA_DIR");
    return d && d[0] ? d : KV_LUA_DIR;
}

int kv_runtime_main(const char *module, int argc, char **argv, kv_runtime_open_fn extra)
{
    signal(SIGPIPE, SIG_IGN);
    rt_base = event_base_new();
    if (rt_base == NULL) {
        fprintf(stderr, "cannot create the event loop\n");
        return 1;
    }
    lua_State *L = luaL_newstate();
    rt_L = L;
    luaL_openlibs(L);

    /* package.path: the repo's lua/ first; KV_ROOT for files beside it. */
    const char *dir = lua_dir();
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_kv_core);
    lua_setfield(L, -2, "kv.core");
    lua_pop(L, 2);
    lua_pushfstring(L, "%s/..", dir);
    lua_setglobal(L, "KV_ROOT");
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
        fprintf(stderr, "cannot load %s (lua dir %s); see the log\n", module, dir);
        return 1;
    }
    lua_getfield(L, -1, "main");
    lua_getglobal(L, "arg");
    if (kv_runtime_pcall(L, 1, 1) == 0)
        status = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    return status;
}
