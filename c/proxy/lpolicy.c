/* lpolicy.c -- a policy as kv.policy compiled it (a Lua table) into the
 * data path's kvp_policy (policy.h), for dp.set_policy and dp.set_table.
 *
 *   { version = n (optional, 0: the local file), source = text,
 *     hash = "murmur2_kvstore"|"crc16", hash_tags = bool,
 *     deny = {name...}, allow = {name...},
 *     rules = { { match = glob, read_only = bool, deny = {...}, allow = {...},
 *                 max_qps = n, replica_reads = "never"|"prefer"|"only",
 *                 max_replica_lag_ms = n, route = function|nil }, ... } }
 *
 * kv.policy checked every field; C checks again what it relies on (types,
 * bounds, names) and says which field is wrong. */
#include "lpolicy.h"
#include "conf.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

/* Applies the list at field key of the table at t with fn: NULL, or what is
 * wrong (in err). */
static const char *apply_names(lua_State *L, int t, const char *key, kvp_policy *p,
                               int (*fn)(kvp_policy *, const char *, const char **), const char *what,
                               char *err, size_t n)
{
    lua_getfield(L, t, key);
    if (lua_istable(L, -1)) {
        int len = (int)lua_objlen(L, -1);
        for (int i = 1; i <= len; i++) {
            lua_rawgeti(L, -1, i);
            const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            const char *why = "not a string";
            int rc = name ? fn(p, name, &why) : KV_ERR;
            lua_pop(L, 1);
            if (rc != KV_OK) {
                snprintf(err, n, "%s%s entry '%s': %s", what, key, name ? name : "?", why);
                lua_pop(L, 1);
                return err;
            }
        }
    } else if (!lua_isnil(L, -1)) {
        snprintf(err, n, "%s%s must be a list", what, key);
        lua_pop(L, 1);
        return err;
    }
    lua_pop(L, 1);
    return NULL;
}

static int opt_int(lua_State *L, int t, const char *key, int lo, int hi, int dflt, int *out)
{
    lua_getfield(L, t, key);
    int ok = 1;
    if (lua_isnil(L, -1)) {
        *out = dflt;
    } else {
        lua_Number v = lua_tonumber(L, -1);
        ok = lua_type(L, -1) == LUA_TNUMBER && v >= lo && v <= hi && v == (lua_Number)(int)v;
        *out = (int)v;
    }
    lua_pop(L, 1);
    return ok;
}

/* The rule table at idx into p: NULL, or what is wrong. */
static const char *add_rule(lua_State *L, int idx, kvp_policy *p, int i, char *err, size_t n)
{
    char what[32];
    snprintf(what, sizeof(what), "rules[%d].", i);
    lua_getfield(L, idx, "match");
    size_t len = 0;
    const char *glob = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    const char *why = "must be a string";
    if (glob && (memchr(glob, '\r', len) || memchr(glob, '\n', len)))
        glob = NULL, why = "must not hold CR or LF";
    int rc = glob ? kvp_policy_add_rule(p, glob, len, &why) : KV_ERR;
    lua_pop(L, 1);
    if (rc != KV_OK) {
        snprintf(err, n, "%smatch %s", what, rc == KV_ENOMEM ? "out of memory" : why);
        return err;
    }
    kvp_rule *r = &p->rules[p->nrules - 1];
    if (apply_names(L, idx, "allow", p, kvp_rule_allow, what, err, n) ||
        apply_names(L, idx, "deny", p, kvp_rule_deny, what, err, n))
        return err;
    lua_getfield(L, idx, "read_only");
    if (lua_toboolean(L, -1))
        kvp_rule_read_only(p);
    lua_pop(L, 1);
    if (!opt_int(L, idx, "max_qps", 1, 100000000, 0, &r->max_qps) ||
        !opt_int(L, idx, "max_replica_lag_ms", 0, 86400000, -1, &r->max_replica_lag_ms)) {
        snprintf(err, n, "%smax_qps or max_replica_lag_ms is out of range", what);
        return err;
    }
    lua_getfield(L, idx, "replica_reads");
    const char *rr = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "never";
    r->replica_reads = strcmp(rr, "prefer") == 0 ? KVP_REPLICA_PREFER
                       : strcmp(rr, "only") == 0 ? KVP_REPLICA_ONLY
                                                 : KVP_REPLICA_NEVER;
    lua_pop(L, 1);
    p->replica_rules += r->replica_reads != KVP_REPLICA_NEVER;
    lua_getfield(L, idx, "route");
    r->route = lua_isfunction(L, -1);
    p->nroutes += r->route;
    lua_pop(L, 1);
    return NULL;
}

static const char *fill(lua_State *L, int idx, kvp_policy *p, char *err, size_t n)
{
    lua_getfield(L, idx, "version");
    p->version = lua_type(L, -1) == LUA_TNUMBER ? (uint64_t)lua_tonumber(L, -1) : 0;
    lua_pop(L, 1);
    lua_getfield(L, idx, "hash");
    const char *hash = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "murmur2_kvstore";
    if (strcmp(hash, "murmur2_kvstore") == 0) {
        p->hash_kind = KVP_HASH_MURMUR2_KVSTORE;
    } else if (strcmp(hash, "crc16") == 0) {
        p->hash_kind = KVP_HASH_CRC16;
    } else {
        snprintf(err, n, "unknown hash '%s' (murmur2_kvstore, crc16)", hash);
        lua_pop(L, 1);
        return err;
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "hash_tags");
    p->hash_tags = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (apply_names(L, idx, "deny", p, kvp_policy_deny, "", err, n) ||
        apply_names(L, idx, "allow", p, kvp_policy_allow, "", err, n))
        return err;
    lua_getfield(L, idx, "source");
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (kvp_policy_set_source(p, s, len) != KV_OK) {
            lua_pop(L, 1);
            return "out of memory";
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "rules");
    int rules = lua_gettop(L);
    const char *bad = NULL;
    if (lua_istable(L, rules)) {
        int nr = (int)lua_objlen(L, rules);
        for (int i = 1; i <= nr && bad == NULL; i++) {
            lua_rawgeti(L, rules, i);
            bad = lua_istable(L, -1) ? add_rule(L, lua_gettop(L), p, i, err, n) : "a rule is not a table";
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (bad == NULL && p->nroutes > 0 && p->source == NULL)
        bad = "a policy with route functions needs its source";
    return bad;
}

kvp_policy *kvp_lua_policy(lua_State *L, int idx, char *err, size_t n)
{
    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    if (!lua_istable(L, idx)) {
        snprintf(err, n, "the policy must be a table");
        return NULL;
    }
    kvp_policy *p = kvp_policy_new();
    if (p == NULL) {
        snprintf(err, n, "out of memory");
        return NULL;
    }
    const char *bad = fill(L, idx, p, err, n);
    if (bad != NULL) {
        if (bad != err)
            snprintf(err, n, "%s", bad);
        kvp_policy_unref(p);
        return NULL;
    }
    return p;
}
