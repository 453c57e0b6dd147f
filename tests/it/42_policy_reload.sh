#!/usr/bin/env bash
# Issue 13: the routing policy belongs to the namespace and reloads live.
# Two proxies under a SET load; `kvp --reload` on one publishes the edited
# file through the config server and both route with the new version within
# seconds, with no error and no request slower than request_timeout. A
# policy that would move every key of a namespace holding data is refused
# unless forced; a bad one is refused with its line and changes nothing
# (SIGHUP too). A proxy whose own file differs says so in its log and -t.
# Then a custom route sends tenant:<id>:* keys by tenant (both proxies
# agree, the config server's locate too), and an erroring route answers
# its command with an error while other keys keep working.
source "$(dirname "$0")/lib.sh"
J() { luajit "$IT_ROOT/scripts/lib/json.lua" "$1"; }

M1=$(it_free_port); M2=$(it_free_port)
it_redis_start "$M1" && it_redis_start "$M2" || exit 1
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" test 1023 "127.0.0.1:$M1" "127.0.0.1:$M2" || exit 1
cp "$IT_ROOT/lua/policy.lua" "$IT_DIR/policy.lua"
cp "$IT_ROOT/lua/policy.lua" "$IT_DIR/p2policy.lua"
it_kvp_start P1 test "$CS_PROXY" "" "policy = \"$IT_DIR/policy.lua\"" || exit 1
it_kvp_start P2 test "$CS_PROXY" "" "policy = \"$IT_DIR/p2policy.lua\"" || exit 1
it_wait 10 it_kvp_ready "$P1_PORT" && it_wait 10 it_kvp_ready "$P2_PORT" || exit 1
pol() { curl -s "http://127.0.0.1:$1/kvstore/proxy/policy" | J "$2"; }
reload() { "$IT_BIN/kvp" -c "$IT_DIR/P1/kvp.conf" --reload "$@" 2>&1; }
has() { printf '%s\n' "$1" | grep -q -- "$2"; }

it_eq "no policy published: both proxies route with the default (version 0)" "0 0" \
  "$(pol "$P1_HTTP" j.version) $(pol "$P2_HTTP" j.version)"
redis-cli -p "$P1_PORT" set frozen:a 1 > /dev/null

# ------------------------------------------------ reload under load
for p in P1 P2; do
  eval "port=\$${p}_PORT"
  "$IT_BIN/kvlua" "$IT_ROOT/scripts/lib/latency.lua" "$port" 60 4 "$IT_DIR/stop" > "$IT_DIR/load-$p.out" &
  echo $! > "$IT_DIR/load-$p.pid"
done
sleep 1
cat > "$IT_DIR/policy.lua" <<'EOP'
return {
  rules = {
    { match = "frozen:*", read_only = true },
    { match = "lat:*", max_qps = 100000000 },
  },
}
EOP
t0=$(date +%s%3N)
out=$(reload)
it_check "kvp --reload publishes the file: $out" has "$out" 'policy v1 published' 
it_wait 5 sh -c "[ \"\$(curl -s http://127.0.0.1:$P1_HTTP/kvstore/proxy/policy | luajit $IT_ROOT/scripts/lib/json.lua j.version)\" = 1 ] &&
  [ \"\$(curl -s http://127.0.0.1:$P2_HTTP/kvstore/proxy/policy | luajit $IT_ROOT/scripts/lib/json.lua j.version)\" = 1 ]"
t1=$(date +%s%3N)
it_eq "both proxies route with v1" "1 1" "$(pol "$P1_HTTP" j.version) $(pol "$P2_HTTP" j.version)"
echo "# published and on both proxies in $((t1 - t0)) ms"
it_check "the new rule applies on the other proxy: $(redis-cli -p "$P2_PORT" set frozen:a 2)" sh -c \
  "redis-cli -p $P2_PORT set frozen:a 2 | grep -q READONLY"
it_eq "... reads still served" 1 "$(redis-cli -p "$P2_PORT" get frozen:a)"
sleep 1
touch "$IT_DIR/stop"
wait "$(cat "$IT_DIR/load-P1.pid")" "$(cat "$IT_DIR/load-P2.pid")"
for p in P1 P2; do
  l=$(cat "$IT_DIR/load-$p.out")
  echo "# load through $p during the reload: $l"
  it_eq "no error through $p during the reload" 0 "$(echo "$l" | sed -n 's/.*errors=\([0-9]*\).*/\1/p')"
  it_check "no SET through $p slower than request_timeout (1000 ms)" \
    awk -v m="$(echo "$l" | sed -n 's/.*max=\([0-9.]*\).*/\1/p')" 'BEGIN { exit !(m < 1000) }'
done
it_check "P2's log says its own file differs from the namespace's v1" \
  grep -q "local policy file .*p2policy.lua differs .*v1" "$IT_DIR/P2/kvp.log"
out=$("$IT_BIN/kvp" -c "$IT_DIR/P2/kvp.conf" -t 2>&1)
it_check "so does kvp -t: $(echo "$out" | tail -1)" has "$out" 'WARNING: the policy file differs' 
out=$("$IT_BIN/kvp" -c "$IT_DIR/P1/kvp.conf" -t 2>&1)
it_check "P1's -t: its file is the namespace's: $(echo "$out" | tail -1)" has "$out" "is namespace test's policy v1"

# ------------------------------------------------ refused policies
cp "$IT_DIR/policy.lua" "$IT_DIR/v1.lua"
sed -i 's/^return {/return {\n  hash = "crc16",/' "$IT_DIR/policy.lua"
out=$(reload); rc=$?
it_check "a policy that moves every key of a namespace with data is refused: $out" has "$rc $out" '^[1-9].*every key' 
printf 'return {\n  rules = {\n    { match = "x*", read_only = "yes" },\n  },\n}\n' > "$IT_DIR/policy.lua"
out=$(reload); rc=$?
it_check "a bad policy is refused with its line: $out" has "$rc $out" '^[1-9].*policy.lua:3:' 
kill -HUP "$(cat "$IT_DIR/P1/kvp.pid")"
it_check "SIGHUP with the bad file: logged, nothing published" it_wait 5 grep -q "SIGHUP: policy .* not published" "$IT_DIR/P1/kvp.log"
it_eq "still v1 everywhere" "1 1" "$(pol "$P1_HTTP" j.version) $(pol "$P2_HTTP" j.version)"
it_eq "data still there" 1 "$(redis-cli -p "$P1_PORT" get frozen:a)"

# ------------------------------------------------ custom route, forced
cat > "$IT_DIR/policy.lua" <<'EOP'
return {
  rules = {
    { match = "tenant:*", route = function(key)
        return key:match("^tenant:([^:]+):") or error("no tenant id in " .. key)
      end },
    { match = "bad:*", route = function(key) return nil end },
  },
}
EOP
out=$(reload --force)
it_check "--force publishes a routing change: $out" has "$out" 'policy v2 published' 
it_wait 5 sh -c "[ \"\$(curl -s http://127.0.0.1:$P2_HTTP/kvstore/proxy/policy | luajit $IT_ROOT/scripts/lib/json.lua j.version)\" = 2 ]"
for k in a b c d e f; do redis-cli -p "$P1_PORT" set "tenant:42:$k" "$k" > /dev/null; done
buckets=$( (it_redis "$M1" keys '*tenant:42:*'; it_redis "$M2" keys '*tenant:42:*') | sed 's/_.*//' | sort -u)
it_eq "six keys of tenant 42 share one bucket" 1 "$(echo "$buckets" | grep -c .)"
loc=$(curl -s -d '{"namespace":"test","key":"tenant:42:zzz"}' "http://127.0.0.1:$CS_HTTP/kvstore/cs/locate" | J j.bucket)
it_eq "... the bucket the config server locates for the tenant" "$(echo $buckets)" "$loc"
it_eq "the other proxy reads them" "a f" "$(redis-cli -p "$P2_PORT" get tenant:42:a) $(redis-cli -p "$P2_PORT" get tenant:42:f)"
out=$(redis-cli -p "$P2_PORT" set tenant:nokey 1)
it_check "a route that errors answers an error: $out" has "$out" 'route of .tenant:\*. failed: .*no tenant id' 
out=$(redis-cli -p "$P2_PORT" get bad:1)
it_check "a route with no result answers an error: $out" has "$out" 'returned nil' 
it_eq "other keys keep working" "OK x" "$(redis-cli -p "$P2_PORT" set plain x) $(redis-cli -p "$P2_PORT" get plain)"
it_check "the proxies are alive" sh -c "redis-cli -p $P1_PORT ping | grep -q PONG && redis-cli -p $P2_PORT ping | grep -q PONG"
it_done
