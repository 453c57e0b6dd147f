#!/usr/bin/env bash
# failover_test.sh [--runs N] [--loops L] -- TEST_GUIDE 4 with a stopwatch:
# kill the master of the first pair (6371, or 6372 once it has taken over)
# with SIGKILL and measure, through the proxy,
#   table  kill -> the config server's table has the replica in its place
#   write  kill -> the first SET answered OK through the proxy for a key
#          that lived on the killed master
# then check the replica says role:master, start the killed server again and
# wait until the config server has made it a replica of the new master, so
# the next run can kill that one. Run 1 also runs
# `test_all -l L --tolerate-unavailable` through the proxy across the
# fail-over; it must end with PASSED ALL TEST (unavailable/timeout errors
# during the switch restart the loop they hit; any other error fails it).
#
# Run from $KV_HOME (kv_store.sh links it there) with the local cluster up.
# Overridable: PROXY_PORT (7400), KV_PASSWORD (kvstore123), NS (test),
# PAIR ("6371 6372"), TABLE (cs1/table/<ns>), TIMEOUT (60 s per run).
# Green/red per step; exit 0 only when every step passed.
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "$(readlink -f "$0")")/lib/common.sh"
RUNS=1 LOOPS=1000
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --loops) LOOPS=$2; shift 2 ;;
    -h | --help) sed -n '2,/^# shellcheck/{/^# shellcheck/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
HOME_DIR=${KV_HOME:-$PWD}
PX_PORT=${PROXY_PORT:-7400}
PW=${KV_PASSWORD-kvstore123}
NAMESPACE=${NS:-test}
read -r PA PB <<<"${PAIR:-6371 6372}"
TABLE_FILE=${TABLE:-$HOME_DIR/cs1/table/$NAMESPACE}
LIMIT=${TIMEOUT:-60}
failed=0

check() { # check "name" command...
    local what=$1; shift
    if "$@"; then green "PASS $what"; else red "FAIL $what"; failed=$((failed + 1)); fi
}
R() { local p=$1; shift; redis-cli -p "$p" ${PW:+-a "$PW" --no-auth-warning} "$@" 2>/dev/null; }
P() { redis-cli -p "$PX_PORT" "$@" 2>/dev/null; }
owns() { # owns PORT: buckets of 127.0.0.1:PORT in the table file
    luajit "$KV_ROOT/scripts/lib/json.lua" "#(j.table['127.0.0.1:$1'] or {})" <"$TABLE_FILE" 2>/dev/null || echo 0
}
role_of() { R "$1" info replication | tr -d '\r' | sed -n 's/^role://p'; }
replicates_from() { # replicates_from REPLICA MASTER: linked and in sync
    local info
    info=$(R "$1" info replication | tr -d '\r')
    grep -qx "master_port:$2" <<<"$info" && grep -qx 'master_link_status:up' <<<"$info"
}
dir_of() { grep -lx "port $1" "$HOME_DIR"/redis*/redis.conf 2>/dev/null | head -1 | xargs -r dirname; }
now_ms() { date +%s%3N; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }

[ -f "$TABLE_FILE" ] || kv_die "no table file $TABLE_FILE (run from \$KV_HOME with the cluster started)"
P ping | grep -q PONG || kv_die "the proxy on $PX_PORT does not answer"

declare -a T_TABLE=() T_WRITE=()
for ((run = 1; run <= RUNS; run++)); do
    if [ "$(owns "$PA")" -gt 0 ]; then OLD=$PA NEW=$PB; else OLD=$PB NEW=$PA; fi
    bold "== run $run of $RUNS: kill 127.0.0.1:$OLD, expect 127.0.0.1:$NEW in its place"
    check "$NEW replicates from $OLD" kv_wait_cond 60 replicates_from "$NEW" "$OLD" || break
    nbuckets=$(owns "$OLD")
    # a key that lives on OLD (keys are stored as <bucket>_<key>)
    for i in $(seq 1 64); do P set "failover_probe_$i" "$i" >/dev/null; done
    KEY=$(R "$OLD" --scan --pattern '*_failover_probe_*' | head -1 | sed 's/^[0-9]*_//')
    [ -n "$KEY" ] || { red "FAIL no probe key landed on $OLD"; failed=$((failed + 1)); break; }
    R "$OLD" wait 1 2000 >/dev/null
    if [ "$run" -eq 1 ] && [ "$LOOPS" -gt 0 ]; then
        "$KV_BUILD/test_all" -p "$PX_PORT" -l "$LOOPS" --tolerate-unavailable >"$HOME_DIR/failover_test_all.txt" 2>&1 &
        TA=$!
        sleep 2
    fi
    pid=$(cat "$(dir_of "$OLD")/redis.pid" 2>/dev/null)
    [ -n "$pid" ] || { red "FAIL no pid file for $OLD"; failed=$((failed + 1)); break; }
    t0=$(now_ms)
    kill -9 "$pid"
    t_table="" t_write=""
    while [ $(($(now_ms) - t0)) -lt $((LIMIT * 1000)) ]; do
        [ -z "$t_table" ] && [ "$(owns "$OLD")" = 0 ] && [ "$(owns "$NEW")" = "$nbuckets" ] && t_table=$(($(now_ms) - t0))
        [ -z "$t_write" ] && [ "$(P set "$KEY" "after-$run")" = OK ] && t_write=$(($(now_ms) - t0))
        [ -n "$t_table" ] && [ -n "$t_write" ] && break
        sleep 0.05
    done
    check "table changed: 127.0.0.1:$NEW owns the $nbuckets buckets of $OLD (${t_table:+$(secs "$t_table") s})" [ -n "$t_table" ]
    check "a write through the proxy for a key of $OLD answers OK (${t_write:+$(secs "$t_write") s})" [ -n "$t_write" ]
    check "127.0.0.1:$NEW is a master" [ "$(role_of "$NEW")" = master ]
    check "the key reads back through the proxy" [ "$(P get "$KEY")" = "after-$run" ]
    [ -n "$t_table" ] && T_TABLE+=("$t_table")
    [ -n "$t_write" ] && T_WRITE+=("$t_write")
    echo "  run $run: $OLD -> $NEW: table changed after $(secs "${t_table:-0}") s, first successful write after $(secs "${t_write:-0}") s"
    kv_redis_start "$(dir_of "$OLD")" "$PW" >/dev/null || { red "FAIL cannot start $OLD again"; failed=$((failed + 1)); break; }
    check "$OLD, started again, becomes a replica of $NEW" kv_wait_cond 60 replicates_from "$OLD" "$NEW"
    if [ -n "${TA:-}" ]; then
        wait "$TA"
        rc=$?
        TA=""
        tail -n 3 "$HOME_DIR/failover_test_all.txt" | sed 's/\x1b\[[0-9;]*m//g; s/^/  /'
        check "test_all -l $LOOPS --tolerate-unavailable across the fail-over (exit 0, failover_test_all.txt)" [ "$rc" -eq 0 ]
    fi
done

summary() { # summary NAME MS...: min/median/max
    local name=$1; shift
    [ $# -gt 0 ] || return 0
    printf '%s\n' "$@" | sort -n | awk -v n="$name" '{ v[NR] = $1 } END {
        printf "  %-32s min %.2f s, median %.2f s, max %.2f s (%d runs)\n", n, v[1] / 1000, v[int((NR + 1) / 2)] / 1000, v[NR] / 1000, NR }'
}
summary "kill -> table changed:" "${T_TABLE[@]}"
summary "kill -> first successful write:" "${T_WRITE[@]}"
if [ "$failed" -eq 0 ]; then green "failover_test: all steps passed"; else red "failover_test: $failed step(s) failed"; fi
[ "$failed" -eq 0 ]
