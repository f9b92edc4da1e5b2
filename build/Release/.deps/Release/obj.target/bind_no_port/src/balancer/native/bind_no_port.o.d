cmd_Release/obj.target/bind_no_port/src/balancer/native/bind_no_port.o := cc -o Release/obj.target/bind_no_port/src/balancer/native/bind_no_port.o ../src/balancer/native/bind_no_port.c '-DNODE_GYP_MODULE_NAME=bind_no_port' '-DUSING_UV_SHARED=1' '-DUSING_V8_SHARED=1' '-DV8_DEPRECATION_WARNINGS=1' '-D_GLIBCXX_USE_CXX11_ABI=1' '-D_FILE_OFFSET_BITS=64' '-D_LARGEFILE_SOURCE' '-D__STDC_FORMAT_MACROS' '-DOPENSSL_NO_PINSHARED' '-DOPENSSL_THREADS' '-DBUILDING_NODE_EXTENSION' -I/usr/include/node -I/usr/src -I/usr/deps/openssl/config -I/usr/deps/openssl/openssl/include -I/usr/deps/uv/include -I/usr/deps/zlib -I/usr/deps/v8/include  -fPIC -pthread -Wall -Wextra -Wno-unused-parameter -Wall -Wextra -O2 -m64 -O3 -fno-omit-frame-pointer  -MMD -MF ./Release/.deps/Release/obj.target/bind_no_port/src/balancer/native/bind_no_port.o.d.raw   -c
Release/obj.target/bind_no_port/src/balancer/native/bind_no_port.o: \
 ../src/balancer/native/bind_no_port.c /usr/include/node/node_api.h \
 /usr/include/node/js_native_api.h \
 /usr/include/node/js_native_api_types.h \
 /usr/include/node/node_api_types.h
../src/balancer/native/bind_no_port.c:
/usr/include/node/node_api.h:
/usr/include/node/js_native_api.h:
/usr/include/node/js_native_api_types.h:
/usr/include/node/node_api_types.h:
