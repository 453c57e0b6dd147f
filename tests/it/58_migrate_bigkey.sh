#!/usr/bin/env bash
# Issue 15: big keys. A 50 MB string and a hash of 200 000 fields in buckets
# that move, written to all along the move (tests/it/bigkey_writer.lua: no
# acknowledged write lost, no read going back), and a 20 MB string nobody
# touches: migration_tool finds them (MEMORY USAGE >= --big-key-mb), moves
# the untouched one alone and reports the pause every big key caused on its
# source (the written ones are moved by the proxy on access: SLOWLOG); with
# a client writing, the default pace is gentle. Then all back at full pace,
# where sizes are not asked first: the big keys are reported after their
# MIGRATE.
source "$(dirname "$0")/lib.sh"
it_scale_2to3 || exit 1
MIG=$CS_MIG
TOOL=("$IT_BIN/migration_tool" --cs "127.0.0.1:$MIG" --ns test --add "127.0.0.1:$M3")
W="$IT_ROOT/tests/it/bigkey_writer.lua"

redis-benchmark -p "$P_PORT" -t set -n 20000 -r 1000000 -d 64 -q >/dev/null 2>&1
plan=$("${TOOL[@]}" --dry-run)
bs=($(printf '%s\n' "$plan" | sed -n "s/.* -> 127.0.0.1:$M3 ([0-9]*): buckets //p" | head -1))
it_check "the dry run names the buckets that move (${#bs[@]} of the first source)" test "${#bs[@]}" -gt 3
S=$("$IT_BIN/kvlua" "$W" find "${bs[0]}" bigstr:)
H=$("$IT_BIN/kvlua" "$W" find "${bs[1]}" bighash:)
Q=$("$IT_BIN/kvlua" "$W" find "${bs[2]}" quietbig:)
echo "# big keys: $S (bucket ${bs[0]}), $H (bucket ${bs[1]}), $Q (bucket ${bs[2]})"
it_redis_p() { redis-cli -p "$P_PORT" "$@"; }
it_redis_p setrange "$S" 52428799 x >/dev/null
it_redis_p setrange "$Q" 20971519 x >/dev/null
awk -v k="$H" 'BEGIN { for (i = 0; i < 200; i++) { printf "*2002\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n", length(k), k;
  for (j = 0; j < 1000; j++) { f = "f" (i * 1000 + j); printf "$%d\r\n%s\r\n$1\r\nv\r\n", length(f), f } } }' |
  redis-cli -p "$P_PORT" --pipe > /dev/null
it_eq "the big hash is there" 200000 "$(it_redis_p hlen "$H")"

stop="$IT_DIR/stop"
"$IT_BIN/kvlua" "$W" write "$P_PORT" "$stop" "$S" "$H" > "$IT_DIR/writer.out" 2>&1 &
writer=$!
sleep 0.5
out=$("${TOOL[@]}" 2>&1)
rc=$?
printf '%s\n' "$out" | grep -E "^(big key|pace|done)" | sed 's/^/# /'
sleep 0.5
touch "$stop"
wait "$writer"
wrc=$?
sed 's/^/# writer: /' "$IT_DIR/writer.out"
it_eq "the tool finished" 0 "$rc"
it_eq "no acknowledged write lost, no read went back" 0 "$wrc"
it_check "the untouched big key was moved alone, its pause reported" \
  grep -q "^big key \"${bs[2]}_$Q\" of bucket ${bs[2]} ([0-9.]* MB) moved alone from .*: it held its source [0-9.]* ms" <<< "$out"
it_check "the pause of the written big string is reported" grep -q "^big key .*$S.* held its source" <<< "$out"
it_check "the pause of the written big hash is reported" grep -q "^big key .*$H.* held its source" <<< "$out"
it_check "the summary counts them" grep -q "^big keys: 3 " <<< "$out"
it_check "with a client writing, the pace was gentle" grep -q "^pace: gentle for" <<< "$out"
it_eq "the big string is whole on the new master" 52428800 "$(it_redis "$M3" strlen "${bs[0]}_$S")"
it_eq "the untouched one too" 20971520 "$(it_redis "$M3" strlen "${bs[2]}_$Q")"
it_check "the big hash is on the new master" test "$(it_redis "$M3" hlen "${bs[1]}_$H")" -gt 200000

# back at full pace (nobody writing): the sizes are not asked first; the
# slow MIGRATEs' keys are measured on the destination afterwards
out=$("$IT_BIN/migration_tool" --cs "127.0.0.1:$MIG" --ns test --del "127.0.0.1:$M3" 2>&1)
rc=$?
printf '%s\n' "$out" | grep -E "^(big key|pace|done)" | sed 's/^/# /'
it_eq "the move back finished" 0 "$rc"
it_check "at full pace" grep -q "^pace: full all along" <<< "$out"
it_eq "the three big keys reported after their MIGRATEs" 3 \
  "$(grep -c "^big key .* moved at full pace in a MIGRATE of [0-9]* key(s) from 127.0.0.1:$M3: it held its source at most" <<< "$out")"
it_eq "the big string is whole again" 52428800 "$(it_redis_p strlen "$S")"
it_done
