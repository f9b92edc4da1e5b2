#!/usr/bin/env bash
# The benchmark (bench/README.md): installs what it needs (haproxy among it), builds, then runs
# bench/run.ts inside a fresh network namespace that has only loopback.
#   npm run bench [-- --quick] [-- --perf] [-- --proxies haproxy,bridgectl] [-- --only bulk,rate,idle]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The native addon (IP_BIND_ADDRESS_NO_PORT, the native engine) is built by npm install; rebuild it
# when it is missing or older than its sources, with the node-gyp that npm carries.
addon=build/Release/bind_no_port.node
if [ ! -f $addon ] || [ -n "$(find binding.gyp src/balancer/native -newer $addon)" ]; then
  nodedir=$(npm config get nodedir 2>/dev/null || true)
  case "$nodedir" in undefined | null) nodedir= ;; esac
  node "$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js" rebuild ${nodedir:+--nodedir="$nodedir"} >/dev/null
fi
if [[ " $* " == *" --perf "* ]] && ! command -v perf >/dev/null; then
  echo "bench.sh: --perf needs perf (linux-perf)" >&2
  exit 1
fi
exec bash scripts/netns.sh bash -c '
  ulimit -n 20000
  # Wider ephemeral port range for the session-rate run (this namespace only).
  echo "10000 65000" > /proc/sys/net/ipv4/ip_local_port_range
  exec node dist/bench/run.js "$@"' bench "$@"
