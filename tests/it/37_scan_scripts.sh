#!/usr/bin/env bash
# Issue 12, items 4 and 5 and the RANDOMKEY bug: keyspace iteration (SCAN
# walking every master with one cursor, MATCH / TYPE / COUNT, KEYS) and
# scripts and functions on every master, over three masters.
# Keys written on a master behind the proxy's back (no "<bucket>_" prefix,
# or a bucket that master does not own) are never returned.
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port); R1=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" && it_redis_start "$M3" || exit 1
it_redis_start "$R1" --replicaof 127.0.0.1 "$M1" || exit 1 # promoted at the end
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" "127.0.0.1:$M3" || exit 1
it_kvp_start P test "$CS_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || exit 1
R="redis-cli -p $P_PORT"
W=$IT_DIR/w; mkdir -p "$W"

# --- RANDOMKEY: a master holding only a key that is not the namespace's
it_redis "$M1" set not_a_bucket_key x >/dev/null
out=""; for _ in $(seq 1 10); do out="$out$($R randomkey)|"; done
it_eq "RANDOMKEY with only a foreign key: nil, never 'a_bucket_key'" "||||||||||" "$out"
it_redis "$M1" del not_a_bucket_key >/dev/null

# --- 10 000 keys, a hash-tagged group, other types
seq 1 10000 | awk '{printf "SET k:%d v\n", $1}' | $R --pipe >/dev/null
for i in $(seq 1 50); do echo "SET {tag}:$i v"; done | $R --pipe >/dev/null
for i in $(seq 1 20); do echo "RPUSH l:$i a"; done | $R --pipe >/dev/null
{ seq 1 10000 | sed 's/^/k:/'; seq 1 50 | sed 's/^/{tag}:/'; seq 1 20 | sed 's/^/l:/'; } | sort > "$W/all"
it_eq "DBSIZE counts what was written" "10070" "$($R dbsize)"
for m in "$M1" "$M2" "$M3"; do
  it_check "master $m holds a share of the keys" test "$(it_redis "$m" dbsize)" -gt 2000
done

# foreign keys on the masters: no prefix, a bucket past the table, and a
# leftover (bucket 1 is owned by the second master, written on the first)
it_redis "$M1" set not_a_bucket_key x >/dev/null
it_redis "$M1" set 99999_out_of_table x >/dev/null
it_redis "$M1" set 1_leftover x >/dev/null
it_redis "$M2" set plainkey x >/dev/null

$R --scan > "$W/scan1"
sort "$W/scan1" > "$W/scan1.sorted"
it_eq "redis-cli --scan: 10070 names" "10070" "$(wc -l < "$W/scan1")"
it_eq "redis-cli --scan: no name twice" "" "$(sort "$W/scan1" | uniq -d | head -3)"
it_check "redis-cli --scan: exactly the keys written" cmp -s "$W/scan1.sorted" "$W/all"

# raw cursor loop, small COUNT: every call one master's page
cur=0; calls=0; : > "$W/scan2"
while :; do
  $R scan "$cur" count 100 > "$W/page"
  cur=$(head -1 "$W/page"); tail -n +2 "$W/page" >> "$W/scan2"
  calls=$((calls + 1))
  [ "$cur" = 0 ] || [ "$calls" -gt 2000 ] && break
done
sed -i '/^$/d' "$W/scan2"
it_eq "cursor loop ends" "0" "$cur"
it_eq "cursor loop: every key once" "10070 0" "$(wc -l < "$W/scan2") $(sort "$W/scan2" | uniq -d | wc -l)"
it_check "cursor loop: exactly the keys written" sh -c "sort '$W/scan2' | cmp -s - '$W/all'"
it_check "cursor loop walked all three masters ($calls calls)" test "$calls" -gt 3

it_eq "MATCH k:99*: the glob on the client's names" "$(grep -c '^k:99' "$W/all")" \
  "$($R --scan --pattern 'k:99*' | sort -u | grep -c '^k:99')"
it_eq "MATCH k:99*: nothing else" "" "$($R --scan --pattern 'k:99*' | grep -v '^k:99' | head -1)"
it_eq "MATCH with a hash tag: the group" "50" "$($R --scan --pattern '{tag}:*' | sort -u | wc -l)"
tag_calls=0; cur=0
while :; do
  # a COUNT bigger than a master's table: each master is done in one call
  cur=$($R scan "$cur" match '{tag}:*' count 100000 | head -1); tag_calls=$((tag_calls + 1))
  [ "$cur" = 0 ] || [ "$tag_calls" -gt 100 ] && break
done
it_eq "MATCH with a hash tag walks one master: one call" "1" "$tag_calls"
it_eq "MATCH matching nothing" "0" "$($R --scan --pattern 'nope*' | wc -l)"

# TYPE
cur=0; : > "$W/lists"
while :; do
  $R scan "$cur" type list count 500 > "$W/page"
  cur=$(head -1 "$W/page"); tail -n +2 "$W/page" | sed '/^$/d' >> "$W/lists"
  [ "$cur" = 0 ] && break
done
it_eq "TYPE list: the 20 lists" "20" "$(sort -u "$W/lists" | grep -c '^l:')"
it_eq "TYPE list: nothing else" "20" "$(wc -l < "$W/lists")"

# COUNT goes to the master: a big COUNT gives a big page
n=$($R scan 0 count 5000 | tail -n +2 | wc -l)
it_check "COUNT 5000 gives a page of thousands ($n)" test "$n" -gt 1000
n=$($R scan 0 | tail -n +2 | wc -l)
it_check "the default COUNT gives a small page ($n)" test "$n" -lt 100
it_eq "invalid cursor" "ERR invalid cursor" "$($R scan abc)"
it_eq "a bad option is Redis's syntax error" "ERR syntax error" "$($R scan 0 foo)"

# KEYS
$R keys '*' | sort > "$W/keys"
it_check "KEYS * equals the keys written" cmp -s "$W/keys" "$W/all"
it_eq "KEYS with a glob" "$(grep -c '^k:12' "$W/all")" "$($R keys 'k:12*' | wc -l)"
it_eq "KEYS with a hash tag" "50" "$($R keys '{tag}:*' | wc -l)"
for k in not_a_bucket_key out_of_table leftover plainkey; do
  it_eq "foreign key $k not in SCAN or KEYS" "0" "$(cat "$W/scan1" "$W/keys" | grep -c "$k")"
done

# redis-cli --bigkeys: SCAN, then TYPE and a size per key, all through the proxy
$R --bigkeys > "$W/big" 2>&1
it_check "redis-cli --bigkeys samples every key: $(grep -o 'Sampled [0-9]* keys' "$W/big")" \
  grep -q "Sampled 10070 keys" "$W/big"
it_check "redis-cli --bigkeys finds the 20 lists" grep -q "^20 lists with 20 items" "$W/big"

# RANDOMKEY: only namespace keys
bad=0
for _ in $(seq 1 30); do
  k=$($R randomkey)
  grep -qxF -- "$k" "$W/all" || bad=$((bad + 1))
done
it_eq "RANDOMKEY: 30 draws, all namespace keys" "0" "$bad"

# --- scripts
sha=$($R script load "return redis.call('SET', KEYS[1], ARGV[1])")
it_check "SCRIPT LOAD returns the sha ($sha)" test "${#sha}" -eq 40
for i in $(seq 1 30); do $R evalsha "$sha" 1 "s:$i" "v$i" >/dev/null; done
it_eq "EVALSHA on keys in many buckets" "v7,v29" "$($R mget s:7 s:29 | paste -sd,)"
for m in "$M1" "$M2" "$M3"; do
  it_check "EVALSHA ran on master $m" test "$(it_redis "$m" --scan --pattern '*_s:*' | wc -l)" -gt 0
done
only=$(it_redis "$M1" script load "return 42")
it_eq "SCRIPT EXISTS: 1 where every master has it, 0 where one lacks it" "1,0" \
  "$($R script exists "$sha" "$only" | paste -sd,)"
it_eq "EVAL with no keys" "7" "$($R eval 'return 7' 0)"
nine=$($R script load "return 9")
it_eq "EVALSHA with no keys" "9" "$($R evalsha "$nine" 0)"
it_eq "EVAL_RO with a key" "v7" "$($R eval_ro "return redis.call('GET', KEYS[1])" 1 s:7)"
it_eq "EVAL across buckets still refused" "CROSSSLOT Keys in request don't hash to the same bucket" \
  "$($R eval 'return 1' 2 s:1 s:2)"
it_eq "SCRIPT FLUSH" "OK" "$($R script flush)"
it_eq "SCRIPT EXISTS after FLUSH" "0" "$($R script exists "$sha")"
it_check "EVALSHA after FLUSH: NOSCRIPT (clients fall back to EVAL)" \
  sh -c "$R evalsha $sha 1 s:1 x | grep -q NOSCRIPT"

# --- functions
lib='#!lua name=kvlib
redis.register_function("kvset", function(keys, args) return redis.call("SET", keys[1], args[1]) end)
redis.register_function{function_name="kvfive", callback=function() return 5 end, flags={"no-writes"}}'
it_eq "FUNCTION LOAD on every master" "kvlib" "$($R function load "$lib")"
for m in "$M1" "$M2" "$M3"; do
  it_check "master $m has the library" sh -c "redis-cli -p $m -a $IT_PW --no-auth-warning function list | grep -q kvlib"
done
for i in 1 2 3 4 5 6; do $R fcall kvset 1 "f:$i" "w$i" >/dev/null; done
it_eq "FCALL with a key" "w1,w6" "$($R mget f:1 f:6 | paste -sd,)"
it_eq "FCALL with no keys" "5" "$($R fcall kvfive 0)"
it_eq "FCALL_RO with no keys" "5" "$($R fcall_ro kvfive 0)"
it_check "FUNCTION LIST names the library" sh -c "$R function list | grep -q kvlib"
it_check "FUNCTION DUMP gives a payload" test -n "$($R --no-raw function dump)"
it_eq "FUNCTION LOAD again without REPLACE: Redis's error" "ERR Library 'kvlib' already exists" \
  "$($R function load "$lib")"
it_eq "FUNCTION DELETE" "OK" "$($R function delete kvlib)"
it_check "FCALL after DELETE: no such function" sh -c "$R fcall kvfive 0 | grep -q 'Function not found'"
it_eq "FUNCTION FLUSH" "OK" "$($R function flush)"
it_eq "SCRIPT KILL is refused" "ERR command 'script|kill' is not supported by the proxy" "$($R script kill)"
it_eq "an unknown SCRIPT subcommand" "ERR unknown subcommand 'nosuch'. Try SCRIPT HELP." "$($R script nosuch)"

# --- a key-rewrite pattern: the name it hides is not returned, the key
# stored under the SHA-1 comes back as its hex name (GET of that name reads it)
$R set sec:1 old >/dev/null
curl -s -d '{"pattern":"sec:*"}' "http://127.0.0.1:$P_HTTP/kvstore/proxy/add_pattern" >/dev/null
it_wait 10 sh -c "[ -z \"\$($R get sec:1)\" ]"
$R set sec:1 new >/dev/null
hex=$(printf 'sec:1' | sha1sum | cut -c1-40)
$R --scan > "$W/scan4"
it_eq "a name a rewrite pattern hides is not returned" "0" "$(grep -cx 'sec:1' "$W/scan4")"
it_eq "the rewritten key comes back as its hex name" "1" "$(grep -cx "$hex" "$W/scan4")"
it_eq "GET of the hex name reads it" "new" "$($R get "$hex")"
it_eq "KEYS likewise" "0 1" "$($R keys 'sec:*' | grep -c .) $($R keys "$hex" | grep -c .)"

# --- a fail-over in the middle of an iteration: bucket 0's master (position
# 0) is replaced by its replica while the cursor is on it; the replica is
# walked again from its cursor 0, so every key is still returned (some twice)
$R keys '*' | sort > "$W/now"
it_wait 10 sh -c "[ \"\$(redis-cli -p $R1 -a $IT_PW --no-auth-warning dbsize)\" = \"\$(redis-cli -p $M1 -a $IT_PW --no-auth-warning dbsize)\" ]"
cur=0; calls=0; replaced=0; : > "$W/scan3"
while :; do
  $R scan "$cur" count 50 > "$W/page"
  cur=$(head -1 "$W/page"); tail -n +2 "$W/page" | sed '/^$/d' >> "$W/scan3"
  calls=$((calls + 1))
  if [ "$replaced" = 0 ] && [ "$calls" -ge 5 ] && [ "$cur" != 0 ] && [ $((cur & 32767)) = 0 ]; then
    code=$(curl -s -d "{\"namespace\":\"test\",\"old_addr\":\"127.0.0.1:$M1\",\"new_addr\":\"127.0.0.1:$R1\"}" \
      "http://127.0.0.1:$CS_HTTP/kvstore/cs/replace_server")
    it_redis "$R1" replicaof no one >/dev/null
    it_wait 10 sh -c "curl -s http://127.0.0.1:$P_HTTP/kvstore/proxy/bucket_table | grep -q '127.0.0.1:$R1'"
    replaced=$calls
  fi
  [ "$cur" = 0 ] || [ "$calls" -gt 5000 ] && break
done
it_check "the master was replaced mid-iteration (call $replaced): ${code:0:40}" test "$replaced" -gt 0
it_eq "the iteration ends" "0" "$cur"
it_eq "every key still returned at least once" "" "$(sort -u "$W/scan3" | comm -23 "$W/now" - | head -3)"
it_eq "and nothing else" "" "$(sort -u "$W/scan3" | comm -13 "$W/now" - | head -3)"
it_check "the replica was walked from its start: keys of the first pages came twice" \
  test "$(sort "$W/scan3" | uniq -d | wc -l)" -gt 100
it_done
