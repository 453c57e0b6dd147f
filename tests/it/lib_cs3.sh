# tests/it/lib_cs3.sh -- sourced after lib.sh by the tests of kvcs on etcd
# (issue 14) that need three real etcd members and three kvcs A, B, C with
# store = "etcd": skips (status 77) without etcd or such a kvcs.
#
#   cs3_start [extra kvcs conf lines]   etcd x3, kvcs A B C, waits for a leader
#   http_of X, proxy_of X, mig_of X     the ports of kvcs X
#   name_of X                           its node name (127.0.0.1:<http>)
#   who_leads [SKIP...]                 the letter of the kvcs every live one
#                                       names as leader (asked of those not
#                                       in SKIP), or "none"
#   is_leader X                         X says is_leader = true
#   wait_new_leader SECS SKIP...        polls every 20 ms until one not in
#                                       SKIP says is_leader; echoes it or none
#   cs3_list proxy|mig [SKIP...]        "127.0.0.1:p,127.0.0.1:p,..." of A B C
#   cs_metric X NAME                    a /metrics value of kvcs X
#   now_ms                              wall clock in ms
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }
now_ms() { date +%s%3N; }
command -v etcd >/dev/null || { echo "# etcd is not installed: skipped"; exit 77; }
grep -q '"etcd"' "$IT_ROOT/lua/kvcs/conf.lua" || { echo "# this kvcs has no store = \"etcd\": skipped"; exit 77; }

http_of() { eval "echo \$${1}_HTTP"; }
proxy_of() { eval "echo \$${1}_PROXY"; }
mig_of() { sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/$1/kvcs.conf"; }
name_of() { echo "127.0.0.1:$(http_of "$1")"; }
is_leader() { [ "$(curl -s -m 1 "http://127.0.0.1:$(http_of "$1")/kvstore/cs/leader" | J 'tostring(j.is_leader)' 2>/dev/null)" = true ]; }
in_list() { local x=$1 y; shift; for y in "$@"; do [ "$x" = "$y" ] && return 0; done; return 1; }

who_leads() {
  local n m l
  for n in A B C; do
    in_list $n "$@" && continue
    l=$(curl -s -m 1 "http://127.0.0.1:$(http_of $n)/kvstore/cs/leader" | J 'j.leader ~= null and j.leader.name or "none"' 2>/dev/null)
    [ -n "$l" ] && [ "$l" != none ] || continue
    for m in A B C; do [ "$(name_of $m)" = "$l" ] && { echo $m; return; }; done
  done
  echo none
}

wait_new_leader() {
  local secs=$1 t0 n; shift
  t0=$(now_ms)
  while [ $(( $(now_ms) - t0 )) -lt $((secs * 1000)) ]; do
    for n in A B C; do
      in_list $n "$@" && continue
      is_leader $n && { echo $n; return; }
    done
    sleep 0.02
  done
  echo none
}

cs3_list() {
  local what=$1 n out=""; shift
  for n in A B C; do
    in_list $n "$@" && continue
    if [ "$what" = mig ]; then out="$out${out:+,}127.0.0.1:$(mig_of $n)"
    else out="$out${out:+,}127.0.0.1:$(proxy_of $n)"; fi
  done
  echo "$out"
}

cs_metric() { curl -s -m 2 "http://127.0.0.1:$(http_of "$1")/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }

cs3_start() {
  it_etcd_start 3 || exit 1
  local n
  for n in A B C; do
    it_kvcs_start "$n" "" "store = \"etcd\"
etcd_endpoints = \"$ETCD_ENDPOINTS\"
${1:-}" || exit 1
  done
  [ "$(wait_new_leader 10)" != none ] || { echo "no kvcs leads"; exit 1; }
}
