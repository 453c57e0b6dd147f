#!/usr/bin/env bash
# bench.sh -- measurements side by side in one run (never a test: timings on
# this machine are noisy, so only ratios within one run mean something).
#
#   scripts/bench.sh quick|full [--pin] [--threads N] [--label TEXT] [--reps N]
#       kvp against twemproxy (nutcracker) and a direct Redis master: two
#       masters (requirepass), a kvcs + kvp in front of them (io_threads N,
#       default the one of conf/kvp.conf) and nutcracker in front of the same
#       two masters (murmur, modula, redis_auth). Rows, each with
#       redis-benchmark -d 64 -r 1000000 -c 50 unless said: SET and GET at -P 1
#       and -P 16, MSET of 10 keys, MGET of 10 keys, SET at -c 1000 (idle-heavy).
#       Both masters are preloaded with the whole keyspace (key:000000000000 ..
#       key:000000999999), so every GET hits whichever master a proxy picks.
#       Targets alternate within each row (the first target rotates per
#       repetition); the table has the median rps, p50 and p99 per row and
#       target, CPU seconds per million requests of the proxy process (and of
#       the master for direct), the ratios kvp/twemproxy and kvp/direct, and the
#       RSS of kvp (and nutcracker) holding 10 000 idle client connections.
#       quick: 2 repetitions of small runs (under 2 minutes); full: 5
#       repetitions (under 15 minutes). --pin: the load generator on CPU 0,
#       every server on CPU 1 (taskset). The results also go to
#       bench/results/<date>-<commit>-<mode>-t<threads>[-pin][-label].csv.
#   scripts/bench.sh compare A.csv B.csv
#       two result files side by side, with B/A ratios
#   scripts/bench.sh migrate [KEYS]   keys moved per second scaling 1 -> 2
#       and 3 -> 4 masters (KEYS of 64 bytes loaded per scenario, default
#       300000), the tool's rate with no client load and under 8 SET clients
#       through the proxy, their p50/p99 and throughput before and during
#       that move, and two reference rates of synchronous SCAN + MIGRATE
#       loops (scripts/lib/raw_migrate.lua, one per source in parallel, no
#       proxy): raw, the target's reference (issue 15: "the same data moved
#       ... between the same servers"), on a cluster built like the quiet
#       one, moving the keys of the buckets the tool moved (every key of each
#       source scanned, as the tool does); raw_all, as many keys on
#       dedicated servers holding only them, all moved (a stricter bound);
#       the tool's rate as a ratio of each
#   scripts/bench.sh policy [REPS]   what the routing policy's rules cost per
#       request: GET at -P 1 and -P 16 (-c 50) through a kvp whose namespace
#       has no policy, and through one whose policy has rules, for a key no
#       rule matches, a key of a C rule (read_only), of a Lua route rule and
#       of a replica-read rule; direct Redis for reference. Targets alternate
#       within each row; median rps / p50 / p99 of REPS (default 3) runs
#
# Everything runs on free loopback ports in a temp dir (tests/it/lib.sh);
# KEEP=1 keeps the dir (logs, raw runs).
source "$(dirname "$(readlink -f "$0")")/lib/common.sh"

usage() {
  echo "usage: scripts/bench.sh quick|full [--pin] [--threads N] [--label TEXT] [--reps N]" >&2
  echo "       scripts/bench.sh compare A.csv B.csv" >&2
  echo "       scripts/bench.sh migrate [KEYS]" >&2
  echo "       scripts/bench.sh policy [REPS]" >&2
  exit 2
}

MODE=${1:-}
case "$MODE" in
  compare)
    [ $# -eq 3 ] || usage
    kv_ensure_build || exit 1
    exec "$KV_BUILD/kvlua" "$KV_ROOT/scripts/lib/bench_report.lua" compare "$2" "$3" ;;
  quick|full)
    kv_ensure_deps /usr/sbin/nutcracker:nutcracker taskset:util-linux >/dev/null || exit 1 ;;
  migrate|policy)
    kv_ensure_deps >/dev/null || exit 1 ;;
  *) usage ;;
esac
kv_ensure_build || exit 1
# shellcheck source=../tests/it/lib.sh
source "$KV_ROOT/tests/it/lib.sh"

# it_kvp_conf NAME ... then set KEY=LUAVALUE pairs (a key set twice in a
# config file is an error, so extra lines cannot repeat the lib's keys).
bench_kvp_conf() { # NAME NS CS_PROXY KEY=LUAVALUE...
  local name=$1 ns=$2 cs=$3 kv; shift 3
  it_kvp_conf "$name" "$ns" "$cs"
  for kv in "$@"; do kv_conf_set "$IT_DIR/$name/kvp.conf" "${kv%%=*}" "${kv#*=}"; done
}

# bench_field LINE NAME: the number after " NAME=" in a "a=1 b=2" line
bench_field() { echo " $1" | sed -n "s/.* $2=\([0-9.]*\).*/\1/p"; }

# bench_raw_ref NKEYS NSRC BATCH: the secondary reference (raw_all) --
# NKEYS keys of 64 bytes spread evenly over NSRC fresh plain Redis servers
# that hold only those keys, all moved to one more by
# scripts/lib/raw_migrate.lua (one synchronous SCAN + MIGRATE loop per
# source, the sources in parallel, BATCH keys per MIGRATE: the tool's
# default --batch). Every key scanned is a key moved: a stricter bound than
# any mover that scans whole masters to take some of their buckets can
# reach. Prints raw_migrate.lua's lines; the servers are shut down after.
bench_raw_ref() {
  local nkeys=$1 nsrc=$2 batch=$3
  local ports=() p i dst
  for ((i = 0; i <= nsrc; i++)); do
    p=$(it_free_port); it_redis_start "$p" >&2 || exit 1; ports+=("$p")
  done
  dst=${ports[$nsrc]}
  # keys shaped like the tool's ("<bucket>_key:<12 digits>"), values 64 bytes
  local script="for i = tonumber(ARGV[1]), tonumber(ARGV[2]) - 1 do
    redis.call('SET', string.format('%d_key:%012d', i % 1023, i), ARGV[3]) end return 1"
  local val from to
  val=$(printf 'v%.0s' $(seq 64))
  for ((i = 0; i < nsrc; i++)); do
    from=$((nkeys * i / nsrc)); to=$((nkeys * (i + 1) / nsrc))
    it_redis "${ports[$i]}" eval "$script" 0 "$from" "$to" "$val" >/dev/null
  done
  "$IT_BIN/kvlua" "$KV_ROOT/scripts/lib/raw_migrate.lua" "$IT_PW" "$batch" "$dst" "${ports[@]:0:$nsrc}"
  local left=0 got
  for ((i = 0; i < nsrc; i++)); do left=$((left + $(it_redis "${ports[$i]}" dbsize))); done
  got=$(it_redis "$dst" dbsize)
  [ "$left" -eq 0 ] && [ "$got" -eq "$nkeys" ] ||
    yellow "warning: raw reference: $got keys on the destination (want $nkeys), $left left on the sources" >&2
  for p in "${ports[@]}"; do it_redis "$p" shutdown nosave >/dev/null 2>&1; done
}

# bench_cluster NS NSRC NKEYS: NSRC masters + one empty (CL_MS, the last is
# the one to add), a namespace NS of 1023 buckets on the NSRC, a kvp in
# front (CL_PORT), about NKEYS keys of 64 bytes written through it: the
# benchmark's random keys (-r) with 1.3x as many SETs as keys.
bench_cluster() {
  local ns=$1 nsrc=$2 nkeys=$3 m i addrs=() name=P$1
  CL_MS=()
  for ((i = 0; i <= nsrc; i++)); do m=$(it_free_port); it_redis_start "$m" || exit 1; CL_MS+=("$m"); done
  for ((i = 0; i < nsrc; i++)); do addrs+=("127.0.0.1:${CL_MS[$i]}"); done
  it_init_table "$CS_HTTP" "$ns" 1023 "${addrs[@]}" || exit 1
  bench_kvp_conf "$name" "$ns" "$CS_PROXY" 'log_level="info"'
  it_kvp_start "$name" "$ns" "$CS_PROXY" || exit 1
  local port_var="${name}_PORT"
  CL_PORT=${!port_var}
  redis-benchmark -p "$CL_PORT" -t set -n "$((nkeys * 13 / 10))" -r "$nkeys" -d 64 -P 32 -q >/dev/null 2>&1
  local total=0
  for ((i = 0; i < nsrc; i++)); do total=$((total + $(it_redis "${CL_MS[$i]}" dbsize))); done
  echo "$ns: $total keys on $nsrc masters"
}

# bench_tool NS ADD_PORT START_FILE: migration_tool --add at its defaults;
# touches START_FILE as it starts; sets TOOL_MOVED, TOOL_RATE (the tool's own
# "done:" rate: the keys it moved over the time from the first START to the
# last DONE, the span raw_migrate.lua times for its loops) and TOOL_WALL (keys
# now on the added master over the whole process's wall time: start-up, the
# table, the plan and the final report included)
bench_tool() {
  local ns=$1 add=$2 startf=$3 t0 t1 rc out="$IT_DIR/$1.tool"
  touch "$startf"
  t0=$(date +%s.%N)
  "$IT_BIN/migration_tool" --cs "127.0.0.1:$MIG" --ns "$ns" --add "127.0.0.1:$add" > "$out" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  TOOL_MOVED=$(it_redis "$add" dbsize)
  TOOL_WALL=$(awk -v m="$TOOL_MOVED" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", m / (b - a) }')
  TOOL_RATE=$(sed -n 's/^done: .* (\([0-9]*\) keys\/s)$/\1/p' "$out")
  : "${TOOL_RATE:=0}"
  grep -E '^(done|pace|big keys)' "$out" | sed 's/^/  /'
  awk -v m="$TOOL_MOVED" -v a="$t0" -v b="$t1" -v rc="$rc" 'BEGIN {
    printf "migration_tool --add (exit %d): %d keys moved in %.2f s = %.0f keys/s\n", rc, m, b - a, m / (b - a) }'
}

# bench_buckets_of NS ADDR: the buckets ADDR owns in NS's table (the config
# server's bucket_table), blank-separated on one line
bench_buckets_of() {
  curl -sf -d "{\"namespace\":\"$1\"}" "http://127.0.0.1:$CS_HTTP/kvstore/cs/bucket_table" |
    luajit "$KV_ROOT/scripts/lib/json.lua" "table.concat(j.table['$2'] or {}, ' ')"
}

# bench_raw_same NS NSRC NKEYS BATCH SETFILE: the main reference (raw) -- a
# cluster built like the quiet one (bench_cluster NS NSRC NKEYS, then the
# same 5 s of SETs through its proxy), its proxy stopped, then
# raw_migrate.lua on its masters: one synchronous SCAN + MIGRATE loop per
# source, in parallel, BATCH keys per MIGRATE, moving to the added master
# only the keys of the buckets in SETFILE (the ones the tool moved in the
# quiet run); the others are scanned and stay, as with the tool. Prints
# raw_migrate.lua's lines, warns unless exactly the keys of the set moved;
# the servers are shut down after.
bench_raw_same() {
  local ns=$1 nsrc=$2 nkeys=$3 batch=$4 setf=$5 i p
  # not in a pipe: bench_cluster sets CL_MS and CL_PORT in this shell
  bench_cluster "$ns" "$nsrc" "$nkeys" > "$IT_DIR/$ns.cluster"
  cat "$IT_DIR/$ns.cluster"
  echo "SET load, then stopped (8 connections, 5 s): $("$IT_BIN/kvlua" "$KV_ROOT/scripts/lib/latency.lua" "$CL_PORT" 5 8)"
  # no proxy while the loops run (its masters are plain Redis from here)
  it_kill "P$ns"
  local before=0 left=0 got out
  for ((i = 0; i < nsrc; i++)); do before=$((before + $(it_redis "${CL_MS[$i]}" dbsize))); done
  out=$("$IT_BIN/kvlua" "$KV_ROOT/scripts/lib/raw_migrate.lua" --buckets "$setf" "$IT_PW" "$batch" \
    "${CL_MS[$nsrc]}" "${CL_MS[@]:0:$nsrc}")
  printf '%s\n' "$out"
  for ((i = 0; i < nsrc; i++)); do left=$((left + $(it_redis "${CL_MS[$i]}" dbsize))); done
  got=$(it_redis "${CL_MS[$nsrc]}" dbsize)
  local moved check
  moved=$(printf '%s\n' "$out" | sed -n 's/^total keys=\([0-9]*\).*/\1/p')
  check=$(printf '%s\n' "$out" | grep '^check ')
  [ "$check" = "check set_left_on_sources=0 others_on_destination=0" ] && [ "$got" = "$moved" ] &&
    [ $((left + got)) -eq "$before" ] && [ "${moved:-0}" -gt 0 ] ||
    yellow "warning: raw reference: $got keys on the destination, ${moved:-?} moved, $left left on the sources of $before; $check" >&2
  for p in "${CL_MS[@]}"; do it_redis "$p" shutdown nosave >/dev/null 2>&1; done
}

# bench_migrate_one NKEYS NSRC: scale NSRC -> NSRC+1 masters with
# migration_tool at its defaults twice, on two fresh clusters: with no client
# load (its speed, against the raw references) and under 8 SET clients
# through the proxy (what the clients pay: p99 and throughput before and
# during); then the raw references: raw, on a third cluster built like the
# quiet one, the keys of the buckets the quiet run moved, by plain SCAN +
# MIGRATE loops between its masters (issue 15's "same data ... between the
# same servers": the target's reference); and raw_all, as many keys as the
# quiet run moved, on dedicated servers holding only them. Appends one line
# to $IT_DIR/migrate.csv:
# nsrc,raw_rate,raw_all_rate,tool_quiet,tool_loaded,p50b,p99b,rpsb,p50d,p99d,rpsd,tool_wall
bench_migrate_one() {
  local nkeys=$1 nsrc=$2 r pairs="$IT_DIR/pairs.$2"
  bold "== scenario: $nsrc -> $((nsrc + 1)) masters"
  : > "$pairs"
  for ((r = 1; r <= MIGRATE_REPS; r++)); do bench_quiet_pair "$nkeys" "$nsrc" "$r" "$pairs"; done
  local tool_quiet tool_wall raw_rate moved
  tool_quiet=$(bench_median 1 < "$pairs"); raw_rate=$(bench_median 2 < "$pairs"); tool_wall=$(bench_median 3 < "$pairs")
  moved=$(head -1 "$pairs" | cut -d' ' -f4)
  echo "-- medians of $MIGRATE_REPS quiet runs: tool $tool_quiet keys/s (wall $tool_wall), raw $raw_rate keys/s;" \
    "x_raw per run: $(awk '{ printf "%.2f ", $1 / $2 }' "$pairs")"
  echo "-- the tool under 8 SET clients through the proxy:"
  bench_cluster "l$nsrc" "$nsrc" "$nkeys"
  # (the SET load adds up to 80 000 keys "lat:*" of its own, which move too)
  local before during out="$IT_DIR/l$nsrc"
  before=$("$IT_BIN/kvlua" "$KV_ROOT/scripts/lib/latency.lua" "$CL_PORT" 5 8)
  echo "SET load before the move (8 connections, 5 s): $before"
  rm -f "$out.stop" "$out.start"
  # connected and warm before the move; measured from the tool's start
  "$IT_BIN/kvlua" "$KV_ROOT/scripts/lib/latency.lua" "$CL_PORT" 600 8 "$out.stop" "$out.start" > "$out.during" &
  local lat=$!
  sleep 0.5
  bench_tool "l$nsrc" "${CL_MS[$nsrc]}" "$out.start"
  local tool_loaded=$TOOL_RATE
  touch "$out.stop"
  wait "$lat"
  during=$(cat "$out.during")
  echo "SET load during the move: $during"
  local p99b p99d
  p99b=$(bench_field "$before" p99); p99d=$(bench_field "$during" p99)
  awk -v a="$p99b" -v b="$p99d" 'BEGIN { printf "p99 during / before: %.2f\n", b / a }'
  echo "-- raw reference (raw_all): $moved keys (the first quiet run's) on $nsrc dedicated source(s) holding only them -> 1 plain Redis:"
  local raw_all raw_all_rate
  raw_all=$(bench_raw_ref "$moved" "$nsrc" "$MIGRATE_BATCH")
  printf '%s\n' "$raw_all" | sed 's/^/  /'
  raw_all_rate=$(printf '%s\n' "$raw_all" | sed -n 's/^total .* rate=\([0-9]*\).*/\1/p')
  local f=bench_field
  echo "$nsrc,${raw_rate:-0},${raw_all_rate:-0},$tool_quiet,$tool_loaded,$($f "$before" p50),$p99b,$($f "$before" rps),$($f "$during" p50),$p99d,$($f "$during" rps),$tool_wall" \
    >> "$IT_DIR/migrate.csv"
}

# bench_median COLUMN: the median of a column of numbers on stdin
bench_median() {
  cut -d' ' -f"$1" | sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'
}

# bench_quiet_pair NKEYS NSRC REP PAIRS: one quiet run of the tool and its
# raw reference, each on a fresh cluster (timings on 2 shared cores vary by
# +-15 % from run to run: bench_migrate_one takes medians of MIGRATE_REPS
# pairs). Appends "tool_rate raw_rate tool_wall moved" to PAIRS.
bench_quiet_pair() {
  local nkeys=$1 nsrc=$2 r=$3 pairs=$4 ns="q$2n$3" setf nb
  echo "-- quiet run $r: the tool alone (no client load):"
  bench_cluster "$ns" "$nsrc" "$nkeys"
  # the same 5 s of SETs as the loaded cluster gets before its move: the
  # same "lat:*" keys on both, so both moves carry as many keys
  echo "SET load, then stopped (8 connections, 5 s): $("$IT_BIN/kvlua" "$KV_ROOT/scripts/lib/latency.lua" "$CL_PORT" 5 8)"
  bench_tool "$ns" "${CL_MS[$nsrc]}" "$IT_DIR/$ns.start"
  # the buckets the tool moved: the ones the added master owns now
  setf="$IT_DIR/$ns.buckets"
  bench_buckets_of "$ns" "127.0.0.1:${CL_MS[$nsrc]}" > "$setf"
  nb=$(wc -w < "$setf")
  echo "buckets moved (the added master's in the table): $nb"
  [ "$nb" -gt 0 ] || yellow "warning: the added master owns no bucket in $ns's table" >&2
  echo "-- raw reference (raw): a cluster like the quiet one, its proxy stopped, the keys of those $nb buckets moved"
  echo "   to its added master by one SCAN + MIGRATE loop per source (every key scanned), batch $MIGRATE_BATCH:"
  bench_raw_same "r$2n$3" "$nsrc" "$nkeys" "$MIGRATE_BATCH" "$setf" > "$IT_DIR/r$2n$3.raw"
  sed 's/^/  /' "$IT_DIR/r$2n$3.raw"
  local raw_rate
  raw_rate=$(sed -n 's/^total .* rate=\([0-9]*\).*/\1/p' "$IT_DIR/r$2n$3.raw")
  echo "$TOOL_RATE ${raw_rate:-0} $TOOL_WALL $TOOL_MOVED" >> "$pairs"
}

bench_migrate() {
  local nkeys=${1:-300000}
  # the tool's default --batch: the raw loops MIGRATE as many keys per command
  : "${MIGRATE_REPS:=3}" # quiet tool + raw pairs per scenario (medians)
  MIGRATE_BATCH=$(sed -n 's/^M\.DEFAULT_BATCH = \([0-9]*\).*/\1/p' "$KV_ROOT/lua/tools/migration_tool.lua")
  : "${MIGRATE_BATCH:=100}"
  it_kvcs_start CS || exit 1
  MIG=$(sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/CS/kvcs.conf")
  echo "== migrate: $(nproc) cores, $(redis-server --version | cut -d' ' -f3), $nkeys keys of 64 bytes per scenario, batch $MIGRATE_BATCH"
  : > "$IT_DIR/migrate.csv"
  bench_migrate_one "$nkeys" 1
  bench_migrate_one "$nkeys" 3
  echo
  bold "== summary"
  echo "keys/s. raw (same servers; the target's reference, issue 15): a cluster built like the quiet one, no proxy,"
  echo "one synchronous SCAN + MIGRATE loop per source in parallel, moving the keys of the buckets the tool moved to"
  echo "the added master (scanning every key, as the tool does). raw_all: as many keys on dedicated plain Redis"
  echo "servers holding only them, all moved (every key scanned is moved: a bound no SCAN-based mover reaches)."
  echo "raw, tool and wall are medians of $MIGRATE_REPS pairs (MIGRATE_REPS), each on fresh clusters."
  echo "tool: migration_tool --add at its defaults with no client load, its own rate from the first START to the"
  echo "last DONE (wall: over the whole process) (x_raw, x_all: tool / raw, tool / raw_all;"
  echo "target x_raw >= 0.8) and under 8 SET clients through the proxy (loaded); p99 (ms) and rps: those SET"
  echo "clients in the 5 s before and over the loaded move."
  printf '%-6s %8s %8s %8s %8s %6s %6s %8s %7s %7s %6s %7s %7s %6s\n' scen raw raw_all tool wall x_raw x_all \
    loaded p99_bef p99_dur p99_x rps_bef rps_dur rps_x
  awk -F, '{
    printf "%-6s %8d %8d %8d %8d %6.2f %6.2f %8d %7.2f %7.2f %6.2f %7d %7d %6.2f\n", $1 "->" $1 + 1, $2, $3, $4, $12,
      ($2 > 0 ? $4 / $2 : 0), ($3 > 0 ? $4 / $3 : 0), $5,
      $7, $10, ($7 > 0 ? $10 / $7 : 0), $8, $11, ($8 > 0 ? $11 / $8 : 0) }' "$IT_DIR/migrate.csv"
}

# ------------------------------------------------------------ policy rules

# bench_policy [REPS]: targets are "name port key-prefix"; one redis-benchmark
# GET run per target and repetition, alternating
bench_policy() {
  local reps=${1:-3}
  local m1 m2 m3 m4 r1 r2
  m1=$(it_free_port); m2=$(it_free_port); m3=$(it_free_port); m4=$(it_free_port)
  r1=$(it_free_port); r2=$(it_free_port)
  for m in $m1 $m2 $m3 $m4; do it_redis_start "$m" || exit 1; done
  it_redis_start "$r1" --replicaof 127.0.0.1 "$m1" || exit 1
  it_redis_start "$r2" --replicaof 127.0.0.1 "$m2" || exit 1
  it_kvcs_start CS || exit 1
  it_init_table "$CS_HTTP" ruled 1023 "127.0.0.1:$m1" "127.0.0.1:$m2" || exit 1
  it_init_table "$CS_HTTP" plain 1023 "127.0.0.1:$m3" "127.0.0.1:$m4" || exit 1
  cat > "$IT_DIR/policy.lua" <<'EOP'
return {
  rules = {
    { match = "ro:*", read_only = true },
    { match = "rt:*", route = function(key) return key:sub(4, 7) end },
    { match = "rr:*", replica_reads = "prefer", max_replica_lag_ms = 1000 },
  },
}
EOP
  local body
  body=$(luajit -e "local cjson = require 'cjson'
    local f = assert(io.open('$IT_DIR/policy.lua')); local src = f:read('*a'); f:close()
    io.write(cjson.encode({ namespace = 'ruled', source = src }))")
  curl -s -d "$body" "http://127.0.0.1:$CS_HTTP/kvstore/cs/set_policy" | grep -q '"code":1001' ||
    kv_die "set_policy failed"
  bench_kvp_conf P ruled "$CS_PROXY" 'log_level="warn"' 'request_timeout=2000'
  bench_kvp_conf Q plain "$CS_PROXY" 'log_level="warn"' 'request_timeout=2000'
  it_kvp_start P ruled "$CS_PROXY" || exit 1
  it_kvp_start Q plain "$CS_PROXY" || exit 1
  it_wait 10 it_kvp_ready "$P_PORT" && it_wait 10 it_kvp_ready "$Q_PORT" || kv_die "no table"
  # the config server learns the replicas (at start and every 10 s), the
  # proxy measures them: replica reads start once both read a lag
  it_wait 30 sh -c "[ \"\$(curl -s http://127.0.0.1:$P_HTTP/metrics | grep -c '^kvp_replica_lag_ms{.*} [0-9]')\" = 2 ]" ||
    kv_die "the proxy measured no replica lag"
  local before_r
  before_r=$(( $(it_redis "$r1" info commandstats | sed -n 's/^cmdstat_get:calls=\([0-9]*\),.*/\1/p' | tr -d '\r' | grep . || echo 0) ))
  echo "== policy rules: $(nproc) cores, $(redis-server --version | cut -d' ' -f3), GET -c 50 -r 100000, $reps runs per target"
  local targets=("direct $m1 key:" "kvp_no_policy $Q_PORT key:" "kvp_no_match $P_PORT key:"
                 "kvp_c_rule $P_PORT ro:" "kvp_lua_route $P_PORT rt:" "kvp_replica $P_PORT rr:")
  local raw="$IT_DIR/policy.csv"; : > "$raw"
  local row pn n rep i t name port pre auth out line
  for row in "P1 1 50000" "P16 16 300000"; do
    read -r name pn n <<< "$row"
    for ((rep = 0; rep < reps; rep++)); do
      for ((i = 0; i < ${#targets[@]}; i++)); do
        t=${targets[$(((rep + i) % ${#targets[@]}))]}
        read -r tname port pre <<< "$t"
        auth=(); [ "$tname" = direct ] && auth=(-a "$IT_PW")
        out=$(redis-benchmark -h 127.0.0.1 -p "$port" "${auth[@]}" -n "$n" -c 50 -P "$pn" -r 100000 --csv \
          get "${pre}__rand_int__" 2>/dev/null)
        line=$(printf '%s\n' "$out" | grep -v '^"test"' | grep '^"' | tail -1 | tr -d '"')
        printf '%s\n' "$line" | awk -F, -v r="$name" -v t="$tname" '{ print r "," t "," $(NF-6) "," $(NF-3) "," $(NF-1) }' >> "$raw"
      done
    done
  done
  local after_r
  after_r=$(( $(it_redis "$r1" info commandstats | sed -n 's/^cmdstat_get:calls=\([0-9]*\),.*/\1/p' | tr -d '\r' | grep . || echo 0) ))
  printf '%-6s %-15s %10s %8s %8s %8s\n' row target rps p50_ms p99_ms vs_plain
  awk -F, '
    { k = $1 "," $2; n[k]++; rps[k, n[k]] = $3; p50[k, n[k]] = $4; p99[k, n[k]] = $5
      if (!(k in seen)) { seen[k] = 1; order[++no] = k } }
    function med(a, k, c,   i, j, v, tmp) {
      for (i = 1; i <= c; i++) tmp[i] = a[k, i]
      for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (tmp[j] + 0 < tmp[i] + 0) { v = tmp[i]; tmp[i] = tmp[j]; tmp[j] = v }
      return tmp[int((c + 1) / 2)] }
    END {
      for (o = 1; o <= no; o++) { k = order[o]; split(k, f, ","); m[k] = med(rps, k, n[k]) }
      for (o = 1; o <= no; o++) { k = order[o]; split(k, f, ",")
        base = m[f[1] ",kvp_no_policy"]
        printf "%-6s %-15s %10.0f %8s %8s %8.2f\n", f[1], f[2], m[k], med(p50, k, n[k]), med(p99, k, n[k]), (base > 0 ? m[k] / base : 0) } }' "$raw"
  echo "GETs the replica of $m1 served during the runs: $((after_r - before_r)) (replica reads go to replicas)"
}

# ------------------------------------------------------------ kvp vs twemproxy

KEYSPACE=1000000          # -r of every row; the preload writes all of them
IDLE_CONNS=10000          # idle clients held for the RSS figure
PIN=0 THREADS="" LABEL="" REPS=""

bench_ticks() { # PID: utime+stime (clock ticks) of the whole process
  # fields after "pid (comm) ": state is $1, utime $12, stime $13
  sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}

bench_status_kib() { # PID FIELD: VmRSS / VmHWM in KiB
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null
}

# bench_run ROW TARGET REP N ARGS...: one redis-benchmark run, one line to raw.csv
bench_run() {
  local row=$1 target=$2 rep=$3 n=$4; shift 4
  local port pid auth=()
  case "$target" in
    direct) port=$M1; pid=$M1_PID; auth=(-a "$IT_PW") ;;
    kvp) port=$P_PORT; pid=$KVP_PID ;;
    twemproxy) port=$NC_PORT; pid=$NC_PID; auth=(-a "$IT_PW") ;;
  esac
  local t0 t1 out err="$IT_DIR/runs/$row-$target-$rep.err"
  t0=$(bench_ticks "$pid")
  out=$("${LOADGEN[@]}" redis-benchmark -h 127.0.0.1 -p "$port" "${auth[@]}" -n "$n" --csv "$@" 2>"$err")
  t1=$(bench_ticks "$pid")
  printf '%s\n' "$out" > "$IT_DIR/runs/$row-$target-$rep.csv"
  # the data line: "name","rps","avg","min","p50","p95","p99","max"
  local line errs
  line=$(printf '%s\n' "$out" | grep -v '^"test"' | grep '^"' | tail -1 | tr -d '"')
  # redis-benchmark's CONFIG GET at start is refused by both proxies: not an error
  errs=$(grep -v 'Could not fetch server CONFIG' "$err" | grep -ciE 'error|warning')
  if [ -z "$line" ]; then
    echo "  $row/$target rep $rep: no result ($(head -c 200 "$err"))" >&2
    echo "$row,$target,$rep,,,,$((t1 - t0)),$n,$((errs + 1))" >> "$IT_DIR/raw.csv"
    return
  fi
  # the command name may contain commas? (mget's does not): rps is field
  # NF-6 counted from the end
  printf '%s\n' "$line" | awk -F, -v row="$row" -v t="$target" -v rep="$rep" \
    -v ticks="$((t1 - t0))" -v n="$n" -v e="$errs" \
    '{ printf "%s,%s,%s,%s,%s,%s,%d,%d,%d\n", row, t, rep, $(NF-6), $(NF-3), $(NF-1), ticks, n, e }' \
    >> "$IT_DIR/raw.csv"
}

# bench_row ROW N ARGS...: every target, REPS times, the first target rotating
bench_row() {
  local row=$1 n=$2; shift 2
  local rep i t targets=(direct kvp twemproxy)
  printf '  %-10s' "$row" >&2
  for ((rep = 1; rep <= REPS; rep++)); do
    for ((i = 0; i < 3; i++)); do
      t=${targets[$(((rep - 1 + i) % 3))]}
      bench_run "$row" "$t" "$rep" "$n" "$@"
    done
    printf ' %d' "$rep" >&2
  done
  echo >&2
}

# bench_idle TARGET PORT PID [PASSWORD]: RSS of PID before and with
# IDLE_CONNS idle clients; one line to rss.csv
bench_idle() {
  local target=$1 port=$2 pid=$3 pw=${4:-}
  local ready="$IT_DIR/idle-$target.ready" stop="$IT_DIR/idle-$target.stop"
  local base rss hwm i
  base=$(bench_status_kib "$pid" VmRSS)
  "${LOADGEN[@]}" "$IT_BIN/kvlua" "$KV_ROOT/scripts/lib/bench_idle.lua" "$port" "$IDLE_CONNS" \
    "$ready" "$stop" "$pw" 2>"$IT_DIR/idle-$target.err" &
  local lpid=$!
  for ((i = 0; i < 1200; i++)); do
    [ -f "$ready" ] && break
    kill -0 "$lpid" 2>/dev/null || break
    sleep 0.1
  done
  sleep 1   # let the server settle (accept queues drained, buffers freed)
  rss=$(bench_status_kib "$pid" VmRSS)
  hwm=$(bench_status_kib "$pid" VmHWM)
  local st conns failed clients=""
  st=$(cat "$ready" 2>/dev/null)
  conns=$(printf '%s' "$st" | sed -n 's/.*connected=\([0-9]*\).*/\1/p')
  failed=$(printf '%s' "$st" | sed -n 's/.*errors=\([0-9]*\).*/\1/p')
  if [ "$target" = kvp ]; then
    clients=$(curl -sf "http://127.0.0.1:$P_HTTP/kvstore/proxy/stats_info" |
      sed -n 's/.*"client_count":\([0-9]*\).*/\1/p')
  fi
  echo "  $target: $st${clients:+ (kvp stats_info client_count=$clients)}" >&2
  [ -s "$IT_DIR/idle-$target.err" ] && head -3 "$IT_DIR/idle-$target.err" >&2
  touch "$stop"
  wait "$lpid" 2>/dev/null
  echo "$target,$base,$rss,$hwm,${conns:-0},${failed:-0}" >> "$IT_DIR/rss.csv"
}

bench_compare_proxies() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --pin) PIN=1 ;;
      --threads) THREADS=${2:-}; shift ;;
      --threads=*) THREADS=${1#*=} ;;
      --label) LABEL=${2:-}; shift ;;
      --label=*) LABEL=${1#*=} ;;
      --reps) REPS=${2:-}; shift ;;
      --reps=*) REPS=${1#*=} ;;
      *) usage ;;
    esac
    shift
  done
  [ -z "$THREADS" ] && THREADS=$(kv_conf_get "$KV_ROOT/conf/kvp.conf" io_threads)
  [[ "$THREADS" =~ ^[0-9]+$ ]] || kv_die "--threads needs a number"
  [[ "$LABEL" =~ ^[A-Za-z0-9._-]*$ ]] || kv_die "--label: letters, digits, . _ - only"
  # -n per row: P1 rows ~2 s each at ~100k rps; P16 ~2-5 s
  local n1 n16 nm nc
  if [ "$MODE" = quick ]; then
    : "${REPS:=2}"; n1=40000 n16=200000 nm=20000 nc=40000
  else
    : "${REPS:=5}"; n1=200000 n16=1000000 nm=100000 nc=200000
  fi
  [[ "$REPS" =~ ^[1-9][0-9]*$ ]] || kv_die "--reps needs a positive number"

  local started=$SECONDS
  # 10 000 idle clients, -c 1000 rows: every process started below inherits this
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  [ "$(ulimit -n)" -gt $((IDLE_CONNS + 1000)) ] ||
    yellow "warning: ulimit -n is $(ulimit -n): too low for $IDLE_CONNS idle clients" >&2

  LOADGEN=()
  if [ $PIN -eq 1 ]; then
    [ "$(nproc)" -ge 2 ] || kv_die "--pin needs 2 CPUs"
    # this shell, hence every server started from it, on CPU 1; the load
    # generator is started on CPU 0
    taskset -pc 1 $$ >/dev/null || kv_die "taskset failed"
    LOADGEN=(taskset -c 0)
  fi
  mkdir -p "$IT_DIR/runs"
  : > "$IT_DIR/raw.csv"; : > "$IT_DIR/rss.csv"

  # -------- servers
  M1=$(it_free_port); M2=$(it_free_port)
  it_redis_start "$M1" || exit 1
  it_redis_start "$M2" || exit 1
  M1_PID=$(cat "$IT_DIR/redis-$M1.pid")
  it_kvcs_start CS || exit 1
  it_init_table "$CS_HTTP" bench 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || kv_die "init_table failed"
  bench_kvp_conf P bench "$CS_PROXY" "io_threads=$THREADS" "max_client_num=$((IDLE_CONNS * 2))" \
    'log_level="warn"' 'request_timeout=2000'
  it_kvp_start P bench "$CS_PROXY" || { cat "$IT_DIR/P/kvp.log" >&2; exit 1; }
  it_wait 10 it_kvp_ready "$P_PORT" || kv_die "kvp has no table"
  KVP_PID=$(cat "$IT_DIR/P/kvp.pid")

  NC_PORT=$(it_free_port)
  local nc_stats nc_bin
  nc_stats=$(it_free_port)
  nc_bin=$(command -v nutcracker || echo /usr/sbin/nutcracker)
  cat > "$IT_DIR/nutcracker.yml" <<EOC
bench:
  listen: 127.0.0.1:$NC_PORT
  redis: true
  redis_auth: $IT_PW
  hash: murmur
  distribution: modula
  preconnect: true
  server_connections: 1
  auto_eject_hosts: false
  servers:
   - 127.0.0.1:$M1:1 m1
   - 127.0.0.1:$M2:1 m2
EOC
  "$nc_bin" -d -c "$IT_DIR/nutcracker.yml" -o "$IT_DIR/nutcracker.log" -p "$IT_DIR/nutcracker.pid" \
    -s "$nc_stats" -a 127.0.0.1 || kv_die "nutcracker did not start"
  it_wait 10 sh -c "redis-cli -p $NC_PORT -a $IT_PW --no-auth-warning ping | grep -q PONG" ||
    { cat "$IT_DIR/nutcracker.log" >&2; kv_die "nutcracker does not answer"; }
  NC_PID=$(cat "$IT_DIR/nutcracker.pid")

  # -------- header
  local commit dirty="" rv ncv
  commit=$(git -C "$KV_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -n "$(git -C "$KV_ROOT" --no-optional-locks status --porcelain -- c lua conf CMakeLists.txt 2>/dev/null)" ] &&
    dirty="+uncommitted"
  rv=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
  ncv=$("$nc_bin" --version 2>&1 | sed -n 's/.*nutcracker-\([^ ]*\).*/\1/p' | head -1)
  local pin_text="no (processes float over all cores)"
  [ $PIN -eq 1 ] && pin_text="yes: redis-benchmark and the idle clients on CPU 0; redis x2, kvcs, kvp, nutcracker on CPU 1"
  local date
  date=$(date +%Y%m%d-%H%M%S)
  {
    echo "date=$date"
    echo "mode=$MODE"
    echo "cores=$(nproc)"
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1 | tr ',' ' ')"
    echo "redis=$rv"
    echo "nutcracker=$ncv"
    echo "commit=$commit$dirty"
    echo "io_threads=$THREADS"
    echo "pin=$([ $PIN -eq 1 ] && echo yes || echo no)"
    echo "reps=$REPS"
    echo "n=P1:$n1 P16:$n16 mset/mget:$nm c1000:$nc"
    echo "label=$LABEL"
  } > "$IT_DIR/meta"
  bold "== kvp vs twemproxy vs direct redis ($MODE, $(date '+%Y-%m-%d %H:%M'))"
  echo "cores: $(nproc) ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))"
  echo "redis $rv, nutcracker $ncv, kvp commit $commit$dirty, kvp io_threads $THREADS"
  echo "pinned: $pin_text"
  echo "$REPS repetitions per row and target, targets alternating; -d 64 -r $KEYSPACE -c 50 unless said;"
  echo "-n: $n1 (-P 1), $n16 (-P 16), $nm (MSET/MGET 10 keys), $nc (-c 1000)"

  # -------- RSS with idle clients, first: the figure of a fresh process
  # (the preload below leaves kvp's buffers grown)
  echo "idle clients ($IDLE_CONNS each, fresh processes):" >&2
  bench_idle kvp "$P_PORT" "$KVP_PID"
  bench_idle twemproxy "$NC_PORT" "$NC_PID" "$IT_PW"

  # -------- preload: the whole keyspace on both masters, so a GET hits
  # whichever master kvp or twemproxy sends it to
  local val t0
  val=$(printf 'v%.0s' $(seq 64))
  t0=$SECONDS
  local script="for i = 0, tonumber(ARGV[1]) - 1 do redis.call('SET', string.format('key:%012d', i), ARGV[2]) end return 1"
  it_redis "$M1" eval "$script" 0 "$KEYSPACE" "$val" >/dev/null &
  local l1=$!
  it_redis "$M2" eval "$script" 0 "$KEYSPACE" "$val" >/dev/null
  wait "$l1"
  # kvp stores <bucket>_<key> (SPEC 2): its copy of the keyspace goes through kvp
  local pipe_out
  pipe_out=$(awk -v n="$KEYSPACE" -v v="$val" 'BEGIN {
      for (i = 0; i < n; i++)
        printf "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$64\r\n%s\r\n", i, v }' |
    redis-cli -p "$P_PORT" --pipe 2>&1)
  printf '%s\n' "$pipe_out" | grep -q 'errors: 0, replies: '"$KEYSPACE" ||
    yellow "warning: preload through kvp: $(printf '%s' "$pipe_out" | tail -1)" >&2
  local d1 d2
  d1=$(it_redis "$M1" dbsize); d2=$(it_redis "$M2" dbsize)
  echo "preloaded: $d1 + $d2 keys in $((SECONDS - t0)) s (key:000000000000..$(printf '%012d' $((KEYSPACE - 1))) on both masters for direct/twemproxy, once more through kvp as <bucket>_key)"
  local probe=key:000000123456
  [ "$(redis-cli -p "$P_PORT" get $probe)" = "$val" ] || yellow "warning: GET $probe through kvp does not hit" >&2
  [ "$(it_redis "$NC_PORT" get $probe)" = "$val" ] || yellow "warning: GET $probe through twemproxy does not hit" >&2
  [ "$(redis-cli -p "$P_PORT" mget key:000000000001 key:000000000002 key:000000000003 | grep -c "$val")" = 3 ] ||
    yellow "warning: MGET through kvp does not return 3 values" >&2

  local rss_kvp_pre rss_nc_pre
  rss_kvp_pre=$(bench_status_kib "$KVP_PID" VmRSS)
  rss_nc_pre=$(bench_status_kib "$NC_PID" VmRSS)

  # -------- rows
  echo "running (row: repetitions done):" >&2
  local common=(-d 64 -r "$KEYSPACE")
  local mget=(mget) k
  for ((k = 0; k < 10; k++)); do mget+=("key:__rand_int__"); done
  bench_row set_p1 "$n1" "${common[@]}" -c 50 -P 1 -t set
  bench_row get_p1 "$n1" "${common[@]}" -c 50 -P 1 -t get
  bench_row set_p16 "$n16" "${common[@]}" -c 50 -P 16 -t set
  bench_row get_p16 "$n16" "${common[@]}" -c 50 -P 16 -t get
  bench_row mset10 "$nm" "${common[@]}" -c 50 -P 1 -t mset
  bench_row mget10 "$nm" "${common[@]}" -c 50 -P 1 "${mget[@]}"
  bench_row set_c1000 "$nc" "${common[@]}" -c 1000 -P 1 -t set

  # -------- table, CSV
  echo
  local res_dir="$KV_ROOT/bench/results" name
  mkdir -p "$res_dir"
  name="$date-$commit-$MODE-t$THREADS"
  [ $PIN -eq 1 ] && name="$name-pin"
  [ -n "$LABEL" ] && name="$name-$LABEL"
  "$IT_BIN/kvlua" "$KV_ROOT/scripts/lib/bench_report.lua" report "$IT_DIR/raw.csv" "$IT_DIR/rss.csv" \
    "$IT_DIR/meta" "$res_dir/$name.csv" "$(getconf CLK_TCK)"
  awk -v a="$rss_kvp_pre" -v b="$(bench_status_kib "$KVP_PID" VmRSS)" -v c="$(bench_status_kib "$KVP_PID" VmHWM)" \
      -v d="$rss_nc_pre" -v e="$(bench_status_kib "$NC_PID" VmRSS)" -v f="$(bench_status_kib "$NC_PID" VmHWM)" 'BEGIN {
    printf "RSS later: kvp %.1f MiB after the preload (1M SETs by redis-cli --pipe), %.1f MiB after the rows (VmHWM %.1f);\n", a / 1024, b / 1024, c / 1024
    printf "           nutcracker %.1f MiB after the preload, %.1f MiB after the rows (VmHWM %.1f)\n", d / 1024, e / 1024, f / 1024 }'

  # -------- anything odd
  echo
  echo "odd things:"
  local odd=0 f c
  for f in "$IT_DIR"/runs/*.err; do
    [ -s "$f" ] || continue
    # redis-benchmark's CONFIG GET at start is refused by both proxies
    c=$(grep -v -c -E 'Could not fetch server CONFIG|^$' "$f")
    if [ "$c" -gt 0 ]; then
      echo "  $(basename "$f" .err): $(grep -v -E 'Could not fetch server CONFIG|^$' "$f" | head -2 | tr '\n' ' ')"
      odd=1
    fi
  done
  local kerr
  kerr=$(grep -c -E '\b(WARN|ERROR|warn|error)\b' "$IT_DIR/P/kvp.log" 2>/dev/null)
  if [ "${kerr:-0}" -gt 0 ]; then
    echo "  kvp.log: $kerr warn/error lines, e.g.:"; grep -E '\b(WARN|ERROR|warn|error)\b' "$IT_DIR/P/kvp.log" | head -3 | sed 's/^/    /'
    odd=1
  fi
  local stats
  stats=$(timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$nc_stats; cat <&3" 2>/dev/null)
  if [ -n "$stats" ]; then
    local kv
    for k in client_err forward_error server_ejects server_err server_timedout; do
      kv=$(printf '%s' "$stats" | grep -o "\"$k\":[0-9]*" | awk -F: '{ s += $2 } END { print s + 0 }')
      if [ "${kv:-0}" -gt 0 ]; then
        if [ "$k" = client_err ]; then
          echo "  nutcracker stats: client_err=$kv over $(grep -c ",twemproxy," "$IT_DIR/raw.csv") runs (expected: redis-benchmark opens each run with CONFIG GET, which twemproxy refuses by closing that connection)"
        else
          echo "  nutcracker stats: $k=$kv"
        fi
        odd=1
      fi
    done
  fi
  c=$(grep -c -E '\[.*\] .*(error|fail)' "$IT_DIR/nutcracker.log" 2>/dev/null)
  if [ "${c:-0}" -gt 0 ]; then
    echo "  nutcracker.log: $c error lines, e.g.:"; grep -E '\[.*\] .*(error|fail)' "$IT_DIR/nutcracker.log" | head -3 | sed 's/^/    /'
    odd=1
  fi
  [ $odd -eq 0 ] && echo "  none"
  echo
  echo "results: bench/results/$name.csv"
  echo "wall time: $((SECONDS - started)) s"
}

case "$MODE" in
  migrate) shift; bench_migrate "$@" ;;
  policy) shift; bench_policy "$@" ;;
  quick|full) shift; bench_compare_proxies "$@" ;;
esac
