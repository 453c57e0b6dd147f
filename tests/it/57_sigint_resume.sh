#!/usr/bin/env bash
# Issue 15: Ctrl-C (SIGINT) stops migration_tool between two rounds of
# buckets: it exits 130 saying so, the table has no bucket left migrating
# (consistent: each bucket wholly on its source or its destination), some
# but not all moved; the same command run again finishes; nothing lost.
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }
it_scale_2to3 || exit 1
N=30000
awk -v n=$N 'BEGIN { for (i = 0; i < n; i++) printf "*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$1\r\nv\r\n", length("k" i), i }' |
  redis-cli -p "$P_PORT" --pipe > /dev/null
MIG=$CS_MIG
tool() { "$IT_BIN/migration_tool" --cs "127.0.0.1:$MIG" --ns test --add "127.0.0.1:$M3" "$@"; }
# slow on purpose (a cap, small rounds) so the signal lands mid-run
# (the binary itself in the background: $! must be its pid, not a subshell's)
"$IT_BIN/migration_tool" --cs "127.0.0.1:$MIG" --ns test --add "127.0.0.1:$M3" \
  --parallel 16 --max-keys-per-sec 4000 > "$IT_DIR/run1.out" 2>&1 &
T=$!
sleep 1
kill -INT $T
wait $T
rc=$?
cat "$IT_DIR/run1.out" | tr '\r' '\n' | grep -v '^$' | tail -3
it_eq "Ctrl-C: exit 130" 130 "$rc"
it_check "it says where it stopped" grep -q "stopped (Ctrl-C) between two rounds" "$IT_DIR/run1.out"
tbl=$(curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$CS_HTTP/kvstore/cs/bucket_table")
mig=$(echo "$tbl" | J '#j.migrating')
owned=$(echo "$tbl" | J "#(j.table['127.0.0.1:$M3'] or {})")
it_eq "no bucket left migrating" 0 "$mig"
it_check "some buckets moved, not all ($owned of 341)" test "$owned" -gt 0 -a "$owned" -lt 341
tool > "$IT_DIR/run2.out" 2>&1
it_eq "the same command finishes the move" 0 "$?"
it_eq "the new master owns its share" 341 \
  "$(curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$CS_HTTP/kvstore/cs/bucket_table" | J "#j.table['127.0.0.1:$M3']")"
miss=$(for i in $(seq 0 37 $((N - 1))); do echo "GET k$i"; done | redis-cli -p "$P_PORT" | grep -vc '^v$')
it_eq "nothing lost (every 37th key read back)" 0 "$miss"
total=$(( $(it_redis "$M1" dbsize) + $(it_redis "$M2" dbsize) + $(it_redis "$M3" dbsize) ))
it_eq "every key still once" "$N" "$total"
it_done
