#!/usr/bin/env bash
# cache_cluster_test.sh -- TEST_GUIDE 6 (cache cluster mode) from the add step
# on, one step each, green on success, red with what was wrong otherwise.
#
# Before: ./kv_store.sh stop; set cluster_type = "cache" in cs1/kvcs.conf and
# cs2/kvcs.conf (or KV_CLUSTER_TYPE=cache on a fresh home); ./kv_store.sh start.
#
#   1. scale_cache_cluster add 127.0.0.1:6375 (a third of the buckets move to it)
#   2. redis-benchmark -p 7400 -d 64 -r 10000000 -n 120000 -t set:
#      6375 holds about 40 000 keys (+-10 %)
#   3. kill the Redis on 6375: within 30 s the config server removes it
#   4. another 120 000 SETs: 6371 and 6373 each hold about 100 000 keys (+-10 %)
# Key counts are measured as growth from the start of the run, so keys left by
# an earlier run do not count. Destructive: 6375 is dead afterwards; restart
# the cluster with ./kv_store.sh stop; ./kv_store.sh start.
#
# Overridable (the integration test runs it on free ports): CS_HTTP (7000),
# PROXY_PORT (7400), PROXY_HTTP (7500), NS (test), REDIS_PW (kvstore123),
# M1_PORT (6371), M2_PORT (6373), ADD_PORT (6375), KILL_PIDFILE (the pid file
# of the Redis on ADD_PORT; default $KV_HOME/redis5/redis.pid; without one,
# SHUTDOWN NOSAVE), HA_WAIT (30 s), REQUESTS (120000).
source "$(dirname "$(readlink -f "$0")")/lib/common.sh"
CS="http://127.0.0.1:${CS_HTTP:-7000}/kvstore/cs"
PORT=${PROXY_PORT:-7400}
PHTTP=${PROXY_HTTP:-7500}
NS=${NS:-test}
PW=${REDIS_PW:-kvstore123}
M1=${M1_PORT:-6371}
M2=${M2_PORT:-6373}
ADD=${ADD_PORT:-6375}
HOME_DIR=${KV_HOME:-$KV_ROOT/run}
PIDFILE=${KILL_PIDFILE:-$HOME_DIR/redis5/redis.pid}
HA_WAIT=${HA_WAIT:-30}
N=${REQUESTS:-120000}
failed=0

J() { luajit "$KV_ROOT/scripts/lib/json.lua" "$1"; }
pass() { green "PASS $*"; }
fail() { red "FAIL $*"; failed=$((failed + 1)); }
finish() {
  if [ "$failed" -eq 0 ]; then green "cache_cluster_test: all steps passed"; else red "cache_cluster_test: $failed step(s) failed"; fi
  echo "(127.0.0.1:$ADD is down now: ./kv_store.sh stop; ./kv_store.sh start to get the cluster back)"
  [ "$failed" -eq 0 ]
  exit
}
keys() { # PORT -> DBSIZE (empty when it does not answer)
  timeout 5 redis-cli -h 127.0.0.1 -p "$1" -a "$PW" --no-auth-warning dbsize 2>/dev/null | grep -x '[0-9]*'
}
near() { # VALUE EXPECTED: within 10 %
  [ -n "$1" ] && [ "$1" -ge $(($2 * 9 / 10)) ] && [ "$1" -le $(($2 * 11 / 10)) ]
}
table_json() { curl -s -m 5 -d "{\"namespace\":\"$NS\"}" "$CS/bucket_table"; }
buckets_of() { table_json | J "#(j.table and j.table['127.0.0.1:$1'] or {})" 2>/dev/null; }
cs_version() { table_json | J 'j.version' 2>/dev/null; }
proxy_version() { curl -s -m 5 "http://127.0.0.1:$PHTTP/metrics" | awk '$1 == "kvp_table_version" {print $2}'; }
wait_proxy_table() { # the proxy serves with the config server's current table
  local v i
  v=$(cs_version)
  for ((i = 0; i < 100; i++)); do
    [ -n "$v" ] && [ "$(proxy_version)" = "$v" ] && return 0
    sleep 0.1
  done
  return 1
}
bench() {
  redis-benchmark -h 127.0.0.1 -p "$PORT" -d 64 -r 10000000 -n "$N" -t set -q 2>&1 | tr '\r' '\n' | grep -v '^$' | tail -n 1
}

type=$(curl -s -m 5 "$CS/get_config" | J 'j.data and j.data.cluster_type' 2>/dev/null)
if [ "$type" != cache ]; then
  fail "the config server on ${CS_HTTP:-7000} runs cluster_type '${type:-?}', not cache." \
    "Set cluster_type = \"cache\" in cs1/kvcs.conf and cs2/kvcs.conf, then ./kv_store.sh stop; ./kv_store.sh start"
  finish
fi
b1=$(keys "$M1"); b2=$(keys "$M2"); b3=$(keys "$ADD")
if [ -z "$b1" ] || [ -z "$b2" ] || [ -z "$b3" ]; then
  fail "every Redis must answer first: $M1 -> '${b1}', $M2 -> '${b2}', $ADD -> '${b3}' keys"
  finish
fi
echo "     keys before: 127.0.0.1:$M1 $b1, 127.0.0.1:$M2 $b2, 127.0.0.1:$ADD $b3"

# 1. add
out=$(curl -s -m 10 -d "{\"namespace\":\"$NS\", \"action\":\"add\", \"addr\":\"127.0.0.1:$ADD\"}" "$CS/scale_cache_cluster")
code=$(echo "$out" | J 'j.code' 2>/dev/null)
if [ "$code" = 1001 ]; then
  n=$(buckets_of "$ADD"); total=$(table_json | J 'j.bucket_count')
  if [ -n "$n" ] && [ -n "$total" ] && [ "$n" -eq $((total / 3)) ]; then
    pass "6.1 scale_cache_cluster add 127.0.0.1:$ADD: it owns $n of $total buckets"
  else
    fail "6.1 after the add 127.0.0.1:$ADD owns ${n:-?} of ${total:-?} buckets (want a third)"
  fi
else
  fail "6.1 scale_cache_cluster add 127.0.0.1:$ADD: $out"
  finish
fi
wait_proxy_table || fail "6.1 the proxy did not take table v$(cs_version) within 10 s (it has v$(proxy_version))"

# 2. load, a third lands on the new server
echo "     $(bench)"
k3=$(keys "$ADD")
got=$(( ${k3:-0} - b3 ))
if near "$got" $((N / 3)); then
  pass "6.2 after $N SETs 127.0.0.1:$ADD holds $got new keys (about $((N / 3)))"
else
  fail "6.2 after $N SETs 127.0.0.1:$ADD holds ${got} new keys, want $((N / 3)) +-10 %"
fi

# 3. kill it; the config server removes it
pid=$(kv_pid_of "$PIDFILE" redis 2>/dev/null)
t0=$(date +%s)
if [ -n "$pid" ]; then
  kill -9 "$pid"
  how="kill -9 $pid"
else
  timeout 5 redis-cli -h 127.0.0.1 -p "$ADD" -a "$PW" --no-auth-warning shutdown nosave >/dev/null 2>&1
  how="SHUTDOWN NOSAVE"
fi
sleep 0.5
if [ -n "$(keys "$ADD")" ]; then
  fail "6.3 the Redis on $ADD still answers after $how"
  finish
fi
removed=0
while [ $(($(date +%s) - t0)) -le "$HA_WAIT" ]; do
  n=$(buckets_of "$ADD")
  if [ "$n" = 0 ]; then removed=1; break; fi
  sleep 0.5
done
if [ $removed -eq 1 ]; then
  pass "6.3 killed the Redis on $ADD ($how): removed from the table after $(($(date +%s) - t0)) s" \
    "($M1: $(buckets_of "$M1") buckets, $M2: $(buckets_of "$M2"))"
else
  fail "6.3 killed the Redis on $ADD ($how): still in the table after $HA_WAIT s" \
    "(support_ha on? every proxy connected to the config server and reporting it down? see cs1/kvcs.log)"
  finish
fi
wait_proxy_table || fail "6.3 the proxy did not take table v$(cs_version) within 10 s (it has v$(proxy_version))"

# 4. load again: the two left share everything
echo "     $(bench)"
k1=$(keys "$M1"); k2=$(keys "$M2")
g1=$(( ${k1:-0} - b1 )); g2=$(( ${k2:-0} - b2 ))
want=$((N * 5 / 6))   # a third of the first round each, plus half of the second
if near "$g1" "$want" && near "$g2" "$want"; then
  pass "6.4 after $N more SETs 127.0.0.1:$M1 holds $g1 and 127.0.0.1:$M2 $g2 new keys (about $want each)"
else
  fail "6.4 after $N more SETs 127.0.0.1:$M1 holds $g1 and 127.0.0.1:$M2 $g2 new keys, want $want +-10 % each"
fi
finish
