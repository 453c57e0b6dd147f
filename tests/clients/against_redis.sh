#!/usr/bin/env bash
# against_redis.sh [GROUP...] -- every driver against a throwaway plain
# redis-server (no proxy): the reference run that shows the checks themselves
# are right (every group should pass; pub/sub's "second proxy" is the same
# server here). Default: every group. Not a test of kvp; run it by hand after
# changing a driver. Exit status 1 when a driver failed.
set -u
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/common.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../scripts/lib/common.sh"
CL=$KV_ROOT/tests/clients
GROUPS_RUN=("$@")
[ $# -gt 0 ] || GROUPS_RUN=(basic tx blocking pubsub scan scripts resp3 info)

PW=plainpass
PORT=$(kv_free_port) || exit 1
DIR=$(mktemp -d "${TMPDIR:-/tmp}/against_redis.XXXXXX")
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --requirepass "$PW" \
    --dir "$DIR" --logfile "$DIR/redis.log" &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DIR"' EXIT
kv_wait_cond 10 kv_redis_ping "$PORT" "$PW" || kv_die "redis-server on $PORT did not start"

ARGS=(-p "$PORT" -a "$PW" "${GROUPS_RUN[@]}")
rc=0
run() { # NAME COMMAND...
    local name=$1 st=0
    shift
    bold "--- $name"
    timeout 150 "$@" "${ARGS[@]}" || st=$?
    [ $st -eq 0 ] || { red "$name: exit status $st"; rc=1; }
}
run redis-py /usr/bin/python3 "$CL/py_client.py"
run ioredis node "$CL/ioredis_client.js"
run "node-redis 4" node "$CL/noderedis_client.js" --lib redis4
run "node-redis (newest)" node "$CL/noderedis_client.js" --lib redis
run redis-cli bash "$CL/cli_client.sh"
exit $rc
