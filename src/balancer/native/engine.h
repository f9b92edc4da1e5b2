#pragma once
#include <node_api.h>
/* Registers the native engine's functions (engine.c) on the addon's exports. */
void engine_register(napi_env env, napi_value exports);
