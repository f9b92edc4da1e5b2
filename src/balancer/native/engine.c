/*
 * The balancer's native data plane: one worker thread, one epoll instance, for every session of
 * every balancer in the process. It accepts transports' Extended ORPort connections, runs both
 * SAFE_COOKIE handshakes (the transport's with the static cookie, ours with the chosen twin's
 * current cookie), replays the transport's commands on the next twin when one fails before its
 * OKAY, and then relays both ways with splice(2) through a pipe, so the payload never enters user
 * space. JS (native-balancer.ts) owns the configuration: backends, their cookies and up/down state
 * (under one mutex), limits; it reads the counters; the worker tells it when it marks a twin down.
 *
 * The attempt on a twin starts as soon as the transport connects, alongside the transport's own
 * handshake (connect, auth types, our nonce and the twin's server hash need nothing from the
 * transport), and waits for the transport's DONE to send our client hash with its commands: a
 * session then costs one round trip to the twin after DONE instead of three. Only while transports
 * behave: after any transport fails auth, breaks the protocol, times out or leaves mid-handshake,
 * attempts start at DONE for SPEC_PAUSE_MS, so bad peers never cost the twins a connection.
 *
 * Why not net.Socket: a Node session costs two net.Sockets with their stream state, listeners and
 * timers, ~350 µs of CPU and several kB of V8 heap per session; here it is one small struct.
 *
 * Relay: a direction reads into a pipe only when the pipe is empty and writes the pipe out before
 * reading again, so backpressure is the pipe (a direction whose output is full stops reading). Idle
 * sessions hold no pipe (pipes come from a small pool and go back when empty).
 *
 * Close, as the JS relay does it: EOF on either side stops reading both ways, flushes what is
 * already read (for at most LINGER_MS) and closes both sockets; an error on one side drops what was
 * going to it, flushes what was coming from it to the other side (tor's OKAY, say), then closes;
 * no byte either way for idleMs closes both.
 *
 * The same relay is exposed for sockets connected elsewhere (relayAdd, through splice.ts; the tests
 * drive the relay that way): such sessions report their close to JS as (id, reason, aToB, bToA).
 *
 *   engineInit(onEvent, pipeSize)                               once per process; events below
 *   engineCreate({cookie, srcFirst, srcSize, noPort, handshakeMs, backendMs, idleMs, maxSessions, debug}): handle
 *   engineListen(h, host, port, backlog): port, or -errno
 *   engineStop(h, token)                                         closes the listener and every session; event DONE
 *   engineLimits(h, handshakeMs, backendMs, idleMs, maxSessions)
 *   engineBackendSet(h, idx, host, port): 0 or -errno            a new backend in slot idx (down, counters zero)
 *   engineBackendUp(h, idx, cookie) / engineBackendDown(h, idx, reason) / engineBackendDrain(h, idx, on)
 *   engineBackendRemove(h, idx, token)                           ends its sessions, frees the slot; event DONE
 *   engineStats(h): Float64Array                                 listener counters, then per backend
 *   relayAdd(fdA, fdB, idleMs, firstAtoB?, firstBtoA?): id or -errno; relayClose(id); relayBytes(id)
 *   relayRef(on); relayStats()
 * Events: (1, id, reason, aToB, bToA) relay close; (2, h, idx, reason, authFailed) twin marked down;
 *         (3, token) command done; (4, h, message) debug line (when the balancer asked for them).
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define SLOT_BITS 22
#define MAX_SLOTS (1u << SLOT_BITS)
#define LINGER_MS 2000
#define SCAN_MS 100
#define POOL_MAX 64
#define ROUNDS 16
#define REASON_LEN 128
#define MAX_BACKENDS 256
#define MAX_COMMAND_BYTES (64 * 1024)
#define MAX_TWIN_REPLY_BYTES (64 * 1024 + 4096) /* what a twin may send before its OKAY */
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100
/* Early twin attempts (see hs_t): at most this many at once, and none for SPEC_PAUSE_MS once bad
 * transport handshakes (failed auth, broken protocol, timed out, or left mid-handshake) reach
 * SPEC_BAD_MIN and a tenth of those that ended over the last one to two seconds: a flood of bad
 * peers never costs the twins a connection, while a health probe or a client that gives up now and
 * then does not turn the feature off. */
#define SPEC_MAX 1024
#define SPEC_PAUSE_MS 10000
#define SPEC_WINDOW_MS 1000
#define SPEC_BAD_MIN 16

enum { P_FRONT, P_BACKEND, P_RELAY, P_REJECT };
enum { F_TYPE, F_NONCE, F_HASH, F_CMDS };
enum { B_CONNECT, B_TYPES, B_SHASH, B_WAIT, B_RESULT, B_REPLY };
enum { EV_RELAY_CLOSED = 1, EV_DOWN = 2, EV_DONE = 3, EV_DEBUG = 4 };

/* Listener counters, in the order engineStats returns them. */
enum {
  C_ACCEPTED, C_CURRENT, C_ESTABLISHED, C_AUTHFAIL, C_PROTO, C_HSTIMEOUT, C_IDLE, C_OVERCAP, C_NOBACKEND, C_REPLAYS,
  C_LOCAL, C_N
};
/* Backend counters, likewise. */
enum { BC_CURRENT, BC_TOTAL, BC_TO, BC_FROM, BC_AUTHFAIL, BC_CONNFAIL, BC_N };

/* epoll data: a session's (slot, side, descriptor generation), a listener's handle, or the eventfd. */
#define TAG_EVENTFD UINT64_MAX
#define TAG_LISTENER 0xFFFFFFFEull
#define GEN_MASK 0x7fffffffu

#define INC(x, n) atomic_fetch_add_explicit(&(x), (int64_t)(n), memory_order_relaxed)
#define GET(x) atomic_load_explicit(&(x), memory_order_relaxed)

typedef struct sess sess_t;
typedef struct bal bal_t;


typedef struct {
  int pipe[2];
  size_t inpipe;
  uint8_t *first; /* bytes to write before anything spliced */
  size_t first_len, first_off;
  size_t uncounted; /* leading bytes not counted as relayed (tor's OKAY) */
  _Atomic int64_t bytes;
} dir_t;

typedef struct {
  bool used, up, draining;
  uint32_t gen; /* bumped by every markUp: an attempt with an older cookie says nothing about it */
  struct sockaddr_storage addr;
  socklen_t addrlen;
  uint8_t cookie[32];
  char reason[REASON_LEN];
  _Atomic int64_t c[BC_N];
} backend_t;

struct bal {
  int handle;
  int lfd;
  bool stopped;
  bool stop_queued; /* JS thread only: engineStop was called; the handle is unusable from then on */
  uint8_t cookie[32];
  uint32_t src_first, src_size;
  bool no_port, debug;
  /* Under E.mu: */
  int64_t hs_ms, be_ms, idle_ms;
  int64_t max_sessions;
  uint32_t rr;
  /* Worker only: */
  int64_t spec_paused_until;
  int spec_now;
  int64_t accept_paused_until; /* out of descriptors: the listener is out of epoll until then */
  int64_t win_start;
  uint32_t win_good[2], win_bad[2]; /* [0] this window, [1] the one before */
  int nbe; /* slots in use are below this */
  backend_t be[MAX_BACKENDS];
  _Atomic int64_t c[C_N];
};

typedef struct {
  uint8_t *p;
  size_t len, cap;
} inbuf_t;

/*
 * Both handshakes run at once: the attempt on a twin starts when the transport connects (connect,
 * auth types, our nonce, its server hash all overlap with the transport's own handshake) and waits
 * in B_WAIT for the transport's DONE before it sends our client hash with the commands.
 */
typedef struct {
  int fst, bst;        /* the transport's handshake (F_*), the twin attempt's (B_*) */
  bool front_done;     /* the transport sent DONE: held is complete */
  bool spec;           /* counted in spec_now: an attempt started before DONE */
  uint8_t expect[32];  /* front: the client hash we expect */
  uint8_t cookie[32];  /* backend: the twin's cookie for this attempt */
  uint32_t be_gen;     /* backend: the twin's generation when this attempt took its cookie */
  uint8_t cnonce[32];  /* backend: our nonce */
  uint8_t chash[32];   /* backend: our client hash, kept in B_WAIT */
  uint64_t tried[MAX_BACKENDS / 64];
  int ntried;
  inbuf_t in[2]; /* what came from fd[0] (transport) and fd[1] (twin) during the handshakes */
  uint8_t *held; /* the transport's commands, DONE included, as it framed them */
  size_t heldlen;
  uint8_t *early; /* what the transport sent after DONE */
  size_t earlylen;
  uint8_t *reply; /* the twin's commands up to its OKAY/DENY */
  size_t replylen;
  int replyparts;
  size_t cmdbytes;
  int64_t attempt_deadline;
} hs_t;

struct sess {
  bal_t *bal; /* NULL for relayAdd sessions */
  int phase;
  int fd[2]; /* [0] transport, [1] twin */
  uint32_t events[2];
  bool registered[2];
  dir_t d[2]; /* d[0]: fd[0] -> fd[1]; d[1]: fd[1] -> fd[0] */
  hs_t *hs;
  int be; /* backend slot of the attempt or the relay, -1 none */
  uint32_t slot;
  double id;
  int64_t idle_ms, last_ms, deadline_ms;
  bool closing, dead, counted, shut_wr;
  bool gone[2];  /* nothing more goes to or comes from this socket */
  bool hup[2];   /* relay: the socket hung up or failed: not polled, nothing goes to it, read until EOF */
  bool starved[2]; /* relay: direction d waits for a pipe (out of descriptors); scan() retries */
  uint32_t gen[2]; /* bumped when fd[i] is closed: events carry it, so an old attempt's are dropped */
  bool rdhup[2]; /* the peer half-closed; the linger deadline runs */
  int closed_by;
  char *why; /* a failure that ends the session once the other side is flushed */
  sess_t *next;
};

typedef struct event {
  int kind;
  double a, b, c, d;
  struct event *next;
  void *free_after; /* a stopped balancer's state, freed on the JS thread once the event is delivered */
  char text[REASON_LEN + 64];
} event_t;

enum { CMD_STOP = 1, CMD_REMOVE = 2 };

typedef struct cmd {
  int kind; /* CMD_* */
  event_t *ev; /* its DONE, allocated when queued */
  bal_t *bal;
  int idx;
  double token;
  struct cmd *next;
} cmd_t;

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
  cmd_t *cmdq, *cmdq_tail;
  uint32_t live;
  bal_t **bals;
  int nbals;
  /* Worker only: */
  int pool[POOL_MAX][2];
  int npool;
  _Atomic int64_t pipes;
  sess_t *deadlist;
  event_t *stopped; /* stop commands done this batch: posted (and their balancers freed) after it */
  atomic_bool stop;
  int pipe_size;
  uint8_t rnd[4096];
  size_t rndpos;
  uint64_t prng;
  napi_threadsafe_function tsfn;
  int refs;
} E;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t sess_tag(const sess_t *s, int i) {
  return (uint64_t)s->slot << 32 | (uint64_t)i << 31 | (s->gen[i] & GEN_MASK);
}

static uint64_t listener_tag(const bal_t *b) { return TAG_LISTENER << 32 | (uint32_t)b->handle; }

static size_t pending(const dir_t *x) { return (x->first_len - x->first_off) + x->inpipe; }

static void free_event(event_t *ev) {
  free(ev->free_after);
  free(ev);
}

/* Hands an event to the JS thread. Lost only if the queue itself fails (the env is going away). */
static void post(event_t *ev) {
  if (napi_call_threadsafe_function(E.tsfn, ev, napi_tsfn_nonblocking) != napi_ok) free_event(ev);
}

static void post_debug(bal_t *b, const char *fmt, ...) {
  if (!b || !b->debug) return;
  event_t *ev = calloc(1, sizeof *ev);
  if (!ev) return;
  ev->kind = EV_DEBUG;
  ev->a = b->handle;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ev->text, sizeof ev->text, fmt, ap);
  va_end(ap);
  post(ev);
}

/* Random bytes for nonces, from getrandom(2) in 4 kB batches (worker only). */
static void random_bytes(uint8_t *out, size_t n) {
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
static uint32_t prng32(void) {
  uint64_t x = E.prng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  E.prng = x;
  return (uint32_t)(x >> 16);
}

static const char S2C[] = "ExtORPort authentication server-to-client hash";
static const char C2S[] = "ExtORPort authentication client-to-server hash";

/* HMAC-SHA256(cookie, constant | client nonce | server nonce); false if OpenSSL failed (out is then unusable). */
static bool safe_cookie_hash(const uint8_t *cookie, const char *constant, const uint8_t *cn, const uint8_t *sn, uint8_t *out) {
  uint8_t msg[64 + 64];
  size_t cl = strlen(constant);
  memcpy(msg, constant, cl);
  memcpy(msg + cl, cn, 32);
  memcpy(msg + cl + 32, sn, 32);
  unsigned int len = 32;
  return HMAC(EVP_sha256(), cookie, 32, msg, cl + 64, out, &len) != NULL && len == 32;
}

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
  INC(E.pipes, 1);
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
    INC(E.pipes, -1);
  }
  x->pipe[0] = x->pipe[1] = -1;
  x->inpipe = 0;
}

static void drop_dir(dir_t *x) {
  put_pipe(x);
  free(x->first);
  x->first = NULL;
  x->first_len = x->first_off = 0;
}

static int append(uint8_t **buf, size_t *len, const uint8_t *p, size_t n) {
  if (n == 0) return 0;
  uint8_t *b = realloc(*buf, *len + n);
  if (!b) return -ENOMEM;
  memcpy(b + *len, p, n);
  *buf = b;
  *len += n;
  return 0;
}

/* Queues bytes to write to fd[side] (before anything spliced). */
static int queue_to(sess_t *s, int side, const uint8_t *p, size_t n) {
  dir_t *x = &s->d[1 - side];
  if (x->first_off > 0 && x->first_off == x->first_len) {
    free(x->first);
    x->first = NULL;
    x->first_len = x->first_off = 0;
  }
  return append(&x->first, &x->first_len, p, n);
}

static backend_t *sess_backend(sess_t *s) {
  if (!s->bal || s->be < 0) return NULL;
  return &s->bal->be[s->be];
}

/* Counts n bytes written in direction d (skipping tor's reply, which is not payload). */
static void account(sess_t *s, int d, size_t n) {
  dir_t *x = &s->d[d];
  INC(x->bytes, n);
  size_t skip = x->uncounted < n ? x->uncounted : n;
  x->uncounted -= skip;
  n -= skip;
  backend_t *b = s->phase == P_RELAY ? sess_backend(s) : NULL;
  if (b && n) INC(b->c[d == 0 ? BC_TO : BC_FROM], n);
}

/* ---- closing ---- */

static const char *side_name(int side) { return side == 0 ? "transport" : "twin"; }

static void spec_done(sess_t *s) {
  if (s->hs && s->hs->spec) {
    s->hs->spec = false;
    s->bal->spec_now--;
  }
}

/* Counts a transport handshake that ended well (DONE) or badly; pauses early attempts on a flood. */
static void spec_count(bal_t *b, bool bad) {
  int64_t now = now_ms();
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
    if (now >= b->spec_paused_until) post_debug(b, "bad transport handshakes (%u of %u): twin attempts wait for DONE for %d s", nbad, nbad + ngood, SPEC_PAUSE_MS / 1000);
    b->spec_paused_until = now + SPEC_PAUSE_MS;
  }
}


static void free_hs(sess_t *s) {
  hs_t *h = s->hs;
  if (!h) return;
  spec_done(s);
  free(h->in[0].p);
  free(h->in[1].p);
  free(h->held);
  free(h->early);
  free(h->reply);
  free(h);
  s->hs = NULL;
}

static void unregister(sess_t *s, int i) {
  if (s->registered[i]) epoll_ctl(E.ep, EPOLL_CTL_DEL, s->fd[i], NULL);
  s->registered[i] = false;
  s->events[i] = 0;
}

static void finalize(sess_t *s, const char *reason) {
  if (s->dead) return;
  s->dead = true;
  for (int i = 0; i < 2; i++) {
    if (s->fd[i] >= 0) {
      unregister(s, i);
      close(s->fd[i]);
    }
    drop_dir(&s->d[i]);
  }
  free_hs(s);
  bal_t *b = s->bal;
  if (b) {
    if (s->counted) INC(b->c[C_CURRENT], -1);
    backend_t *be = s->phase == P_RELAY ? sess_backend(s) : NULL;
    if (be) INC(be->c[BC_CURRENT], -1);
    if (s->phase != P_REJECT) post_debug(b, "session closed: %s", reason);
  } else {
    event_t *ev = calloc(1, sizeof *ev);
    if (ev) {
      ev->kind = EV_RELAY_CLOSED;
      ev->a = s->id;
      ev->b = (double)GET(s->d[0].bytes);
      ev->c = (double)GET(s->d[1].bytes);
      snprintf(ev->text, sizeof ev->text, "%s", reason);
      post(ev);
    }
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

static void set_events(sess_t *s, int i, uint32_t want) {
  if (s->fd[i] < 0 || s->gone[i] || s->hup[i]) return;
  if (s->registered[i] && want == s->events[i]) return;
  struct epoll_event ev = {.events = want, .data.u64 = sess_tag(s, i)};
  if (epoll_ctl(E.ep, s->registered[i] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd[i], &ev) < 0) {
    char why[REASON_LEN];
    snprintf(why, sizeof why, "%s: epoll: %s", side_name(i), strerror(errno));
    finalize(s, why);
    return;
  }
  s->registered[i] = true;
  s->events[i] = want;
}

static void update(sess_t *s);

/* Relay: fd[side] failed. Drop what was going to it; flush what came from it to the other side, then close. */
static void side_failed(sess_t *s, int side, int err) {
  char why[REASON_LEN];
  snprintf(why, sizeof why, "%s: %s", side_name(side), strerror(err));
  if (s->dead) return;
  if (s->phase != P_RELAY || s->gone[1 - side] || pending(&s->d[side]) == 0) return finalize(s, why);
  drop_dir(&s->d[1 - side]);
  unregister(s, side);
  s->gone[side] = true;
  if (!s->why) s->why = strdup(why);
  if (!s->closing) {
    s->closing = true;
    s->closed_by = side;
    s->deadline_ms = now_ms() + LINGER_MS;
  }
  update(s);
}

/* ---- the relay ---- */

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
  if (s->gone[1 - d] || s->hup[1 - d]) return;
  for (int round = 0; round < ROUNDS && !s->dead;) {
    if (x->first_off < x->first_len) {
      ssize_t n = send(dst, x->first + x->first_off, x->first_len - x->first_off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        return side_failed(s, 1 - d, errno);
      }
      x->first_off += (size_t)n;
      account(s, d, (size_t)n);
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
        return side_failed(s, 1 - d, errno);
      }
      x->inpipe -= (size_t)n;
      account(s, d, (size_t)n);
      if (x->inpipe == 0) put_pipe(x);
      continue;
    }
    if (s->closing || s->gone[d]) return;
    int e = get_pipe(x);
    if (e == -EMFILE || e == -ENFILE || e == -ENOMEM) {
      /* Out of descriptors (or memory) for a pipe: this direction waits, scan() retries it. */
      if (!s->starved[d]) post_debug(s->bal, "no pipe for a session (%s): that direction waits", strerror(-e));
      s->starved[d] = true;
      return;
    }
    if (e < 0) return side_failed(s, d, -e);
    s->starved[d] = false;
    ssize_t n = splice(src, NULL, x->pipe[1], NULL, (size_t)E.pipe_size, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n == 0) {
      put_pipe(x);
      return eof(s, d);
    }
    if (n < 0) {
      int err = errno;
      put_pipe(x);
      if (err == EAGAIN || err == EINTR) return;
      return side_failed(s, d, err);
    }
    x->inpipe = (size_t)n;
    s->last_ms = now_ms();
    round++;
  }
}

static void relay_update(sess_t *s) {
  if (s->closing && pending(&s->d[0]) == 0 && pending(&s->d[1]) == 0) {
    if (s->why) return finalize(s, s->why);
    return finalize(s, s->closed_by == 1 ? "twin closed" : "transport closed");
  }
  for (int i = 0; i < 2 && !s->dead; i++) {
    if (s->gone[i]) continue;
    uint32_t want = 0;
    if (!s->closing && pending(&s->d[i]) == 0 && !s->starved[i]) want |= EPOLLIN; /* read fd[i]: direction i */
    if (!s->closing && !s->rdhup[i]) want |= EPOLLRDHUP;
    if (pending(&s->d[1 - i]) > 0) want |= EPOLLOUT; /* write fd[i]: direction 1-i */
    set_events(s, i, want);
  }
}

/* ---- handshakes ---- */

static void close_with(sess_t *s, const char *fmt, ...) {
  char why[REASON_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  finalize(s, why);
}

/* Writes what is queued to fd[side] (handshake phases); false if the session ended. */
static bool flush_to(sess_t *s, int side) {
  dir_t *x = &s->d[1 - side];
  while (x->first_off < x->first_len) {
    ssize_t n = send(s->fd[side], x->first + x->first_off, x->first_len - x->first_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      if (side == 1) return true; /* the attempt's failure shows on the next read */
      close_with(s, "transport: %s", strerror(errno));
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
static void close_attempt(sess_t *s) {
  if (s->fd[1] >= 0) {
    unregister(s, 1);
    close(s->fd[1]);
    s->fd[1] = -1;
    s->gen[1]++;
  }
  drop_dir(&s->d[0]);
  s->be = -1;
}

/* Answers per protocol, then drops: the bytes, FIN, then discard input until EOF or the linger ends. */
static void reject(sess_t *s, const uint8_t *bytes, size_t n, int counter, const char *fmt, ...) {
  char why[REASON_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  bal_t *b = s->bal;
  INC(b->c[counter], 1);
  spec_count(b, true);
  post_debug(b, "transport handshake failed: %s", why);
  if (s->counted) INC(b->c[C_CURRENT], -1);
  s->counted = false;
  close_attempt(s); /* an attempt started alongside: the twin is not to blame */
  free_hs(s);
  s->phase = P_REJECT;
  s->deadline_ms = now_ms() + LINGER_MS;
  if (n && queue_to(s, 0, bytes, n) < 0) return finalize(s, "rejected (out of memory)");
  if (!flush_to(s, 0)) return;
  update(s);
}

static void start_backend(sess_t *s);

static bool tried(hs_t *h, int i) { return (h->tried[i / 64] >> (i % 64)) & 1; }

/* The attempt on the current twin failed: blame it (unless local), then replay on the next one. */
static void attempt_failed(sess_t *s, const char *reason, bool auth, bool local) {
  bal_t *b = s->bal;
  hs_t *h = s->hs;
  int idx = s->be;
  close_attempt(s);
  h->in[1].len = 0;
  h->replylen = 0;
  h->replyparts = 0;
  if (local) {
    INC(b->c[C_LOCAL], 1);
    post_debug(b, "local error connecting to twin %d: %s", idx, reason);
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
        post(ev);
      }
    }
  }
  start_backend(s);
}

static bool local_errno(int e) {
  return e == EADDRNOTAVAIL || e == EADDRINUSE || e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

/* Picks the next up twin not tried yet, round-robin, and connects to it. */
static void start_backend(sess_t *s) {
  bal_t *b = s->bal;
  hs_t *h = s->hs;
  for (;;) {
    int idx = -1;
    struct sockaddr_storage addr;
    socklen_t addrlen = 0;
    int64_t be_ms = 0;
    pthread_mutex_lock(&E.mu);
    int n = b->nbe;
    for (int k = 0; k < n; k++) {
      int i = (int)((b->rr + (uint32_t)k) % (uint32_t)n);
      backend_t *be = &b->be[i];
      if (!be->used || !be->up || be->draining || tried(h, i)) continue;
      idx = i;
      b->rr = (uint32_t)(i + 1) % (uint32_t)n;
      memcpy(h->cookie, be->cookie, 32);
      h->be_gen = be->gen;
      addr = be->addr;
      addrlen = be->addrlen;
      break;
    }
    be_ms = b->be_ms;
    pthread_mutex_unlock(&E.mu);
    if (idx < 0) {
      /* Before the transport's DONE, wait: its DONE tries again (and closes if there is still none). */
      if (!h->front_done) return;
      INC(b->c[C_NOBACKEND], 1);
      if (h->ntried) return close_with(s, "every twin tried failed (%d)", h->ntried);
      return close_with(s, "no twin is up");
    }
    if (h->ntried) INC(b->c[C_REPLAYS], 1);
    h->tried[idx / 64] |= 1ull << (idx % 64);
    h->ntried++;
    s->be = idx;
    h->bst = B_CONNECT;
    h->attempt_deadline = be_ms > 0 ? now_ms() + be_ms : 0;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = fd < 0 ? errno : 0;
    if (!err) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (addr.ss_family == AF_INET && b->src_size > 0) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        uint32_t i = b->src_size == 1 ? 0 : prng32() % b->src_size;
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
      return attempt_failed(s, why, false, local_errno(err));
    }
    s->fd[1] = fd;
    s->gone[1] = false;
    set_events(s, 1, EPOLLOUT);
    return;
  }
}

/* Whether tor would take this USERADDR/TRANSPORT (or another command type) before DONE. */
static const char *check_command(int type, const uint8_t *body, size_t len) {
  if (type == 0x1000 || type == 0x1001 || type == 0x1002) return "a bridge-to-transport command";
  if (type != 0x0001 && type != 0x0002) return NULL;
  if (memchr(body, 0, len)) return type == 1 ? "NUL in USERADDR" : "NUL in TRANSPORT";
  if (type == 0x0002) {
    if (len == 0) return "TRANSPORT is not a C identifier";
    for (size_t i = 0; i < len; i++) {
      uint8_t c = body[i];
      bool ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9');
      if (!ok) return "TRANSPORT is not a C identifier";
    }
    return NULL;
  }
  /* USERADDR: 1.2.3.4:5678 or [::1]:5678, port 1-65535 written with 1 to 5 digits. */
  char buf[80];
  if (len >= sizeof buf) return "USERADDR is not ADDRESS:PORT";
  memcpy(buf, body, len);
  buf[len] = 0;
  char *colon = strrchr(buf, ':');
  if (!colon) return "USERADDR is not ADDRESS:PORT";
  size_t digits = strlen(colon + 1);
  if (digits < 1 || digits > 5) return "USERADDR is not ADDRESS:PORT";
  long port = 0;
  for (char *p = colon + 1; *p; p++) {
    if (*p < '0' || *p > '9') return "USERADDR is not ADDRESS:PORT";
    port = port * 10 + (*p - '0');
  }
  if (port < 1 || port > 65535) return "USERADDR is not ADDRESS:PORT";
  *colon = 0;
  uint8_t a[16];
  if (buf[0] == '[') {
    size_t l = strlen(buf);
    if (l < 3 || buf[l - 1] != ']') return "USERADDR is not ADDRESS:PORT";
    buf[l - 1] = 0;
    for (char *p = buf + 1; *p; p++)
      if (!strchr("0123456789abcdefABCDEF:.", *p)) return "USERADDR is not ADDRESS:PORT";
    if (inet_pton(AF_INET6, buf + 1, a) != 1) return "USERADDR is not ADDRESS:PORT";
    return NULL;
  }
  for (char *p = buf; *p; p++)
    if (!strchr("0123456789.", *p)) return "USERADDR is not ADDRESS:PORT";
  if (inet_pton(AF_INET, buf, a) != 1) return "USERADDR is not ADDRESS:PORT";
  return NULL;
}

/* The length of the command framed at p (2-byte type, 2-byte length, body), or 0 if n bytes don't hold it all. */
static size_t frame_len(const uint8_t *p, size_t n) {
  if (n < 4) return 0;
  size_t len = 4 + (((size_t)p[2] << 8) | p[3]);
  return n < len ? 0 : len;
}

static void consume(inbuf_t *in, size_t off) {
  if (off == 0) return;
  memmove(in->p, in->p + off, in->len - off);
  in->len -= off;
}

static void send_commands(sess_t *s);

/* The transport's side: SAFE_COOKIE with the static cookie, then its commands until DONE. */
static void front_input(sess_t *s) {
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
        if (p[0] != 1) return reject(s, NULL, 0, C_PROTO, "unsupported auth type %d", p[0]);
        off += 1;
        h->fst = F_NONCE;
        break;
      case F_NONCE: {
        if (n < 32) goto more;
        uint8_t out[64];
        random_bytes(out + 32, 32);
        if (!safe_cookie_hash(b->cookie, S2C, p, out + 32, out) || !safe_cookie_hash(b->cookie, C2S, p, out + 32, h->expect))
          return close_with(s, "HMAC failed");
        if (queue_to(s, 0, out, 64) < 0) return close_with(s, "out of memory");
        off += 32;
        h->fst = F_HASH;
        break;
      }
      case F_HASH: {
        if (n < 32) goto more;
        if (CRYPTO_memcmp(p, h->expect, 32) != 0) {
          static const uint8_t fail = 0;
          return reject(s, &fail, 1, C_AUTHFAIL, "wrong client hash (the peer does not have our cookie)");
        }
        static const uint8_t ok = 1;
        if (queue_to(s, 0, &ok, 1) < 0) return close_with(s, "out of memory");
        off += 32;
        h->fst = F_CMDS;
        break;
      }
      default: { /* F_CMDS */
        size_t len = frame_len(p, n);
        if (!len) goto more;
        h->cmdbytes += len;
        if (h->cmdbytes > MAX_COMMAND_BYTES) return reject(s, NULL, 0, C_PROTO, "too many command bytes before DONE");
        int type = (p[0] << 8) | p[1];
        const char *bad = check_command(type, p + 4, len - 4);
        if (bad) return reject(s, NULL, 0, C_PROTO, "bad command: %s", bad);
        if (append(&h->held, &h->heldlen, p, len) < 0) return close_with(s, "out of memory");
        off += len;
        if (type == 0) {
          if (append(&h->early, &h->earlylen, in->p + off, in->len - off) < 0) return close_with(s, "out of memory");
          in->len = 0;
          if (!flush_to(s, 0)) return;
          s->phase = P_BACKEND;
          h->front_done = true;
          spec_done(s);
          spec_count(s->bal, false);
          set_events(s, 0, s->d[1].first_len ? EPOLLOUT : 0);
          if (s->dead) return;
          if (s->fd[1] < 0) return start_backend(s);
          if (h->bst == B_WAIT) send_commands(s);
          return;
        }
      }
    }
  }
more:
  consume(in, off);
  if (h->fst == F_CMDS && h->cmdbytes + in->len > MAX_COMMAND_BYTES) {
    return reject(s, NULL, 0, C_PROTO, "too many command bytes before DONE");
  }
  if (flush_to(s, 0)) update(s);
}

static void relay_start(sess_t *s, const uint8_t *rest, size_t restlen);

/* Our side with the twin: SAFE_COOKIE with its current cookie, the transport's commands, its answer. */
/* The transport's DONE came and the twin proved its cookie: our client hash and the commands. */
static void send_commands(sess_t *s) {
  hs_t *h = s->hs;
  if (queue_to(s, 1, h->chash, 32) < 0 || queue_to(s, 1, h->held, h->heldlen) < 0) return close_with(s, "out of memory");
  h->bst = B_RESULT;
  pthread_mutex_lock(&E.mu);
  int64_t be_ms = s->bal->be_ms;
  pthread_mutex_unlock(&E.mu);
  h->attempt_deadline = be_ms > 0 ? now_ms() + be_ms : 0;
  flush_to(s, 1);
  update(s);
}

static void backend_input(sess_t *s) {
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
          if (n > 255) return attempt_failed(s, "auth type list too long", false, false);
          goto more;
        }
        if (!memchr(p, 1, (size_t)(z - p))) return attempt_failed(s, "twin offers no SAFE_COOKIE auth", false, false);
        off += (size_t)(z - p) + 1;
        uint8_t out[33];
        out[0] = 1;
        random_bytes(h->cnonce, 32);
        memcpy(out + 1, h->cnonce, 32);
        if (queue_to(s, 1, out, 33) < 0) return close_with(s, "out of memory");
        h->bst = B_SHASH;
        break;
      }
      case B_SHASH: {
        if (n < 64) goto more;
        uint8_t want[32];
        if (!safe_cookie_hash(h->cookie, S2C, h->cnonce, p + 32, want) || !safe_cookie_hash(h->cookie, C2S, h->cnonce, p + 32, h->chash))
          return close_with(s, "HMAC failed");
        if (CRYPTO_memcmp(want, p, 32) != 0) return attempt_failed(s, "wrong server hash (the twin has another cookie)", true, false);
        off += 64;
        if (h->front_done) {
          consume(in, off);
          off = 0;
          send_commands(s);
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
        return attempt_failed(s, "twin spoke before our client hash", false, false);
      case B_RESULT:
        if (n < 1) goto more;
        if (p[0] != 1) {
          if (p[0] == 0) return attempt_failed(s, "twin refused our client hash", true, false);
          return attempt_failed(s, "bad auth result from twin", false, false);
        }
        off += 1;
        h->bst = B_REPLY;
        break;
      default: { /* B_REPLY */
        size_t len = frame_len(p, n);
        if (!len) goto more;
        int type = (p[0] << 8) | p[1];
        if (append(&h->reply, &h->replylen, p, len) < 0) return close_with(s, "out of memory");
        h->replyparts++;
        off += len;
        if (type == 0x1000 || type == 0x1001) return relay_start(s, in->p + off, in->len - off);
        if (h->replyparts > 16) return attempt_failed(s, "no OKAY or DENY from twin", false, false);
      }
    }
  }
more:
  consume(in, off);
  flush_to(s, 1);
  update(s);
}

static void relay_start(sess_t *s, const uint8_t *rest, size_t restlen) {
  bal_t *b = s->bal;
  hs_t *h = s->hs;
  backend_t *be = &b->be[s->be];
  /* Tor's answer, unchanged, then what it already sent on; the transport's early bytes to the twin. */
  dir_t *up = &s->d[1], *down = &s->d[0];
  size_t before = up->first_len - up->first_off;
  if (queue_to(s, 0, h->reply, h->replylen) < 0 || queue_to(s, 0, rest, restlen) < 0 ||
      queue_to(s, 1, h->early, h->earlylen) < 0) {
    return close_with(s, "out of memory");
  }
  up->uncounted = before + h->replylen;
  down->uncounted = down->first_len - down->first_off - h->earlylen;
  free_hs(s);
  INC(b->c[C_ESTABLISHED], 1);
  INC(be->c[BC_CURRENT], 1);
  INC(be->c[BC_TOTAL], 1);
  pthread_mutex_lock(&E.mu);
  s->idle_ms = b->idle_ms;
  pthread_mutex_unlock(&E.mu);
  s->phase = P_RELAY;
  s->last_ms = now_ms();
  pump(s, 1);
  if (!s->dead) pump(s, 0);
  update(s);
}

/* ---- events ---- */

static void update(sess_t *s) {
  if (s->dead) return;
  switch (s->phase) {
    case P_RELAY:
      return relay_update(s);
    case P_FRONT:
    case P_BACKEND:
      set_events(s, 0, (s->phase == P_FRONT ? EPOLLIN : 0) | (s->d[1].first_len ? EPOLLOUT : 0));
      if (!s->dead && s->fd[1] >= 0 && s->hs)
        set_events(s, 1, s->hs->bst == B_CONNECT ? EPOLLOUT : EPOLLIN | (s->d[0].first_len ? EPOLLOUT : 0));
      return;
    default: /* P_REJECT */
      if (!s->d[1].first_len && !s->shut_wr) {
        shutdown(s->fd[0], SHUT_WR);
        s->shut_wr = true;
      }
      return set_events(s, 0, EPOLLIN | (s->d[1].first_len ? EPOLLOUT : 0));
  }
}

static int sock_error(int fd) {
  int err = 0;
  socklen_t l = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
  return err ? err : ECONNRESET;
}

/* Reads into the handshake buffer of a side; returns bytes read, 0 on EOF, -errno (or -EAGAIN). */
static ssize_t read_hs(sess_t *s, int side) {
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

static void session_event(sess_t *s, int side, uint32_t ev) {
  if (s->dead) return;
  if (s->phase == P_RELAY) {
    if ((ev & (EPOLLERR | EPOLLHUP)) && !s->hup[side]) {
      /* Failed or shut both ways: nothing more goes to it, but what it sent before is still in its
       * receive queue: read that on (driven by the other side's progress, the socket no longer
       * polled) until EOF, within the linger. */
      int err = (ev & EPOLLERR) ? sock_error(s->fd[side]) : 0;
      unregister(s, side);
      s->hup[side] = true;
      if (err || pending(&s->d[1 - side]) > 0) {
        drop_dir(&s->d[1 - side]);
        if (!s->why) {
          char why[REASON_LEN];
          snprintf(why, sizeof why, "%s: %s", side_name(side), strerror(err ? err : ECONNRESET));
          s->why = strdup(why);
        }
      }
      if (!s->closing) {
        s->rdhup[side] = true;
        s->deadline_ms = now_ms() + LINGER_MS;
      }
      pump(s, side);
      return update(s);
    }
    /* Reading fd[side] (direction side) and writing it (direction 1-side): both may have progressed. */
    pump(s, side);
    if (!s->dead) pump(s, 1 - side);
    if (s->dead) return;
    if ((ev & EPOLLRDHUP) && !s->rdhup[side]) {
      /* The peer half-closed: read what it sent until EOF, but give up after the linger. */
      s->rdhup[side] = true;
      if (!s->closing) s->deadline_ms = now_ms() + LINGER_MS;
    }
    return update(s);
  }
  if (s->phase == P_REJECT) {
    if (side != 0) return;
    if (ev & (EPOLLERR | EPOLLHUP)) return finalize(s, "rejected");
    if ((ev & EPOLLOUT) && !flush_to(s, 0)) return;
    if (ev & EPOLLIN) {
      uint8_t sink[4096];
      ssize_t n = recv(s->fd[0], sink, sizeof sink, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return finalize(s, "rejected");
    }
    return update(s);
  }
  if (side == 0) {
    if (ev & EPOLLERR) {
      if (s->phase == P_FRONT) spec_count(s->bal, true);
      return close_with(s, "transport: %s", strerror(sock_error(s->fd[0])));
    }
    if ((ev & EPOLLOUT) && !flush_to(s, 0)) return;
    if (s->phase == P_FRONT && (ev & EPOLLIN)) {
      ssize_t n = read_hs(s, 0);
      if (n == 0) {
        spec_count(s->bal, true);
        return finalize(s, "transport closed during the handshake");
      }
      if (n == -ENOBUFS) return reject(s, NULL, 0, C_PROTO, "too many command bytes before DONE");
      if (n < 0 && n != -EAGAIN && n != -EINTR) return close_with(s, "transport: %s", strerror((int)-n));
      if (n > 0) return front_input(s);
    } else if (ev & EPOLLHUP) {
      spec_count(s->bal, true);
      return finalize(s, "transport closed during the handshake");
    }
    return update(s);
  }
  /* The twin's socket during the attempt. */
  hs_t *h = s->hs;
  if (h->bst == B_CONNECT) {
    if (ev & (EPOLLERR | EPOLLHUP)) {
      char why[REASON_LEN];
      snprintf(why, sizeof why, "connect: %s", strerror(sock_error(s->fd[1])));
      return attempt_failed(s, why, false, false);
    }
    if (!(ev & EPOLLOUT)) return;
    h->bst = B_TYPES;
    return update(s);
  }
  if (ev & EPOLLERR) {
    /* What the twin sent before the error still counts (its OKAY, then a reset): read it first. */
    int err = sock_error(s->fd[1]);
    uint32_t gen = s->gen[1];
    if (read_hs(s, 1) > 0) {
      backend_input(s);
      /* The attempt ended on those bytes (the next may have the same descriptor): the error was its. */
      if (s->dead || s->phase == P_RELAY || s->gen[1] != gen) return;
    }
    char why[REASON_LEN];
    snprintf(why, sizeof why, "twin: %s before its OKAY", strerror(err));
    return attempt_failed(s, why, false, false);
  }
  if (ev & EPOLLOUT) flush_to(s, 1);
  if (ev & (EPOLLIN | EPOLLHUP)) {
    ssize_t n = read_hs(s, 1);
    if (n == 0 || n == -ENOBUFS) return attempt_failed(s, n == 0 ? "twin closed the connection before its OKAY" : "twin sent too much before its OKAY", false, false);
    if (n < 0 && n != -EAGAIN && n != -EINTR) {
      char why[REASON_LEN];
      snprintf(why, sizeof why, "twin: %s before its OKAY", strerror((int)-n));
      return attempt_failed(s, why, false, false);
    }
    if (n > 0) return backend_input(s);
  }
  update(s);
}

static sess_t *new_session(void) {
  sess_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->fd[0] = s->fd[1] = -1;
  s->be = -1;
  for (int i = 0; i < 2; i++) {
    s->d[i].pipe[0] = s->d[i].pipe[1] = -1;
  }
  return s;
}

/* Gives the session a slot (its id); false when out of memory. Takes E.mu. */
static bool add_slot(sess_t *s) {
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

static void on_accept(bal_t *b) {
  for (int k = 0; k < ACCEPT_BATCH && !b->stopped; k++) {
    int fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
      /* Out of descriptors or memory: a level-triggered listener would spin; rest it for a while
       * (scan() puts it back), leaving the connections in the backlog. */
      post_debug(b, "accept: %s; accepting again in %d ms", strerror(errno), ACCEPT_PAUSE_MS);
      epoll_ctl(E.ep, EPOLL_CTL_DEL, b->lfd, NULL);
      b->accept_paused_until = now_ms() + ACCEPT_PAUSE_MS;
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
    sess_t *s = new_session();
    hs_t *h = s ? calloc(1, sizeof *h) : NULL;
    if (!h || !add_slot(s)) {
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
    s->deadline_ms = hs_ms > 0 ? now_ms() + hs_ms : 0;
    static const uint8_t greeting[2] = {1, 0};
    if (queue_to(s, 0, greeting, 2) < 0) {
      finalize(s, "out of memory");
      continue;
    }
    if (!flush_to(s, 0)) continue;
    update(s);
    if (!s->dead && b->spec_now < SPEC_MAX && now_ms() >= b->spec_paused_until) {
      h->spec = true;
      b->spec_now++;
      start_backend(s);
    }
  }
}

static void do_remove(bal_t *b, int idx) {
  pthread_mutex_lock(&E.mu);
  uint32_t n = E.nslots;
  pthread_mutex_unlock(&E.mu);
  for (uint32_t i = 0; i < n; i++) {
    pthread_mutex_lock(&E.mu);
    sess_t *s = E.slots[i];
    pthread_mutex_unlock(&E.mu);
    if (!s || s->dead || s->bal != b || s->be != idx) continue;
    if (s->phase == P_RELAY) finalize(s, "twin removed");
    else if (s->phase == P_FRONT || s->phase == P_BACKEND) attempt_failed(s, "twin removed", false, true);
  }
  pthread_mutex_lock(&E.mu);
  b->be[idx].used = false;
  b->be[idx].up = false;
  while (b->nbe > 0 && !b->be[b->nbe - 1].used) b->nbe--;
  pthread_mutex_unlock(&E.mu);
}

static void do_stop(bal_t *b) {
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
    if (s && !s->dead && s->bal == b) finalize(s, "balancer stopping");
  }
  /* No session, listener or handle refers to it any more: freed once JS has the DONE (post-batch). */
  pthread_mutex_lock(&E.mu);
  E.bals[b->handle] = NULL;
  pthread_mutex_unlock(&E.mu);
}

static void take_queues(void) {
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
    pump(s, 0);
    if (!s->dead) pump(s, 1);
    update(s);
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
  while (cmds) {
    cmd_t *c = cmds;
    cmds = c->next;
    if (c->kind == CMD_STOP) {
      do_stop(c->bal);
    } else if (c->kind == CMD_REMOVE) {
      do_remove(c->bal, c->idx);
    }
    event_t *ev = c->ev;
    ev->kind = EV_DONE;
    ev->a = c->token;
    if (c->kind == CMD_STOP) {
      ev->free_after = c->bal;
      ev->next = E.stopped;
      E.stopped = ev;
    } else {
      post(ev);
    }
    free(c);
  }
}

static bool relay_expired(const sess_t *s, int64_t now) {
  return ((s->closing || s->rdhup[0] || s->rdhup[1]) && now >= s->deadline_ms) ||
         (!s->closing && s->idle_ms > 0 && now - s->last_ms >= s->idle_ms);
}

/* Deadlines: handshakes, attempts, idle sessions, lingering ones; relay directions waiting for a pipe. */
static void scan(void) {
  static sess_t **due;
  static size_t cap;
  size_t n = 0;
  int64_t now = now_ms();
  pthread_mutex_lock(&E.mu);
  for (int i = 0; i < E.nbals; i++) {
    bal_t *b = E.bals[i];
    if (b && b->accept_paused_until && now >= b->accept_paused_until && b->lfd >= 0 && !b->stopped) {
      b->accept_paused_until = 0;
      struct epoll_event ev = {.events = EPOLLIN, .data.u64 = listener_tag(b)};
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
        if (s->starved[d]) pump(s, d);
      update(s);
    } else if (s->phase == P_RELAY) {
      bool idle = !s->closing && !s->rdhup[0] && !s->rdhup[1];
      if (idle && s->bal) INC(s->bal->c[C_IDLE], 1);
      finalize(s, idle ? "idle" : "linger expired");
    } else if (s->phase == P_REJECT) {
      finalize(s, "rejected");
    } else if (s->deadline_ms > 0 && now >= s->deadline_ms) {
      INC(s->bal->c[C_HSTIMEOUT], 1);
      if (!s->hs->front_done) spec_count(s->bal, true);
      close_with(s, "handshake timed out");
    } else {
      char why[REASON_LEN];
      snprintf(why, sizeof why, "no OKAY within %lld ms", (long long)(s->bal->be_ms));
      attempt_failed(s, why, false, false);
    }
  }
}

static void *worker(void *arg) {
  (void)arg;
  struct epoll_event evs[256];
  void *whom[256];
  int64_t next_scan = now_ms() + SCAN_MS;
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
        take_queues();
      } else if ((uint32_t)(t >> 32) == TAG_LISTENER) {
        if (whom[i]) on_accept(whom[i]);
      } else {
        sess_t *s = whom[i];
        int side = (int)((t >> 31) & 1);
        /* An event of a socket closed earlier in this batch (an attempt that failed) is stale. */
        if (!s || s->dead || (s->gen[side] & GEN_MASK) != (uint32_t)(t & GEN_MASK)) continue;
        session_event(s, side, evs[i].events);
      }
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
    while (E.stopped) {
      event_t *ev = E.stopped;
      E.stopped = ev->next;
      ev->next = NULL;
      post(ev);
    }
  }
  return NULL;
}

/* ---- JS side ---- */

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  event_t *m = data;
  if (env && cb) {
    napi_value argv[5], undef;
    napi_create_int32(env, m->kind, &argv[0]);
    napi_create_double(env, m->a, &argv[1]);
    switch (m->kind) {
      case EV_RELAY_CLOSED:
        napi_create_string_utf8(env, m->text, NAPI_AUTO_LENGTH, &argv[2]);
        napi_create_double(env, m->b, &argv[3]);
        napi_create_double(env, m->c, &argv[4]);
        break;
      case EV_DOWN:
        napi_create_double(env, m->b, &argv[2]);
        napi_create_string_utf8(env, m->text, NAPI_AUTO_LENGTH, &argv[3]);
        napi_get_boolean(env, m->c != 0, &argv[4]);
        break;
      default:
        napi_create_string_utf8(env, m->text, NAPI_AUTO_LENGTH, &argv[2]);
        napi_get_undefined(env, &argv[3]);
        napi_get_undefined(env, &argv[4]);
    }
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, cb, 5, argv, NULL);
  }
  free_event(m);
}

static void cleanup(void *arg) {
  (void)arg;
  if (!E.started) return;
  atomic_store(&E.stop, true);
  uint64_t one = 1;
  (void)!write(E.evfd, &one, sizeof one);
  pthread_join(E.th, NULL);
  E.started = false;
  napi_release_threadsafe_function(E.tsfn, napi_tsfn_abort);
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value make_num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static void wake(void) {
  uint64_t one = 1;
  (void)!write(E.evfd, &one, sizeof one);
}

static napi_value EngineInit(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], name;
  int32_t pipe_size = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (E.started) return make_num(env, 1);
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "engineInit(onEvent, pipeSize)");
    return NULL;
  }
  if (argc >= 2) napi_get_value_int32(env, argv[1], &pipe_size);
  E.pipe_size = pipe_size > 0 ? pipe_size : 65536;
  napi_create_string_utf8(env, "bridgectl-engine", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &E.tsfn) != napi_ok) {
    napi_throw_error(env, NULL, "engineInit: cannot create the threadsafe function");
    return NULL;
  }
  napi_unref_threadsafe_function(env, E.tsfn);
  E.ep = epoll_create1(EPOLL_CLOEXEC);
  E.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_EVENTFD};
  if (E.ep < 0 || E.evfd < 0 || epoll_ctl(E.ep, EPOLL_CTL_ADD, E.evfd, &ev) < 0) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  uint64_t seed = 0;
  while (seed == 0)
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = (uint64_t)now_ms() | 1;
  E.prng = seed;
  pthread_mutex_init(&E.mu, NULL);
  atomic_store(&E.stop, false);
  if (pthread_create(&E.th, NULL, worker, NULL) != 0) {
    napi_throw_error(env, NULL, "engineInit: cannot start the thread");
    return NULL;
  }
  E.started = true;
  napi_add_env_cleanup_hook(env, cleanup, NULL);
  return make_num(env, 1);
}

static bool started(napi_env env) {
  if (!E.started) napi_throw_error(env, NULL, "the native engine is not initialised (engineInit)");
  return E.started;
}

static double get_num(napi_env env, napi_value obj, const char *key, double dflt) {
  napi_value v;
  double d;
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return dflt;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_get_value_double(env, v, &d) != napi_ok) return dflt;
  return d;
}

static bool get_cookie(napi_env env, napi_value v, uint8_t out[32]) {
  bool is = false;
  void *data;
  size_t n;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is) return false;
  napi_get_buffer_info(env, v, &data, &n);
  if (n != 32) return false;
  memcpy(out, data, 32);
  return true;
}

static bal_t *get_bal(napi_env env, napi_value v) {
  int32_t h = -1;
  napi_get_value_int32(env, v, &h);
  bal_t *b = NULL;
  pthread_mutex_lock(&E.mu);
  if (h >= 0 && h < E.nbals) b = E.bals[h];
  pthread_mutex_unlock(&E.mu);
  /* Freed only on this thread (after its stop's DONE), so b stays valid for this call. */
  if (b && b->stop_queued) b = NULL;
  if (!b) napi_throw_error(env, NULL, "no such balancer handle (stopped?)");
  return b;
}

static napi_value EngineCreate(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], v;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!started(env)) return NULL;
  bal_t *b = calloc(1, sizeof *b);
  if (!b) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  b->lfd = -1;
  if (argc < 2 || !get_cookie(env, argv[0], b->cookie)) {
    free(b);
    napi_throw_type_error(env, NULL, "engineCreate(staticCookie: 32-byte Buffer, options)");
    return NULL;
  }
  b->src_first = (uint32_t)get_num(env, argv[1], "srcFirst", 0);
  b->src_size = (uint32_t)get_num(env, argv[1], "srcSize", 0);
  b->no_port = get_num(env, argv[1], "noPort", 1) != 0;
  b->debug = get_num(env, argv[1], "debug", 0) != 0;
  b->hs_ms = (int64_t)get_num(env, argv[1], "handshakeMs", 30000);
  b->be_ms = (int64_t)get_num(env, argv[1], "backendMs", 10000);
  b->idle_ms = (int64_t)get_num(env, argv[1], "idleMs", 600000);
  b->max_sessions = (int64_t)get_num(env, argv[1], "maxSessions", 16384);
  pthread_mutex_lock(&E.mu);
  bal_t **bals = realloc(E.bals, (size_t)(E.nbals + 1) * sizeof *bals);
  if (bals) {
    E.bals = bals;
    b->handle = E.nbals;
    E.bals[E.nbals++] = b;
  }
  pthread_mutex_unlock(&E.mu);
  if (!bals) {
    free(b);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  napi_create_int32(env, b->handle, &v);
  return v;
}

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *len = sizeof *s4;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *len = sizeof *s6;
    return 0;
  }
  return -EINVAL;
}

static bal_t *bal_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, int *idx);

static napi_value EngineListen(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char host[64];
  size_t hl;
  int32_t port = 0, backlog = 4096;
  bal_t *b = bal_args(env, info, 4, argv, NULL);
  if (!b) return NULL;
  if (napi_get_value_string_utf8(env, argv[1], host, sizeof host, &hl) != napi_ok) return make_num(env, -EINVAL);
  napi_get_value_int32(env, argv[2], &port);
  napi_get_value_int32(env, argv[3], &backlog);
  struct sockaddr_storage ss;
  socklen_t sl;
  if (b->lfd >= 0 || b->stopped) return make_num(env, -EALREADY);
  if (parse_addr(host, port, &ss, &sl) < 0) return make_num(env, -EINVAL);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_num(env, -errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, backlog) < 0) {
    int e = errno;
    close(fd);
    return make_num(env, -e);
  }
  struct sockaddr_storage got;
  socklen_t gl = sizeof got;
  getsockname(fd, (struct sockaddr *)&got, &gl);
  int bound = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port : ((struct sockaddr_in6 *)&got)->sin6_port);
  b->lfd = fd;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = listener_tag(b)};
  if (epoll_ctl(E.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
    int e = errno;
    close(fd);
    b->lfd = -1;
    return make_num(env, -e);
  }
  return make_num(env, bound);
}

/* Queues a command for the worker; false (nothing queued) when out of memory. */
static bool queue_cmd(int kind, bal_t *b, int idx, double token) {
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
  wake();
  return true;
}

static napi_value EngineStop(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double token = 0;
  bal_t *b = bal_args(env, info, 2, argv, NULL);
  if (!b) return NULL;
  napi_get_value_double(env, argv[1], &token);
  if (!queue_cmd(CMD_STOP, b, -1, token)) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  b->stop_queued = true;
  return undefined(env);
}

static napi_value EngineLimits(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  double v[4] = {-1, -1, -1, -1};
  bal_t *b = bal_args(env, info, 5, argv, NULL);
  if (!b) return NULL;
  for (int i = 0; i < 4; i++) napi_get_value_double(env, argv[i + 1], &v[i]);
  pthread_mutex_lock(&E.mu);
  if (v[0] >= 0) b->hs_ms = (int64_t)v[0];
  if (v[1] >= 0) b->be_ms = (int64_t)v[1];
  if (v[2] >= 0) b->idle_ms = (int64_t)v[2];
  if (v[3] >= 0) b->max_sessions = (int64_t)v[3];
  pthread_mutex_unlock(&E.mu);
  return undefined(env);
}

static bool get_idx(napi_env env, napi_value v, int *idx) {
  int32_t i = -1;
  napi_get_value_int32(env, v, &i);
  if (i < 0 || i >= MAX_BACKENDS) {
    napi_throw_range_error(env, NULL, "backend index out of range");
    return false;
  }
  *idx = i;
  return true;
}

/* The arguments of a per-balancer call: (handle, [backend index,] ...). Throws and returns NULL if wrong. */
static bal_t *bal_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, int *idx) {
  size_t argc = want;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!started(env)) return NULL;
  if (argc < want) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return NULL;
  }
  bal_t *b = get_bal(env, argv[0]);
  if (b && idx && !get_idx(env, argv[1], idx)) return NULL;
  return b;
}

static napi_value EngineBackendSet(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char host[64];
  size_t hl;
  int32_t port = 0;
  int idx;
  bal_t *b = bal_args(env, info, 4, argv, &idx);
  if (!b) return NULL;
  if (napi_get_value_string_utf8(env, argv[2], host, sizeof host, &hl) != napi_ok) return make_num(env, -EINVAL);
  napi_get_value_int32(env, argv[3], &port);
  struct sockaddr_storage ss;
  socklen_t sl;
  if (parse_addr(host, port, &ss, &sl) < 0) return make_num(env, -EINVAL);
  pthread_mutex_lock(&E.mu);
  backend_t *be = &b->be[idx];
  int ret = 0;
  if (be->used) ret = -EEXIST;
  else {
    memset(be, 0, sizeof *be);
    be->addr = ss;
    be->addrlen = sl;
    be->used = true;
    snprintf(be->reason, sizeof be->reason, "not marked up yet");
    if (idx >= b->nbe) b->nbe = idx + 1;
  }
  pthread_mutex_unlock(&E.mu);
  return make_num(env, ret);
}

static napi_value EngineBackendUp(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint8_t cookie[32];
  int idx;
  bal_t *b = bal_args(env, info, 3, argv, &idx);
  if (!b) return NULL;
  if (!get_cookie(env, argv[2], cookie)) {
    napi_throw_type_error(env, NULL, "a cookie is 32 bytes");
    return NULL;
  }
  pthread_mutex_lock(&E.mu);
  backend_t *be = &b->be[idx];
  if (be->used) {
    memcpy(be->cookie, cookie, 32);
    be->gen++;
    be->up = true;
    be->reason[0] = 0;
  }
  pthread_mutex_unlock(&E.mu);
  return undefined(env);
}

static napi_value EngineBackendDown(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char reason[REASON_LEN];
  size_t rl = 0;
  int idx;
  bal_t *b = bal_args(env, info, 3, argv, &idx);
  if (!b) return NULL;
  if (napi_get_value_string_utf8(env, argv[2], reason, sizeof reason, &rl) != napi_ok) reason[0] = 0;
  bool was = false;
  pthread_mutex_lock(&E.mu);
  backend_t *be = &b->be[idx];
  if (be->used) {
    was = be->up;
    be->up = false;
    snprintf(be->reason, sizeof be->reason, "%s", reason);
  }
  pthread_mutex_unlock(&E.mu);
  napi_value out;
  napi_get_boolean(env, was, &out);
  return out;
}

static napi_value EngineBackendDrain(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool on = true;
  int idx;
  bal_t *b = bal_args(env, info, 3, argv, &idx);
  if (!b) return NULL;
  napi_get_value_bool(env, argv[2], &on);
  pthread_mutex_lock(&E.mu);
  b->be[idx].draining = on;
  pthread_mutex_unlock(&E.mu);
  return undefined(env);
}

static napi_value EngineBackendRemove(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double token = 0;
  int idx;
  bal_t *b = bal_args(env, info, 3, argv, &idx);
  if (!b) return NULL;
  napi_get_value_double(env, argv[2], &token);
  pthread_mutex_lock(&E.mu);
  b->be[idx].draining = true;
  pthread_mutex_unlock(&E.mu);
  if (!queue_cmd(CMD_REMOVE, b, idx, token)) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  return undefined(env);
}

/*
 * Counters: C_N listener counters, then for each backend slot below nbe: used, up, draining,
 * BC_N counters. The down reason of backend i: engineBackendReason(h, i).
 */
static napi_value EngineStats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ab, out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!started(env)) return NULL;
  bal_t *b = argc >= 1 ? get_bal(env, argv[0]) : NULL;
  if (!b) return NULL;
  /* Allocated outside the lock (for every slot a balancer can have, 21 kB), filled under it. */
  size_t per = 3 + BC_N, max = C_N + (size_t)MAX_BACKENDS * per;
  double *d;
  if (napi_create_arraybuffer(env, max * sizeof(double), (void **)&d, &ab) != napi_ok) {
    napi_throw_error(env, NULL, "engineStats: out of memory");
    return NULL;
  }
  pthread_mutex_lock(&E.mu);
  int nbe = b->nbe;
  size_t n = C_N + (size_t)nbe * per;
  for (int i = 0; i < C_N; i++) d[i] = (double)GET(b->c[i]);
  for (int i = 0; i < nbe; i++) {
    backend_t *be = &b->be[i];
    double *x = d + C_N + (size_t)i * per;
    x[0] = be->used;
    x[1] = be->up;
    x[2] = be->draining;
    for (int k = 0; k < BC_N; k++) x[3 + k] = (double)GET(be->c[k]);
  }
  pthread_mutex_unlock(&E.mu);
  if (napi_create_typedarray(env, napi_float64_array, n, ab, 0, &out) != napi_ok) return NULL;
  return out;
}

static napi_value EngineBackendReason(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  int idx;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!started(env)) return NULL;
  bal_t *b = argc >= 2 ? get_bal(env, argv[0]) : NULL;
  if (!b || !get_idx(env, argv[1], &idx)) return NULL;
  char reason[REASON_LEN];
  pthread_mutex_lock(&E.mu);
  snprintf(reason, sizeof reason, "%s", b->be[idx].reason);
  pthread_mutex_unlock(&E.mu);
  napi_create_string_utf8(env, reason, NAPI_AUTO_LENGTH, &out);
  return out;
}

/* ---- the relay for sockets connected elsewhere ---- */

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

static napi_value RelayAdd(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t fda, fdb;
  double idle = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!E.started || argc < 3 || napi_get_value_int32(env, argv[0], &fda) != napi_ok ||
      napi_get_value_int32(env, argv[1], &fdb) != napi_ok || napi_get_value_double(env, argv[2], &idle) != napi_ok) {
    napi_throw_type_error(env, NULL, "relayAdd(fdA, fdB, idleMs, firstAtoB?, firstBtoA?) after engineInit");
    return NULL;
  }
  sess_t *s = new_session();
  if (!s) return make_num(env, -ENOMEM);
  s->phase = P_RELAY;
  int e = 0;
  if (argc >= 4) e = copy_buffer(env, argv[3], &s->d[0].first, &s->d[0].first_len);
  if (!e && argc >= 5) e = copy_buffer(env, argv[4], &s->d[1].first, &s->d[1].first_len);
  s->fd[0] = e ? -1 : fcntl(fda, F_DUPFD_CLOEXEC, 3);
  if (!e && s->fd[0] < 0) e = -errno;
  s->fd[1] = e ? -1 : fcntl(fdb, F_DUPFD_CLOEXEC, 3);
  if (!e && s->fd[1] < 0) e = -errno;
  s->idle_ms = (int64_t)idle;
  s->last_ms = now_ms();
  if (!e && !add_slot(s)) e = -ENOMEM;
  if (e) {
    for (int i = 0; i < 2; i++) {
      if (s->fd[i] >= 0) close(s->fd[i]);
      free(s->d[i].first);
    }
    free(s);
    return make_num(env, e);
  }
  double id = s->id;
  pthread_mutex_lock(&E.mu);
  if (E.addq_tail) E.addq_tail->next = s;
  else E.addq = s;
  E.addq_tail = s;
  pthread_mutex_unlock(&E.mu);
  wake();
  return make_num(env, id);
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
  wake();
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
    a = (double)GET(E.slots[slot]->d[0].bytes);
    b = (double)GET(E.slots[slot]->d[1].bytes);
  }
  pthread_mutex_unlock(&E.mu);
  if (a < 0) return undefined(env);
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, make_num(env, a));
  napi_set_element(env, arr, 1, make_num(env, b));
  return arr;
}

/* Whether pending events keep Node alive: counted, so the relay and each listening balancer can ask. */
static napi_value EngineRef(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool on = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!E.started || argc < 1) return undefined(env);
  napi_get_value_bool(env, argv[0], &on);
  if (on) {
    if (E.refs++ == 0) napi_ref_threadsafe_function(env, E.tsfn);
  } else if (E.refs > 0 && --E.refs == 0) {
    napi_unref_threadsafe_function(env, E.tsfn);
  }
  return undefined(env);
}

static napi_value RelayStats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_create_object(env, &out);
  pthread_mutex_lock(&E.mu);
  double live = E.live;
  pthread_mutex_unlock(&E.mu);
  /* npool belongs to the worker; a racy read is fine for a gauge. */
  napi_set_named_property(env, out, "sessions", make_num(env, live));
  napi_set_named_property(env, out, "pipes", make_num(env, (double)GET(E.pipes)));
  napi_set_named_property(env, out, "pooledPipes", make_num(env, (double)E.npool));
  return out;
}

void engine_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"engineInit", NULL, EngineInit, NULL, NULL, NULL, napi_default, NULL},
      {"engineCreate", NULL, EngineCreate, NULL, NULL, NULL, napi_default, NULL},
      {"engineListen", NULL, EngineListen, NULL, NULL, NULL, napi_default, NULL},
      {"engineStop", NULL, EngineStop, NULL, NULL, NULL, napi_default, NULL},
      {"engineLimits", NULL, EngineLimits, NULL, NULL, NULL, napi_default, NULL},
      {"engineBackendSet", NULL, EngineBackendSet, NULL, NULL, NULL, napi_default, NULL},
      {"engineBackendUp", NULL, EngineBackendUp, NULL, NULL, NULL, napi_default, NULL},
      {"engineBackendDown", NULL, EngineBackendDown, NULL, NULL, NULL, napi_default, NULL},
      {"engineBackendDrain", NULL, EngineBackendDrain, NULL, NULL, NULL, napi_default, NULL},
      {"engineBackendRemove", NULL, EngineBackendRemove, NULL, NULL, NULL, napi_default, NULL},
      {"engineBackendReason", NULL, EngineBackendReason, NULL, NULL, NULL, napi_default, NULL},
      {"engineStats", NULL, EngineStats, NULL, NULL, NULL, napi_default, NULL},
      {"engineRef", NULL, EngineRef, NULL, NULL, NULL, napi_default, NULL},
      {"relayAdd", NULL, RelayAdd, NULL, NULL, NULL, napi_default, NULL},
      {"relayClose", NULL, RelayClose, NULL, NULL, NULL, napi_default, NULL},
      {"relayBytes", NULL, RelayBytes, NULL, NULL, NULL, napi_default, NULL},
      {"relayStats", NULL, RelayStats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
