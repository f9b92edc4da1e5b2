/*
 * The relay's data path in the kernel: after the handshake, the balancer hands both sockets of a
 * session to one worker thread that moves bytes between them with splice(2) through a pipe, so the
 * payload is never copied into user space (a Node relay copies every byte in and out of the JS heap,
 * and pays an event, a Buffer and a write request per chunk).
 *
 * One thread, one epoll instance, for every session. Each session owns dup()s of its two sockets (the
 * caller closes its own descriptors right after relayAdd). A direction reads into a pipe only when
 * the pipe is empty and writes the pipe out before reading again: backpressure is the pipe (a
 * direction whose output is full stops reading). Idle sessions hold no pipe (pipes come from a small
 * pool and go back when empty), so 5,000 idle sessions cost 5,000 small structs and no descriptors
 * beyond their sockets.
 *
 * Close, as the JS relay does it: EOF on either side stops reading both ways, flushes what is in the
 * pipes (for at most LINGER_MS) and closes both sockets; an error on either closes both at once; no
 * byte either way for idleMs closes both. Every close is reported once to the JS callback given to
 * relayInit, as (id, reason, bytesAtoB, bytesBtoA), A being the first fd given to relayAdd.
 *
 *   relayInit(onClose, pipeSize): true                  starts the thread (once per process)
 *   relayAdd(fdA, fdB, idleMs, firstAtoB?, firstBtoA?): id (>= 0) or -errno
 *                                                         first*: bytes to write before any spliced ones
 *   relayClose(id): void                                 close now (reported with reason "closed")
 *   relayBytes(id): [aToB, bToA] | undefined            bytes written so far (undefined once closed)
 *   relayRef(on: boolean): void                          whether pending close reports keep Node alive
 *   relayStats(): { sessions, pipes, pooledPipes }
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "splice_relay.h"

#define SLOT_BITS 20
#define MAX_SLOTS (1u << SLOT_BITS)
#define LINGER_MS 2000
#define SCAN_MS 250
#define POOL_MAX 64
#define ROUNDS 16
#define REASON_LEN 96

typedef struct sess sess_t;

typedef struct {
  sess_t *s;
  int side;
} fdref_t;

typedef struct {
  int pipe[2];
  size_t inpipe;
  uint8_t *first;
  size_t first_len, first_off;
  _Atomic uint64_t bytes;
} dir_t;

struct sess {
  int fd[2];
  uint32_t events[2];
  fdref_t ref[2];
  dir_t d[2]; /* d[0]: fd[0] -> fd[1]; d[1]: fd[1] -> fd[0] */
  uint32_t slot;
  double id;
  int64_t idle_ms, last_ms, deadline_ms;
  bool closing, dead, registered;
  bool gone[2];  /* removed from epoll: the socket hung up and nothing more goes to it */
  int closed_by; /* which side sent EOF first (for the reason) */
  sess_t *next;
};

typedef struct {
  double id;
  double a2b, b2a;
  char reason[REASON_LEN];
} closemsg_t;

static struct {
  bool started;
  int ep, evfd;
  pthread_t th;
  pthread_mutex_t mu;
  /* Under mu: */
  sess_t **slots;
  uint32_t *gens;
  uint32_t nslots, cap;
  uint32_t *freelist;
  uint32_t nfree;
  sess_t *addq, *addq_tail;
  double *closeq;
  size_t ncloseq, capcloseq;
  uint32_t live;
  /* Worker only: */
  int pool[POOL_MAX][2];
  int npool;
  uint32_t pipes;
  sess_t *deadlist;
  atomic_bool stop;
  int pipe_size;
  napi_threadsafe_function tsfn;
} E;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t pending(const dir_t *x) { return (x->first_len - x->first_off) + x->inpipe; }

/* ---- pipes ---- */

static int get_pipe(dir_t *x) {
  if (x->pipe[0] >= 0) return 0;
  if (E.npool > 0) {
    E.npool--;
    x->pipe[0] = E.pool[E.npool][0];
    x->pipe[1] = E.pool[E.npool][1];
    return 0;
  }
  if (pipe2(x->pipe, O_NONBLOCK | O_CLOEXEC) < 0) return -errno;
  /* Best effort: past the per-user pipe quota the kernel keeps a small pipe, which still works. */
  if (E.pipe_size > 0) (void)fcntl(x->pipe[0], F_SETPIPE_SZ, E.pipe_size);
  E.pipes++;
  return 0;
}

static void put_pipe(dir_t *x) {
  if (x->pipe[0] < 0) return;
  if (x->inpipe == 0 && E.npool < POOL_MAX) {
    E.pool[E.npool][0] = x->pipe[0];
    E.pool[E.npool][1] = x->pipe[1];
    E.npool++;
  } else {
    close(x->pipe[0]);
    close(x->pipe[1]);
    E.pipes--;
  }
  x->pipe[0] = x->pipe[1] = -1;
  x->inpipe = 0;
}

/* ---- closing ---- */

static const char *side_name(int side) { return side == 0 ? "transport" : "twin"; }

static void finalize(sess_t *s, const char *reason) {
  if (s->dead) return;
  s->dead = true;
  for (int i = 0; i < 2; i++) {
    if (s->registered && !s->gone[i]) epoll_ctl(E.ep, EPOLL_CTL_DEL, s->fd[i], NULL);
    close(s->fd[i]);
    put_pipe(&s->d[i]);
    free(s->d[i].first);
    s->d[i].first = NULL;
  }
  closemsg_t *m = malloc(sizeof *m);
  if (m) {
    m->id = s->id;
    m->a2b = (double)atomic_load_explicit(&s->d[0].bytes, memory_order_relaxed);
    m->b2a = (double)atomic_load_explicit(&s->d[1].bytes, memory_order_relaxed);
    snprintf(m->reason, sizeof m->reason, "%s", reason);
  }
  pthread_mutex_lock(&E.mu);
  E.slots[s->slot] = NULL;
  E.gens[s->slot]++;
  E.freelist[E.nfree++] = s->slot;
  E.live--;
  pthread_mutex_unlock(&E.mu);
  if (m && napi_call_threadsafe_function(E.tsfn, m, napi_tsfn_nonblocking) != napi_ok) free(m);
  /* Freed after the current batch of events (another event of this batch may point at it). */
  s->next = E.deadlist;
  E.deadlist = s;
}

static void fail(sess_t *s, int side, int err) {
  char why[REASON_LEN];
  snprintf(why, sizeof why, "%s: %s", side_name(side), strerror(err));
  finalize(s, why);
}

static void update(sess_t *s) {
  if (s->dead) return;
  if (s->closing && pending(&s->d[0]) == 0 && pending(&s->d[1]) == 0) {
    finalize(s, s->closed_by == 1 ? "twin closed" : "transport closed");
    return;
  }
  for (int i = 0; i < 2; i++) {
    if (s->gone[i]) continue;
    uint32_t want = 0;
    if (!s->closing && pending(&s->d[i]) == 0) want |= EPOLLIN; /* read fd[i]: direction i */
    if (pending(&s->d[1 - i]) > 0) want |= EPOLLOUT;           /* write fd[i]: direction 1-i */
    if (want != s->events[i]) {
      struct epoll_event ev = {.events = want, .data.ptr = &s->ref[i]};
      if (epoll_ctl(E.ep, EPOLL_CTL_MOD, s->fd[i], &ev) < 0) return fail(s, i, errno);
      s->events[i] = want;
    }
  }
}

/* EOF from fd[d]: stop reading both ways; update() closes once the pipes are flushed. */
static void eof(sess_t *s, int d) {
  if (s->closing) return;
  s->closing = true;
  s->closed_by = d;
  s->deadline_ms = now_ms() + LINGER_MS;
}

/* Moves what it can from fd[d] to fd[1-d], at most ROUNDS reads, so one busy session can't starve others. */
static void pump(sess_t *s, int d) {
  dir_t *x = &s->d[d];
  int src = s->fd[d], dst = s->fd[1 - d];
  for (int round = 0; round < ROUNDS && !s->dead;) {
    if (x->first_off < x->first_len) {
      ssize_t n = send(dst, x->first + x->first_off, x->first_len - x->first_off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        return fail(s, 1 - d, errno);
      }
      x->first_off += (size_t)n;
      atomic_fetch_add_explicit(&x->bytes, (uint64_t)n, memory_order_relaxed);
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
        return fail(s, 1 - d, errno);
      }
      x->inpipe -= (size_t)n;
      atomic_fetch_add_explicit(&x->bytes, (uint64_t)n, memory_order_relaxed);
      if (x->inpipe == 0) put_pipe(x);
      continue;
    }
    if (s->closing) return;
    int e = get_pipe(x);
    if (e < 0) return fail(s, d, -e);
    ssize_t n = splice(src, NULL, x->pipe[1], NULL, (size_t)E.pipe_size, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n == 0) {
      put_pipe(x);
      return eof(s, d);
    }
    if (n < 0) {
      int err = errno;
      put_pipe(x);
      if (err == EAGAIN || err == EINTR) return;
      return fail(s, d, err);
    }
    x->inpipe = (size_t)n;
    s->last_ms = now_ms();
    round++;
  }
}

static void on_event(fdref_t *r, uint32_t ev) {
  sess_t *s = r->s;
  if (s->dead) return;
  if (ev & EPOLLERR) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(s->fd[r->side], SOL_SOCKET, SO_ERROR, &err, &l);
    return fail(s, r->side, err ? err : ECONNRESET);
  }
  /* Reading fd[side] (direction side) and writing it (direction 1-side): both may have progressed. */
  pump(s, r->side);
  if (!s->dead) pump(s, 1 - r->side);
  if (!s->dead && (ev & EPOLLHUP)) {
    /* Shut both ways (a reset, or closed for good): nothing more comes from or goes to this socket. */
    int i = r->side;
    if (pending(&s->d[1 - i]) > 0) return fail(s, i, ECONNRESET);
    eof(s, i);
    epoll_ctl(E.ep, EPOLL_CTL_DEL, s->fd[i], NULL);
    s->gone[i] = true;
  }
  update(s);
}

static void take_queues(void) {
  uint64_t v;
  while (read(E.evfd, &v, sizeof v) > 0) {
  }
  pthread_mutex_lock(&E.mu);
  sess_t *add = E.addq;
  E.addq = E.addq_tail = NULL;
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
    bool ok = true;
    s->registered = true;
    for (int i = 0; i < 2 && ok; i++) {
      struct epoll_event ev = {.events = 0, .data.ptr = &s->ref[i]};
      if (epoll_ctl(E.ep, EPOLL_CTL_ADD, s->fd[i], &ev) < 0) {
        fail(s, i, errno);
        ok = false;
      }
    }
    if (ok) {
      pump(s, 0);
      if (!s->dead) pump(s, 1);
      update(s);
    }
    s = next;
  }
  for (size_t i = 0; closes && i < nclose; i++) {
    double id = closes[i];
    uint32_t slot = (uint32_t)((uint64_t)id % MAX_SLOTS);
    sess_t *s = NULL;
    pthread_mutex_lock(&E.mu);
    if (slot < E.nslots && E.slots[slot] && E.slots[slot]->id == id) s = E.slots[slot];
    pthread_mutex_unlock(&E.mu);
    if (s && !s->dead) finalize(s, "closed");
  }
  free(closes);
}

/* Idle sessions and lingering ones past their deadline. */
static void scan(void) {
  static sess_t **expired;
  static size_t cap;
  size_t n = 0;
  int64_t now = now_ms();
  pthread_mutex_lock(&E.mu);
  for (uint32_t i = 0; i < E.nslots; i++) {
    sess_t *s = E.slots[i];
    if (!s || s->dead || !s->registered) continue;
    if ((s->closing && now >= s->deadline_ms) || (!s->closing && s->idle_ms > 0 && now - s->last_ms >= s->idle_ms)) {
      if (n == cap) {
        size_t c = cap ? cap * 2 : 64;
        sess_t **x = realloc(expired, c * sizeof *x);
        if (!x) break;
        expired = x;
        cap = c;
      }
      expired[n++] = s;
    }
  }
  pthread_mutex_unlock(&E.mu);
  for (size_t i = 0; i < n; i++) finalize(expired[i], expired[i]->closing ? "linger expired" : "idle");
}

static void *worker(void *arg) {
  (void)arg;
  struct epoll_event evs[256];
  int64_t next_scan = now_ms() + SCAN_MS;
  while (!atomic_load(&E.stop)) {
    int n = epoll_wait(E.ep, evs, 256, SCAN_MS);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) take_queues();
      else on_event(evs[i].data.ptr, evs[i].events);
    }
    int64_t now = now_ms();
    if (now >= next_scan) {
      scan();
      next_scan = now + SCAN_MS;
    }
    while (E.deadlist) {
      sess_t *s = E.deadlist;
      E.deadlist = s->next;
      free(s);
    }
  }
  return NULL;
}

/* ---- JS side ---- */

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  closemsg_t *m = data;
  if (env && cb) {
    napi_value argv[4], undef;
    napi_create_double(env, m->id, &argv[0]);
    napi_create_string_utf8(env, m->reason, NAPI_AUTO_LENGTH, &argv[1]);
    napi_create_double(env, m->a2b, &argv[2]);
    napi_create_double(env, m->b2a, &argv[3]);
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, cb, 4, argv, NULL);
  }
  free(m);
}

static void cleanup(void *arg) {
  (void)arg;
  if (!E.started) return;
  atomic_store(&E.stop, true);
  uint64_t one = 1;
  (void)!write(E.evfd, &one, sizeof one);
  pthread_join(E.th, NULL);
  E.started = false;
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value RelayInit(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], name, out;
  int32_t pipe_size = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (E.started) {
    napi_get_boolean(env, true, &out);
    return out;
  }
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "relayInit(onClose, pipeSize)");
    return NULL;
  }
  if (argc >= 2) napi_get_value_int32(env, argv[1], &pipe_size);
  E.pipe_size = pipe_size > 0 ? pipe_size : 65536;
  napi_create_string_utf8(env, "bridgectl-splice-relay", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &E.tsfn) != napi_ok) {
    napi_throw_error(env, NULL, "relayInit: cannot create the threadsafe function");
    return NULL;
  }
  napi_unref_threadsafe_function(env, E.tsfn);
  E.ep = epoll_create1(EPOLL_CLOEXEC);
  E.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (E.ep < 0 || E.evfd < 0 || epoll_ctl(E.ep, EPOLL_CTL_ADD, E.evfd, &ev) < 0) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  pthread_mutex_init(&E.mu, NULL);
  atomic_store(&E.stop, false);
  if (pthread_create(&E.th, NULL, worker, NULL) != 0) {
    napi_throw_error(env, NULL, "relayInit: cannot start the thread");
    return NULL;
  }
  E.started = true;
  napi_add_env_cleanup_hook(env, cleanup, NULL);
  napi_get_boolean(env, true, &out);
  return out;
}

static int copy_buffer(napi_env env, napi_value v, uint8_t **out, size_t *len) {
  bool is;
  *out = NULL;
  *len = 0;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is) return 0;
  void *data;
  size_t n;
  napi_get_buffer_info(env, v, &data, &n);
  if (n == 0) return 0;
  *out = malloc(n);
  if (!*out) return -ENOMEM;
  memcpy(*out, data, n);
  *len = n;
  return 0;
}

static napi_value make_num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static napi_value RelayAdd(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t fda, fdb;
  double idle = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!E.started || argc < 3 || napi_get_value_int32(env, argv[0], &fda) != napi_ok ||
      napi_get_value_int32(env, argv[1], &fdb) != napi_ok || napi_get_value_double(env, argv[2], &idle) != napi_ok) {
    napi_throw_type_error(env, NULL, "relayAdd(fdA, fdB, idleMs, firstAtoB?, firstBtoA?) after relayInit");
    return NULL;
  }
  sess_t *s = calloc(1, sizeof *s);
  if (!s) return make_num(env, -ENOMEM);
  for (int i = 0; i < 2; i++) {
    s->d[i].pipe[0] = s->d[i].pipe[1] = -1;
    s->ref[i].s = s;
    s->ref[i].side = i;
  }
  int e = 0;
  if (argc >= 4) e = copy_buffer(env, argv[3], &s->d[0].first, &s->d[0].first_len);
  if (!e && argc >= 5) e = copy_buffer(env, argv[4], &s->d[1].first, &s->d[1].first_len);
  s->fd[0] = e ? -1 : fcntl(fda, F_DUPFD_CLOEXEC, 3);
  if (!e && s->fd[0] < 0) e = -errno;
  s->fd[1] = e ? -1 : fcntl(fdb, F_DUPFD_CLOEXEC, 3);
  if (!e && s->fd[1] < 0) e = -errno;
  s->idle_ms = (int64_t)idle;
  s->last_ms = now_ms();
  if (!e) {
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
        e = -ENOMEM;
    }
    if (!e) {
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
      if (E.addq_tail) E.addq_tail->next = s;
      else E.addq = s;
      E.addq_tail = s;
    }
    pthread_mutex_unlock(&E.mu);
  }
  if (e) {
    for (int i = 0; i < 2; i++) {
      if (s->fd[i] >= 0) close(s->fd[i]);
      free(s->d[i].first);
    }
    free(s);
    return make_num(env, e);
  }
  uint64_t one = 1;
  (void)!write(E.evfd, &one, sizeof one);
  return make_num(env, s->id);
}

static napi_value RelayClose(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  double id;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!E.started || argc < 1 || napi_get_value_double(env, argv[0], &id) != napi_ok) return undefined(env);
  pthread_mutex_lock(&E.mu);
  if (E.ncloseq == E.capcloseq) {
    size_t cap = E.capcloseq ? E.capcloseq * 2 : 256;
    double *q = realloc(E.closeq, cap * sizeof *q);
    if (q) {
      E.closeq = q;
      E.capcloseq = cap;
    }
  }
  if (E.ncloseq < E.capcloseq) E.closeq[E.ncloseq++] = id;
  pthread_mutex_unlock(&E.mu);
  uint64_t one = 1;
  (void)!write(E.evfd, &one, sizeof one);
  return undefined(env);
}

static napi_value RelayBytes(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], arr;
  double id, a = -1, b = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!E.started || argc < 1 || napi_get_value_double(env, argv[0], &id) != napi_ok) return undefined(env);
  uint32_t slot = (uint32_t)((uint64_t)id % MAX_SLOTS);
  pthread_mutex_lock(&E.mu);
  if (slot < E.nslots && E.slots[slot] && E.slots[slot]->id == id) {
    a = (double)atomic_load_explicit(&E.slots[slot]->d[0].bytes, memory_order_relaxed);
    b = (double)atomic_load_explicit(&E.slots[slot]->d[1].bytes, memory_order_relaxed);
  }
  pthread_mutex_unlock(&E.mu);
  if (a < 0) return undefined(env);
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, make_num(env, a));
  napi_set_element(env, arr, 1, make_num(env, b));
  return arr;
}

static napi_value RelayRef(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool on = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!E.started || argc < 1) return undefined(env);
  napi_get_value_bool(env, argv[0], &on);
  if (on) napi_ref_threadsafe_function(env, E.tsfn);
  else napi_unref_threadsafe_function(env, E.tsfn);
  return undefined(env);
}

static napi_value RelayStats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_create_object(env, &out);
  pthread_mutex_lock(&E.mu);
  double live = E.live;
  pthread_mutex_unlock(&E.mu);
  /* pipes and npool belong to the worker; a racy read is fine for a gauge. */
  napi_set_named_property(env, out, "sessions", make_num(env, live));
  napi_set_named_property(env, out, "pipes", make_num(env, (double)E.pipes));
  napi_set_named_property(env, out, "pooledPipes", make_num(env, (double)E.npool));
  return out;
}

void splice_relay_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"relayInit", NULL, RelayInit, NULL, NULL, NULL, napi_default, NULL},
      {"relayAdd", NULL, RelayAdd, NULL, NULL, NULL, napi_default, NULL},
      {"relayClose", NULL, RelayClose, NULL, NULL, NULL, napi_default, NULL},
      {"relayBytes", NULL, RelayBytes, NULL, NULL, NULL, napi_default, NULL},
      {"relayRef", NULL, RelayRef, NULL, NULL, NULL, napi_default, NULL},
      {"relayStats", NULL, RelayStats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
