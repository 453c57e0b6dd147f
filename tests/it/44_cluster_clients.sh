#!/usr/bin/env bash
# Proxies and tools see a cluster of config servers, not a server (issue 14,
# item 3), against today's kvcs (a file store each: a "cluster" here is one
# master at a time on a copy of the same table_dir, or a master/slave pair)
# and stand-ins for followers (tests/it/notleader_cs.lua):
#   - kvp with config_servers = "<dead>,<cs1>,<cs3>" gets its table, and
#     contact with a server that is not the first counts for
#     stale_table_limit (no fence);
#   - cs1 killed, cs3 started on a copy of its tables: the proxy moves on to
#     cs3 and takes its new tables;
#   - migration_tool --cs "<slave>,<master>" (the slave's 1008 sends it on),
#     stopped by --count, three buckets left migrating as by a run killed
#     after its START; the next run, --cs "<dead>,<cs3>", finishes them first;
#   - stand-ins answering NOTLEADER ? and NOTLEADER <cs3> send the tool to cs3;
#   - set_config changes config_servers live (written back, reconnects).
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }
[ -x "$IT_BIN/migration_tool" ] || { echo "build/migration_tool is missing"; exit 1; }
mig_port() { sed -n 's/^migration_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/$1/kvcs.conf"; }
registered_with() { grep -c "registered with config server 127.0.0.1:$2" "$IT_DIR/$1/kvp.log"; }
ptable() { curl -s "http://127.0.0.1:$P_HTTP/kvstore/proxy/bucket_table" | J "$1"; }
# keys key1..key200 read back through P (pipelined: a fenced proxy times
# them out together) that are not val1..val200
lost() {
  for i in $(seq 1 200); do echo "GET key$i"; done | redis-cli -p "$P_PORT" |
    awk '$0 != "val" NR { n++ } END { print n + 0 }'
}
cstable() { curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$1/kvstore/cs/bucket_table" | J "$2"; }

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
for m in $M1 $M2 $M3; do it_redis_start "$m" || exit 1; done
DEAD=$(it_free_port) # nothing listens there
it_kvcs_start cs1 || exit 1
it_kvcs_start cs2 "127.0.0.1:$cs1_SYNC" || exit 1 # a slave, for the tool
it_init_table "$cs1_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
# cs3: its config now (its ports are in the proxy's list), started later
mkdir -p "$IT_DIR/cs3"
cat > "$IT_DIR/cs3/kvcs.conf" <<EOC
http_listen = "127.0.0.1:$(it_free_port)"
proxy_listen = "127.0.0.1:$(it_free_port)"
migration_listen = "127.0.0.1:$(it_free_port)"
cs_listen = "127.0.0.1:$(it_free_port)"
master_cs = ""
table_dir = "table"
redis_password = "$IT_PW"
cluster_secret = "$IT_SECRET"
log_file = "kvcs.log"
log_level = "debug"
EOC
cs3_PROXY=$(sed -n 's/^proxy_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$IT_DIR/cs3/kvcs.conf")

# 1. a proxy on a list whose first address is dead: default master line
# (127.0.0.1:7100, untouched), the list replaces it
it_kvp_start P test 7100 "" "config_servers = \"127.0.0.1:$DEAD, 127.0.0.1:$cs1_PROXY,127.0.0.1:$cs3_PROXY\"
stale_table_limit = 2" || exit 1
it_eq "kvp on config_servers got its table" "1" "$(ptable j.version)"
it_eq "it registered with the one that answers" "1" "$(registered_with P "$cs1_PROXY")"
it_eq "and serves" "OK" "$(redis-cli -p "$P_PORT" set k1 v1)"
sleep 3.5 # > stale_table_limit: cs1 is not the first in the list, and still counts
it_check "contact with any of them counts for stale_table_limit (no fence)" sh -c "! grep -q 'routing stopped' '$IT_DIR/P/kvp.log'"
it_eq "it still routes" "v1" "$(redis-cli -p "$P_PORT" get k1)"

# a namespace no config server of the list knows: the proxy exits once
# every one that answers said so (the dead one cannot)
it_kvp_conf U nosuchns 7100 "" "config_servers = \"127.0.0.1:$DEAD,127.0.0.1:$cs1_PROXY\""
out=$(timeout 20 "$IT_BIN/kvp" -c "$IT_DIR/U/kvp.conf" 2>&1)
it_eq "a namespace unknown to every server that answers: kvp exits" "1" "$?"
it_check "  and says so" sh -c "echo \"\$1\" | grep -q \"config server does not know namespace 'nosuchns'\"" _ "$out"

# kvp -t compares the policy file with the namespace's, asking the list
out=$("$IT_BIN/kvp" -c "$IT_DIR/P/kvp.conf" -t 2>&1)
it_check "kvp -t reaches a config server of the list past the dead one" sh -c \
  "echo \"\$1\" | grep -q \"the policy file is namespace test's policy (none published\"" _ "$out"

# a config that sets config_servers beside a master is refused, naming both
it_kvp_conf BAD test 7300 "" "config_servers = \"127.0.0.1:$cs1_PROXY\""
out=$("$IT_BIN/kvp" -c "$IT_DIR/BAD/kvp.conf" -t 2>&1)
it_check "config_servers beside config_server_master: refused naming both" sh -c \
  "echo \"\$1\" | grep -q 'config_servers and config_server_master are both set in'" _ "$out"

# 2. the tool against a master/slave pair, slave first: TABLE from the
# slave, START refused by it (1008), resent to the master; --count stops
# it half-way (buckets left to move: an interrupted migration)
CS1_MIG=$(mig_port cs1); CS2_MIG=$(mig_port cs2)
for i in $(seq 1 200); do echo "SET key$i val$i"; done | redis-cli -p "$P_PORT" >/dev/null
"$IT_BIN/migration_tool" --cs "127.0.0.1:$CS2_MIG,127.0.0.1:$CS1_MIG" --ns test --add "127.0.0.1:$M3" \
  --count 40 --parallel 20 > "$IT_DIR/add1.out" 2>&1
it_eq "migration_tool --cs <slave>,<master> --count 40" "0" "$?"
it_check "  the slave sent it to the master" grep -q \
  "config server 127.0.0.1:$CS2_MIG: not the leader: ERR 1008 this config server is a slave; going on with 127.0.0.1:$CS1_MIG" \
  "$IT_DIR/add1.out"
it_eq "40 buckets on the new master" "40" "$(cstable "$cs1_HTTP" "#(j.table['127.0.0.1:$M3'] or {})")"
# a run killed after its MIGRATE.START: three buckets left migrating to M3
B3=$(cstable "$cs1_HTTP" "j.table['127.0.0.1:$M1'][1] .. ' ' .. j.table['127.0.0.1:$M1'][2] .. ' ' .. j.table['127.0.0.1:$M2'][1]")
it_eq "three buckets left migrating (a run killed after START)" "OK" "$(it_ctl "$CS1_MIG" MIGRATE.START test "127.0.0.1:$M3" $B3 2>&1)"
it_check "the proxy has the master's table" it_wait 5 sh -c "test \"\$(curl -s http://127.0.0.1:$P_HTTP/kvstore/proxy/bucket_table | luajit $IT_ROOT/scripts/lib/json.lua j.version)\" = \"$(cstable "$cs1_HTTP" j.version)\""

# 3. the config server the proxy is on dies; another (cs3, the same tables)
# comes up: the proxy moves on to it
it_kill cs2 KILL
it_kill cs1 KILL
cp -r "$IT_DIR/cs1/table" "$IT_DIR/cs3/table"
it_kvcs_start cs3 || exit 1
it_check "the proxy moves on to cs3" it_wait 10 sh -c "grep -q 'registered with config server 127.0.0.1:$cs3_PROXY' '$IT_DIR/P/kvp.log'"
it_check "and serves" it_wait 5 sh -c "test \"\$(redis-cli -p $P_PORT get key7)\" = val7"

# 4. the interrupted migration resumes against another config server: a
# dead address first, then cs3
CS3_MIG=$(mig_port cs3)
"$IT_BIN/migration_tool" --cs "127.0.0.1:$DEAD,127.0.0.1:$CS3_MIG" --ns test --add "127.0.0.1:$M3" \
  > "$IT_DIR/add2.out" 2>&1
it_eq "migration_tool --cs <dead>,<cs3> finishes the migration" "0" "$?"
it_check "  it finished the three left migrating first" grep -q "; 3 left migrating by an earlier run are finished first" "$IT_DIR/add2.out"
it_check "  it went on from the dead address" grep -q "config server 127.0.0.1:$DEAD: .*; going on with 127.0.0.1:$CS3_MIG" \
  "$IT_DIR/add2.out"
owners() { cstable "$cs3_HTTP" "#j.table['127.0.0.1:$M1'] .. ' ' .. #j.table['127.0.0.1:$M2'] .. ' ' .. #(j.table['127.0.0.1:$M3'] or {}) .. ' ' .. #j.migrating"; }
it_eq "1023 buckets over three masters, none migrating" "341 341 341 0" "$(owners)"
it_check "the proxy took cs3's new tables" it_wait 5 sh -c "test \"\$(curl -s http://127.0.0.1:$P_HTTP/kvstore/proxy/bucket_table | luajit $IT_ROOT/scripts/lib/json.lua j.version)\" = \"$(cstable "$cs3_HTTP" j.version)\""
it_eq "every key written before is read back through the proxy" "0" "$(lost)"
it_check "the new master holds some of them" test "$(it_redis "$M3" dbsize)" -gt 0

# 5. followers' stand-ins: one knows no leader (NOTLEADER ?), one names cs3
Q=$(it_free_port); F=$(it_free_port)
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/notleader_cs.lua" "$Q" "?" > "$IT_DIR/q.out" 2>&1 &
echo $! > "$IT_DIR/q.pid"
"$IT_BIN/kvlua" "$IT_ROOT/tests/it/notleader_cs.lua" "$F" "127.0.0.1:$CS3_MIG" > "$IT_DIR/f.out" 2>&1 &
echo $! > "$IT_DIR/f.pid"
it_wait 5 kv_wait_port 127.0.0.1 "$Q" 1; it_wait 5 kv_wait_port 127.0.0.1 "$F" 1
"$IT_BIN/migration_tool" --cs "127.0.0.1:$Q,127.0.0.1:$F" --ns test --del "127.0.0.1:$M3" > "$IT_DIR/del.out" 2>&1
it_eq "migration_tool --cs <no leader>,<follower> --del completes" "0" "$?"
it_check "  the stand-in without a leader said NOTLEADER ?" grep -q "TABLE test -> ERR NOTLEADER ?" "$IT_DIR/q.out"
it_check "  the follower served the table and sent MIGRATE.START to the leader" sh -c \
  "grep -q 'TABLE test -> table' '$IT_DIR/f.out' && grep -q 'MIGRATE.START test 127.0.0.1:[0-9]* [0-9]* -> ERR NOTLEADER 127.0.0.1:$CS3_MIG' '$IT_DIR/f.out'"
it_check "  the tool said where it went" grep -q "going on with 127.0.0.1:$CS3_MIG" "$IT_DIR/del.out"
it_eq "  the master is removed" "1023 0 0" "$(cstable "$cs3_HTTP" "#j.table['127.0.0.1:$M1'] + #j.table['127.0.0.1:$M2'] .. ' ' .. #(j.table['127.0.0.1:$M3'] or {}) .. ' ' .. #j.migrating")"
it_eq "  every key is still read back" "0" "$(lost)"

# 6. set_config changes the list live: written back, the proxy reconnects
before=$(registered_with P "$cs3_PROXY")
it_eq "set_config config_servers" "1001" "$(curl -s -d "{\"config_servers\":\"127.0.0.1:$cs3_PROXY,127.0.0.1:$DEAD\"}" \
  "http://127.0.0.1:$P_HTTP/kvstore/proxy/set_config" | J j.code)"
it_check "  written back to kvp.conf" grep -q "^config_servers = \"127.0.0.1:$cs3_PROXY,127.0.0.1:$DEAD\"" "$IT_DIR/P/kvp.conf"
it_check "  the proxy registers again" it_wait 10 sh -c "test \$(grep -c 'registered with config server 127.0.0.1:$cs3_PROXY' '$IT_DIR/P/kvp.log') -gt $before"
it_eq "  a bad list is refused" "1017" "$(curl -s -d '{"config_servers":"127.0.0.1:1,127.0.0.1:1"}' \
  "http://127.0.0.1:$P_HTTP/kvstore/proxy/set_config" | J j.code)"
it_done
