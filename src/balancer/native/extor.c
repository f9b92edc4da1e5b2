/* Extended ORPort framing and validation: pure functions over buffers (no sockets, no state), so that
 * the fuzzer drives them as they are. */
#include "extor.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

const char EXTOR_S2C[] = "ExtORPort authentication server-to-client hash";
const char EXTOR_C2S[] = "ExtORPort authentication client-to-server hash";

/* HMAC-SHA256(cookie, constant | client nonce | server nonce); false if OpenSSL failed (out is then unusable). */
bool extor_hash(const uint8_t *cookie, const char *constant, const uint8_t *cn, const uint8_t *sn, uint8_t *out) {
  uint8_t msg[64 + 64];
  size_t cl = strlen(constant);
  memcpy(msg, constant, cl);
  memcpy(msg + cl, cn, 32);
  memcpy(msg + cl + 32, sn, 32);
  unsigned int len = 32;
  return HMAC(EVP_sha256(), cookie, 32, msg, cl + 64, out, &len) != NULL && len == 32;
}


/* Whether tor would take this USERADDR/TRANSPORT (or another command type) before DONE. */
const char *extor_check_command(int type, const uint8_t *body, size_t len) {
  if (type == EXTOR_OKAY || type == EXTOR_DENY || type == EXTOR_CONTROL) return "a bridge-to-transport command";
  if (type != EXTOR_USERADDR && type != EXTOR_TRANSPORT) return NULL;
  if (memchr(body, 0, len)) return type == EXTOR_USERADDR ? "NUL in USERADDR" : "NUL in TRANSPORT";
  if (type == EXTOR_TRANSPORT) {
    if (len == 0) return "TRANSPORT is not a C identifier";
    for (size_t i = 0; i < len; i++) {
      uint8_t c = body[i];
      bool ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9');
      if (!ok) return "TRANSPORT is not a C identifier";
    }
    return NULL;
  }
  /* USERADDR: 1.2.3.4:5678 or [::1]:5678, port 1-65535 written with 1 to 5 digits. */
  char buf[80];
  if (len >= sizeof buf) return "USERADDR is not ADDRESS:PORT";
  memcpy(buf, body, len);
  buf[len] = 0;
  char *colon = strrchr(buf, ':');
  if (!colon) return "USERADDR is not ADDRESS:PORT";
  size_t digits = strlen(colon + 1);
  if (digits < 1 || digits > 5) return "USERADDR is not ADDRESS:PORT";
  long port = 0;
  for (char *p = colon + 1; *p; p++) {
    if (*p < '0' || *p > '9') return "USERADDR is not ADDRESS:PORT";
    port = port * 10 + (*p - '0');
  }
  if (port < 1 || port > 65535) return "USERADDR is not ADDRESS:PORT";
  *colon = 0;
  uint8_t a[16];
  if (buf[0] == '[') {
    size_t l = strlen(buf);
    if (l < 3 || buf[l - 1] != ']') return "USERADDR is not ADDRESS:PORT";
    buf[l - 1] = 0;
    for (char *p = buf + 1; *p; p++)
      if (!strchr("0123456789abcdefABCDEF:.", *p)) return "USERADDR is not ADDRESS:PORT";
    if (inet_pton(AF_INET6, buf + 1, a) != 1) return "USERADDR is not ADDRESS:PORT";
    return NULL;
  }
  for (char *p = buf; *p; p++)
    if (!strchr("0123456789.", *p)) return "USERADDR is not ADDRESS:PORT";
  if (inet_pton(AF_INET, buf, a) != 1) return "USERADDR is not ADDRESS:PORT";
  return NULL;
}

/* The length of the command framed at p (2-byte type, 2-byte length, body), or 0 if n bytes don't hold it all. */
size_t extor_frame_len(const uint8_t *p, size_t n) {
  if (n < 4) return 0;
  size_t len = 4 + (((size_t)p[2] << 8) | p[3]);
  return n < len ? 0 : len;
}
