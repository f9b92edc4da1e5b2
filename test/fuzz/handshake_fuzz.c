/*
 * libFuzzer harness over both handshake state machines (handshake.c), without the event loop: the
 * input's first byte picks the side (bit 0: the transport's, with our static cookie, or a twin's,
 * answering our attempt), whether to start past authentication (bit 1: no fuzzer forges an HMAC,
 * so the commands and the twin's reply are reached this way) and how to cut the rest into reads; each piece is appended to that side's
 * handshake buffer as a read would, then the state machine runs. Their answers go to a socketpair
 * that nobody reads, so nothing leaves the process. Built and run by scripts/fuzz.sh.
 */
#include "../../src/balancer/native/engine.h"

/* The engine's one N-API call outside napi.c: events to JS. There is no JS here. */
napi_status napi_call_threadsafe_function(napi_threadsafe_function f, void *data, napi_threadsafe_function_call_mode m) {
  (void)f;
  (void)data;
  (void)m;
  return napi_generic_failure;
}

static bal_t *bal;

static void init(void) {
  if (bal) return;
  pthread_mutex_init(&E.mu, NULL);
  E.ep = epoll_create1(EPOLL_CLOEXEC);
  E.pipe_size = 65536;
  E.prng = 88172645463325252ull;
  bal = calloc(1, sizeof *bal);
  bal->lfd = -1;
  memset(bal->cookie, 0x5a, 32);
  bal->hs_ms = bal->be_ms = 30000;
  E.bals = calloc(1, sizeof *E.bals);
  E.bals[0] = bal;
  E.nbals = 1;
}

static int sockpair(int *mine) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) abort();
  *mine = sv[1];
  return sv[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  init();
  if (size < 1) return 0;
  int side = data[0] & 1, past_auth = (data[0] >> 1) & 1, chunk = 1 + (data[0] >> 2);
  data++;
  size--;
  sess_t *s = loop_new_session();
  hs_t *h = calloc(1, sizeof *h);
  if (!s || !h || !loop_add_slot(s)) abort();
  int peer[2] = {-1, -1};
  s->bal = bal;
  s->hs = h;
  s->fd[0] = sockpair(&peer[0]);
  s->phase = P_FRONT;
  s->counted = true;
  INC(bal->c[C_CURRENT], 1);
  if (side == 0 && past_auth) h->fst = F_CMDS;
  if (side == 1) {
    /* A twin in slot 0, up, and our attempt on it connected: its bytes come next. */
    pthread_mutex_lock(&E.mu);
    backend_t *be = &bal->be[0];
    memset(be, 0, sizeof *be);
    be->used = be->up = true;
    memset(be->cookie, 0xa5, 32);
    bal->nbe = 1;
    pthread_mutex_unlock(&E.mu);
    s->be = 0;
    h->tried[0] = 1;
    h->ntried = 1;
    memcpy(h->cookie, be->cookie, 32);
    h->bst = B_TYPES;
    s->fd[1] = sockpair(&peer[1]);
    /* Past authentication: the transport's DONE came and went to the twin; its answer is next. */
    if (past_auth) h->bst = B_RESULT;
    /* Else, half the time the transport's DONE already came (its commands wait in held). */
    if (past_auth || (chunk & 1)) {
      static const uint8_t done[4] = {0, 0, 0, 0};
      buf_append(&h->held, &h->heldlen, done, 4);
      h->front_done = true;
      s->phase = P_BACKEND;
    }
  }
  size_t off = 0;
  while (off < size && !s->dead && s->phase != P_RELAY && s->phase != P_REJECT && s->hs) {
    size_t n = size - off < (size_t)chunk ? size - off : (size_t)chunk;
    inbuf_t *in = &s->hs->in[side];
    if (in->len + n > in->cap) {
      size_t cap = in->len + n;
      uint8_t *p = realloc(in->p, cap);
      if (!p) abort();
      in->p = p;
      in->cap = cap;
    }
    memcpy(in->p + in->len, data + off, n);
    in->len += n;
    off += n;
    if (side == 0) hs_front_input(s);
    else hs_twin_input(s);
    /* A failed attempt moved on: this harness has no second twin, so it ends there. */
    if (side == 1 && !s->dead && s->fd[1] < 0) break;
  }
  if (!s->dead) loop_finalize(s, "fuzz input done");
  for (int i = 0; i < 2; i++)
    if (peer[i] >= 0) close(peer[i]);
  while (E.deadlist) {
    sess_t *d = E.deadlist;
    E.deadlist = d->next;
    free(d);
  }
  return 0;
}
