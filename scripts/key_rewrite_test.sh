#!/usr/bin/env bash
# key_rewrite_test.sh -- TEST_GUIDE 7: a key-rewrite pattern hides the old
# values of matching keys, new writes go to new keys, deleting the pattern
# brings the old values back. Green/red per step. Runs against the local
# cluster (PROXY_PORT 7400, PROXY_HTTP 7500 may be overridden).
source "$(dirname "$(readlink -f "$0")")/lib/common.sh"
PORT=${PROXY_PORT:-7400}
PX="http://127.0.0.1:${PROXY_HTTP:-7500}/kvstore/proxy"
failed=0
R() { redis-cli -p "$PORT" "$@"; }
J() { luajit "$KV_ROOT/scripts/lib/json.lua" "$1"; }
step() { if [ "$2" = "$3" ]; then green "PASS $1"; else red "FAIL $1: expected [$2], got [$3]"; failed=$((failed + 1)); fi; }

curl -s -d '{"pattern": "aa*"}' "$PX/del_pattern" >/dev/null   # a leftover from an aborted run
step "1. set aaa, aab, bbb" "OK OK OK" "$(R set aaa v1) $(R set aab v2) $(R set bbb v3)"
step "2. add pattern aa*" "1001" "$(curl -s -d '{"pattern": "aa*"}' "$PX/add_pattern" | J 'j.code')"
step "3. aaa and aab read nil, bbb still reads" "|| v3" "$(R get aaa)|$(R get aab)| $(R get bbb)"
step "4. new writes to aaa, aab" "OK OK" "$(R set aaa v4) $(R set aab v5)"
step "4. and they read back" "v4 v5" "$(R get aaa) $(R get aab)"
R del aaa aab >/dev/null   # drop the rewritten keys
step "5. delete pattern aa*" "1001" "$(curl -s -d '{"pattern": "aa*"}' "$PX/del_pattern" | J 'j.code')"
step "6. old values of aaa and aab are back" "v1 v2" "$(R get aaa) $(R get aab)"
R del aaa aab bbb >/dev/null

if [ "$failed" -eq 0 ]; then green "key_rewrite_test: all steps passed"; else red "key_rewrite_test: $failed step(s) failed"; fi
[ "$failed" -eq 0 ]
