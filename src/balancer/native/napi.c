/* The N-API bindings: JS owns the configuration (twins, cookies, up/down, limits) and reads the counters. */
#include "engine.h"

static bal_t *bal_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, int *idx);

void js_call(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  event_t *m = data;
  if (env && cb) {
    napi_value argv[5], undef;
    napi_create_int32(env, m->kind, &argv[0]);
    napi_create_double(env, m->a, &argv[1]);
    switch (m->kind) {
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
  loop_free_event(m);
}

void js_cleanup(void *arg) {
  (void)arg;
  if (!E.started) return;
  atomic_store(&E.stop, true);
  uint64_t one = 1;
  (void)!write(E.evfd, &one, sizeof one);
  pthread_join(E.th, NULL);
  E.started = false;
  napi_release_threadsafe_function(E.tsfn, napi_tsfn_abort);
}

napi_value js_undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

napi_value js_num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static napi_value EngineInit(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], name;
  int32_t pipe_size = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (E.started) return js_num(env, 1);
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "engineInit(onEvent, pipeSize)");
    return NULL;
  }
  if (argc >= 2) napi_get_value_int32(env, argv[1], &pipe_size);
  E.pipe_size = pipe_size > 0 ? pipe_size : 65536;
  napi_create_string_utf8(env, "bridgectl-engine", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, js_call, &E.tsfn) != napi_ok) {
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
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = (uint64_t)loop_now_ms() | 1;
  E.prng = seed;
#ifdef ENGINE_FAULTS
  pthread_mutexattr_t attr; /* error-checking: LOCK_NOT_HELD() can tell who holds it */
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_init(&E.mu, &attr);
#else
  pthread_mutex_init(&E.mu, NULL);
#endif
  atomic_store(&E.stop, false);
  if (pthread_create(&E.th, NULL, loop_worker, NULL) != 0) {
    napi_throw_error(env, NULL, "engineInit: cannot start the thread");
    return NULL;
  }
  E.started = true;
  napi_add_env_cleanup_hook(env, js_cleanup, NULL);
  return js_num(env, 1);
}

bool js_started(napi_env env) {
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
  if (!js_started(env)) return NULL;
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
  b->least_conn = get_num(env, argv[1], "leastConnections", 1) != 0;
  b->hs_ms = (int64_t)get_num(env, argv[1], "handshakeMs", 30000);
  b->twin_ms = (int64_t)get_num(env, argv[1], "twinMs", 10000);
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


static napi_value EngineListen(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char host[64];
  size_t hl;
  int32_t port = 0, backlog = 4096;
  bal_t *b = bal_args(env, info, 4, argv, NULL);
  if (!b) return NULL;
  if (napi_get_value_string_utf8(env, argv[1], host, sizeof host, &hl) != napi_ok) return js_num(env, -EINVAL);
  napi_get_value_int32(env, argv[2], &port);
  napi_get_value_int32(env, argv[3], &backlog);
  struct sockaddr_storage ss;
  socklen_t sl;
  if (b->lfd >= 0 || b->stopped) return js_num(env, -EALREADY);
  if (parse_addr(host, port, &ss, &sl) < 0) return js_num(env, -EINVAL);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return js_num(env, -errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, backlog) < 0) {
    int e = errno;
    close(fd);
    return js_num(env, -e);
  }
  struct sockaddr_storage got;
  socklen_t gl = sizeof got;
  getsockname(fd, (struct sockaddr *)&got, &gl);
  int bound = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port : ((struct sockaddr_in6 *)&got)->sin6_port);
  b->lfd = fd;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = loop_listener_tag(b)};
  if (epoll_ctl(E.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
    int e = errno;
    close(fd);
    b->lfd = -1;
    return js_num(env, -e);
  }
  return js_num(env, bound);
}

static napi_value EngineStop(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double token = 0;
  bal_t *b = bal_args(env, info, 2, argv, NULL);
  if (!b) return NULL;
  napi_get_value_double(env, argv[1], &token);
  if (!loop_queue_cmd(CMD_STOP, b, -1, token)) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  b->stop_queued = true;
  return js_undefined(env);
}

static napi_value EngineLimits(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  double v[4] = {-1, -1, -1, -1};
  bal_t *b = bal_args(env, info, 5, argv, NULL);
  if (!b) return NULL;
  for (int i = 0; i < 4; i++) napi_get_value_double(env, argv[i + 1], &v[i]);
  pthread_mutex_lock(&E.mu);
  if (v[0] >= 0) b->hs_ms = (int64_t)v[0];
  if (v[1] >= 0) b->twin_ms = (int64_t)v[1];
  if (v[2] >= 0) b->idle_ms = (int64_t)v[2];
  if (v[3] >= 0) b->max_sessions = (int64_t)v[3];
  pthread_mutex_unlock(&E.mu);
  return js_undefined(env);
}

static bool get_idx(napi_env env, napi_value v, int *idx) {
  int32_t i = -1;
  napi_get_value_int32(env, v, &i);
  if (i < 0 || i >= MAX_TWINS) {
    napi_throw_range_error(env, NULL, "twin index out of range");
    return false;
  }
  *idx = i;
  return true;
}

/* The arguments of a per-balancer call: (handle, [twin index,] ...). Throws and returns NULL if wrong. */
static bal_t *bal_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, int *idx) {
  size_t argc = want;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!js_started(env)) return NULL;
  if (argc < want) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return NULL;
  }
  bal_t *b = get_bal(env, argv[0]);
  if (b && idx && !get_idx(env, argv[1], idx)) return NULL;
  return b;
}

static napi_value EngineTwinSet(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char host[64];
  size_t hl;
  int32_t port = 0;
  int idx;
  bal_t *b = bal_args(env, info, 4, argv, &idx);
  if (!b) return NULL;
  if (napi_get_value_string_utf8(env, argv[2], host, sizeof host, &hl) != napi_ok) return js_num(env, -EINVAL);
  napi_get_value_int32(env, argv[3], &port);
  struct sockaddr_storage ss;
  socklen_t sl;
  if (parse_addr(host, port, &ss, &sl) < 0) return js_num(env, -EINVAL);
  pthread_mutex_lock(&E.mu);
  twin_t *tw = &b->twins[idx];
  int ret = 0;
  if (tw->used) ret = -EEXIST;
  else {
    memset(tw, 0, sizeof *tw);
    tw->addr = ss;
    tw->addrlen = sl;
    tw->used = true;
    snprintf(tw->reason, sizeof tw->reason, "not marked up yet");
    if (idx >= b->ntwins) b->ntwins = idx + 1;
  }
  pthread_mutex_unlock(&E.mu);
  return js_num(env, ret);
}

static napi_value EngineTwinUp(napi_env env, napi_callback_info info) {
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
  twin_t *tw = &b->twins[idx];
  if (tw->used) {
    memcpy(tw->cookie, cookie, 32);
    tw->gen++;
    tw->up = true;
    tw->reason[0] = 0;
  }
  pthread_mutex_unlock(&E.mu);
  return js_undefined(env);
}

static napi_value EngineTwinDown(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char reason[REASON_LEN];
  size_t rl = 0;
  int idx;
  bal_t *b = bal_args(env, info, 3, argv, &idx);
  if (!b) return NULL;
  if (napi_get_value_string_utf8(env, argv[2], reason, sizeof reason, &rl) != napi_ok) reason[0] = 0;
  bool was = false;
  pthread_mutex_lock(&E.mu);
  twin_t *tw = &b->twins[idx];
  if (tw->used) {
    was = tw->up;
    tw->up = false;
    snprintf(tw->reason, sizeof tw->reason, "%s", reason);
  }
  pthread_mutex_unlock(&E.mu);
  napi_value out;
  napi_get_boolean(env, was, &out);
  return out;
}

static napi_value EngineTwinDrain(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool on = true;
  int idx;
  bal_t *b = bal_args(env, info, 3, argv, &idx);
  if (!b) return NULL;
  napi_get_value_bool(env, argv[2], &on);
  pthread_mutex_lock(&E.mu);
  b->twins[idx].draining = on;
  pthread_mutex_unlock(&E.mu);
  return js_undefined(env);
}

static napi_value EngineTwinRemove(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double token = 0;
  int idx;
  bal_t *b = bal_args(env, info, 3, argv, &idx);
  if (!b) return NULL;
  napi_get_value_double(env, argv[2], &token);
  pthread_mutex_lock(&E.mu);
  b->twins[idx].draining = true;
  pthread_mutex_unlock(&E.mu);
  if (!loop_queue_cmd(CMD_REMOVE, b, idx, token)) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  return js_undefined(env);
}

/*
 * Counters: C_N listener counters, then for each twin slot below ntwins: used, up, draining,
 * TC_N counters. The down reason of twin i: engineTwinReason(h, i).
 */
static napi_value EngineStats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ab, out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!js_started(env)) return NULL;
  bal_t *b = argc >= 1 ? get_bal(env, argv[0]) : NULL;
  if (!b) return NULL;
  /* Allocated outside the lock (for every slot a balancer can have, 21 kB), filled under it. */
  size_t per = TF_N + TC_N, max = C_N + (size_t)MAX_TWINS * per;
  double *d;
  LOCK_NOT_HELD();
  if (FAULT(FAULT_STATS_BUFFER) || napi_create_arraybuffer(env, max * sizeof(double), (void **)&d, &ab) != napi_ok) {
    napi_throw_error(env, NULL, "engineStats: out of memory");
    return NULL;
  }
  pthread_mutex_lock(&E.mu);
  int ntwins = b->ntwins;
  size_t n = C_N + (size_t)ntwins * per;
  for (int i = 0; i < C_N; i++) d[i] = (double)GET(b->c[i]);
  for (int i = 0; i < ntwins; i++) {
    twin_t *tw = &b->twins[i];
    double *x = d + C_N + (size_t)i * per;
    x[TF_USED] = tw->used;
    x[TF_UP] = tw->up;
    x[TF_DRAINING] = tw->draining;
    for (int k = 0; k < TC_N; k++) x[TF_N + k] = (double)GET(tw->c[k]);
  }
  pthread_mutex_unlock(&E.mu);
  if (napi_create_typedarray(env, napi_float64_array, n, ab, 0, &out) != napi_ok) return NULL;
  return out;
}

static napi_value EngineTwinReason(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  int idx;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!js_started(env)) return NULL;
  bal_t *b = argc >= 2 ? get_bal(env, argv[0]) : NULL;
  if (!b || !get_idx(env, argv[1], &idx)) return NULL;
  char reason[REASON_LEN];
  pthread_mutex_lock(&E.mu);
  snprintf(reason, sizeof reason, "%s", b->twins[idx].reason);
  pthread_mutex_unlock(&E.mu);
  napi_create_string_utf8(env, reason, NAPI_AUTO_LENGTH, &out);
  return out;
}


/* Whether pending events keep Node alive: counted, so the relay and each listening balancer can ask. */
static napi_value EngineRef(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool on = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!E.started || argc < 1) return js_undefined(env);
  napi_get_value_bool(env, argv[0], &on);
  if (on) {
    if (E.refs++ == 0) napi_ref_threadsafe_function(env, E.tsfn);
  } else if (E.refs > 0 && --E.refs == 0) {
    napi_unref_threadsafe_function(env, E.tsfn);
  }
  return js_undefined(env);
}

static napi_value names(napi_env env, const char *const *list, size_t n) {
  napi_value arr;
  napi_create_array_with_length(env, n, &arr);
  for (size_t i = 0; i < n; i++) {
    napi_value v;
    napi_create_string_utf8(env, list[i], NAPI_AUTO_LENGTH, &v);
    napi_set_element(env, arr, (uint32_t)i, v);
  }
  return arr;
}

#define AS_NAME(id, name) name,
static const char *const LISTENER_NAMES[] = {LISTENER_COUNTERS(AS_NAME)};
static const char *const TWIN_NAMES[] = {TWIN_FLAGS(AS_NAME) TWIN_COUNTERS(AS_NAME)};

/*
 * engineStats's layout: {listener: names, twin: names per twin slot (flags, then counters)}, and
 * the kinds of the events passed to onEvent: {down, done, debug}.
 */
static napi_value EngineLayout(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "listener", names(env, LISTENER_NAMES, C_N));
  napi_set_named_property(env, out, "twin", names(env, TWIN_NAMES, TF_N + TC_N));
  napi_value events;
  napi_create_object(env, &events);
  napi_set_named_property(env, events, "down", js_num(env, EV_DOWN));
  napi_set_named_property(env, events, "done", js_num(env, EV_DONE));
  napi_set_named_property(env, events, "debug", js_num(env, EV_DEBUG));
  napi_set_named_property(env, out, "events", events);
  return out;
}

void engine_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"engineInit", NULL, EngineInit, NULL, NULL, NULL, napi_default, NULL},
      {"engineCreate", NULL, EngineCreate, NULL, NULL, NULL, napi_default, NULL},
      {"engineListen", NULL, EngineListen, NULL, NULL, NULL, napi_default, NULL},
      {"engineStop", NULL, EngineStop, NULL, NULL, NULL, napi_default, NULL},
      {"engineLimits", NULL, EngineLimits, NULL, NULL, NULL, napi_default, NULL},
      {"engineTwinSet", NULL, EngineTwinSet, NULL, NULL, NULL, napi_default, NULL},
      {"engineTwinUp", NULL, EngineTwinUp, NULL, NULL, NULL, napi_default, NULL},
      {"engineTwinDown", NULL, EngineTwinDown, NULL, NULL, NULL, napi_default, NULL},
      {"engineTwinDrain", NULL, EngineTwinDrain, NULL, NULL, NULL, napi_default, NULL},
      {"engineTwinRemove", NULL, EngineTwinRemove, NULL, NULL, NULL, napi_default, NULL},
      {"engineTwinReason", NULL, EngineTwinReason, NULL, NULL, NULL, napi_default, NULL},
      {"engineStats", NULL, EngineStats, NULL, NULL, NULL, napi_default, NULL},
      {"engineRef", NULL, EngineRef, NULL, NULL, NULL, napi_default, NULL},
      {"engineLayout", NULL, EngineLayout, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
