#!/usr/bin/env bash
# Issue 11, findings 8 and 11. With no client_password, kvp serves loopback
# clients only (protected mode, as Redis): a client from another address
# gets -DENIED, until protected_mode = false or a client_password is set.
# Out of file descriptors (ulimit -n), kvp neither spins on its listener nor
# floods its log: it stops accepting until its next tick and logs at most a
# line a second; once descriptors are free it serves again.
source "$(dirname "$0")/lib.sh"

OTHER=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -v '^127\.' | grep -v ':' | head -1)
M1=$(it_free_port); M2=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1

# ------------------------------------------------------------ protected mode
it_kvp_conf P test "$CS_PROXY"
sed -i 's/^listen = "127.0.0.1:/listen = "0.0.0.0:/' "$IT_DIR/P/kvp.conf"
it_kvp_start P test "$CS_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || exit 1
it_eq "a loopback client is served" "PONG" "$(redis-cli -p "$P_PORT" ping)"
if [ -n "$OTHER" ]; then
  out=$(redis-cli -h "$OTHER" -p "$P_PORT" ping 2>&1)
  it_check "a client from $OTHER (not loopback) is refused: ${out:0:60}" sh -c "echo '$out' | grep -q '^DENIED'"
  it_check "the refusal is logged" grep -q "refused client $OTHER" "$IT_DIR/P/kvp.log"
  for i in $(seq 1 50); do redis-cli -h "$OTHER" -p "$P_PORT" ping >/dev/null 2>&1; done
  n=$(grep -c "refused client $OTHER" "$IT_DIR/P/kvp.log")
  it_check "50 more refusals add no log line within 10 s ($n line(s))" test "$n" -le 2
  it_kill P
  echo 'protected_mode = false' >> "$IT_DIR/P/kvp.conf"
  it_kvp_start P test "$CS_PROXY" || exit 1
  it_eq "protected_mode = false: served" "PONG" "$(redis-cli -h "$OTHER" -p "$P_PORT" ping)"
  it_kill P
  sed -i '/^protected_mode = false$/d; s/^client_password = .*//' "$IT_DIR/P/kvp.conf"
  echo 'client_password = "pw1"' >> "$IT_DIR/P/kvp.conf"
  it_kvp_start P test "$CS_PROXY" || exit 1
  it_check "with a client_password: served (NOAUTH until AUTH)" \
    sh -c "redis-cli -h $OTHER -p $P_PORT ping 2>&1 | grep -q NOAUTH"
  it_eq "and AUTH works" "PONG" "$(redis-cli -h "$OTHER" -p "$P_PORT" -a pw1 --no-auth-warning ping)"
  it_kill P
else
  echo "# no non-loopback address on this machine: protected-mode checks skipped"
fi

# ---------------------------------------------------------------- EMFILE
it_kvp_conf Q test "$CS_PROXY"
(ulimit -n 128 && "$IT_BIN/kvp" -c "$IT_DIR/Q/kvp.conf" -d) || { echo "kvp Q did not start"; exit 1; }
it_wait 10 it_kvp_ready "$Q_PORT" || exit 1
QPID=$(cat "$IT_DIR/Q/kvp.pid")
cpu() { awk '{print $14 + $15}' "/proc/$QPID/stat"; }
python3 - "$Q_PORT" "$QPID" > "$IT_DIR/emfile.out" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
socks = []
for i in range(400):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    socks.append(s)
time.sleep(6)
for s in socks:
    s.close()
print("closed", len(socks))
PY
holder=$!
sleep 1
t0=$(cpu)
sleep 4
t1=$(cpu)
ticks=$((t1 - t0))
hz=$(getconf CLK_TCK)
it_check "out of descriptors, kvp does not spin ($ticks ticks of CPU in 4 s, at most 40 % of $hz/s)" \
  test "$ticks" -le $((hz * 4 * 40 / 100))
wait "$holder"
lines=$(grep -c "accept: Too many open files" "$IT_DIR/Q/kvp.log")
it_check "its log has at most a line a second about it ($lines lines in about 6 s)" test "$lines" -le 8
it_check "once descriptors are free it serves again" it_wait 10 sh -c "redis-cli -p $Q_PORT ping | grep -qx PONG"
it_done
