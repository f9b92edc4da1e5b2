/*
 * libFuzzer harness over both handshake state machines (handshake.c), driven directly: no socket,
 * no event loop. The input is a header and the peer's bytes:
 *   byte 0, bit 0   the side: 0 the transport's (our server machine, static cookie), 1 a twin's
 *                   (our client machine, the twin's cookie)
 *           bit 1   play the honest peer: the hash in the peer's bytes is replaced by the right one
 *                   (no fuzzer forges an HMAC, so the commands and the twin's reply are reached)
 *           bits 2-7  client side: before which piece the transport's commands arrive (63: never)
 *   byte 1          seeds how the peer's bytes are cut into pieces (each piece is one read)
 * Each step sees exactly the bytes not used yet, copied to a heap block of that size, so a read past
 * them is an AddressSanitizer report. The oracle: steps stay within their input and output bounds;
 * a failure has a reason; the outcome, every byte sent and the leftover bytes are the same however
 * the input is cut (compared with a run in one piece before the commands and one after); the server
 * is done only with the right client hash and holds exactly the commands it was sent, DONE last,
 * each one tor would take; the client is done only at an OKAY or DENY, after sending our hash and
 * the commands. Built and run by scripts/fuzz.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/balancer/native/handshake.h"

#define CHECK(c)                                                  \
  do {                                                            \
    if (!(c)) {                                                   \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
      __builtin_trap();                                           \
    }                                                             \
  } while (0)

static const uint8_t COOKIE[32] = {0x5a, 0x5a, 0x5a, 0x5a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                   13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28};
static const uint8_t NONCE[32] = {0xa5, 0xa5, 0xa5, 0xa5, 9, 9, 9, 9, 8, 8, 8, 8, 7, 7, 7, 7,
                                  6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 3};
/* The transport's commands as the server side holds them: USERADDR, TRANSPORT, DONE. */
static const uint8_t CMDS[] = {0, 1, 0, 12, '1', '9', '2', '.', '0', '.', '2', '.', '1', ':', '4', '3',
                               0, 2, 0, 5, 'o', 'b', 'f', 's', '4', 0, 0, 0, 0};

typedef struct {
  hs_outcome_t outcome;
  hs_fail_t fail;
  char reason[HS_REASON_LEN];
  uint8_t *sent; /* everything the machine said to send, in order */
  size_t sentlen;
  size_t consumed; /* peer bytes used in all */
  uint8_t *held;   /* server: what it held; client: the reply */
  size_t heldlen;
} run_t;

static void append(uint8_t **buf, size_t *len, const uint8_t *p, size_t n) {
  if (!n) return;
  uint8_t *b = realloc(*buf, *len + n);
  if (!b) abort();
  memcpy(b + *len, p, n);
  *buf = b;
  *len += n;
}

static void record(run_t *run, const hs_step_t *r, size_t avail) {
  CHECK(r->used <= avail);
  CHECK(r->outlen <= HS_OUT_MAX);
  CHECK((r->tail == NULL) == (r->taillen == 0));
  CHECK((r->outcome == HS_FAIL) == (r->fail != HS_FAIL_NONE));
  if (r->outcome == HS_FAIL) CHECK(r->reason[0] != 0);
  append(&run->sent, &run->sentlen, r->out, r->outlen);
  append(&run->sent, &run->sentlen, r->tail, r->taillen);
  run->outcome = r->outcome;
  run->fail = r->fail;
  memcpy(run->reason, r->reason, sizeof run->reason);
}

/*
 * Feeds data to a machine in the given pieces (cuts: the lengths; the commands arrive before piece
 * cmds_at, client side). Unused bytes carry over to the next step, as session.c keeps them.
 */
static void drive(int side, const uint8_t *data, const size_t *cuts, size_t ncuts, size_t cmds_at, run_t *run) {
  memset(run, 0, sizeof *run);
  hs_server_t srv;
  hs_client_t cli;
  hs_step_t r;
  uint8_t *cmds = malloc(sizeof CMDS); /* exactly its size: the client must not read past it */
  if (!cmds) abort();
  memcpy(cmds, CMDS, sizeof CMDS);
  if (side == 0) {
    hs_server_start(&srv, COOKIE, NONCE, &r);
    record(run, &r, 0);
  } else {
    hs_client_start(&cli, COOKIE, NONCE);
  }
  uint8_t *pending = NULL;
  size_t npending = 0, off = 0;
  for (size_t k = 0; k <= ncuts && run->outcome == HS_MORE; k++) {
    if (side == 1 && k == cmds_at) {
      hs_client_commands(&cli, cmds, sizeof CMDS, &r);
      record(run, &r, 0);
      CHECK(r.outcome == HS_MORE);
    }
    if (k == ncuts) break;
    append(&pending, &npending, data + off, cuts[k]);
    off += cuts[k];
    if (!cuts[k]) continue;
    uint8_t *in = malloc(npending);
    if (!in) abort();
    memcpy(in, pending, npending);
    if (side == 0) hs_server_step(&srv, in, npending, &r);
    else hs_client_step(&cli, in, npending, &r);
    record(run, &r, npending);
    run->consumed += r.used;
    memmove(pending, pending + r.used, npending - r.used);
    npending -= r.used;
    free(in);
  }
  /* A machine that is over says so, and sends nothing. */
  if (run->outcome != HS_MORE) {
    hs_step_t again;
    if (side == 0) hs_server_step(&srv, NULL, 0, &again);
    else hs_client_step(&cli, NULL, 0, &again);
    CHECK(again.outcome == HS_FAIL && again.outlen == 0 && again.taillen == 0);
  }
  free(pending);
  if (side == 0) {
    if (run->outcome == HS_OK) append(&run->held, &run->heldlen, srv.held, srv.heldlen);
    hs_server_free(&srv);
    CHECK(srv.held == NULL);
  } else {
    if (run->outcome == HS_OK) append(&run->held, &run->heldlen, cli.reply, cli.replylen);
    hs_client_free(&cli);
    CHECK(cli.reply == NULL);
  }
  free(cmds);
}

static void run_free(run_t *run) {
  free(run->sent);
  free(run->held);
}

/* Where the transport's commands came, in peer bytes: the chunked run's offset for the reference run. */
static size_t bytes_before(const size_t *cuts, size_t ncuts, size_t at) {
  size_t n = 0;
  for (size_t k = 0; k < at && k < ncuts; k++) n += cuts[k];
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int side = data[0] & 1, honest = (data[0] >> 1) & 1;
  size_t cmds_at = data[0] >> 2;
  uint32_t seed = data[1] * 2654435761u + 1;
  size_t n = size - 2;
  uint8_t *peer = malloc(n ? n : 1);
  if (!peer) abort();
  memcpy(peer, data + 2, n);
  /* The honest peer's hash: the transport's client hash, or the twin's server hash. */
  uint8_t h[32];
  if (honest && side == 0 && n >= 65) {
    CHECK(extor_hash(COOKIE, EXTOR_C2S, peer + 1, NONCE, h));
    memcpy(peer + 33, h, 32);
  }
  const uint8_t *z = side == 1 ? memchr(peer, 0, n) : NULL;
  size_t hash_at = z ? (size_t)(z - peer) + 1 : 0;
  if (honest && z && n >= hash_at + 64) {
    CHECK(extor_hash(COOKIE, EXTOR_S2C, NONCE, peer + hash_at + 32, h));
    memcpy(peer + hash_at, h, 32);
  }
  /* The pieces: lengths from a small PRNG, up to 1, 8, 64 or 512 bytes (seed's low bits). */
  size_t max = (size_t)1 << (3 * (data[1] & 3)), ncuts = 0, *cuts = malloc((n + 1) * sizeof *cuts);
  if (!cuts) abort();
  for (size_t left = n; left > 0;) {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    size_t c = 1 + seed % max;
    if (c > left) c = left;
    cuts[ncuts++] = c;
    left -= c;
  }
  run_t a, b;
  drive(side, peer, cuts, ncuts, cmds_at, &a);
  /* The same bytes in one piece before the commands came and one after. */
  size_t k = bytes_before(cuts, ncuts, cmds_at), ref[2] = {k, n - k};
  drive(side, peer, ref, 2, cmds_at < ncuts ? 1 : cmds_at == ncuts ? 2 : 3, &b);
  CHECK(a.outcome == b.outcome && a.fail == b.fail && !strcmp(a.reason, b.reason));
  CHECK(a.sentlen == b.sentlen && (a.sentlen == 0 || !memcmp(a.sent, b.sent, a.sentlen)));
  if (a.outcome == HS_OK) {
    CHECK(a.consumed == b.consumed && a.heldlen == b.heldlen && !memcmp(a.held, b.held, a.heldlen));
    CHECK(a.heldlen >= 4);
    const uint8_t *last = NULL;
    for (size_t off = 0; off < a.heldlen;) {
      size_t len = extor_frame_len(a.held + off, a.heldlen - off);
      CHECK(len >= 4);
      last = a.held + off;
      if (side == 0) CHECK(extor_check_command(last[0] << 8 | last[1], last + 4, len - 4) == NULL);
      off += len;
    }
    int type = last[0] << 8 | last[1];
    if (side == 0) {
      /* Done only with the right client hash; holding the commands as sent, DONE last. */
      uint8_t want[32], shash[32];
      CHECK(n >= 65 && peer[0] == EXTOR_AUTH_SAFE_COOKIE);
      CHECK(extor_hash(COOKIE, EXTOR_C2S, peer + 1, NONCE, want) && !memcmp(want, peer + 33, 32));
      CHECK(type == EXTOR_DONE);
      CHECK(a.consumed == 65 + a.heldlen && !memcmp(a.held, peer + 65, a.heldlen));
      /* Sent: auth types, our hash and nonce, the result. */
      CHECK(extor_hash(COOKIE, EXTOR_S2C, peer + 1, NONCE, shash));
      CHECK(a.sentlen == 2 + 64 + 1 && a.sent[0] == 1 && a.sent[1] == 0 && !memcmp(a.sent + 2, shash, 32) &&
            !memcmp(a.sent + 34, NONCE, 32) && a.sent[66] == HS_AUTH_OK);
    } else {
      /* Done only at an OKAY or DENY, after our type, nonce, hash and the transport's commands. */
      uint8_t chash[32];
      CHECK(type == EXTOR_OKAY || type == EXTOR_DENY);
      CHECK(hash_at > 0 && extor_hash(COOKIE, EXTOR_C2S, NONCE, peer + hash_at + 32, chash));
      CHECK(a.sentlen == 1 + 32 + 32 + sizeof CMDS && a.sent[0] == EXTOR_AUTH_SAFE_COOKIE && !memcmp(a.sent + 1, NONCE, 32) &&
            !memcmp(a.sent + 33, chash, 32) && !memcmp(a.sent + 65, CMDS, sizeof CMDS));
      CHECK(peer[hash_at + 64] == HS_AUTH_OK && a.consumed == hash_at + 65 + a.heldlen && !memcmp(a.held, peer + hash_at + 65, a.heldlen));
    }
  }
  run_free(&a);
  run_free(&b);
  free(cuts);
  free(peer);
  return 0;
}
