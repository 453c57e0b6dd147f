#!/usr/bin/env bash
# Issue 12, item 6: keys named by keyword. GEORADIUS / GEORADIUSBYMEMBER with
# STORE / STOREDIST, SORT / SORT_RO with BY / GET patterns (allowed with the
# sorted key's hash tag, rewritten with the bucket prefix) and STORE, XREAD /
# XREADGROUP STREAMS (stream names restored in the reply), LMPOP / ZMPOP /
# SINTERCARD by numkeys -- through kvp on two real masters, each answer
# compared with a plain redis-server (R) given the same commands directly.
# Malformed invocations must read exactly as redis-server words them.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port); R=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" && it_redis_start "$R" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_start P test "$CS_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || exit 1

P() { redis-cli -p "$P_PORT" "$@" 2>&1; }
Rd() { it_redis "$R" "$@" 2>&1; }
both() { P "$@" >/dev/null; Rd "$@" >/dev/null; }
# same "what" cmd...: kvp answers exactly what redis-server answers
same() { local what=$1; shift; it_eq "$what" "$(Rd "$@")" "$(P "$@")"; }
# on "what" pattern cmd...: kvp's answer matches an extended regex
on() { local what=$1 re=$2; shift 2; local out; out=$(P "$@"); it_check "$what: ${out:0:100}" grep -Eq "$re" <<<"$out"; }
stored() { { it_redis "$M1" --scan --pattern "$1"; it_redis "$M2" --scan --pattern "$1"; } | sort; }

# --- COPY ... DB n: the proxy serves db 0 only ------------------------------
P set '{c}a' v >/dev/null
on "COPY into db 1: out of range, as SELECT 1 is" "^ERR DB index is out of range" copy '{c}a' '{c}b' DB 1
it_eq "  nothing copied anywhere" "0" "$(P exists '{c}b')"
it_eq "COPY ... DB 0 served" "1" "$(P copy '{c}a' '{c}b' DB 0)"

# --- GEORADIUS / GEORADIUSBYMEMBER ... STORE / STOREDIST -------------------
both geoadd '{g}src' 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
same "GEORADIUS ... STORE into a same-tag key" georadius '{g}src' 15 37 200 km STORE '{g}dst'
same "the stored set" zrange '{g}dst' 0 -1 WITHSCORES
it_check "stored on a master under the bucket prefix" sh -c "[ \"\$(echo '$(stored '*_{g}dst')' | grep -c '^[0-9]*_{g}dst$')\" = 1 ]"
same "GEORADIUS ... STOREDIST" georadius '{g}src' 15 37 200 km STOREDIST '{g}dist'
same "the distances" zrange '{g}dist' 0 -1 WITHSCORES
same "GEORADIUSBYMEMBER ... STORE, options before it" georadiusbymember '{g}src' Palermo 300 km ASC COUNT 1 STORE '{g}m'
same "its set" zrange '{g}m' 0 -1
same "GEORADIUS without STORE" georadius '{g}src' 15 37 200 km WITHDIST ASC
same "GEORADIUS_RO" georadius_ro '{g}src' 15 37 200 km
on "GEORADIUS ... STORE into another bucket: CROSSSLOT" '^CROSSSLOT' georadius '{g}src' 15 37 200 km STORE '{h}dst'
on "GEORADIUSBYMEMBER ... STOREDIST into another bucket: CROSSSLOT" '^CROSSSLOT' georadiusbymember '{g}src' Palermo 300 km STOREDIST other
it_eq "nothing stored under the refused names" "" "$(stored '*dst' | grep -v '{g}dst')"

# --- SORT / SORT_RO ----------------------------------------------------------
both rpush '{s}list' 3 1 2
both mset '{s}w_1' 30 '{s}w_2' 20 '{s}w_3' 10
both hset '{s}h_1' f one
both hset '{s}h_2' f two
both hset '{s}h_3' f three
same "SORT" sort '{s}list'
same "SORT BY a same-tag pattern" sort '{s}list' BY '{s}w_*'
same "SORT BY / GET # / GET ->field" sort '{s}list' BY '{s}w_*' GET '#' GET '{s}h_*->f'
same "SORT BY nosort (no '*': names no key)" sort '{s}list' BY nosort
same "SORT LIMIT ALPHA DESC" sort '{s}list' LIMIT 0 2 ALPHA DESC
same "SORT ... STORE into a same-tag key" sort '{s}list' BY '{s}w_*' GET '{s}h_*->f' STORE '{s}out'
same "the stored list" lrange '{s}out' 0 -1
same "SORT_RO BY / GET" sort_ro '{s}list' BY '{s}w_*' GET '{s}h_*->f'
on "SORT BY without the key's hash tag: refused" "^ERR BY option of SORT denied by the proxy" sort '{s}list' BY 'w_*'
on "SORT GET with the tag after the '*': refused" "^ERR GET option of SORT denied by the proxy" sort '{s}list' GET 'h_*->f{s}'
on "SORT GET with another bucket's tag: refused" "^ERR GET option of SORT denied" sort '{s}list' GET '{t}h_*->f'
on "SORT ... STORE into another bucket: CROSSSLOT" '^CROSSSLOT' sort '{s}list' STORE '{t}out'
it_eq "SORT_RO's STORE is not a key (Redis: syntax error)" "$(Rd sort_ro '{s}list' STORE '{s}x')" "$(P sort_ro '{s}list' STORE '{s}x')"

# --- XREAD / XREADGROUP STREAMS -------------------------------------------------
both xadd '{x}a' 1-1 f v
both xadd '{x}a' 1-2 f w
both xadd '{x}b' 2-1 g z
same "XREAD STREAMS k1 k2 (same tag): the client's stream names" xread STREAMS '{x}a' '{x}b' 0 0
same "XREAD COUNT" xread COUNT 1 STREAMS '{x}a' '{x}b' 0 0
same "XREAD with nothing new: nil" xread STREAMS '{x}a' '$'
both xgroup create '{x}a' grp 0
both xgroup create '{x}b' grp 0
same "XREADGROUP GROUP ... STREAMS k1 k2 >" xreadgroup GROUP grp c1 COUNT 10 STREAMS '{x}a' '{x}b' '>' '>'
same "XREADGROUP NOACK, then nothing new" xreadgroup GROUP grp c1 NOACK STREAMS '{x}a' '>'
same "XREADGROUP the pending entries" xreadgroup GROUP grp c1 STREAMS '{x}a' 0
same "XPENDING after it" xpending '{x}a' grp
same "XREADGROUP on a missing group: NOGROUP names the client's key" xreadgroup GROUP nogrp c1 STREAMS '{x}a' '>'
on "XREAD over two buckets: CROSSSLOT" '^CROSSSLOT' xread STREAMS '{x}a' '{y}b' 0 0
same "XREAD BLOCK with nothing new: nil after the block (tests/it/22_blocking.sh wakes one)" xread BLOCK 10 STREAMS '{x}a' '$'
same "XREADGROUP BLOCK with nothing new: nil" xreadgroup GROUP grp c1 BLOCK 10 STREAMS '{x}a' '>'

# --- LMPOP / ZMPOP / SINTERCARD ---------------------------------------------------
both rpush '{l}a' 1 2 3
both zadd '{z}a' 1 x 2 y
both sadd '{i}a' 1 2 3
both sadd '{i}b' 2 3 4
same "LMPOP over two keys: the popped key's name" lmpop 2 '{l}none' '{l}a' LEFT COUNT 2
same "ZMPOP" zmpop 1 '{z}a' MIN
same "SINTERCARD" sintercard 2 '{i}a' '{i}b'
same "SINTERCARD LIMIT" sintercard 2 '{i}a' '{i}b' LIMIT 1
on "SINTERCARD over two buckets: CROSSSLOT" '^CROSSSLOT' sintercard 2 '{i}a' '{j}b'

# --- malformed invocations: Redis's own words -----------------------------------------
# (keys in one bucket: where the words Redis takes for keys span two buckets,
# the proxy answers CROSSSLOT first, as Redis Cluster does -- ZMPOP 2 a min)
both set '{g}str' x
while IFS= read -r line; do
  eval "set -- $line"
  same "error of: $line" "$@"
done <<'EOF'
georadius {g}src 0 0 1 km badopt
georadius {g}src abc 0 1 km
georadius {g}src 15 37 200 km withdist store {g}x
georadius {g}src 15 37 200 km store
georadius {g}src 15 37 200 km count 0
georadius {g}str 0 0 1 km
georadiusbymember {g}src nosuch 1 km store {g}y
georadius_ro {g}src 15 37 200 km store {g}x
sort {s}list by
sort {s}list limit 1
sort {s}list limit a b
sort {s}list bad
sort {g}str
xread count 1 streams {x}a {x}b 0
xread group g c streams {x}a 0
xread noack streams {x}a 0
xread block abc streams {x}a 0
xread block -1 streams {x}a 0
xread count x streams {x}a 0
xread count 1 a b
xread streams {x}a {x}b 0 bad
xreadgroup count 1 noack streams {x}a 0
xreadgroup group grp c1 streams {x}a 0 0
lmpop 5 a left
lmpop abc a left
lmpop -1 a left
lmpop 1 {l}a up
zmpop 2 {z}a {z}min
sintercard 0 a
sintercard 3 a b
sintercard x a
zunion 0 a
zinter 5 a
zunionstore d 0 a
eval "return 1" -1
eval "return 1" 5 a
EOF

# test_all's keyword group (and the rest) through kvp
it_check "test_all passes through kvp (keyword group included)" \
  sh -c "'$IT_BIN/test_all' -p $P_PORT > '$IT_DIR/ta.out' 2>&1 && grep -q 'keyword 29,' '$IT_DIR/ta.out'"
[ "$IT_FAILED" -eq 0 ] || tail -20 "$IT_DIR/ta.out"

# nothing outside the namespace was written on the masters
it_eq "every key on the masters carries a bucket prefix" "" \
  "$({ it_redis "$M1" --scan; it_redis "$M2" --scan; } | grep -v '^[0-9][0-9]*_' | grep -v '^it_probe$' || true)"
it_done
