/* lkvp.c -- "kvp.dp": the control thread's handle on the data path.
 *
 *   dp.configure{name = value, ...}                           -> true | nil, err
 *       the keys kvp/conf.lua declares with to_c: listen, io_threads,
 *       client_password, protected_mode, and the live ones redis_password, request_timeout,
 *       client_timeout, max_client_num, max_qps, slow_cmd_time,
 *       redis_down_timeout. C has no defaults: the first call carries every
 *       key; after dp.start only live keys may come.
 *   dp.set_policy(p) -> true | nil, err: the local file's policy as
 *       kv.policy compiled it (lpolicy.c); routes until a table brings the
 *       namespace's
 *   dp.start()                                                -> true | nil, err
 *   dp.set_table{version=, bucket_count=, servers=, owner=, migrating=,
 *                blocked=, patterns=}                         -> true | nil, err
 *       servers: {"ip:port", ...}; owner[b + 1] = 1-based index into servers;
 *       migrating: {[b + 1] = index of the destination} for buckets being
 *       migrated; blocked: {[b + 1] = true} for buckets whose commands wait;
 *       patterns: key-rewrite globs; the last three optional (built by
 *       kvp/dptable.lua); policy: the namespace's compiled policy (with its
 *       version and source), nil while it has none: then the local one
 *   dp.on_drained(fn)  fn(worker, version): worker has nothing in flight
 *       routed with a table older than version (called on this thread)
 *   dp.stats() -> {total=, slow=, rt_sum_us=, rt_count=, clients=, cmds={NAME=n}}
 *   dp.client_count()                                         -> n
 *   dp.set_backend_down(addr, down): the health check's verdict on a master
 *   dp.set_replicas{[master] = {replica, ...}}                 -> true | nil, err
 *   dp.set_replica_lag(addr, ms): a replica's staleness (-1: down) -> found
 *
 * Lua validates (kvp/conf.lua, kv/btable.lua); C checks again what would
 * corrupt memory if wrong: every value against its field, every bound of a
 * table. */
#include "command.h"
#include "conf.h"
#include "lpolicy.h"
#include "table.h"
#include "worker.h"
#include "proxy.h"
#include "../core/log.h"
#include "../lua/runtime.h"

#include <event2/event.h>

#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int started;
static kvp_replica_set *cur_replicas; /* what the workers read from; lags land here */
static struct event *drained_ev; /* the workers' reports, on the control loop */

static int fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

/* ------------------------------------------------------------ configure */

/* dp.configure's keys, under the to_c names kvp/conf.lua declares. C keeps
 * no defaults: the first call must carry every key (Lua sends each declared
 * value, defaults included); later calls any subset, and once the data path
 * runs only the live keys. Ranges are the declaration's; C checks that a
 * value fits its field, and sets nothing unless every value does. */
enum cfg_kind { CFG_LISTEN, CFG_INT, CFG_BOOL, CFG_ATOMIC_INT, CFG_STR, CFG_REDIS_PASSWORD };

typedef struct cfg_key {
    const char *name;
    enum cfg_kind kind;
    int live;        /* may change while the data path runs */
    int min;         /* ints: the least the data path works with */
    int *i;          /* CFG_INT, CFG_BOOL */
    atomic_int *ai;  /* CFG_ATOMIC_INT */
    char *s;         /* CFG_STR, of size bytes */
    size_t size;
} cfg_key;

static const cfg_key cfg_keys[] = {
    {.name = "listen", .kind = CFG_LISTEN},
    {.name = "io_threads", .kind = CFG_INT, .min = 1, .i = &kvp_g.io_threads},
    {.name = "client_password", .kind = CFG_STR, .s = kvp_g.client_password,
     .size = sizeof(kvp_g.client_password)},
    {.name = "protected_mode", .kind = CFG_BOOL, .i = &kvp_g.protected_mode},
    {.name = "client_output_hard_mb", .kind = CFG_INT, .i = &kvp_g.client_output_hard_mb},
    {.name = "client_output_soft_mb", .kind = CFG_INT, .i = &kvp_g.client_output_soft_mb},
    {.name = "client_output_soft_seconds", .kind = CFG_INT, .i = &kvp_g.client_output_soft_seconds},
    {.name = "maxmemory_clients_mb", .kind = CFG_INT, .i = &kvp_g.maxmemory_clients_mb},
    {.name = "owned_connections_max", .kind = CFG_INT, .min = 1, .i = &kvp_g.owned_connections_max},
    /* at most 200 bytes: backend.c writes AUTH into a 512-byte buffer */
    {.name = "redis_password", .kind = CFG_REDIS_PASSWORD, .live = 1, .size = 201},
    {.name = "request_timeout", .kind = CFG_ATOMIC_INT, .live = 1, .min = 1, .ai = &kvp_g.request_timeout_ms},
    {.name = "client_timeout", .kind = CFG_ATOMIC_INT, .live = 1, .ai = &kvp_g.client_timeout_s},
    {.name = "max_client_num", .kind = CFG_ATOMIC_INT, .live = 1, .ai = &kvp_g.max_client_num},
    {.name = "max_qps", .kind = CFG_ATOMIC_INT, .live = 1, .ai = &kvp_g.max_qps},
    {.name = "slow_cmd_time", .kind = CFG_ATOMIC_INT, .live = 1, .ai = &kvp_g.slow_cmd_time_ms},
    {.name = "redis_down_timeout", .kind = CFG_ATOMIC_INT, .live = 1, .min = 1,
     .ai = &kvp_g.redis_down_timeout_s},
};
#define CFG_NKEYS (sizeof(cfg_keys) / sizeof(cfg_keys[0]))

static int configured; /* a configure with every key succeeded */

/* The value at idx as an integer in lo..hi: 1 and *out, or 0. */
static int int_in(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, lua_Integer *out)
{
    if (lua_type(L, idx) != LUA_TNUMBER)
        return 0;
    lua_Number n = lua_tonumber(L, idx);
    if (!(n >= (lua_Number)lo && n <= (lua_Number)hi)) /* also NaN */
        return 0;
    lua_Integer v = (lua_Integer)n;
    if ((lua_Number)v != n)
        return 0;
    *out = v;
    return 1;
}

/* "host:port" into host (of hostsize bytes) and *port: KV_OK, or KV_ERR
 * and err. */
static int parse_listen(const char *addr, char *host, size_t hostsize, int *port, char *err, size_t errlen)
{
    const char *colon = strrchr(addr, ':');
    char *end;
    if (colon == NULL) {
        snprintf(err, errlen, "must be host:port");
        return KV_ERR;
    }
    if ((size_t)(colon - addr) >= hostsize) {
        snprintf(err, errlen, "host is too long (at most %zu bytes)", hostsize - 1);
        return KV_ERR;
    }
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != 0 || p < 1 || p > 65535) {
        snprintf(err, errlen, "port must be 1..65535");
        return KV_ERR;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    *port = (int)p;
    return KV_OK;
}

/* Checks the value on top of the stack for key k and, when apply is set,
 * stores it: KV_OK, or KV_ERR and what is wrong in err. */
static int cfg_value(lua_State *L, const cfg_key *k, int apply, char *err, size_t errlen)
{
    switch (k->kind) {
    case CFG_INT:
    case CFG_ATOMIC_INT: {
        lua_Integer v;
        if (!int_in(L, -1, k->min, INT_MAX, &v)) {
            snprintf(err, errlen, "must be an integer from %d to %d", k->min, INT_MAX);
            return KV_ERR;
        }
        if (apply && k->kind == CFG_INT)
            *k->i = (int)v;
        else if (apply)
            atomic_store(k->ai, (int)v);
        return KV_OK;
    }
    case CFG_BOOL:
        if (lua_type(L, -1) != LUA_TBOOLEAN) {
            snprintf(err, errlen, "must be true or false");
            return KV_ERR;
        }
        if (apply)
            *k->i = lua_toboolean(L, -1);
        return KV_OK;
    case CFG_LISTEN: {
        char host[sizeof(kvp_g.listen_host)];
        int port;
        if (lua_type(L, -1) != LUA_TSTRING) {
            snprintf(err, errlen, "must be a string");
            return KV_ERR;
        }
        if (parse_listen(lua_tostring(L, -1), host, sizeof(host), &port, err, errlen) != KV_OK)
            return KV_ERR;
        if (apply) {
            memcpy(kvp_g.listen_host, host, sizeof(host));
            kvp_g.listen_port = port;
        }
        return KV_OK;
    }
    case CFG_STR:
    case CFG_REDIS_PASSWORD: {
        size_t len;
        if (lua_type(L, -1) != LUA_TSTRING) {
            snprintf(err, errlen, "must be a string");
            return KV_ERR;
        }
        const char *str = lua_tolstring(L, -1, &len);
        if (len >= k->size || strlen(str) != len) {
            snprintf(err, errlen, "must be at most %zu bytes, without NUL", k->size - 1);
            return KV_ERR;
        }
        if (!apply)
            return KV_OK;
        if (k->kind == CFG_STR) {
            memcpy(k->s, str, len + 1);
            return KV_OK;
        }
        const char *cur = atomic_load(&kvp_g.redis_password);
        if (cur == NULL || strcmp(cur, str) != 0) {
            char *copy = strdup(str);
            if (copy == NULL) {
                snprintf(err, errlen, "out of memory");
                return KV_ERR;
            }
            /* new backend connections use it; the old copy stays allocated */
            atomic_store(&kvp_g.redis_password, copy);
        }
        return KV_OK;
    }
    }
    snprintf(err, errlen, "has an unknown kind");
    return KV_ERR;
}

static const cfg_key *cfg_find(const char *name)
{
    for (size_t i = 0; i < CFG_NKEYS; i++)
        if (strcmp(cfg_keys[i].name, name) == 0)
            return &cfg_keys[i];
    return NULL;
}

static int l_configure(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    char err[128];
    size_t given = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const cfg_key *k = name ? cfg_find(name) : NULL;
        lua_pushnil(L); /* in case of an error: nil, message */
        if (k == NULL) {
            lua_pushfstring(L, "dp.configure: unknown key %s", name ? name : luaL_typename(L, -3));
            return 2;
        }
        if (started && !k->live) {
            lua_pushfstring(L, "dp.configure: %s is fixed once the data path runs", name);
            return 2;
        }
        lua_pop(L, 1);
        if (cfg_value(L, k, 0, err, sizeof(err)) != KV_OK) {
            lua_pushnil(L);
            lua_pushfstring(L, "dp.configure: %s %s", name, err);
            return 2;
        }
        given++;
        lua_pop(L, 1);
    }
    for (size_t i = 0; !configured && given != CFG_NKEYS && i < CFG_NKEYS; i++) {
        lua_getfield(L, 1, cfg_keys[i].name);
        if (lua_isnil(L, -1)) {
            lua_pushfstring(L, "dp.configure: %s is missing (the first call sets every key)",
                            cfg_keys[i].name);
            return 2;
        }
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        lua_getfield(L, 1, cfg_keys[i].name);
        if (!lua_isnil(L, -1) && cfg_value(L, &cfg_keys[i], 1, err, sizeof(err)) != KV_OK)
            return luaL_error(L, "dp.configure: %s %s", cfg_keys[i].name, err); /* out of memory */
        lua_pop(L, 1);
    }
    configured = 1;
    lua_pushboolean(L, 1);
    return 1;
}

static int l_set_policy(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (started)
        return fail(L, "the local policy is fixed once the data path runs");
    if (kvp_cmd_init() != KV_OK)
        return fail(L, "command table is broken");
    char err[256];
    kvp_policy *p = kvp_lua_policy(L, 1, err, sizeof(err));
    if (p == NULL)
        return fail(L, err);
    kvp_policy_unref(kvp_g.policy);
    kvp_g.policy = p;
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
    if (!configured)
        return fail(L, "dp.configure has not been called");
    if (kvp_cmd_init() != KV_OK)
        return fail(L, "command table is broken");
    char err[256];
    if (kvp_workers_start(err, sizeof(err)) != KV_OK)
        return fail(L, err);
    drained_ev = event_new(kv_runtime_base(), kvp_workers_notify_fd(), EV_READ | EV_PERSIST,
                           drained_cb, NULL);
    if (drained_ev == NULL || event_add(drained_ev, NULL) != 0)
        return fail(L, "cannot watch the workers' reports");
    started = 1;
    if (cur_replicas != NULL)
        kvp_workers_post_replicas(cur_replicas);
    lua_pushboolean(L, 1);
    return 1;
}

/* dp.stop(): the workers leave their loops, close every client and backend
 * connection and free what they hold; the threads are joined. For a clean
 * exit (SIGTERM); a no-op when not started. */
static int l_stop(lua_State *L)
{
    if (!started)
        return 0;
    if (drained_ev != NULL)
        event_free(drained_ev);
    drained_ev = NULL;
    kvp_workers_stop();
    if (drained_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, drained_ref);
    drained_ref = LUA_NOREF;
    started = 0;
    return 0;
}

/* ------------------------------------------------------------ set_table */


/* Fields of dp.set_table's spec, at these stack slots while it runs. */
enum { TS_SPEC = 1, TS_SERVERS, TS_OWNER, TS_MIGRATING, TS_BLOCKED, TS_PATTERNS };
static const char *const table_fields[] = {"servers", "owner", "migrating", "blocked", "patterns"};

/* The name of a field spec has that set_table does not know, or NULL. */
static const char *unknown_field(lua_State *L)
{
    lua_pushnil(L);
    while (lua_next(L, TS_SPEC) != 0) {
        lua_pop(L, 1);
        const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a name)";
        int known = strcmp(name, "version") == 0 || strcmp(name, "bucket_count") == 0 ||
                    strcmp(name, "policy") == 0;
        for (size_t i = 0; !known && i < sizeof(table_fields) / sizeof(table_fields[0]); i++)
            known = strcmp(name, table_fields[i]) == 0;
        if (!known) {
            lua_pop(L, 1);
            return name; /* still referenced by the spec */
        }
    }
    return NULL;
}

/* Fills t's servers, owners, migrating and blocked buckets and patterns
 * from the spec's fields (at their TS_ slots): NULL, or what is wrong. */
static const char *table_fill(lua_State *L, kvp_table *t, int ns)
{
    lua_Integer b = 0, s = 0;
    for (int i = 0; i < ns; i++) {
        lua_rawgeti(L, TS_SERVERS, i + 1);
        const char *a = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        lua_pop(L, 1); /* the string stays referenced by the spec */
        if (a == NULL || strlen(a) >= KVP_ADDR_MAX)
            return "servers: an address is not a string of at most 63 bytes";
        snprintf(t->servers[i], KVP_ADDR_MAX, "%s", a);
    }
    for (b = 0; b < (lua_Integer)t->bucket_count; b++) {
        lua_rawgeti(L, TS_OWNER, (int)b + 1);
        int ok = int_in(L, -1, 1, ns, &s);
        lua_pop(L, 1);
        if (!ok)
            return "owner: an entry is not an index into servers";
        t->owner[b] = (uint16_t)(s - 1);
    }
    if (!lua_isnil(L, TS_MIGRATING)) {
        lua_pushnil(L);
        while (lua_next(L, TS_MIGRATING) != 0) {
            int ok = int_in(L, -2, 1, t->bucket_count, &b) && int_in(L, -1, 1, ns, &s);
            lua_pop(L, 1);
            if (!ok) {
                lua_pop(L, 1);
                return "migrating: not {[bucket + 1] = index into servers}";
            }
            t->mig_dst[b - 1] = (uint16_t)(s - 1);
            t->nmigrating++;
        }
    }
    if (!lua_isnil(L, TS_BLOCKED)) {
        lua_pushnil(L);
        while (lua_next(L, TS_BLOCKED) != 0) {
            int ok = int_in(L, -2, 1, t->bucket_count, &b) && lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (!ok) {
                lua_pop(L, 1);
                return "blocked: not {[bucket + 1] = true}";
            }
            t->blocked[b - 1] = 1;
        }
    }
    if (!lua_isnil(L, TS_PATTERNS)) {
        int np = (int)lua_objlen(L, TS_PATTERNS);
        const char *pats[KVP_MAX_PATTERNS];
        size_t lens[KVP_MAX_PATTERNS];
        if (np > KVP_MAX_PATTERNS)
            return "patterns: too many key-rewrite patterns (at most 64)";
        for (int i = 0; i < np; i++) {
            lua_rawgeti(L, TS_PATTERNS, i + 1);
            pats[i] = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &lens[i]) : NULL;
            lua_pop(L, 1); /* the string stays referenced by the spec */
            if (pats[i] == NULL)
                return "patterns: a pattern is not a string";
        }
        int rc = kvp_table_set_patterns(t, pats, lens, np);
        if (rc == KV_ERR)
            return "patterns: a pattern over 256 bytes or 63 elements besides '*'";
        if (rc != KV_OK)
            return "out of memory";
    }
    return NULL;
}

/* The namespace's policy the last table brought, kept for the next
 * tables while its version and source stay. */
static kvp_policy *ns_policy;

static int same_policy(lua_State *L, int idx, const kvp_policy *p)
{
    if (p == NULL)
        return 0;
    lua_getfield(L, idx, "version");
    lua_getfield(L, idx, "source");
    size_t len = 0;
    const char *src = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    int same = lua_type(L, -2) == LUA_TNUMBER && (uint64_t)lua_tonumber(L, -2) == p->version &&
               src != NULL && p->source != NULL && len == p->source_len && memcmp(src, p->source, len) == 0;
    lua_pop(L, 2);
    return same;
}

/* t's policy: the spec's (the namespace's, when the config server has
 * one), else the local file's. NULL, or what is wrong. */
static const char *table_policy(lua_State *L, kvp_table *t)
{
    static char err[300];
    lua_getfield(L, TS_SPEC, "policy");
    int idx = lua_gettop(L);
    kvp_policy *p = kvp_g.policy;
    if (!lua_isnil(L, idx)) {
        if (!same_policy(L, idx, ns_policy)) {
            char why[256];
            kvp_policy *np = kvp_lua_policy(L, idx, why, sizeof(why));
            if (np == NULL) {
                lua_pop(L, 1);
                snprintf(err, sizeof(err), "policy: %s", why);
                return err;
            }
            kvp_policy_unref(ns_policy);
            ns_policy = np;
        }
        p = ns_policy;
    }
    lua_pop(L, 1);
    if (p != NULL)
        kvp_table_set_policy(t, p);
    return NULL;
}

static int l_set_table(lua_State *L)
{
    luaL_checktype(L, TS_SPEC, LUA_TTABLE);
    lua_settop(L, TS_SPEC);
    const char *name = unknown_field(L);
    if (name != NULL) {
        lua_pushnil(L);
        lua_pushfstring(L, "dp.set_table: unknown field %s", name);
        return 2;
    }
    lua_Integer version = 0, buckets = 0;
    lua_getfield(L, TS_SPEC, "version");
    lua_getfield(L, TS_SPEC, "bucket_count");
    int vok = int_in(L, -2, 0, (lua_Integer)1 << 53, &version);
    int bok = int_in(L, -1, 1, 65535, &buckets);
    lua_settop(L, TS_SPEC);
    if (!vok)
        return fail(L, "dp.set_table: version must be an integer >= 0");
    if (!bok)
        return fail(L, "dp.set_table: bucket_count must be an integer from 1 to 65535");
    for (size_t i = 0; i < sizeof(table_fields) / sizeof(table_fields[0]); i++)
        lua_getfield(L, TS_SPEC, table_fields[i]); /* at TS_SERVERS + i */
    for (int i = TS_SERVERS; i <= TS_PATTERNS; i++) {
        int optional = i >= TS_MIGRATING;
        if (!lua_istable(L, i) && !(optional && lua_isnil(L, i))) {
            lua_pushnil(L);
            lua_pushfstring(L, "dp.set_table: %s must be a table", table_fields[i - TS_SERVERS]);
            return 2;
        }
    }
    int ns = (int)lua_objlen(L, TS_SERVERS);
    if (ns < 1 || ns > 65535)
        return fail(L, "dp.set_table: servers must list 1 to 65535 addresses");
    if ((lua_Integer)lua_objlen(L, TS_OWNER) != buckets)
        return fail(L, "dp.set_table: owner must have bucket_count entries");
    kvp_table *t = kvp_table_new((uint32_t)buckets, ns);
    if (t == NULL)
        return fail(L, "out of memory");
    t->version = (uint64_t)version;
    const char *err = table_fill(L, t, ns);
    if (err == NULL)
        err = table_policy(L, t);
    if (err != NULL) {
        kvp_table_unref(t);
        lua_pushnil(L);
        lua_pushfstring(L, "dp.set_table: %s", err);
        return 2;
    }
    kvp_workers_post_table(t);
    kvp_table_unref(t);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---------------------------------------------------------- replicas */


/* Counts the map's masters and replicas; 0 when it is malformed. */
static int replica_map_size(lua_State *L, int *nm, int *nr)
{
    *nm = *nr = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        size_t len;
        if (lua_type(L, -2) != LUA_TSTRING || (lua_tolstring(L, -2, &len), len >= KVP_ADDR_MAX) ||
            !lua_istable(L, -1)) {
            lua_pop(L, 2);
            return 0;
        }
        int n = (int)lua_objlen(L, -1);
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            int ok = lua_type(L, -1) == LUA_TSTRING && lua_objlen(L, -1) < KVP_ADDR_MAX;
            lua_pop(L, 1);
            if (!ok) {
                lua_pop(L, 2);
                return 0;
            }
        }
        (*nm)++;
        *nr += n;
        lua_pop(L, 1);
    }
    return 1;
}

/* dp.set_replicas{[master] = {replica, ...}, ...}: the masters' replicas
 * for replica reads (lags carried over for replicas already known). */
static int l_set_replicas(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int nm, nr;
    if (!replica_map_size(L, &nm, &nr) || nm > 65535 || nr > 65535)
        return fail(L, "dp.set_replicas: not {[\"ip:port\"] = {\"ip:port\", ...}}");
    kvp_replica_set *s = kvp_replica_set_new(nm, nr);
    if (s == NULL)
        return fail(L, "out of memory");
    int m = 0, r = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        kvp_replica_master *rm = &s->masters[m++];
        snprintf(rm->addr, sizeof(rm->addr), "%s", lua_tostring(L, -2));
        rm->first = r;
        rm->n = (int)lua_objlen(L, -1);
        for (int i = 1; i <= rm->n; i++, r++) {
            lua_rawgeti(L, -1, i);
            snprintf(s->rep[r].addr, sizeof(s->rep[r].addr), "%s", lua_tostring(L, -1));
            lua_pop(L, 1);
            for (int j = 0; cur_replicas && j < cur_replicas->nreplicas; j++)
                if (strcmp(cur_replicas->rep[j].addr, s->rep[r].addr) == 0)
                    atomic_store(&s->rep[r].lag_ms, atomic_load(&cur_replicas->rep[j].lag_ms));
        }
        lua_pop(L, 1);
    }
    if (started)
        kvp_workers_post_replicas(s);
    kvp_replica_set_unref(cur_replicas);
    cur_replicas = s;
    lua_pushboolean(L, 1);
    return 1;
}

/* dp.set_replica_lag(addr, ms): a replica's measured staleness (-1: down,
 * not read from). */
static int l_set_replica_lag(lua_State *L)
{
    const char *addr = luaL_checkstring(L, 1);
    lua_Integer ms = 0;
    if (!int_in(L, 2, -1, INT_MAX, &ms))
        return fail(L, "dp.set_replica_lag: the lag must be an integer >= -1");
    lua_pushboolean(L, cur_replicas != NULL && kvp_replica_set_lag(cur_replicas, addr, (int)ms));
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
                                   {"start", l_start},             {"stop", l_stop},
                                   {"set_table", l_set_table},
                                   {"client_count", l_client_count}, {"stats", l_stats},
                                   {"on_drained", l_on_drained},
                                   {"set_backend_down", l_set_backend_down},
                                   {"set_replicas", l_set_replicas},
                                   {"set_replica_lag", l_set_replica_lag},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}

void kvp_open_lua(lua_State *L)
{
    /* no config defaults here: the first dp.configure carries every value
     * (kvp/conf.lua) */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_kvp_dp);
    lua_setfield(L, -2, "kvp.dp");
    lua_pop(L, 2);
}
