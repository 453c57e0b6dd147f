#!/usr/bin/env bash
# Issue 12: the client libraries applications install drive the proxy as an
# application would (tests/clients/README): redis-py (Debian's python3-redis),
# ioredis, node-redis 4 and the newest node-redis (npm, in
# tests/clients/node_modules), and redis-cli's own modes. Three masters, one
# kvcs, two proxies of one namespace (pub/sub across proxies), a client
# password (each library's AUTH path). Each driver run is one check.
#
# KVP_CLIENT_GROUPS: the groups run, the ones kvp passes today. A feature's
# owner adds its group here when it lands (tx blocking pubsub scan scripts
# resp3 info); try one before with
#   KVP_CLIENT_GROUPS="basic tx" bash tests/it/35_client_libs.sh
KVP_CLIENT_GROUPS=${KVP_CLIENT_GROUPS:-"basic tx blocking pubsub scan scripts resp3 info"}

source "$(dirname "$0")/lib.sh"
CL=$IT_ROOT/tests/clients
read -r -a GROUPS_RUN <<<"$KVP_CLIENT_GROUPS"
CLIENT_PW=clipass

# ---------------------------------------------------------------- what is installed

# scripts/test.sh installs the libraries (install_client_libs); a run without
# them skips their driver and the test ends in a skip, never a pass.
MISSING=()
PY=/usr/bin/python3   # Debian's python: python3-redis is in its dist-packages
if ! "$PY" -c 'import redis' 2>/dev/null; then
  MISSING+=("redis-py (Debian package python3-redis)")
  PY=
fi
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
have_npm() { [ -f "$CL/node_modules/$1/package.json" ]; }
# ioredis 6 and node-redis 6 declare node >= 20 (package.json "engines")
new_node() { [ "$NODE_MAJOR" -ge 20 ]; }
NO_NPM=()
for lib in ioredis redis4 redis; do
  if [ "$NODE_MAJOR" = 0 ]; then
    MISSING+=("$lib (no node: Debian package nodejs)")
  elif ! have_npm "$lib"; then
    NO_NPM+=("$lib")
  elif [ "$lib" != redis4 ] && ! new_node; then
    MISSING+=("$lib (needs node >= 20, this is node $NODE_MAJOR)")
  fi
done
[ ${#NO_NPM[@]} -gt 0 ] &&
  MISSING+=("${NO_NPM[*]} (not in tests/clients/node_modules: scripts/test.sh installs them with npm ci; see build/test-logs/npm-ci.log)")
runs_lib() { [ "$NODE_MAJOR" != 0 ] && have_npm "$1" && { [ "$1" = redis4 ] || new_node; }; }

# ---------------------------------------------------------------- cluster

M1=$(it_free_port); M2=$(it_free_port); M3=$(it_free_port)
for m in "$M1" "$M2" "$M3"; do it_redis_start "$m" || exit 1; done
it_kvcs_start CS || exit 1
it_init_table "$CS_HTTP" clients 256 "127.0.0.1:$M1" "127.0.0.1:$M2" "127.0.0.1:$M3" || exit 1
it_kvp_start P1 clients "$CS_PROXY" "" "client_password = \"$CLIENT_PW\"" || exit 1
it_kvp_start P2 clients "$CS_PROXY" "" "client_password = \"$CLIENT_PW\"" || exit 1
it_wait 10 sh -c "redis-cli -p $P1_PORT -a $CLIENT_PW --no-auth-warning exists x | grep -qx '[0-9]*'" || exit 1
it_wait 10 sh -c "redis-cli -p $P2_PORT -a $CLIENT_PW --no-auth-warning exists x | grep -qx '[0-9]*'" || exit 1

echo "groups: ${GROUPS_RUN[*]}"
ARGS=(-h 127.0.0.1 -p "$P1_PORT" -a "$CLIENT_PW" -P "$P2_PORT" "${GROUPS_RUN[@]}")

# drive NAME COMMAND...: one check, the driver's lines in the log
drive() {
  local name=$1; shift
  echo "--- $name"
  it_check "$name: ${GROUPS_RUN[*]}" timeout 150 "$@" "${ARGS[@]}"
}

[ -n "$PY" ] && drive "redis-py" "$PY" "$CL/py_client.py"
runs_lib ioredis && drive "ioredis" node "$CL/ioredis_client.js"
runs_lib redis4 && drive "node-redis 4" node "$CL/noderedis_client.js" --lib redis4
runs_lib redis && drive "node-redis (newest)" node "$CL/noderedis_client.js" --lib redis
drive "redis-cli" bash "$CL/cli_client.sh"

# A refused transaction ran nothing, as seen on the masters: no driver's
# `{txfail}:new` key anywhere, every `{txfail}:old` still "orig".
if [[ " ${GROUPS_RUN[*]} " == *" tx "* ]]; then
  left=$(for m in "$M1" "$M2" "$M3"; do it_redis "$m" --scan --pattern '*{txfail}:new'; done)
  it_eq "refused transactions created no key on the masters" "" "$left"
  old=$(for m in "$M1" "$M2" "$M3"; do
    it_redis "$m" --scan --pattern '*{txfail}:old' | while read -r k; do
      printf '%s=%s\n' "$k" "$(it_redis "$m" GET "$k")"
    done
  done | grep -v '=orig$')
  it_eq "refused transactions changed no key on the masters" "" "$old"
fi

if [ ${#MISSING[@]} -gt 0 ] && [ "$IT_FAILED" -eq 0 ]; then
  it_done
  (IFS=';'; echo "skipped drivers: ${MISSING[*]}")
  exit 77
fi
it_done
