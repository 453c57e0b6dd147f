#!/usr/bin/env bash
# The proxy measures each replica's staleness from the replicas the config
# server pushes (kvp.replicas; here a stand-in config server, fake_cs.lua):
# /metrics shows kvp_replica_lag_ms of a caught-up replica, -1 while the
# replica does not answer (stopped with SIGSTOP), and a value again once it
# runs; each change is logged once.
source "$(dirname "$0")/lib.sh"

M=$(it_free_port); R=$(it_free_port); F=$(it_free_port)
it_redis_start "$M" && it_redis_start "$R" --replicaof 127.0.0.1 "$M" || exit 1
it_wait 15 sh -c "redis-cli -p $R -a $IT_PW --no-auth-warning info replication | grep -q master_link_status:up" ||
  { echo "replica did not sync"; exit 1; }
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/fake_cs.lua" "$F" test "127.0.0.1:$M" \
  "table 1" "replicas {\"127.0.0.1:$M\":[\"127.0.0.1:$R\"]}" > "$IT_DIR/fake_cs.log" 2>&1 &
echo $! > "$IT_DIR/fake_cs.pid"
it_kvp_start P test "$F" || exit 1

lag() {
  curl -s "http://127.0.0.1:$P_HTTP/metrics" |
    sed -n "s/^kvp_replica_lag_ms{master=\"127.0.0.1:$M\",replica=\"127.0.0.1:$R\"} \(-\?[0-9]*\)$/\1/p"
}
usable() { local l; l=$(lag); [ -n "$l" ] && [ "$l" -ge 0 ] && [ "$l" -lt "$1" ]; }
it_wait 5 usable 1000
it_check "a caught-up replica reads a lag under 1 s ($(lag) ms)" usable 1000
it_redis "$M" set k v > /dev/null
it_eq "... and has the master's writes" v "$(it_redis "$R" get k)"

RPID=$(cat "$IT_DIR/redis-$R.pid")
kill -STOP "$RPID"
it_wait 5 sh -c "[ \"\$(curl -s http://127.0.0.1:$P_HTTP/metrics | grep -c 'kvp_replica_lag_ms{.*} -1$')\" = 1 ]"
it_eq "a stopped replica is down (-1)" -1 "$(lag)"
sleep 0.5
kill -CONT "$RPID"
it_wait 5 usable 1000
it_check "it reads a lag again once it runs ($(lag) ms)" usable 1000
it_eq "the proxy logged it unusable once and usable twice (start, return)" "1 2" \
  "$(grep -c 'replica 127.0.0.1:[0-9]* of .* unusable for replica reads' "$IT_DIR/P/kvp.log") $(grep -c 'replica 127.0.0.1:[0-9]* of .* usable for replica reads (lag' "$IT_DIR/P/kvp.log")"
it_done
