#!/usr/bin/env bash
# The private-lab demo: installs what it needs, builds, then runs `bridgectl lab`, which builds a
# private Tor network inside its own loopback-only network namespace and runs a bridge in it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if [ "$(id -u)" != 0 ]; then exec sudo node dist/src/cli/main.js lab "$@"; fi
exec node dist/src/cli/main.js lab "$@"
