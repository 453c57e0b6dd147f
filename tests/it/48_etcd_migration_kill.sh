#!/usr/bin/env bash
# Issue 14, "Tests": kill -9 the leader kvcs DURING a migration. Three etcd
# members, three kvcs (store = "etcd"), two proxies on config_servers
# attached to different kvcs, the no-loss checker (tests/it/noloss.lua)
# writing and reading through both. migration_tool --cs <all three> moves
# buckets from 2 to 3 masters in small rounds; once a few rounds are done
# the leader is killed. The tool goes on with another config server or
# fails; run again against the list it finishes. Nothing acknowledged is
# lost, no read goes back, every preloaded key is still there.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_cs3.sh"
[ -x "$IT_BIN/migration_tool" ] || { echo "build/migration_tool is missing"; exit 1; }

cs3_start "lease_ttl = 2"
M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
for m in $M1 $M2 $M3; do it_redis_start "$m" || exit 1; done
L=$(who_leads)
it_check "init_table on the leader $L" it_init_table "$(http_of $L)" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2"
PLIST=$(cs3_list proxy)

# the kvcs a proxy registered with last (from its log)
attached() {
  local p n
  p=$(grep "registered with config server" "$IT_DIR/$1/kvp.log" | tail -1 | sed 's/.*server 127.0.0.1:\([0-9]*\) .*/\1/')
  for n in A B C; do [ "$(proxy_of $n)" = "$p" ] && { echo $n; return; }; done
  echo none
}
# a proxy on config_servers attached to a kvcs not in SKIP (a proxy draws
# its first server from its random id: stopped cleanly -- UNREGISTER, not a
# known proxy any more -- and started again until it lands elsewhere);
# sets ON to the letter (none: it never did)
start_proxy() {
  local name=$1 i on; shift
  for i in 1 2 3 4 5 6 7 8 9 10; do
    rm -rf "${IT_DIR:?}/$name"
    it_kvp_start "$name" test 7100 "" "config_servers = \"$PLIST\"" || exit 1
    it_wait 10 it_kvp_ready "$(eval echo \$${name}_PORT)" || exit 1
    on=$(attached "$name")
    in_list "$on" "$@" || { ON=$on; return; }
    it_kill "$name" TERM
    sleep 0.3
  done
  ON=none
}
start_proxy P; PON=$ON
start_proxy Q "$PON"; QON=$ON
it_check "two proxies attached to different kvcs (P on $PON, Q on $QON; leader $L)" \
  test "$PON" != none -a "$QON" != none -a "$PON" != "$QON"

redis-benchmark -p "$P_PORT" -t set -n 20000 -r 100000000 -d 64 -q >/dev/null 2>&1
keys() { it_redis "$1" dbsize; }
before=$(( $(keys "$M1") + $(keys "$M2") ))
echo "# preloaded $before keys"

stop="$IT_DIR/stop"
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/noloss.lua" "$P_PORT,$Q_PORT" 120 6 60 "$stop" > "$IT_DIR/noloss.out" 2>&1 &
checker=$!
sleep 1
MIGS=$(cs3_list mig)
"$IT_BIN/migration_tool" --cs "$MIGS" --ns test --add "127.0.0.1:$M3" --parallel 8 --wait_ms 50 \
  > "$IT_DIR/tool1.out" 2>&1 &
tool=$!
csver() { curl -s -m 1 -d '{"namespace":"test"}' "http://127.0.0.1:$(http_of "$1")/kvstore/cs/bucket_table" | J j.version 2>/dev/null; }
F=A; [ "$L" = A ] && F=B
# a few rounds done (each is blocked, migrating, done: 3 versions), and
# buckets migrating now (keys of them on both masters)
under_way() {
  test "$(curl -s -m 1 -d '{"namespace":"test"}' "http://127.0.0.1:$(http_of $F)/kvstore/cs/bucket_table" |
    J 'j.version >= 10 and #j.migrating > 0')" = true
}
it_check "the migration is under way" it_wait 20 under_way
v=$(csver "$F")
t0=$(now_ms)
it_kill "$L" KILL
echo "# leader $L killed (kill -9) at table v$v, migrating: $(curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$(http_of $F)/kvstore/cs/bucket_table" | J '#j.migrating')"
it_check "the tool had not finished when the leader died" kill -0 "$tool"
NEW=$(wait_new_leader 10 "$L")
echo "# new leader $NEW after $(( $(now_ms) - t0 )) ms"
it_check "another kvcs leads" test "$NEW" != none

# the tool goes on by itself (another config server of --cs) or fails/stalls
for ((i = 0; i < 300; i++)); do kill -0 "$tool" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$tool" 2>/dev/null; then
  kill "$tool"; wait "$tool" 2>/dev/null; rc1=stalled
else
  wait "$tool"; rc1=$?
fi
echo "# first run of the tool: $rc1; its last lines:"
tail -3 "$IT_DIR/tool1.out" | sed 's/^/#   /'
grep "going on with" "$IT_DIR/tool1.out" | head -3 | sed 's/^/#   /'
timeout 60 "$IT_BIN/migration_tool" --cs "$MIGS" --ns test --add "127.0.0.1:$M3" > "$IT_DIR/tool2.out" 2>&1
rc2=$?
tail -2 "$IT_DIR/tool2.out" | sed 's/^/#   /'
it_eq "the tool run again against the list finishes" 0 "$rc2"
tbl() { curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$(http_of $NEW)/kvstore/cs/bucket_table" | J "$1"; }
it_eq "M3 owns a third of the buckets, none migrating" "341 0" "$(tbl "#(j.table['127.0.0.1:$M3'] or {}) .. ' ' .. #j.migrating")"
v=$(csver "$NEW")
pver() { curl -s "http://127.0.0.1:$1/kvstore/proxy/bucket_table" | J j.version; }
both_on() { test "$(pver "$P_HTTP") $(pver "$Q_HTTP")" = "$v $v"; }
it_check "both proxies hold the last table v$v" it_wait 10 both_on

touch "$stop"
wait "$checker"
rc=$?
cat "$IT_DIR/noloss.out"
it_eq "no acknowledged write lost, no read went backwards" 0 "$rc"
after=$(( $(keys "$M1") + $(keys "$M2") + $(keys "$M3") ))
it_check "no preloaded key lost ($before before, $after after)" test "$after" -ge "$before"
it_check "M3 holds keys" test "$(keys "$M3")" -gt 0
it_done
