#!/bin/sh
exec /usr/bin/node /usr/lib/bridgectl/dist/src/cli/main.js "$@"
