#!/usr/bin/env bash
# End-to-end benchmark: daqsim (4 modules, img16 + ph256 at 1000 frames/s
# each, restamped) -> the release server tracking that tree -> `daqdata
# bench`, one row per scenario, medians of --runs runs with their spread.
#
#   scripts/bench-e2e.sh                 # all scenarios, 3 runs, 10 s each
#   scripts/bench-e2e.sh --runs 1 --duration 5 --only "100x0.05,idle"
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p daqdata-server -p daqsim -p daqdata-client >&2
exec python3 scripts/bench_e2e.py "$@"
