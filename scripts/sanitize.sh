#!/usr/bin/env bash
# The native engine under AddressSanitizer and UndefinedBehaviorSanitizer: builds the addon with
# -fsanitize=address,undefined into build-sanitize/ (the production build in build/ is untouched),
# then runs the balancer tests and a short fuzz run with node and libasan preloaded. Fails on any
# sanitizer report (each process writes its reports under a log directory that must stay empty) or
# any failed test. Leak detection is off: node's own allocations at exit are not ours to judge (the
# engine's leaks are caught by balancer-audit.test.ts instead).
#   bash scripts/sanitize.sh                 # CI: the balancer tests, then FUZZ_CASES (default 3000)
#   FUZZ_CASES=100000 bash scripts/sanitize.sh
# Needs dist/ built (scripts/install-deps.sh) and gcc's libasan (libasan8, with gcc).
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-sanitize
mkdir -p "$out"
nodedir=$(node -p 'require("path").resolve(process.execPath, "../..")')/include/node
[ -e "$nodedir/node_api.h" ] || nodedir=/usr/include/node
# shellcheck disable=SC2046
gcc -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
  -Wall -Wextra -DNODE_GYP_MODULE_NAME=bind_no_port -I"$nodedir" \
  $(sed -n 's#^ *"\(src/balancer/native/[a-z_]*\.c\)",\{0,1\}$#\1#p' binding.gyp) \
  -o "$out/bind_no_port.node" -lpthread
asan=$(gcc -print-file-name=libasan.so)
[ -e "$asan" ] || { echo "sanitize: gcc's libasan is missing (apt-get install libasan8)" >&2; exit 1; }
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
chmod 777 "$logs"
export BRIDGECTL_ADDON=$PWD/$out/bind_no_port.node
export ASAN_OPTIONS="detect_leaks=0:quarantine_size_mb=4:halt_on_error=1:abort_on_error=1:log_path=$logs/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
files=(${SANITIZE_TESTS:-dist/test/balancer.test.js dist/test/balancer-audit.test.js dist/test/balancer-engine.test.js dist/test/balancer-fuzz.test.js})
status=0
# Preloaded only into node: netns.sh itself and tor stay as they are.
FUZZ_CASES=${FUZZ_CASES:-3000} FUZZ_CONCURRENCY=${FUZZ_CONCURRENCY:-100} \
  bash scripts/netns.sh env LD_PRELOAD="$asan" node --test --test-concurrency=1 --test-timeout=600000 "${files[@]}" || status=$?
if compgen -G "$logs/*" >/dev/null; then
  echo "sanitize: sanitizer reports:" >&2
  for f in "$logs"/*; do echo "== $f" >&2; cat "$f" >&2; done
  exit 1
fi
[ "$status" = 0 ] || { echo "sanitize: tests failed under the sanitizers (exit $status)" >&2; exit "$status"; }
echo "sanitize: no sanitizer report; tests passed"
