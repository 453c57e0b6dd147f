#!/usr/bin/env bash
# Issue 14: a leader cut off from etcd stops acting before another leads,
# and no write of the deposed leader lands. The leading kvcs runs inside a
# network namespace the test creates (a veth pair to this host, where three
# etcd members listen on the veth's address too); iptables inside the
# namespace then drops its traffic to etcd while it keeps running and
# answering HTTP. Right after the cut it is asked for a change (it may still
# think it leads): that write waits in TCP retransmits and may reach etcd
# once the cut ends, after another leader took over -- the fence (the
# leader key's create revision in every write's compare) refuses it.
# Needs root and `ip netns` (skipped, 77, without).
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }
now_ms() { date +%s%3N; }
NS=kvf$$
[ "$(id -u)" = 0 ] && command -v iptables >/dev/null && ip netns add "$NS" 2>/dev/null ||
  { echo "skipped: needs root, iptables and ip netns"; exit 77; }
X=$(( ($$ % 200) + 20 ))
HOST_IP=10.251.$X.1 NS_IP=10.251.$X.2
cleanup_ns() { ip netns del "$NS" 2>/dev/null; ip link del "vh$$" 2>/dev/null; }
trap 'cleanup_ns; it_cleanup' EXIT
ip link add "vh$$" type veth peer name "vn$$" || exit 1
ip link set "vn$$" netns "$NS"
ip addr add "$HOST_IP/30" dev "vh$$"; ip link set "vh$$" up
ip netns exec "$NS" ip addr add "$NS_IP/30" dev "vn$$"
ip netns exec "$NS" ip link set "vn$$" up
ip netns exec "$NS" ip link set lo up

# three etcd members, reachable on loopback and on the veth
cluster="" eps="" neps=""
for i in 1 2 3; do
  cp[i]=$(it_free_port); pp[i]=$(it_free_port)
  cluster="$cluster${cluster:+,}m$i=http://127.0.0.1:${pp[i]}"
  eps="$eps${eps:+,}127.0.0.1:${cp[i]}"; neps="$neps${neps:+,}$HOST_IP:${cp[i]}"
done
for i in 1 2 3; do
  (etcd --name "m$i" --data-dir "$IT_DIR/e$i" \
    --listen-client-urls "http://127.0.0.1:${cp[i]},http://$HOST_IP:${cp[i]}" \
    --advertise-client-urls "http://127.0.0.1:${cp[i]}" \
    --listen-peer-urls "http://127.0.0.1:${pp[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${pp[i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "kvf-$$" \
    --heartbeat-interval 100 --election-timeout 1000 > "$IT_DIR/etcd$i.log" 2>&1 &
   echo $! > "$IT_DIR/etcd$i.pid")
done
it_wait 20 env ETCDCTL_API=3 etcdctl --endpoints="$eps" --dial-timeout=1s endpoint health >/dev/null || exit 1
# masters reachable from the namespace too
M1=$(it_free_port); M2=$(it_free_port)
it_redis_start "$M1" --bind "127.0.0.1 $HOST_IP" || exit 1
it_redis_start "$M2" --bind "127.0.0.1 $HOST_IP" || exit 1

# X: the kvcs in the namespace, started first so that it leads
mkdir -p "$IT_DIR/X"
XH=$(it_free_port); XP=$(it_free_port); XM=$(it_free_port)
cat > "$IT_DIR/X/kvcs.conf" <<EOC
http_listen = "$NS_IP:$XH"
proxy_listen = "$NS_IP:$XP"
migration_listen = "$NS_IP:$XM"
redis_password = "$IT_PW"
cluster_secret = "$IT_SECRET"
admin_token = "tok"
store = "etcd"
etcd_endpoints = "$neps"
lease_ttl = 2
log_file = "kvcs.log"
log_level = "debug"
EOC
ip netns exec "$NS" "$IT_BIN/kvcs" -c "$IT_DIR/X/kvcs.conf" -d || { echo "kvcs X did not start"; exit 1; }
xget() { curl -s -m 2 "http://$NS_IP:$XH$1"; }
it_wait 10 sh -c "curl -s -m 2 http://$NS_IP:$XH/kvstore/cs/leader | grep -q '\"is_leader\":true'" || { echo "X does not lead"; exit 1; }
EXTRA="store = \"etcd\"
etcd_endpoints = \"$eps\"
lease_ttl = 2
admin_token = \"tok\""
it_kvcs_start A "" "$EXTRA" || exit 1
it_kvcs_start B "" "$EXTRA" || exit 1
it_eq "X, in its network namespace, leads" true "$(xget /kvstore/cs/leader | J 'tostring(j.is_leader)')"
xpost() { curl -s -m 30 -H "Authorization: Bearer tok" -d "$2" "http://$NS_IP:$XH$1"; }
for pair in "test $M1" "other $M2"; do
  set -- $pair
  it_eq "X creates namespace $1" 1001 "$(xpost /kvstore/cs/init_table \
    "{\"namespace\":\"$1\",\"bucket_count\":256,\"address_list\":[\"$HOST_IP:$2\"]}" | J j.code)"
done
policy() { luajit -e "io.write(require('cjson').encode({ namespace = '$1', source = 'return { deny = { \"$2\" } }' }))"; }
it_eq "A names X" "$NS_IP:$XH" "$(curl -s "http://127.0.0.1:$A_HTTP/kvstore/cs/leader" | J 'j.leader.name')"

# ------------------------------------------------ the cut
for i in 1 2 3; do ip netns exec "$NS" iptables -A OUTPUT -p tcp -d "$HOST_IP" --dport "${cp[i]}" -j DROP; done
t0=$(now_ms)
# a change of 'test' that needs no Redis: only etcd, then the fence, can refuse it
xpost /kvstore/cs/set_policy "$(policy test flushall)" > "$IT_DIR/x_write.out" &
CURL=$!
new=none
while [ $(( $(now_ms) - t0 )) -lt 10000 ]; do
  for n in A B; do
    eval "h=\$${n}_HTTP"
    [ "$(curl -s -m 1 "http://127.0.0.1:$h/kvstore/cs/leader" | J 'tostring(j.is_leader)')" = true ] && new=$n
  done
  [ "$new" != none ] && break
  sleep 0.05
done
echo "# cut at 0 ms; another leads ($new) at $(( $(now_ms) - t0 )) ms"
it_check "another kvcs leads after the cut" test "$new" != none
eval "NH=\$${new}_HTTP"
# (of another namespace: 'test' stays at the revision X read, so only the
# fence can refuse X's write)
it_eq "the new leader accepts a change" 1001 \
  "$(curl -s -H "Authorization: Bearer tok" -d "$(policy other flushdb)" "http://127.0.0.1:$NH/kvstore/cs/set_policy" | J j.code)"
stop_ms=$(sed -n 's/^\([0-9-]* [0-9:.]*\) .*stops leading.*/\1/p' "$IT_DIR/X/kvcs.log" | head -1)
lead_ms=$(sed -n 's/^\([0-9-]* [0-9:.]*\) .*leader: .* leads (lease.*/\1/p' "$IT_DIR/$new/kvcs.log" | tail -1)
echo "# X stopped acting at $stop_ms; $new led at $lead_ms"
it_check "X stopped acting before another led" sh -c "[ -n '$stop_ms' ] && [ -n '$lead_ms' ] && [ \"\$(date -d '$stop_ms' +%s%3N)\" -lt \"\$(date -d '$lead_ms' +%s%3N)\" ]"
it_eq "X no longer leads" false "$(curl -s -m 10 "http://$NS_IP:$XH/kvstore/cs/leader" | J 'tostring(j.is_leader)')"
# ------------------------------------------------ the cut ends
ip netns exec "$NS" iptables -F OUTPUT
wait "$CURL"
echo "# X's reply to the change asked during the cut: $(cat "$IT_DIR/x_write.out")"
sleep 3 # retransmitted bytes, if any, reach etcd
it_eq "no write of the deposed leader landed (test has no policy in etcd)" 0 \
  "$(ETCDCTL_API=3 etcdctl --endpoints="$eps" get /kvp/test/table --print-value-only | J 'j.policy and j.policy.version or 0')"
it_eq "... nor on any kvcs" 0 "$(curl -s -d '{"namespace":"test"}' "http://127.0.0.1:$NH/kvstore/cs/bucket_table" | J j.policy_version)"
it_check "X follows again once it sees etcd" it_wait 10 sh -c \
  "curl -s -m 1 http://$NS_IP:$XH/kvstore/cs/leader | grep -q '\"is_leader\":false.*\"leader\":{'"
it_done
