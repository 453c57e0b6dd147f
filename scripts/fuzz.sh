#!/usr/bin/env bash
# fuzz.sh TARGET [SECONDS] [LIBFUZZER OPTIONS...] -- build one fuzz target
# with clang (libFuzzer + ASan + UBSan) and run it.
#
#   TARGET     resp | reply | keyword | control | http | config | btable | list
#              (tests/fuzz/README says what each one checks)
#   SECONDS    how long to fuzz (default 60)
#
# Builds into build-fuzz/<target> (installs clang and libclang-rt-14-dev
# when missing). Fuzzes with the seed corpus tests/fuzz/corpus/<target>/
# and the regression inputs tests/fuzz/regress/<target>/ as starting points;
# the inputs it finds go to build-fuzz/corpus/<target>/ (kept between runs,
# not in git). A crash, leak or time-out is written to
# tests/fuzz/crashes/<target>/ and the script exits 1: fix it, then move the
# file to tests/fuzz/regress/<target>/, where scripts/test.sh replays it
# (ctest fuzz_<target>) from then on. The last line: `TARGET: N executions
# in S s, C corpus inputs, K new crashes`.
set -u

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/common.sh"
cd "$KV_ROOT" || exit 1

C_TARGETS=(resp reply keyword)
LUA_TARGETS=(control http config btable)

usage() { sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"; }
[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h | --help) usage; exit 0 ;; list) printf '%s\n' "${C_TARGETS[@]}" "${LUA_TARGETS[@]}"; exit 0 ;; esac
TARGET=$1 SECS=${2:-60}
shift
[ $# -gt 0 ] && shift
kind=
for t in "${C_TARGETS[@]}"; do [ "$t" = "$TARGET" ] && kind=c; done
for t in "${LUA_TARGETS[@]}"; do [ "$t" = "$TARGET" ] && kind=lua; done
[ -n "$kind" ] || kv_die "unknown target $TARGET (scripts/fuzz.sh list)"
[[ "$SECS" =~ ^[0-9]+$ ]] || kv_die "SECONDS must be a number, not $SECS"

# libFuzzer's runtime: any installed clang's, else Debian's 14 (bookworm)
rt=$(find /usr/lib/llvm-*/lib/clang/*/lib/linux -name 'libclang_rt.fuzzer-x86_64.a' 2>/dev/null | head -n 1)
kv_ensure_deps clang:clang "${rt:-/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a}:libclang-rt-14-dev" ||
    kv_die "clang and libclang-rt-14-dev are needed"

OUT=$KV_ROOT/build-fuzz/$TARGET
BIN=$OUT/fuzz_$TARGET
mkdir -p "$OUT" "$KV_ROOT/build-fuzz/corpus/$TARGET" "tests/fuzz/crashes/$TARGET" \
    "tests/fuzz/regress/$TARGET" || exit 1

# -------------------------------------------------------------- build

# shellcheck disable=SC2207 # pkg-config prints words
PKG_CFLAGS=($(pkg-config --cflags luajit libevent hiredis))
# shellcheck disable=SC2207
PKG_LIBS=($(pkg-config --libs luajit libevent libevent_pthreads hiredis))
# shellcheck disable=SC2054 # the commas are -fsanitize's
CFLAGS=(-g -O1 -std=gnu11 -D_GNU_SOURCE -fno-omit-frame-pointer
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    "-DKV_LUA_DIR=\"$KV_ROOT/lua\"" "${PKG_CFLAGS[@]}")
SRCS=(c/core/*.c)
if [ "$kind" = lua ]; then
    SRCS+=(c/lua/*.c tests/fuzz/fuzz_lua.c)
    CFLAGS+=("-DFUZZ_TARGET=\"$TARGET\"" "-DFUZZ_DIR=\"$KV_ROOT/tests/fuzz\"")
else
    SRCS+=("tests/fuzz/fuzz_$TARGET.c")
    # keyword: the proxy's command table and reply restorer
    [ "$TARGET" = keyword ] && SRCS+=(c/proxy/command.c c/proxy/conf.c c/proxy/merge.c)
fi
need=1
if [ -x "$BIN" ] && [ -z "$(find "${SRCS[@]}" c/core/*.h c/lua/*.h c/proxy/*.h c/proxy/*.inc "$0" -newer "$BIN" -print -quit)" ]; then
    need=0
fi
if [ $need -eq 1 ]; then
    echo "building $BIN ..."
    clang "${CFLAGS[@]}" "${SRCS[@]}" -o "$BIN" -rdynamic "${PKG_LIBS[@]}" -lpthread -lm -ldl \
        >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; kv_die "build of fuzz_$TARGET failed"; }
fi

# ---------------------------------------------------------------- run

CRASHES=tests/fuzz/crashes/$TARGET
before=$(find "$CRASHES" -type f | wc -l)
LOG=$OUT/fuzz.log
echo "fuzzing $TARGET for ${SECS}s (log: $LOG)"
# halt_on_error etc.: the first report is the crash libFuzzer keeps
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=1${KV_ASAN_OPTIONS:+:$KV_ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="suppressions=$KV_ROOT/tests/lsan.supp:print_suppressions=0"
rc=0
"$BIN" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$CRASHES/" "$@" \
    "$KV_ROOT/build-fuzz/corpus/$TARGET" "tests/fuzz/corpus/$TARGET" "tests/fuzz/regress/$TARGET" \
    >"$LOG" 2>&1 || rc=$?
after=$(find "$CRASHES" -type f | wc -l)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG" | tail -1)
secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$LOG" | tail -1)
corpus=$(find "$KV_ROOT/build-fuzz/corpus/$TARGET" -type f | wc -l)
if [ $rc -ne 0 ]; then
    grep -E -m 5 'ERROR|error|==[0-9]+==|fuzz_|Test unit written' "$LOG" | sed 's/^/  /'
    echo "  (last lines of $LOG)"
    tail -n 15 "$LOG" | sed 's/^/  /'
fi
echo "$TARGET: ${execs:-?} executions in ${secs:-?} s, $corpus corpus inputs, $((after - before)) new crashes$([ $rc -ne 0 ] && echo " (exit $rc)")"
[ $rc -eq 0 ] && [ "$after" -eq "$before" ]
