#!/usr/bin/env bash
# Data path with two masters: keys land on the right master under the right
# prefix (SPEC §2), hash tags, multi-key split/merge, fan-out, wire-level
# framing and ordering (tests/it/wire.lua), and test_all -l 20.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || { echo "init_table failed"; exit 1; }
it_kvp_start P test "$CS_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || { echo "proxy got no table"; exit 1; }
R="redis-cli -p $P_PORT"

# bucket i -> address_list[i % 2]: even buckets on M1, odd on M2.
$R set foo v1 >/dev/null; $R set hello v2 >/dev/null; $R set key:1 v3 >/dev/null
it_eq "foo (bucket 705) stored as 705_foo on the second master" "v1" "$(it_redis "$M2" get 705_foo)"
it_eq "hello (bucket 804) stored as 804_hello on the first master" "v2" "$(it_redis "$M1" get 804_hello)"
it_eq "key:1 (bucket 63) on the second master" "v3" "$(it_redis "$M2" get 63_key:1)"
it_eq "nothing unprefixed on the masters" "0" "$(it_redis "$M1" exists foo hello key:1)$(true)"
$R set '{a}x' 1 >/dev/null; $R set '{a}y' 2 >/dev/null
it_eq "hash tag {a} hashes 'a' (bucket 241): both keys on the second master" "2" \
  "$(it_redis "$M2" exists '241_{a}x' '241_{a}y')"
it_eq "same-bucket RENAME with hash tags" "OK" "$($R rename '{a}x' '{a}z')"
it_eq "cross-bucket RENAME refused" "CROSSSLOT Keys in request don't hash to the same bucket" "$($R rename foo hello)"
it_eq "MGET across masters in key order with a nil" "v1,v2,,v3" "$($R mget foo hello missing key:1 | paste -sd,)"
it_eq "EXISTS summed over masters" "3" "$($R exists foo hello key:1 missing)"
it_eq "DBSIZE summed over masters" "5" "$($R dbsize)"
it_eq "INFO keyspace summed" "db0:keys=5,expires=0,avg_ttl=0" "$($R info keyspace | tr -d '\r' | grep ^db0)"
k=$($R randomkey)
case "$k" in foo|hello|key:1|'{a}y'|'{a}z') r=ok ;; *) r="$k" ;; esac
it_eq "RANDOMKEY returns a client key (prefix stripped)" "ok" "$r"
it_eq "MSET over masters" "OK" "$($R mset m1 a m2 b m3 c m4 d m5 e)"
it_eq "DEL summed over masters" "10" "$($R del foo hello key:1 '{a}y' '{a}z' m1 m2 m3 m4 m5)"
it_eq "FLUSHALL fanned out" "OK" "$($R flushall)"
it_eq "empty after FLUSHALL" "0" "$($R dbsize)"
it_eq "unsupported command" "ERR command 'lastsave' is not supported by the proxy" "$($R lastsave)"
it_eq "unknown command" "ERR unknown command 'nosuch'" "$($R nosuch)"
it_eq "wrong arity" "ERR wrong number of arguments for 'get' command" "$($R get)"
it_eq "SELECT 0" "OK" "$($R select 0)"
it_eq "EVAL with keys in one bucket" "v" "$($R eval "redis.call('SET', KEYS[1], 'v') return redis.call('GET', KEYS[1])" 1 '{e}k')"
it_eq "EVAL across buckets refused" "CROSSSLOT Keys in request don't hash to the same bucket" "$($R eval "return 1" 2 foo hello)"
$R del '{e}k' >/dev/null

it_check "wire-level framing, ordering and protocol errors" "$IT_BIN/kvlua" "$IT_ROOT/tests/it/wire.lua" "$P_PORT"
it_check "test_all -l 20 passes" sh -c "'$IT_BIN/test_all' -p $P_PORT -l 20 > '$IT_DIR/test_all.out' 2>&1 && tail -1 '$IT_DIR/test_all.out' | grep -qx 'PASSED ALL TEST'"
tail -2 "$IT_DIR/test_all.out"
it_done
