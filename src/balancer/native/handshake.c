/* Both Extended ORPort SAFE_COOKIE handshakes as pure state machines (see handshake.h): bytes in,
 * bytes to send and an outcome out. The framing and checks are extor.c's. */
#include "handshake.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A test build makes allocations fail with -DHS_REALLOC=its_own. */
#ifndef HS_REALLOC
#define HS_REALLOC realloc
#else
void *HS_REALLOC(void *p, size_t n);
#endif

static const uint8_t AUTH_TYPES[2] = {EXTOR_AUTH_SAFE_COOKIE, 0}; /* SAFE_COOKIE, end of list */

static void reset(hs_step_t *r) {
  r->outcome = HS_MORE;
  r->fail = HS_FAIL_NONE;
  r->reason[0] = 0;
  r->used = 0;
  r->outlen = 0;
  r->tail = NULL;
  r->taillen = 0;
}

static void emit(hs_step_t *r, const uint8_t *p, size_t n) {
  memcpy(r->out + r->outlen, p, n);
  r->outlen += n;
}

static hs_outcome_t fail(hs_step_t *r, hs_fail_t why, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->reason, sizeof r->reason, fmt, ap);
  va_end(ap);
  r->fail = why;
  return r->outcome = HS_FAIL;
}

static bool append(uint8_t **buf, size_t *len, const uint8_t *p, size_t n) {
  if (n == 0) return true;
  uint8_t *b = HS_REALLOC(*buf, *len + n);
  if (!b) return false;
  memcpy(b + *len, p, n);
  *buf = b;
  *len += n;
  return true;
}

static int frame_type(const uint8_t *p) { return (p[0] << 8) | p[1]; }

const char *hs_server_state_name(hs_server_state_t s) {
  static const char *const names[] = {"auth type", "client nonce", "client hash", "commands", "done", "failed"};
  return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

const char *hs_client_state_name(hs_client_state_t s) {
  static const char *const names[] = {"auth types", "server hash", "wait for the transport", "auth result", "reply", "done", "failed"};
  return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

void hs_server_start(hs_server_t *st, const uint8_t *cookie, const uint8_t *nonce, hs_step_t *r) {
  memset(st, 0, sizeof *st);
  st->state = HS_SERVER_AUTH_TYPE;
  st->hash = extor_hash;
  memcpy(st->cookie, cookie, EXTOR_COOKIE_LEN);
  memcpy(st->nonce, nonce, EXTOR_NONCE_LEN);
  reset(r);
  emit(r, AUTH_TYPES, sizeof AUTH_TYPES);
}

static hs_outcome_t server_failed(hs_server_t *st, hs_step_t *r) {
  st->state = HS_SERVER_FAILED;
  return r->outcome;
}

hs_outcome_t hs_server_step(hs_server_t *st, const uint8_t *in, size_t n, hs_step_t *r) {
  reset(r);
  if (st->state >= HS_SERVER_DONE) return fail(r, HS_FAIL_LOCAL, "the handshake is over (%s)", hs_server_state_name(st->state));
  for (;;) {
    const uint8_t *p = in + r->used;
    size_t left = n - r->used;
    switch (st->state) {
      case HS_SERVER_AUTH_TYPE:
        if (left < 1) return HS_MORE;
        if (p[0] != EXTOR_AUTH_SAFE_COOKIE) {
          fail(r, HS_FAIL_PROTOCOL, "unsupported auth type %d", p[0]);
          return server_failed(st, r);
        }
        r->used += 1;
        st->state = HS_SERVER_CLIENT_NONCE;
        break;
      case HS_SERVER_CLIENT_NONCE: {
        if (left < EXTOR_NONCE_LEN) return HS_MORE;
        uint8_t shash[EXTOR_HASH_LEN];
        /* Nothing goes out unless both hashes are made: a failed HMAC leaves its output unusable. */
        if (!st->hash(st->cookie, EXTOR_S2C, p, st->nonce, shash) || !st->hash(st->cookie, EXTOR_C2S, p, st->nonce, st->expect)) {
          fail(r, HS_FAIL_LOCAL, "HMAC failed");
          return server_failed(st, r);
        }
        emit(r, shash, EXTOR_HASH_LEN);
        emit(r, st->nonce, EXTOR_NONCE_LEN);
        r->used += EXTOR_NONCE_LEN;
        st->state = HS_SERVER_CLIENT_HASH;
        break;
      }
      case HS_SERVER_CLIENT_HASH: {
        if (left < EXTOR_HASH_LEN) return HS_MORE;
        if (CRYPTO_memcmp(p, st->expect, EXTOR_HASH_LEN) != 0) {
          static const uint8_t no = HS_AUTH_FAILED;
          emit(r, &no, 1);
          fail(r, HS_FAIL_AUTH, "wrong client hash (the peer does not have our cookie)");
          return server_failed(st, r);
        }
        static const uint8_t ok = HS_AUTH_OK;
        emit(r, &ok, 1);
        r->used += EXTOR_HASH_LEN;
        st->state = HS_SERVER_COMMANDS;
        break;
      }
      default: { /* HS_SERVER_COMMANDS */
        size_t len = extor_frame_len(p, left);
        /* Too many bytes before DONE, whether they frame a command yet or not. */
        if (len ? st->cmdbytes + len > HS_MAX_COMMAND_BYTES : st->cmdbytes + left > HS_MAX_COMMAND_BYTES) {
          fail(r, HS_FAIL_PROTOCOL, "too many command bytes before DONE");
          return server_failed(st, r);
        }
        if (!len) return HS_MORE;
        st->cmdbytes += len;
        int type = frame_type(p);
        const char *bad = extor_check_command(type, p + 4, len - 4);
        if (bad) {
          fail(r, HS_FAIL_PROTOCOL, "bad command: %s", bad);
          return server_failed(st, r);
        }
        if (!append(&st->held, &st->heldlen, p, len)) {
          fail(r, HS_FAIL_LOCAL, "out of memory");
          return server_failed(st, r);
        }
        r->used += len;
        if (type == EXTOR_DONE) {
          st->state = HS_SERVER_DONE;
          return r->outcome = HS_OK;
        }
      }
    }
  }
}

void hs_server_free(hs_server_t *st) {
  free(st->held);
  st->held = NULL;
  st->heldlen = 0;
}

void hs_client_start(hs_client_t *st, const uint8_t *cookie, const uint8_t *nonce) {
  memset(st, 0, sizeof *st);
  st->state = HS_CLIENT_AUTH_TYPES;
  st->hash = extor_hash;
  memcpy(st->cookie, cookie, EXTOR_COOKIE_LEN);
  memcpy(st->nonce, nonce, EXTOR_NONCE_LEN);
}

/* Our client hash, then the transport's commands: the twin answers with its result. */
static void send_commands(hs_client_t *st, hs_step_t *r) {
  emit(r, st->chash, EXTOR_HASH_LEN);
  r->tail = st->cmds;
  r->taillen = st->cmdslen;
  st->state = HS_CLIENT_RESULT;
}

static hs_outcome_t client_failed(hs_client_t *st, hs_step_t *r) {
  st->state = HS_CLIENT_FAILED;
  return r->outcome;
}

hs_outcome_t hs_client_step(hs_client_t *st, const uint8_t *in, size_t n, hs_step_t *r) {
  reset(r);
  if (st->state >= HS_CLIENT_DONE) return fail(r, HS_FAIL_LOCAL, "the handshake is over (%s)", hs_client_state_name(st->state));
  for (;;) {
    const uint8_t *p = in + r->used;
    size_t left = n - r->used;
    switch (st->state) {
      case HS_CLIENT_AUTH_TYPES: {
        const uint8_t *z = memchr(p, 0, left);
        /* Too long, whether its end came yet or not (so however the bytes are cut). */
        if ((z ? (size_t)(z - p) : left) > HS_MAX_AUTH_TYPES) {
          fail(r, HS_FAIL_PROTOCOL, "auth type list too long");
          return client_failed(st, r);
        }
        if (!z) return HS_MORE;
        if (!memchr(p, EXTOR_AUTH_SAFE_COOKIE, (size_t)(z - p))) {
          fail(r, HS_FAIL_PROTOCOL, "twin offers no SAFE_COOKIE auth");
          return client_failed(st, r);
        }
        r->used += (size_t)(z - p) + 1;
        static const uint8_t type = EXTOR_AUTH_SAFE_COOKIE;
        emit(r, &type, 1);
        emit(r, st->nonce, EXTOR_NONCE_LEN);
        st->state = HS_CLIENT_SERVER_HASH;
        break;
      }
      case HS_CLIENT_SERVER_HASH: {
        if (left < EXTOR_HASH_LEN + EXTOR_NONCE_LEN) return HS_MORE;
        const uint8_t *snonce = p + EXTOR_HASH_LEN;
        uint8_t want[EXTOR_HASH_LEN];
        if (!st->hash(st->cookie, EXTOR_S2C, st->nonce, snonce, want) || !st->hash(st->cookie, EXTOR_C2S, st->nonce, snonce, st->chash)) {
          fail(r, HS_FAIL_LOCAL, "HMAC failed");
          return client_failed(st, r);
        }
        if (CRYPTO_memcmp(want, p, EXTOR_HASH_LEN) != 0) {
          fail(r, HS_FAIL_AUTH, "wrong server hash (the twin has another cookie)");
          return client_failed(st, r);
        }
        r->used += EXTOR_HASH_LEN + EXTOR_NONCE_LEN;
        if (st->have_cmds) send_commands(st, r);
        else st->state = HS_CLIENT_WAIT;
        break;
      }
      case HS_CLIENT_WAIT:
        if (left == 0) return HS_MORE;
        fail(r, HS_FAIL_PROTOCOL, "twin spoke before our client hash");
        return client_failed(st, r);
      case HS_CLIENT_RESULT:
        if (left < 1) return HS_MORE;
        if (p[0] != HS_AUTH_OK) {
          if (p[0] == HS_AUTH_FAILED) fail(r, HS_FAIL_AUTH, "twin refused our client hash");
          else fail(r, HS_FAIL_PROTOCOL, "bad auth result from twin");
          return client_failed(st, r);
        }
        r->used += 1;
        st->state = HS_CLIENT_REPLY;
        break;
      default: { /* HS_CLIENT_REPLY */
        size_t len = extor_frame_len(p, left);
        if (!len) return HS_MORE;
        int type = frame_type(p);
        if (!append(&st->reply, &st->replylen, p, len)) {
          fail(r, HS_FAIL_LOCAL, "out of memory");
          return client_failed(st, r);
        }
        st->replyparts++;
        r->used += len;
        if (type == EXTOR_OKAY || type == EXTOR_DENY) {
          st->state = HS_CLIENT_DONE;
          return r->outcome = HS_OK;
        }
        if (st->replyparts > HS_MAX_REPLY_COMMANDS) {
          fail(r, HS_FAIL_PROTOCOL, "no OKAY or DENY from twin");
          return client_failed(st, r);
        }
      }
    }
  }
}

hs_outcome_t hs_client_commands(hs_client_t *st, const uint8_t *cmds, size_t len, hs_step_t *r) {
  reset(r);
  st->have_cmds = true;
  st->cmds = cmds;
  st->cmdslen = len;
  if (st->state == HS_CLIENT_WAIT) send_commands(st, r);
  return HS_MORE;
}

void hs_client_free(hs_client_t *st) {
  free(st->reply);
  st->reply = NULL;
  st->replylen = 0;
}
