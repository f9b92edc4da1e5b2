#!/usr/bin/env bash
# The benchmark (bench/README.md): installs what it needs (haproxy among it), builds, then runs
# bench/run.ts inside a fresh network namespace that has only loopback.
#   npm run bench [-- --quick] [-- --perf] [-- --proxies haproxy,bridgectl] [-- --only bulk,rate,idle]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The native addon (IP_BIND_ADDRESS_NO_PORT, splice relay) is built by npm install; build it if missing.
[ -f build/Release/bind_no_port.node ] || npx --yes node-gyp rebuild >/dev/null
if [[ " $* " == *" --perf "* ]] && ! command -v perf >/dev/null; then
  echo "bench.sh: --perf needs perf (linux-perf)" >&2
  exit 1
fi
exec bash scripts/netns.sh bash -c '
  ulimit -n 20000
  # Wider ephemeral port range for the session-rate run (this namespace only).
  echo "10000 65000" > /proc/sys/net/ipv4/ip_local_port_range
  exec node dist/bench/run.js "$@"' bench "$@"
