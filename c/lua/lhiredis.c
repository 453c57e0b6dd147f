/* lhiredis.c -- kv.hiredis: hiredis's async client (redisAsyncContext) with
 * its libevent adapter on the control thread's event base, for the plain
 * request/reply conversations the control plane and the tools have with
 * Redis (health checks, fail-over, migration_tool, test_all).
 *
 * As in kv.core, C knows nothing of coroutines: a connection is an integer
 * id and every event is one call of the handler set with set_handler(fn):
 *
 *   fn("connected", id)
 *   fn("reply",     id, value)    -- one per command, in the order sent;
 *                                    values in kv.resp's convention
 *   fn("closed",    id, reason)   -- connect failed, peer closed, I/O or
 *                                    protocol error; no reply follows
 *
 *   hiredis.connect(host, port)  -> id | nil, err
 *   hiredis.command(id, argv)    -> true | nil, err   argv: strings and
 *                                   numbers, argv.n or #argv of them
 *   hiredis.formatted(id, bytes) -> true | nil, err   one command already in
 *                                   RESP (checked: an array of bulk strings)
 *   hiredis.close(id)                                  no event follows
 *
 * lua/kv/redis.lua turns this into redis.connect / client:call; timeouts are
 * its timers. A connection goes
 *
 *   CONNECTING --onConnect(OK)--> OPEN --onDisconnect--> gone, "closed"
 *        |  \--onConnect(ERR)---------------------------> gone, "closed"
 *        +------- close() ------> CLOSING --next loop pass--> redisAsyncFree,
 *                                                              gone, no event
 *
 * close() frees on the next pass of the loop because hiredis frees a
 * context at once when redisAsyncFree is called outside a reply callback:
 * from a "connected" handler that would free it under hiredis's own write
 * handler. Callbacks carry the id, never a pointer, and ids are not reused,
 * so whatever hiredis still calls for a context that is gone finds nothing.
 * Pub/sub and MONITOR are refused: they break one reply per command. */
#include "lhireader.h"
#include "runtime.h"
#include "../core/kv.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { CONN_CONNECTING = 1, CONN_OPEN, CONN_CLOSING };

/* One connection. The table is searched linearly: the control plane holds
 * a handful (one per master for health checks, a few per tool). */
typedef struct kv_hconn {
    int64_t id;
    int state;
    redisAsyncContext *ac;
} kv_hconn;

static kv_hconn *conns;
static int nconns, capconns;
static int64_t next_id = 1;
static int handler_ref = LUA_NOREF;

static kv_hconn *conn_find(int64_t id)
{
    for (int i = 0; i < nconns; i++)
        if (conns[i].id == id)
            return &conns[i];
    return NULL;
}

static kv_hconn *conn_add(redisAsyncContext *ac)
{
    if (nconns == capconns) {
        int n = capconns ? capconns * 2 : 16;
        kv_hconn *c = realloc(conns, (size_t)n * sizeof(*c));
        if (c == NULL)
            return NULL;
        conns = c;
        capconns = n;
    }
    kv_hconn *c = &conns[nconns++];
    c->id = next_id++;
    c->state = CONN_CONNECTING;
    c->ac = ac;
    return c;
}

/* The pointer is invalid afterwards. */
static void conn_remove(kv_hconn *c)
{
    *c = conns[--nconns];
}

/* --------------------------------------------------------------- events */

static lua_State *begin_event(const char *name, int64_t id)
{
    lua_State *L = kv_runtime_L();
    lua_rawgeti(L, LUA_REGISTRYINDEX, handler_ref);
    lua_pushstring(L, name);
    lua_pushnumber(L, (lua_Number)id);
    return L;
}

static void end_event(lua_State *L, int nargs)
{
    kv_runtime_pcall(L, nargs + 2, 0);
}

static void emit_closed(int64_t id, const char *reason)
{
    lua_State *L = begin_event("closed", id);
    lua_pushstring(L, reason && reason[0] ? reason : "closed by peer");
    end_event(L, 1);
}

/* hiredis's reply tree -> kv.resp's values (the depth is bounded by hiredis). */
static void push_reply(lua_State *L, const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushnumber(L, (lua_Number)r->integer);
        break;
    case REDIS_REPLY_STATUS:
        kv_hireader_push_status(L, r->str, r->len);
        break;
    case REDIS_REPLY_ERROR:
        kv_hireader_push_error(L, r->str, r->len);
        break;
    case REDIS_REPLY_ARRAY:
        luaL_checkstack(L, 4, "kv.hiredis");
        lua_createtable(L, (int)r->elements, 1);
        lua_pushinteger(L, (lua_Integer)r->elements);
        lua_setfield(L, -2, "n");
        for (size_t i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    default: /* REDIS_REPLY_NIL */
        kv_hireader_push_null(L);
        break;
    }
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    KV_UNUSED(ac);
    int64_t id = (int64_t)(intptr_t)privdata;
    kv_hconn *c = conn_find(id);
    /* NULL: the context is going away; its "closed" event follows */
    if (c == NULL || c->state == CONN_CLOSING || reply == NULL)
        return;
    lua_State *L = begin_event("reply", id);
    push_reply(L, reply);
    end_event(L, 1);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    int64_t id = (int64_t)(intptr_t)ac->data;
    kv_hconn *c = conn_find(id);
    if (c == NULL)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this returns */
        int was_closing = c->state == CONN_CLOSING;
        conn_remove(c);
        if (!was_closing)
            emit_closed(id, ac->errstr);
        return;
    }
    if (c->state == CONN_CONNECTING) {
        c->state = CONN_OPEN;
        lua_State *L = begin_event("connected", id);
        end_event(L, 0);
    }
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    KV_UNUSED(status);
    int64_t id = (int64_t)(intptr_t)ac->data;
    kv_hconn *c = conn_find(id);
    if (c == NULL)
        return;
    int was_closing = c->state == CONN_CLOSING;
    conn_remove(c);
    if (!was_closing)
        emit_closed(id, ac->errstr);
}

static void free_cb(evutil_socket_t fd, short what, void *arg)
{
    KV_UNUSED(fd);
    KV_UNUSED(what);
    kv_hconn *c = conn_find((int64_t)(intptr_t)arg);
    if (c == NULL)
        return; /* hiredis already freed it (connect failed or peer closed) */
    redisAsyncContext *ac = c->ac;
    conn_remove(c);
    redisAsyncFree(ac);
}

/* ---------------------------------------------------------------- calls */

static int push_fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

static int l_set_handler(lua_State *L)
{
    kv_runtime_set_ref(L, 1, &handler_ref);
    return 0;
}

static int l_connect(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    int port = luaL_checkint(L, 2);
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (ac == NULL)
        return push_fail(L, "out of memory");
    if (ac->err) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot connect to %s:%d: %s", host, port, ac->errstr);
        redisAsyncFree(ac);
        return 2;
    }
    kv_hconn *c = conn_add(ac);
    if (c == NULL || redisLibeventAttach(ac, kv_runtime_base()) != REDIS_OK) {
        if (c)
            conn_remove(c);
        redisAsyncFree(ac);
        return push_fail(L, "out of memory");
    }
    ac->data = (void *)(intptr_t)c->id;
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    lua_pushnumber(L, (lua_Number)c->id);
    return 1;
}

/* The connection of argument 1 when commands may be sent on it. */
static kv_hconn *check_usable(lua_State *L)
{
    kv_hconn *c = conn_find((int64_t)luaL_checknumber(L, 1));
    return c && c->state != CONN_CLOSING ? c : NULL;
}

/* Commands that would switch hiredis to pub/sub or MONITOR mode. */
static int refused_name(const char *s, size_t n)
{
    static const char *const names[] = {"subscribe", "psubscribe", "ssubscribe", "unsubscribe",
                                        "punsubscribe", "sunsubscribe", "monitor"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == n && strncasecmp(s, names[i], n) == 0)
            return 1;
    return 0;
}

#define NUM_TEXT 32 /* room for "%lld" and "%.17g" */

/* Argument i of table t: a string (anchored by t, so the pointer outlives
 * the stack slot), or a number written into num as kv.resp.encode writes it
 * (integers without exponent). */
static const char *arg_text(lua_State *L, int t, int i, size_t *len, char *num)
{
    const char *s = NULL;
    lua_rawgeti(L, t, i);
    int type = lua_type(L, -1);
    if (type == LUA_TSTRING) {
        s = lua_tolstring(L, -1, len);
    } else if (type == LUA_TNUMBER) {
        lua_Number v = lua_tonumber(L, -1);
        if (v != v || isinf(v))
            luaL_error(L, "kv.hiredis.command: cannot send %f", v);
        if (floor(v) == v && fabs(v) < 9.2233720368547758e18)
            snprintf(num, NUM_TEXT, "%lld", (long long)v);
        else
            snprintf(num, NUM_TEXT, "%.17g", v);
        s = num;
        *len = strlen(num);
    } else {
        luaL_error(L, "kv.hiredis.command: argument %d of type %s (strings and numbers only)", i,
                   lua_typename(L, type));
    }
    lua_pop(L, 1);
    return s;
}

static int l_command(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    kv_hconn *c = check_usable(L);
    lua_getfield(L, 2, "n");
    int argc = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : (int)lua_objlen(L, 2);
    lua_pop(L, 1);
    if (argc <= 0)
        return luaL_error(L, "kv.hiredis.command: no command");
    if (c == NULL)
        return push_fail(L, "closed");
    /* pointers, lengths and number texts in a userdata: a bad argument
     * raising an error leaks nothing */
    size_t each = sizeof(const char *) + sizeof(size_t) + NUM_TEXT;
    const char **argv = lua_newuserdata(L, (size_t)argc * each);
    size_t *lens = (size_t *)(argv + argc);
    char *nums = (char *)(lens + argc);
    for (int i = 0; i < argc; i++)
        argv[i] = arg_text(L, 2, i + 1, &lens[i], nums + (size_t)i * NUM_TEXT);
    if (refused_name(argv[0], lens[0]))
        return luaL_error(L, "kv.hiredis.command: pub/sub and MONITOR are not supported");
    int rc = redisAsyncCommandArgv(c->ac, reply_cb, (void *)(intptr_t)c->id, argc, argv, lens);
    lua_pop(L, 1);
    if (rc != REDIS_OK)
        return push_fail(L, c->ac->errstr[0] ? c->ac->errstr : "cannot send");
    lua_pushboolean(L, 1);
    return 1;
}

/* bytes must be exactly one command: an array of one or more bulk strings
 * (hiredis parses the command name out of it to find pub/sub commands). */
static int check_formatted(const char *s, size_t n)
{
    redisReader *r = redisReaderCreate();
    if (r == NULL)
        return KV_ERR;
    redisReply *v = NULL;
    int ok = redisReaderFeed(r, s, n) == REDIS_OK && redisReaderGetReply(r, (void **)&v) == REDIS_OK &&
             v != NULL && v->type == REDIS_REPLY_ARRAY && v->elements > 0 && r->pos == r->len;
    for (size_t i = 0; ok && i < v->elements; i++)
        ok = v->element[i]->type == REDIS_REPLY_STRING;
    if (ok)
        ok = !refused_name(v->element[0]->str, v->element[0]->len);
    if (v)
        freeReplyObject(v);
    redisReaderFree(r);
    return ok ? KV_OK : KV_ERR;
}

static int l_formatted(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    kv_hconn *c = check_usable(L);
    if (check_formatted(s, n) != KV_OK)
        return luaL_error(L, "kv.hiredis.formatted: not one command (an array of bulk strings, "
                             "no pub/sub or MONITOR)");
    if (c == NULL)
        return push_fail(L, "closed");
    if (redisAsyncFormattedCommand(c->ac, reply_cb, (void *)(intptr_t)c->id, s, n) != REDIS_OK)
        return push_fail(L, c->ac->errstr[0] ? c->ac->errstr : "cannot send");
    lua_pushboolean(L, 1);
    return 1;
}

static int l_close(lua_State *L)
{
    kv_hconn *c = check_usable(L);
    if (c == NULL)
        return 0;
    c->state = CONN_CLOSING;
    struct timeval now = {0, 0};
    if (event_base_once(kv_runtime_base(), -1, EV_TIMEOUT, free_cb, (void *)(intptr_t)c->id, &now) != 0) {
        redisAsyncContext *ac = c->ac; /* cannot defer: free now (not from a callback of its own) */
        conn_remove(c);
        redisAsyncFree(ac);
    }
    return 0;
}

int luaopen_kv_hiredis(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"set_handler", l_set_handler}, {"connect", l_connect}, {"command", l_command},
        {"formatted", l_formatted},     {"close", l_close},     {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
