#!/usr/bin/env bash
# Introspection clients rely on (issue 12, item 8): INFO sections with real
# numbers for the whole proxy (two workers), redis-cli --stat, CLIENT LIST /
# INFO / KILL across workers, CONFIG GET (redis-benchmark stays quiet) and
# CONFIG SET refused, COMMAND from the proxy's own table, MONITOR and
# replication commands refused.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port)
it_redis_start "$M1" || exit 1
it_redis_start "$M2" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" introns 256 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start P introns "$CS_PROXY" "" 'io_threads = 2' || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || { echo "no table"; exit 1; }
R() { redis-cli -p "$P_PORT" "$@"; }
field() { R info "$1" | tr -d '\r' | sed -n "s/^$2://p"; }

# ---------------------------------------------------------------- INFO
for i in $(seq 1 50); do echo "SET k$i v$i"; done | R >/dev/null
R set withttl v EX 1000 >/dev/null
keys=$(R info keyspace | tr -d '\r' | sed -n 's/^db0:keys=\([0-9]*\),expires=\([0-9]*\).*/\1 \2/p')
it_eq "keyspace summed over both masters" "51 1" "$keys"
it_eq "plain INFO has the default sections" \
  "# Server|# Clients|# Memory|# Persistence|# Stats|# Replication|# CPU|# Keyspace" \
  "$(R info | tr -d '\r' | grep '^#' | paste -sd'|')"
it_eq "INFO memory alone" "# Memory" "$(R info memory | tr -d '\r' | grep '^#' | paste -sd'|')"
it_eq "an unknown section is empty, as Redis answers it" "" "$(R info nosuch)"
rss=$(field memory used_memory_rss)
statm=$(awk '{print $2 * 4096}' "/proc/$(cat "$IT_DIR/P/kvp.pid")/statm")
it_check "used_memory_rss is the proxy's own RSS ($rss ~ $statm)" \
  test "$rss" -gt $((statm / 2)) -a "$rss" -lt $((statm * 2))
it_check "used_memory is a real figure" test "$(field memory used_memory)" -gt 100000
c1=$(field stats total_commands_processed)
n1=$(field stats total_connections_received)
redis-benchmark -p "$P_PORT" -n 20000 -c 4 -t set -q > "$IT_DIR/bench.out" 2>&1
it_check "redis-benchmark stays quiet (CONFIG GET save/appendonly answered)" \
  sh -c "! grep -qi 'warning\|error' '$IT_DIR/bench.out'"
c2=$(field stats total_commands_processed)
n2=$(field stats total_connections_received)
it_check "total_commands_processed counts every worker ($c1 -> $c2)" test $((c2 - c1)) -ge 20000
it_check "total_connections_received grows with connections ($n1 -> $n2)" test $((n2 - n1)) -ge 4
it_check "net input and output counted" test "$(field stats total_net_input_bytes)" -gt 100000 \
  -a "$(field stats total_net_output_bytes)" -gt 100000
# a steady load: instantaneous_ops_per_sec sees it
redis-benchmark -p "$P_PORT" -n 1000000 -c 2 -P 4 -t get -q > /dev/null 2>&1 &
bench=$!
sleep 2.5
ops=$(field stats instantaneous_ops_per_sec)
kill "$bench" 2>/dev/null; wait "$bench" 2>/dev/null
it_check "instantaneous_ops_per_sec under load ($ops)" test "$ops" -gt 500
sleep 2
it_check "instantaneous_ops_per_sec falls when the load stops" test "$(field stats instantaneous_ops_per_sec)" -lt "$ops"

h1=$(field stats keyspace_hits); m1=$(field stats keyspace_misses)
R get k1 >/dev/null; R get k2 >/dev/null; R get nosuch >/dev/null
it_eq "keyspace_hits / misses summed over the masters" "2 1" \
  "$(( $(field stats keyspace_hits) - h1 )) $(( $(field stats keyspace_misses) - m1 ))"
sets=$(R info commandstats | tr -d '\r' | sed -n 's/^cmdstat_set:calls=//p')
it_check "INFO commandstats counts calls over both workers ($sets)" test "$sets" -ge 20051
it_check "commandstats is in INFO all, not in the default set" sh -c \
  "redis-cli -p $P_PORT info all | grep -q '^# Commandstats' && ! redis-cli -p $P_PORT info | grep -q '^# Commandstats'"

# redis-cli --stat reads keys, mem, clients, blocked, requests, connections
timeout 3.5 stdbuf -o0 redis-cli -p "$P_PORT" --stat -i 1 > "$IT_DIR/stat.out" 2>&1
row=$(grep -E '^[0-9]' "$IT_DIR/stat.out" | tail -1)
echo "  --stat: $row"
it_check "redis-cli --stat prints no missing field" sh -c "! grep -q -- '-9223372036854775808' '$IT_DIR/stat.out'"
it_eq "redis-cli --stat: keys, as INFO keyspace" "$(field keyspace db0 | sed 's/keys=\([0-9]*\),.*/\1/')" \
  "$(echo "$row" | awk '{print $1}')"
it_check "redis-cli --stat: clients, requests, connections" sh -c \
  "echo '$row' | awk '{ exit !(\$3 >= 1 && \$4 == 0 && \$5 > 20000 && \$NF > 4) }'"

# ---------------------------------------------------- CLIENT across workers
# eight connections held open (bash /dev/tcp), spread by SO_REUSEPORT over
# the two workers; any one of them lists all
conn_ids=()
for i in 0 1 2 3 4 5 6 7; do
  eval "exec $((20 + i))<>/dev/tcp/127.0.0.1/$P_PORT"
  printf 'CLIENT SETNAME held%d\r\nCLIENT ID\r\n' "$i" >&$((20 + i))
  read -r ok <&$((20 + i)); read -r id <&$((20 + i))
  conn_ids+=("$(echo "$id" | tr -d ':\r')")
done
listed=$(R client list | grep -c 'name=held')
it_eq "CLIENT LIST from one connection lists the clients of both workers" "8" "$listed"
ids_seen=$(R client list | grep -o 'id=[0-9]* ' | wc -l)
it_check "CLIENT LIST shows the held clients and the caller" test "$ids_seen" -ge 9
line=$(R client list id "${conn_ids[3]}")
it_check "CLIENT LIST ID: one line, Redis's fields" sh -c \
  "echo '$line' | grep -Eq '^id=${conn_ids[3]} addr=127.0.0.1:[0-9]+ laddr=127.0.0.1:$P_PORT fd=[0-9]+ name=held3 age=[0-9]+ idle=[0-9]+ flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 .* cmd=client\\|id user=default redir=-1 resp=2\$'"
it_check "CLIENT INFO describes the caller" sh -c "R() { redis-cli -p $P_PORT \"\$@\"; }; R client info | grep -q 'cmd=client|info '"
it_eq "CLIENT LIST TYPE pubsub: none of the proxy's clients" "" "$(R client list type pubsub)"
it_eq "CLIENT LIST TYPE bogus" "ERR Unknown client type 'bogus'" "$(R client list type bogus)"
it_eq "CLIENT KILL ID closes that client (1 killed)" "1" "$(R client kill id "${conn_ids[5]}")"
sleep 0.3
printf 'PING\r\n' >&25 2>/dev/null
got=$(timeout 2 cat <&25 | tr -d '\r'; echo "rc=${PIPESTATUS[0]}")
it_eq "the killed connection is closed (end of file at once, no reply)" "rc=0" "$got"
printf 'PING\r\n' >&24
read -r pong <&24
it_eq "its neighbour is still served" "+PONG" "$(echo "$pong" | tr -d '\r')"
it_eq "CLIENT LIST no longer lists it" "7" "$(R client list | grep -c 'name=held')"
it_eq "CLIENT KILL ADDR of nobody" "0" "$(R client kill addr 1.2.3.4:5)"
it_eq "CLIENT KILL old form of nobody" "ERR No such client" "$(R client kill 1.2.3.4:5)"
it_eq "CLIENT KILL ID 0" "ERR client-id should be greater than 0" "$(R client kill id 0)"
addr=$(R client list id "${conn_ids[6]}" | sed 's/.* addr=\([^ ]*\) .*/\1/')
it_eq "CLIENT KILL ip:port (old form)" "OK" "$(R client kill "$addr")"
it_eq "CLIENT KILL ID of oneself with SKIPME yes spares it" "0" \
  "$(printf 'CLIENT KILL ID %s SKIPME yes\r\n' "${conn_ids[0]}" >&20; read -r r <&20; echo "$r" | tr -d ':\r')"
it_eq "CLIENT SETINFO answered as Redis 7.2 (libraries send it)" "OK|OK" \
  "$( (R client setinfo lib-name redis-py; R client setinfo LIB-VER 5.0.1) | paste -sd'|')"
it_eq "CLIENT SETINFO bad option" "ERR Unrecognized option 'foo'" "$(R client setinfo foo bar)"
it_eq "CLIENT NO-EVICT" "OK" "$(R client no-evict on)"
it_eq "CLIENT PAUSE refused" "ERR command 'client|pause' is not supported by the proxy" "$(R client pause 10)"
it_eq "CLIENT unknown subcommand" "ERR unknown subcommand 'nope'. Try CLIENT HELP." "$(R client nope)"
for i in 0 1 2 3 4 5 6 7; do eval "exec $((20 + i))>&-"; done

# -------------------------------------------------------------- CONFIG
it_eq "CONFIG GET save appendonly" "appendonly|no|save|" "$(R config get save appendonly | paste -sd'|')"
it_eq "CONFIG GET glob, any case" "maxmemory|0|maxmemory-clients|0|maxmemory-policy|noeviction" \
  "$(R config get 'MAXMEM*' | paste -sd'|')"
it_eq "CONFIG GET databases / port / io-threads" "databases|1|io-threads|2|port|$P_PORT" \
  "$(R config get databases port io-threads | paste -sd'|')"
it_eq "CONFIG GET of nothing" "" "$(R config get nosuch)"
it_eq "CONFIG SET refused" "ERR command 'config|set' is not supported by the proxy" "$(R config set maxmemory 1)"
it_eq "CONFIG RESETSTAT refused" "ERR command 'config|resetstat' is not supported by the proxy" "$(R config resetstat)"
it_eq "CONFIG GET arity" "ERR wrong number of arguments for 'config|get' command" "$(R config get)"

# ------------------------------------------------------------- COMMAND
served=$(grep -c '^KVP_CMD("[a-z_-]*", *-\?[0-9]*, *\(LOCAL\|KEYED\|SPLIT\|FANOUT\|ANY\|SESSION\|KEYSPACE\|PUBSUB\)' "$IT_ROOT/c/proxy/cmdtab_gen.inc")
subserved=$(grep -E '^KVP_CMD\("[a-z_-]+",.*UNSUPPORTED.*container' "$IT_ROOT/c/proxy/cmdtab_gen.inc" | wc -l)
it_eq "COMMAND COUNT: the commands the proxy serves" "$((served + subserved))" "$(R command count)"
J() { redis-cli -p "$P_PORT" -2 --json "$@"; }
JM() { redis-cli -p "$M1" -a "$IT_PW" --no-auth-warning -2 --json "$@"; }
it_eq "COMMAND (all) has COUNT entries" "$(R command count)" "$(J command | jq length)"
it_eq "COMMAND INFO get" '["get",2,["readonly","fast"],1,1,1,["@read","@fast"],[]]' \
  "$(J command info get | jq -c '.[0][0:8]')"
it_eq "COMMAND INFO: a key spec as Redis writes it" \
  "$(JM command info get | jq -c '.[0][8][0][2:]')" "$(J command info get | jq -c '.[0][8][0][2:]')"
it_eq "COMMAND INFO nil for a refused command" "[null]" "$(J command info wait | jq -c .)"
for c in mset rename eval zunionstore object; do
  it_eq "COMMAND INFO $c: arity, first/last/step as Redis" \
    "$(JM command info $c | jq -c '.[0] | [.[1], .[3], .[4], .[5]]')" \
    "$(J command info $c | jq -c '.[0] | [.[1], .[3], .[4], .[5]]')"
done
it_eq "COMMAND INFO object: served subcommands only" '["object|encoding","object|freq","object|help","object|idletime","object|refcount"]' \
  "$(J command info object | jq -c '[.[0][9][][0]] | sort')"
it_eq "COMMAND GETKEYS uses the proxy's keys" "a|c" "$(R command getkeys mset a b c d | paste -sd'|')"
it_eq "COMMAND GETKEYS numkeys" "k1|k2" "$(R command getkeys eval 'return 1' 2 k1 k2 x | paste -sd'|')"
it_eq "COMMAND GETKEYS of a refused command" "ERR command 'migrate' is not supported by the proxy" \
  "$(R command getkeys migrate h 1 k 0 1)"
it_eq "COMMAND GETKEYS no keys" "ERR The command has no key arguments" "$(R command getkeys echo x)"
it_eq "COMMAND GETKEYS unknown" "ERR Invalid command specified" "$(R command getkeys nosuch a)"
it_eq "COMMAND GETKEYS bad count" "ERR Invalid number of arguments specified for command" \
  "$(R command getkeys get a b)"
it_check "COMMAND LIST has served commands only" sh -c \
  "redis-cli -p $P_PORT command list > '$IT_DIR/list' && grep -qx get '$IT_DIR/list' && grep -qx 'object|encoding' '$IT_DIR/list' && ! grep -qx monitor '$IT_DIR/list' && ! grep -qx wait '$IT_DIR/list'"
it_eq "COMMAND LIST FILTERBY PATTERN" "getdel|getex" "$(R command list filterby pattern 'GET[DE]*' | sort | paste -sd'|')"
docs=$(R --no-raw command docs get wait mset | grep -E '^[0-9]+\) "' | paste -sd'|')
it_eq "COMMAND DOCS: a master's docs, for served commands only" '1) "get"|3) "mset"' "$docs"
it_check "COMMAND DOCS (all) leaves refused commands out" sh -c \
  "redis-cli -p $P_PORT --no-raw command docs > '$IT_DIR/docs' && grep -q '\"hset\"' '$IT_DIR/docs' && ! grep -q '^[0-9]*) \"monitor\"' '$IT_DIR/docs'"

# ------------------------------------------------- refused, clearly
T() { "$IT_BIN/kvlua" "$IT_ROOT/tests/it/timed.lua" "$P_PORT" "$@" | cut -d' ' -f2-; }
exec 30<>/dev/tcp/127.0.0.1/$P_PORT
printf 'MONITOR\r\n' >&30
read -r mon <&30
exec 30>&-
it_eq "MONITOR refused" "-ERR command 'monitor' is not supported by the proxy" "$(echo "$mon" | tr -d '\r')"
for c in sync "psync ? -1" "replicaof no one" "slaveof no one"; do
  name=${c%% *}
  it_eq "$name refused" "-ERR command '$name' is not supported by the proxy" "$(T "$c")"
done
it_done
