{
  "targets": [
    {
      "target_name": "bind_no_port",
      "sources": ["src/balancer/native/bind_no_port.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
