#!/usr/bin/env bash
# Installs what bridgectl's demo, tests and benchmarks need on Debian 12, then builds it.
# Idempotent: installs only what is missing. System packages need root.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "bridgectl needs Node.js >= 20 (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

missing=()
for cmd in python3:python3 tor:tor tor-gencert:tor obfs4proxy:obfs4proxy haproxy:haproxy ip:iproute2 unshare:util-linux setpriv:util-linux sysctl:procps promtool:prometheus tmux:tmux nft:nftables; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd##*:}")
done
# The Debian package and its systemd-nspawn test (npm run package, test/package-systemd.test.ts).
for cmd in mmdebstrap:mmdebstrap systemd-nspawn:systemd-container lintian:lintian dpkg-shlibdeps:dpkg-dev nsenter:util-linux; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd##*:}")
done
# tor's GeoIP files: the package depends on them, and without them every twin warns.
[ -e /usr/share/tor/geoip ] || missing+=(tor-geoipdb)
# Headers for the sd-notify binding (systemd readiness), built by npm ci.
[ -e /usr/include/systemd/sd-daemon.h ] || missing+=(libsystemd-dev)
# The engine's fuzzer (scripts/fuzz.sh, run by CI): clang with libFuzzer; the sanitizer build uses gcc's libasan.
command -v clang >/dev/null 2>&1 || missing+=(clang)
compgen -G '/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a' >/dev/null || missing+=(libclang-rt-dev)
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [ "$(id -u)" != 0 ]; then
    echo "installing $pkgs with sudo" >&2
    SUDO=sudo
  else
    SUDO=
  fi
  # Installing tor must not start the system tor service: it would join the public Tor network.
  created_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  [ -n "$created_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
  # If a service manager started tor anyway, stop it.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet tor 2>/dev/null; then
    $SUDO systemctl disable --now tor >/dev/null 2>&1 || true
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
chmod +x dist/src/cli/main.js
