#!/usr/bin/env bash
# Soak test: daqsim (4 modules at 1000 frames/s, a new file every 10,000
# frames, a new run every 10 minutes) -> the release server tracking that
# tree, 100 streaming clients (10 of them reconnecting every few seconds),
# a forced InitHpIo every 2 minutes and an uploader, all on this machine.
# Samples the server's RSS, open files, threads and CPU every 10 s, prints
# a markdown table and a verdict, draws an RSS-over-time PNG, and exits 0
# only when the verdict passes. Short runs (under 10 minutes) scale the
# schedule down and say how.
#
#   scripts/soak.sh --minutes 30                 # plot: docs/soak-rss.png
#   scripts/soak.sh --minutes 1 --plot target/soak-ci.png
#
# Python: target/ci-venv (made by .ci/run) when it has what the script
# needs, else target/soak-venv, made here with pip from PyPI.
set -euo pipefail
export SOAK_CALLER_CWD="$PWD"
cd "$(dirname "$0")/.."
cargo build --release -p daqdata-server -p daqsim -p daqdata-client >&2

need='import grpc, grpc_tools, google.protobuf, numpy, matplotlib'
py=""
for venv in target/ci-venv target/soak-venv; do
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$need" 2>/dev/null; then
        py="$venv/bin/python"
        break
    fi
done
if [ -z "$py" ]; then
    echo "soak: making target/soak-venv (grpcio, grpcio-tools, protobuf, numpy, matplotlib from PyPI)" >&2
    python3 -m venv target/soak-venv
    target/soak-venv/bin/pip install --quiet --disable-pip-version-check \
        grpcio==1.70.0 grpcio-tools==1.70.0 'protobuf>=5.26.1,<6' numpy matplotlib >&2
    py=target/soak-venv/bin/python
fi
exec "$py" scripts/soak.py "$@"
