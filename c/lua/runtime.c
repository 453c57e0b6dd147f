/* runtime.c -- the control thread's state: its event base, its lua_State and
 * protected calls into Lua (see runtime.h). The bottom layer of c/lua/. */
#include "runtime.h"
#include "../core/kv.h"
#include "../core/log.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

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

void kv_runtime_preload(lua_State *L, const char *name, lua_CFunction open)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 2);
}

const char *kv_runtime_lua_dir(void)
{
    const char *d = getenv("KV_LUA_DIR");
    return d && d[0] ? d : KV_LUA_DIR;
}

int kv_runtime_init(void)
{
    rt_base = event_base_new();
    if (rt_base == NULL) {
        fprintf(stderr, "cannot create the event loop\n");
        return KV_ERR;
    }
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "cannot create the Lua state\n");
        return KV_ERR;
    }
    rt_L = L;
    luaL_openlibs(L);

    /* package.path: the repo's lua/ first; KV_ROOT for files beside it. */
    const char *dir = kv_runtime_lua_dir();
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_pushfstring(L, "%s/..", dir);
    lua_setglobal(L, "KV_ROOT");
    return KV_OK;
}

void kv_runtime_deinit(void)
{
    /* the state first: finalizers of sockets and timers free their events */
    if (rt_L != NULL)
        lua_close(rt_L);
    rt_L = NULL;
    if (rt_base != NULL)
        event_base_free(rt_base);
    rt_base = NULL;
}

void kv_runtime_set_ref(lua_State *L, int idx, int *ref)
{
    luaL_checktype(L, idx, LUA_TFUNCTION);
    lua_pushvalue(L, idx);
    if (*ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
}
