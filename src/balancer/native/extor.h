#pragma once
/* Extended ORPort framing and validation (extor.c): pure functions over buffers. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Command types: 2-byte type, 2-byte length, body. */
enum {
  EXTOR_DONE = 0x0000,
  EXTOR_USERADDR = 0x0001,
  EXTOR_TRANSPORT = 0x0002,
  EXTOR_OKAY = 0x1000,
  EXTOR_DENY = 0x1001,
  EXTOR_CONTROL = 0x1002,
};
enum { EXTOR_AUTH_SAFE_COOKIE = 1, EXTOR_NONCE_LEN = 32, EXTOR_HASH_LEN = 32, EXTOR_COOKIE_LEN = 32 };

extern const char EXTOR_S2C[]; /* "ExtORPort authentication server-to-client hash" */
extern const char EXTOR_C2S[]; /* "ExtORPort authentication client-to-server hash" */

/* HMAC-SHA256(cookie, constant | client nonce | server nonce) into out (32 bytes); false if OpenSSL failed. */
bool extor_hash(const uint8_t *cookie, const char *constant, const uint8_t *cn, const uint8_t *sn, uint8_t *out);
/* NULL if tor would take this command before DONE, else why not (USERADDR/TRANSPORT checked, bridge-side types refused). */
const char *extor_check_command(int type, const uint8_t *body, size_t len);
/* The length of the command framed at p, or 0 if the n bytes don't hold it all. */
size_t extor_frame_len(const uint8_t *p, size_t n);
