/* Both SAFE_COOKIE handshakes (the transport's with the static cookie, ours with a twin's current cookie),
 * the twin attempts and their replay on the next twin. The framing and checks are extor.c's. */
#include "engine.h"

void hs_spec_done(sess_t *s) {
  if (s->hs && s->hs->spec) {
    s->hs->spec = false;
    s->bal->spec_now--;
  }
}

/* Counts a transport handshake that ended well (DONE) or badly; pauses early attempts on a flood. */
void hs_spec_count(bal_t *b, bool bad) {
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


void hs_free(sess_t *s) {
  hs_t *h = s->hs;
  if (!h) return;
  hs_spec_done(s);
  free(h->in[0].p);
  free(h->in[1].p);
  free(h->held);
  free(h->early);
  free(h->reply);
  free(h);
  s->hs = NULL;
}

void hs_close(sess_t *s, const char *fmt, ...) {
  char why[REASON_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  loop_finalize(s, why);
}

/* Writes what is queued to fd[side] (handshake phases); false if the session ended. */
bool hs_flush(sess_t *s, int side) {
  dir_t *x = &s->d[1 - side];
  while (x->first_off < x->first_len) {
    ssize_t n = send(s->fd[side], x->first + x->first_off, x->first_len - x->first_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      if (side == 1) return true; /* the attempt's failure shows on the next read */
      hs_close(s, "transport: %s", strerror(errno));
      return false;
    }
    x->first_off += (size_t)n;
  }
  free(x->first);
  x->first = NULL;
  x->first_len = x->first_off = 0;
  return true;
}

/* Ends the attempt on a twin, if one runs: its socket and what was queued to it. */
/* The attempt on s->be no longer counts as that twin's (it failed, or it is a relayed session now). */
void hs_attempt_over(sess_t *s) {
  if (!s->attempting) return;
  s->attempting = false;
  pthread_mutex_lock(&E.mu);
  s->bal->be[s->be].attempts--;
  pthread_mutex_unlock(&E.mu);
}

void hs_close_attempt(sess_t *s) {
  if (s->be >= 0) hs_attempt_over(s);
  if (s->fd[1] >= 0) {
    loop_unregister(s, 1);
    close(s->fd[1]);
    s->fd[1] = -1;
    s->gen[1]++;
  }
  relay_drop_dir(&s->d[0]);
  s->be = -1;
}

/* Answers per protocol, then drops: the bytes, FIN, then discard input until EOF or the linger ends. */
void hs_reject(sess_t *s, const uint8_t *bytes, size_t n, int counter, const char *fmt, ...) {
  char why[REASON_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  bal_t *b = s->bal;
  INC(b->c[counter], 1);
  hs_spec_count(b, true);
  loop_debug(b, "transport handshake failed: %s", why);
  if (s->counted) INC(b->c[C_CURRENT], -1);
  s->counted = false;
  hs_close_attempt(s); /* an attempt started alongside: the twin is not to blame */
  hs_free(s);
  s->phase = P_REJECT;
  s->deadline_ms = loop_now_ms() + LINGER_MS;
  if (n && relay_queue(s, 0, bytes, n) < 0) return loop_finalize(s, "rejected (out of memory)");
  if (!hs_flush(s, 0)) return;
  loop_update(s);
}


bool hs_tried(hs_t *h, int i) { return (h->tried[i / 64] >> (i % 64)) & 1; }

/* The attempt on the current twin failed: blame it (unless local), then replay on the next one. */
void hs_attempt_failed(sess_t *s, const char *reason, bool auth, bool local) {
  bal_t *b = s->bal;
  hs_t *h = s->hs;
  int idx = s->be;
  hs_close_attempt(s);
  h->in[1].len = 0;
  h->replylen = 0;
  h->replyparts = 0;
  if (local) {
    INC(b->c[C_LOCAL], 1);
    loop_debug(b, "local error connecting to twin %d: %s", idx, reason);
  } else if (idx >= 0) {
    backend_t *be = &b->be[idx];
    INC(be->c[auth ? BC_AUTHFAIL : BC_CONNFAIL], 1);
    bool was;
    pthread_mutex_lock(&E.mu);
    was = be->used && be->up && be->gen == h->be_gen;
    if (was) {
      be->up = false;
      snprintf(be->reason, sizeof be->reason, "%s", reason);
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
  hs_start_attempt(s);
}

bool hs_local_errno(int e) {
  return e == EADDRNOTAVAIL || e == EADDRINUSE || e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

/* Picks the next up twin not tried yet, round-robin, and connects to it. */
void hs_start_attempt(sess_t *s) {
  bal_t *b = s->bal;
  hs_t *h = s->hs;
  for (;;) {
    int idx = -1;
    struct sockaddr_storage addr;
    socklen_t addrlen = 0;
    int64_t be_ms = 0;
    pthread_mutex_lock(&E.mu);
    int n = b->nbe;
    /* Round-robin: the first candidate from rr on. Least connections: the one holding the fewest
     * sessions (relayed, plus attempts under way), the first from rr on among equals, so an even
     * spread stays even. One pass over the twins either way. */
    int64_t fewest = INT64_MAX;
    for (int k = 0; k < n; k++) {
      int i = (int)((b->rr + (uint32_t)k) % (uint32_t)n);
      backend_t *be = &b->be[i];
      if (!be->used || !be->up || be->draining || hs_tried(h, i)) continue;
      int64_t load = b->least_conn ? GET(be->c[BC_CURRENT]) + be->attempts : 0;
      if (load >= fewest) continue;
      idx = i;
      fewest = load;
      if (!b->least_conn) break;
    }
    if (idx >= 0) {
      backend_t *be = &b->be[idx];
      b->rr = (uint32_t)(idx + 1) % (uint32_t)n;
      be->attempts++;
      s->attempting = true;
      memcpy(h->cookie, be->cookie, 32);
      h->be_gen = be->gen;
      addr = be->addr;
      addrlen = be->addrlen;
    }
    be_ms = b->be_ms;
    pthread_mutex_unlock(&E.mu);
    if (idx < 0) {
      /* Before the transport's DONE, wait: its DONE tries again (and closes if there is still none). */
      if (!h->front_done) return;
      INC(b->c[C_NOTWIN], 1);
      if (h->ntried) return hs_close(s, "every twin tried failed (%d)", h->ntried);
      return hs_close(s, "no twin is up");
    }
    if (h->ntried) INC(b->c[C_REPLAYS], 1);
    h->tried[idx / 64] |= 1ull << (idx % 64);
    h->ntried++;
    s->be = idx;
    h->bst = B_CONNECT;
    h->attempt_deadline = be_ms > 0 ? loop_now_ms() + be_ms : 0;
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
      return hs_attempt_failed(s, why, false, hs_local_errno(err));
    }
    s->fd[1] = fd;
    s->gone[1] = false;
    loop_set_events(s, 1, EPOLLOUT);
    return;
  }
}

void hs_consume(inbuf_t *in, size_t off) {
  if (off == 0) return;
  memmove(in->p, in->p + off, in->len - off);
  in->len -= off;
}


/* The transport's side: SAFE_COOKIE with the static cookie, then its commands until DONE. */
void hs_front_input(sess_t *s) {
  bal_t *b = s->bal;
  hs_t *h = s->hs;
  inbuf_t *in = &h->in[0];
  size_t off = 0;
  for (;;) {
    uint8_t *p = in->p + off;
    size_t n = in->len - off;
    switch (h->fst) {
      case F_TYPE:
        if (n < 1) goto more;
        if (p[0] != 1) return hs_reject(s, NULL, 0, C_PROTO, "unsupported auth type %d", p[0]);
        off += 1;
        h->fst = F_NONCE;
        break;
      case F_NONCE: {
        if (n < 32) goto more;
        uint8_t out[64];
        loop_random(out + 32, 32);
        if (!extor_hash(b->cookie, EXTOR_S2C, p, out + 32, out) || !extor_hash(b->cookie, EXTOR_C2S, p, out + 32, h->expect))
          return hs_close(s, "HMAC failed");
        if (relay_queue(s, 0, out, 64) < 0) return hs_close(s, "out of memory");
        off += 32;
        h->fst = F_HASH;
        break;
      }
      case F_HASH: {
        if (n < 32) goto more;
        if (CRYPTO_memcmp(p, h->expect, 32) != 0) {
          static const uint8_t fail = 0;
          return hs_reject(s, &fail, 1, C_AUTHFAIL, "wrong client hash (the peer does not have our cookie)");
        }
        static const uint8_t ok = 1;
        if (relay_queue(s, 0, &ok, 1) < 0) return hs_close(s, "out of memory");
        off += 32;
        h->fst = F_CMDS;
        break;
      }
      default: { /* F_CMDS */
        size_t len = extor_frame_len(p, n);
        if (!len) goto more;
        h->cmdbytes += len;
        if (h->cmdbytes > MAX_COMMAND_BYTES) return hs_reject(s, NULL, 0, C_PROTO, "too many command bytes before DONE");
        int type = (p[0] << 8) | p[1];
        const char *bad = extor_check_command(type, p + 4, len - 4);
        if (bad) return hs_reject(s, NULL, 0, C_PROTO, "bad command: %s", bad);
        if (buf_append(&h->held, &h->heldlen, p, len) < 0) return hs_close(s, "out of memory");
        off += len;
        if (type == EXTOR_DONE) {
          if (buf_append(&h->early, &h->earlylen, in->p + off, in->len - off) < 0) return hs_close(s, "out of memory");
          in->len = 0;
          if (!hs_flush(s, 0)) return;
          s->phase = P_BACKEND;
          h->front_done = true;
          hs_spec_done(s);
          hs_spec_count(s->bal, false);
          loop_set_events(s, 0, s->d[1].first_len ? EPOLLOUT : 0);
          if (s->dead) return;
          if (s->fd[1] < 0) return hs_start_attempt(s);
          if (h->bst == B_WAIT) hs_send_commands(s);
          return;
        }
      }
    }
  }
more:
  hs_consume(in, off);
  if (h->fst == F_CMDS && h->cmdbytes + in->len > MAX_COMMAND_BYTES) {
    return hs_reject(s, NULL, 0, C_PROTO, "too many command bytes before DONE");
  }
  if (hs_flush(s, 0)) loop_update(s);
}


/* Our side with the twin: SAFE_COOKIE with its current cookie, the transport's commands, its answer. */
/* The transport's DONE came and the twin proved its cookie: our client hash and the commands. */
void hs_send_commands(sess_t *s) {
  hs_t *h = s->hs;
  if (relay_queue(s, 1, h->chash, 32) < 0 || relay_queue(s, 1, h->held, h->heldlen) < 0) return hs_close(s, "out of memory");
  h->bst = B_RESULT;
  pthread_mutex_lock(&E.mu);
  int64_t be_ms = s->bal->be_ms;
  pthread_mutex_unlock(&E.mu);
  h->attempt_deadline = be_ms > 0 ? loop_now_ms() + be_ms : 0;
  hs_flush(s, 1);
  loop_update(s);
}

void hs_twin_input(sess_t *s) {
  hs_t *h = s->hs;
  inbuf_t *in = &h->in[1];
  size_t off = 0;
  for (;;) {
    uint8_t *p = in->p + off;
    size_t n = in->len - off;
    switch (h->bst) {
      case B_TYPES: {
        uint8_t *z = memchr(p, 0, n);
        if (!z) {
          if (n > 255) return hs_attempt_failed(s, "auth type list too long", false, false);
          goto more;
        }
        if (!memchr(p, 1, (size_t)(z - p))) return hs_attempt_failed(s, "twin offers no SAFE_COOKIE auth", false, false);
        off += (size_t)(z - p) + 1;
        uint8_t out[33];
        out[0] = 1;
        loop_random(h->cnonce, 32);
        memcpy(out + 1, h->cnonce, 32);
        if (relay_queue(s, 1, out, 33) < 0) return hs_close(s, "out of memory");
        h->bst = B_SHASH;
        break;
      }
      case B_SHASH: {
        if (n < 64) goto more;
        uint8_t want[32];
        if (!extor_hash(h->cookie, EXTOR_S2C, h->cnonce, p + 32, want) || !extor_hash(h->cookie, EXTOR_C2S, h->cnonce, p + 32, h->chash))
          return hs_close(s, "HMAC failed");
        if (CRYPTO_memcmp(want, p, 32) != 0) return hs_attempt_failed(s, "wrong server hash (the twin has another cookie)", true, false);
        off += 64;
        if (h->front_done) {
          hs_consume(in, off);
          off = 0;
          hs_send_commands(s);
          if (s->dead) return;
        } else {
          /* Waiting for the transport is not the twin's time: no attempt deadline meanwhile. */
          h->bst = B_WAIT;
          h->attempt_deadline = 0;
        }
        break;
      }
      case B_WAIT:
        if (n == 0) goto more;
        return hs_attempt_failed(s, "twin spoke before our client hash", false, false);
      case B_RESULT:
        if (n < 1) goto more;
        if (p[0] != 1) {
          if (p[0] == 0) return hs_attempt_failed(s, "twin refused our client hash", true, false);
          return hs_attempt_failed(s, "bad auth result from twin", false, false);
        }
        off += 1;
        h->bst = B_REPLY;
        break;
      default: { /* B_REPLY */
        size_t len = extor_frame_len(p, n);
        if (!len) goto more;
        int type = (p[0] << 8) | p[1];
        if (buf_append(&h->reply, &h->replylen, p, len) < 0) return hs_close(s, "out of memory");
        h->replyparts++;
        off += len;
        if (type == EXTOR_OKAY || type == EXTOR_DENY) return relay_start(s, in->p + off, in->len - off);
        if (h->replyparts > 16) return hs_attempt_failed(s, "no OKAY or DENY from twin", false, false);
      }
    }
  }
more:
  hs_consume(in, off);
  hs_flush(s, 1);
  loop_update(s);
}

/* Reads into the handshake buffer of a side; returns bytes read, 0 on EOF, -errno (or -EAGAIN). */
ssize_t hs_read(sess_t *s, int side) {
  size_t limit = side == 0 ? MAX_COMMAND_BYTES + 4096 : MAX_TWIN_REPLY_BYTES;
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
