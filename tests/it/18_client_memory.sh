#!/usr/bin/env bash
# Issue 11, finding 13: clients that pipeline GETs of a 100 KB value and never
# read used to make kvp hold their replies up to 512 MB each (RSS 1.27 GB
# for three) while a bystander waited seconds. With maxmemory_clients_mb the
# client using the most is closed when all clients' buffers pass it, and
# client_output_hard_mb closes a single slow reader; the bystander is served
# throughout and kvp's memory stays near the cap.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_conf P test "$CS_PROXY"
echo 'maxmemory_clients_mb = 64' >> "$IT_DIR/P/kvp.conf"
sed -i 's/^request_timeout = .*/request_timeout = 10000/' "$IT_DIR/P/kvp.conf"
it_kvp_start P test "$CS_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || exit 1
PID=$(cat "$IT_DIR/P/kvp.pid")
head -c 100000 /dev/zero | tr '\0' v | redis-cli -p "$P_PORT" -x set big >/dev/null

# three slow readers: 4000 pipelined GETs each (400 MB of replies), never read
python3 - "$P_PORT" > "$IT_DIR/storm.out" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
cmd = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 4000
socks = []
for i in range(3):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(cmd)
    socks.append(s)
time.sleep(8)
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                closed += 1
                break
    except BlockingIOError:
        pass
    except ConnectionResetError:
        closed += 1
print("closed", closed)
PY
storm=$!
peak=0 worst=0
for i in $(seq 1 30); do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
  [ "$rss" -gt "$peak" ] && peak=$rss
  t0=$(date +%s%N)
  redis-cli -p "$P_PORT" ping >/dev/null
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ "$ms" -gt "$worst" ] && worst=$ms
  sleep 0.2
done
wait "$storm"
cat "$IT_DIR/storm.out"
echo "# kvp RSS peak under the storm: $((peak / 1024)) MiB; bystander's slowest PING: $worst ms"
it_check "kvp's memory stays near the 64 MiB cap (peak RSS $((peak / 1024)) MiB < 200)" test "$peak" -lt $((200 * 1024))
it_check "the bystander is served all along (slowest PING $worst ms < 500)" test "$worst" -lt 500
it_check "the slow readers were closed ($(cat "$IT_DIR/storm.out"))" grep -q "closed [123]" "$IT_DIR/storm.out"
it_check "each closing is logged" grep -q "it uses the most of all clients' buffers" "$IT_DIR/P/kvp.log"
it_eq "the bystander still reads the value" "100000" "$(redis-cli -p "$P_PORT" strlen big)"
it_done
