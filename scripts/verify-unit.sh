#!/usr/bin/env bash
# Checks a systemd unit (default deploy/bridgectl.service) with `systemd-analyze verify` and its
# hardening with `systemd-analyze security --offline`. Works without systemd as PID 1 (CI
# containers). verify insists that ExecStart's program exists, so the unit is checked as a copy in a
# temporary directory, with ExecStart's program (also in ExecReload) replaced by /bin/true when the unit's program is not
# installed. Fails on any message from verify, not only on its exit status (it exits 0 on unknown
# keys), and when the exposure level is above MAX_EXPOSURE (tenths; 25 = 2.5 "OK").
set -euo pipefail
cd "$(dirname "$0")/.."
unit=${1:-deploy/bridgectl.service}
max_exposure=${MAX_EXPOSURE:-25}
if ! command -v systemd-analyze >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
name=$(basename "$unit")
exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit" | head -n1)
if [ -n "$exe" ] && [ -x "$exe" ]; then
  cp "$unit" "$tmp/$name"
else
  sed "s#^\(Exec[A-Za-z]*=\)$exe#\1/bin/true#" "$unit" >"$tmp/$name"
fi
out=$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$tmp/$name" 2>&1) || {
  echo "$unit: systemd-analyze verify failed:" >&2
  echo "$out" >&2
  exit 1
}
if [ -n "$out" ]; then
  echo "$unit: systemd-analyze verify complained:" >&2
  echo "$out" >&2
  exit 1
fi
if ! sec=$(systemd-analyze security --offline=yes --threshold="$max_exposure" "$tmp/$name" 2>&1); then
  echo "$unit: exposure above $max_exposure/100 (systemd-analyze security):" >&2
  echo "$sec" | grep -E '✗|Overall' >&2 || echo "$sec" >&2
  exit 1
fi
echo "$unit: systemd-analyze verify ok; $(echo "$sec" | grep -o 'Overall exposure level.*' | tr -d '🙂')"
