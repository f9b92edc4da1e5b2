#!/usr/bin/env bash
# Runs a command inside a fresh network namespace that has only loopback, so that no tor started
# by it can reach the public Tor network or any address off this machine. Needs root.
set -euo pipefail
if [ "${BRIDGECTL_IN_NETNS:-}" != 1 ]; then
  if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
  export BRIDGECTL_IN_NETNS=1
  exec unshare --net -- "$0" "$@"
fi
ip link set lo up
# Refuse if anything but loopback is here (the lab code checks again before starting tor).
if [ "$(awk -F: 'NR>2 {gsub(/ /,"",$1); print $1}' /proc/net/dev)" != lo ] || [ -n "$(ip -4 route show)" ] || ip -6 route show | grep -qv ' dev lo '; then
  echo "netns.sh: this namespace has a route out; refusing" >&2
  exit 1
fi
exec "$@"
