#!/usr/bin/env bash
# Checks dist/daqdata-server.service with `systemd-analyze verify`, as CI
# does: the unit must parse with no warning at all, against the binary this
# checkout built (verify insists that ExecStart's program exists).
#
#   dist/verify-unit.sh [path/to/daqdata-server]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/daqdata-server}")
if ! command -v systemd-analyze >/dev/null; then
    echo "verify-unit: systemd-analyze is not installed here; the unit file was not checked" >&2
    exit 0
fi
[ -x "$bin" ] || { echo "verify-unit: $bin is not built" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/daqdata-server|$bin|g" dist/daqdata-server.service > "$tmp/daqdata-server.service"
if ! out=$(systemd-analyze verify "$tmp/daqdata-server.service" 2>&1) || [ -n "$out" ]; then
    echo "verify-unit: dist/daqdata-server.service has problems:" >&2
    echo "$out" >&2
    exit 1
fi
"$bin" --check-config dist/daq_data_server.toml
echo "verify-unit: dist/daqdata-server.service and dist/daq_data_server.toml are good"
