#!/usr/bin/env bash
# client_password: every command but AUTH/HELLO/QUIT gets NOAUTH until the
# client authenticates; a wrong password is refused; test_all -a works.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port)
it_redis_start "$M1" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" authns 256 "127.0.0.1:$M1" || exit 1
it_kvp_start P authns "$CS_PROXY" "" 'client_password = "s3cret"' || exit 1
T() { "$IT_BIN/kvlua" "$IT_ROOT/tests/it/timed.lua" "$P_PORT" "$@" | cut -d' ' -f2- | paste -sd'|'; }

it_eq "commands before AUTH are refused" \
  "-NOAUTH Authentication required.|-NOAUTH Authentication required." "$(T "PING" "GET k")"
it_eq "wrong password refused, right one accepted, then served" \
  "-WRONGPASS invalid username-password pair or user is disabled.|OK|OK|v" \
  "$(T "AUTH nope" "AUTH s3cret" "SET k v" "GET k")"
it_eq "AUTH default <password> form" "OK|PONG" "$(T "AUTH default s3cret" "PING")"
it_eq "HELLO 3 before AUTH: Redis's NOAUTH" "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time" "$(T "HELLO 3")"
it_eq "HELLO 3 AUTH with a wrong password: WRONGPASS" "-WRONGPASS invalid username-password pair or user is disabled." \
  "$(T "HELLO 3 AUTH default nope")"
it_eq "HELLO 3 AUTH default <password>: RESP3 and served" "proto 3 v" \
  "$(printf 'HELLO 3 AUTH default s3cret\nGET k\n' | redis-cli -p "$P_PORT" | grep -x 'proto 3') $(printf 'HELLO 3 AUTH default s3cret\nGET k\n' | redis-cli -p "$P_PORT" | tail -1)"
it_check "test_all -a passes" sh -c "'$IT_BIN/test_all' -p $P_PORT -a s3cret > '$IT_DIR/ta.out' 2>&1"
tail -1 "$IT_DIR/ta.out"
it_done
