#!/usr/bin/env bash
# The development install (operators: use the Debian package, `npm run package`, docs/package.md).
# Installs bridgectl as a systemd service from this checkout. Starts nothing: it creates the "bridgectl" system user,
# installs the unit, the sysctl.d and modules-load.d files and (if there is none yet) an example
# config, then prints the next steps.
#
#   deploy/install.sh                 # onto this system, as root
#   DESTDIR=/tmp/img deploy/install.sh  # into a directory tree (no user created, no daemon-reload)
#
# The unit runs /usr/bin/bridgectl. If bridgectl is installed elsewhere (BRIDGECTL_BIN, `command -v
# bridgectl`, or this checkout's dist/src/cli/main.js), /usr/bin/bridgectl becomes a symlink to it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
USER_NAME=bridgectl
if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (or set DESTDIR to install into a directory)" >&2
  exit 1
fi

say() { printf '%s\n' "$*"; }

# The user and group the service runs as (no login, no home of its own).
if [ -z "$DESTDIR" ]; then
  if ! getent passwd "$USER_NAME" >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/bridgectl --no-create-home \
      --shell /usr/sbin/nologin --comment "bridgectl Tor bridge" "$USER_NAME"
    say "created system user $USER_NAME"
  fi
  owner=$USER_NAME
else
  owner=
fi

# Files that are ours: install, keeping a backup of a different existing one (file~).
install_file() { # MODE SRC DEST
  local dest="$DESTDIR$3"
  if [ -e "$dest" ] && cmp -s "$2" "$dest"; then
    say "unchanged $3"
    return
  fi
  install -D -m "$1" -b "$2" "$dest"
  say "installed $3"
}
install_file 0644 "$here/bridgectl.service" /etc/systemd/system/bridgectl.service
install_file 0644 "$here/sysctl.d/60-bridgectl.conf" /etc/sysctl.d/60-bridgectl.conf
install_file 0644 "$here/modules-load.d/bridgectl.conf" /etc/modules-load.d/bridgectl.conf

# The config directory (root-owned, readable by the service's group) and an example config.
install -d -m 0750 "$DESTDIR/etc/bridgectl"
[ -n "$owner" ] && chgrp "$owner" "$DESTDIR/etc/bridgectl"
if [ ! -e "$DESTDIR/etc/bridgectl/bridgectl.yaml" ]; then
  install -m 0640 "$here/bridgectl.example.yaml" "$DESTDIR/etc/bridgectl/bridgectl.yaml"
  [ -n "$owner" ] && chgrp "$owner" "$DESTDIR/etc/bridgectl/bridgectl.yaml"
  say "installed an example /etc/bridgectl/bridgectl.yaml (edit it)"
else
  say "kept the existing /etc/bridgectl/bridgectl.yaml"
fi

# The state directory (the unit's StateDirectory=), made now so that `bridgectl init` can run.
install -d -m 0700 "$DESTDIR/var/lib/bridgectl"
[ -n "$owner" ] && chown "$owner:$owner" "$DESTDIR/var/lib/bridgectl"

# /usr/bin/bridgectl, as the unit's ExecStart expects.
if [ ! -e "$DESTDIR/usr/bin/bridgectl" ] && [ ! -L "$DESTDIR/usr/bin/bridgectl" ]; then
  bin=${BRIDGECTL_BIN:-}
  [ -n "$bin" ] || bin=$(command -v bridgectl 2>/dev/null || true)
  [ -n "$bin" ] || { [ -f "$here/../dist/src/cli/main.js" ] && bin=$(cd "$here/.." && pwd)/dist/src/cli/main.js; } || true
  if [ -n "$bin" ]; then
    install -d "$DESTDIR/usr/bin"
    ln -s "$bin" "$DESTDIR/usr/bin/bridgectl"
    say "linked /usr/bin/bridgectl -> $bin"
    case "$(readlink -f "$bin" 2>/dev/null || echo "$bin")" in
      /tmp/* | /var/tmp/* | /dev/shm/*)
        # The unit has PrivateTmp=yes: it would see an empty /tmp and fail with 203/EXEC.
        rm -f "$DESTDIR/usr/bin/bridgectl"
        say "install.sh: refusing to link /usr/bin/bridgectl to $bin: the unit (PrivateTmp=yes) cannot see /tmp; move the checkout (e.g. to /opt/bridgectl) or install the Debian package" >&2
        exit 1 ;;
      /home/* | /root/* | /run/user/*)
        say "warning: the unit has ProtectHome=yes and cannot run a program under $bin; move the checkout (e.g. to /opt/bridgectl) or install the Debian package" ;;
    esac
  else
    say "warning: no bridgectl found; build this checkout (bash scripts/install-deps.sh) or install the Debian package"
  fi
fi

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi

cat <<'NEXT'

Next steps (nothing has been started):
  1. edit /etc/bridgectl/bridgectl.yaml
  2. modprobe nf_conntrack && sysctl --system          # the kernel settings, now (they also apply at boot)
  3. bridgectl init                                     # as root: the files go to the bridgectl user
  4. bridgectl doctor
  5. systemctl enable --now bridgectl
NEXT
