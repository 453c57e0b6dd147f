#!/usr/bin/env bash
# Issue 12, item 3: pub/sub through two kvp of one namespace over three
# masters. SUBSCRIBE on one proxy, PUBLISH on the other (a channel on each
# master); PSUBSCRIBE receiving from every master; SSUBSCRIBE / SPUBLISH;
# PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARD* merged; subscribed mode as
# redis-server has it (its error text, PING, RESET); UNSUBSCRIBE of all; a
# disconnect dropping the master-side subscription; 1000 subscribers on a
# handful of master connections; a subscriber connection killed on the
# master (CLIENT KILL TYPE pubsub) subscribed again; a table change
# (replace_server) moving channels and patterns. The checks themselves
# are tests/it/pubsub.py (raw sockets: every byte a client reads).
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port); M4=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" && it_redis_start "$M3" && it_redis_start "$M4" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" "127.0.0.1:$M3" || exit 1
# two workers on A (each has its own subscriber connections); a small
# output limit, so a subscriber that does not read is closed
it_kvp_start PA test "$CS_PROXY" "" "io_threads = 2
client_output_hard_mb = 2" || exit 1
it_kvp_start PB test "$CS_PROXY" || exit 1
it_kvp_start PC test "$CS_PROXY" "" "client_timeout = 1" || exit 1
it_wait 10 it_kvp_ready "$PA_PORT" || exit 1
it_wait 10 it_kvp_ready "$PB_PORT" || exit 1

it_check "pub/sub scenarios (tests/it/pubsub.py, lines above)" \
  python3 "$IT_ROOT/tests/it/pubsub.py" "$PA_PORT" "$PB_PORT" "$IT_PW" "$M1" "$M2" "$M3"
it_check "the reconnect of a killed subscriber connection is logged" \
  grep -q "subscribing .* again" "$IT_DIR/PA/kvp.log"
it_check "the slow subscriber's close is logged" grep -q "over client_output_hard_mb" "$IT_DIR/PA/kvp.log"
it_check "table change: subscriptions follow (tests/it/pubsub.py --move, lines above)" \
  python3 "$IT_ROOT/tests/it/pubsub.py" --move "$PA_PORT" "$PB_PORT" "$IT_PW" "$M3" "$M4" "$CS_HTTP"
it_check "client_timeout spares subscribers (tests/it/pubsub.py --idle, lines above)" \
  python3 "$IT_ROOT/tests/it/pubsub.py" --idle "$PC_PORT" "$PB_PORT" "$IT_PW"
it_check "both proxies still serve data" sh -c "redis-cli -p $PA_PORT set k v | grep -q OK && redis-cli -p $PB_PORT get k | grep -q v"
it_done
