/* lcrypto.c -- kv.crypto: the two primitives of the control ports'
 * challenge-response (lua/kv/handshake.lua decides the protocol):
 *
 *   crypto.hmac_sha1(key, msg) -> 20 raw bytes      (c/core/sha1.c)
 *   crypto.random_bytes(n)     -> n bytes from the kernel (getrandom), 1..256
 *
 * Also built as build/lua/kv/crypto.so so the busted specs use the same code. */
#include "../core/kv.h"
#include "../core/sha1.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <string.h>
#include <sys/random.h>

static int l_hmac_sha1(lua_State *L)
{
    size_t kn, mn;
    const char *key = luaL_checklstring(L, 1, &kn);
    const char *msg = luaL_checklstring(L, 2, &mn);
    uint8_t out[20];
    if (kv_hmac_sha1(key, kn, msg, mn, out) != KV_OK)
        return luaL_error(L, "hmac_sha1: out of memory");
    lua_pushlstring(L, (const char *)out, sizeof(out));
    return 1;
}

static int l_random_bytes(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    uint8_t buf[256];
    if (n < 1 || n > (lua_Integer)sizeof(buf))
        return luaL_error(L, "random_bytes: n must be 1..256");
    size_t got = 0;
    while (got < (size_t)n) {
        ssize_t r = getrandom(buf + got, (size_t)n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return luaL_error(L, "random_bytes: %s", strerror(errno));
        }
        got += (size_t)r;
    }
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

int luaopen_kv_crypto(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"hmac_sha1", l_hmac_sha1},
        {"random_bytes", l_random_bytes},
        {NULL, NULL},
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
