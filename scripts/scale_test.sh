#!/usr/bin/env bash
# scale_test.sh -- TEST_GUIDE 2: scale a data_store namespace out to a third
# master and back in with migration_tool, checking after each step that the
# keys are where they should be and none is lost. Green/red per step; exit 0
# only when every step passed. Run from $KV_HOME against the local cluster
# (kv_store.sh links it there), or anywhere with the ports below.
#
#   1. load: redis-benchmark -p 7400 -d 64 -r 10000000 -n 300000 -t set, plus
#      10000 marker keys scale_test:<i> = <i> (read back after each move)
#   2. migration_tool --cs 127.0.0.1:7200 --add 127.0.0.1:6375 --ns test:
#      6375 holds about a third of the keys, the total is unchanged
#   3. migration_tool --cs 127.0.0.1:7200 --del 127.0.0.1:6375 --ns test:
#      6375 holds no key, the total is unchanged
#
# "Total unchanged" is exact when no other client used the proxy during the
# move (its stats_info shows no command); under load (TEST_GUIDE 3) keys come
# and go, so the total is only shown, and the markers prove nothing was lost.
#
# Overridable: PROXY_PORT (7400), PROXY_HTTP (7500), CS_MIGRATION (7200),
# NEW_MASTER_PORT (6375), KV_PASSWORD (kvstore123), KV_CLUSTER_SECRET
# (default: cs1/kvcs.conf's cluster_secret), NS (test), LOAD_N
# (300000), MARKERS (10000), MIGRATION_TOOL (build/migration_tool),
# TOOL_ARGS (extra migration_tool arguments, e.g. "--parallel 16").
# shellcheck disable=SC2317  # the check helpers are called through check/step
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "$(readlink -f "$0")")/lib/common.sh"
HOST=127.0.0.1
PX_PORT=${PROXY_PORT:-7400}
PX_HTTP=${PROXY_HTTP:-7500}
CS_MIG=${CS_MIGRATION:-7200}
NEW_PORT=${NEW_MASTER_PORT:-6375}
NEW="$HOST:$NEW_PORT"
PW=${KV_PASSWORD-kvstore123}
NAMESPACE=${NS:-test}
N=${LOAD_N:-300000}
NMARK=${MARKERS:-10000}
TOOL=${MIGRATION_TOOL:-$KV_BUILD/migration_tool}
# The control ports' secret (the tool and kvctl read it from the
# environment): $KV_CLUSTER_SECRET, else the local cluster's (from $KV_HOME).
if [ -z "${KV_CLUSTER_SECRET:-}" ] && [ -f cs1/kvcs.conf ]; then
  KV_CLUSTER_SECRET=$(kv_conf_get cs1/kvcs.conf cluster_secret)
fi
export KV_CLUSTER_SECRET=${KV_CLUSTER_SECRET:-} KV_REDIS_PASSWORD=$PW
failed=0

step() { # step "name" expected actual
  if [ "$2" = "$3" ]; then green "PASS $1"; else red "FAIL $1: expected [$2], got [$3]"; failed=$((failed + 1)); fi
}
check() { # check "name" command...: PASS when the command succeeds
  local what=$1; shift
  if "$@"; then green "PASS $what"; else red "FAIL $what"; failed=$((failed + 1)); fi
}
finish() {
  if [ "$failed" -eq 0 ]; then green "scale_test: all steps passed"; else red "scale_test: $failed step(s) failed"; fi
  [ "$failed" -eq 0 ]
  exit
}
J() { luajit "$KV_ROOT/scripts/lib/json.lua" "$1"; }
M() { # M [HOST:]PORT cmd...: a master
  local h=$HOST p=$1; shift
  case "$p" in *:*) h=${p%:*} p=${p##*:} ;; esac
  if [ -n "$PW" ]; then redis-cli -h "$h" -p "$p" -a "$PW" --no-auth-warning "$@"; else redis-cli -h "$h" -p "$p" "$@"; fi
}
P() { redis-cli -h "$HOST" -p "$PX_PORT" "$@"; }
table_json() { "$KV_BUILD/kvlua" "$KV_ROOT/scripts/lib/kvctl.lua" "$HOST:$CS_MIG" TABLE "$NAMESPACE"; }
keys_of() { # keys_of [HOST:]PORT: keys of db 0 (0 when empty or unreachable: the steps compare)
  M "$1" info keyspace 2>/dev/null | sed -n 's/^db0:keys=\([0-9]*\),.*/\1/p' | grep . || echo 0
}
proxy_cmds() { # commands the proxy ran for clients so far ("" when its HTTP API is not there)
  curl -s -m 5 "http://$HOST:$PX_HTTP/kvstore/proxy/stats_info" 2>/dev/null | J 'j.total_cmd_count' 2>/dev/null
}
# the masters to count: every owner in the table, plus the new master
masters() {
  { table_json | J '(function() local r = {} for a in pairs(j.table) do r[#r + 1] = a end return table.concat(r, " ") end)()'
    echo "$NEW"; } | tr ' ' '\n' | sort -u | grep .
}
# COUNTS / TOTAL of the masters, and a line showing them
count_all() {
  TOTAL=0 COUNTS=""
  local a k
  for a in $(masters); do
    k=$(keys_of "$a")
    TOTAL=$((TOTAL + k))
    COUNTS="$COUNTS ${a##*:}=$k"
  done
}
markers_ok() { # every marker reads back through the proxy with its value
  local i from to want got
  for ((from = 1; from <= NMARK; from += 1000)); do
    to=$((from + 999)); [ "$to" -gt "$NMARK" ] && to=$NMARK
    want=$(seq "$from" "$to")
    # shellcheck disable=SC2046
    got=$(P mget $(seq -f "scale_test:%.0f" "$from" "$to"))
    if [ "$want" != "$got" ]; then
      i=$(diff <(echo "$want") <(echo "$got") | grep -c '^>')
      echo "  $i of the markers $from..$to read wrong (first: $(diff <(echo "$want") <(echo "$got") | grep -m1 '^>'))"
      return 1
    fi
  done
}
balanced() { # every master of the table holds floor or ceil of buckets / masters
  table_json | J '(function()
    local n, b, lo = 0, 0
    for _, ids in pairs(j.table) do n = n + 1; b = b + #ids end
    lo = math.floor(b / n)
    for _, ids in pairs(j.table) do if #ids ~= lo and #ids ~= lo + 1 then return false end end
    return #j.migrating == 0
  end)()' | grep -qx true
}
new_buckets() { table_json | J "#(j.table[\"$NEW\"] or {})"; }
run_tool() { # run_tool add|del: the operator's command (on a terminal its
  # progress line shows; otherwise its output without the line per bucket)
  local rc log
  bold "\$ migration_tool --cs $HOST:$CS_MIG --$1 $NEW --ns $NAMESPACE ${TOOL_ARGS:-}"
  if [ -t 1 ]; then
    # shellcheck disable=SC2086
    "$TOOL" --cs "$HOST:$CS_MIG" "--$1" "$NEW" --ns "$NAMESPACE" ${TOOL_ARGS:-}
    return
  fi
  log=$(mktemp)
  # shellcheck disable=SC2086
  "$TOOL" --cs "$HOST:$CS_MIG" "--$1" "$NEW" --ns "$NAMESPACE" ${TOOL_ARGS:-} >"$log" 2>&1
  rc=$?
  grep -v '^bucket ' "$log" | sed 's/^/  /'
  echo "  ($(grep -c '^bucket ' "$log") lines 'bucket N -> ADDR: K keys' not shown)"
  rm -f "$log"
  return "$rc"
}
# compare TOTAL with the total before the move, exactly when no client wrote
total_check() { # total_check "what" before cmds_before
  local cmds_after
  cmds_after=$(proxy_cmds)
  if [ -z "$2" ] || [ -z "$3" ] || [ "$3" = "$cmds_after" ]; then
    step "$1: total number of keys unchanged" "$2" "$TOTAL"
  else
    yellow "NOTE $1: clients ran $((cmds_after - $3)) commands during the move, so the total may change" \
      "($2 -> $TOTAL); the markers check for loss"
  fi
}

# ------------------------------------------------------------------ 0. cluster
bold "== scale_test: namespace $NAMESPACE, proxy $PX_PORT, config server $CS_MIG, new master $NEW"
proxy_up() { [ "$(P ping 2>/dev/null)" = PONG ]; }
cs_up() { table_json 2>/dev/null | grep -q bucket_count; }
new_up() { [ "$(M "$NEW_PORT" ping 2>/dev/null)" = PONG ]; }
check "proxy answers on $PX_PORT" proxy_up
check "config server migration port $CS_MIG has namespace $NAMESPACE" cs_up
check "new master $NEW answers" new_up
check "migration_tool is built ($TOOL)" test -x "$TOOL"
[ "$failed" -eq 0 ] || finish
if [ "$(new_buckets)" != 0 ]; then
  yellow "NOTE $NEW already owns $(new_buckets) buckets (an earlier run stopped half-way): --add finishes it"
fi

# ------------------------------------------------------------------ 1. load
bold "\$ redis-benchmark -p $PX_PORT -d 64 -r 10000000 -n $N -t set"
redis-benchmark -h "$HOST" -p "$PX_PORT" -d 64 -r 10000000 -n "$N" -t set -q 2>&1 | tr '\r' '\n' | grep -v '^ *$' | tail -1 | sed 's/^/  /'
step "1. load: $N SETs through the proxy" 0 "${PIPESTATUS[0]}"
ok=0
for ((from = 1; from <= NMARK; from += 1000)); do
  to=$((from + 999)); [ "$to" -gt "$NMARK" ] && to=$NMARK
  # shellcheck disable=SC2046
  [ "$(P mset $(for i in $(seq "$from" "$to"); do echo "scale_test:$i $i"; done))" = OK ] || ok=1
done
step "1. $NMARK marker keys written" 0 "$ok"
count_all
T0=$TOTAL
echo "  keys per master:$COUNTS (total $T0)"

# ------------------------------------------------------------------ 2. scale out
c0=$(proxy_cmds)
run_tool add
step "2. migration_tool --add $NEW exits 0" 0 "$?"
count_all
echo "  keys per master:$COUNTS (total $TOTAL)"
total_check "2. after --add" "$T0" "$c0"
k=$(keys_of "$NEW_PORT")
third=$((TOTAL / 3))
diff=$((k > third ? k - third : third - k))
check "2. $NEW holds about a third: $k keys, |$k - $third| < 10% of $third" [ $((diff * 10)) -lt "$third" ]
check "2. every master owns floor/ceil of the buckets, none migrating" balanced
check "2. all $NMARK markers read back" markers_ok
T1=$TOTAL

# ------------------------------------------------------------------ 3. scale in
c1=$(proxy_cmds)
run_tool del
step "3. migration_tool --del $NEW exits 0" 0 "$?"
count_all
echo "  keys per master:$COUNTS (total $TOTAL)"
total_check "3. after --del" "$T1" "$c1"
step "3. $NEW holds no key" 0 "$(keys_of "$NEW_PORT")"
step "3. $NEW owns no bucket" 0 "$(new_buckets)"
check "3. the other masters own floor/ceil of the buckets, none migrating" balanced
check "3. all $NMARK markers read back" markers_ok

for ((from = 1; from <= NMARK; from += 1000)); do
  to=$((from + 999)); [ "$to" -gt "$NMARK" ] && to=$NMARK
  # shellcheck disable=SC2046
  P del $(seq -f "scale_test:%.0f" "$from" "$to") >/dev/null
done
finish
