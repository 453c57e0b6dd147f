#!/usr/bin/env bash
# gen_commands.sh -- regenerate c/proxy/cmdtab_gen.inc from a real redis-server.
#
# Why: key positions, arity and flags of every command come from Redis's own
# COMMAND metadata instead of being typed by hand (DESIGN §2). This starts a
# throw-away redis-server on a free loopback port (no persistence, in a temp dir),
# reads `COMMAND` as JSON, stops the server and lets scripts/gen_commands.lua add
# the proxy's policy and write the table. The generated file is committed; run
# this again only when the Redis version changes, and review the diff.
#
# Usage: scripts/gen_commands.sh [OUTFILE]   (default c/proxy/cmdtab_gen.inc)
# Needs: redis-server and redis-cli 7+, luajit with lua-cjson.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/c/proxy/cmdtab_gen.inc}

for tool in redis-server redis-cli luajit; do
    command -v "$tool" >/dev/null || { echo "gen_commands: $tool not found" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/kvp-gencmd.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# Something already answering on the port? (bash's /dev/tcp connects or fails)
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Start our server on a free port; retry on another port if it cannot bind.
port=
for _ in $(seq 1 20); do
    p=$((20000 + RANDOM % 40000))
    port_busy "$p" && continue
    redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$tmp" --logfile "$tmp/redis.log" --daemonize no &
    pid=$!
    for _ in $(seq 1 50); do
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        if redis-cli -p "$p" ping 2>/dev/null | grep -q PONG; then port=$p; break; fi
        sleep 0.1
    done
    [ -n "$port" ] && break
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
done
[ -n "$port" ] || { echo "gen_commands: could not start redis-server" >&2; cat "$tmp/redis.log" >&2 || true; exit 1; }

# Make sure we talk to the server we started, not one that won a race for the port.
served=$(redis-cli -p "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')
[ "$served" = "$pid" ] || { echo "gen_commands: port $port is not our redis-server" >&2; exit 1; }
version=$(redis-cli -p "$port" info server | tr -d '\r' | sed -n 's/^redis_version://p')

redis-cli -p "$port" --json COMMAND >"$tmp/command.json"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

cd "$root"
luajit scripts/gen_commands.lua "$out" "$version" <"$tmp/command.json"
