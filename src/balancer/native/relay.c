/* The relay: splice(2) through a pipe per busy direction, backpressure, close propagation. */
#include "engine.h"

/*
 * Pipes start at the kernel's default size (64 KiB) and grow to E.pipe_size (1 MiB) once a read
 * fills half of one (a pipe slot holds a page at most, often less, so a full pipe can hold less
 * than its size): a bulk direction then moves big batches (fewer splices, ACKs and wake-ups per
 * byte), while the many directions that carry a cell at a time keep small pipes and never pay
 * for F_SETPIPE_SZ. Growing is best effort: past the per-user pipe quota
 * (fs.pipe-user-pages-soft) the kernel refuses, and the pipe keeps working at its size.
 */
int relay_get_pipe(dir_t *x) {
  if (x->pipe[0] >= 0) return 0;
  if (E.npool > 0) {
    E.npool--;
    x->pipe[0] = E.pool[E.npool][0];
    x->pipe[1] = E.pool[E.npool][1];
    x->cap = E.pool_cap[E.npool];
    return 0;
  }
  if (pipe2(x->pipe, O_NONBLOCK | O_CLOEXEC) < 0) return -errno;
  int cap = fcntl(x->pipe[0], F_GETPIPE_SZ);
  x->cap = cap > 0 ? cap : E.pipe_size;
  INC(E.pipes, 1);
  return 0;
}

/* A read half filled the pipe: grow it (once; a refusal is not retried for this pipe). */
static void relay_grow_pipe(dir_t *x) {
  if (x->cap >= E.pipe_size) return;
  int cap = fcntl(x->pipe[0], F_SETPIPE_SZ, E.pipe_size);
  x->cap = cap > 0 ? cap : E.pipe_size;
}

void relay_put_pipe(dir_t *x) {
  if (x->pipe[0] < 0) return;
  if (x->inpipe == 0 && E.npool < POOL_MAX) {
    E.pool[E.npool][0] = x->pipe[0];
    E.pool[E.npool][1] = x->pipe[1];
    E.pool_cap[E.npool] = x->cap;
    E.npool++;
  } else {
    close(x->pipe[0]);
    close(x->pipe[1]);
    INC(E.pipes, -1);
  }
  x->pipe[0] = x->pipe[1] = -1;
  x->inpipe = 0;
  x->cap = 0;
}

void relay_drop_dir(dir_t *x) {
  relay_put_pipe(x);
  free(x->first);
  x->first = NULL;
  x->first_len = x->first_off = 0;
}

/* Queues bytes to write to fd[side] (before anything spliced). */
int relay_queue(sess_t *s, int side, const uint8_t *p, size_t n) {
  dir_t *x = &s->d[1 - side];
  if (x->first_off > 0 && x->first_off == x->first_len) {
    free(x->first);
    x->first = NULL;
    x->first_len = x->first_off = 0;
  }
  return buf_append(&x->first, &x->first_len, p, n);
}

twin_t *relay_twin(sess_t *s) {
  if (!s->bal || s->twin < 0) return NULL;
  return &s->bal->twins[s->twin];
}

/* Counts n bytes written in direction d (skipping tor's reply, which is not payload). */
void relay_account(sess_t *s, int d, size_t n) {
  dir_t *x = &s->d[d];
  INC(x->bytes, n);
  size_t skip = x->uncounted < n ? x->uncounted : n;
  x->uncounted -= skip;
  n -= skip;
  twin_t *b = s->phase == P_RELAY ? relay_twin(s) : NULL;
  if (b && n) INC(b->c[d == 0 ? TC_TO : TC_FROM], n);
}


const char *loop_side_name(int side) { return side == 0 ? "transport" : "twin"; }

/* Relay: fd[side] failed. Drop what was going to it; flush what came from it to the other side, then close. */
void relay_side_failed(sess_t *s, int side, int err) {
  char why[REASON_LEN];
  snprintf(why, sizeof why, "%s: %s", loop_side_name(side), strerror(err));
  if (s->dead) return;
  if (s->phase != P_RELAY || s->gone[1 - side] || relay_pending(&s->d[side]) == 0) return loop_finalize(s, why);
  relay_drop_dir(&s->d[1 - side]);
  loop_unregister(s, side);
  s->gone[side] = true;
  if (!s->why) s->why = strdup(why);
  if (!s->closing) {
    s->closing = true;
    s->closed_by = side;
    s->deadline_ms = loop_now_ms() + LINGER_MS;
  }
  loop_update(s);
}


/* EOF from fd[d]: stop reading both ways; loop_update() closes once the pipes are flushed. */
void relay_eof(sess_t *s, int d) {
  if (s->closing) return;
  s->closing = true;
  s->closed_by = d;
  s->deadline_ms = loop_now_ms() + LINGER_MS;
}

/* Moves what it can from fd[d] to fd[1-d], at most ROUNDS reads, so one busy session can't starve others. */
void relay_pump(sess_t *s, int d) {
  dir_t *x = &s->d[d];
  int src = s->fd[d], dst = s->fd[1 - d];
  if (s->gone[1 - d] || s->hup[1 - d]) return;
  for (int round = 0; round < ROUNDS && !s->dead;) {
    if (x->first_off < x->first_len) {
      ssize_t n = send(dst, x->first + x->first_off, x->first_len - x->first_off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        return relay_side_failed(s, 1 - d, errno);
      }
      x->first_off += (size_t)n;
      relay_account(s, d, (size_t)n);
      if (x->first_off == x->first_len) {
        free(x->first);
        x->first = NULL;
        x->first_len = x->first_off = 0;
      }
      continue;
    }
    if (x->inpipe > 0) {
      ssize_t n = splice(x->pipe[0], NULL, dst, NULL, x->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        return relay_side_failed(s, 1 - d, errno);
      }
      x->inpipe -= (size_t)n;
      relay_account(s, d, (size_t)n);
      if (x->inpipe == 0) relay_put_pipe(x);
      continue;
    }
    if (s->closing || s->gone[d]) return;
    int e = relay_get_pipe(x);
    if (e == -EMFILE || e == -ENFILE || e == -ENOMEM) {
      /* Out of descriptors (or memory) for a pipe: this direction waits, loop_scan() retries it. */
      if (!s->starved[d]) loop_debug(s->bal, "no pipe for a session (%s): that direction waits", strerror(-e));
      s->starved[d] = true;
      return;
    }
    if (e < 0) return relay_side_failed(s, d, -e);
    s->starved[d] = false;
    ssize_t n = splice(src, NULL, x->pipe[1], NULL, (size_t)E.pipe_size, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n == 0) {
      relay_put_pipe(x);
      return relay_eof(s, d);
    }
    if (n < 0) {
      int err = errno;
      relay_put_pipe(x);
      if (err == EAGAIN || err == EINTR) return;
      return relay_side_failed(s, d, err);
    }
    x->inpipe = (size_t)n;
    if ((size_t)n >= (size_t)x->cap / 2) relay_grow_pipe(x);
    s->last_ms = loop_now_ms();
    round++;
  }
}

void relay_update(sess_t *s) {
  if (s->closing && relay_pending(&s->d[0]) == 0 && relay_pending(&s->d[1]) == 0) {
    if (s->why) return loop_finalize(s, s->why);
    return loop_finalize(s, s->closed_by == 1 ? "twin closed" : "transport closed");
  }
  for (int i = 0; i < 2 && !s->dead; i++) {
    if (s->gone[i]) continue;
    uint32_t want = 0;
    if (!s->closing && relay_pending(&s->d[i]) == 0 && !s->starved[i]) want |= EPOLLIN; /* read fd[i]: direction i */
    if (!s->closing && !s->rdhup[i]) want |= EPOLLRDHUP;
    if (relay_pending(&s->d[1 - i]) > 0) want |= EPOLLOUT; /* write fd[i]: direction 1-i */
    loop_set_events(s, i, want);
  }
}


void relay_start(sess_t *s, const uint8_t *rest, size_t restlen) {
  bal_t *b = s->bal;
  handshakes_t *h = s->hs;
  twin_t *tw = &b->twins[s->twin];
  /* Tor's answer, unchanged, then what it already sent on; the transport's early bytes to the twin. */
  dir_t *up = &s->d[1], *down = &s->d[0];
  size_t before = up->first_len - up->first_off;
  if (relay_queue(s, 0, h->cli.reply, h->cli.replylen) < 0 || relay_queue(s, 0, rest, restlen) < 0 ||
      relay_queue(s, 1, h->early, h->earlylen) < 0) {
    return sess_close(s, "out of memory");
  }
  up->uncounted = before + h->cli.replylen;
  down->uncounted = down->first_len - down->first_off - h->earlylen;
  sess_free_hs(s);
  sess_attempt_over(s);
  INC(b->c[C_ESTABLISHED], 1);
  INC(tw->c[TC_CURRENT], 1);
  INC(tw->c[TC_TOTAL], 1);
  pthread_mutex_lock(&E.mu);
  s->idle_ms = b->idle_ms;
  pthread_mutex_unlock(&E.mu);
  s->phase = P_RELAY;
  s->last_ms = loop_now_ms();
  relay_pump(s, 1);
  if (!s->dead) relay_pump(s, 0);
  loop_update(s);
}


bool relay_expired(const sess_t *s, int64_t now) {
  return ((s->closing || s->rdhup[0] || s->rdhup[1]) && now >= s->deadline_ms) ||
         (!s->closing && s->idle_ms > 0 && now - s->last_ms >= s->idle_ms);
}
