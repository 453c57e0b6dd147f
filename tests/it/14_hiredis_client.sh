#!/usr/bin/env bash
# kv.redis over hiredis's async client (c/lua/lhiredis.c) against a real
# redis-server: tests/it/hiredis_client.lua prints one line per check.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port)
SILENT=$(it_free_port)
it_redis_start "$M1" || exit 1
it_check "kv.redis client against redis-server" \
  "$IT_BIN/kvlua" "$IT_ROOT/tests/it/hiredis_client.lua" "$M1" "$IT_PW" "$SILENT"
it_done
