#pragma once
/*
 * Shared types of the native engine. One layer per file, each with its prefix:
 *   extor.c      extor_  Extended ORPort framing and validation, the SAFE_COOKIE hashes (pure)
 *   handshake.c  hs_     both handshakes as state machines: bytes in, bytes to send out (pure)
 *   session.c    sess_   a session's handshake phase: the sockets fed to the state machines, the
 *                        twin attempts (choice, early start, replay on the next twin), rejects
 *   relay.c      relay_  pipes, pump, close propagation
 *   loop.c       loop_   the worker: accept, dispatch, deadlines, commands, session slots, events
 *   napi.c       js_     the N-API bindings (engine*, engineLayout)
 *
 * The balancer's native data plane: one worker thread, one epoll instance, for every session of
 * every balancer in the process. It accepts transports' Extended ORPort connections, runs both
 * SAFE_COOKIE handshakes (the transport's with the static cookie, ours with the chosen twin's
 * current cookie), replays the transport's commands on the next twin when one fails before its
 * OKAY, and then relays both ways with splice(2) through a pipe, so the payload never enters user
 * space. JS (native-balancer.ts) owns the configuration: twins, their cookies and up/down state
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
 * Close: EOF on either side stops reading both ways, flushes what is already read (for at most
 * LINGER_MS) and closes both sockets; an error on one side drops what was going to it, flushes what
 * was coming from it to the other side (tor's OKAY, say), then closes; no byte either way for
 * idleMs closes both.
 *
 *   engineInit(onEvent, pipeSize)                               once per process; events below
 *   engineCreate(cookie, {srcFirst, srcSize, noPort, handshakeMs, twinMs, idleMs, maxSessions, debug, leastConnections}): handle
 *   engineListen(h, host, port, backlog): port, or -errno
 *   engineStop(h, token)                                         closes the listener and every session; event DONE
 *   engineLimits(h, handshakeMs, twinMs, idleMs, maxSessions)
 *   engineTwinSet(h, idx, host, port): 0 or -errno               a new twin in slot idx (down, counters zero)
 *   engineTwinUp(h, idx, cookie) / engineTwinDown(h, idx, reason) / engineTwinDrain(h, idx, on)
 *   engineTwinRemove(h, idx, token)                              ends its sessions, frees the slot; event DONE
 *   engineTwinReason(h, idx): why twin idx is down
 *   engineStats(h): Float64Array                                 listener counters, then per twin slot
 *   engineLayout(): {listener, twin}                             the names of engineStats's entries
 *   engineRef(on)                                                whether pending events keep Node alive
 * Events: (2, h, idx, reason, authFailed) twin marked down; (3, token) command done;
 *         (4, h, message) debug line (when the balancer asked for them).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
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

#include "handshake.h"

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
#define MAX_TWINS 256
#define MAX_TWIN_REPLY_BYTES (64 * 1024 + 4096) /* what a twin may send before its OKAY */
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100
/* Early twin attempts (see handshakes_t): at most this many at once, and none for SPEC_PAUSE_MS once bad
 * transport handshakes (failed auth, broken protocol, timed out, or left mid-handshake) reach
 * SPEC_BAD_MIN and a tenth of those that ended over the last one to two seconds: a flood of bad
 * peers never costs the twins a connection, while a health probe or a client that gives up now and
 * then does not turn the feature off. */
#define SPEC_MAX 1024
#define SPEC_PAUSE_MS 10000
#define SPEC_WINDOW_MS 1000
#define SPEC_BAD_MIN 16

/* Session phases: the transport's handshake (an attempt on a twin may run alongside), waiting for
 * the twin (the transport sent DONE), relaying, rejected (answered, then dropped). */
enum { P_FRONT, P_TWIN, P_RELAY, P_REJECT };
/* Event kinds, as JS receives them (native.ts). */
enum { EV_DOWN = 2, EV_DONE = 3, EV_DEBUG = 4 };

/* Listener counters, in the order engineStats returns them, with the names engineLayout gives JS. */
#define LISTENER_COUNTERS(X) \
  X(C_ACCEPTED, "accepted") X(C_CURRENT, "current") X(C_ESTABLISHED, "established") X(C_AUTHFAIL, "authFailures") \
  X(C_PROTO, "protocolErrors") X(C_HSTIMEOUT, "handshakeTimeouts") X(C_IDLE, "idleTimeouts") \
  X(C_OVERCAP, "rejectedOverCap") X(C_NOTWIN, "noTwin") X(C_REPLAYS, "replays") X(C_LOCAL, "localErrors")
/* Per twin slot: these flags, then the twin counters. */
#define TWIN_FLAGS(X) X(TF_USED, "used") X(TF_UP, "up") X(TF_DRAINING, "draining")
#define TWIN_COUNTERS(X) \
  X(TC_CURRENT, "current") X(TC_TOTAL, "total") X(TC_TO, "bytesToTwin") X(TC_FROM, "bytesFromTwin") \
  X(TC_AUTHFAIL, "authFailures") X(TC_CONNFAIL, "connectFailures")
#define AS_ENUM(id, name) id,
enum { LISTENER_COUNTERS(AS_ENUM) C_N };
enum { TWIN_FLAGS(AS_ENUM) TF_N };
enum { TWIN_COUNTERS(AS_ENUM) TC_N };

/* epoll data: a session's (slot, side, descriptor generation), a listener's handle, or the eventfd. */
#define TAG_EVENTFD UINT64_MAX
#define TAG_LISTENER 0xFFFFFFFEull
#define GEN_MASK 0x7fffffffu

/*
 * Fault injection, in a test build only (-DENGINE_FAULTS; test/balancer-faults.test.ts builds one):
 * ENGINE_FAULT=NAME:N makes the Nth call at that point fail, as it would under memory pressure:
 *   queue         buf_append (what the engine queues to a socket, a session's early bytes)
 *   stats-buffer  napi_create_arraybuffer in engineStats
 * The test build also makes the engine's lock error-checking, and LOCK_NOT_HELD() aborts where the
 * lock must not be held (engineStats allocates outside it). Both are nothing in the real build.
 */
enum { FAULT_QUEUE, FAULT_STATS_BUFFER, FAULT_N };
#ifdef ENGINE_FAULTS
bool fault_now(int point);
void lock_not_held(void);
#define FAULT(point) fault_now(point)
#define LOCK_NOT_HELD() lock_not_held()
#else
#define FAULT(point) false
#define LOCK_NOT_HELD() ((void)0)
#endif

#define INC(x, n) atomic_fetch_add_explicit(&(x), (int64_t)(n), memory_order_relaxed)
#define GET(x) atomic_load_explicit(&(x), memory_order_relaxed)

typedef struct sess sess_t;
typedef struct bal bal_t;


typedef struct {
  int pipe[2];
  size_t inpipe;
  int cap; /* the pipe's capacity; E.pipe_size once growing it failed (not tried again) */
  uint8_t *first; /* bytes to write before anything spliced */
  size_t first_len, first_off;
  size_t uncounted; /* leading bytes not counted as relayed (tor's OKAY) */
  _Atomic int64_t bytes;
} dir_t;

typedef struct {
  bool used, up, draining;
  int64_t attempts; /* under E.mu: attempts on it under way (least connections counts them) */
  uint32_t gen; /* bumped by every markUp: an attempt with an older cookie says nothing about it */
  struct sockaddr_storage addr;
  socklen_t addrlen;
  uint8_t cookie[32];
  char reason[REASON_LEN];
  _Atomic int64_t c[TC_N];
} twin_t;

struct bal {
  int handle;
  int lfd;
  bool stopped;
  bool stop_queued; /* JS thread only: engineStop was called; the handle is unusable from then on */
  uint8_t cookie[32];
  uint32_t src_first, src_size;
  bool no_port, debug;
  bool least_conn; /* choice of twin: least connections (else round-robin) */
  /* Under E.mu: */
  int64_t hs_ms, twin_ms, idle_ms;
  int64_t max_sessions;
  uint32_t rr;
  /* Worker only: */
  int64_t spec_paused_until;
  int spec_now;
  int64_t accept_paused_until; /* out of descriptors: the listener is out of epoll until then */
  int64_t win_start;
  uint32_t win_good[2], win_bad[2]; /* [0] this window, [1] the one before */
  int ntwins; /* slots in use are below this */
  twin_t twins[MAX_TWINS];
  _Atomic int64_t c[C_N];
};

typedef struct {
  uint8_t *p;
  size_t len, cap;
} inbuf_t;

/*
 * Both handshakes of a session (session.c): the state machines and what the sockets brought them.
 * The attempt on a twin starts when the transport connects (connect, auth types, our nonce, its
 * server hash all overlap with the transport's own handshake) and waits in HS_CLIENT_WAIT for the
 * transport's DONE before it sends our client hash with the commands.
 */
typedef struct {
  hs_server_t srv;     /* the transport's handshake; its held commands go to each twin tried */
  hs_client_t cli;     /* the attempt on s->twin (while fd[1] is open) */
  bool connecting;     /* the attempt's connect() has not completed */
  bool front_done;     /* the transport sent DONE: srv.held is complete */
  bool spec;           /* counted in spec_now: an attempt started before DONE */
  uint32_t twin_gen;   /* the twin's generation when this attempt took its cookie */
  uint64_t tried[MAX_TWINS / 64];
  int ntried;
  inbuf_t in[2]; /* what came from fd[0] (transport) and fd[1] (twin), not used yet */
  uint8_t *early; /* what the transport sent after DONE */
  size_t earlylen;
  int64_t attempt_deadline;
} handshakes_t;

struct sess {
  bal_t *bal;
  int phase;
  int fd[2]; /* [0] transport, [1] twin */
  uint32_t events[2];
  bool registered[2];
  dir_t d[2]; /* d[0]: fd[0] -> fd[1]; d[1]: fd[1] -> fd[0] */
  handshakes_t *hs;
  int twin; /* twin slot of the attempt or the relay, -1 none */
  uint32_t slot;
  double id;
  int64_t idle_ms, last_ms, deadline_ms;
  bool closing, dead, counted, shut_wr;
  bool gone[2];  /* nothing more goes to or comes from this socket */
  bool hup[2];   /* relay: the socket hung up or failed: not polled, nothing goes to it, read until EOF */
  bool attempting; /* an attempt on s->twin is under way (counted in its attempts) */
  bool starved[2]; /* relay: direction d waits for a pipe (out of descriptors); loop_scan() retries */
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

/* The engine: one per process. */
struct engine {
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
  int pool_cap[POOL_MAX];
  int npool;
  _Atomic int64_t pipes;
  sess_t *deadlist;
  event_t *stopped; /* stop commands done this batch: posted (and their balancers freed) after it */
  atomic_bool stop;
  int pipe_size; /* what a pipe grows to once a read fills it (F_SETPIPE_SZ) */
  uint8_t rnd[4096];
  size_t rndpos;
  uint64_t prng;
  napi_threadsafe_function tsfn;
  int refs;
};
extern struct engine E;

/* loop.c: the event loop (accept, dispatch, deadlines, worker), sessions, events to JS */
int64_t loop_now_ms(void);
uint64_t loop_sess_tag(const sess_t *s, int i);
uint64_t loop_listener_tag(const bal_t *b);
size_t relay_pending(const dir_t *x);
void loop_free_event(event_t *ev);
void loop_post(event_t *ev);
void loop_debug(bal_t *b, const char *fmt, ...);
void loop_random(uint8_t *out, size_t n);
uint32_t loop_prng32(void);
int buf_append(uint8_t **buf, size_t *len, const uint8_t *p, size_t n);
void loop_unregister(sess_t *s, int i);
void loop_finalize(sess_t *s, const char *reason);
void loop_set_events(sess_t *s, int i, uint32_t want);
void loop_update(sess_t *s);
int loop_sock_error(int fd);
void loop_session_event(sess_t *s, int side, uint32_t ev);
sess_t *loop_new_session(void);
bool loop_add_slot(sess_t *s);
void loop_accept(bal_t *b);
void loop_remove_twin(bal_t *b, int idx);
void loop_stop(bal_t *b);
void loop_take_queues(void);
void loop_scan(void);
void *loop_worker(void *arg);
void loop_wake(void);
bool loop_queue_cmd(int kind, bal_t *b, int idx, double token);

/* relay.c: pipes, pump, close propagation */
int relay_get_pipe(dir_t *x);
void relay_put_pipe(dir_t *x);
void relay_drop_dir(dir_t *x);
int relay_queue(sess_t *s, int side, const uint8_t *p, size_t n);
twin_t *relay_twin(sess_t *s);
void relay_account(sess_t *s, int d, size_t n);
const char *loop_side_name(int side);
void relay_side_failed(sess_t *s, int side, int err);
void relay_eof(sess_t *s, int d);
void relay_pump(sess_t *s, int d);
void relay_update(sess_t *s);
void relay_start(sess_t *s, const uint8_t *rest, size_t restlen);
bool relay_expired(const sess_t *s, int64_t now);

/* session.c: a session's handshake phase, the twin attempts */
void sess_spec_done(sess_t *s);
void sess_spec_count(bal_t *b, bool bad);
void sess_free_hs(sess_t *s);
void sess_close(sess_t *s, const char *fmt, ...);
bool sess_flush(sess_t *s, int side);
void sess_close_attempt(sess_t *s);
void sess_attempt_over(sess_t *s);
void sess_reject(sess_t *s, const uint8_t *bytes, size_t n, int counter, const char *fmt, ...);
bool sess_tried(handshakes_t *h, int i);
void sess_attempt_failed(sess_t *s, const char *reason, bool auth, bool local);
bool sess_local_errno(int e);
void sess_start_attempt(sess_t *s);
void sess_begin(sess_t *s);
void sess_front_input(sess_t *s);
void sess_twin_input(sess_t *s);
ssize_t sess_read(sess_t *s, int side);
void sess_event(sess_t *s, int side, uint32_t ev);

/* napi.c: the N-API bindings */
void js_call(napi_env env, napi_value cb, void *context, void *data);
void js_cleanup(void *arg);
napi_value js_undefined(napi_env env);
napi_value js_num(napi_env env, double v);
bool js_started(napi_env env);

#include "register.h"
