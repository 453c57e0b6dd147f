#!/usr/bin/env bash
# SIGTERM: kvp and kvcs (in the foreground) stop cleanly -- the workers leave
# their loops and free their clients, backends and requests, the Lua state is
# closed -- and exit 0 with nothing on stderr. Run against build-asan/
# (scripts/test.sh --asan) this is the LeakSanitizer check of both: a leak
# makes the exit status 23 and writes a report.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port)
M2=$(it_free_port)
it_redis_start "$M1" || exit 1
it_redis_start "$M2" || exit 1

# kvcs in the foreground: its exit status and stderr are ours to check
mkdir -p "$IT_DIR/CS"
H=$(it_free_port) PX=$(it_free_port) MG=$(it_free_port) SY=$(it_free_port)
cat >"$IT_DIR/CS/kvcs.conf" <<EOC
http_listen = "127.0.0.1:$H"
proxy_listen = "127.0.0.1:$PX"
migration_listen = "127.0.0.1:$MG"
cs_listen = "127.0.0.1:$SY"
master_cs = ""
table_dir = "table"
redis_password = "$IT_PW"
cluster_secret = "$IT_SECRET"
log_file = "kvcs.log"
log_level = "debug"
EOC
(cd "$IT_DIR/CS" && exec "$IT_BIN/kvcs" -c kvcs.conf 2>stderr) &
CS_PID=$!
echo "$CS_PID" >"$IT_DIR/CS/kvcs.pid"
it_wait 20 curl -sf "http://127.0.0.1:$H/kvstore/cs/namespace_list" || { echo "kvcs does not answer"; exit 1; }
it_init_table "$H" stopns 256 "127.0.0.1:$M1" "127.0.0.1:$M2" || { echo "init_table failed"; exit 1; }

it_kvp_conf P stopns "$PX" "" 'io_threads = 2'
(cd "$IT_DIR/P" && exec "$IT_BIN/kvp" -c kvp.conf 2>stderr) &
P_PID=$!
echo "$P_PID" >"$IT_DIR/P/kvp.pid"
it_wait 20 it_kvp_ready "$P_PORT" || { echo "kvp does not serve"; cat "$IT_DIR/P/kvp.log"; exit 1; }

# traffic over every kind of request: single keys, split MGET/MSET, fan-out
it_check "test_all -l 3 passes" sh -c "'$IT_BIN/test_all' -p $P_PORT -l 3 > '$IT_DIR/ta.out' 2>&1"
# clients still connected at the stop: an idle one, one with half a command,
# one with a pipeline in flight
exec 3<>"/dev/tcp/127.0.0.1/$P_PORT"
exec 4<>"/dev/tcp/127.0.0.1/$P_PORT"
# shellcheck disable=SC2016 # RESP, not shell
printf '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n' >&4
exec 5<>"/dev/tcp/127.0.0.1/$P_PORT"
for i in $(seq 1 200); do printf 'MGET a%d b%d c%d d%d\r\n' "$i" "$i" "$i" "$i"; done >&5
sleep 0.3

# stop_ok NAME PID: TERM, wait up to 30 s; its exit status must be 0
stop_ok() {
  local name=$1 pid=$2 rc i
  kill -TERM "$pid" 2>/dev/null || return 1
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "# $name did not exit within 30 s of SIGTERM"
    kill -KILL "$pid"
    return 1
  fi
  wait "$pid"
  rc=$?
  [ $rc -eq 0 ] || echo "# $name exited with status $rc"
  [ $rc -eq 0 ]
}
# no_report FILE: nothing from a sanitizer (nor anything else) on stderr
no_report() {
  if grep -qE 'Sanitizer|runtime error' "$1"; then
    sed 's/^/# /' "$1" | head -40
    return 1
  fi
  return 0
}

it_check "kvp exits 0 on SIGTERM" stop_ok kvp "$P_PID"
it_check "kvp's stderr has no sanitizer report" no_report "$IT_DIR/P/stderr"
it_check "kvp logged its stop" grep -q "kvp stopped" "$IT_DIR/P/kvp.log"
exec 3>&- 4>&- 5>&-
it_check "kvcs exits 0 on SIGTERM" stop_ok kvcs "$CS_PID"
it_check "kvcs's stderr has no sanitizer report" no_report "$IT_DIR/CS/stderr"
it_check "kvcs logged its stop" grep -q "kvcs stopped" "$IT_DIR/CS/kvcs.log"
it_done
