#!/usr/bin/env bash
# Mutation testing of the files that hold the rules (issue 19), with
# cargo-mutants (`cargo install cargo-mutants`): each mutant is one small
# change to production code; a good suite fails on ("catches") it.
#
#   scripts/mutants.sh                         # every file listed below
#   scripts/mutants.sh pff/src/names.rs        # only these files
#   scripts/mutants.sh --list                  # the mutants, without running
#   JOBS=2 scripts/mutants.sh ...              # parallel builds (default 1)
#   IN_PLACE=1 scripts/mutants.sh ...          # mutate this tree, reuse its warm
#                                              # target/ (files restored after)
#   TEST_ARGS="--test it -- server:: init_hp_io::" scripts/mutants.sh daqdata-server/src/upload.rs
#                                              # only these modules of tests/it/
#   TEST_ARGS=--lib scripts/mutants.sh F; ITERATE=1 scripts/mutants.sh F
#                                              # two passes: the unit tests first,
#                                              # then every test on what they missed
#   RE='common_name|poll_ready' scripts/mutants.sh F
#                                              # only the mutants whose names match
#
# Prints caught / missed / timeout / unviable per file, and where each
# file's full results are (target/mutants/<file>/mutants.out: missed.txt
# lists the survivors). Mutation runs are CPU-heavy: run them on a quiet
# machine, one file at a time if it is shared.
set -uo pipefail
cd "$(dirname "$0")/.."

default_files=(
    daqdata-server/src/upload.rs
    daqdata-server/src/access.rs
    daqdata-server/src/admission.rs
    daqdata-server/src/stream.rs
    daqdata-server/src/lifecycle.rs
    daqdata-server/src/conn_guard.rs
    daqdata-server/src/hashpipe_sockets.rs
    daqdata-server/src/broadcast.rs
    daqdata-server/src/keyed_count.rs
    daqdata-server/src/gateway/config.rs
    daqdata-server/src/gateway/hashpipe.rs
    daqdata-server/src/gateway/mod.rs
    daqdata-server/src/gateway/upstream.rs
    daqdata-proto/src/hp_io_config.rs
    daqdata-proto/src/mapping.rs
    pff/src/names.rs
    pff/src/frame.rs
    pff/src/socket.rs
    hpio/src/follow.rs
    hpio/src/tracker.rs
)

list=()
files=()
for arg in "$@"; do
    case "$arg" in
        --list) list=(--list) ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) files+=("$arg") ;;
    esac
done
[ ${#files[@]} -eq 0 ] && files=("${default_files[@]}")

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "cargo-mutants is missing: cargo install cargo-mutants" >&2
    exit 2
fi

jobs=${JOBS:-1}
read -r -a test_args <<<"${TEST_ARGS:-}"
count() { if [ -f "$1" ]; then grep -c . "$1"; else echo 0; fi; }

printf '%-40s %7s %7s %8s %9s\n' file caught missed timeout unviable
status=0
for file in "${files[@]}"; do
    if [ ! -f "$file" ]; then
        echo "$file: no such file" >&2
        status=2
        continue
    fi
    package=${file%%/*}
    out=target/mutants/${file//\//_}
    mkdir -p "$out"
    args=(--package "$package" --file "$file" --output "$out")
    # A busy machine slows the tests; a short auto-set timeout would count
    # slow runs as "timeout" rather than caught or missed.
    args+=(--minimum-test-timeout "${MIN_TEST_TIMEOUT:-120}")
    if [ -n "${IN_PLACE:-}" ]; then args+=(--in-place); else args+=(--jobs "$jobs"); fi
    # Skips the mutants an earlier run of this file caught.
    if [ -n "${ITERATE:-}" ]; then args+=(--iterate); fi
    if [ -n "${RE:-}" ]; then args+=(--re "$RE"); fi
    if [ ${#list[@]} -gt 0 ]; then
        cargo mutants "${args[@]}" --list
        continue
    fi
    if [ ${#test_args[@]} -gt 0 ]; then
        cargo mutants "${args[@]}" -- "${test_args[@]}" >"$out/run.log" 2>&1
    else
        cargo mutants "${args[@]}" >"$out/run.log" 2>&1
    fi
    rc=$?
    # 0: all caught; 2: some missed; 3: some timed out; else: it could not run.
    case $rc in 0|2|3) ;; *) echo "$file: cargo mutants failed (rc $rc), see $out/run.log" >&2; status=2 ;; esac
    r=$out/mutants.out
    printf '%-40s %7s %7s %8s %9s\n' "$file" "$(count "$r/caught.txt")" "$(count "$r/missed.txt")" \
        "$(count "$r/timeout.txt")" "$(count "$r/unviable.txt")"
    [ "$(count "$r/missed.txt")" -gt 0 ] && status=1
done
exit $status
