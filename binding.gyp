{
  "targets": [
    {
      "target_name": "bind_no_port",
      "sources": [
        "src/balancer/native/bind_no_port.c",
        "src/balancer/native/extor.c",
        "src/balancer/native/handshake.c",
        "src/balancer/native/session.c",
        "src/balancer/native/relay.c",
        "src/balancer/native/loop.c",
        "src/balancer/native/napi.c"
      ],
      "libraries": ["-lpthread"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-fvisibility=hidden"]
    }
  ]
}
