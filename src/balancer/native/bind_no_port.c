/*
 * A tiny Node-API addon: creates a TCP socket with IP_BIND_ADDRESS_NO_PORT set and binds it to a
 * source address (port 0), so that the kernel picks the source port only at connect(), by the
 * whole 4-tuple, instead of reserving one of the ephemeral ports for the address at bind().
 * Node cannot setsockopt, and it binds before it connects; the socket made here is handed to
 * net.Socket({ fd }) and connected by Node as usual. Linux only.
 *
 *   openBound(address: string): number   fd, or -errno
 *   bindAddressNoPort(fd: number): number 1 or 0 (the option's value), or -errno   (for tests)
 *
 * The same addon carries the native engine (engine.h: accept, both handshakes, splice relay).
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "register.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static napi_value make_int(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

static napi_value OpenBound(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char addr[INET6_ADDRSTRLEN + 1];
  size_t len = 0;
  struct sockaddr_in sin;
  struct sockaddr_in6 sin6;
  struct sockaddr *sa;
  socklen_t salen;
  int family, fd, one = 1;

  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], addr, sizeof addr, &len) != napi_ok || len >= sizeof addr - 1) {
    napi_throw_type_error(env, NULL, "openBound(address: string)");
    return NULL;
  }
  memset(&sin, 0, sizeof sin);
  memset(&sin6, 0, sizeof sin6);
  if (inet_pton(AF_INET, addr, &sin.sin_addr) == 1) {
    family = AF_INET;
    sin.sin_family = AF_INET;
    sa = (struct sockaddr *)&sin;
    salen = sizeof sin;
  } else if (inet_pton(AF_INET6, addr, &sin6.sin6_addr) == 1) {
    family = AF_INET6;
    sin6.sin6_family = AF_INET6;
    sa = (struct sockaddr *)&sin6;
    salen = sizeof sin6;
  } else {
    return make_int(env, -EINVAL);
  }
  fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_int(env, -errno);
  /* Level IPPROTO_IP works for IPv6 sockets too: the kernel reads the flag from inet_sock. */
  if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0 || bind(fd, sa, salen) < 0) {
    int e = errno;
    close(fd);
    return make_int(env, -e);
  }
  return make_int(env, fd);
}

static napi_value BindAddressNoPort(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd, v = 0;
  socklen_t vl = sizeof v;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "bindAddressNoPort(fd: number)");
    return NULL;
  }
  if (getsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &v, &vl) < 0) return make_int(env, -errno);
  return make_int(env, v ? 1 : 0);
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"openBound", NULL, OpenBound, NULL, NULL, NULL, napi_default, NULL},
      {"bindAddressNoPort", NULL, BindAddressNoPort, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  engine_register(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
