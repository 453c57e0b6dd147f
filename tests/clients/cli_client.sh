#!/usr/bin/env bash
# cli_client.sh -- drives a Redis server (or kvp) with redis-cli's own modes,
# as an operator would: --pipe (mass insertion), --scan, --bigkeys, --stat,
# --eval, -3. One group of checks at a time.
#
#   cli_client.sh [-h HOST] [-p PORT] [-a PASSWORD] [-P PEER_PORT] GROUP...
#
# One line per check (`ok - WHAT`, `not ok - WHAT: DETAIL`); exit status 1
# when a check failed, 2 on a usage error. redis-cli has nothing for the
# groups tx, blocking and pubsub (an application does not use it for them):
# they print a comment and no check. Keys start with `cli:`.
set -u

GROUPS_ALL=" basic tx blocking pubsub scan scripts resp3 info "
HOST=127.0.0.1 PORT=6379 PW='' PEER=''
RUN=()
usage() {
    echo "usage: cli_client.sh [-h HOST] [-p PORT] [-a PASSWORD] [-P PEER_PORT] GROUP..." >&2
    echo "groups:$GROUPS_ALL" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
    -h | -p | -a | -P)
        [ $# -ge 2 ] || usage
        case "$1" in -h) HOST=$2 ;; -p) PORT=$2 ;; -a) PW=$2 ;; -P) PEER=$2 ;; esac
        shift 2
        ;;
    *)
        [[ "$GROUPS_ALL" == *" $1 "* ]] || usage
        RUN+=("$1")
        shift
        ;;
    esac
done
: "${PEER:=$PORT}"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cli_client.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
FAILED=0

# cli ARGS...: redis-cli against the server under test, never over 20 s
cli() {
    if [ -n "$PW" ]; then
        timeout 20 redis-cli -h "$HOST" -p "$PORT" -a "$PW" --no-auth-warning "$@"
    else
        timeout 20 redis-cli -h "$HOST" -p "$PORT" "$@"
    fi
}

# check WHAT FUNCTION: FUNCTION returns 0 for ok; else it sets DETAIL
check() {
    local what=$1
    DETAIL=''
    if "$2"; then
        echo "ok - $what"
    else
        echo "not ok - $what: ${DETAIL:-failed}" | tr '\n' ' ' | sed 's/ *$//'
        echo
        FAILED=$((FAILED + 1))
    fi
}

# expect WANT GOT: 0 when equal, else DETAIL says both
expect() {
    [ "$1" = "$2" ] && return 0
    DETAIL="expected [$1], got [$(printf '%s' "$2" | head -c 300)]"
    return 1
}

# resp_sets PREFIX N: the RESP of SET PREFIX<i> <i> for i in 0..N-1
resp_sets() {
    awk -v p="$1" -v n="$2" 'BEGIN {
        for (i = 0; i < n; i++) {
            k = p i; v = "" i
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
        }
    }'
}

# ---------------------------------------------------------------- basic

pipe_insert() {
    resp_sets cli:pipe: 1000 >"$TMP/pipe.resp"
    local out
    out=$(cli --pipe --pipe-timeout 10 <"$TMP/pipe.resp" 2>&1)
    expect "errors: 0, replies: 1000" "$(printf '%s\n' "$out" | grep '^errors:')" || return 1
    expect "999" "$(cli GET cli:pipe:999)"
}

get_set() {
    expect OK "$(cli SET cli:k 'two words')" || return 1
    expect "two words" "$(cli GET cli:k)"
}

stdin_value() {
    # -x: the last argument read from stdin, bytes as they are
    head -c 3000 /dev/urandom >"$TMP/blob"
    cli -x SET cli:blob <"$TMP/blob" >/dev/null || { DETAIL="SET -x failed"; return 1; }
    expect 3000 "$(cli STRLEN cli:blob)" || return 1
    # --raw GET prints the value and a newline
    cli --raw GET cli:blob | head -c 3000 | cmp -s - "$TMP/blob" || { DETAIL="GET returns other bytes"; return 1; }
}

# ---------------------------------------------------------------- scan

SCAN_N=2000
scan_fill() {
    resp_sets cli:scan: $SCAN_N >"$TMP/scan.resp"
    expect "errors: 0, replies: $SCAN_N" \
        "$(cli --pipe --pipe-timeout 10 <"$TMP/scan.resp" 2>&1 | grep '^errors:')"
}

scan_pattern() {
    cli --scan --pattern 'cli:scan:*' >"$TMP/scan.out" 2>"$TMP/scan.err" ||
        { DETAIL="redis-cli --scan failed: $(head -c 200 "$TMP/scan.err")"; return 1; }
    local n dups
    n=$(wc -l <"$TMP/scan.out")
    dups=$(sort "$TMP/scan.out" | uniq -d | head -n 3 | tr '\n' ' ')
    expect "$SCAN_N keys, no duplicate" "$n keys, ${dups:+duplicates $dups}${dups:-no duplicate}" || return 1
    seq -f 'cli:scan:%g' 0 $((SCAN_N - 1)) | sort >"$TMP/scan.want"
    sort "$TMP/scan.out" | cmp -s - "$TMP/scan.want" || { DETAIL="not the keys written"; return 1; }
}

scan_all() {
    cli --scan >"$TMP/all.out" 2>"$TMP/all.err" ||
        { DETAIL="redis-cli --scan failed: $(head -c 200 "$TMP/all.err")"; return 1; }
    expect $SCAN_N "$(grep -c '^cli:scan:' "$TMP/all.out")" || return 1
    expect "" "$(sort "$TMP/all.out" | uniq -d | head -n 3)"
}

bigkeys() {
    cli SET cli:big "$(head -c 100000 /dev/zero | tr '\0' x)" >/dev/null
    cli DEL cli:biglist >/dev/null
    cli RPUSH cli:biglist $(seq 1 1000) >/dev/null
    cli --bigkeys >"$TMP/big.out" 2>&1
    grep -q "Biggest string found '\"cli:big\"' has 100000 bytes" "$TMP/big.out" &&
        grep -q "Biggest   list found '\"cli:biglist\"' has 1000 items" "$TMP/big.out" && return 0
    DETAIL="summary: $(sed -n '/summary/,$p' "$TMP/big.out" | grep -E 'Sampled|Biggest|ERR|rror' | head -n 4 | tr '\n' ';')"
    [ -s "$TMP/big.out" ] || DETAIL="no output"
    grep -q -i err "$TMP/big.out" && DETAIL="$DETAIL $(grep -i -m 1 err "$TMP/big.out")"
    return 1
}

# ---------------------------------------------------------------- scripts

cli_eval() {
    printf '%s\n' "return redis.call('INCRBY', KEYS[1], ARGV[1])" >"$TMP/incr.lua"
    cli DEL cli:ev >/dev/null
    cli --eval "$TMP/incr.lua" cli:ev , 7 >/dev/null
    expect 14 "$(cli --eval "$TMP/incr.lua" cli:ev , 7)"
}

cli_eval_nokeys() {
    printf '%s\n' "return ARGV[1] .. '!'" >"$TMP/echo.lua"
    expect "hi!" "$(cli --eval "$TMP/echo.lua" , hi)"
}

# ---------------------------------------------------------------- resp3

resp3() {
    local out
    # raw output of a map: one `field value` line per entry
    out=$(cli -3 HELLO 3 2>&1 | awk '$1 == "proto" { print $2 }')
    expect 3 "$out" || { DETAIL="HELLO 3: $DETAIL $(cli -3 HELLO 3 2>&1 | head -c 200)"; return 1; }
    cli -3 DEL cli:r3h >/dev/null
    cli -3 HSET cli:r3h a 1 >/dev/null
    # a map reply: redis-cli prints `1# "a" => "1"` for RESP3
    expect '1# "a" => "1"' "$(cli -3 --no-raw HGETALL cli:r3h 2>&1)"
}

# ---------------------------------------------------------------- info

info_sections() {
    local s missing=''
    for s in server clients memory stats keyspace; do
        [ "$(cli INFO "$s" | grep -c '^[a-z_0-9]*:')" -gt 0 ] || missing="$missing $s"
    done
    expect "" "$missing" || { DETAIL="empty INFO sections:$missing"; return 1; }
}

cli_stat() {
    # a line every 0.5 s until killed (stdbuf: a killed redis-cli never
    # flushes its buffer); a data line: keys mem clients blocked requests
    # (+delta) connections
    timeout 1.8 stdbuf -oL redis-cli -h "$HOST" -p "$PORT" ${PW:+-a "$PW" --no-auth-warning} \
        --stat -i 0.5 >"$TMP/stat.out" 2>&1
    local line
    line=$(grep -E '^ *-?[0-9]' "$TMP/stat.out" | tail -n 1)
    if [ -z "$line" ]; then
        DETAIL="no data line: $(head -c 300 "$TMP/stat.out")"
        return 1
    fi
    # shellcheck disable=SC2086 # words on purpose
    set -- $line
    local keys=$1 mem=$2 clients=$3 blocked=$4 requests=$5 conns=${7:-}
    if [[ "$keys" =~ ^[0-9]+$ ]] && [ "$keys" -ge 1 ] &&
        [[ "$mem" =~ ^[0-9.]+[BKMGT]$ ]] && [ "${mem%[BKMGT]}" != 0 ] &&
        [[ "$clients" =~ ^[0-9]+$ ]] && [ "$clients" -ge 1 ] && [ "$clients" -lt 100000 ] &&
        [[ "$blocked" =~ ^[0-9]+$ ]] &&
        [[ "$requests" =~ ^[0-9]+$ ]] && [ "$requests" -ge 1 ] &&
        [[ "$conns" =~ ^[0-9]+$ ]] && [ "$conns" -ge 1 ]; then
        return 0
    fi
    DETAIL="line: $line"
    return 1
}

# ---------------------------------------------------------------- main

echo "# $(redis-cli --version) against $HOST:$PORT"
for g in "${RUN[@]}"; do
    echo "# group $g"
    case "$g" in
    basic)
        check "GET/SET" get_set
        check "--pipe: 1000 SETs, errors: 0, replies: 1000" pipe_insert
        check "-x SET from stdin (3000 random bytes)" stdin_value
        ;;
    scan)
        check "--pipe: $SCAN_N keys" scan_fill
        check "--scan --pattern: each of $SCAN_N keys once" scan_pattern
        check "--scan: every key, none twice" scan_all
        check "--bigkeys finds the biggest string and list" bigkeys
        ;;
    scripts)
        check "--eval with a key" cli_eval
        check "--eval with no keys" cli_eval_nokeys
        ;;
    resp3)
        check "-3: HELLO 3, map replies" resp3
        ;;
    info)
        check "INFO server/clients/memory/stats/keyspace not empty" info_sections
        check "--stat prints sane numbers" cli_stat
        ;;
    *) echo "# (no redis-cli checks in group $g)" ;;
    esac
done
[ $FAILED -eq 0 ]
