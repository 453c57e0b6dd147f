#!/usr/bin/env bash
# test.sh [--long] [FILTER...] -- every test of the project, one summary line.
#
#   C units       ctest in build/: each `ok N`/`not ok N` line a test; a test
#                 program that fails without a `not ok` line counts 1 failure
#   Lua specs     busted --lua=luajit -o TAP from the repo root (.busted)
#   integration   every executable tests/it/*.sh, sorted, each one test:
#                 exit 0 pass, 77 skip, anything else (or a time-out) fail;
#                 lib*.sh and _*.sh are helpers the tests source, not tests;
#                 the client libraries of it/35_client_libs are installed
#                 first when missing (apt, and npm into tests/clients/)
#
#   --long        export KV_LONG=1 to the integration tests (long scenarios)
#   --asan        build with ASan + UBSan into build-asan/ (cmake -DKV_SANITIZE=ON)
#                 and run the C units and the data-path integration tests
#                 ($ASAN_IT, or what FILTER selects) against those binaries; no
#                 Lua specs (busted runs the plain luajit). Every sanitizer
#                 report (ASan, UBSan, LeakSanitizer at exit) is written under
#                 build-asan/test-logs/sanitizer/ and fails the test it came from
#   --no-asan     CI=true runs the --asan pass after the normal one; not this time
#   FILTER        c | lua | it, or c/PAT | lua/PAT | it/PAT (PAT: part of a
#                 name), or a bare PAT for any suite; e.g. `test.sh it/http`
#   KV_IT_TIMEOUT seconds per integration test (default 1200, 3600 with --long)
#
# Full logs: build/test-logs/. The last line is always `N passed, M failed`;
# the exit status is 0 only when M is 0.
set -u

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/common.sh"
cd "$KV_ROOT" || exit 1

LONG=0
ASAN=0
NO_ASAN=0
FILTERS=()
# The integration tests of the --asan pass: the data path, its shutdown, and
# the config server and its tools' paths that stop cleanly, transactions,
# blocking commands, RESP3, introspection, SCAN, keyword keys, pub/sub
# (~4 min in all).
ASAN_IT=(10_ 11_ 12_ 13_ 14_ 15_ 16_ 17_ 20_ 21_ 22_ 23_ 30_ 36_ 37_ 38_ 39_ 40_ 42_ 50_ 60_ 75_ 98_)
for arg in "$@"; do
    case "$arg" in
    --long) LONG=1 ;;
    --asan) ASAN=1 ;;
    --no-asan) NO_ASAN=1 ;;
    -h | --help)
        sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"
        exit 0
        ;;
    -*)
        echo "unknown option $arg (see --help)" >&2
        exit 2
        ;;
    *)
        arg=${arg#./} arg=${arg#tests/} arg=${arg%.sh} arg=${arg%_spec.lua} arg=${arg%.c}
        FILTERS+=("$arg")
        ;;
    esac
done

LOGDIR="$KV_BUILD/test-logs"
PASSED=0 FAILED=0 SKIPPED=0
FAILED_NAMES=()

pass() { green "PASS $*"; }
fail() { # NAME [DETAIL]
    red "FAIL $*"
    FAILED_NAMES+=("$1")
}

# selected SUITE NAME: 0 when the filters select test NAME of SUITE.
selected() {
    local suite=$1 name=$2 f
    [ ${#FILTERS[@]} -eq 0 ] && return 0
    for f in "${FILTERS[@]}"; do
        case "$f" in
        "$suite") return 0 ;;
        "$suite"/*) [[ "$name" == *"${f#*/}"* ]] && return 0 ;;
        c | lua | it | c/* | lua/* | it/*) ;;
        *) [[ "$name" == *"$f"* ]] && return 0 ;;
        esac
    done
    return 1
}

# suite_wanted SUITE: 0 when any filter could select a test of SUITE.
suite_wanted() {
    local f
    [ ${#FILTERS[@]} -eq 0 ] && return 0
    for f in "${FILTERS[@]}"; do
        case "$f" in
        "$1" | "$1"/*) return 0 ;;
        c | lua | it | c/* | lua/* | it/*) ;;
        *) return 0 ;;
        esac
    done
    return 1
}

finish() {
    echo
    [ $SKIPPED -gt 0 ] && echo "$SKIPPED skipped"
    [ ${#FAILED_NAMES[@]} -gt 0 ] && echo "failed: ${FAILED_NAMES[*]}"
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit
}

# tap_count FILE: print "ok notok skip plan" for the TAP lines of FILE
# (`ok .. # SKIP` is a skip, `not ok .. # TODO` is not a failure).
tap_count() {
    awk '
        /^not ok([ \t]|$)/ { if ($0 ~ /#[ \t]*TODO/) s++; else n++; next }
        /^ok([ \t]|$)/     { if ($0 ~ /#[ \t]*SKIP/) s++; else o++; next }
        /^1\.\.[0-9]+/     { p = substr($0, 4) + 0 }
        END { printf "%d %d %d %d\n", o, n, s, p }' "$1"
}

# show_failures FILE: the `not ok` lines of a TAP stream with their `#` notes.
show_failures() {
    awk '
        /^not ok/ && $0 !~ /#[ \t]*TODO/ { show = 1; print "  " $0; next }
        /^(ok|not ok|1\.\.)/ { show = 0; next }
        show && /^#/ && lines++ < 200 { print "    " $0 }' "$1"
}

# ---------------------------------------------------------------- sanitizers

# In the --asan pass SAN_DIR is set: san_env DIR exports the sanitizers'
# options so that every report of every process below (daemons included,
# whose stderr is /dev/null) lands in a file DIR/asan.PID or DIR/ubsan.PID.
SAN_DIR=
san_env() {
    mkdir -p "$1"
    # halt_on_error: the first report ends the process (a test cannot pass
    # over it); detect_leaks: LeakSanitizer at a clean exit (kvp and kvcs
    # exit through main on SIGTERM); abort_on_error=0: exit status, no core.
    export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0:log_path=$1/asan${KV_ASAN_OPTIONS:+:$KV_ASAN_OPTIONS}"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$1/ubsan"
    export LSAN_OPTIONS="suppressions=$KV_ROOT/tests/lsan.supp:print_suppressions=0"
}

# san_reports DIR: print the report files under DIR (none: nothing printed).
san_reports() {
    find "$1" -type f \( -name 'asan.*' -o -name 'ubsan.*' \) 2>/dev/null | LC_ALL=C sort
}

# san_show FILE: the report's summary lines and the top of its first stack.
san_show() {
    echo "  --- sanitizer report $1:"
    grep -m 1 -E 'ERROR: |runtime error:' "$1" | sed 's/^/  /'
    grep -m 8 -E '^ *#[0-9]+ ' "$1" | sed 's/^/    /'
    grep -m 1 '^SUMMARY:' "$1" | sed 's/^/  /'
}

# ---------------------------------------------------------------- C units

run_ctest() {
    bold "== C unit tests (ctest)"
    local pat='' f log="$LOGDIR/ctest.log" rc=0
    for f in "${FILTERS[@]}"; do
        case "$f" in c/*) pat="${pat:+$pat|}${f#c/}" ;; esac
    done
    local -a args=(--test-dir "$KV_BUILD" -V --timeout "${KV_CTEST_TIMEOUT:-300}")
    [ -n "$pat" ] && args+=(-R "$pat")
    [ -n "$SAN_DIR" ] && san_env "$SAN_DIR/ctest"
    ctest "${args[@]}" </dev/null >"$log" 2>&1 || rc=$?
    if [ -n "$SAN_DIR" ]; then
        local r
        while IFS= read -r r; do
            [ -n "$r" ] || continue
            fail "c/sanitizer" "($r)"
            san_show "$r"
            FAILED=$((FAILED + 1))
        done < <(san_reports "$SAN_DIR/ctest")
    fi

    # One line per test program: NUM NAME STATUS
    local results
    results=$(awk '
        match($0, /^ *[0-9]+\/[0-9]+ +Test +#[0-9]+: /) {
            head = substr($0, RSTART, RLENGTH); rest = substr($0, RSTART + RLENGTH)
            sub(/^.*Test +#/, "", head)
            num = head; gsub(/[^0-9]/, "", num)
            split(rest, w, " "); name = w[1]
            st = rest; sub(/^[^ ]+ \.*/, "", st); sub(/ +[0-9.]+ sec.*$/, "", st)
            gsub(/\*/, " ", st); gsub(/  +/, " ", st); sub(/^ +/, "", st); sub(/ +$/, "", st)
            gsub(/ /, "_", st)
            print num, name, (st == "" ? "Failed" : st)
        }' "$log")
    if [ -z "$results" ]; then
        if [ $rc -ne 0 ]; then
            tail -n 30 "$log"
            fail c/ctest "(ctest exited $rc without running a test; log: $log)"
            FAILED=$((FAILED + 1))
        else
            echo "no C unit tests found"
        fi
        return
    fi

    local num name st out o n s p seen extra detail any=0
    while read -r num name st; do
        selected c "$name" || [ -n "$pat" ] || continue
        any=1
        out="$LOGDIR/c-$name.log"
        sed -n "s/^$num: //p" "$log" >"$out"
        read -r o n s p < <(tap_count "$out")
        seen=$((o + n + s)) extra=0
        [ "$p" -gt "$seen" ] && extra=$((p - seen))
        [ "$st" != Passed ] && [ $((n + extra)) -eq 0 ] && extra=1
        [ "$st" = Passed ] && [ $seen -eq 0 ] && o=1
        PASSED=$((PASSED + o)) FAILED=$((FAILED + n + extra)) SKIPPED=$((SKIPPED + s))
        if [ $((n + extra)) -eq 0 ]; then
            pass "c/$name ($o ok$([ "$s" -gt 0 ] && echo ", $s skipped"))"
        else
            if [ "$n" -gt 0 ]; then detail="$n not ok"; else detail="no 'not ok' line"; fi
            [ "$st" != Passed ] && detail="$detail; ctest: ${st//_/ }"
            [ "$p" -gt "$seen" ] && detail="$detail; $((p - seen)) of the $p planned checks did not run"
            fail "c/$name" "($detail)"
            show_failures "$out"
            if [ "$n" -eq 0 ]; then
                echo "  --- last lines of its output ($out):"
                tail -n 30 "$out" | sed 's/^/  /'
            fi
        fi
    done <<<"$results"
    [ $any -eq 1 ] || echo "no C unit tests match the filter"
}

# ---------------------------------------------------------------- Lua specs

# busted_run LOG ARGS...: run busted, add its counts; 1 when it crashed
# (no TAP plan line), so the caller can retry file by file.
busted_run() {
    local log=$1 rc=0 o n s p
    shift
    busted --lua=luajit -o TAP "$@" </dev/null >"$log" 2>&1 || rc=$?
    read -r o n s p < <(tap_count "$log")
    if ! grep -q '^1\.\.[0-9]' "$log"; then
        return 1
    fi
    [ $rc -ne 0 ] && [ "$n" -eq 0 ] && n=1
    PASSED=$((PASSED + o)) FAILED=$((FAILED + n)) SKIPPED=$((SKIPPED + s))
    BUSTED_FAILS=$((BUSTED_FAILS + n))
    return 0
}

run_busted() {
    bold "== Lua specs (busted)"
    local -a files=() args=()
    local f want='' log="$LOGDIR/busted.log"
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        selected lua "${f#tests/}" && files+=("$f")
    done < <(find tests/lua -name '*_spec.lua' 2>/dev/null | LC_ALL=C sort)
    if [ ${#files[@]} -eq 0 ]; then
        echo "no Lua specs${FILTERS[*]:+ match the filter}"
        return
    fi
    for f in "${FILTERS[@]}"; do [ "$f" = lua ] && want=all; done
    # The whole suite through .busted, or just the selected files.
    if [ ${#FILTERS[@]} -gt 0 ] && [ -z "$want" ]; then args=("${files[@]}"); fi

    BUSTED_FAILS=0
    if ! busted_run "$log" "${args[@]}"; then
        # busted crashed (its TAP handler dies on a spec that does not load):
        # run file by file so one bad file does not hide the others.
        echo "busted stopped early (see $log); running the specs file by file"
        local flog
        for f in "${files[@]}"; do
            flog="$LOGDIR/busted-$(basename "$f" .lua).log"
            if ! busted_run "$flog" "$f"; then
                local o n s p
                read -r o n s p < <(tap_count "$flog")
                [ "$n" -eq 0 ] && n=1
                PASSED=$((PASSED + o)) FAILED=$((FAILED + n)) SKIPPED=$((SKIPPED + s))
                BUSTED_FAILS=$((BUSTED_FAILS + n))
                fail "lua/${f#tests/lua/}" "(the TAP output crashed on it: $flog)"
                # The plain output names the error the TAP handler choked on.
                busted --lua=luajit -o plainTerminal "$f" </dev/null 2>&1 | tail -n 15 | sed 's/^/  /'
            elif [ "$(tap_count "$flog" | cut -d' ' -f2)" -gt 0 ]; then
                fail "lua/${f#tests/lua/}"
                show_failures "$flog"
            fi
        done
    elif [ $BUSTED_FAILS -gt 0 ]; then
        fail lua "($BUSTED_FAILS failed; log: $log)"
        show_failures "$log"
        [ "$(tap_count "$log" | cut -d' ' -f2)" -eq 0 ] && tail -n 30 "$log" | sed 's/^/  /'
    fi
    [ $BUSTED_FAILS -eq 0 ] && pass "lua ($(grep -c '^ok' "$log") ok)"
}

# ---------------------------------------------------------------- client libraries

# install_client_libs: the client libraries tests/it/35_client_libs.sh drives
# the proxy with (tests/clients/README): Debian's python3-redis, nodejs and
# npm, then the npm packages at the exact versions of
# tests/clients/package-lock.json into tests/clients/node_modules/
# (git-ignored), again whenever the lock file is newer than the last install.
# A failure (no apt, npm registry unreachable) is a warning only: the test
# skips the drivers it cannot run and is reported as skipped, never passed.
install_client_libs() {
    local dir=$KV_ROOT/tests/clients log rc=0
    kv_ensure_deps /usr/lib/python3/dist-packages/redis/__init__.py:python3-redis \
        node:nodejs npm:npm ||
        yellow "warning: python3-redis/nodejs/npm missing: it/35_client_libs skips their drivers"
    command -v npm >/dev/null 2>&1 || return 0
    local stamp=$dir/node_modules/.kv-installed
    [ -f "$stamp" ] && [ "$stamp" -nt "$dir/package-lock.json" ] && [ "$stamp" -nt "$dir/package.json" ] &&
        return 0
    echo "installing the npm client libraries into tests/clients/node_modules (npm ci)"
    log=$LOGDIR/npm-ci.log
    # --ignore-scripts: none of them needs an install script; bounded
    # retries and an overall time-out, so an unreachable registry costs
    # minutes at most
    (cd "$dir" && CI=true timeout 300 npm ci --no-audit --no-fund --ignore-scripts \
        --fetch-retries=2 --fetch-timeout=30000) </dev/null >"$log" 2>&1 || rc=$?
    if [ $rc -eq 0 ]; then
        touch "$stamp"
    else
        grep -m 5 -i 'npm err' "$log" | sed 's/^/  /'
        yellow "warning: npm ci failed (status $rc, log: $log): it/35_client_libs skips the Node drivers"
    fi
}

# ---------------------------------------------------------------- integration

# kill_leftovers DIR: end processes a test left behind (their working
# directory or command line lies under the test's own TMPDIR).
kill_leftovers() {
    local dir=$1 p pid cwd cmd
    local -a pids=()
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = $$ ] && continue
        cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
        cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)
        if [[ "$cwd" == "$dir" || "$cwd" == "$dir"/* || "$cmd" == *"$dir"* ]]; then
            pids+=("$pid")
        fi
    done
    [ ${#pids[@]} -eq 0 ] && return 0
    yellow "  warning: the test left ${#pids[@]} process(es) running; ending them: ${pids[*]}"
    for pid in "${pids[@]}"; do ps -o pid=,args= -p "$pid" 2>/dev/null | sed 's/^/    /'; done
    kill -TERM "${pids[@]}" 2>/dev/null
    sleep 1
    kill -KILL "${pids[@]}" 2>/dev/null
    return 0
}

run_it() {
    bold "== integration tests (tests/it)"
    local limit=${KV_IT_TIMEOUT:-$([ $LONG -eq 1 ] && echo 3600 || echo 1200)}
    local f name log tmp t0 dur rc any=0
    mkdir -p "$LOGDIR/it"
    selected it 35_client_libs && install_client_libs
    while IFS= read -r f; do
        [ -f "$f" ] || continue
        case "${f##*/}" in lib*.sh | _*.sh) continue ;; esac   # helpers they source
        name=it/$(basename "$f" .sh)
        selected it "${name#it/}" || continue
        if [ ! -x "$f" ]; then
            # a test that silently never runs cannot fail: count it failed
            fail "$name" "(not executable: chmod +x $f)"
            FAILED=$((FAILED + 1))
            continue
        fi
        any=1
        log="$LOGDIR/$name.log"
        tmp=$(mktemp -d "/tmp/kvtest.$(basename "$f" .sh).XXXXXX")
        t0=$(date +%s)
        rc=0
        local san=
        [ -n "$SAN_DIR" ] && san=$SAN_DIR/${name#it/} && rm -rf "$san"
        (
            [ -n "$san" ] && san_env "$san"
            export TMPDIR=$tmp KV_ROOT KV_BUILD
            if [ $LONG -eq 1 ]; then export KV_LONG=1; else unset KV_LONG; fi
            exec timeout -k 30 "$limit" "$f"
        ) </dev/null >"$log" 2>&1 || rc=$?
        dur=$(($(date +%s) - t0))
        kill_leftovers "$tmp"
        # a sanitizer report fails the test whatever its exit status said
        if [ -n "$san" ] && [ -n "$(san_reports "$san")" ] && { [ $rc -eq 0 ] || [ $rc -eq 77 ]; }; then
            rc=99
        fi
        case $rc in
        0)
            pass "$name (${dur}s)"
            PASSED=$((PASSED + 1))
            rm -rf "$tmp"
            ;;
        77)
            yellow "SKIP $name$(awk 'NF { l = $0 } END { if (l != "") print " (" l ")" }' "$log")"
            SKIPPED=$((SKIPPED + 1))
            rm -rf "$tmp"
            ;;
        *)
            if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
                fail "$name" "(${dur}s, timed out after ${limit}s)"
            else
                fail "$name" "(${dur}s, exit status $rc)"
            fi
            FAILED=$((FAILED + 1))
            echo "  --- last 30 lines (full log: $log; its temp dir kept: $tmp)"
            tail -n 30 "$log" | sed 's/^/  /'
            if [ -n "$san" ]; then
                local r
                while IFS= read -r r; do san_show "$r"; done < <(san_reports "$san")
            fi
            ;;
        esac
    done < <(find tests/it -maxdepth 1 -name '*.sh' 2>/dev/null | LC_ALL=C sort)
    [ $any -eq 1 ] || echo "no integration tests${FILTERS[*]:+ match the filter}"
}

# ---------------------------------------------------------------- main

# run_plain: the normal pass, in build/.
run_plain() {
    BUILT=1
    # the Lua specs load kv.hireader (C) from build/lua/ too
    if suite_wanted c || suite_wanted it || suite_wanted lua; then
        if ! kv_ensure_build; then
            fail build "(log: $KV_BUILD/build.log)"
            FAILED=$((FAILED + 1))
            BUILT=0
        fi
    fi
    if suite_wanted c; then
        if [ $BUILT -eq 1 ]; then run_ctest; else echo "C unit tests not run: the build failed"; fi
    fi
    suite_wanted lua && run_busted
    if suite_wanted it; then
        if [ $BUILT -eq 1 ]; then run_it; else echo "integration tests not run: the build failed"; fi
    fi
}

# run_asan: the --asan pass, in build-asan/ (the filters it was given, or
# the C units and $ASAN_IT). No Lua specs: busted runs the system luajit.
run_asan() {
    bold "== ASan + UBSan build (build-asan/)"
    KV_BUILD=$KV_ROOT/build-asan
    KV_CMAKE_ARGS=-DKV_SANITIZE=ON
    LOGDIR=$KV_BUILD/test-logs
    SAN_DIR=$LOGDIR/sanitizer
    mkdir -p "$LOGDIR" || return
    rm -rf "$SAN_DIR"
    if [ ${#FILTERS[@]} -eq 0 ]; then
        FILTERS=(c)
        for f in "${ASAN_IT[@]}"; do FILTERS+=("it/$f"); done
    fi
    if ! kv_ensure_build; then
        fail asan/build "(log: $KV_BUILD/build.log)"
        FAILED=$((FAILED + 1))
        return
    fi
    suite_wanted c && run_ctest
    suite_wanted it && run_it
}

mkdir -p "$LOGDIR" || exit 1

# shellcheck disable=SC2119 # no extra packages
if ! kv_ensure_deps; then
    fail deps "(missing packages could not be installed)"
    FAILED=$((FAILED + 1))
    finish
fi

if [ $ASAN -eq 1 ]; then
    run_asan
else
    run_plain
    # CI: the whole suite, then the ASan pass (its own build) over the C
    # units and $ASAN_IT; ~N minutes more (README "Tests").
    if [ "${CI:-}" = true ] && [ $NO_ASAN -eq 0 ] && [ ${#FILTERS[@]} -eq 0 ]; then
        run_asan
    fi
fi
finish
