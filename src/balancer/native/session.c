/* A session's handshake phase: feeds both handshake state machines (handshake.c) from the sockets
 * and sends what they say, runs the twin attempts (the choice of twin, the early attempt alongside
 * the transport's handshake, replay on the next twin) and rejects bad transports per protocol. */
#include "engine.h"

void sess_spec_done(sess_t *s) {
  if (s->hs && s->hs->spec) {
    s->hs->spec = false;
    s->bal->spec_now--;
  }
}

/* Counts a transport handshake that ended well (DONE) or badly; pauses early attempts on a flood. */
void sess_spec_count(bal_t *b, bool bad) {
  int64_t now = loop_now_ms();
  if (now - b->win_start >= SPEC_WINDOW_MS) {
    bool stale = now - b->win_start >= 2 * SPEC_WINDOW_MS;
    b->win_good[1] = stale ? 0 : b->win_good[0];
    b->win_bad[1] = stale ? 0 : b->win_bad[0];
    b->win_good[0] = b->win_bad[0] = 0;
    b->win_start = now;
  }
  if (!bad) {
    b->win_good[0]++;
    return;
  }
  b->win_bad[0]++;
  uint32_t nbad = b->win_bad[0] + b->win_bad[1], ngood = b->win_good[0] + b->win_good[1];
  if (nbad >= SPEC_BAD_MIN && (uint64_t)nbad * 10 >= (uint64_t)(nbad + ngood)) {
    if (now >= b->spec_paused_until) loop_debug(b, "bad transport handshakes (%u of %u): twin attempts wait for DONE for %d s", nbad, nbad + ngood, SPEC_PAUSE_MS / 1000);
    b->spec_paused_until = now + SPEC_PAUSE_MS;
  }
}

void sess_free_hs(sess_t *s) {
  handshakes_t *h = s->hs;
  if (!h) return;
  sess_spec_done(s);
  free(h->in[0].p);
  free(h->in[1].p);
  hs_server_free(&h->srv);
  hs_client_free(&h->cli);
  free(h->early);
  free(h);
  s->hs = NULL;
}

void sess_close(sess_t *s, const char *fmt, ...) {
  char why[REASON_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  loop_finalize(s, why);
}

/* Writes what is queued to fd[side] (handshake phases); false if the session ended. */
bool sess_flush(sess_t *s, int side) {
  dir_t *x = &s->d[1 - side];
  while (x->first_off < x->first_len) {
    ssize_t n = send(s->fd[side], x->first + x->first_off, x->first_len - x->first_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      if (side == 1) return true; /* the attempt's failure shows on the next read */
      sess_close(s, "transport: %s", strerror(errno));
      return false;
    }
    x->first_off += (size_t)n;
  }
  free(x->first);
  x->first = NULL;
  x->first_len = x->first_off = 0;
  return true;
}

/* Queues what a step says to send to fd[side]; false (the session closed) when out of memory. */
static bool send_step(sess_t *s, int side, const hs_step_t *r) {
  if (relay_queue(s, side, r->out, r->outlen) < 0 || relay_queue(s, side, r->tail, r->taillen) < 0) {
    sess_close(s, "out of memory");
    return false;
  }
  return true;
}

/* The attempt on s->twin no longer counts as that twin's (it failed, or it is a relayed session now). */
void sess_attempt_over(sess_t *s) {
  if (!s->attempting) return;
  s->attempting = false;
  pthread_mutex_lock(&E.mu);
  s->bal->twins[s->twin].attempts--;
  pthread_mutex_unlock(&E.mu);
}

/* Ends the attempt on a twin, if one runs: its socket and what was queued to it. */
void sess_close_attempt(sess_t *s) {
  if (s->twin >= 0) sess_attempt_over(s);
  if (s->fd[1] >= 0) {
    loop_unregister(s, 1);
    close(s->fd[1]);
    s->fd[1] = -1;
    s->gen[1]++;
  }
  if (s->hs) hs_client_free(&s->hs->cli);
  relay_drop_dir(&s->d[0]);
  s->twin = -1;
}

/* Answers per protocol, then drops: the bytes, FIN, then discard input until EOF or the linger ends. */
void sess_reject(sess_t *s, const uint8_t *bytes, size_t n, int counter, const char *fmt, ...) {
  char why[REASON_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  bal_t *b = s->bal;
  INC(b->c[counter], 1);
  sess_spec_count(b, true);
  loop_debug(b, "transport handshake failed: %s", why);
  if (s->counted) INC(b->c[C_CURRENT], -1);
  s->counted = false;
  sess_close_attempt(s); /* an attempt started alongside: the twin is not to blame */
  sess_free_hs(s);
  s->phase = P_REJECT;
  s->deadline_ms = loop_now_ms() + LINGER_MS;
  if (n && relay_queue(s, 0, bytes, n) < 0) return loop_finalize(s, "rejected (out of memory)");
  if (!sess_flush(s, 0)) return;
  loop_update(s);
}

bool sess_tried(handshakes_t *h, int i) { return (h->tried[i / 64] >> (i % 64)) & 1; }

/* The attempt on the current twin failed: blame it (unless local), then replay on the next one. */
void sess_attempt_failed(sess_t *s, const char *reason, bool auth, bool local) {
  bal_t *b = s->bal;
  handshakes_t *h = s->hs;
  int idx = s->twin;
  sess_close_attempt(s);
  h->in[1].len = 0;
  if (local) {
    INC(b->c[C_LOCAL], 1);
    loop_debug(b, "local error connecting to twin %d: %s", idx, reason);
  } else if (idx >= 0) {
    twin_t *tw = &b->twins[idx];
    INC(tw->c[auth ? TC_AUTHFAIL : TC_CONNFAIL], 1);
    bool was;
    pthread_mutex_lock(&E.mu);
    was = tw->used && tw->up && tw->gen == h->twin_gen;
    if (was) {
      tw->up = false;
      snprintf(tw->reason, sizeof tw->reason, "%s", reason);
    }
    pthread_mutex_unlock(&E.mu);
    if (was) {
      event_t *ev = calloc(1, sizeof *ev);
      if (ev) {
        ev->kind = EV_DOWN;
        ev->a = b->handle;
        ev->b = idx;
        ev->c = auth;
        snprintf(ev->text, sizeof ev->text, "%s", reason);
        loop_post(ev);
      }
    }
  }
  sess_start_attempt(s);
}

bool sess_local_errno(int e) {
  return e == EADDRNOTAVAIL || e == EADDRINUSE || e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

/* Picks the next up twin not tried yet (least connections or round-robin) and connects to it. */
void sess_start_attempt(sess_t *s) {
  bal_t *b = s->bal;
  handshakes_t *h = s->hs;
  for (;;) {
    int idx = -1;
    struct sockaddr_storage addr;
    socklen_t addrlen = 0;
    int64_t twin_ms = 0;
    uint8_t cookie[EXTOR_COOKIE_LEN];
    pthread_mutex_lock(&E.mu);
    int n = b->ntwins;
    /* Round-robin: the first candidate from rr on. Least connections: the one holding the fewest
     * sessions (relayed, plus attempts under way), the first from rr on among equals, so an even
     * spread stays even. One pass over the twins either way. */
    int64_t fewest = INT64_MAX;
    for (int k = 0; k < n; k++) {
      int i = (int)((b->rr + (uint32_t)k) % (uint32_t)n);
      twin_t *tw = &b->twins[i];
      if (!tw->used || !tw->up || tw->draining || sess_tried(h, i)) continue;
      int64_t load = b->least_conn ? GET(tw->c[TC_CURRENT]) + tw->attempts : 0;
      if (load >= fewest) continue;
      idx = i;
      fewest = load;
      if (!b->least_conn) break;
    }
    if (idx >= 0) {
      twin_t *tw = &b->twins[idx];
      b->rr = (uint32_t)(idx + 1) % (uint32_t)n;
      tw->attempts++;
      s->attempting = true;
      memcpy(cookie, tw->cookie, EXTOR_COOKIE_LEN);
      h->twin_gen = tw->gen;
      addr = tw->addr;
      addrlen = tw->addrlen;
    }
    twin_ms = b->twin_ms;
    pthread_mutex_unlock(&E.mu);
    if (idx < 0) {
      /* Before the transport's DONE, wait: its DONE tries again (and closes if there is still none). */
      if (!h->front_done) return;
      INC(b->c[C_NOTWIN], 1);
      if (h->ntried) return sess_close(s, "every twin tried failed (%d)", h->ntried);
      return sess_close(s, "no twin is up");
    }
    if (h->ntried) INC(b->c[C_REPLAYS], 1);
    h->tried[idx / 64] |= 1ull << (idx % 64);
    h->ntried++;
    s->twin = idx;
    uint8_t nonce[EXTOR_NONCE_LEN];
    loop_random(nonce, sizeof nonce);
    hs_client_start(&h->cli, cookie, nonce);
    if (h->front_done) {
      hs_step_t r;
      hs_client_commands(&h->cli, h->srv.held, h->srv.heldlen, &r); /* sent after the twin's hash */
    }
    h->connecting = true;
    h->attempt_deadline = twin_ms > 0 ? loop_now_ms() + twin_ms : 0;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = fd < 0 ? errno : 0;
    if (!err) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (addr.ss_family == AF_INET && b->src_size > 0) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        uint32_t i = b->src_size == 1 ? 0 : loop_prng32() % b->src_size;
        src.sin_addr.s_addr = htonl(b->src_first + i);
        if (b->no_port) setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) err = errno;
      }
      if (!err && connect(fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS) err = errno;
    }
    if (err) {
      if (fd >= 0) close(fd);
      char why[REASON_LEN];
      snprintf(why, sizeof why, "connect: %s", strerror(err));
      /* attempt_failed picks the next twin itself. */
      s->fd[1] = -1;
      return sess_attempt_failed(s, why, false, sess_local_errno(err));
    }
    s->fd[1] = fd;
    s->gone[1] = false;
    loop_set_events(s, 1, EPOLLOUT);
    return;
  }
}

/* A new transport connection: our auth types, then (unless paused) the early attempt on a twin. */
void sess_begin(sess_t *s) {
  bal_t *b = s->bal;
  handshakes_t *h = s->hs;
  uint8_t nonce[EXTOR_NONCE_LEN];
  hs_step_t r;
  loop_random(nonce, sizeof nonce);
  hs_server_start(&h->srv, b->cookie, nonce, &r);
  if (!send_step(s, 0, &r) || !sess_flush(s, 0)) return;
  loop_update(s);
  if (!s->dead && b->spec_now < SPEC_MAX && loop_now_ms() >= b->spec_paused_until) {
    h->spec = true;
    b->spec_now++;
    sess_start_attempt(s);
  }
}

static void consume(inbuf_t *in, size_t off) {
  if (off == 0) return;
  memmove(in->p, in->p + off, in->len - off);
  in->len -= off;
}

/* The client step's effect on the attempt's deadline: none while it waits for the transport (not
 * the twin's time), a fresh one once our hash and the commands went out. */
static void attempt_deadline(sess_t *s, hs_client_state_t before) {
  handshakes_t *h = s->hs;
  if (h->cli.state == HS_CLIENT_WAIT) {
    h->attempt_deadline = 0;
  } else if (before < HS_CLIENT_RESULT && h->cli.state == HS_CLIENT_RESULT) {
    pthread_mutex_lock(&E.mu);
    int64_t twin_ms = s->bal->twin_ms;
    pthread_mutex_unlock(&E.mu);
    h->attempt_deadline = twin_ms > 0 ? loop_now_ms() + twin_ms : 0;
  }
}

/* The transport's side: what it sent so far, through the server state machine. */
void sess_front_input(sess_t *s) {
  handshakes_t *h = s->hs;
  inbuf_t *in = &h->in[0];
  hs_step_t r;
  hs_server_step(&h->srv, in->p, in->len, &r);
  if (r.outcome == HS_FAIL) {
    if (r.fail == HS_FAIL_LOCAL) return sess_close(s, "%s", r.reason);
    return sess_reject(s, r.out, r.outlen, r.fail == HS_FAIL_AUTH ? C_AUTHFAIL : C_PROTO, "%s", r.reason);
  }
  if (!send_step(s, 0, &r)) return;
  if (r.outcome == HS_MORE) {
    consume(in, r.used);
    if (sess_flush(s, 0)) loop_update(s);
    return;
  }
  /* DONE: what came after it goes to the twin once the session relays. */
  if (buf_append(&h->early, &h->earlylen, in->p + r.used, in->len - r.used) < 0) return sess_close(s, "out of memory");
  in->len = 0;
  if (!sess_flush(s, 0)) return;
  s->phase = P_TWIN;
  h->front_done = true;
  sess_spec_done(s);
  sess_spec_count(s->bal, false);
  loop_set_events(s, 0, s->d[1].first_len ? EPOLLOUT : 0);
  if (s->dead) return;
  if (s->fd[1] < 0) return sess_start_attempt(s);
  hs_client_state_t before = h->cli.state;
  hs_client_commands(&h->cli, h->srv.held, h->srv.heldlen, &r);
  if (!send_step(s, 1, &r)) return;
  attempt_deadline(s, before);
  sess_flush(s, 1);
  loop_update(s);
}

/* Our side with the twin: what it sent so far, through the client state machine. */
void sess_twin_input(sess_t *s) {
  handshakes_t *h = s->hs;
  inbuf_t *in = &h->in[1];
  hs_step_t r;
  hs_client_state_t before = h->cli.state;
  hs_client_step(&h->cli, in->p, in->len, &r);
  if (r.outcome == HS_FAIL) {
    if (r.fail == HS_FAIL_LOCAL) return sess_close(s, "%s", r.reason);
    return sess_attempt_failed(s, r.reason, r.fail == HS_FAIL_AUTH, false);
  }
  if (!send_step(s, 1, &r)) return;
  if (r.outcome == HS_OK) return relay_start(s, in->p + r.used, in->len - r.used);
  attempt_deadline(s, before);
  consume(in, r.used);
  sess_flush(s, 1);
  loop_update(s);
}

/* Reads into the handshake buffer of a side; returns bytes read, 0 on EOF, -errno (or -EAGAIN). */
ssize_t sess_read(sess_t *s, int side) {
  size_t limit = side == 0 ? HS_MAX_COMMAND_BYTES + 4096 : MAX_TWIN_REPLY_BYTES;
  inbuf_t *in = &s->hs->in[side];
  if (in->cap - in->len < 512 && in->cap < limit) {
    size_t cap = in->cap ? in->cap * 2 : 256;
    if (cap > limit) cap = limit;
    uint8_t *p = realloc(in->p, cap);
    if (!p) return -ENOMEM;
    in->p = p;
    in->cap = cap;
  }
  if (in->len == in->cap) return -ENOBUFS;
  ssize_t n = recv(s->fd[side], in->p + in->len, in->cap - in->len, MSG_DONTWAIT);
  if (n < 0) return -errno;
  in->len += (size_t)n;
  return n;
}

/* An event on the transport's socket before the relay (its handshake, then waiting for the twin). */
static void front_event(sess_t *s, uint32_t ev) {
  if (ev & EPOLLERR) {
    if (s->phase == P_FRONT) sess_spec_count(s->bal, true);
    return sess_close(s, "transport: %s", strerror(loop_sock_error(s->fd[0])));
  }
  if ((ev & EPOLLOUT) && !sess_flush(s, 0)) return;
  if (s->phase == P_FRONT && (ev & EPOLLIN)) {
    ssize_t n = sess_read(s, 0);
    if (n == 0) {
      sess_spec_count(s->bal, true);
      return loop_finalize(s, "transport closed during the handshake");
    }
    if (n == -ENOBUFS) return sess_reject(s, NULL, 0, C_PROTO, "too many command bytes before DONE");
    if (n < 0 && n != -EAGAIN && n != -EINTR) return sess_close(s, "transport: %s", strerror((int)-n));
    if (n > 0) return sess_front_input(s);
  } else if (ev & EPOLLHUP) {
    sess_spec_count(s->bal, true);
    return loop_finalize(s, "transport closed during the handshake");
  }
  loop_update(s);
}

/* An event on the twin's socket during the attempt. */
static void twin_event(sess_t *s, uint32_t ev) {
  handshakes_t *h = s->hs;
  if (h->connecting) {
    if (ev & (EPOLLERR | EPOLLHUP)) {
      char why[REASON_LEN];
      snprintf(why, sizeof why, "connect: %s", strerror(loop_sock_error(s->fd[1])));
      return sess_attempt_failed(s, why, false, false);
    }
    if (!(ev & EPOLLOUT)) return;
    h->connecting = false;
    return loop_update(s);
  }
  if (ev & EPOLLERR) {
    /* What the twin sent before the error still counts (its OKAY, then a reset): read it first. */
    int err = loop_sock_error(s->fd[1]);
    uint32_t gen = s->gen[1];
    if (sess_read(s, 1) > 0) {
      sess_twin_input(s);
      /* The attempt ended on those bytes (the next may have the same descriptor): the error was its. */
      if (s->dead || s->phase == P_RELAY || s->gen[1] != gen) return;
    }
    char why[REASON_LEN];
    snprintf(why, sizeof why, "twin: %s before its OKAY", strerror(err));
    return sess_attempt_failed(s, why, false, false);
  }
  if (ev & EPOLLOUT) sess_flush(s, 1);
  if (ev & (EPOLLIN | EPOLLHUP)) {
    ssize_t n = sess_read(s, 1);
    if (n == 0 || n == -ENOBUFS) return sess_attempt_failed(s, n == 0 ? "twin closed the connection before its OKAY" : "twin sent too much before its OKAY", false, false);
    if (n < 0 && n != -EAGAIN && n != -EINTR) {
      char why[REASON_LEN];
      snprintf(why, sizeof why, "twin: %s before its OKAY", strerror((int)-n));
      return sess_attempt_failed(s, why, false, false);
    }
    if (n > 0) return sess_twin_input(s);
  }
  loop_update(s);
}

/* An event of a session in its handshake phases (P_FRONT, P_TWIN). */
void sess_event(sess_t *s, int side, uint32_t ev) {
  if (side == 0) front_event(s, ev);
  else twin_event(s, ev);
}
