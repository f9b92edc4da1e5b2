#!/usr/bin/env bash
# Prints the path of a minimal Debian 13 (trixie) root for the systemd-nspawn package test,
# building it with mmdebstrap (--variant=minbase) when missing. Cached under
# ${BRIDGECTL_TEST_CACHE:-/var/cache/bridgectl-test}/, keyed by suite and package list: a changed
# list builds a new root (about 30 s and 260 MB). Needs root.
set -euo pipefail
suite=${1:-trixie}
packages=systemd,systemd-sysv,dbus,nodejs,tor,tor-geoipdb,obfs4proxy,iproute2,procps
cache=${BRIDGECTL_TEST_CACHE:-/var/cache/bridgectl-test}
key=$(printf '%s %s\n' "$suite" "$packages" | sha256sum | cut -c1-12)
root=$cache/$suite-$key
if [ -x "$root/usr/bin/node" ] && [ -e "$root/.complete" ]; then
  echo "$root"
  exit 0
fi
mkdir -p "$cache"
# The stock tor service must never start (it would join the public Tor network): mask it in the
# image as well as on the boot line. The archive can fail for a moment (seen: "apt-get update
# --error-on=any ... failed" on a fresh machine, fine minutes later): three tries, 20 s apart.
for try in 1 2 3; do
  rm -rf "$root.tmp"
  if mmdebstrap --quiet --variant=minbase --include="$packages" \
    --customize-hook='ln -sf /dev/null "$1/etc/systemd/system/tor.service"' \
    --customize-hook='ln -sf /dev/null "$1/etc/systemd/system/tor@.service"' \
    --customize-hook='rm -f "$1/etc/machine-id"; : > "$1/etc/machine-id"' \
    "$suite" "$root.tmp" http://deb.debian.org/debian >&2; then
    break
  fi
  if [ "$try" = 3 ]; then
    echo "container-root: mmdebstrap of $suite failed 3 times" >&2
    exit 1
  fi
  echo "container-root: mmdebstrap of $suite failed (try $try of 3); again in 20 s" >&2
  sleep 20
done
touch "$root.tmp/.complete"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "$root"
