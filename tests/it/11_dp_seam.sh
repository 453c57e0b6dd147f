#!/usr/bin/env bash
# kvp.dp's own checks (c/proxy/lkvp.c), which Lua never lets a value reach:
# the kvp binary runs tests/it/dp_seam.lua as its main module. No Redis, no
# config server: dp.configure (every key on the first call, only live ones
# after dp.start, each value fits its C field) and dp.set_table (every bound).
source "$(dirname "$0")/lib.sh"

mkdir -p "$IT_DIR/lua/kvp"
echo "return dofile(\"$IT_ROOT/tests/it/dp_seam.lua\")" > "$IT_DIR/lua/kvp/main.lua"
KV_LUA_DIR="$IT_DIR/lua" LUA_PATH="$IT_ROOT/lua/?.lua;;" "$IT_BIN/kvp" "$(it_free_port)" > "$IT_DIR/out" 2>&1
cat "$IT_DIR/out"
it_check "every kvp.dp check passes" grep -qx "all dp checks passed" "$IT_DIR/out"
it_done
