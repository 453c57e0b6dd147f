/* lhireader.c -- kv.hireader: hiredis's reader (redisReader) as the decoder
 * of every RESP reply the Lua side reads: control-protocol replies and
 * pushes, the tools' raw connections, kv.resp.decode. The values are built
 * straight into Lua through hiredis's table of create functions (no
 * redisReply tree), in kv.resp's convention:
 *
 *   +OK       { status = "OK" }        -ERR msg   { err = "ERR msg" }
 *   :42       42 (a number)            $3 foo     "foo" (binary safe)
 *   $-1, *-1  the null sentinel        *2 ...     { n = 2, v1, v2 }
 *
 *   hireader.set_null(v)      the sentinel for nil replies (kv.resp.null)
 *   hireader.new([limits])    -> reader; limits = { max_bulk =, max_array =,
 *                                max_line = } (defaults below)
 *   reader:feed(bytes)
 *   reader:next()             -> value | nil (need more) | nil, err; an error
 *                                sticks: every later call returns it again
 *   reader:buffered()         -> bytes fed and not yet consumed
 *   hireader.MAX_DEPTH        nested arrays hiredis reads (fixed: 8)
 *
 * hiredis keeps the partial reply between calls (completed array elements
 * are consumed), so a reply arriving in many pieces costs O(bytes). What
 * hiredis 0.14 does not check is checked here, so bad input always ends in
 * "protocol error: ...": an array longer than max_array (refused when its
 * header is read), a bulk longer than max_bulk or a line without CRLF longer
 * than max_line (both seen while hiredis waits for more bytes), a line ended
 * by a bare LF, bulk data not followed by CRLF.
 *
 * A bare LF is seen when hiredis waits at it, so hiredis is never handed
 * the bytes after one before it has read up to it (they wait in `hold`):
 * otherwise "+A\n:7\r\n" fed at once would read as the status "A\n:7",
 * and an error fed byte by byte -- the same bytes must read the same
 * however TCP cut them (found by tests/fuzz control).
 *
 * While a reply is being read, partial arrays live in the reader's
 * environment table: slot d holds the array at nesting depth d, slot 0 the
 * reply itself; a create function's object (the void * hiredis keeps) is its
 * depth + 1, so a child finds its parent's slot. */
#include "lhireader.h"
#include "../core/kv.h"

#include <hiredis/read.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READER_MT "kv.hireader"
#define MAX_DEPTH 8 /* nested arrays: hiredis 0.14's task stack has 9 slots */

static char null_key; /* registry[&null_key] = the null sentinel */

typedef struct kv_hireader {
    redisReader *r;
    lua_State *L; /* the calling state, during redisReaderGetReply only */
    int levels;   /* stack index of the environment table, likewise */
    size_t max_bulk, max_array, max_line;
    char err[160]; /* sticky error; "" while there is none */
    char *hold;    /* bytes fed after a bare LF hiredis has not read up to */
    size_t hold_off, hold_len, hold_cap;
    int prev_cr;   /* the last byte handed to hiredis was CR */
} kv_hireader;

/* ------------------------------------------------------- shared helpers */

void kv_hireader_push_null(lua_State *L)
{
    lua_pushlightuserdata(L, &null_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
}

void kv_hireader_push_status(lua_State *L, const char *s, size_t n)
{
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, s, n);
    lua_setfield(L, -2, "status");
}

void kv_hireader_push_error(lua_State *L, const char *s, size_t n)
{
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, s, n);
    lua_setfield(L, -2, "err");
}

/* ------------------------------------------------ hiredis create functions */

/* Stores the value on the stack top where it belongs (popping it) and
 * returns the object hiredis keeps for it. */
static void *attach(const redisReadTask *task, int is_array)
{
    kv_hireader *h = task->privdata;
    lua_State *L = h->L;
    int depth = task->parent ? (int)(intptr_t)task->parent->obj : 0;
    if (task->parent) {
        lua_rawgeti(L, h->levels, depth - 1);
        lua_pushvalue(L, -2);
        lua_rawseti(L, -2, task->idx + 1);
        lua_pop(L, 1);
    }
    if (is_array || task->parent == NULL)
        lua_rawseti(L, h->levels, depth);
    else
        lua_pop(L, 1);
    return (void *)(intptr_t)(depth + 1);
}

/* A create function refusing a value: hiredis then reports "Out of memory",
 * which next() replaces with h->err. */
static void *refuse(const redisReadTask *task, const char *msg)
{
    kv_hireader *h = task->privdata;
    snprintf(h->err, sizeof(h->err), "protocol error: %s", msg);
    return NULL;
}

static void *create_string(const redisReadTask *task, char *s, size_t n)
{
    kv_hireader *h = task->privdata;
    switch (task->type) {
    case REDIS_REPLY_STATUS:
        kv_hireader_push_status(h->L, s, n);
        break;
    case REDIS_REPLY_ERROR:
        kv_hireader_push_error(h->L, s, n);
        break;
    default:
        /* hiredis has the whole item, CRLF included, in its buffer but does
         * not look at the two bytes after the data */
        if (s[n] != '\r' || s[n + 1] != '\n')
            return refuse(task, "bulk data not followed by CRLF");
        lua_pushlstring(h->L, s, n);
        break;
    }
    return attach(task, 0);
}

static void *create_array(const redisReadTask *task, int n)
{
    kv_hireader *h = task->privdata;
    if ((size_t)n > h->max_array) {
        char msg[80];
        snprintf(msg, sizeof(msg), "array of %d elements is too long", n);
        return refuse(task, msg);
    }
    lua_createtable(h->L, n < 64 ? n : 64, 1);
    lua_pushinteger(h->L, n);
    lua_setfield(h->L, -2, "n");
    return attach(task, 1);
}

static void *create_integer(const redisReadTask *task, long long v)
{
    kv_hireader *h = task->privdata;
    lua_pushnumber(h->L, (lua_Number)v);
    return attach(task, 0);
}

static void *create_nil(const redisReadTask *task)
{
    kv_hireader *h = task->privdata;
    kv_hireader_push_null(h->L);
    return attach(task, 0);
}

/* The objects are Lua values owned by the environment table: nothing to free. */
static void free_object(void *obj) { KV_UNUSED(obj); }

static redisReplyObjectFunctions create_fns = {
    create_string, create_array, create_integer, create_nil, free_object,
};

/* ---------------------------------------------------------------- limits */

/* hiredis waits for more bytes: look at the item it stopped in, whose type
 * byte it has consumed, so the line (or a bulk's data) starts at r->pos.
 * KV_OK when waiting is right, else KV_ERR with h->err set. */
static int check_waiting(kv_hireader *h)
{
    redisReader *r = h->r;
    if (r->ridx < 0 || r->rstack[r->ridx].type < 0)
        return KV_OK; /* nothing started, or waiting for a type byte */
    const char *p = r->buf + r->pos;
    size_t left = r->len - r->pos;
    const char *nl = memchr(p, '\n', left);
    if (nl == NULL) {
        if (left > h->max_line) {
            snprintf(h->err, sizeof(h->err), "protocol error: line too long (over %zu bytes without CRLF)",
                     h->max_line);
            return KV_ERR;
        }
        return KV_OK;
    }
    if (nl == p || nl[-1] != '\r') {
        snprintf(h->err, sizeof(h->err), "protocol error: line not ended by CRLF");
        return KV_ERR;
    }
    if (r->rstack[r->ridx].type == REDIS_REPLY_STRING) {
        /* a complete "$<len>" line whose data is still coming */
        unsigned long long len = 0;
        for (const char *q = p; q < nl - 1 && *q >= '0' && *q <= '9' && len <= h->max_bulk; q++)
            len = len * 10 + (unsigned)(*q - '0');
        if (len > h->max_bulk) {
            snprintf(h->err, sizeof(h->err), "protocol error: bulk of %.*s bytes is too long",
                     (int)(nl - 1 - p > 40 ? 40 : nl - 1 - p), p);
            return KV_ERR;
        }
    }
    return KV_OK;
}

/* ---------------------------------------------------------------- reader */

static kv_hireader *check_reader(lua_State *L)
{
    return luaL_checkudata(L, 1, READER_MT);
}

static size_t opt_limit(lua_State *L, int t, const char *name, size_t dflt)
{
    if (lua_isnoneornil(L, t))
        return dflt;
    lua_getfield(L, t, name);
    lua_Number v = lua_isnil(L, -1) ? (lua_Number)dflt : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v < 0 ? 0 : (size_t)v;
}

static int l_new(lua_State *L)
{
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    kv_hireader *h = lua_newuserdata(L, sizeof(*h));
    memset(h, 0, sizeof(*h));
    h->max_bulk = opt_limit(L, 1, "max_bulk", 512u << 20);
    h->max_array = opt_limit(L, 1, "max_array", 16u << 20);
    h->max_line = opt_limit(L, 1, "max_line", 64u << 10);
    h->r = redisReaderCreateWithFunctions(&create_fns);
    if (h->r == NULL)
        return luaL_error(L, "kv.hireader: out of memory");
    h->r->privdata = h;
    luaL_getmetatable(L, READER_MT);
    lua_setmetatable(L, -2);
    lua_createtable(L, MAX_DEPTH + 1, 0);
    lua_setfenv(L, -2);
    return 1;
}

static int l_gc(lua_State *L)
{
    kv_hireader *h = check_reader(L);
    if (h->r) {
        redisReaderFree(h->r);
        h->r = NULL;
    }
    free(h->hold);
    h->hold = NULL;
    return 0;
}

/* Hands hiredis s[0..n) up to and including the first bare LF; returns the
 * bytes handed (n when there is none), or (size_t)-1 out of memory. */
static size_t feed_segment(kv_hireader *h, const char *s, size_t n)
{
    size_t take = n;
    for (const char *p = s; (p = memchr(p, '\n', n - (size_t)(p - s))) != NULL; p++) {
        if (!(p == s ? h->prev_cr : p[-1] == '\r')) {
            take = (size_t)(p - s) + 1;
            break;
        }
    }
    if (take == 0)
        return 0;
    if (redisReaderFeed(h->r, s, take) != REDIS_OK && h->r->err == 0)
        return (size_t)-1;
    h->prev_cr = s[take - 1] == '\r';
    return take;
}

/* Keeps s[0..n) after what is held. KV_OK or KV_ENOMEM. */
static int hold_add(kv_hireader *h, const char *s, size_t n)
{
    if (h->hold_off > 0) {
        memmove(h->hold, h->hold + h->hold_off, h->hold_len);
        h->hold_off = 0;
    }
    if (h->hold_len + n > h->hold_cap) {
        size_t cap = h->hold_cap ? h->hold_cap : 256;
        while (cap < h->hold_len + n)
            cap *= 2;
        char *p = realloc(h->hold, cap);
        if (p == NULL)
            return KV_ENOMEM;
        h->hold = p;
        h->hold_cap = cap;
    }
    memcpy(h->hold + h->hold_len, s, n);
    h->hold_len += n;
    return KV_OK;
}

/* The next held segment to hiredis. KV_OK, or KV_ENOMEM. */
static int hold_feed(kv_hireader *h)
{
    size_t took = feed_segment(h, h->hold + h->hold_off, h->hold_len);
    if (took == (size_t)-1)
        return KV_ENOMEM;
    h->hold_off += took;
    h->hold_len -= took;
    if (h->hold_len == 0)
        h->hold_off = 0;
    return KV_OK;
}

static int l_feed(lua_State *L)
{
    kv_hireader *h = check_reader(L);
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_typerror(L, 2, "string");
    size_t n;
    const char *s = lua_tolstring(L, 2, &n);
    if (h->err[0] != '\0' || n == 0)
        return 0;
    if (h->hold_len == 0) {
        size_t took = feed_segment(h, s, n);
        if (took == (size_t)-1)
            return luaL_error(L, "kv.hireader: out of memory");
        s += took;
        n -= took;
    }
    if (n > 0 && hold_add(h, s, n) != KV_OK)
        return luaL_error(L, "kv.hireader: out of memory");
    return 0;
}

static int push_err(lua_State *L, kv_hireader *h)
{
    lua_pushnil(L);
    lua_pushstring(L, h->err);
    return 2;
}

static int l_next(lua_State *L)
{
    kv_hireader *h = check_reader(L);
    if (h->err[0])
        return push_err(L, h);
    luaL_checkstack(L, 8, "kv.hireader");
    lua_settop(L, 1);
    lua_getfenv(L, 1);
    h->L = L;
    h->levels = 2;
    void *reply = NULL;
    int rc;
    for (;;) {
        rc = redisReaderGetReply(h->r, &reply);
        /* waiting, at a bare LF or for bytes still held: check, hand on */
        if (rc != REDIS_OK || reply != NULL || h->hold_len == 0 || check_waiting(h) != KV_OK)
            break;
        if (hold_feed(h) != KV_OK) {
            h->L = NULL;
            return luaL_error(L, "kv.hireader: out of memory");
        }
    }
    h->L = NULL;
    if (rc != REDIS_OK) {
        if (h->err[0] == '\0') { /* hiredis's own message, not a refusal above */
            const char *e = h->r->errstr;
            if (strncmp(e, "Protocol error, ", 16) == 0)
                e += 16;
            snprintf(h->err, sizeof(h->err), "protocol error: %s", e);
        }
        return push_err(L, h);
    }
    if (reply == NULL) {
        if (check_waiting(h) != KV_OK)
            return push_err(L, h);
        return 0;
    }
    lua_rawgeti(L, 2, 0);
    for (int d = 0; d <= MAX_DEPTH; d++) {
        lua_pushnil(L);
        lua_rawseti(L, 2, d);
    }
    return 1;
}

static int l_buffered(lua_State *L)
{
    kv_hireader *h = check_reader(L);
    lua_pushnumber(L, (lua_Number)(h->r->len - h->r->pos + h->hold_len));
    return 1;
}

static int l_set_null(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushlightuserdata(L, &null_key);
    lua_pushvalue(L, 1);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return 0;
}

int luaopen_kv_hireader(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"feed", l_feed}, {"next", l_next}, {"buffered", l_buffered}, {NULL, NULL}};
    static const luaL_Reg fns[] = {{"new", l_new}, {"set_null", l_set_null}, {NULL, NULL}};
    if (luaL_newmetatable(L, READER_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushinteger(L, MAX_DEPTH);
    lua_setfield(L, -2, "MAX_DEPTH");
    return 1;
}
