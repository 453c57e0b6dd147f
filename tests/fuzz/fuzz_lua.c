/* fuzz_lua.c -- libFuzzer targets whose code under test is Lua: the runtime
 * (c/lua/) is embedded as in kvp and kvcs, and FUZZ_TARGET names the harness
 * tests/fuzz/<target>.lua, which returns function(data). That function runs
 * the parser on the input and checks its invariants with error(); every
 * Lua error (an invariant, or a parser that raised where it should have
 * returned nil, err) aborts with the traceback, so libFuzzer keeps the
 * input. The C under it (kv.hireader over hiredis's reader) runs under
 * ASan + UBSan. Targets: http (kv.http's request parser), config
 * (kv.config.parse / update_text with kvp's and kvcs's schemas), btable
 * (kv.btable.decode, the table-file validator), control (kv.resp's reader,
 * which decodes the control protocol at both ends: kvp <-> kvcs). */
#include "../../c/lua/runtime.h"

#include <lauxlib.h>
#include <luajit.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET=\"name\" (tests/fuzz/<name>.lua)"
#endif
#ifndef FUZZ_DIR
#define FUZZ_DIR "tests/fuzz"
#endif

static lua_State *L;
static int fn_ref = LUA_NOREF;

/* ------------------------------------------------------- Lua coverage
 *
 * clang instruments only the C: the Lua parsers would be a black box to
 * libFuzzer. So a line hook counts each (chunk, previous line, line) edge of
 * the Lua code into libFuzzer's extra counters (the section libFuzzer reads
 * next to its own), which makes Lua branches coverage like C ones. The JIT
 * is off: hooks do not fire inside compiled traces. Under the replay driver
 * the section is just an array nobody reads. */
#define COVER_SLOTS (1 << 16)
__attribute__((section("__libfuzzer_extra_counters"), used)) static uint8_t cover[COVER_SLOTS];
static uintptr_t cover_prev;

static void cover_hook(lua_State *l, lua_Debug *ar)
{
    if (lua_getinfo(l, "S", ar) == 0)
        return;
    /* ar->source is an interned string: its address names the chunk */
    uintptr_t here = ((uintptr_t)ar->source * 31u) ^ ((uintptr_t)ar->currentline * 2654435761u);
    cover[(here ^ (cover_prev >> 1)) & (COVER_SLOTS - 1)]++;
    cover_prev = here;
}

/* fuzz_cover(on): a harness turns the hook off around code that sets its
 * own (kv.config.parse's instruction limit): LuaJIT has one hook. */
static int l_fuzz_cover(lua_State *l)
{
    if (lua_toboolean(l, 1))
        lua_sethook(l, cover_hook, LUA_MASKLINE, 0);
    else
        lua_sethook(l, NULL, 0, 0);
    return 0;
}

static void fuzz_lua_init(void)
{
    if (kv_runtime_init() != 0)
        abort();
    L = kv_runtime_L();
    kv_runtime_preload(L, "kv.core", luaopen_kv_core);
    kv_runtime_preload(L, "kv.hireader", luaopen_kv_hireader);
    kv_runtime_preload(L, "kv.hiredis", luaopen_kv_hiredis);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_register(L, "fuzz_cover", l_fuzz_cover);
    const char *path = FUZZ_DIR "/" FUZZ_TARGET ".lua";
    if (luaL_loadfile(L, path) != 0 || kv_runtime_pcall(L, 0, 1) != 0 || !lua_isfunction(L, -1)) {
        fprintf(stderr, "fuzz_lua: %s does not load or return a function: %s\n", path,
                lua_tostring(L, -1));
        abort();
    }
    fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    atexit(kv_runtime_deinit); /* finalizers free the readers: no leak at exit */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (L == NULL)
        fuzz_lua_init();
    if (size > 1 << 20)
        return 0;
    cover_prev = 0;
    lua_sethook(L, cover_hook, LUA_MASKLINE, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_pushlstring(L, (const char *)data, size);
    /* kv_runtime_pcall logs through kv_log (stderr) with the traceback */
    if (kv_runtime_pcall(L, 1, 0) != 0) {
        fprintf(stderr, "fuzz_lua(%s): the harness raised an error (see above)\n", FUZZ_TARGET);
        abort();
    }
    lua_sethook(L, NULL, 0, 0);
    lua_settop(L, 0);
    /* every run: readers are freed by their __gc, and libFuzzer's leak
     * check after an input would count one still waiting for the GC */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
