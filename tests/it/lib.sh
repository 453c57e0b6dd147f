#!/usr/bin/env bash
# tests/it/lib.sh -- sourced by the integration tests: a throwaway cluster of
# real redis-server, kvcs and kvp processes on free loopback ports in a temp
# dir, plus check helpers. Every process started here is stopped on exit.
#
#   it_redis_start PORT [redis args...]     master with requirepass $IT_PW
#   it_redis PORT cmd...                    redis-cli against it
#   it_kvcs_start NAME [MASTER_SYNC_ADDR]   sets <NAME>_HTTP/_PROXY/_SYNC ports
#   it_init_table CS_HTTP NS BUCKETS ADDR...
#   it_kvp_start NAME NS CS_PROXY [CS_SLAVE_PROXY] [extra conf lines]
#                                           sets <NAME>_PORT, waits for a table
#   it_etcd_start N [etcd args...]          an N-member etcd cluster: sets
#                                           ETCD_ENDPOINTS (h:p,h:p,..) and
#                                           ETCD_PID_1..N, ETCD_PIDS (p1,p2,..)
#   it_etcd_kill I                          SIGKILL member I (1-based)
#   it_ctl PORT cmd...                      one command on a kvcs control port
#                                           (handshake with $KV_CLUSTER_SECRET)
#   it_check "what" command...              one named check
#   it_sanitized                            0 when $IT_BIN is an ASan build
#   it_done                                 exit status of the test
set -u
IT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# the binaries under test: build/, or $KV_BUILD (scripts/test.sh --asan: build-asan/)
IT_BIN=${KV_BUILD:-$IT_ROOT/build}
IT_DIR=$(mktemp -d /tmp/kvit.XXXXXX)
IT_PW=itpass
# the control ports' cluster_secret of every kvcs and kvp started here; the
# tools (migration_tool, kvctl, fake_proxy/fake_cs) read it from the
# environment, as the masters' password
IT_SECRET=itsecret-$$
export KV_CLUSTER_SECRET=$IT_SECRET KV_REDIS_PASSWORD=$IT_PW
IT_FAILED=0
IT_CHECKS=0

it_cleanup() {
  local f pid
  for f in "$IT_DIR"/*.pid "$IT_DIR"/*/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null)
    [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
  done
  # give them time to exit through main (under ASan LeakSanitizer runs
  # then, and takes a moment), then KILL what is left
  local i alive
  for ((i = 0; i < 50; i++)); do
    alive=0
    for f in "$IT_DIR"/*.pid "$IT_DIR"/*/*.pid; do
      [ -f "$f" ] || continue
      pid=$(cat "$f" 2>/dev/null)
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
    done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for f in "$IT_DIR"/*.pid "$IT_DIR"/*/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  done
  if [ "$IT_FAILED" -ne 0 ] || [ -n "${KEEP:-}" ]; then
    echo "logs kept in $IT_DIR"
  else
    rm -rf "$IT_DIR"
  fi
}
trap it_cleanup EXIT

it_log() { printf '%s\n' "$*"; }

source "$IT_ROOT/scripts/lib/common.sh"

# A free TCP port on loopback: kv_free_port keeps below the kernel's
# ephemeral range (a client socket's local port cannot collide), away from
# the local cluster's ports, and claims the port so parallel tests differ.
it_free_port() { kv_free_port; }

it_wait() { # it_wait SECONDS command... : retry until the command succeeds
  local secs=$1; shift
  local end=$(( $(date +%s) + secs ))
  while [ "$(date +%s)" -le "$end" ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

it_redis() { local p=$1; shift; redis-cli -p "$p" -a "$IT_PW" --no-auth-warning "$@"; }

it_redis_start() {
  local port=$1; shift
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
    --requirepass "$IT_PW" --masterauth "$IT_PW" --dir "$IT_DIR" \
    --pidfile "$IT_DIR/redis-$port.pid" --logfile "$IT_DIR/redis-$port.log" "$@" >/dev/null
  it_wait 10 it_redis "$port" ping || { echo "redis on $port did not start"; return 1; }
}

it_redis_stop() { # SIGKILL: a crash, not a clean shutdown
  local port=$1 pid
  pid=$(cat "$IT_DIR/redis-$port.pid" 2>/dev/null)
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  rm -f "$IT_DIR/redis-$port.pid"
  sleep 0.1
}

it_kvcs_start() { # it_kvcs_start NAME [MASTER_CS] [extra conf lines]
  local name=$1 master=${2:-} extra=${3:-}
  local dir=$IT_DIR/$name
  mkdir -p "$dir"
  if [ ! -f "$dir/kvcs.conf" ]; then
    local h p m s
    h=$(it_free_port); p=$(it_free_port); m=$(it_free_port); s=$(it_free_port)
    cat > "$dir/kvcs.conf" <<EOC
http_listen = "127.0.0.1:$h"
proxy_listen = "127.0.0.1:$p"
migration_listen = "127.0.0.1:$m"
cs_listen = "127.0.0.1:$s"
master_cs = "$master"
table_dir = "table"
redis_password = "$IT_PW"
cluster_secret = "$IT_SECRET"
log_file = "kvcs.log"
log_level = "debug"
$extra
EOC
  fi
  local http proxy sync mig
  http=$(sed -n 's/^http_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$dir/kvcs.conf")
  proxy=$(sed -n 's/^proxy_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$dir/kvcs.conf")
  sync=$(sed -n 's/^cs_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$dir/kvcs.conf")
  mig=$(sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$dir/kvcs.conf")
  eval "${name}_HTTP=$http ${name}_PROXY=$proxy ${name}_SYNC=$sync ${name}_MIG=$mig"
  "$IT_BIN/kvcs" -c "$dir/kvcs.conf" -d || { echo "kvcs $name did not start"; return 1; }
  it_wait 10 curl -sf "http://127.0.0.1:$http/kvstore/cs/namespace_list" ||
    { echo "kvcs $name does not answer HTTP"; cat "$dir/kvcs.log"; return 1; }
}

it_kill() { # it_kill NAME [SIGNAL]: a kvcs or kvp started by this lib
  local pid
  pid=$(cat "$IT_DIR/$1"/*.pid 2>/dev/null)
  [ -n "$pid" ] && kill "-${2:-TERM}" "$pid" 2>/dev/null
  rm -f "$IT_DIR/$1"/*.pid
  sleep 0.2
}

# it_etcd_start N [etcd args...]: N etcd members on free loopback ports, data
# and logs in $IT_DIR/etcdC-I (C counts clusters: a test may start several;
# the variables name the last one). Short heartbeat and election timeout so
# a lost member or leader is noticed within about a second.
IT_ETCD_CLUSTERS=0
it_etcd_start() {
  local n=$1 i; shift
  IT_ETCD_CLUSTERS=$((IT_ETCD_CLUSTERS + 1))
  local tag=etcd$IT_ETCD_CLUSTERS cluster="" eps="" pids=""
  local -a cport pport
  for ((i = 1; i <= n; i++)); do
    cport[i]=$(it_free_port) pport[i]=$(it_free_port)
    cluster="$cluster${cluster:+,}m$i=http://127.0.0.1:${pport[i]}"
    eps="$eps${eps:+,}127.0.0.1:${cport[i]}"
  done
  for ((i = 1; i <= n; i++)); do
    local dir=$IT_DIR/$tag-$i
    mkdir -p "$dir"
    # in a subshell: not a job of the test's shell (no "Killed" notices)
    (etcd --name "m$i" --data-dir "$dir/data" \
      --listen-client-urls "http://127.0.0.1:${cport[i]}" \
      --advertise-client-urls "http://127.0.0.1:${cport[i]}" \
      --listen-peer-urls "http://127.0.0.1:${pport[i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${pport[i]}" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "kvit-$$-$tag" \
      --heartbeat-interval 100 --election-timeout 1000 "$@" \
      >"$dir/etcd.log" 2>&1 &
     echo $! >"$IT_DIR/$tag-$i.pid")
    local pid
    pid=$(cat "$IT_DIR/$tag-$i.pid")
    eval "ETCD_PID_$i=$pid"
    pids="$pids${pids:+,}$pid"
  done
  ETCD_ENDPOINTS=$eps ETCD_PIDS=$pids IT_ETCD_TAG=$tag
  export ETCD_ENDPOINTS ETCD_PIDS
  it_wait 20 env ETCDCTL_API=3 etcdctl --endpoints="$eps" --dial-timeout=1s \
    --command-timeout=2s endpoint health ||
    { echo "etcd cluster of $n did not become healthy"; tail -5 "$IT_DIR/$tag"-*/etcd.log; return 1; }
}

it_etcd_kill() { # it_etcd_kill I: SIGKILL member I of the last cluster started
  local pid
  pid=$(cat "$IT_DIR/$IT_ETCD_TAG-$1.pid" 2>/dev/null)
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  rm -f "$IT_DIR/$IT_ETCD_TAG-$1.pid"
}

it_ctl() { # it_ctl PORT CMD...: as redis-cli -p PORT CMD..., on a control port
  local port=$1; shift
  timeout "${IT_CTL_TIMEOUT:-60}" "$IT_BIN/kvlua" "$IT_ROOT/scripts/lib/kvctl.lua" "127.0.0.1:$port" "$@"
}

it_init_table() {
  local http=$1 ns=$2 buckets=$3; shift 3
  local list="" a
  for a in "$@"; do list="$list${list:+,}\"$a\""; done
  curl -sf -d "{\"namespace\":\"$ns\",\"bucket_count\":$buckets,\"address_list\":[$list]}" \
    "http://127.0.0.1:$http/kvstore/cs/init_table" | grep -q '"code":1001'
}

# it_kvp_conf NAME NS CS_PROXY [CS_SLAVE_PROXY] [extra conf lines]: write the
# config (once) and set <NAME>_PORT and <NAME>_HTTP.
it_kvp_conf() {
  local name=$1 ns=$2 cs=$3 slave=${4:-} extra=${5:-}
  local dir=$IT_DIR/$name
  mkdir -p "$dir"
  if [ ! -f "$dir/kvp.conf" ]; then
    local port http
    port=$(it_free_port); http=$(it_free_port)
    cat > "$dir/kvp.conf" <<EOC
namespace = "$ns"
listen = "127.0.0.1:$port"
http_listen = "127.0.0.1:$http"
config_server_master = "127.0.0.1:$cs"
config_server_slave = "${slave:+127.0.0.1:$slave}"
redis_password = "$IT_PW"
cluster_secret = "$IT_SECRET"
request_timeout = 1000
log_file = "kvp.log"
log_level = "debug"
$extra
EOC
  fi
  local p h
  p=$(sed -n 's/^listen = ".*:\([0-9]*\)"/\1/p' "$dir/kvp.conf")
  h=$(sed -n 's/^http_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$dir/kvp.conf")
  eval "${name}_PORT=$p ${name}_HTTP=$h"
}

# it_kvp_start NAME NS CS_PROXY [CS_SLAVE_PROXY] [extra]: start as a daemon;
# returns once it has its first table (kvp -d waits for that).
it_kvp_start() {
  it_kvp_conf "$@"
  local name=$1 dir=$IT_DIR/$1 port
  eval "port=\$${name}_PORT"
  "$IT_BIN/kvp" -c "$dir/kvp.conf" -d || { echo "kvp $name did not start"; return 1; }
  it_wait 10 sh -c "redis-cli -p $port ping | grep -Eq 'PONG|NOAUTH'" || { echo "kvp $name does not answer"; return 1; }
}

# A data command answers (the proxy has its table).
it_kvp_ready() { redis-cli -p "$1" exists it_probe | grep -qx '[0-9]*'; }

# The binaries under test are built with ASan (scripts/test.sh --asan).
it_sanitized() { ldd "$IT_BIN/kvp" 2>/dev/null | grep -q libasan; }

it_check() {
  local what=$1; shift
  IT_CHECKS=$((IT_CHECKS + 1))
  if "$@"; then
    echo "ok - $what"
  else
    echo "FAILED - $what"
    IT_FAILED=$((IT_FAILED + 1))
  fi
}

# it_eq "what" expected actual
it_eq() {
  IT_CHECKS=$((IT_CHECKS + 1))
  if [ "$2" = "$3" ]; then
    echo "ok - $1"
  else
    echo "FAILED - $1: expected [$2], got [$3]"
    IT_FAILED=$((IT_FAILED + 1))
  fi
}

it_done() {
  echo "$IT_CHECKS checks, $IT_FAILED failed"
  [ "$IT_FAILED" -eq 0 ]
}

# it_scale_2to3: the setting of the migration_tool tests -- masters M1 M2
# holding namespace "test" (1023 buckets), an empty M3 to add, a kvcs CS
# (its migration port in CS_MIG) and a ready kvp P.
it_scale_2to3() {
  M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
  local m
  for m in $M1 $M2 $M3; do it_redis_start "$m" || return 1; done
  it_kvcs_start CS || return 1
  it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || return 1
  it_kvp_start P test "$CS_PROXY" || return 1
  it_wait 10 it_kvp_ready "$P_PORT"
}
