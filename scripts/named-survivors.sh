#!/usr/bin/env bash
# The five mutants issue 19 names, applied by hand one at a time: each
# must make the test written for it fail. Prints "killed" or "SURVIVED"
# per mutant with the test that decided, and exits non-zero if any
# survived. The tree is restored after each (and on Ctrl-C).
#
#   scripts/named-survivors.sh           # all five
#   scripts/named-survivors.sh 2 4       # only these
#
# Needs a clean work tree for the files it mutates; each mutant rebuilds
# the server's tests (about a minute each on 2 cores).
set -uo pipefail
cd "$(dirname "$0")/.."

# number | file | perl substitution (one line of production code) | cargo test arguments
mutants=(
    "1|daqdata-server/src/access.rs|s/mode & 0o077 != 0/mode & 0o070 != 0/|-p daqdata-server --lib access::tests::a_token_file_others_than_its_owner_may_open_is_refused"
    "2|daqdata-server/src/message_limit.rs|s/MAX_MESSAGE_BYTES: usize = 64 \* 1024;/MAX_MESSAGE_BYTES: usize = 60 * 1024;/|-p daqdata-server --test it server::uploads_are_capped_at_exactly_64_kib"
    "3|daqdata-server/src/lifecycle.rs|s/let mut running = self.running.lock\(\).await;/let Ok(mut running) = self.running.try_lock() else { return Err(Status::unavailable(\"busy\")); };/|-p daqdata-server --test it init_hp_io::two_init_hp_io_at_the_same_moment_run_one_after_the_other"
    "4|daqdata-server/src/hp_io.rs|s/on_demand: true,/on_demand: false,/|-p daqdata-server --test it metrics::an_idle_server_reads_no_frame_until_a_stream_opens"
    "5|daqdata-server/src/stream.rs|s/\(due \+ self.interval\).max/(due + self.interval - self.early).max/|-p daqdata-server --test it pacing::"
)

what=("$@")
restore() { [ -n "${file:-}" ] && git checkout -q -- "$file"; }
trap 'restore; exit 130' INT TERM

status=0
for m in "${mutants[@]}"; do
    IFS='|' read -r n file subst test_args <<<"$m"
    if [ ${#what[@]} -gt 0 ] && [[ ! " ${what[*]} " =~ " $n " ]]; then continue; fi
    if ! git diff --quiet -- "$file"; then
        echo "$n: $file has uncommitted changes; commit or stash them first" >&2
        exit 2
    fi
    perl -0pi -e "$subst" "$file"
    if git diff --quiet -- "$file"; then
        echo "$n: the mutation no longer applies to $file ($subst): update this script" >&2
        status=2
        continue
    fi
    line=$(git diff -U0 -- "$file" | grep '^+[^+]' | head -1 | cut -c2- | sed 's/^ *//')
    log=target/named-survivors/$n.log
    mkdir -p "$(dirname "$log")"
    read -r -a args <<<"$test_args"
    cargo test "${args[@]}" >"$log" 2>&1
    rc=$?
    restore
    file=
    if [ $rc -eq 101 ] && grep -q "test result: FAILED" "$log"; then
        printf '%s killed    %s\n    by: cargo test %s\n' "$n" "$line" "$test_args"
    elif [ $rc -eq 0 ]; then
        printf '%s SURVIVED  %s\n    by: cargo test %s\n' "$n" "$line" "$test_args"
        status=1
    else
        echo "$n: did not build or run (rc $rc): see $log" >&2
        status=2
    fi
done
exit $status
