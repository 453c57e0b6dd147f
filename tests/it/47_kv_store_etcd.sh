#!/usr/bin/env bash
# Issue 14 item 5: the local cluster on etcd. `KV_STORE=etcd kv_store.sh
# start` in a fresh KV_HOME runs three etcd members, three kvcs (one leads,
# all name it) and the proxy (config_servers = the three kvcs); SET/GET
# through the proxy; kill -9 of the leading kvcs: another leads, the proxy
# still serves and follows a table change of the new leader; status and stop
# without KV_STORE follow the home's .kv_store; stop leaves no process and no
# etcd data; KV_STORE=file on that home is refused; a second start without
# KV_STORE is on etcd again.
#
# kv_store.sh uses fixed ports (6371-6376, 2379-2384, 7000-7002, 7100-7102,
# 7200-7202, 7400, 7500), which a local cluster or another test may hold: the
# test runs in a network namespace of its own (unshare -n; -rn when not root),
# whose loopback has every port free. Without one it uses the host's loopback
# when all those ports are free, else it is skipped (exit 77).
if [ -z "${KV_IT_NETNS:-}" ]; then
  for opt in -n -rn; do
    unshare "$opt" true 2>/dev/null && exec unshare "$opt" env KV_IT_NETNS=1 bash "$0" "$@"
  done
  KV_IT_NETNS=host
fi
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }
now_ms() { date +%s%3N; }
show() { sed "s/^/#   /" <<<"$1"; }   # a command's output, indented as a note
command -v etcd >/dev/null || { echo "# etcd is not installed: skipped"; exit 77; }
PORTS="6371 6372 6373 6374 6375 6376 2379 2380 2381 2382 2383 2384 7000 7001 7002 7100 7101 7102 7200 7201 7202 7400 7500"
if [ "$KV_IT_NETNS" = 1 ]; then
  ip link set lo up || { echo "cannot bring up lo in the test's network namespace"; exit 1; }
  echo "# in a network namespace of its own"
else
  for p in $PORTS; do
    [ -n "$(ss -Hltn "( sport = :$p )")" ] &&
      { echo "# no network namespace, and port $p is in use: skipped"; exit 77; }
  done
fi

KS=$IT_ROOT/scripts/kv_store.sh
export KV_HOME=$IT_DIR KV_BUILD=$IT_BIN
unset KV_STORE KV_PROXIES KV_CLUSTER_TYPE
H=$IT_DIR
CS_HTTP=(7000 7001 7002)

# the pids of every pid file of the home (to check stop ends them all)
home_pids() { cat "$H"/*/*.pid 2>/dev/null; }
alive() { local p n=0; for p in "$@"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done; echo $n; }
running() { # PIDFILE PATTERN...: how many are alive and match
  local n=0
  while [ $# -gt 0 ]; do kv_pid_of "$1" "$2" >/dev/null && n=$((n + 1)); shift 2; done
  echo $n
}
leader_name() { curl -s -m 3 "http://127.0.0.1:$1/kvstore/cs/leader" | J 'j.leader ~= null and j.leader.name or "none"' 2>/dev/null; }
is_leader() { curl -s -m 3 "http://127.0.0.1:$1/kvstore/cs/leader" | J 'tostring(j.is_leader)' 2>/dev/null; }

# ------------------------------------------------ start
t0=$(now_ms)
out=$(KV_STORE=etcd "$KS" start 2>&1)
rc=$?
show "$out"
it_eq "KV_STORE=etcd kv_store.sh start succeeds ($(( $(now_ms) - t0 )) ms)" 0 "$rc"
[ "$rc" -eq 0 ] || { tail -n 20 "$H"/*/kvcs.log "$H"/etcd1/etcd.log 2>/dev/null; it_done; exit 1; }
it_eq "the home remembers the store" etcd "$(cat "$H/.kv_store")"
ETCD_PAT='(^|/)etcd([[:space:]]|$)'
it_eq "three etcd members run" 3 "$(running "$H/etcd1/etcd.pid" "$ETCD_PAT" "$H/etcd2/etcd.pid" "$ETCD_PAT" "$H/etcd3/etcd.pid" "$ETCD_PAT")"
healthy() { ETCDCTL_API=3 etcdctl --dial-timeout=1s --command-timeout=2s \
  --endpoints=127.0.0.1:2379,127.0.0.1:2381,127.0.0.1:2383 endpoint health >/dev/null 2>&1; }
it_check "... and make one healthy cluster" healthy
it_eq "three kvcs run" 3 "$(running "$H/cs1/kvcs.pid" kvcs "$H/cs2/kvcs.pid" kvcs "$H/cs3/kvcs.pid" kvcs)"
it_eq "... each on etcd" "etcd etcd etcd" "$(for n in 1 2 3; do kv_conf_get "$H/cs$n/kvcs.conf" store; done | paste -sd' ')"
it_eq "... with no cs_listen" "" "$(grep -h '^cs_listen' "$H"/cs*/kvcs.conf)"
it_eq "the proxy runs" 1 "$(running "$H/proxy/kvp.pid" kvp)"
it_eq "its config_servers are the three kvcs, the slave is blank" \
  "127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102 " \
  "$(kv_conf_get "$H/proxy/kvp.conf" config_servers) $(kv_conf_get "$H/proxy/kvp.conf" config_server_slave)"

L=$(leader_name 7000)
it_check "one kvcs leads ($L)" test "$L" = cs1 -o "$L" = cs2 -o "$L" = cs3
it_eq "all three name it" "$L $L $L" "$(leader_name 7000) $(leader_name 7001) $(leader_name 7002)"
it_eq "exactly one says it leads" 1 "$(for p in "${CS_HTTP[@]}"; do is_leader "$p"; done | grep -c true)"

st=$("$KS" status 2>&1)
rc=$?
show "$st"
it_eq "status (no KV_STORE) is all running" 0 "$rc"
it_eq "... lists etcd1-3 and cs1-3" 6 "$(echo "$st" | grep -Ec '^(etcd[123]|cs[123]) .* running$')"
it_eq "... one etcd leader, one kvcs leader, two kvcs followers" "1 1 2" \
  "$(echo "$st" | grep -c ' etcd-leader ') $(echo "$st" | grep -c ' kvcs-leader ') $(echo "$st" | grep -c ' kvcs-follower ')"
it_check "... names the leader" grep -q "^leader: $L " <<<"$st"

# ------------------------------------------------ data through the proxy
cli() { timeout 10 redis-cli -p 7400 "$@"; }
for i in $(seq 1 200); do echo "SET k$i v$i"; done | cli >/dev/null
it_eq "SET/GET through the proxy" v77 "$(cli get k77)"
it_check "the keys are on the masters" test "$(( $(redis-cli -p 6371 -a kvstore123 --no-auth-warning dbsize) + $(redis-cli -p 6373 -a kvstore123 --no-auth-warning dbsize) ))" -ge 200

# ------------------------------------------------ kill -9 the leading kvcs
LPID=$(cat "$H/$L/kvcs.pid")
t0=$(now_ms)
kill -9 "$LPID"
new=none
while [ $(( $(now_ms) - t0 )) -lt 15000 ]; do
  for n in 1 2 3; do
    [ "cs$n" = "$L" ] && continue
    [ "$(is_leader "${CS_HTTP[n - 1]}")" = true ] && new=cs$n
  done
  [ "$new" != none ] && break
  sleep 0.1
done
it_check "after kill -9 of $L another leads: $new ($(( $(now_ms) - t0 )) ms; lease_ttl 3 s)" test "$new" != none
miss=0
for i in $(seq 1 200); do echo "GET k$i"; done | cli > "$IT_DIR/gets.out"
for i in $(seq 1 200); do sed -n "${i}p" "$IT_DIR/gets.out" | grep -qx "v$i" || miss=$((miss + 1)); done
it_eq "the proxy still serves every key" 0 "$miss"
it_eq "... and takes writes" "OK kill" "$(cli set after kill) $(cli get after)"
# a table change of the new leader reaches the proxy (it is on a live kvcs)
NEWHTTP=${CS_HTTP[${new#cs} - 1]}
out=$(curl -s -d '{"namespace":"test","source":"return { deny = { \"flushall\" } }"}' \
  "http://127.0.0.1:$NEWHTTP/kvstore/cs/set_policy")
it_eq "the new leader accepts a table change" 1001 "$(echo "$out" | J j.code)"
V=$(curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$NEWHTTP/kvstore/cs/bucket_table" | J j.version)
it_wait 15 sh -c "[ \"\$(curl -s http://127.0.0.1:7500/kvstore/proxy/bucket_table | luajit $IT_ROOT/scripts/lib/json.lua j.version)\" = $V ]"
it_eq "... and reaches the proxy (table version)" "$V" \
  "$(curl -s http://127.0.0.1:7500/kvstore/proxy/bucket_table | J j.version)"

st=$("$KS" status 2>&1)
rc=$?
show "$st"
it_eq "status after the kill says so (status 1)" 1 "$rc"
it_check "... $L stopped" grep -Eq "^$L .* stopped" <<<"$st"
it_check "... $new leads" grep -q "^leader: $new " <<<"$st"

# ------------------------------------------------ stop
PIDS=$(home_pids)
it_eq "the home has 13 pid files (6 redis, 3 etcd, 3 kvcs, 1 kvp)" 13 "$(echo "$PIDS" | wc -w)"
out=$("$KS" stop 2>&1)
rc=$?
show "$out"
it_eq "stop (no KV_STORE) succeeds" 0 "$rc"
# shellcheck disable=SC2086 # one pid a word
it_eq "stop leaves no process" 0 "$(alive $PIDS)"
it_eq "... none runs from the home" "" "$(pgrep -f "$H/" | tr '\n' ' ')"
it_eq "... the etcd data is gone, the configs stay" "0 3 3" \
  "$(find "$H"/etcd[123] -name data | wc -l) $(ls "$H"/etcd[123]/etcd.conf.yml | wc -l) $(ls "$H"/cs[123]/kvcs.conf | wc -l)"

out=$(KV_STORE="file" "$KS" start 2>&1)
rc=$?
it_check "KV_STORE=file on this home is refused: $out" test "$rc" -ne 0 -a -z "$(pgrep -f "$H/")"

# ------------------------------------------------ start again without KV_STORE
out=$("$KS" start 2>&1)
rc=$?
show "$out"
it_eq "a second start without KV_STORE succeeds" 0 "$rc"
it_eq "... on etcd again" 3 "$(running "$H/etcd1/etcd.pid" "$ETCD_PAT" "$H/etcd2/etcd.pid" "$ETCD_PAT" "$H/etcd3/etcd.pid" "$ETCD_PAT")"
it_eq "... a fresh cluster (stop removed the keys)" "" "$(cli get k77)"
PIDS=$(home_pids)
"$KS" stop >/dev/null 2>&1
# shellcheck disable=SC2086
it_eq "stop again leaves no process" 0 "$(alive $PIDS)"
it_done
