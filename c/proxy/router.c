/* router.c -- see router.h. */
#include "router.h"
#include "../core/log.h"
#include "../lua/runtime.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* A route function that runs this many VM instructions in the interpreter
 * is stopped with an error. LuaJIT calls count hooks only while it
 * interprets: a loop the JIT has compiled is not counted (router.h). */
#define ROUTE_BUDGET 1000000

struct kvp_router {
    lua_State *L;
    kvp_policy *loaded;   /* the policy whose functions L holds (referenced) */
    int fns;              /* registry ref: {[rule + 1] = route function} */
    char load_err[200];   /* the loaded policy does not compile here */
};

kvp_router *kvp_router_new(void)
{
    return calloc(1, sizeof(kvp_router));
}

static void unload(kvp_router *r)
{
    if (r->L != NULL)
        lua_close(r->L);
    r->L = NULL;
    kvp_policy_unref(r->loaded);
    r->loaded = NULL;
    r->load_err[0] = 0;
}

void kvp_router_free(kvp_router *r)
{
    if (r == NULL)
        return;
    unload(r);
    free(r);
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "ran more than %d instructions", ROUTE_BUDGET);
}

/* Compiles p's source in a fresh state with kv.policy (the sandbox the
 * config server checked it in) and keeps each rule's route function. */
static int load(kvp_router *r, kvp_policy *p)
{
    unload(r);
    kvp_policy_ref(p);
    r->loaded = p;
    lua_State *L = r->L = luaL_newstate();
    if (L == NULL) {
        snprintf(r->load_err, sizeof(r->load_err), "out of memory");
        return KV_ERR;
    }
    luaL_openlibs(L);
    const char *dir = kv_runtime_lua_dir();
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", dir, dir);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "kv.policy");
    if (lua_pcall(L, 1, 1, 0) != 0)
        goto fail;
    lua_getfield(L, -1, "compile");
    lua_pushlstring(L, p->source, p->source_len);
    lua_pushliteral(L, "policy");
    if (lua_pcall(L, 2, 2, 0) != 0)
        goto fail;
    if (lua_isnil(L, -2))
        goto fail;
    lua_pop(L, 1);
    lua_getfield(L, -1, "rules");
    lua_createtable(L, p->nrules, 0);
    for (int i = 0; i < p->nrules; i++) {
        lua_rawgeti(L, -2, i + 1);
        if (lua_istable(L, -1))
            lua_getfield(L, -1, "route");
        else
            lua_pushnil(L);
        lua_rawseti(L, -3, i + 1);
        lua_pop(L, 1);
    }
    r->fns = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    return KV_OK;
fail:
    snprintf(r->load_err, sizeof(r->load_err), "%s",
             lua_isstring(L, -1) ? lua_tostring(L, -1) : "the policy does not compile");
    kv_log_error("the worker cannot load the policy's route functions: %s", r->load_err);
    lua_settop(L, 0);
    return KV_ERR;
}

/* The function's result at the top of L as a bucket of t. */
static int result_bucket(lua_State *L, const kvp_table *t, uint32_t *bucket, char *err, size_t errlen)
{
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        *bucket = kvp_table_bucket(t, s, len);
        return KV_OK;
    }
    if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_Number n = lua_tonumber(L, -1);
        if (n >= 0 && n < (lua_Number)t->bucket_count && n == (lua_Number)(uint32_t)n) {
            *bucket = (uint32_t)n;
            return KV_OK;
        }
        snprintf(err, errlen, "returned %.17g, not a bucket from 0 to %u", (double)n, t->bucket_count - 1);
        return KV_ERR;
    }
    snprintf(err, errlen, "returned %s, not a string or a bucket number", lua_typename(L, lua_type(L, -1)));
    return KV_ERR;
}

int kvp_router_route(void *ctx, const kvp_policy *p, int rule, const char *key, size_t len, const kvp_cmd *cmd,
                     const kvp_table *t, uint32_t *bucket, char *err, size_t errlen)
{
    kvp_router *r = ctx;
    if (r->loaded != p && load(r, (kvp_policy *)p) != KV_OK) {
        snprintf(err, errlen, "%s", r->load_err);
        return KV_ERR;
    }
    if (r->load_err[0]) {
        snprintf(err, errlen, "%s", r->load_err);
        return KV_ERR;
    }
    lua_State *L = r->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->fns);
    lua_rawgeti(L, -1, rule + 1);
    lua_pushlstring(L, key, len);
    lua_pushstring(L, cmd->name);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, ROUTE_BUDGET);
    int rc = lua_pcall(L, 2, 1, 0);
    lua_sethook(L, NULL, 0, 0);
    if (rc != 0) {
        const char *msg = lua_tostring(L, -1);
        snprintf(err, errlen, "%s", msg ? msg : "an error");
        rc = KV_ERR;
    } else {
        rc = result_bucket(L, t, bucket, err, errlen);
    }
    lua_settop(L, 0);
    /* the error goes to a client: no CR or LF may end its line early */
    for (char *c = err; rc != KV_OK && *c; c++)
        if (*c == '\r' || *c == '\n')
            *c = ' ';
    return rc;
}
