#!/usr/bin/env bash
# The committed command table (c/proxy/cmdtab_gen.inc) matches the installed
# redis-server: scripts/gen_commands.sh regenerates it from a live server's
# COMMAND into a temp file, and any difference -- a command added or gone,
# an arity, a flag the proxy keeps, a key spec, or the Redis version in the
# header -- fails here with the diff, so the table cannot drift silently
# from the Redis the proxy fronts. (Fix: run scripts/gen_commands.sh, review
# the diff, commit.)
source "$(dirname "$0")/lib.sh"

table=$IT_ROOT/c/proxy/cmdtab_gen.inc
fresh=$IT_DIR/cmdtab_fresh.inc
it_check "gen_commands.sh runs against a live redis-server" \
  sh -c "'$IT_ROOT/scripts/gen_commands.sh' '$fresh' 2> '$IT_DIR/gen.err'"
if ! diff -u "$table" "$fresh" > "$IT_DIR/drift.diff"; then
  head -40 "$IT_DIR/drift.diff"
fi
it_check "no drift between the committed table and redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')" \
  test ! -s "$IT_DIR/drift.diff"

# the comparison sees a change of each kind (a doctored copy must differ)
for edit in 's/^KVP_CMD("get", *2,/KVP_CMD("get",                   3,/' \
            '/^KVP_CMD("getdel"/d' \
            's/^\(KVP_CMD("incr", .*\)|KVP_CF_FAST)/\1)/' \
            's/^\(KVP_CMD("rename", .*\)KS_RANGE(2,0,1)/\1KS_RANGE(2,1,1)/'; do
  sed "$edit" "$fresh" > "$IT_DIR/doctored.inc"
  it_check "a doctored table is caught: $edit" sh -c "! diff -q '$IT_DIR/doctored.inc' '$fresh' >/dev/null"
done
it_done
