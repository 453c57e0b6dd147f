#!/usr/bin/env bash
# Network partitions (TEST_GUIDE "Network partitions", SPEC §6, DESIGN §6).
#
# Each proxy runs in its own network namespace, joined to the host by a veth
# pair; the masters, their replicas and the config server stay on the host.
# `iptables -j DROP` inside a proxy's namespace cuts that proxy -> one master
# silently (no RST, no ICMP), while its link to the config server and the
# other master stays up.
#
#   1. proxy1 cut from M1 until it reports M1 down; proxy1 killed; healed;
#      proxy1 started again and cut again until it reports down: the table
#      must not change (the dead session's vote does not count).
#   2. proxy1 cut until it reports down, healed (UP withdraws its vote);
#      proxy2 cut until it reports down: the table must not change.
#   3. proxy1 cut silently for a while (20 s with redis_down_timeout 2 here;
#      16 minutes with the default redis_down_timeout under KV_LONG=1) while a
#      client sends through it: requests for M1 fail fast instead of hanging,
#      M2 keeps answering, the log shows the connection broken and
#      reconnecting, and within seconds of healing requests for M1 answer
#      at normal latency again. The table does not change (proxy2 sees M1).
#   Control: both proxies cut from M1: the table changes (M1's replica takes
#      its place), which shows the checks above could fail.
#
# Needs root, `ip netns` and iptables; when a namespace cannot be created
# the test says so and exits 77 (skipped, never passed).
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }

skip() { echo "skipped: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "network namespaces need root"
command -v ip >/dev/null && command -v iptables >/dev/null || skip "ip or iptables is not installed"

# ------------------------------------------------------------------ network
ID=$(( $$ % 100000 ))
NSA=kvpartA$ID NSB=kvpartB$ID
NET=""
for o in $(seq $(( 100 + $$ % 100 )) 254) $(seq 100 254); do
    ip -4 route | grep -q "^10\.$o\." || { NET=10.$o; break; }
done
[ -n "$NET" ] || skip "no free 10.x.0.0/16 subnet for the test network"
HOST=$NET.1.1          # the host's address every server listens on
P1_IP=$NET.1.2 P2_IP=$NET.2.2

net_cleanup() {
    ip netns del "$NSA" 2>/dev/null
    ip netns del "$NSB" 2>/dev/null
    ip link del "kvA$ID" 2>/dev/null
    ip link del "kvB$ID" 2>/dev/null
}
trap 'it_cleanup; net_cleanup' EXIT

# net_ns NS HOSTIF HOSTIP NSIP: a namespace reachable through a veth pair
net_ns() {
    local ns=$1 hif=$2 hip=$3 nip=$4
    ip netns add "$ns" &&
        ip link add "$hif" type veth peer name "${hif}p" netns "$ns" &&
        ip addr add "$hip/24" dev "$hif" && ip link set "$hif" up &&
        ip -n "$ns" link set lo up &&
        ip -n "$ns" addr add "$nip/24" dev "${hif}p" && ip -n "$ns" link set "${hif}p" up &&
        ip -n "$ns" route add default via "$hip"
}
net_ns "$NSA" "kvA$ID" "$HOST" "$P1_IP" 2>"$IT_DIR/net.err" &&
    net_ns "$NSB" "kvB$ID" "$NET.2.1" "$P2_IP" 2>>"$IT_DIR/net.err" ||
    skip "cannot create network namespaces here ($(head -c 200 "$IT_DIR/net.err"))"
ip netns exec "$NSA" iptables -S >/dev/null 2>&1 || skip "iptables does not work in a network namespace here"

# cut NS PORT / heal NS PORT: drop (silently) the namespace's packets to HOST:PORT
cut() { ip netns exec "$1" iptables -A OUTPUT -p tcp -d "$HOST" --dport "$2" -j DROP; }
heal() { ip netns exec "$1" iptables -D OUTPUT -p tcp -d "$HOST" --dport "$2" -j DROP; }

# ------------------------------------------------------------------ cluster
M1=$(it_free_port); R1=$(it_free_port); M2=$(it_free_port); R2=$(it_free_port)
for p in $M1 $M2; do it_redis_start "$p" --bind 127.0.0.1 "$HOST" || exit 1; done
it_redis_start "$R1" --bind 127.0.0.1 "$HOST" --replicaof "$HOST" "$M1" || exit 1
it_redis_start "$R2" --bind 127.0.0.1 "$HOST" --replicaof "$HOST" "$M2" || exit 1

mkdir -p "$IT_DIR/cs1"
CS_PROXY=$(it_free_port)
cat > "$IT_DIR/cs1/kvcs.conf" <<EOC
http_listen = "127.0.0.1:$(it_free_port)"
proxy_listen = "$HOST:$CS_PROXY"
migration_listen = "127.0.0.1:$(it_free_port)"
cs_listen = "127.0.0.1:$(it_free_port)"
master_cs = ""
table_dir = "table"
redis_password = "$IT_PW"
cluster_secret = "$IT_SECRET"
update_slave_interval = 2
log_file = "kvcs.log"
log_level = "debug"
EOC
it_kvcs_start cs1 || exit 1
it_init_table "$cs1_HTTP" test 1023 "$HOST:$M1" "$HOST:$M2" || exit 1

if [ -n "${KV_LONG:-}" ]; then DOWN_TIMEOUT=10 CUT3=$((16 * 60)); else DOWN_TIMEOUT=2 CUT3=20; fi

# kvp_start NAME NS IP: a proxy inside namespace NS, listening on IP
kvp_start() {
    local name=$1 ns=$2 ip=$3 dir=$IT_DIR/$1 port
    mkdir -p "$dir"
    if [ ! -f "$dir/kvp.conf" ]; then
        cat > "$dir/kvp.conf" <<EOC
namespace = "test"
listen = "$ip:$(it_free_port)"
http_listen = "$ip:$(it_free_port)"
protected_mode = false  -- its clients (this script) come from the host, not loopback
config_server_master = "$HOST:$CS_PROXY"
redis_password = "$IT_PW"
cluster_secret = "$IT_SECRET"
request_timeout = 1000
redis_down_timeout = $DOWN_TIMEOUT
log_file = "kvp.log"
log_level = "debug"
EOC
    fi
    port=$(sed -n 's/^listen = ".*:\([0-9]*\)"/\1/p' "$dir/kvp.conf")
    eval "${name}_PORT=$port"
    ip netns exec "$ns" "$IT_BIN/kvp" -c "$dir/kvp.conf" -d || { echo "kvp $name did not start"; return 1; }
    it_wait 10 sh -c "redis-cli -h $ip -p $port exists it_probe | grep -qx '[0-9]*'" ||
        { echo "kvp $name does not serve"; cat "$dir/kvp.log"; return 1; }
}
kvp_start P1 "$NSA" "$P1_IP" || exit 1
kvp_start P2 "$NSB" "$P2_IP" || exit 1

CSLOG=$IT_DIR/cs1/kvcs.log
metric() { curl -s "http://127.0.0.1:$cs1_HTTP/metrics" | grep -F "$1{master=\"$HOST:$M1\",namespace=\"test\"}" | awk '{print $2}'; }
table_of() { J "$1" < "$IT_DIR/cs1/table/test"; }
m1_buckets() { table_of "j.version .. ' ' .. #(j.table['$HOST:$M1'] or {})"; }
# reports KIND PROXY_IP: how many times the config server heard that proxy say M1 is KIND
reports_pattern() {
    if [ "$1" = down ]; then echo "HA: proxy $2:[0-9]* reports $HOST:$M1 of test down"
    else echo "HA: proxy $2:[0-9]* reports $HOST:$M1 of test up again"; fi
}
reports() { grep -c "$(reports_pattern "$1" "$2")" "$CSLOG"; }
# until_reported KIND PROXY_IP BEFORE: wait until the count grows past BEFORE
until_reported() { it_wait 30 sh -c "[ \$(grep -c '$(reports_pattern "$1" "$2")' '$CSLOG') -gt $3 ]"; }

it_check "the config server learned M1's replica" it_wait 15 sh -c \
    "curl -s http://127.0.0.1:$cs1_HTTP/metrics | grep -q 'kvcs_ha_replicas_known{master=\"$HOST:$M1\",namespace=\"test\"} 1'"
# "hello" is bucket 804 (M1), "foo" bucket 705 (M2)
redis-cli -h "$P1_IP" -p "$P1_PORT" set hello before >/dev/null
redis-cli -h "$P1_IP" -p "$P1_PORT" set foo kept >/dev/null
it_eq "the table at the start: version 1, M1 owns 512 buckets" "1 512" "$(m1_buckets)"

# ------------------------------------------------------------------ scenario 1
echo "# scenario 1: a dead proxy's vote does not count"
n=$(reports down "$P1_IP")
cut "$NSA" "$M1"
it_check "1. proxy1, cut from M1, reports it down" until_reported down "$P1_IP" "$n"
it_check "1. proxy1's log says why" grep -q "master $HOST:$M1 is down: no valid reply for $DOWN_TIMEOUT s" "$IT_DIR/P1/kvp.log"
it_kill P1 KILL
it_check "1. the config server drops the killed proxy's vote" it_wait 10 grep -q \
    "HA: proxy $P1_IP:$P1_PORT disconnected: its down vote for $HOST:$M1 is dropped" "$CSLOG"
heal "$NSA" "$M1"
kvp_start P1 "$NSA" "$P1_IP" || exit 1
n=$(reports down "$P1_IP")
cut "$NSA" "$M1"
it_check "1. proxy1, started again and cut again, reports it down" until_reported down "$P1_IP" "$n"
it_check "1. the config server counts one vote of two and waits" it_wait 10 sh -c \
    "tail -n 20 '$CSLOG' | grep -q '$HOST:$M1: 1 of 2 connected proxies report it down: waiting for all'"
sleep $((DOWN_TIMEOUT + 4))    # a repeated DOWN is evaluated again meanwhile
it_eq "1. one down vote" "1" "$(metric kvcs_ha_down_votes)"
it_eq "1. the table has not changed" "1 512" "$(m1_buckets)"
n=$(reports up "$P1_IP")
heal "$NSA" "$M1"
it_check "1. healed: proxy1 reports M1 up" until_reported up "$P1_IP" "$n"

# ------------------------------------------------------------------ scenario 2
echo "# scenario 2: a vote taken back does not count"
n=$(reports down "$P1_IP")
cut "$NSA" "$M1"
it_check "2. proxy1, cut from M1, reports it down" until_reported down "$P1_IP" "$n"
n=$(reports up "$P1_IP")
heal "$NSA" "$M1"
it_check "2. healed: proxy1 reports M1 up, its vote is withdrawn" until_reported up "$P1_IP" "$n"
n=$(reports down "$P2_IP")
cut "$NSB" "$M1"
it_check "2. proxy2, cut from M1, reports it down" until_reported down "$P2_IP" "$n"
it_check "2. the config server counts one vote of two and waits" it_wait 10 sh -c \
    "tail -n 20 '$CSLOG' | grep -q '$HOST:$M1: 1 of 2 connected proxies report it down: waiting for all'"
sleep $((DOWN_TIMEOUT + 4))
it_eq "2. one down vote" "1" "$(metric kvcs_ha_down_votes)"
it_eq "2. the table has not changed" "1 512" "$(m1_buckets)"
n=$(reports up "$P2_IP")
heal "$NSB" "$M1"
it_check "2. healed: proxy2 reports M1 up" until_reported up "$P2_IP" "$n"

# ------------------------------------------------------------------ scenario 3
echo "# scenario 3: a black-holed link for $CUT3 s, then healed"
PROBE="$IT_BIN/kvlua $IT_ROOT/tests/it/probe.lua $P1_IP $P1_PORT"
$PROBE 0.1 3 "SET hello base" > "$IT_DIR/base.out" 2>&1
it_check "3. before the cut every SET through proxy1 answers OK" \
    awk '$3 != "OK" { bad = 1 } END { exit bad || NR < 20 }' "$IT_DIR/base.out"
$PROBE 0.5 0 "SET hello during" > "$IT_DIR/m1.out" 2>&1 &
PM1=$!
$PROBE 0.5 0 "SET foo during" > "$IT_DIR/m2.out" 2>&1 &
PM2=$!
sleep 2
LOGSIZE=$(stat -c %s "$IT_DIR/P1/kvp.log")
cut "$NSA" "$M1"
t_cut=$(date +%s)
sleep "$CUT3"
tail -c +$((LOGSIZE + 1)) "$IT_DIR/P1/kvp.log" > "$IT_DIR/P1-cut.log"
it_check "3. proxy1's log shows the backend connection to M1 broken" \
    grep -Eq "backend $HOST:$M1 (connection reset|down)" "$IT_DIR/P1-cut.log"
it_check "3. proxy1's health check marked M1 down" grep -q "master $HOST:$M1 is down" "$IT_DIR/P1-cut.log"
it_eq "3. the table has not changed (proxy2 still sees M1)" "1 512" "$(m1_buckets)"
heal "$NSA" "$M1"
t_heal=$(date +%s)
sleep 1
it_check "3. within 15 s of healing, SETs for M1 through proxy1 answer OK" it_wait 15 sh -c \
    "tail -n 1 '$IT_DIR/m1.out' | grep -q ' OK\$'"
echo "     (back $(( $(date +%s) - t_heal )) s after healing)"
sleep 1
$PROBE 0.05 2 "SET hello after" > "$IT_DIR/after.out" 2>&1
kill "$PM1" "$PM2" 2>/dev/null
wait "$PM1" "$PM2" 2>/dev/null
it_check "3. after healing every SET answers OK, none near request_timeout (max ms < 500)" \
    awk '$3 != "OK" || $2 >= 500 { bad = 1 } END { exit bad || NR < 20 }' "$IT_DIR/after.out"
echo "     (latency before the cut: max $(awk 'm < $2 + 0 { m = $2 + 0 } END { print m }' "$IT_DIR/base.out") ms;" \
    "after healing: max $(awk 'm < $2 + 0 { m = $2 + 0 } END { print m }' "$IT_DIR/after.out") ms)"
it_check "3. during the cut no request for M1 hung beyond request_timeout + 1 s" \
    awk '$2 > 2000 { bad = 1 } END { exit bad }' "$IT_DIR/m1.out"
echo "     (requests for M1 through proxy1 while cut: $(awk '$3 != "OK"' "$IT_DIR/m1.out" | wc -l) errors," \
    "max $(awk 'm < $2 + 0 { m = $2 + 0 } END { print m }' "$IT_DIR/m1.out") ms)"
it_check "3. during the cut requests for M1 got errors (fail fast)" grep -Eq " -ERR (backend .* unavailable|request timeout)" "$IT_DIR/m1.out"
it_check "3. M2 answered OK through proxy1 all along" \
    awk '$3 != "OK" { bad = 1 } END { exit bad || NR < 10 }' "$IT_DIR/m2.out"
it_check "3. proxy1's log shows M1 up again" grep -Eq "master $HOST:$M1 is up again" "$IT_DIR/P1/kvp.log"
it_check "3. and the backend connection re-established" sh -c \
    "tail -c +$((LOGSIZE + 1)) '$IT_DIR/P1/kvp.log' | grep -Eq 'backend $HOST:$M1 up'"
echo "     (cut for $((t_heal - t_cut)) s, redis_down_timeout $DOWN_TIMEOUT s)"
it_eq "3. the table has not changed" "1 512" "$(m1_buckets)"

# ------------------------------------------------------------------ control
echo "# control: both proxies cut from M1"
cut "$NSA" "$M1"
cut "$NSB" "$M1"
it_check "control: within 30 s the table has M1's replica in its place" it_wait 30 sh -c \
    "luajit $IT_ROOT/scripts/lib/json.lua '#(j.table[\"$HOST:$R1\"] or {}) == 512 and j.table[\"$HOST:$M1\"] == nil' < $IT_DIR/cs1/table/test | grep -qx true"
it_check "control: writes through proxy1 work again" it_wait 10 sh -c \
    "redis-cli -h $P1_IP -p $P1_PORT set hello control | grep -qx OK"
it_eq "control: the write is on the promoted replica" "control" "$(it_redis "$R1" get 804_hello)"
it_eq "control: foo on M2 untouched" "during" "$(redis-cli -h "$P2_IP" -p "$P2_PORT" get foo)"
heal "$NSA" "$M1"
heal "$NSB" "$M1"
it_done
