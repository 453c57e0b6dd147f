#!/usr/bin/env bash
# bench.sh -- measurements side by side in one run (never a test: timings on
# this machine are noisy, so only ratios within one run mean something).
#
#   scripts/bench.sh migrate [KEYS]   keys moved per second scaling 2 -> 3
#       masters (KEYS of 64 bytes, default 300000), and p50/p99 of concurrent
#       SETs through the proxy before and during the move
#
# Everything runs on free loopback ports in a temp dir (tests/it/lib.sh).
source "$(dirname "$(readlink -f "$0")")/lib/common.sh"
kv_ensure_deps >/dev/null
kv_ensure_build
# shellcheck source=../tests/it/lib.sh
source "$KV_ROOT/tests/it/lib.sh"

bench_migrate() {
  local nkeys=${1:-300000}
  local m1 m2 m3
  m1=$(it_free_port); m2=$(it_free_port); m3=$(it_free_port)
  for m in $m1 $m2 $m3; do it_redis_start "$m" || exit 1; done
  it_kvcs_start CS || exit 1
  it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$m1" "127.0.0.1:$m2" || exit 1
  it_kvp_start P test "$CS_PROXY" "" 'log_level = "info"' || exit 1
  local mig
  mig=$(sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/CS/kvcs.conf")
  echo "== migrate: $(nproc) cores, $(redis-server --version | cut -d' ' -f3), $nkeys keys of 64 bytes, 2 -> 3 masters"
  # exactly nkeys distinct keys: -r large and a sequential fill would need
  # SETs of our own; the benchmark's random keys give about nkeys distinct
  redis-benchmark -p "$P_PORT" -t set -n "$((nkeys * 13 / 10))" -r "$nkeys" -d 64 -P 32 -q >/dev/null 2>&1
  local total
  total=$(( $(it_redis "$m1" dbsize) + $(it_redis "$m2" dbsize) ))
  echo "loaded: $total keys"
  local before during t0 t1
  before=$("$IT_BIN/kvlua" "$KV_ROOT/scripts/lib/latency.lua" "$P_PORT" 5 8)
  echo "SET latency before the move (8 connections, 5 s): $before"
  "$IT_BIN/kvlua" "$KV_ROOT/scripts/lib/latency.lua" "$P_PORT" 600 8 "$IT_DIR/stop" > "$IT_DIR/during.out" &
  local lat=$!
  sleep 0.5
  t0=$(date +%s.%N)
  "$IT_BIN/migration_tool" --cs "127.0.0.1:$mig" --ns test --add "127.0.0.1:$m3" > "$IT_DIR/tool.out" 2>&1
  local rc=$?
  t1=$(date +%s.%N)
  touch "$IT_DIR/stop"
  wait "$lat"
  during=$(cat "$IT_DIR/during.out")
  local moved
  moved=$(it_redis "$m3" dbsize)
  tail -2 "$IT_DIR/tool.out"
  awk -v m="$moved" -v a="$t0" -v b="$t1" -v rc="$rc" 'BEGIN {
    printf "migration_tool --add (exit %d): %d keys moved in %.2f s = %.0f keys/s\n", rc, m, b - a, m / (b - a) }'
  echo "SET latency during the move: $during"
  local p99b p99d
  p99b=$(echo "$before" | sed 's/.*p99=\([0-9.]*\).*/\1/')
  p99d=$(echo "$during" | sed 's/.*p99=\([0-9.]*\).*/\1/')
  awk -v a="$p99b" -v b="$p99d" 'BEGIN { printf "p99 during / before: %.2f\n", b / a }'
}

case "${1:-}" in
  migrate) shift; bench_migrate "$@" ;;
  *) echo "usage: scripts/bench.sh migrate [KEYS]" >&2; exit 2 ;;
esac
