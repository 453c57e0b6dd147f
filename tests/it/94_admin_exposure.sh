#!/usr/bin/env bash
# Safe defaults (issue 11, item 2): a changing HTTP request with no
# admin_token is accepted from loopback peers only; with a token, from any
# peer presenting it. Reads stay open.
#
# The "remote" peer is a network namespace joined to the host by a veth pair
# (as in 92_partition.sh); kvcs and kvp bind 0.0.0.0 here so that the same
# port is reachable from loopback and from the namespace.
#
#   1. kvcs, no token: init_table from the namespace -> 1011, nothing made;
#      namespace_list from the namespace -> 1001; init_table from loopback -> 1001.
#   2. kvp, no token: reset_stats / set_config / add_pattern from the
#      namespace -> 1011 (config unchanged); from loopback -> 1001.
#   3. kvcs and kvp with admin_token: from the namespace with the token ->
#      1001, without it or with a wrong one -> 1011.
#
# Needs root and `ip netns`; otherwise exits 77 (skipped). The predicate
# itself is also covered by tests/lua/httpd_spec.lua.
source "$(dirname "$0")/lib.sh"

skip() { echo "skipped: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "network namespaces need root"
command -v ip >/dev/null || skip "ip is not installed"

ID=$(( $$ % 100000 ))
NS=kvexpo$ID
NET=""
for o in $(seq $(( 100 + $$ % 100 )) 254) $(seq 100 254); do
    ip -4 route | grep -q "^10\.$o\." || { NET=10.$o; break; }
done
[ -n "$NET" ] || skip "no free 10.x.0.0/16 subnet for the test network"
HOST=$NET.1.1 PEER=$NET.1.2
net_cleanup() { ip netns del "$NS" 2>/dev/null; ip link del "kvE$ID" 2>/dev/null; }
trap 'it_cleanup; net_cleanup' EXIT
{ ip netns add "$NS" &&
    ip link add "kvE$ID" type veth peer name "kvE${ID}p" netns "$NS" &&
    ip addr add "$HOST/24" dev "kvE$ID" && ip link set "kvE$ID" up &&
    ip -n "$NS" link set lo up &&
    ip -n "$NS" addr add "$PEER/24" dev "kvE${ID}p" && ip -n "$NS" link set "kvE${ID}p" up; } \
    2>"$IT_DIR/net.err" || skip "cannot create a network namespace here ($(head -c 200 "$IT_DIR/net.err"))"

# remote PORT PATH [BODY] [TOKEN] / local ...: the reply's code
call() {
    local pre=$1 host=$2 port=$3 path=$4 body=${5:-} tok=${6:-} auth=()
    [ -n "$tok" ] && auth=(-H "Authorization: Bearer $tok")
    $pre curl -s -m 5 "${auth[@]}" ${body:+-d "$body"} "http://$host:$port$path" |
        sed -n 's/.*"code":\([0-9]*\).*/\1/p'
}
remote() { call "ip netns exec $NS" "$HOST" "$@"; }
local_() { call "" 127.0.0.1 "$@"; }

M1=$(it_free_port); M2=$(it_free_port)
it_redis_start "$M1" || exit 1
it_redis_start "$M2" || exit 1

# cs_start NAME TOKEN: a kvcs whose HTTP port binds 0.0.0.0
cs_start() {
    local dir=$IT_DIR/$1 http
    http=$(it_free_port)
    mkdir -p "$dir"
    cat > "$dir/kvcs.conf" <<EOC
http_listen = "0.0.0.0:$http"
proxy_listen = "127.0.0.1:$(it_free_port)"
migration_listen = "127.0.0.1:$(it_free_port)"
cs_listen = "127.0.0.1:$(it_free_port)"
table_dir = "table"
redis_password = "$IT_PW"
admin_token = "$2"
log_file = "kvcs.log"
EOC
    eval "$1_HTTP=$http $1_PROXY=$(sed -n 's/^proxy_listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$dir/kvcs.conf")"
    "$IT_BIN/kvcs" -c "$dir/kvcs.conf" -d || { echo "kvcs $1 did not start"; return 1; }
    it_wait 10 curl -sf "http://127.0.0.1:$http/kvstore/cs/namespace_list" ||
        { echo "kvcs $1 does not answer HTTP"; cat "$dir/kvcs.log"; return 1; }
}
cs_start CS "" || exit 1

# kvp_start NAME NS CS_PROXY HTTP TOKEN: a kvp whose HTTP port binds 0.0.0.0
kvp_start() {
    mkdir -p "$IT_DIR/$1"
    cat > "$IT_DIR/$1/kvp.conf" <<EOC
namespace = "$2"
listen = "127.0.0.1:$(it_free_port)"
http_listen = "0.0.0.0:$4"
config_server_master = "127.0.0.1:$3"
redis_password = "$IT_PW"
admin_token = "$5"
log_file = "kvp.log"
EOC
    it_kvp_start "$1" "$2" "$3"
}

echo "== 1. kvcs without admin_token"
INIT='{"namespace":"test","bucket_count":256,"address_list":["127.0.0.1:'$M1'"]}'
it_eq "init_table from a non-loopback peer refused" 1011 "$(remote "$CS_HTTP" /kvstore/cs/init_table "$INIT")"
it_eq "namespace_list (a read) from a non-loopback peer answered" 1001 "$(remote "$CS_HTTP" /kvstore/cs/namespace_list)"
it_check "the refused init_table made nothing" test ! -e "$IT_DIR/CS/table/test"
it_eq "init_table from loopback accepted" 1001 "$(local_ "$CS_HTTP" /kvstore/cs/init_table "$INIT")"
it_eq "set_config from a non-loopback peer refused" 1011 \
    "$(remote "$CS_HTTP" /kvstore/cs/set_config '{"support_ha":false}')"
it_check "support_ha unchanged" sh -c "! grep -q 'support_ha = false' '$IT_DIR/CS/kvcs.conf'"

echo "== 2. kvp without admin_token"
PHTTP=$(it_free_port)
kvp_start P test "$CS_PROXY" "$PHTTP" "" || exit 1
for req in "/kvstore/proxy/reset_stats|" '/kvstore/proxy/set_config|{"max_qps":7}' \
           '/kvstore/proxy/add_pattern|{"pattern":"aa*"}'; do
    it_eq "${req%%|*} from a non-loopback peer refused" 1011 "$(remote "$PHTTP" "${req%%|*}" "${req#*|}")"
done
it_check "max_qps unchanged in kvp.conf" sh -c "! grep -q 'max_qps = 7' '$IT_DIR/P/kvp.conf'"
it_eq "stats_info (a read) from a non-loopback peer answered" 1001 "$(remote "$PHTTP" /kvstore/proxy/stats_info)"
it_eq "set_config from loopback accepted" 1001 "$(local_ "$PHTTP" /kvstore/proxy/set_config '{"max_qps":0}')"

echo "== 3. with admin_token"
cs_start CT "tok3n" || exit 1
INIT2='{"namespace":"t2","bucket_count":256,"address_list":["127.0.0.1:'$M2'"]}'
it_eq "kvcs: init_table from a non-loopback peer without the token refused" 1011 \
    "$(remote "$CT_HTTP" /kvstore/cs/init_table "$INIT2")"
it_eq "kvcs: with a wrong token refused" 1011 "$(remote "$CT_HTTP" /kvstore/cs/init_table "$INIT2" wrong)"
it_eq "kvcs: from loopback without the token refused" 1011 "$(local_ "$CT_HTTP" /kvstore/cs/init_table "$INIT2")"
it_eq "kvcs: from a non-loopback peer with the token accepted" 1001 \
    "$(remote "$CT_HTTP" /kvstore/cs/init_table "$INIT2" tok3n)"
QHTTP=$(it_free_port)
kvp_start Q t2 "$CT_PROXY" "$QHTTP" tok3n || exit 1
it_eq "kvp: reset_stats from a non-loopback peer without the token refused" 1011 \
    "$(remote "$QHTTP" /kvstore/proxy/reset_stats)"
it_eq "kvp: reset_stats from a non-loopback peer with the token accepted" 1001 \
    "$(remote "$QHTTP" /kvstore/proxy/reset_stats "" tok3n)"

it_done
