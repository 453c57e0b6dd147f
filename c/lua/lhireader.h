/* lhireader.h -- kv.hireader (see lhireader.c) and the helpers that build
 * kv.resp's values, shared with kv.hiredis. */
#ifndef KV_LHIREADER_H
#define KV_LHIREADER_H

#include <lua.h>
#include <stddef.h>

/* Push the null sentinel (hireader.set_null's value; nil before that). */
void kv_hireader_push_null(lua_State *L);
/* Push { status = s } / { err = s }. */
void kv_hireader_push_status(lua_State *L, const char *s, size_t n);
void kv_hireader_push_error(lua_State *L, const char *s, size_t n);

int luaopen_kv_hireader(lua_State *L);

#endif
