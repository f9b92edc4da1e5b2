/* Test-only relay bindings: the relay for sockets connected elsewhere (splice.ts and its tests).
 * Deleting this file, its line in binding.gyp and its registration in napi.c removes them. */
#include "engine.h"

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
  sess_t *s = loop_new_session();
  if (!s) return js_num(env, -ENOMEM);
  s->phase = P_RELAY;
  int e = 0;
  if (argc >= 4) e = copy_buffer(env, argv[3], &s->d[0].first, &s->d[0].first_len);
  if (!e && argc >= 5) e = copy_buffer(env, argv[4], &s->d[1].first, &s->d[1].first_len);
  s->fd[0] = e ? -1 : fcntl(fda, F_DUPFD_CLOEXEC, 3);
  if (!e && s->fd[0] < 0) e = -errno;
  s->fd[1] = e ? -1 : fcntl(fdb, F_DUPFD_CLOEXEC, 3);
  if (!e && s->fd[1] < 0) e = -errno;
  s->idle_ms = (int64_t)idle;
  s->last_ms = loop_now_ms();
  if (!e && !loop_add_slot(s)) e = -ENOMEM;
  if (e) {
    for (int i = 0; i < 2; i++) {
      if (s->fd[i] >= 0) close(s->fd[i]);
      free(s->d[i].first);
    }
    free(s);
    return js_num(env, e);
  }
  double id = s->id;
  pthread_mutex_lock(&E.mu);
  if (E.addq_tail) E.addq_tail->next = s;
  else E.addq = s;
  E.addq_tail = s;
  pthread_mutex_unlock(&E.mu);
  loop_wake();
  return js_num(env, id);
}

static napi_value RelayClose(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  double id;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!E.started || argc < 1 || napi_get_value_double(env, argv[0], &id) != napi_ok) return js_undefined(env);
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
  loop_wake();
  return js_undefined(env);
}

static napi_value RelayBytes(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], arr;
  double id, a = -1, b = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!E.started || argc < 1 || napi_get_value_double(env, argv[0], &id) != napi_ok) return js_undefined(env);
  uint32_t slot = (uint32_t)((uint64_t)id % MAX_SLOTS);
  pthread_mutex_lock(&E.mu);
  if (slot < E.nslots && E.slots[slot] && E.slots[slot]->id == id) {
    a = (double)GET(E.slots[slot]->d[0].bytes);
    b = (double)GET(E.slots[slot]->d[1].bytes);
  }
  pthread_mutex_unlock(&E.mu);
  if (a < 0) return js_undefined(env);
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, js_num(env, a));
  napi_set_element(env, arr, 1, js_num(env, b));
  return arr;
}

static napi_value RelayStats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_create_object(env, &out);
  pthread_mutex_lock(&E.mu);
  double live = E.live;
  pthread_mutex_unlock(&E.mu);
  /* npool belongs to the worker; a racy read is fine for a gauge. */
  napi_set_named_property(env, out, "sessions", js_num(env, live));
  napi_set_named_property(env, out, "pipes", js_num(env, (double)GET(E.pipes)));
  napi_set_named_property(env, out, "pooledPipes", js_num(env, (double)E.npool));
  return out;
}

void test_relay_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"relayAdd", NULL, RelayAdd, NULL, NULL, NULL, napi_default, NULL},
      {"relayClose", NULL, RelayClose, NULL, NULL, NULL, napi_default, NULL},
      {"relayBytes", NULL, RelayBytes, NULL, NULL, NULL, napi_default, NULL},
      {"relayStats", NULL, RelayStats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
