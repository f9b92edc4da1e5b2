/* The event loop: one worker thread and one epoll instance for every session of every balancer: accept,
 * dispatch of events (tagged with a descriptor generation, so an old attempt's are dropped), deadlines,
 * the command queue from JS, session slots and events to JS. */
#include "engine.h"

struct engine E;

int64_t loop_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t loop_sess_tag(const sess_t *s, int i) {
  return (uint64_t)s->slot << 32 | (uint64_t)i << 31 | (s->gen[i] & GEN_MASK);
}

uint64_t loop_listener_tag(const bal_t *b) { return TAG_LISTENER << 32 | (uint32_t)b->handle; }

size_t relay_pending(const dir_t *x) { return (x->first_len - x->first_off) + x->inpipe; }

void loop_free_event(event_t *ev) {
  free(ev->free_after);
  free(ev);
}

/* Hands an event to the JS thread. Lost only if the queue itself fails (the env is going away). */
void loop_post(event_t *ev) {
  if (napi_call_threadsafe_function(E.tsfn, ev, napi_tsfn_nonblocking) != napi_ok) loop_free_event(ev);
}

void loop_debug(bal_t *b, const char *fmt, ...) {
  if (!b || !b->debug) return;
  event_t *ev = calloc(1, sizeof *ev);
  if (!ev) return;
  ev->kind = EV_DEBUG;
  ev->a = b->handle;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ev->text, sizeof ev->text, fmt, ap);
  va_end(ap);
  loop_post(ev);
}

/* Random bytes for nonces, from getrandom(2) in 4 kB batches (worker only). */
void loop_random(uint8_t *out, size_t n) {
  if (E.rndpos + n > sizeof E.rnd || E.rndpos == 0) {
    size_t got = 0;
    while (got < sizeof E.rnd) {
      ssize_t r = getrandom(E.rnd + got, sizeof E.rnd - got, 0);
      if (r > 0) got += (size_t)r;
      else if (errno != EINTR) abort(); /* no entropy source at all: nothing safe to do */
    }
    E.rndpos = 0;
  }
  memcpy(out, E.rnd + E.rndpos, n);
  E.rndpos += n;
  if (E.rndpos == 0) E.rndpos = 1;
}

/* A fast PRNG for picking source addresses (not secret). */
uint32_t loop_prng32(void) {
  uint64_t x = E.prng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  E.prng = x;
  return (uint32_t)(x >> 16);
}

int buf_append(uint8_t **buf, size_t *len, const uint8_t *p, size_t n) {
  if (n == 0) return 0;
  uint8_t *b = FAULT(FAULT_QUEUE) ? NULL : realloc(*buf, *len + n);
  if (!b) return -ENOMEM;
  memcpy(b + *len, p, n);
  *buf = b;
  *len += n;
  return 0;
}

void loop_unregister(sess_t *s, int i) {
  if (s->registered[i]) epoll_ctl(E.ep, EPOLL_CTL_DEL, s->fd[i], NULL);
  s->registered[i] = false;
  s->events[i] = 0;
}

void loop_finalize(sess_t *s, const char *reason) {
  if (s->dead) return;
  s->dead = true;
  for (int i = 0; i < 2; i++) {
    if (s->fd[i] >= 0) {
      loop_unregister(s, i);
      close(s->fd[i]);
    }
    relay_drop_dir(&s->d[i]);
  }
  sess_free_hs(s);
  bal_t *b = s->bal;
  if (b && s->twin >= 0) sess_attempt_over(s);
  if (b) {
    if (s->counted) INC(b->c[C_CURRENT], -1);
    twin_t *tw = s->phase == P_RELAY ? relay_twin(s) : NULL;
    if (tw) INC(tw->c[TC_CURRENT], -1);
    if (s->phase != P_REJECT) loop_debug(b, "session closed: %s", reason);
  }
  free(s->why);
  s->why = NULL;
  pthread_mutex_lock(&E.mu);
  E.slots[s->slot] = NULL;
  E.gens[s->slot]++;
  E.freelist[E.nfree++] = s->slot;
  E.live--;
  pthread_mutex_unlock(&E.mu);
  /* Freed after the current batch of events (another event of this batch may point at it). */
  s->next = E.deadlist;
  E.deadlist = s;
}

void loop_set_events(sess_t *s, int i, uint32_t want) {
  if (s->fd[i] < 0 || s->gone[i] || s->hup[i]) return;
  if (s->registered[i] && want == s->events[i]) return;
  struct epoll_event ev = {.events = want, .data.u64 = loop_sess_tag(s, i)};
  if (epoll_ctl(E.ep, s->registered[i] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd[i], &ev) < 0) {
    char why[REASON_LEN];
    snprintf(why, sizeof why, "%s: epoll: %s", loop_side_name(i), strerror(errno));
    loop_finalize(s, why);
    return;
  }
  s->registered[i] = true;
  s->events[i] = want;
}


void loop_update(sess_t *s) {
  if (s->dead) return;
  switch (s->phase) {
    case P_RELAY:
      return relay_update(s);
    case P_FRONT:
    case P_TWIN:
      loop_set_events(s, 0, (s->phase == P_FRONT ? EPOLLIN : 0) | (s->d[1].first_len ? EPOLLOUT : 0));
      if (!s->dead && s->fd[1] >= 0 && s->hs)
        loop_set_events(s, 1, s->hs->connecting ? EPOLLOUT : EPOLLIN | (s->d[0].first_len ? EPOLLOUT : 0));
      return;
    default: /* P_REJECT */
      if (!s->d[1].first_len && !s->shut_wr) {
        shutdown(s->fd[0], SHUT_WR);
        s->shut_wr = true;
      }
      return loop_set_events(s, 0, EPOLLIN | (s->d[1].first_len ? EPOLLOUT : 0));
  }
}

int loop_sock_error(int fd) {
  int err = 0;
  socklen_t l = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
  return err ? err : ECONNRESET;
}

void loop_session_event(sess_t *s, int side, uint32_t ev) {
  if (s->dead) return;
  if (s->phase == P_RELAY) {
    if ((ev & (EPOLLERR | EPOLLHUP)) && !s->hup[side]) {
      /* Failed or shut both ways: nothing more goes to it, but what it sent before is still in its
       * receive queue: read that on (driven by the other side's progress, the socket no longer
       * polled) until EOF, within the linger. */
      int err = (ev & EPOLLERR) ? loop_sock_error(s->fd[side]) : 0;
      loop_unregister(s, side);
      s->hup[side] = true;
      if (err || relay_pending(&s->d[1 - side]) > 0) {
        relay_drop_dir(&s->d[1 - side]);
        if (!s->why) {
          char why[REASON_LEN];
          snprintf(why, sizeof why, "%s: %s", loop_side_name(side), strerror(err ? err : ECONNRESET));
          s->why = strdup(why);
        }
      }
      if (!s->closing) {
        s->rdhup[side] = true;
        s->deadline_ms = loop_now_ms() + LINGER_MS;
      }
      relay_pump(s, side);
      return loop_update(s);
    }
    /* Reading fd[side] (direction side) and writing it (direction 1-side): both may have progressed. */
    relay_pump(s, side);
    if (!s->dead) relay_pump(s, 1 - side);
    if (s->dead) return;
    if ((ev & EPOLLRDHUP) && !s->rdhup[side]) {
      /* The peer half-closed: read what it sent until EOF, but give up after the linger. */
      s->rdhup[side] = true;
      if (!s->closing) s->deadline_ms = loop_now_ms() + LINGER_MS;
    }
    return loop_update(s);
  }
  if (s->phase == P_REJECT) {
    if (side != 0) return;
    if (ev & (EPOLLERR | EPOLLHUP)) return loop_finalize(s, "rejected");
    if ((ev & EPOLLOUT) && !sess_flush(s, 0)) return;
    if (ev & EPOLLIN) {
      uint8_t sink[4096];
      ssize_t n = recv(s->fd[0], sink, sizeof sink, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return loop_finalize(s, "rejected");
    }
    return loop_update(s);
  }
  sess_event(s, side, ev);
}

sess_t *loop_new_session(void) {
  sess_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->fd[0] = s->fd[1] = -1;
  s->twin = -1;
  for (int i = 0; i < 2; i++) {
    s->d[i].pipe[0] = s->d[i].pipe[1] = -1;
  }
  return s;
}

/* Gives the session a slot (its id); false when out of memory. Takes E.mu. */
bool loop_add_slot(sess_t *s) {
  bool ok = true;
  pthread_mutex_lock(&E.mu);
  if (E.nfree == 0 && E.nslots == E.cap) {
    uint32_t cap = E.cap ? E.cap * 2 : 1024;
    sess_t **slots = cap <= MAX_SLOTS ? realloc(E.slots, cap * sizeof *slots) : NULL;
    if (slots) E.slots = slots;
    uint32_t *gens = slots ? realloc(E.gens, cap * sizeof *gens) : NULL;
    if (gens) E.gens = gens;
    uint32_t *fl = gens ? realloc(E.freelist, cap * sizeof *fl) : NULL;
    if (fl) {
      E.freelist = fl;
      E.cap = cap;
    } else
      ok = false;
  }
  if (ok) {
    uint32_t slot;
    if (E.nfree) slot = E.freelist[--E.nfree];
    else {
      slot = E.nslots++;
      E.gens[slot] = 0;
    }
    s->slot = slot;
    s->id = (double)E.gens[slot] * MAX_SLOTS + slot;
    E.slots[slot] = s;
    E.live++;
  }
  pthread_mutex_unlock(&E.mu);
  return ok;
}

void loop_accept(bal_t *b) {
  for (int k = 0; k < ACCEPT_BATCH && !b->stopped; k++) {
    int fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
      /* Out of descriptors or memory: a level-triggered listener would spin; rest it for a while
       * (loop_scan() puts it back), leaving the connections in the backlog. */
      loop_debug(b, "accept: %s; accepting again in %d ms", strerror(errno), ACCEPT_PAUSE_MS);
      epoll_ctl(E.ep, EPOLL_CTL_DEL, b->lfd, NULL);
      b->accept_paused_until = loop_now_ms() + ACCEPT_PAUSE_MS;
      return;
    }
    INC(b->c[C_ACCEPTED], 1);
    pthread_mutex_lock(&E.mu);
    int64_t max = b->max_sessions, hs_ms = b->hs_ms;
    pthread_mutex_unlock(&E.mu);
    if (GET(b->c[C_CURRENT]) >= max) {
      INC(b->c[C_OVERCAP], 1);
      close(fd);
      continue;
    }
    sess_t *s = loop_new_session();
    handshakes_t *h = s ? calloc(1, sizeof *h) : NULL;
    if (!h || !loop_add_slot(s)) {
      free(h);
      free(s);
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->bal = b;
    s->hs = h;
    s->fd[0] = fd;
    s->phase = P_FRONT;
    s->counted = true;
    INC(b->c[C_CURRENT], 1);
    s->deadline_ms = hs_ms > 0 ? loop_now_ms() + hs_ms : 0;
    sess_begin(s);
  }
}

void loop_remove_twin(bal_t *b, int idx) {
  pthread_mutex_lock(&E.mu);
  uint32_t n = E.nslots;
  pthread_mutex_unlock(&E.mu);
  for (uint32_t i = 0; i < n; i++) {
    pthread_mutex_lock(&E.mu);
    sess_t *s = E.slots[i];
    pthread_mutex_unlock(&E.mu);
    if (!s || s->dead || s->bal != b || s->twin != idx) continue;
    if (s->phase == P_RELAY) loop_finalize(s, "twin removed");
    else if (s->phase == P_FRONT || s->phase == P_TWIN) sess_attempt_failed(s, "twin removed", false, true);
  }
  pthread_mutex_lock(&E.mu);
  b->twins[idx].used = false;
  b->twins[idx].up = false;
  while (b->ntwins > 0 && !b->twins[b->ntwins - 1].used) b->ntwins--;
  pthread_mutex_unlock(&E.mu);
}

void loop_stop(bal_t *b) {
  if (b->lfd >= 0) {
    epoll_ctl(E.ep, EPOLL_CTL_DEL, b->lfd, NULL);
    close(b->lfd);
    b->lfd = -1;
  }
  b->stopped = true;
  pthread_mutex_lock(&E.mu);
  uint32_t n = E.nslots;
  pthread_mutex_unlock(&E.mu);
  for (uint32_t i = 0; i < n; i++) {
    pthread_mutex_lock(&E.mu);
    sess_t *s = E.slots[i];
    pthread_mutex_unlock(&E.mu);
    if (s && !s->dead && s->bal == b) loop_finalize(s, "balancer stopping");
  }
  /* No session, listener or handle refers to it any more: freed once JS has the DONE (post-batch). */
  pthread_mutex_lock(&E.mu);
  E.bals[b->handle] = NULL;
  pthread_mutex_unlock(&E.mu);
}

void loop_take_queues(void) {
  uint64_t v;
  while (read(E.evfd, &v, sizeof v) > 0) {
  }
  pthread_mutex_lock(&E.mu);
  sess_t *add = E.addq;
  E.addq = E.addq_tail = NULL;
  cmd_t *cmds = E.cmdq;
  E.cmdq = E.cmdq_tail = NULL;
  size_t nclose = E.ncloseq;
  double *closes = NULL;
  if (nclose) {
    closes = malloc(nclose * sizeof *closes);
    if (closes) memcpy(closes, E.closeq, nclose * sizeof *closes);
    E.ncloseq = 0;
  }
  pthread_mutex_unlock(&E.mu);
  for (sess_t *s = add; s;) {
    sess_t *next = s->next;
    s->next = NULL;
    relay_pump(s, 0);
    if (!s->dead) relay_pump(s, 1);
    loop_update(s);
    s = next;
  }
  for (size_t i = 0; closes && i < nclose; i++) {
    double id = closes[i];
    uint32_t slot = (uint32_t)((uint64_t)id % MAX_SLOTS);
    sess_t *s = NULL;
    pthread_mutex_lock(&E.mu);
    if (slot < E.nslots && E.slots[slot] && E.slots[slot]->id == id) s = E.slots[slot];
    pthread_mutex_unlock(&E.mu);
    if (s && !s->dead) loop_finalize(s, "closed");
  }
  free(closes);
  while (cmds) {
    cmd_t *c = cmds;
    cmds = c->next;
    if (c->kind == CMD_STOP) {
      loop_stop(c->bal);
    } else if (c->kind == CMD_REMOVE) {
      loop_remove_twin(c->bal, c->idx);
    }
    event_t *ev = c->ev;
    ev->kind = EV_DONE;
    ev->a = c->token;
    if (c->kind == CMD_STOP) {
      ev->free_after = c->bal;
      ev->next = E.stopped;
      E.stopped = ev;
    } else {
      loop_post(ev);
    }
    free(c);
  }
}

/* Deadlines: handshakes, attempts, idle sessions, lingering ones; relay directions waiting for a pipe. */
void loop_scan(void) {
  static sess_t **due;
  static size_t cap;
  size_t n = 0;
  int64_t now = loop_now_ms();
  pthread_mutex_lock(&E.mu);
  for (int i = 0; i < E.nbals; i++) {
    bal_t *b = E.bals[i];
    if (b && b->accept_paused_until && now >= b->accept_paused_until && b->lfd >= 0 && !b->stopped) {
      b->accept_paused_until = 0;
      struct epoll_event ev = {.events = EPOLLIN, .data.u64 = loop_listener_tag(b)};
      epoll_ctl(E.ep, EPOLL_CTL_ADD, b->lfd, &ev);
    }
  }
  pthread_mutex_unlock(&E.mu);
  pthread_mutex_lock(&E.mu);
  for (uint32_t i = 0; i < E.nslots; i++) {
    sess_t *s = E.slots[i];
    if (!s || s->dead) continue;
    bool x;
    if (s->phase == P_RELAY)
      x = relay_expired(s, now) || s->starved[0] || s->starved[1];
    else if (s->phase == P_REJECT)
      x = now >= s->deadline_ms;
    else
      x = (s->deadline_ms > 0 && now >= s->deadline_ms) ||
          (s->hs && s->fd[1] >= 0 && s->hs->attempt_deadline > 0 && now >= s->hs->attempt_deadline);
    if (!x) continue;
    if (n == cap) {
      size_t c = cap ? cap * 2 : 64;
      sess_t **d = realloc(due, c * sizeof *d);
      if (!d) break;
      due = d;
      cap = c;
    }
    due[n++] = s;
  }
  pthread_mutex_unlock(&E.mu);
  for (size_t i = 0; i < n; i++) {
    sess_t *s = due[i];
    if (s->dead) continue;
    if (s->phase == P_RELAY && !relay_expired(s, now)) {
      /* Directions waiting for a pipe: try again. */
      for (int d = 0; d < 2 && !s->dead; d++)
        if (s->starved[d]) relay_pump(s, d);
      loop_update(s);
    } else if (s->phase == P_RELAY) {
      bool idle = !s->closing && !s->rdhup[0] && !s->rdhup[1];
      if (idle && s->bal) INC(s->bal->c[C_IDLE], 1);
      loop_finalize(s, idle ? "idle" : "linger expired");
    } else if (s->phase == P_REJECT) {
      loop_finalize(s, "rejected");
    } else if (s->deadline_ms > 0 && now >= s->deadline_ms) {
      INC(s->bal->c[C_HSTIMEOUT], 1);
      if (!s->hs->front_done) sess_spec_count(s->bal, true);
      sess_close(s, "handshake timed out");
    } else {
      char why[REASON_LEN];
      snprintf(why, sizeof why, "no OKAY within %lld ms", (long long)(s->bal->twin_ms));
      sess_attempt_failed(s, why, false, false);
    }
  }
}

void *loop_worker(void *arg) {
  (void)arg;
  struct epoll_event evs[256];
  void *whom[256];
  int64_t next_scan = loop_now_ms() + SCAN_MS;
  while (!atomic_load(&E.stop)) {
    int n = epoll_wait(E.ep, evs, 256, SCAN_MS);
    /* Whom each event is for, looked up once per batch (sessions and balancers outlive the batch). */
    pthread_mutex_lock(&E.mu);
    for (int i = 0; i < n; i++) {
      uint64_t t = evs[i].data.u64;
      uint32_t hi = (uint32_t)(t >> 32), lo = (uint32_t)t;
      if (t == TAG_EVENTFD) whom[i] = NULL;
      else if (hi == TAG_LISTENER) whom[i] = lo < (uint32_t)E.nbals ? E.bals[lo] : NULL;
      else whom[i] = hi < E.nslots ? E.slots[hi] : NULL;
    }
    pthread_mutex_unlock(&E.mu);
    for (int i = 0; i < n; i++) {
      uint64_t t = evs[i].data.u64;
      if (t == TAG_EVENTFD) {
        loop_take_queues();
      } else if ((uint32_t)(t >> 32) == TAG_LISTENER) {
        if (whom[i]) loop_accept(whom[i]);
      } else {
        sess_t *s = whom[i];
        int side = (int)((t >> 31) & 1);
        /* An event of a socket closed earlier in this batch (an attempt that failed) is stale. */
        if (!s || s->dead || (s->gen[side] & GEN_MASK) != (uint32_t)(t & GEN_MASK)) continue;
        loop_session_event(s, side, evs[i].events);
      }
    }
    int64_t now = loop_now_ms();
    if (now >= next_scan) {
      loop_scan();
      next_scan = now + SCAN_MS;
    }
    while (E.deadlist) {
      sess_t *s = E.deadlist;
      E.deadlist = s->next;
      free(s);
    }
    while (E.stopped) {
      event_t *ev = E.stopped;
      E.stopped = ev->next;
      ev->next = NULL;
      loop_post(ev);
    }
  }
  return NULL;
}


void loop_wake(void) {
  uint64_t one = 1;
  (void)!write(E.evfd, &one, sizeof one);
}

/* Queues a command for the worker; false (nothing queued) when out of memory. */
bool loop_queue_cmd(int kind, bal_t *b, int idx, double token) {
  cmd_t *c = calloc(1, sizeof *c);
  event_t *ev = c ? calloc(1, sizeof *ev) : NULL;
  if (!ev) {
    free(c);
    return false;
  }
  c->ev = ev;
  c->kind = kind;
  c->bal = b;
  c->idx = idx;
  c->token = token;
  pthread_mutex_lock(&E.mu);
  if (E.cmdq_tail) E.cmdq_tail->next = c;
  else E.cmdq = c;
  E.cmdq_tail = c;
  pthread_mutex_unlock(&E.mu);
  loop_wake();
  return true;
}

#ifdef ENGINE_FAULTS
static long fault_nth[FAULT_N];
static _Atomic long fault_calls[FAULT_N];
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

static void fault_parse(void) {
  static const char *const names[FAULT_N] = {"queue", "stats-buffer"};
  const char *v = getenv("ENGINE_FAULT");
  const char *colon = v ? strchr(v, ':') : NULL;
  if (!colon) return;
  for (int i = 0; i < FAULT_N; i++)
    if (strlen(names[i]) == (size_t)(colon - v) && !strncmp(v, names[i], (size_t)(colon - v))) fault_nth[i] = strtol(colon + 1, NULL, 10);
}

bool fault_now(int point) {
  pthread_once(&fault_once, fault_parse);
  return atomic_fetch_add(&fault_calls[point], 1) + 1 == fault_nth[point];
}

void lock_not_held(void) {
  int e = pthread_mutex_lock(&E.mu);
  if (e == EDEADLK) {
    fprintf(stderr, "engine: the engine's lock is held here\n");
    abort();
  }
  if (e == 0) pthread_mutex_unlock(&E.mu);
}
#endif
