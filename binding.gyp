{
  "targets": [
    {
      "target_name": "bind_no_port",
      "sources": ["src/balancer/native/bind_no_port.c", "src/balancer/native/engine.c"],
      "libraries": ["-lpthread"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
