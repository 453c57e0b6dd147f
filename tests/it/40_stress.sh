#!/usr/bin/env bash
# The data path under abuse (under 2 minutes): the regressions the C review
# found, then load that mixes them, and at the end the proxy must still be
# alive, answer in order (tests/it/wire.lua) and have logged no error.
#  - a client that disconnects (RST) while kvp still has output for it used
#    to crash kvp (use after free in the write callback);
#  - ECHO <5 MB> and PING in one write: the PING was never answered;
#  - replies waiting behind a stuck first request were not bounded: with the
#    first GET on a SIGSTOPped master, 2000 GETs of 100 KB on the other one
#    all piled up in kvp's memory;
#  - idle connections kept the query buffer a 5 MB SET had grown, and freed
#    big buffers stayed in malloc's arenas: RSS never came back down.
# KVP_BIN=/path/to/kvp runs another build (e.g. one built with ASan).
source "$(dirname "$0")/lib.sh"
[ -n "${KVP_BIN:-}" ] && IT_BIN=$(dirname "$KVP_BIN")

M1=$(it_free_port); M2=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start P test "$CS_PROXY" || exit 1   # request_timeout = 1000 ms
it_wait 10 it_kvp_ready "$P_PORT" || { echo "proxy got no table"; exit 1; }
P=$P_PORT
R="redis-cli -p $P"
KVP_PID=$(cat "$IT_DIR"/P/*.pid)
T=$IT_DIR/payload
mkdir -p "$T"

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$KVP_PID/status" 2>/dev/null || echo 0; }
alive() { kill -0 "$KVP_PID" 2>/dev/null && $R ping 2>/dev/null | grep -qx PONG; }
# bulk FILE KEY BYTES: a SET of BYTES 'x' to KEY, as RESP, into FILE
set_cmd() {
  { printf '*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n' "${#2}" "$2" "$3"
    head -c "$3" /dev/zero | tr '\0' x; printf '\r\n'; } >"$1"
}
# rep N STRING: STRING N times
rep() { local i; for ((i = 0; i < $1; i++)); do printf '%s' "$2"; done; }

# foo lives on M2, hello on M1 (bucket parity, as in 10_data_path.sh)
set_cmd "$T/set1m" hello 1000000
exec 3<>"/dev/tcp/127.0.0.1/$P" && cat "$T/set1m" >&3 && it_eq "1 MB SET" "+OK" "$(head -c 5 <&3 | tr -d '\r\n')"
exec 3>&-

# 1. disconnect with output pending: RST while kvp waits to write
for i in $(seq 20); do
  exec 3<>"/dev/tcp/127.0.0.1/$P"
  rep 20 $'*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n' >&3
  sleep 0.1
  exec 3>&-   # unread replies in our socket: the kernel answers with RST
done
sleep 0.3
it_check "kvp survives 20 clients reset while it still had 20 MB to write to each" alive

# 2. a big local reply, then a command in the same read
{ printf '*2\r\n$4\r\nECHO\r\n$5000000\r\n'; head -c 5000000 /dev/zero | tr '\0' e; printf '\r\nPING\r\n'; } >"$T/echo"
exec 3<>"/dev/tcp/127.0.0.1/$P"
cat "$T/echo" >&3
got=$(timeout 5 head -c 5000019 <&3 | tail -c 7 | tr -d '\r\n')
exec 3>&-
it_eq "ECHO of 5 MB then PING in one write: both answered" "+PONG" "$got"

# 3. replies behind a stuck first request stay bounded
set_cmd "$T/set100k" hello 100000
exec 3<>"/dev/tcp/127.0.0.1/$P" && cat "$T/set100k" >&3 && head -c 5 <&3 >/dev/null
r0=$(rss)
kill -STOP "$(cat "$IT_DIR/redis-$M2.pid")"
printf '*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n' >&3
peak=$r0
for i in $(seq 20); do
  rep 100 $'*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n' >&3
  sleep 0.03
  r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
done
for i in $(seq 10); do sleep 0.05; r=$(rss); [ "$r" -gt "$peak" ] && peak=$r; done
kill -CONT "$(cat "$IT_DIR/redis-$M2.pid")"
want=$((22 + 2000 * 100011))
got=$(timeout 20 head -c "$want" <&3 | wc -c)
exec 3>&-
echo "rss before ${r0} kB, peak ${peak} kB while GET foo was stuck"
it_check "kvp held at most ~100 MB of the 200 MB of replies behind the stuck GET (grew $(((peak - r0) / 1024)) MB)" \
  test $((peak - r0)) -lt 102400
it_eq "then every reply came, in order: the timeout first, then 2000 x 100 KB" "$want" "$got"
it_wait 10 sh -c "redis-cli -p $P get foo | grep -vq unavailable"

# 4. memory comes back once the big values are gone
set_cmd "$T/set5m" hello 5000000
r0=$(rss)
for fd in 10 11 12 13 14 15 16 17 18 19; do
  eval "exec $fd<>/dev/tcp/127.0.0.1/$P"
  cat "$T/set5m" >&$fd
  head -c 5 <&$fd >/dev/null
done
r1=$(rss)
sleep 2.5
r2=$(rss)
echo "rss ${r0} kB, after ten 5 MB SETs ${r1} kB, the ten connections idle 2.5 s later ${r2} kB"
if it_sanitized; then
  # ASan's allocator keeps freed blocks in its quarantine and releases pages
  # on its own schedule: RSS says nothing about what kvp gave back
  echo "# not checked under ASan: idle connections give back what their SETs grew"
else
  it_check "idle connections give back what their 5 MB SETs grew (${r2} kB vs ${r0} kB before)" \
    test $((r2 - r0)) -lt 20480
fi
for fd in 10 11 12 13 14 15 16 17 18 19; do eval "exec $fd>&-"; done

# 5. load: pipelines, clients cut mid-pipeline, many keys, garbage
for pp in 1 16 64; do
  out=$(timeout 30 redis-benchmark -p "$P" -P $pp -c 50 -n 50000 -r 100000 -t set,get,mset -q 2>&1 | tr '\r' '\n' | grep 'per second')
  echo "$out" | sed "s/^/  -P $pp /"
  it_eq "redis-benchmark -P $pp: three tests done" "3" "$(echo "$out" | grep -c 'requests per second')"
done
for i in $(seq 15); do
  timeout 0.2 redis-benchmark -p "$P" -P 64 -c 50 -n 1000000 -r 100000 -t get,set,mset -q >/dev/null 2>&1
done
it_check "kvp alive after 15 benchmarks cut mid-pipeline" alive
keys=$(seq -f 'many:%g' 1 5000 | paste -sd' ')
mset=$(for k in $keys; do printf '%s v%s ' "$k" "$k"; done)
# shellcheck disable=SC2086
it_eq "MSET of 5000 keys" "OK" "$($R mset $mset)"
# shellcheck disable=SC2086
it_eq "MGET of 5000 keys, in order" "vmany:1 vmany:2500 vmany:5000" \
  "$($R mget $keys | sed -n '1p;2500p;5000p' | paste -sd' ')"
# shellcheck disable=SC2086
it_eq "DEL of 5000 keys and one missing" "5000" "$($R del $keys nokey)"
for i in $(seq 10); do
  exec 3<>"/dev/tcp/127.0.0.1/$P"
  { [ $((i % 2)) -eq 0 ] && printf '*2\r\n$3\r\nGET\r\n$1\r\nk\r\n'; head -c 100000 /dev/urandom; } >&3 2>/dev/null
  timeout 2 cat <&3 >/dev/null 2>&1
  exec 3>&-
done
it_check "kvp alive after 10 clients sent 100 KB of random bytes" alive

# 6. still correct, nothing logged as an error
out=$(timeout 60 "$IT_BIN/kvlua" "$IT_ROOT/tests/it/wire.lua" "$P" 2>&1)
echo "$out" | sed 's/^/  wire: /'
it_check "wire-level order checks pass after the stress" \
  sh -c "echo '$out' | grep -q '^ok' && ! echo '$out' | grep -q FAILED"
it_check "kvp still the same process" kill -0 "$KVP_PID"
it_eq "no ERROR in kvp.log" "0" "$(grep -c ' ERROR ' "$IT_DIR/P/kvp.log")"
it_done
