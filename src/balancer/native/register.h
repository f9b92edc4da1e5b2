#pragma once
#include <node_api.h>
/* Registers the native engine's functions on the addon's exports (napi.c). */
void engine_register(napi_env env, napi_value exports);
