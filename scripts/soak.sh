#!/usr/bin/env bash
# The soak benchmark: the whole path (lab tor clients with obfs4 → `bridgectl run`: obfs4proxy →
# balancer → twins → the private lab network) under session churn and bulk traffic, sampling the
# RSS of every bridge process. Usage: npm run soak -- --minutes N [--json]. Runs inside a fresh
# network namespace that has only loopback (no tor here can reach the public Tor network).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec bash scripts/netns.sh node dist/bench/soak.js "$@"
