#!/usr/bin/env bash
# Issue 14, item 3 against kvcs on etcd (store = "etcd"; skipped, status 77,
# without etcd or a kvcs that has that store): one etcd member, two kvcs
# (one leads), two proxies on config_servers = "<A>,<B>".
#   - both proxies get their table; the tool given the follower first is
#     sent to the leader (NOTLEADER <addr>) and moves buckets to a new master;
#   - the kvcs proxy P is on is killed: P moves on to the other and takes its
#     tables; the tool given the dead one first finishes a scale-in there;
#   - no key written before is lost, through either proxy.
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }
command -v etcd >/dev/null || { echo "# etcd is not installed: skipped"; exit 77; }
grep -q '"etcd"' "$IT_ROOT/lua/kvcs/conf.lua" || { echo "# this kvcs has no store = \"etcd\": skipped"; exit 77; }
[ -x "$IT_BIN/migration_tool" ] || { echo "build/migration_tool is missing"; exit 1; }

EC=$(it_free_port); EP=$(it_free_port)
etcd --name e1 --data-dir "$IT_DIR/etcd" --listen-client-urls "http://127.0.0.1:$EC" \
  --advertise-client-urls "http://127.0.0.1:$EC" --listen-peer-urls "http://127.0.0.1:$EP" \
  --initial-advertise-peer-urls "http://127.0.0.1:$EP" --initial-cluster "e1=http://127.0.0.1:$EP" \
  > "$IT_DIR/etcd.log" 2>&1 &
echo $! > "$IT_DIR/etcd.pid"
it_wait 10 curl -sf "http://127.0.0.1:$EC/health" || { echo "etcd did not start"; exit 1; }
M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
for m in $M1 $M2 $M3; do it_redis_start "$m" || exit 1; done
for n in A B; do
  it_kvcs_start $n "" "store = \"etcd\"
etcd_endpoints = \"127.0.0.1:$EC\"
node_name = \"$n\"" || exit 1
done
mig_port() { sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/$1/kvcs.conf"; }
A_MIG=$(mig_port A); B_MIG=$(mig_port B)
leader() { curl -s "http://127.0.0.1:$1/kvstore/cs/leader" | J "j.leader and j.leader.name or ''"; }
has_leader() { test -n "$(leader "$A_HTTP")"; }
it_check "a leader is elected" it_wait 10 has_leader
L=$(leader "$A_HTTP")
if [ "$L" = A ]; then F=B; else F=A; fi
eval "L_HTTP=\$${L}_HTTP L_MIG=\$${L}_MIG F_MIG=\$${F}_MIG"
it_init_table "$L_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || { echo "init_table failed on the leader $L"; exit 1; }

list="127.0.0.1:$A_PROXY,127.0.0.1:$B_PROXY"
it_kvp_start P test 7100 "" "config_servers = \"$list\"" || exit 1
it_kvp_start Q test 7100 "" "config_servers = \"$list\"" || exit 1
it_eq "both proxies on config_servers got the table" "1 1" \
  "$(curl -s "http://127.0.0.1:$P_HTTP/kvstore/proxy/bucket_table" | J j.version) $(curl -s "http://127.0.0.1:$Q_HTTP/kvstore/proxy/bucket_table" | J j.version)"
for i in $(seq 1 300); do echo "SET key$i val$i"; done | redis-cli -p "$P_PORT" >/dev/null
lost() { # keys not read back through the proxy on port $1 (pipelined)
  for i in $(seq 1 300); do echo "GET key$i"; done | redis-cli -p "$1" |
    awk '$0 != "val" NR { n++ } END { print n + 0 }'
}

"$IT_BIN/migration_tool" --cs "127.0.0.1:$F_MIG,127.0.0.1:$L_MIG" --ns test --add "127.0.0.1:$M3" > "$IT_DIR/add.out" 2>&1
it_eq "migration_tool --cs <follower>,<leader> --add" "0" "$?"
it_check "  the follower sent it to the leader" grep -q \
  "config server 127.0.0.1:$F_MIG: not the leader: ERR NOTLEADER 127.0.0.1:$L_MIG; going on with 127.0.0.1:$L_MIG" "$IT_DIR/add.out"
pver() { curl -s "http://127.0.0.1:$1/kvstore/proxy/bucket_table" | J j.version; }
csver() { curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$1/kvstore/cs/bucket_table" | J j.version; }
v=$(csver "$L_HTTP")
both_on() { test "$(pver "$P_HTTP") $(pver "$Q_HTTP")" = "$1 $1"; }
it_check "  both proxies hold the new table v$v" it_wait 5 both_on "$v"
it_eq "  no key lost (through Q)" "0" "$(lost "$Q_PORT")"

# the kvcs P is on dies: P moves on to the other
on=$(grep "registered with config server" "$IT_DIR/P/kvp.log" | tail -1 | sed 's/.*server 127.0.0.1:\([0-9]*\) .*/\1/')
if [ "$on" = "$A_PROXY" ]; then V=A O=B; else V=B O=A; fi
eval "V_MIG=\$${V}_MIG O_MIG=\$${O}_MIG O_PROXY=\$${O}_PROXY O_HTTP=\$${O}_HTTP"
it_kill "$V" KILL
it_check "P moves on from the killed kvcs $V to $O" it_wait 10 grep -q "registered with config server 127.0.0.1:$O_PROXY" "$IT_DIR/P/kvp.log"
o_leads() { test "$(leader "$O_HTTP")" = "$O"; }
it_check "$O leads (within the lease)" it_wait 10 o_leads
"$IT_BIN/migration_tool" --cs "127.0.0.1:$V_MIG,127.0.0.1:$O_MIG" --ns test --del "127.0.0.1:$M3" > "$IT_DIR/del.out" 2>&1
it_eq "migration_tool --cs <dead>,<alive> --del" "0" "$?"
v=$(csver "$O_HTTP")
it_check "  both proxies hold $O's new table v$v" it_wait 5 both_on "$v"
it_eq "  M3 owns nothing, nothing migrating" "0 0" \
  "$(curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$O_HTTP/kvstore/cs/bucket_table" | J "#(j.table['127.0.0.1:$M3'] or {}) .. ' ' .. #j.migrating")"
it_eq "  no key lost (through P)" "0" "$(lost "$P_PORT")"
it_eq "  no key lost (through Q)" "0" "$(lost "$Q_PORT")"
it_done
