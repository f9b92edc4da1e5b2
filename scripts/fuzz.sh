#!/usr/bin/env bash
# Coverage-guided fuzzing of the native engine's pure parts with libFuzzer (Debian's clang), under
# AddressSanitizer and UndefinedBehaviorSanitizer: test/fuzz/extor_fuzz.c (framing and command
# checks) and test/fuzz/handshake_fuzz.c (both handshake state machines, driven directly with the
# fuzzer's bytes cut into arbitrary reads: no socket, no event loop). First the state machines' unit
# tests for what no fuzzer makes happen (test/fuzz/handshake_unit.c: a failing HMAC, failing
# allocations). Seeds are in test/fuzz/corpus/<harness>/ (kept in the repo); what a run finds goes
# to a scratch directory, unless FUZZ_MERGE=1 merges the new inputs into the repo's corpus.
#   bash scripts/fuzz.sh                     # CI: FUZZ_SECONDS (default 25) per harness
#   FUZZ_SECONDS=3600 FUZZ_MERGE=1 bash scripts/fuzz.sh [HARNESS]
# Exits non-zero on any crash, sanitizer report, leak or failed unit test, and prints the input
# that caused it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "fuzz: clang is missing (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
out=build-fuzz
mkdir -p "$out"
sanitizers=(-g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all -Wall -Wextra -Werror)
native=src/balancer/native
clang "${sanitizers[@]}" -fsanitize=address,undefined -DHS_REALLOC=test_realloc -o "$out/handshake_unit" \
  test/fuzz/handshake_unit.c "$native"/{extor,handshake}.c -lcrypto
"$out/handshake_unit"
clang "${sanitizers[@]}" -fsanitize=fuzzer,address,undefined -o "$out/extor" test/fuzz/extor_fuzz.c "$native/extor.c" -lcrypto
clang "${sanitizers[@]}" -fsanitize=fuzzer,address,undefined -o "$out/handshake" test/fuzz/handshake_fuzz.c "$native"/{extor,handshake}.c -lcrypto
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(extor handshake)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for h in "${harnesses[@]}"; do
  mkdir -p "$scratch/$h" "$scratch/$h-crash"
  echo "fuzz: $h for ${FUZZ_SECONDS:-25} s"
  if ! "$out/$h" -max_total_time="${FUZZ_SECONDS:-25}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$scratch/$h-crash/" "$scratch/$h" "test/fuzz/corpus/$h" >"$scratch/$h.log" 2>&1; then
    tail -n 60 "$scratch/$h.log" >&2
    for f in "$scratch/$h-crash"/*; do
      [ -e "$f" ] || continue
      echo "fuzz: $h: input that failed (base64): $(base64 -w0 "$f")" >&2
    done
    echo "fuzz: $h failed" >&2
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::new_units_added)' "$scratch/$h.log" | tr '\n' ' '
  echo
  if [ "${FUZZ_MERGE:-}" = 1 ]; then
    "$out/$h" -merge=1 "test/fuzz/corpus/$h" "$scratch/$h" >/dev/null 2>&1
    echo "fuzz: $h: corpus now $(find "test/fuzz/corpus/$h" -type f | wc -l) inputs"
  fi
done
echo "fuzz: no crash"
