/*
 * Unit tests of the handshake state machines (handshake.c) for what the fuzzer cannot make happen:
 * an HMAC that fails (the hash function is the machines' pointer; here one that fails and writes
 * nothing, as a failed HMAC leaves its output) and allocations that fail (handshake.c built with
 * -DHS_REALLOC=test_realloc). A failure of ours fails the handshake with a reason and sends
 * nothing that depends on the hash. Also: both machines agree with each other on one cookie and
 * fail on two. Built and run by scripts/fuzz.sh, under AddressSanitizer and UBSan.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/balancer/native/handshake.h"

static int failures;
#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__, __func__, #c); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static const uint8_t COOKIE[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                   17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t OTHER[32] = {9};
static const uint8_t SNONCE[32] = {0xa1, 0xa2, 0xa3};
static const uint8_t CNONCE[32] = {0xc1, 0xc2, 0xc3};
static const uint8_t CMDS[] = {0, 2, 0, 5, 'o', 'b', 'f', 's', '4', 0, 0, 0, 0};
static const uint8_t OKAY[] = {0x10, 0, 0, 0};

/* Fails the hash call numbered fail_at (1: the first), writing nothing. */
static int hash_calls, fail_at;
static bool flaky_hash(const uint8_t *cookie, const char *constant, const uint8_t *cn, const uint8_t *sn, uint8_t *out) {
  if (++hash_calls == fail_at) return false;
  return extor_hash(cookie, constant, cn, sn, out);
}

/* Fails the allocation numbered alloc_fail_at (0: none). */
static int allocs, alloc_fail_at;
void *test_realloc(void *p, size_t n);
void *test_realloc(void *p, size_t n) {
  if (++allocs == alloc_fail_at) return NULL;
  return realloc(p, n);
}

static void server_past_auth_types(hs_server_t *st, hs_step_t *r) {
  hs_server_start(st, COOKIE, SNONCE, r);
  st->hash = flaky_hash;
}

/* The transport sends its type and nonce: both our hashes are needed for our answer. */
static void test_server_hmac_fails(void) {
  for (int k = 1; k <= 2; k++) {
    hs_server_t st;
    hs_step_t r;
    server_past_auth_types(&st, &r);
    hash_calls = 0;
    fail_at = k;
    uint8_t in[33] = {EXTOR_AUTH_SAFE_COOKIE};
    memcpy(in + 1, CNONCE, 32);
    hs_server_step(&st, in, sizeof in, &r);
    CHECK(r.outcome == HS_FAIL);
    CHECK(r.fail == HS_FAIL_LOCAL);
    CHECK(strcmp(r.reason, "HMAC failed") == 0);
    CHECK(r.outlen == 0 && r.taillen == 0); /* no server hash made of whatever was on the stack */
    CHECK(st.state == HS_SERVER_FAILED);
    hs_server_free(&st);
  }
  fail_at = 0;
}

/* The twin sends its hash and nonce: ours is made from them; neither may go out on a failure. */
static void test_client_hmac_fails(void) {
  for (int k = 1; k <= 2; k++) {
    for (int together = 0; together < 2; together++) {
      hs_client_t st;
      hs_step_t r;
      hs_client_start(&st, COOKIE, CNONCE);
      st.hash = flaky_hash;
      hs_client_commands(&st, CMDS, sizeof CMDS, &r);
      uint8_t in[2 + 64] = {EXTOR_AUTH_SAFE_COOKIE, 0};
      hash_calls = 0;
      CHECK(extor_hash(COOKIE, EXTOR_S2C, CNONCE, SNONCE, in + 2));
      memcpy(in + 34, SNONCE, 32);
      fail_at = k;
      size_t sent = 0;
      if (!together) {
        hs_client_step(&st, in, 2, &r);
        CHECK(r.outcome == HS_MORE && r.outlen == 33);
        hs_client_step(&st, in + 2, 64, &r);
      } else {
        hs_client_step(&st, in, sizeof in, &r);
        sent = 33; /* our type and nonce, from before the hash */
      }
      CHECK(r.outcome == HS_FAIL);
      CHECK(r.fail == HS_FAIL_LOCAL);
      CHECK(strcmp(r.reason, "HMAC failed") == 0);
      CHECK(r.outlen == sent && r.taillen == 0); /* no client hash, no commands */
      CHECK(st.state == HS_CLIENT_FAILED);
      hs_client_free(&st);
    }
  }
  fail_at = 0;
}

/* Runs a client machine against a server machine: what one sends is what the other reads. */
static void converse(const uint8_t *server_cookie, const uint8_t *client_cookie, hs_step_t *sr, hs_step_t *cr, hs_server_t *srv) {
  hs_client_t cli;
  hs_server_start(srv, server_cookie, SNONCE, sr);
  hs_client_start(&cli, client_cookie, CNONCE);
  hs_client_commands(&cli, CMDS, sizeof CMDS, cr);
  uint8_t to_client[256], to_server[256];
  size_t nc = 0, ns = 0;
  memcpy(to_client, sr->out, sr->outlen);
  nc = sr->outlen;
  for (int round = 0; round < 8; round++) {
    hs_client_step(&cli, to_client, nc, cr);
    memmove(to_client, to_client + cr->used, nc - cr->used);
    nc -= cr->used;
    memcpy(to_server + ns, cr->out, cr->outlen);
    ns += cr->outlen;
    if (cr->taillen) memcpy(to_server + ns, cr->tail, cr->taillen);
    ns += cr->taillen;
    if (cr->outcome != HS_MORE) break;
    hs_server_step(srv, to_server, ns, sr);
    memmove(to_server, to_server + sr->used, ns - sr->used);
    ns -= sr->used;
    memcpy(to_client + nc, sr->out, sr->outlen);
    nc += sr->outlen;
    if (sr->outcome == HS_OK) {
      /* tor's OKAY, as the twin would answer the commands. */
      memcpy(to_client + nc, OKAY, sizeof OKAY);
      nc += sizeof OKAY;
    } else if (sr->outcome == HS_FAIL) {
      hs_client_step(&cli, to_client, nc, cr);
      break;
    }
  }
  hs_client_free(&cli);
}

static void test_machines_agree(void) {
  hs_step_t sr, cr;
  hs_server_t srv;
  converse(COOKIE, COOKIE, &sr, &cr, &srv);
  CHECK(sr.outcome == HS_OK);
  CHECK(srv.heldlen == sizeof CMDS && !memcmp(srv.held, CMDS, sizeof CMDS));
  CHECK(cr.outcome == HS_OK);
  hs_server_free(&srv);
  /* Another cookie: the client finds the server hash wrong (the twin has another cookie). */
  converse(COOKIE, OTHER, &sr, &cr, &srv);
  CHECK(cr.outcome == HS_FAIL && cr.fail == HS_FAIL_AUTH);
  CHECK(sr.outcome == HS_MORE);
  hs_server_free(&srv);
}

static void test_out_of_memory(void) {
  /* The server holds the commands: the allocation fails. */
  hs_server_t srv;
  hs_step_t r;
  hs_server_start(&srv, COOKIE, SNONCE, &r);
  uint8_t in[65 + sizeof CMDS] = {EXTOR_AUTH_SAFE_COOKIE};
  memcpy(in + 1, CNONCE, 32);
  CHECK(extor_hash(COOKIE, EXTOR_C2S, CNONCE, SNONCE, in + 33));
  memcpy(in + 65, CMDS, sizeof CMDS);
  allocs = 0;
  alloc_fail_at = 1;
  hs_server_step(&srv, in, sizeof in, &r);
  CHECK(r.outcome == HS_FAIL && r.fail == HS_FAIL_LOCAL && strcmp(r.reason, "out of memory") == 0);
  hs_server_free(&srv);
  /* The client keeps the twin's reply: the allocation fails. */
  hs_client_t cli;
  hs_client_start(&cli, COOKIE, CNONCE);
  hs_client_commands(&cli, CMDS, sizeof CMDS, &r);
  uint8_t tw[2 + 64 + 1 + 4] = {EXTOR_AUTH_SAFE_COOKIE, 0};
  CHECK(extor_hash(COOKIE, EXTOR_S2C, CNONCE, SNONCE, tw + 2));
  memcpy(tw + 34, SNONCE, 32);
  tw[66] = HS_AUTH_OK;
  memcpy(tw + 67, OKAY, 4);
  allocs = 0;
  alloc_fail_at = 1;
  hs_client_step(&cli, tw, sizeof tw, &r);
  CHECK(r.outcome == HS_FAIL && r.fail == HS_FAIL_LOCAL && strcmp(r.reason, "out of memory") == 0);
  hs_client_free(&cli);
  alloc_fail_at = 0;
}

/* Past 64 kB of commands before DONE the transport is refused, framed or not. */
static void test_command_limit(void) {
  for (int framed = 0; framed < 2; framed++) {
    hs_server_t srv;
    hs_step_t r;
    hs_server_start(&srv, COOKIE, SNONCE, &r);
    size_t n = 65 + HS_MAX_COMMAND_BYTES + 8;
    uint8_t *in = calloc(1, n);
    in[0] = EXTOR_AUTH_SAFE_COOKIE;
    memcpy(in + 1, CNONCE, 32);
    CHECK(extor_hash(COOKIE, EXTOR_C2S, CNONCE, SNONCE, in + 33));
    /* Unknown commands of 4 + 4092 bytes (tor ignores their type), or one that never ends. */
    for (size_t off = 65; off + 4096 <= n; off += 4096) {
      in[off] = 0x42;
      in[off + 2] = framed ? 0x0f : 0xff;
      in[off + 3] = framed ? 0xfc : 0xff;
      if (!framed) break;
    }
    hs_server_step(&srv, in, n, &r);
    CHECK(r.outcome == HS_FAIL && r.fail == HS_FAIL_PROTOCOL && strcmp(r.reason, "too many command bytes before DONE") == 0);
    hs_server_free(&srv);
    free(in);
  }
}

int main(void) {
  test_server_hmac_fails();
  test_client_hmac_fails();
  test_machines_agree();
  test_out_of_memory();
  test_command_limit();
  if (failures) {
    fprintf(stderr, "handshake_unit: %d checks failed\n", failures);
    return 1;
  }
  printf("handshake_unit: all checks passed\n");
  return 0;
}
