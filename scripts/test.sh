#!/usr/bin/env bash
# The test suite: installs what it needs, builds, then runs every test inside a fresh network
# namespace that has only loopback (tor in the tests can reach nothing off this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(dist/test/*.test.js)
exec bash scripts/netns.sh node --test --test-concurrency="${TEST_CONCURRENCY:-1}" --test-timeout=600000 "${files[@]}"
