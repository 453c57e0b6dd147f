/* lkvp.c -- "kvp.dp": the control thread's handle on the data path.
 *
 *   dp.configure{listen=, io_threads=, request_timeout=, client_timeout=,
 *                max_client_num=, max_qps=, slow_cmd_time=, redis_password=,
 *                client_password=}                           -> true | nil, err
 *   dp.set_policy{hash=, hash_tags=, deny={...}, allow={...}} -> true | nil, err
 *   dp.start()                                                -> true | nil, err
 *   dp.set_table(version, bucket_count, servers, owners, patterns, migrating) -> true | nil, err
 *       servers: {"ip:port", ...}; owners[b + 1] = 1-based index into servers;
 *       patterns: key-rewrite globs (optional); migrating: {[b + 1] = index
 *       of the destination} for buckets being migrated (optional)
 *   dp.on_drained(fn)  fn(worker, version): worker has nothing in flight
 *       routed with a table older than version (called on this thread)
 *   dp.stats() -> {total=, slow=, rt_sum_us=, rt_count=, clients=, cmds={NAME=n}}
 *   dp.client_count()                                         -> n
 *
 * Lua validates (kvp/conf.lua, kv/btable.lua); C checks again what would
 * corrupt memory if wrong. */
#include "command.h"
#include "conf.h"
#include "table.h"
#include "worker.h"
#include "proxy.h"
#include "../core/log.h"
#include "../lua/runtime.h"

#include <event2/event.h>

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int started;

static int fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

static int opt_int(lua_State *L, int t, const char *key, int def)
{
    lua_getfield(L, t, key);
    int v = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

static void opt_str(lua_State *L, int t, const char *key, char *out, size_t n)
{
    lua_getfield(L, t, key);
    if (lua_isstring(L, -1))
        snprintf(out, n, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
}

static int l_configure(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    char listen[128] = "";
    opt_str(L, 1, "listen", listen, sizeof(listen));
    if (listen[0]) {
        char *colon = strrchr(listen, ':');
        if (colon == NULL)
            return fail(L, "listen must be host:port");
        *colon = 0;
        size_t host_len = strlen(listen);
        if (host_len >= sizeof(kvp_g.listen_host))
            return fail(L, "listen host is too long");
        memcpy(kvp_g.listen_host, listen, host_len + 1);
        kvp_g.listen_port = atoi(colon + 1);
    }
    if (!started) {
        kvp_g.io_threads = opt_int(L, 1, "io_threads", kvp_g.io_threads ? kvp_g.io_threads : 1);
        opt_str(L, 1, "client_password", kvp_g.client_password, sizeof(kvp_g.client_password));
    }
    lua_getfield(L, 1, "redis_password");
    if (lua_isstring(L, -1)) {
        const char *cur = atomic_load(&kvp_g.redis_password);
        const char *pw = lua_tostring(L, -1);
        if (strlen(pw) > 200) {
            lua_pop(L, 1);
            return fail(L, "redis_password is too long (at most 200 bytes)");
        }
        if (cur == NULL || strcmp(cur, pw) != 0) {
            char *copy = strdup(pw);
            if (copy == NULL)
                return luaL_error(L, "out of memory");
            /* new backend connections use it; the old copy stays allocated */
            atomic_store(&kvp_g.redis_password, copy);
        }
    }
    lua_pop(L, 1);
    atomic_store(&kvp_g.request_timeout_ms, opt_int(L, 1, "request_timeout", atomic_load(&kvp_g.request_timeout_ms)));
    atomic_store(&kvp_g.client_timeout_s, opt_int(L, 1, "client_timeout", atomic_load(&kvp_g.client_timeout_s)));
    atomic_store(&kvp_g.max_client_num, opt_int(L, 1, "max_client_num", atomic_load(&kvp_g.max_client_num)));
    atomic_store(&kvp_g.max_qps, opt_int(L, 1, "max_qps", atomic_load(&kvp_g.max_qps)));
    atomic_store(&kvp_g.slow_cmd_time_ms, opt_int(L, 1, "slow_cmd_time", atomic_load(&kvp_g.slow_cmd_time_ms)));
    atomic_store(&kvp_g.redis_down_timeout_s,
                 opt_int(L, 1, "redis_down_timeout", atomic_load(&kvp_g.redis_down_timeout_s)));
    lua_pushboolean(L, 1);
    return 1;
}

static int apply_list(lua_State *L, int t, const char *key, int allow)
{
    lua_getfield(L, t, key);
    if (lua_istable(L, -1)) {
        int n = (int)lua_objlen(L, -1);
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            const char *name = lua_tostring(L, -1);
            const char *err = NULL;
            int rc = name == NULL ? KV_ERR
                                  : (allow ? kvp_cmd_policy_allow(name, &err)
                                           : kvp_cmd_policy_deny(name, &err));
            if (rc != KV_OK) {
                lua_pushfstring(L, "policy %s entry '%s': %s", key, name ? name : "?",
                                err ? err : "not a string");
                return 0;
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return 1;
}

static int l_set_policy(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (started)
        return fail(L, "the policy is fixed once the data path runs");
    if (kvp_cmd_init() != KV_OK)
        return fail(L, "command table is broken");
    char hash[64] = "murmur2_kvstore";
    opt_str(L, 1, "hash", hash, sizeof(hash));
    if (strcmp(hash, "murmur2_kvstore") == 0)
        kvp_g.hash_kind = KVP_HASH_MURMUR2_KVSTORE;
    else if (strcmp(hash, "crc16") == 0)
        kvp_g.hash_kind = KVP_HASH_CRC16;
    else {
        lua_pushnil(L);
        lua_pushfstring(L, "unknown hash '%s' (murmur2_kvstore, crc16)", hash);
        return 2;
    }
    lua_getfield(L, 1, "hash_tags");
    kvp_g.hash_tags = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
    lua_pop(L, 1);
    kvp_cmd_policy_reset();
    if (!apply_list(L, 1, "deny", 0) || !apply_list(L, 1, "allow", 1)) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int drained_ref = LUA_NOREF;

static void call_drained(int worker, uint64_t version)
{
    lua_State *L = kv_runtime_L();
    if (drained_ref == LUA_NOREF)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, drained_ref);
    lua_pushinteger(L, worker);
    lua_pushnumber(L, (lua_Number)version);
    kv_runtime_pcall(L, 2, 0);
}

static void drained_cb(evutil_socket_t fd, short what, void *arg)
{
    KV_UNUSED(fd);
    KV_UNUSED(what);
    KV_UNUSED(arg);
    kvp_workers_poll_drained(call_drained);
}

static int l_on_drained(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushvalue(L, 1);
    drained_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int l_start(lua_State *L)
{
    if (started)
        return fail(L, "already started");
    if (kvp_cmd_init() != KV_OK)
        return fail(L, "command table is broken");
    char err[256];
    if (kvp_workers_start(err, sizeof(err)) != KV_OK)
        return fail(L, err);
    struct event *ev = event_new(kv_runtime_base(), kvp_workers_notify_fd(), EV_READ | EV_PERSIST,
                                 drained_cb, NULL);
    if (ev == NULL || event_add(ev, NULL) != 0)
        return fail(L, "cannot watch the workers' reports");
    started = 1;
    lua_pushboolean(L, 1);
    return 1;
}

static int l_set_table(lua_State *L)
{
    lua_Integer version = luaL_checkinteger(L, 1);
    lua_Integer buckets = luaL_checkinteger(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TTABLE);
    int ns = (int)lua_objlen(L, 3);
    if (buckets < 1 || buckets > 65535 || ns < 1 || ns > 65535 || (lua_Integer)lua_objlen(L, 4) != buckets)
        return fail(L, "bad table shape");
    kvp_table *t = kvp_table_new((uint32_t)buckets, ns);
    if (t == NULL)
        return fail(L, "out of memory");
    t->version = (uint64_t)version;
    for (int i = 0; i < ns; i++) {
        lua_rawgeti(L, 3, i + 1);
        const char *a = lua_tostring(L, -1);
        if (a == NULL || strlen(a) >= KVP_ADDR_MAX) {
            kvp_table_unref(t);
            return fail(L, "bad server address");
        }
        snprintf(t->servers[i], KVP_ADDR_MAX, "%s", a);
        lua_pop(L, 1);
    }
    for (lua_Integer b = 0; b < buckets; b++) {
        lua_rawgeti(L, 4, (int)b + 1);
        lua_Integer s = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (s < 1 || s > ns) {
            kvp_table_unref(t);
            return fail(L, "bucket owner out of range");
        }
        t->owner[b] = (uint16_t)(s - 1);
    }
    if (lua_istable(L, 6)) {
        lua_pushnil(L);
        while (lua_next(L, 6) != 0) {
            lua_Integer b = lua_tointeger(L, -2) - 1, d = lua_tointeger(L, -1);
            lua_pop(L, 1);
            if (b < 0 || b >= buckets || d < 1 || d > ns) {
                kvp_table_unref(t);
                return fail(L, "bad migrating bucket entry");
            }
            t->mig_dst[b] = (uint16_t)(d - 1);
            t->nmigrating++;
        }
    }
    if (lua_istable(L, 7)) {
        lua_pushnil(L);
        while (lua_next(L, 7) != 0) {
            lua_Integer b = lua_tointeger(L, -2) - 1;
            lua_pop(L, 1);
            if (b < 0 || b >= buckets) {
                kvp_table_unref(t);
                return fail(L, "bad blocked bucket entry");
            }
            t->blocked[b] = 1;
        }
    }
    if (lua_istable(L, 5)) {
        int np = (int)lua_objlen(L, 5);
        const char *pats[256];
        size_t lens[256];
        if (np > 256) {
            kvp_table_unref(t);
            return fail(L, "too many key-rewrite patterns (at most 256)");
        }
        for (int i = 0; i < np; i++) {
            lua_rawgeti(L, 5, i + 1);
            pats[i] = lua_tolstring(L, -1, &lens[i]);
            lua_pop(L, 1); /* the string stays referenced by the Lua table */
            if (pats[i] == NULL) {
                kvp_table_unref(t);
                return fail(L, "a pattern is not a string");
            }
        }
        if (kvp_table_set_patterns(t, pats, lens, np) != KV_OK) {
            kvp_table_unref(t);
            return fail(L, "out of memory");
        }
    }
    kvp_workers_post_table(t);
    kvp_table_unref(t);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_stats(lua_State *L)
{
    int n = kvp_cmd_count();
    uint64_t *cmd = calloc((size_t)n, sizeof(uint64_t));
    if (cmd == NULL)
        return luaL_error(L, "out of memory");
    uint64_t total, slow, rt_sum, rt_count;
    kvp_workers_stats(&total, &slow, &rt_sum, &rt_count, cmd, n);
    lua_createtable(L, 0, 6);
    lua_pushnumber(L, (lua_Number)total);
    lua_setfield(L, -2, "total");
    lua_pushnumber(L, (lua_Number)slow);
    lua_setfield(L, -2, "slow");
    lua_pushnumber(L, (lua_Number)rt_sum);
    lua_setfield(L, -2, "rt_sum_us");
    lua_pushnumber(L, (lua_Number)rt_count);
    lua_setfield(L, -2, "rt_count");
    lua_pushinteger(L, atomic_load(&kvp_g.client_count));
    lua_setfield(L, -2, "clients");
    lua_newtable(L);
    for (int i = 0; i < n; i++) {
        if (cmd[i] == 0)
            continue;
        const kvp_cmd *c = kvp_cmd_at(i);
        char upper[64];
        size_t k = 0;
        for (; c->name[k] && k < sizeof(upper) - 1; k++)
            upper[k] = (char)(c->name[k] >= 'a' && c->name[k] <= 'z' ? c->name[k] - 32 : c->name[k]);
        upper[k] = 0;
        lua_pushnumber(L, (lua_Number)cmd[i]);
        lua_setfield(L, -2, upper);
    }
    lua_setfield(L, -2, "cmds");
    free(cmd);
    return 1;
}

/* dp.set_backend_down(addr, down): the health check's verdict on a master. */
static int l_set_backend_down(lua_State *L)
{
    const char *addr = luaL_checkstring(L, 1);
    if (!started)
        return 0;
    kvp_workers_post_backend_state(addr, lua_toboolean(L, 2));
    return 0;
}

static int l_client_count(lua_State *L)
{
    lua_pushinteger(L, atomic_load(&kvp_g.client_count));
    return 1;
}

static int luaopen_kvp_dp(lua_State *L)
{
    static const luaL_Reg fns[] = {{"configure", l_configure},     {"set_policy", l_set_policy},
                                   {"start", l_start},             {"set_table", l_set_table},
                                   {"client_count", l_client_count}, {"stats", l_stats},
                                   {"on_drained", l_on_drained},
                                   {"set_backend_down", l_set_backend_down},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}

void kvp_open_lua(lua_State *L)
{
    /* defaults before any configure() */
    atomic_store(&kvp_g.request_timeout_ms, 2000);
    atomic_store(&kvp_g.max_client_num, 10000);
    atomic_store(&kvp_g.slow_cmd_time_ms, 10);
    atomic_store(&kvp_g.redis_down_timeout_s, 10);
    kvp_g.io_threads = 2;
    kvp_g.hash_tags = 1;
    snprintf(kvp_g.listen_host, sizeof(kvp_g.listen_host), "0.0.0.0");
    kvp_g.listen_port = 7400;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_kvp_dp);
    lua_setfield(L, -2, "kvp.dp");
    lua_pop(L, 2);
}
