#pragma once
/*
 * Both Extended ORPort SAFE_COOKIE handshakes as pure state machines (handshake.c): a step takes
 * the state and the bytes that arrived (all those not used yet), and says how many it used, what to
 * send and the outcome: more bytes needed, done (the rest of the input is what the peer sent after
 * the handshake), or failed with a reason. No descriptors, no clock, no randomness of their own
 * (the caller gives the nonce): session.c does the I/O, the deadlines stay in loop.c.
 *
 *   server (hs_server_*): the transport's side. We are tor's Extended ORPort to it, with the
 *     static cookie: auth types, its nonce, our hash and nonce, its hash, our result, then its
 *     commands (checked and held, as it framed them) until DONE.
 *   client (hs_client_*): our side with a twin, with the twin's current cookie: its auth types,
 *     our nonce, its hash and nonce, then (once the transport's DONE came: hs_client_commands)
 *     our hash with the transport's commands, its result, its commands until OKAY or DENY.
 */
#include "extor.h"

/* The most a step sends from its own buffer: server hash + nonce + result (65), or the client's
 * auth type + nonce + hash (65). */
#define HS_OUT_MAX 65
#define HS_REASON_LEN 96
/* What the transport may send before its DONE. */
#define HS_MAX_COMMAND_BYTES (64 * 1024)
/* The twin's auth type list, without its terminating zero. */
#define HS_MAX_AUTH_TYPES 255
/* Commands a twin may send before its OKAY or DENY. */
#define HS_MAX_REPLY_COMMANDS 16
/* The auth result byte. */
enum { HS_AUTH_FAILED = 0, HS_AUTH_OK = 1 };

typedef enum { HS_MORE, HS_OK, HS_FAIL } hs_outcome_t;
/* Whose failure: the peer broke the protocol, the peer lacks the cookie (or refused ours), or ours
 * (the HMAC, memory): the peer is not to blame for a local one. */
typedef enum { HS_FAIL_NONE, HS_FAIL_PROTOCOL, HS_FAIL_AUTH, HS_FAIL_LOCAL } hs_fail_t;

/* extor_hash's signature: the state machines call it through a pointer (tests make it fail). */
typedef bool (*hs_hash_fn)(const uint8_t *cookie, const char *constant, const uint8_t *cn, const uint8_t *sn, uint8_t *out);

typedef struct {
  hs_outcome_t outcome;
  hs_fail_t fail;
  char reason[HS_REASON_LEN];
  size_t used; /* input bytes used; the caller drops them (on HS_OK the rest is the peer's data) */
  uint8_t out[HS_OUT_MAX]; /* to send: out, then tail */
  size_t outlen;
  const uint8_t *tail; /* the transport's commands (client side), sent after out */
  size_t taillen;
} hs_step_t;

typedef enum {
  HS_SERVER_AUTH_TYPE,    /* the transport's choice of auth type */
  HS_SERVER_CLIENT_NONCE, /* its nonce: we answer with our hash and nonce */
  HS_SERVER_CLIENT_HASH,  /* its hash: we answer with the result */
  HS_SERVER_COMMANDS,     /* its commands until DONE */
  HS_SERVER_DONE,
  HS_SERVER_FAILED,
} hs_server_state_t;

typedef struct {
  hs_server_state_t state;
  hs_hash_fn hash;
  uint8_t cookie[EXTOR_COOKIE_LEN];
  uint8_t nonce[EXTOR_NONCE_LEN];  /* ours */
  uint8_t expect[EXTOR_HASH_LEN];  /* the client hash the transport must send */
  uint8_t *held;                   /* its commands, DONE included, as it framed them */
  size_t heldlen;
  size_t cmdbytes;                 /* command bytes so far */
} hs_server_t;

typedef enum {
  HS_CLIENT_AUTH_TYPES,  /* the twin's auth type list: we answer with our type and nonce */
  HS_CLIENT_SERVER_HASH, /* its hash and nonce: checked, then our hash goes with the commands */
  HS_CLIENT_WAIT,        /* the twin proved its cookie; the transport's commands have not come */
  HS_CLIENT_RESULT,      /* our hash and the commands are sent: the twin's result */
  HS_CLIENT_REPLY,       /* its commands until OKAY or DENY */
  HS_CLIENT_DONE,
  HS_CLIENT_FAILED,
} hs_client_state_t;

typedef struct {
  hs_client_state_t state;
  hs_hash_fn hash;
  uint8_t cookie[EXTOR_COOKIE_LEN]; /* the twin's, as the attempt took it */
  uint8_t nonce[EXTOR_NONCE_LEN];   /* ours */
  uint8_t chash[EXTOR_HASH_LEN];    /* our client hash, kept in HS_CLIENT_WAIT */
  bool have_cmds;
  const uint8_t *cmds; /* borrowed: the transport's commands (the server side's held) */
  size_t cmdslen;
  uint8_t *reply; /* the twin's commands, up to and with its OKAY or DENY */
  size_t replylen;
  int replyparts;
} hs_client_t;

/* Starts the transport's handshake: r->out is our auth type list. */
void hs_server_start(hs_server_t *st, const uint8_t *cookie, const uint8_t *nonce, hs_step_t *r);
hs_outcome_t hs_server_step(hs_server_t *st, const uint8_t *in, size_t n, hs_step_t *r);
void hs_server_free(hs_server_t *st);

/* Starts an attempt's handshake (nothing to send before the twin's auth types). */
void hs_client_start(hs_client_t *st, const uint8_t *cookie, const uint8_t *nonce);
hs_outcome_t hs_client_step(hs_client_t *st, const uint8_t *in, size_t n, hs_step_t *r);
/* The transport's DONE came: its commands (borrowed until the attempt ends) go after our client
 * hash, now if the twin proved its cookie (r->out and r->tail), else as soon as it does. */
hs_outcome_t hs_client_commands(hs_client_t *st, const uint8_t *cmds, size_t len, hs_step_t *r);
void hs_client_free(hs_client_t *st);

const char *hs_server_state_name(hs_server_state_t s);
const char *hs_client_state_name(hs_client_state_t s);
