/* The splice(2) relay (splice_relay.c), registered on the addon's exports by bind_no_port.c's Init. */
#ifndef BRIDGECTL_SPLICE_RELAY_H
#define BRIDGECTL_SPLICE_RELAY_H
#include <node_api.h>
void splice_relay_register(napi_env env, napi_value exports);
#endif
