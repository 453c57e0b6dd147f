# shellcheck shell=bash
# common.sh -- helpers sourced by scripts/*.sh and tests/it/*.sh.
#
#   kv_root                      repo root (absolute)
#   kv_ensure_deps [CHECK:PKG..] install the Debian packages the project needs
#   kv_ensure_build              configure + build when $KV_BUILD is missing or stale
#                                (KV_BUILD: build/ unless set; KV_CMAKE_ARGS: extra
#                                cmake -D options, e.g. -DKV_SANITIZE=ON)
#   green/red/yellow/bold MSG    coloured line (colour only when stdout is a tty)
#   kv_die MSG                   red message on stderr, exit 1
#   kv_free_port                 a free loopback TCP port (never 6371-6376, 7000-7501)
#   kv_wait_port HOST PORT SECS  wait until HOST:PORT accepts TCP connections
#   kv_wait_cond SECS CMD...     retry CMD (quietly) every 0.1 s until it succeeds
#   kv_redis_ping PORT [PW]      0 when the redis on 127.0.0.1:PORT answers PONG
#   kv_redis_write_conf DIR PORT PW [MASTER_PORT]   redis.conf from conf/redis.conf
#   kv_redis_start DIR [PW]      start the daemonized redis of DIR, wait for PONG
#   kv_conf_get FILE KEY         value of `KEY = value` in a Lua-syntax config
#   kv_conf_set FILE KEY LUAVAL  set (or append) `KEY = LUAVAL`
#   kv_pid_of PIDFILE PATTERN    pid from PIDFILE when alive and its command matches
#   kv_stop_pidfiles SECS PIDFILE:PATTERN...  TERM, wait up to SECS, then KILL
#
# Nothing here changes shell options of the caller (no set -e/-u).

KV_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
KV_BUILD=${KV_BUILD:-"$KV_ROOT/build"}

kv_root() { printf '%s\n' "$KV_ROOT"; }

# ---------------------------------------------------------------- colours

_kv_colour() { # CODE MSG...
    local code=$1; shift
    if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
        printf '\033[%sm%s\033[0m\n' "$code" "$*"
    else
        printf '%s\n' "$*"
    fi
}
green()  { _kv_colour 32 "$@"; }
red()    { _kv_colour 31 "$@"; }
yellow() { _kv_colour 33 "$@"; }
bold()   { _kv_colour 1 "$@"; }

kv_die() { red "$*" >&2; exit 1; }

# ---------------------------------------------------------------- packages

# kv_ensure_deps [CHECK:PACKAGE ...]
# CHECK is a command name, or an absolute path that must exist. Extra pairs
# (e.g. iptables:iptables) are checked along with the project's own list.
# Installs what is missing with apt-get (as root, or through sudo -n).
kv_ensure_deps() {
    local -a checks=(
        cc:build-essential make:build-essential cmake:cmake pkg-config:pkg-config
        luajit:luajit
        /usr/include/luajit-2.1/lua.h:libluajit-5.1-dev
        /usr/include/event2/event.h:libevent-dev
        /usr/include/hiredis/hiredis.h:libhiredis-dev
        busted:lua-busted
        redis-server:redis-server redis-cli:redis-tools redis-benchmark:redis-tools
        etcd:etcd-server etcdctl:etcd-client
        curl:curl ss:iproute2 ip:iproute2 iptables:iptables ps:procps pgrep:procps
        timeout:coreutils flock:util-linux
        "$@"
    )
    local -a missing=() sudo=()
    local spec what pkg
    for spec in "${checks[@]}"; do
        what=${spec%:*} pkg=${spec##*:}
        if [ "${what:0:1}" = / ]; then
            [ -e "$what" ] || missing+=("$pkg")
        else
            command -v "$what" >/dev/null 2>&1 || missing+=("$pkg")
        fi
    done
    # lua-cjson: a module LuaJIT must be able to require.
    if ! command -v luajit >/dev/null 2>&1 || ! luajit -e 'require "cjson"' >/dev/null 2>&1; then
        missing+=(lua-cjson)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0

    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if ! command -v apt-get >/dev/null 2>&1; then
        red "missing packages (no apt-get here; install them by hand): ${missing[*]}" >&2
        return 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            red "missing packages: ${missing[*]}; run as root or with sudo: apt-get install ${missing[*]}" >&2
            return 1
        fi
    fi
    echo "installing missing packages: ${missing[*]}" >&2
    local log rc=0
    log=$(mktemp "${TMPDIR:-/tmp}/kv-apt.XXXXXX")
    if [ -z "${_KV_APT_UPDATED:-}" ]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get -q -o DPkg::Lock::Timeout=300 update >>"$log" 2>&1 ||
            echo "warning: apt-get update failed (trying the install anyway)" >&2
        _KV_APT_UPDATED=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends "${missing[@]}" \
        >>"$log" 2>&1 || rc=$?
    if [ $rc -ne 0 ]; then
        tail -n 30 "$log" >&2
        red "apt-get install failed (status $rc): ${missing[*]}" >&2
    fi
    rm -f "$log"
    return $rc
}

# ---------------------------------------------------------------- build

# The binaries every script expects after a build.
KV_BINARIES=(kvp kvcs test_all)

# kv_ensure_build: configure and build when $KV_BUILD has no CMake cache, a
# binary is missing, or anything under c/, tests/c/, cmake/ or CMakeLists.txt
# is newer than the last successful build. Quiet unless it fails; the full
# output is in build/build.log. Concurrent callers serialize on a lock.
kv_ensure_build() {
    mkdir -p "$KV_BUILD" || return 1
    (
        flock 9
        cd "$KV_ROOT" || exit 1
        stamp="$KV_BUILD/.kv_build_stamp"
        need=0
        [ -f "$KV_BUILD/CMakeCache.txt" ] && [ -f "$stamp" ] || need=1
        for b in "${KV_BINARIES[@]}"; do
            [ -x "$KV_BUILD/$b" ] || need=1
        done
        if [ $need -eq 0 ]; then
            srcs=()
            for p in c tests/c cmake CMakeLists.txt; do [ -e "$p" ] && srcs+=("$p"); done
            [ ${#srcs[@]} -gt 0 ] && [ -n "$(find "${srcs[@]}" -newer "$stamp" -print -quit)" ] && need=1
        fi
        [ $need -eq 0 ] && exit 0
        if [ ! -f CMakeLists.txt ]; then
            red "kv_ensure_build: no CMakeLists.txt in $KV_ROOT" >&2
            exit 1
        fi
        log="$KV_BUILD/build.log"
        : >"$log"
        touch "$stamp.new"   # sources changed during the build stay "newer"
        [ -t 2 ] && echo "building (full log: $log) ..." >&2
        # Configure every time: it is quick, and a glob in CMakeLists.txt
        # only sees a new source file when cmake runs again.
        # shellcheck disable=SC2086 # KV_CMAKE_ARGS: words on purpose
        cmake -S . -B "$KV_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${KV_CMAKE_ARGS:-} >>"$log" 2>&1 || {
            tail -n 60 "$log" >&2
            red "cmake configure failed (full log: $log)" >&2
            exit 1
        }
        cmake --build "$KV_BUILD" -j "${KV_JOBS:-$(nproc 2>/dev/null || echo 2)}" >>"$log" 2>&1 || {
            grep -E -m 40 'error|Error|undefined reference' "$log" >&2
            echo "----- last lines of $log" >&2
            tail -n 40 "$log" >&2
            red "build failed (full log: $log)" >&2
            exit 1
        }
        mv -f "$stamp.new" "$stamp"
        for b in "${KV_BINARIES[@]}"; do
            [ -x "$KV_BUILD/$b" ] || yellow "warning: the build made no build/$b" >&2
        done
        exit 0
    ) 9>"$KV_BUILD/.kv_build.lock"
}

# ---------------------------------------------------------------- ports

_kv_port_busy() { # PORT: listening, or a local end of any TCP socket
    local p=$1
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
    fi
}

# kv_free_port: print a free loopback TCP port. Ports come from 20000-32767
# (below the kernel's ephemeral range, away from the local cluster's
# 6371-6376 and 7000-7501) and are claimed in /tmp/kv-ports-$UID for 30
# minutes, so several calls before anything binds never return one port twice,
# also across concurrent tests.
kv_free_port() {
    local reg port i lo=20000 hi=32767 elo ehi
    reg="/tmp/kv-ports-$(id -u)"
    mkdir -p "$reg" 2>/dev/null
    find "$reg" -mindepth 1 -maxdepth 1 -mmin +30 -exec rm -rf {} + 2>/dev/null
    read -r elo ehi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { elo=32768 ehi=60999; }
    for ((i = 0; i < 500; i++)); do
        port=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
        if ((port >= 6371 && port <= 6376)) || ((port >= 7000 && port <= 7501)) ||
            ((port >= elo && port <= ehi)); then
            continue
        fi
        _kv_port_busy "$port" && continue
        mkdir "$reg/$port" 2>/dev/null || continue
        printf '%s\n' "$port"
        return 0
    done
    echo "kv_free_port: no free port found" >&2
    return 1
}

# kv_wait_port HOST PORT SECONDS: 0 once HOST:PORT accepts a connection.
kv_wait_port() {
    local host=$1 port=$2 secs=${3:-10} deadline
    deadline=$(($(date +%s%N) / 1000000 + secs * 1000))
    while :; do
        # shellcheck disable=SC2016 # $0/$1 are the inner shell's arguments
        timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null && return 0
        (($(date +%s%N) / 1000000 >= deadline)) && return 1
        sleep 0.1
    done
}

# ---------------------------------------------------------------- redis

# kv_wait_cond SECS CMD...: 0 as soon as CMD succeeds, 1 after SECS seconds.
kv_wait_cond() {
    local end=$(($(date +%s) + $1))
    shift
    while [ "$(date +%s)" -le "$end" ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# kv_redis_ping PORT [PASSWORD]: 0 when 127.0.0.1:PORT answers PONG.
kv_redis_ping() {
    local port=$1 pw=${2:-} out
    if [ -n "$pw" ]; then
        out=$(timeout 3 redis-cli -h 127.0.0.1 -p "$port" -a "$pw" --no-auth-warning PING 2>/dev/null)
    else
        out=$(timeout 3 redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null)
    fi
    [ "$out" = PONG ]
}

# kv_redis_write_conf DIR PORT PASSWORD [MASTER_PORT]: write DIR/redis.conf
# from conf/redis.conf (only when missing). With MASTER_PORT the server is a
# replica of 127.0.0.1:MASTER_PORT and keeps an AOF. Paths in the file are
# relative: kv_redis_start runs the server inside DIR.
kv_redis_write_conf() {
    local dir=$1 port=$2 pw=$3 master=${4:-} tpl
    mkdir -p "$dir" || return 1
    [ -f "$dir/redis.conf" ] && return 0
    tpl=$(<"$KV_ROOT/conf/redis.conf") || return 1
    tpl=${tpl//@PORT@/"$port"}
    tpl=${tpl//@PASSWORD@/"$pw"}
    {
        printf '%s\n' "$tpl"
        if [ -n "$master" ]; then
            printf '\n# replica of the master on port %s; keeps an append-only file\n' "$master"
            printf 'replicaof 127.0.0.1 %s\nappendonly yes\n' "$master"
        fi
    } >"$dir/redis.conf.tmp" && mv -f "$dir/redis.conf.tmp" "$dir/redis.conf"
}

# kv_redis_start DIR [PASSWORD] [SECONDS]: start the redis of DIR/redis.conf
# (daemonized, pid file DIR/redis.pid), wait until it answers PING.
kv_redis_start() {
    local dir=$1 pw=${2:-} secs=${3:-10} port i
    port=$(awk '$1 == "port" { print $2; exit }' "$dir/redis.conf")
    [ -n "$port" ] || { echo "no port in $dir/redis.conf" >&2; return 1; }
    (cd "$dir" && redis-server ./redis.conf >>redis.out 2>&1) || {
        tail -n 20 "$dir/redis.out" "$dir/redis.log" 2>/dev/null >&2
        return 1
    }
    for ((i = 0; i < secs * 10; i++)); do
        kv_redis_ping "$port" "$pw" && return 0
        sleep 0.1
    done
    echo "redis in $dir (port $port) does not answer PING; last log lines:" >&2
    tail -n 20 "$dir/redis.log" 2>/dev/null >&2
    return 1
}

# ---------------------------------------------------------------- config files

# kv_conf_get FILE KEY: print the value of `KEY = value` (quotes removed,
# trailing -- comment dropped). Status 1 when the key is not there.
kv_conf_get() {
    K="$2" awk '
        BEGIN { k = ENVIRON["K"] }
        $0 ~ "^[ \t]*" k "[ \t]*=" {
            v = $0; sub(/^[^=]*=[ \t]*/, "", v)
            q = substr(v, 1, 1)
            if (q == "\"" || q == "\047") { v = substr(v, 2); v = substr(v, 1, index(v, q) - 1) }
            else { sub(/[ \t]*--.*$/, "", v); sub(/[ \t,;]+$/, "", v) }
            print v; found = 1; exit
        }
        END { exit !found }' "$1"
}

# kv_conf_set FILE KEY LUAVALUE: replace the line of KEY with `KEY = LUAVALUE`
# (LUAVALUE as written in Lua: "\"text\"", 42, true), or append it.
kv_conf_set() {
    local f=$1
    K="$2" V="$3" awk '
        BEGIN { k = ENVIRON["K"]; v = ENVIRON["V"] }
        !done && $0 ~ "^[ \t]*" k "[ \t]*=" { print k " = " v; done = 1; next }
        { print }
        END { if (!done) print k " = " v }' "$f" >"$f.tmp" && mv -f "$f.tmp" "$f"
}

# ---------------------------------------------------------------- processes

# kv_pid_of PIDFILE PATTERN: print the pid in PIDFILE when that process is
# alive and its command line or executable matches PATTERN (an ERE), so a
# stale pid file never names somebody else's process.
kv_pid_of() {
    local file=$1 pat=$2 pid cmd exe
    [ -r "$file" ] || return 1
    pid=
    read -r pid <"$file" 2>/dev/null   # status 1 without a final newline
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null)
    [[ "$cmd" =~ $pat || "$exe" =~ $pat ]] || return 1
    printf '%s\n' "$pid"
}

# kv_stop_pidfiles SECONDS PIDFILE:PATTERN ...: TERM each live process, wait
# up to SECONDS for all of them, KILL what is left. Prints one line per process.
kv_stop_pidfiles() {
    local secs=$1 spec pid i
    shift
    local -a pids=()
    for spec in "$@"; do
        pid=$(kv_pid_of "${spec%%:*}" "${spec#*:}") || continue
        kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    done
    [ ${#pids[@]} -eq 0 ] && return 0
    for ((i = 0; i < secs * 10; i++)); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive -eq 0 ] && return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "pid $pid did not stop on TERM within ${secs}s: KILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    sleep 0.2
    return 0
}
