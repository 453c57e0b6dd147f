#!/usr/bin/env bash
# Issue 15: migration_tool --max-keys-per-sec N is a hard cap: a move of
# 2 -> 3 masters capped at 5 000 keys/s moves its keys at that rate, within
# 10 % (the time also holds the START/DONE rounds), and nothing is lost.
source "$(dirname "$0")/lib.sh"
it_scale_2to3 || exit 1
N=45000
awk -v n=$N 'BEGIN { for (i = 0; i < n; i++) printf "*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$1\r\nv\r\n", length("k" i), i }' |
  redis-cli -p "$P_PORT" --pipe > /dev/null
MIG=$CS_MIG
t0=$(date +%s%3N)
out=$(timeout 120 "$IT_BIN/migration_tool" --cs "127.0.0.1:$MIG" --ns test --add "127.0.0.1:$M3" \
  --max-keys-per-sec 5000 2>&1)
rc=$?
t1=$(date +%s%3N)
moved=$(it_redis "$M3" dbsize)
rate=$(( moved * 1000 / (t1 - t0) ))
echo "# $moved keys moved in $((t1 - t0)) ms: $rate keys/s (cap 5000)"
it_eq "the tool finished" 0 "$rc"
it_check "it moved about a third of the keys ($moved)" test "$moved" -gt $((N / 4))
it_check "the rate is the cap within 10 % ($rate keys/s)" test "$rate" -ge 4500 -a "$rate" -le 5500
total=$(( $(it_redis "$M1" dbsize) + $(it_redis "$M2" dbsize) + moved ))
it_eq "nothing lost" "$N" "$total"
it_done
