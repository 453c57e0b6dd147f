#!/usr/bin/env bash
# kv_store.sh start|stop|status -- the local cluster of SPEC §3 on loopback.
#
#   $KV_HOME          where it runs (default: run/ at the repo root; when called
#                     as ./kv_store.sh from inside a cluster home, that home)
#   KV_PROXIES=N      run N proxies: proxy (7400/7500), proxy2 (7401/7501), ...
#   KV_CLUSTER_TYPE   "data_store" (default) or "cache": the cluster_type the
#                     config server configs get when they are first written
#   KV_STORE          "file" (default: the layout below) or "etcd" (the layout
#                     after it); the first start writes it to $KV_HOME/.kv_store,
#                     so a later start/stop/status without KV_STORE does the same
#
#   redis1..redis6    6371..6376 (2,4,6 replicas of 1,3,5), password kvstore123
#   cs1               kvcs master: http 7000, proxy 7100, migration 7200, cs 7300
#   cs2               kvcs slave of cs1: 7001, 7101, 7201, 7301
#   proxy             kvp, namespace test: client 7400, http 7500
#
# KV_STORE=etcd: the same Redis servers and proxies, plus
#   etcd1..etcd3      etcd members: client 2379, 2381, 2383; peer 2380, 2382, 2384
#   cs1..cs3          kvcs, store = "etcd", all equal (one leads): http 7000..7002,
#                     proxy 7100..7102, migration 7200..7202 (no cs_listen)
#   proxy             config_servers = the three proxy ports
#
# Config files are written from conf/ only when missing, so edits survive.
# `stop` ends what `start` started (pid files), removes tables, logs, RDB/AOF
# files, etcd data and pid files, and keeps the config files.
set -u

SELF=$(readlink -f "${BASH_SOURCE[0]}")
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "$SELF")/lib/common.sh"

PASSWORD=kvstore123
NAMESPACE_DEFAULT="test"
BUCKET_COUNT=1023
INIT_MASTERS='"127.0.0.1:6371","127.0.0.1:6373"'
SCENARIOS=(scale_test.sh http_test.sh cache_cluster_test.sh key_rewrite_test.sh failover_test.sh)

# name port master_port(- for a master)
REDIS_LIST=(
    "redis1 6371 -" "redis2 6372 6371"
    "redis3 6373 -" "redis4 6374 6373"
    "redis5 6375 -" "redis6 6376 6375"
)

kv_home_init() {
    if [ -z "${KV_HOME:-}" ]; then
        local d
        d=$(dirname "$0")
        if [ -f "$d/.kv_home" ]; then KV_HOME=$d; else KV_HOME=$KV_ROOT/run; fi
    fi
    [ -d "$KV_HOME" ] && KV_HOME=$(cd "$KV_HOME" && pwd)
    H=$KV_HOME
}

# The store of the cluster under $H. A home that has one says so in .kv_store
# (written by the first KV_STORE=etcd start); one with config servers but no
# .kv_store was made before there was a choice: file. KV_STORE names what a
# fresh home gets; naming the other store for an existing home is refused on
# start (its configs are of the other kind), and stop/status follow the home.
ETCD_PAT='(^|/)etcd([[:space:]]|$)'
STORE="file"
store_init() { # COMMAND
    local saved="" want=${KV_STORE:-}
    if [ -f "$H/.kv_store" ]; then
        read -r saved <"$H/.kv_store"
    elif [ -f "$H/cs1/kvcs.conf" ]; then
        saved="file"
    fi
    case "$want" in "" | file | etcd) ;; *) kv_die "KV_STORE must be file or etcd (is '$want')" ;; esac
    case "$saved" in "" | file | etcd) ;; *) kv_die "$H/.kv_store names an unknown store '$saved' (file or etcd)" ;; esac
    if [ -n "$want" ] && [ -n "$saved" ] && [ "$want" != "$saved" ]; then
        [ "$1" = start ] && kv_die "the cluster under $H uses store = $saved (KV_STORE=$want): stop it and use another KV_HOME, or remove its config files first"
        echo "note: the cluster under $H uses store = $saved; KV_STORE=$want ignored" >&2
        want=
    fi
    STORE=${saved:-${want:-file}}
}

# name client_port peer_port
ETCD_LIST=("etcd1 2379 2380" "etcd2 2381 2382" "etcd3 2383 2384")

cs_names() { # the config servers: cs1 cs2 (file), cs1 cs2 cs3 (etcd)
    if [ "$STORE" = etcd ]; then echo cs1 cs2 cs3; else echo cs1 cs2; fi
}

# ---------------------------------------------------------------- the process list

# proxy_names: proxy, proxy2, ... up to KV_PROXIES, plus any proxyN directory
# that still has a pid file (so stop/status see a proxy started earlier).
proxy_names() {
    local n=${KV_PROXIES:-1} i d
    echo proxy
    for ((i = 2; i <= n; i++)); do echo "proxy$i"; done
    for d in "$H"/proxy[0-9]*; do
        [ -f "$d/kvp.pid" ] || continue
        d=${d##*/}
        [ "${d#proxy}" -gt "$n" ] 2>/dev/null && echo "$d"
    done
}

proxy_index() { # proxy -> 1, proxy2 -> 2
    local i=${1#proxy}
    echo "${i:-1}"
}

port_of_addr() { echo "${1##*:}"; }

# The ports a process listens on, from its config (defaults before it exists).
redis_port() { # NAME DEFAULT
    local p=
    [ -f "$H/$1/redis.conf" ] && p=$(awk '$1 == "port" { print $2; exit }' "$H/$1/redis.conf")
    echo "${p:-$2}"
}
cs_ports() { # NAME -> http proxy migration cs (etcd: no cs)
    local n=$1 off k v f="$H/$1/kvcs.conf" base
    local -a keys=(http_listen:7000 proxy_listen:7100 migration_listen:7200 cs_listen:7300)
    [ "$STORE" = etcd ] && unset 'keys[3]'
    off=$((${n#cs} - 1))
    for k in "${keys[@]}"; do
        base=${k#*:}
        v=
        [ -f "$f" ] && v=$(kv_conf_get "$f" "${k%%:*}")
        if [ -n "$v" ]; then port_of_addr "$v"; else echo $((base + off)); fi
    done
}
proxy_ports() { # NAME -> client http
    local n=$1 i v f="$H/$1/kvp.conf"
    i=$(($(proxy_index "$n") - 1))
    v=
    [ -f "$f" ] && v=$(kv_conf_get "$f" listen)
    if [ -n "$v" ]; then port_of_addr "$v"; else echo $((7400 + i)); fi
    v=
    [ -f "$f" ] && v=$(kv_conf_get "$f" http_listen)
    if [ -n "$v" ]; then port_of_addr "$v"; else echo $((7500 + i)); fi
}

etcd_ports() { # NAME -> client peer, from its etcd.conf.yml (ETCD_LIST before it exists)
    local spec name c p f="$H/$1/etcd.conf.yml" v
    for spec in "${ETCD_LIST[@]}"; do
        read -r name c p <<<"$spec"
        [ "$name" = "$1" ] && break
    done
    if [ -f "$f" ]; then
        v=$(awk '$1 == "listen-client-urls:" { print $2; exit }' "$f")
        [ -n "$v" ] && c=$(port_of_addr "${v%%,*}")
        v=$(awk '$1 == "listen-peer-urls:" { print $2; exit }' "$f")
        [ -n "$v" ] && p=$(port_of_addr "${v%%,*}")
    fi
    echo "$c"
    echo "$p"
}

etcd_endpoints() { # h:p,h:p,h:p of the members' client ports
    local spec name out=
    for spec in "${ETCD_LIST[@]}"; do
        read -r name _ <<<"$spec"
        out="$out${out:+,}127.0.0.1:$(etcd_ports "$name" | sed -n 1p)"
    done
    echo "$out"
}

port_listening() { [ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]; }

# ---------------------------------------------------------------- config files

write_configs() {
    local spec name port master n f type=${KV_CLUSTER_TYPE:-data_store}
    case "$type" in data_store | cache) ;; *) kv_die "KV_CLUSTER_TYPE must be data_store or cache (is '$type')" ;; esac

    for spec in "${REDIS_LIST[@]}"; do
        read -r name port master <<<"$spec"
        [ "$master" = - ] && master=
        kv_redis_write_conf "$H/$name" "$port" "$PASSWORD" "$master" || kv_die "cannot write $H/$name/redis.conf"
    done

    # one cluster_secret for every control port of this cluster: the one
    # cs1's config already has (none in a config written before there were
    # secrets: then none, loopback only), else a new random one
    local secret
    if [ -f "$H/cs1/kvcs.conf" ]; then
        secret=$(kv_conf_get "$H/cs1/kvcs.conf" cluster_secret 2>/dev/null) || secret=
    else
        secret=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    fi
    if [ "$STORE" = etcd ]; then
        write_etcd_configs "$type" "$secret"
    fi
    for n in 1 2; do
        [ "$STORE" = etcd ] && break
        f="$H/cs$n/kvcs.conf"
        [ -f "$f" ] && continue
        mkdir -p "$H/cs$n"
        cp "$KV_ROOT/conf/kvcs.conf" "$f.tmp" || kv_die "cannot write $f"
        kv_conf_set "$f.tmp" cluster_type "\"$type\""
        kv_conf_set "$f.tmp" table_dir '"table"'
        kv_conf_set "$f.tmp" redis_password "\"$PASSWORD\""
        kv_conf_set "$f.tmp" cluster_secret "\"$secret\""
        kv_conf_set "$f.tmp" log_file '"kvcs.log"'
        if [ "$n" = 2 ]; then
            kv_conf_set "$f.tmp" http_listen '"127.0.0.1:7001"'
            kv_conf_set "$f.tmp" proxy_listen '"127.0.0.1:7101"'
            kv_conf_set "$f.tmp" migration_listen '"127.0.0.1:7201"'
            kv_conf_set "$f.tmp" cs_listen '"127.0.0.1:7301"'
            kv_conf_set "$f.tmp" master_cs '"127.0.0.1:7300"'
        else
            kv_conf_set "$f.tmp" master_cs '""'
        fi
        mv -f "$f.tmp" "$f"
    done

    local i
    for name in $(proxy_names); do
        f="$H/$name/kvp.conf"
        [ -f "$f" ] && continue
        i=$(($(proxy_index "$name") - 1))
        mkdir -p "$H/$name"
        cp "$KV_ROOT/conf/kvp.conf" "$f.tmp" || kv_die "cannot write $f"
        kv_conf_set "$f.tmp" namespace "\"$NAMESPACE_DEFAULT\""
        kv_conf_set "$f.tmp" listen "\"0.0.0.0:$((7400 + i))\""
        kv_conf_set "$f.tmp" http_listen "\"127.0.0.1:$((7500 + i))\""
        if [ "$STORE" = etcd ]; then
            # config_servers replaces the pair: the master line goes (its
            # default is allowed beside the list), the slave is blank
            conf_del "$f.tmp" config_server_master
            kv_conf_set "$f.tmp" config_server_slave '""'
            kv_conf_set "$f.tmp" config_servers "\"$(cs_proxy_list)\""
        else
            kv_conf_set "$f.tmp" config_server_master '"127.0.0.1:7100"'
            kv_conf_set "$f.tmp" config_server_slave '"127.0.0.1:7101"'
        fi
        kv_conf_set "$f.tmp" redis_password "\"$PASSWORD\""
        kv_conf_set "$f.tmp" cluster_secret "\"$secret\""
        kv_conf_set "$f.tmp" log_file '"kvp.log"'
        mv -f "$f.tmp" "$f"
    done

    # the operators' migration_tool, run from $KV_HOME, finds both here
    f="$H/migration_tool.conf"
    if [ ! -f "$f" ]; then
        printf '%s\n' "-- migration_tool's credentials (read from the current directory)" \
            "cluster_secret = \"$secret\"" "redis_password = \"$PASSWORD\"" >"$f.tmp" &&
            chmod 600 "$f.tmp" && mv -f "$f.tmp" "$f" || kv_die "cannot write $f"
    fi
}

# conf_del FILE KEY: drop the `KEY = ...` line (a key the kind of config does not use).
conf_del() {
    K="$2" awk 'BEGIN { k = ENVIRON["K"] } $0 !~ "^[ \t]*" k "[ \t]*=" { print }' "$1" >"$1.del" &&
        mv -f "$1.del" "$1"
}

cs_proxy_list() { # h:p,h:p,h:p of the config servers' proxy ports
    local n out=
    for n in $(cs_names); do out="$out${out:+,}127.0.0.1:$(cs_ports "$n" | sed -n 2p)"; done
    echo "$out"
}

# write_etcd_configs TYPE SECRET: the members' etcd.conf.yml and cs1..cs3's
# kvcs.conf (store = "etcd"), each only when missing; .kv_store says etcd.
write_etcd_configs() {
    local type=$1 secret=$2 spec name c p cluster="" f n off
    echo etcd >"$H/.kv_store" || kv_die "cannot write $H/.kv_store"
    for spec in "${ETCD_LIST[@]}"; do
        read -r name _ <<<"$spec"
        p=$(etcd_ports "$name" | sed -n 2p)
        cluster="$cluster${cluster:+,}$name=http://127.0.0.1:$p"
    done
    for spec in "${ETCD_LIST[@]}"; do
        read -r name _ <<<"$spec"
        f="$H/$name/etcd.conf.yml"
        [ -f "$f" ] && continue
        mkdir -p "$H/$name"
        c=$(etcd_ports "$name" | sed -n 1p) p=$(etcd_ports "$name" | sed -n 2p)
        # stop removes data/, so every start makes a new cluster ("new" state)
        printf '%s\n' "# etcd member $name of the local cluster (scripts/kv_store.sh runs it in this" \
            "# directory: data-dir is relative to it; its log goes to etcd.log)" \
            "name: $name" "data-dir: data" \
            "listen-client-urls: http://127.0.0.1:$c" "advertise-client-urls: http://127.0.0.1:$c" \
            "listen-peer-urls: http://127.0.0.1:$p" "initial-advertise-peer-urls: http://127.0.0.1:$p" \
            "initial-cluster: $cluster" "initial-cluster-state: new" \
            "initial-cluster-token: kvp-local" \
            "heartbeat-interval: 100" "election-timeout: 1000" \
            "# kvcs speaks the JSON gateway (a config file leaves it off by default)" \
            "enable-grpc-gateway: true" \
            "logger: zap" "log-outputs: [stderr]" >"$f.tmp" && mv -f "$f.tmp" "$f" || kv_die "cannot write $f"
    done
    for n in $(cs_names); do
        f="$H/$n/kvcs.conf"
        [ -f "$f" ] && continue
        off=$((${n#cs} - 1))
        mkdir -p "$H/$n"
        cp "$KV_ROOT/conf/kvcs.conf" "$f.tmp" || kv_die "cannot write $f"
        kv_conf_set "$f.tmp" cluster_type "\"$type\""
        kv_conf_set "$f.tmp" redis_password "\"$PASSWORD\""
        kv_conf_set "$f.tmp" cluster_secret "\"$secret\""
        kv_conf_set "$f.tmp" log_file '"kvcs.log"'
        kv_conf_set "$f.tmp" http_listen "\"127.0.0.1:$((7000 + off))\""
        kv_conf_set "$f.tmp" proxy_listen "\"127.0.0.1:$((7100 + off))\""
        kv_conf_set "$f.tmp" migration_listen "\"127.0.0.1:$((7200 + off))\""
        conf_del "$f.tmp" cs_listen     # unused with etcd
        kv_conf_set "$f.tmp" table_dir '"table"'   # unused: the tables live in etcd
        kv_conf_set "$f.tmp" master_cs '""'
        kv_conf_set "$f.tmp" store '"etcd"'
        kv_conf_set "$f.tmp" etcd_endpoints "\"$(etcd_endpoints)\""
        kv_conf_set "$f.tmp" node_name "\"$n\""
        mv -f "$f.tmp" "$f"
    done
}

make_links() {
    local s
    : >"$H/.kv_home"
    [ -x "$KV_BUILD/test_all" ] && ln -sfn "$KV_BUILD/test_all" "$H/test_all"
    [ -x "$KV_BUILD/migration_tool" ] && ln -sfn "$KV_BUILD/migration_tool" "$H/migration_tool"
    ln -sfn "$(command -v redis-cli)" "$H/redis-cli"
    ln -sfn "$(command -v redis-benchmark)" "$H/redis-benchmark"
    ln -sfn "$KV_ROOT/scripts/kv_store.sh" "$H/kv_store.sh"
    for s in "${SCENARIOS[@]}"; do
        [ -f "$KV_ROOT/scripts/$s" ] && ln -sfn "$KV_ROOT/scripts/$s" "$H/$s"
    done
    return 0
}

# ---------------------------------------------------------------- start

log_tail() { # DIR CONF LOGDEFAULT: the last lines of a daemon's start output and log
    local dir=$1 conf=$2 log
    log=$(kv_conf_get "$dir/$conf" log_file 2>/dev/null)
    log=${log:-$3}
    [ "${log:0:1}" = / ] || log="$dir/$log"
    if [ -s "$dir/start.out" ]; then
        echo "----- $dir/start.out" >&2
        tail -n 30 "$dir/start.out" >&2
    fi
    if [ -f "$log" ]; then
        echo "----- last lines of $log" >&2
        tail -n 30 "$log" >&2
    fi
}

# start_daemon NAME BINARY CONF PATTERN PORT: run BINARY -c CONF -d inside the
# directory of NAME, wait for its pid file and for PORT to accept connections.
start_daemon() {
    local name=$1 bin=$2 conf=$3 pat=$4 port=$5 dir="$H/$1" rc=0 i
    local pidfile="$dir/${bin##*/}.pid"
    rm -f "$pidfile"   # stale: start runs only when nothing of the cluster runs
    (cd "$dir" && "$bin" -c "$dir/$conf" -d </dev/null >"$dir/start.out" 2>&1) || rc=$?
    if [ $rc -ne 0 ]; then
        log_tail "$dir" "$conf" "${bin##*/}.log"
        fail_start "$name: ${bin##*/} -c $dir/$conf -d exited with status $rc"
    fi
    for ((i = 0; i < 200; i++)); do
        if kv_pid_of "$pidfile" "$pat" >/dev/null; then
            port_listening "$port" && return 0
        elif [ -s "$pidfile" ]; then
            sleep 0.2   # the pid file may be written just before the process is named
            if ! kv_pid_of "$pidfile" "$pat" >/dev/null; then
                log_tail "$dir" "$conf" "${bin##*/}.log"
                fail_start "$name: ${bin##*/} exited after it started (pid file $pidfile)"
            fi
        fi
        sleep 0.1
    done
    log_tail "$dir" "$conf" "${bin##*/}.log"
    fail_start "$name: no running ${bin##*/} listening on port $port after 20 s"
}

# redis_role NAME PORT MASTER_PORT|-: put a server back in its SPEC §3 role.
# A fail-over (kvcs: REPLICAOF + CONFIG REWRITE) writes the new roles into
# redis.conf, which stop keeps; a fresh start begins from the documented layout.
redis_role() {
    local name=$1 p cur want
    p=$(redis_port "$1" "$2")
    local -a cli=(timeout 3 redis-cli -h 127.0.0.1 -p "$p" -a "$PASSWORD" --no-auth-warning)
    cur=$("${cli[@]}" INFO replication 2>/dev/null | tr -d '\r' |
        sed -n 's/^role:\(.*\)/\1/p; s/^master_port:\(.*\)/\1/p' | paste -sd' ')
    if [ "$3" = - ]; then want=master; else want="slave $3"; fi
    [ "$cur" = "$want" ] && return 0
    if [ "$3" = - ]; then
        "${cli[@]}" REPLICAOF NO ONE >/dev/null
    else
        "${cli[@]}" REPLICAOF 127.0.0.1 "$3" >/dev/null
    fi
    "${cli[@]}" CONFIG REWRITE >/dev/null
    echo "$name was '${cur:-?}' (a fail-over rewrote redis.conf): reset to ${want/slave/replica of}"
}

fail_start() {
    red "start failed: $*" >&2
    echo "what did start is still running; '$0 stop' stops it and removes its data" >&2
    exit 1
}

init_table() {
    local ns=$1 http token body resp i
    http=$(cs_ports cs1 | sed -n 1p)
    if [ "$STORE" = etcd ]; then  # a change: only the leader makes it
        http=$(wait_leader_http) || exit 1
    fi
    token=$(kv_conf_get "$H/cs1/kvcs.conf" admin_token 2>/dev/null)
    body="{\"namespace\":\"$ns\",\"bucket_count\":$BUCKET_COUNT,\"address_list\":[$INIT_MASTERS]}"
    local -a auth=()
    [ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
    # Retry while the port refuses connections (curl status 7), not after a
    # time-out: a server that took the request may still act on it.
    local rc
    for ((i = 0; i < 20; i++)); do
        rc=0
        resp=$(curl -sS -m 10 -H 'Content-Type: application/json' "${auth[@]}" -d "$body" \
            "http://127.0.0.1:$http/kvstore/cs/init_table" 2>&1) || rc=$?
        if [ "$STORE" = etcd ] && [[ "$resp" =~ \"code\"[[:space:]]*:[[:space:]]*1029([^0-9]|$) ]]; then
            sleep 0.5   # 1029 NOT_LEADER: the leader changed since it was named
            http=$(wait_leader_http) || exit 1
            continue
        fi
        [ $rc -eq 7 ] || break
        sleep 0.5
    done
    if [[ "$resp" =~ \"code\"[[:space:]]*:[[:space:]]*1001([^0-9]|$) ]]; then
        echo "namespace $ns created ($BUCKET_COUNT buckets over 127.0.0.1:6371, 127.0.0.1:6373)"
    elif grep -qi 'already exist' <<<"$resp"; then
        echo "namespace $ns already exists"
    else
        log_tail "$H/cs1" kvcs.conf kvcs.log
        fail_start "init_table of namespace $ns on port $http: ${resp:-no reply}"
    fi
}

# ---------------------------------------------------------------- etcd (KV_STORE=etcd)

J() { luajit "$KV_ROOT/scripts/lib/json.lua" "$1"; }

# leader_json HTTP_PORT: the /kvstore/cs/leader reply of the kvcs on that port
leader_json() { curl -sS -m 3 "http://127.0.0.1:$1/kvstore/cs/leader" 2>/dev/null; }

# cs_leader: "NAME HTTP_ADDR PROXY_ADDR MIGRATION_ADDR" of the leader, as the
# first config server that answers names it; status 1 when none names one.
cs_leader() {
    local n out
    for n in $(cs_names); do
        out=$(leader_json "$(cs_ports "$n" | sed -n 1p)" |
            J 'j.leader ~= null and (j.leader.name .. " " .. j.leader.http .. " " .. j.leader.proxy .. " " .. j.leader.migration) or ""' 2>/dev/null)
        [ -n "$out" ] && { echo "$out"; return 0; }
    done
    return 1
}

# wait_leader_http: the http port of the leading kvcs, once there is one
# (the first election takes about a second after the members start).
wait_leader_http() {
    local i l
    for ((i = 0; i < 150; i++)); do
        if l=$(cs_leader); then
            l=$(awk '{ print $2 }' <<<"$l")
            port_of_addr "$l"
            return 0
        fi
        sleep 0.1
    done
    log_tail "$H/cs1" kvcs.conf kvcs.log
    fail_start "no config server leads after 15 s (GET /kvstore/cs/leader on $(cs_names))"
}

etcd_healthy() { # CLIENT_PORT: the member is in a cluster that has a leader
    [ "$(curl -sS -m 2 "http://127.0.0.1:$1/health" 2>/dev/null | J 'j.health' 2>/dev/null)" = true ]
}

# start_etcd_members: every member in its own directory (etcd does not
# daemonize: a background process in a session of its own, so a ^C of this
# script does not reach it; its pid is the one of the subshell, which execs
# setsid, which execs etcd), then wait until all three are healthy (a member
# is only once a quorum has elected a raft leader).
start_etcd_members() {
    local spec name dir c i pid
    for spec in "${ETCD_LIST[@]}"; do
        read -r name _ <<<"$spec"
        dir=$H/$name
        rm -f "$dir/etcd.pid"
        (cd "$dir" && exec setsid etcd --config-file "$dir/etcd.conf.yml" </dev/null >>"$dir/etcd.log" 2>&1) &
        echo $! >"$dir/etcd.pid"
    done
    for spec in "${ETCD_LIST[@]}"; do
        read -r name _ <<<"$spec"
        dir=$H/$name c=$(etcd_ports "$name" | sed -n 1p)
        for ((i = 0; i < 200; i++)); do
            if ! pid=$(kv_pid_of "$dir/etcd.pid" "$ETCD_PAT"); then
                sleep 0.2
                kv_pid_of "$dir/etcd.pid" "$ETCD_PAT" >/dev/null && continue
                tail -n 20 "$dir/etcd.log" >&2
                fail_start "$name: etcd exited (log $dir/etcd.log)"
            fi
            etcd_healthy "$c" && break
            sleep 0.1
        done
        if ! etcd_healthy "$c"; then
            tail -n 20 "$dir/etcd.log" >&2
            fail_start "$name: etcd on port $c is not healthy after 20 s"
        fi
        echo "$name started (client $c, peer $(etcd_ports "$name" | sed -n 2p), pid $pid)"
    done
}

# proxy_ready NAME: PING answers and a data command returns an integer.
proxy_ready() {
    local name=$1 port pw out i
    port=$(proxy_ports "$name" | sed -n 1p)
    pw=$(kv_conf_get "$H/$name/kvp.conf" client_password 2>/dev/null)
    local -a cli=(redis-cli -h 127.0.0.1 -p "$port")
    [ -n "$pw" ] && cli+=(-a "$pw" --no-auth-warning)
    for ((i = 0; i < 200; i++)); do
        if [ "$(timeout 3 "${cli[@]}" PING 2>/dev/null)" = PONG ]; then
            out=$(timeout 3 "${cli[@]}" EXISTS kv_store_probe 2>/dev/null)
            [[ "$out" =~ ^[0-9]+$ ]] && return 0
        fi
        sleep 0.1
    done
    echo "last reply to EXISTS kv_store_probe: ${out:-none}" >&2
    log_tail "$H/$name" kvp.conf kvp.log
    fail_start "$name: the proxy on port $port does not serve data after 20 s"
}

cmd_start() {
    # shellcheck disable=SC2119 # no extra packages
    kv_ensure_deps || kv_die "missing packages could not be installed"
    kv_ensure_build || kv_die "the build failed"
    local b
    for b in kvp kvcs; do
        [ -x "$KV_BUILD/$b" ] || kv_die "no $KV_BUILD/$b after the build"
    done
    mkdir -p "$H" || kv_die "cannot create $H"
    H=$(cd "$H" && pwd) KV_HOME=$H

    # Already (partly) running: change nothing.
    local running=0 total=0 name
    while read -r name _ pidfile pat _; do
        total=$((total + 1))
        kv_pid_of "$pidfile" "$pat" >/dev/null && running=$((running + 1))
    done < <(proc_table)
    if [ $running -gt 0 ]; then
        if [ $running -eq $total ]; then
            echo "the cluster under $H is already running; nothing changed"
            cmd_status
            return 0
        fi
        echo "the cluster under $H is partly running ($running of $total processes); nothing changed." >&2
        echo "run '$0 stop' first, then start" >&2
        cmd_status >&2
        return 1
    fi

    write_configs
    make_links

    # Every port free?
    local -a busy=()
    local p
    while read -r name _ _ _ ports; do
        for p in $ports; do port_listening "$p" && busy+=("$p ($name)"); done
    done < <(proc_table)
    [ ${#busy[@]} -eq 0 ] || kv_die "ports already in use by other processes: ${busy[*]}"

    local spec port master
    for spec in "${REDIS_LIST[@]}"; do
        read -r name port master <<<"$spec"
        kv_redis_start "$H/$name" "$PASSWORD" 10 || fail_start "$name did not start"
        echo "$name started on port $(redis_port "$name" "$port")"
        redis_role "$name" "$port" "$master"
    done

    [ "$STORE" = etcd ] && start_etcd_members

    for name in $(cs_names); do
        start_daemon "$name" "$KV_BUILD/kvcs" kvcs.conf kvcs "$(cs_ports "$name" | sed -n 1p)"
        echo "$name started (ports $(cs_ports "$name" | paste -sd' '))"
    done

    local ns
    ns=$(kv_conf_get "$H/proxy/kvp.conf" namespace 2>/dev/null)
    init_table "${ns:-$NAMESPACE_DEFAULT}"

    for name in $(proxy_names); do
        start_daemon "$name" "$KV_BUILD/kvp" kvp.conf kvp "$(proxy_ports "$name" | sed -n 1p)"
    done
    for name in $(proxy_names); do
        proxy_ready "$name"
        echo "$name serving on port $(proxy_ports "$name" | sed -n 1p) (http $(proxy_ports "$name" | sed -n 2p))"
    done
    green "cluster running under $H"
}

# ---------------------------------------------------------------- the table of processes

# proc_table: one line per process: NAME ROLE PIDFILE PATTERN PORTS...
# (the first port is the one status checks).
proc_table() {
    local spec name port master role
    for spec in "${REDIS_LIST[@]}"; do
        read -r name port master <<<"$spec"
        if [ "$master" = - ]; then role=master; else role=replica; fi
        echo "$name redis-$role $H/$name/redis.pid redis $(redis_port "$name" "$port")"
    done
    if [ "$STORE" = etcd ]; then
        for spec in "${ETCD_LIST[@]}"; do
            read -r name _ <<<"$spec"
            echo "$name etcd $H/$name/etcd.pid $ETCD_PAT $(etcd_ports "$name" | paste -sd' ')"
        done
        for name in $(cs_names); do
            echo "$name kvcs $H/$name/kvcs.pid kvcs $(cs_ports "$name" | paste -sd' ')"
        done
    else
        echo "cs1 kvcs-master $H/cs1/kvcs.pid kvcs $(cs_ports cs1 | paste -sd' ')"
        echo "cs2 kvcs-slave $H/cs2/kvcs.pid kvcs $(cs_ports cs2 | paste -sd' ')"
    fi
    for name in $(proxy_names); do
        echo "$name kvp $H/$name/kvp.pid kvp $(proxy_ports "$name" | paste -sd' ')"
    done
}

# ---------------------------------------------------------------- status

cmd_status() {
    if [ ! -d "$H" ]; then
        echo "no cluster under $H"
        return 1
    fi
    local name role pidfile pat ports port pid state all=0 live
    printf '%-8s %-14s %-22s %-8s %s\n' NAME ROLE PORTS PID STATE
    while read -r name role pidfile pat ports; do
        port=${ports%% *}
        if pid=$(kv_pid_of "$pidfile" "$pat"); then
            if port_listening "$port"; then
                state=running
                if [ "$pat" = redis ]; then
                    live=$(timeout 3 redis-cli -p "$port" -a "$PASSWORD" --no-auth-warning INFO replication 2>/dev/null |
                        tr -d '\r' | sed -n 's/^role://p')
                    [ -n "$live" ] && role="redis-$live"
                    [ "$live" = slave ] && role=redis-replica
                elif [ "$role" = etcd ]; then
                    role=$(etcd_role "$port")
                elif [ "$STORE" = etcd ] && [ "$pat" = kvcs ]; then
                    live=$(leader_json "$port" | J 'tostring(j.is_leader)' 2>/dev/null)
                    case "$live" in true) role=kvcs-leader ;; false) role=kvcs-follower ;; esac
                fi
            else
                state="running, port $port not listening"
                all=1
            fi
        else
            pid=-
            if [ -f "$pidfile" ]; then state="stopped (stale pid file)"; else state=stopped; fi
            all=1
        fi
        printf '%-8s %-14s %-22s %-8s %s\n' "$name" "$role" "$ports" "$pid" "$state"
    done < <(proc_table)
    if [ "$STORE" = etcd ]; then
        local l
        if l=$(cs_leader); then
            read -r name _ <<<"$l"
            echo "leader: $name (http, proxy, migration: $(cut -d' ' -f2- <<<"$l"))"
        else
            echo "leader: none (no config server answers /kvstore/cs/leader with one)"
            all=1
        fi
    fi
    return $all
}

# etcd_role CLIENT_PORT: etcd-leader or etcd-follower (raft), etcd when unknown.
etcd_role() {
    ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$1" --dial-timeout=1s --command-timeout=2s \
        endpoint status -w fields 2>/dev/null | awk '
            $1 == "\"MemberID\"" { m = $3 } $1 == "\"Leader\"" { l = $3 }
            END { if (m == "" || l == "") print "etcd"; else if (m == l) print "etcd-leader"; else print "etcd-follower" }'
}

# ---------------------------------------------------------------- stop

cmd_stop() {
    if [ ! -d "$H" ]; then
        echo "no cluster under $H; nothing to stop"
        return 0
    fi
    local name role pidfile pat ports n=0
    local -a proxies=() css=() etcds=() redises=()
    while read -r name role pidfile pat ports; do
        kv_pid_of "$pidfile" "$pat" >/dev/null && n=$((n + 1))
        case "$pat" in
        kvp) proxies+=("$pidfile:$pat") ;;
        kvcs) css+=("$pidfile:$pat") ;;
        "$ETCD_PAT") etcds+=("$pidfile:$pat") ;;
        *) redises+=("$pidfile:$pat") ;;
        esac
    done < <(proc_table)
    # Proxies first (no down reports), then the config servers (no fail-over),
    # then etcd (KV_STORE=etcd), then Redis.
    kv_stop_pidfiles 10 "${proxies[@]}"
    kv_stop_pidfiles 10 "${css[@]}"
    kv_stop_pidfiles 10 "${etcds[@]}"
    kv_stop_pidfiles 15 "${redises[@]}"

    # Data: tables, logs, RDB/AOF files, pid files, learned HA state, etcd
    # data. Config files stay.
    local d td
    for d in "$H"/etcd[0-9]; do
        [ -f "$d/etcd.conf.yml" ] || continue
        td=$(awk '$1 == "data-dir:" { print $2; exit }' "$d/etcd.conf.yml")
        td=${td:-data}
        [ "${td:0:1}" = / ] || td="$d/$td"
        case "$td" in
        "$H"/*) rm -rf "$td" ;;
        *) echo "keeping $td (etcd data-dir outside $H)" ;;
        esac
    done
    for d in "$H"/redis[0-9] "$H"/cs[0-9] "$H"/etcd[0-9] "$H"/proxy*; do
        [ -d "$d" ] || continue
        if [ -f "$d/kvcs.conf" ]; then
            td=$(kv_conf_get "$d/kvcs.conf" table_dir 2>/dev/null)
            td=${td:-table}
            [ "${td:0:1}" = / ] || td="$d/$td"
            case "$td" in
            "$H"/*) rm -rf "$td" ;;
            *) echo "keeping $td (table_dir outside $H)" ;;
            esac
        fi
        rm -rf "$d/appendonlydir"
        rm -f "$d"/*.log "$d"/*.log.* "$d"/*.out "$d"/*.rdb "$d"/*.aof "$d"/*.pid "$d"/temp-*.rdb "$d"/ha_state.json "$d"/known_proxies.json
    done
    echo "stopped $n processes under $H; data removed, config files kept"
}

# ---------------------------------------------------------------- main

main() {
    kv_home_init
    store_init "${1:-}"
    [[ "${KV_PROXIES:-1}" =~ ^[1-9][0-9]?$ ]] || kv_die "KV_PROXIES must be a number from 1 to 99 (is '$KV_PROXIES')"
    case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: ${0##*/} start|stop|status" >&2
        echo "  KV_HOME=$H  KV_PROXIES=${KV_PROXIES:-1}  KV_CLUSTER_TYPE=${KV_CLUSTER_TYPE:-data_store}  KV_STORE=$STORE" >&2
        return 2
        ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
    exit $?
fi
