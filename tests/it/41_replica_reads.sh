#!/usr/bin/env bash
# Issue 13: replica reads. A rule with replica_reads = "prefer" sends its
# keys' read-only commands to a replica that is up and within
# max_replica_lag_ms (else the master); "only" answers an error when no
# replica is. Writes always go to the master. The replicas come from the
# config server's push (here a stand-in, fake_cs.lua); their staleness is
# what the proxy measures (kvp.replicas). A replica that lags beyond the
# bound, or is down (SIGSTOP), is skipped.
source "$(dirname "$0")/lib.sh"

M=$(it_free_port); R=$(it_free_port); F=$(it_free_port)
it_redis_start "$M" && it_redis_start "$R" --replicaof 127.0.0.1 "$M" || exit 1
it_wait 15 sh -c "redis-cli -p $R -a $IT_PW --no-auth-warning info replication | grep -q master_link_status:up" ||
  { echo "replica did not sync"; exit 1; }
cat > "$IT_DIR/policy.lua" <<'EOP'
return {
  rules = {
    { match = "cache:*", replica_reads = "prefer", max_replica_lag_ms = 5000 },
    { match = "fresh:*", replica_reads = "prefer", max_replica_lag_ms = 200 },
    { match = "only:*", replica_reads = "only" },
  },
}
EOP
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/fake_cs.lua" "$F" test "127.0.0.1:$M" \
  "table 1" "replicas {\"127.0.0.1:$M\":[\"127.0.0.1:$R\"]}" > "$IT_DIR/fake_cs.log" 2>&1 &
echo $! > "$IT_DIR/fake_cs.pid"
it_kvp_start P test "$F" "" "policy = \"$IT_DIR/policy.lua\"" || exit 1

lag() {
  curl -s "http://127.0.0.1:$P_HTTP/metrics" |
    sed -n "s/^kvp_replica_lag_ms{master=\"127.0.0.1:$M\",replica=\"127.0.0.1:$R\"} \(-\?[0-9]*\)$/\1/p"
}
usable() { local l; l=$(lag); [ -n "$l" ] && [ "$l" -ge 0 ] && [ "$l" -lt "$1" ]; }
gets() { it_redis "$1" info commandstats | sed -n 's/^cmdstat_get:calls=\([0-9]*\),.*/\1/p' | tr -d '\r' | grep . || echo 0; }
p() { redis-cli -p "$P_PORT" "$@"; }
it_wait 5 usable 1000 || { echo "no lag measured"; exit 1; }

it_eq "a write under a replica-read rule goes to the master" OK "$(p set cache:a 1)"
it_wait 5 sh -c "[ \"\$(redis-cli -p $R -a $IT_PW --no-auth-warning exists \$(redis-cli -p $M -a $IT_PW --no-auth-warning keys '*cache:a'))\" = 1 ]"
p set only:a 2 > /dev/null; p set fresh:a 3 > /dev/null; p set other 4 > /dev/null
sleep 0.3
m0=$(gets "$M"); r0=$(gets "$R")
for i in $(seq 20); do p get cache:a > /dev/null; p get only:a > /dev/null; p get fresh:a > /dev/null; done
m1=$(gets "$M"); r1=$(gets "$R")
it_eq "60 reads under replica-read rules: all on the replica (replica +$((r1 - r0)), master +$((m1 - m0)))" \
  "60 0" "$((r1 - r0)) $((m1 - m0))"
p get other > /dev/null
it_eq "a key of no rule is read from the master" "$((m1 + 1))" "$(gets "$M")"
it_eq "the replica's value is the written one" 1 "$(p get cache:a)"

RPID=$(cat "$IT_DIR/redis-$R.pid")
kill -STOP "$RPID"
# the lag grows while the replica does not answer; beyond 200 ms fresh:* skips it
it_wait 5 sh -c "l=\$(curl -s http://127.0.0.1:$P_HTTP/metrics | sed -n 's/^kvp_replica_lag_ms{.*} \(-\?[0-9]*\)\$/\1/p'); [ \"\$l\" = -1 ] || [ \"\$l\" -gt 300 ]"
it_eq "a replica beyond max_replica_lag_ms is skipped: fresh:* read from the master" 3 "$(timeout 2 redis-cli -p "$P_PORT" get fresh:a)"
it_wait 5 sh -c "[ \"\$(curl -s http://127.0.0.1:$P_HTTP/metrics | grep -c 'kvp_replica_lag_ms{.*} -1$')\" = 1 ]"
it_eq "a down replica is skipped: prefer reads from the master" 1 "$(timeout 2 redis-cli -p "$P_PORT" get cache:a)"
out=$(timeout 2 redis-cli -p "$P_PORT" get only:a)
it_check "only: an error when no replica is usable ($out)" sh -c "echo '$out' | grep -q 'no replica of 127.0.0.1:$M'"
kill -CONT "$RPID"
it_wait 5 usable 1000
r2=$(gets "$R")
p get only:a > /dev/null
it_eq "once it runs again, reads go back to the replica" "$((r2 + 1))" "$(gets "$R")"
it_done
