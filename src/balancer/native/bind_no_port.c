/*
 * The addon's entry point: registers the native engine's functions (napi.c; the engine's layers
 * are listed in engine.h). The addon keeps its first name, bind_no_port: the engine's twin
 * attempts bind their source address with IP_BIND_ADDRESS_NO_PORT (session.c).
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include "register.h"

static napi_value Init(napi_env env, napi_value exports) {
  engine_register(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
