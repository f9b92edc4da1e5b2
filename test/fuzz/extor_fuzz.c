/*
 * libFuzzer harness over the Extended ORPort framing and checks (extor.c): the input is read as a
 * stream of commands, each body copied to a heap block of its exact size so that any read past it
 * is an AddressSanitizer report. Built and run by scripts/fuzz.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/balancer/native/extor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t off = 0;
  while (off < size) {
    size_t len = extor_frame_len(data + off, size - off);
    if (len == 0) break;
    if (len < 4 || len > size - off) __builtin_trap();
    size_t blen = len - 4;
    uint8_t *body = malloc(blen ? blen : 1);
    if (!body) return 0;
    memcpy(body, data + off + 4, blen);
    int type = data[off] << 8 | data[off + 1];
    const char *why = extor_check_command(type, body, blen);
    /* Tor's own rules, restated: a NUL is never in a USERADDR or TRANSPORT it takes. */
    if (!why && (type == EXTOR_USERADDR || type == EXTOR_TRANSPORT) && memchr(body, 0, blen)) __builtin_trap();
    if (why && !*why) __builtin_trap();
    free(body);
    off += len;
  }
  if (size >= 96) {
    uint8_t a[32], b[32];
    if (!extor_hash(data, EXTOR_S2C, data + 32, data + 64, a) || !extor_hash(data, EXTOR_C2S, data + 32, data + 64, b)) __builtin_trap();
    if (!memcmp(a, b, 32)) __builtin_trap();
  }
  return 0;
}
