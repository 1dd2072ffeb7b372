#!/usr/bin/env bash
# Checks dist/daqdata-server@.service with `systemd-analyze verify`, as CI
# does, once per config in dist/ (each is an instance of the template: the
# DAQ node's daq_data_server.toml, the head node's gateway.toml): the unit
# must parse with no warning at all, against the binary this checkout built
# (verify insists that ExecStart's program exists), and the config must
# pass --check-config.
#
#   dist/verify-unit.sh [path/to/daqdata-server]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/daqdata-server}")
[ -x "$bin" ] || { echo "verify-unit: $bin is not built" >&2; exit 1; }
have_systemd=yes
if ! command -v systemd-analyze >/dev/null; then
    echo "verify-unit: systemd-analyze is not installed here; the unit file was not checked" >&2
    have_systemd=no
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for config in dist/*.toml; do
    name=$(basename "$config" .toml)
    "$bin" --check-config "$config"
    [ "$have_systemd" = yes ] || continue
    # The instance's config where the unit looks for it, the binary where
    # this checkout built it.
    mkdir -p "$tmp/etc"
    cp "$config" "$tmp/etc/"
    unit="$tmp/daqdata-server@$name.service"
    sed -e "s|/usr/local/bin/daqdata-server|$bin|g" -e "s|/etc/daqdata/|$tmp/etc/|g" \
        dist/daqdata-server@.service > "$unit"
    if ! out=$(systemd-analyze verify "$unit" 2>&1) || [ -n "$out" ]; then
        echo "verify-unit: dist/daqdata-server@.service as daqdata-server@$name has problems:" >&2
        echo "$out" >&2
        exit 1
    fi
done
echo "verify-unit: dist/daqdata-server@.service and $(echo dist/*.toml) are good"
