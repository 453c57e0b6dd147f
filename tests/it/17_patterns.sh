#!/usr/bin/env bash
# Issue 11, finding 12: key-rewrite patterns are bounded (at most 64, each at
# most 256 bytes and 63 elements besides '*') and matched in time linear in
# the key, so four patterns and an 8 MB key do not hold up another client
# (the greedy matcher took len(key) x len(pattern) steps: seconds).
source "$(dirname "$0")/lib.sh"

M1=$(it_free_port); M2=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
it_kvp_conf P test "$CS_PROXY"
sed -i 's/^request_timeout = .*/request_timeout = 20000/' "$IT_DIR/P/kvp.conf"
it_kvp_start P test "$CS_PROXY" || exit 1
it_wait 10 it_kvp_ready "$P_PORT" || exit 1

add() { curl -s -d "{\"pattern\":\"$1\"}" "http://127.0.0.1:$P_HTTP/kvstore/proxy/add_pattern"; }
# "*aaa...ab": the worst case of a greedy matcher on a key of a's
worst() { printf '*%s%s' "$(printf "%0$(( $2 ))d" 0 | tr 0 a)" "$1"; }
for c in b c d e; do
  out=$(add "$(worst $c 62)")
  it_check "a pattern of 63 elements is accepted ($c)" sh -c "echo '$out' | grep -q '\"code\":1001'"
done
it_wait 10 sh -c "grep -q 'key-rewrite patterns' '$IT_DIR/P/kvp.log'"
out=$("$IT_BIN/kvlua" "$IT_ROOT/tests/it/bigkey.lua" "$P_PORT" 8000000)
echo "$out"
ping=$(echo "$out" | awk '/^ping/ {print $2}')
it_check "another client's PING is not held behind an 8 MB key matched against them (${ping:-?} ms < 1000)" \
  test "${ping:-99999}" -lt 1000
it_eq "the big key's GET is answered" "nil" "$(echo "$out" | awk '/^get/ {print $3}')"

out=$(add "$(worst f 63)")
it_check "64 elements besides '*' are refused" sh -c "echo '$out' | grep -qv '\"code\":1001'"
long=$(printf '%0300d' 0 | tr 0 '*')x
out=$(add "$long")
it_check "a pattern of 301 bytes is refused" sh -c "echo '$out' | grep -qv '\"code\":1001'"
for i in $(seq 5 64); do add "p$i:*" >/dev/null; done
out=$(add "p65:*")
it_check "the 65th pattern is refused: ${out:0:80}" sh -c "echo '$out' | grep -qv '\"code\":1001'"
it_done
