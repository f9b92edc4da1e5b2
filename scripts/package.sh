#!/usr/bin/env bash
# Builds bridgectl_<version>_<arch>.deb with dpkg-deb and checks it with lintian (errors fail).
# Prints the .deb's path as its last line. Contents: the built app, its production dependencies
# (npm ci --omit=dev in a staging directory, which also builds both addons: the native engine and
# sd-notify), /usr/bin/bridgectl, the unit, sysctl.d, modules-load.d, sysusers.d, tmpfiles.d and
# the example config as a conffile. See docs/package.md.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
out=${PACKAGE_OUT:-$repo/dist/deb}
for cmd in dpkg-deb:dpkg lintian:lintian dpkg-shlibdeps:dpkg-dev; do
  command -v "${cmd%%:*}" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${cmd##*:}" >/dev/null
done
npm run --silent build >&2
version=$(node -p 'require("./package.json").version')
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
lib=$root/usr/lib/bridgectl
pk=packaging/debian

# The app and the sources the addon is built from.
install -d "$lib/dist" "$lib/src/balancer/native"
cp -r dist/src "$lib/dist/src"
find "$lib/dist" -name '*.map' -delete # maps point at TypeScript the package does not ship
cp -r templates "$lib/templates"
cp package.json package-lock.json binding.gyp "$lib/"
cp src/balancer/native/*.c src/balancer/native/*.h "$lib/src/balancer/native/"
(cd "$lib" && npm ci --omit=dev --prefer-offline --no-audit --no-fund --loglevel=error >&2)
for addon in "$lib/build/Release/bind_no_port.node" "$lib/node_modules/sd-notify/build/Release/notify.node"; do
  [ -f "$addon" ] || { echo "package.sh: $addon was not built" >&2; exit 1; }
done
# Keep the built addons, not the build trees and sources.
for b in "$lib/build" "$lib/node_modules/sd-notify/build"; do
  mv "$b/Release" "$stage/Release"
  rm -rf "$b"
  install -d "$b/Release"
  mv "$stage"/Release/*.node "$b/Release/"
  rm -rf "$stage/Release"
done
rm -rf "$lib/src" "$lib/binding.gyp" "$lib/package-lock.json" "$lib/node_modules/.package-lock.json"
find "$lib/node_modules" -depth \( -name test -o -name tests -o -name examples -o -name '*.md' -o -name '*.html' -o -name '.*' -o -name '*.map' -o -name '*.sh' \) -not -path "$lib/node_modules" -exec rm -rf {} + 2>/dev/null || true
find "$lib" -type f -exec chmod 0644 {} +
find "$lib" -type d -exec chmod 0755 {} +
# Only what is run as a program stays executable.
chmod 0755 "$lib/dist/src/cli/main.js"
find "$lib/node_modules" -type f -exec sh -c 'head -c2 "$1" | grep -q "#!"' _ {} \; -exec chmod 0755 {} +
strip --strip-unneeded "$lib/build/Release/bind_no_port.node" "$lib/node_modules/sd-notify/build/Release/notify.node"

install -D -m 0755 $pk/bridgectl.sh "$root/usr/bin/bridgectl"
install -D -m 0644 deploy/bridgectl.service "$root/lib/systemd/system/bridgectl.service"
install -D -m 0644 deploy/sysctl.d/60-bridgectl.conf "$root/usr/lib/sysctl.d/60-bridgectl.conf"
install -D -m 0644 deploy/modules-load.d/bridgectl.conf "$root/usr/lib/modules-load.d/bridgectl.conf"
install -D -m 0644 $pk/sysusers.conf "$root/usr/lib/sysusers.d/bridgectl.conf"
install -D -m 0644 $pk/tmpfiles.conf "$root/usr/lib/tmpfiles.d/bridgectl.conf"
install -D -m 0644 deploy/bridgectl.example.yaml "$root/etc/bridgectl/bridgectl.yaml"
# Node.js addons take their symbols from the node binary; sd-notify's needs nothing from libc.
install -D -m 0644 $pk/lintian-overrides "$root/usr/share/lintian/overrides/bridgectl"
install -D -m 0644 $pk/copyright "$root/usr/share/doc/bridgectl/copyright"
printf 'bridgectl (%s) unstable; urgency=medium\n\n  * Release %s (see README.md).\n\n -- bridgectl developers <bridgectl@example.org>  %s\n' \
  "$version" "$version" "$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")" | gzip -9n >"$root/usr/share/doc/bridgectl/changelog.gz"
chmod 0644 "$root/usr/share/doc/bridgectl/changelog.gz"

# Libraries the addons link against (libc, libsystemd), as dpkg-shlibdeps finds them.
install -d "$stage/debian"
printf 'Source: bridgectl\n\nPackage: bridgectl\nArchitecture: any\n' >"$stage/debian/control"
shlibs=$(cd "$stage" && dpkg-shlibdeps -O -e"$lib/build/Release/bind_no_port.node" -e"$lib/node_modules/sd-notify/build/Release/notify.node" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')

install -d -m 0755 "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: bridgectl
Version: $version
Architecture: $arch
Maintainer: bridgectl developers <bridgectl@example.org>
Installed-Size: $size
Depends: nodejs (>= 20.5), tor, tor-geoipdb, util-linux (>= 2.38), systemd | systemd-standalone-sysusers | systemd-sysusers${shlibs:+, $shlibs}
Recommends: obfs4proxy
Section: net
Priority: optional
Homepage: https://example.org/bridgectl
Description: Tor bridge on all CPU cores
 bridgectl runs one Tor bridge as N tor processes ("router twins") that
 share one identity and pinned onion keys, behind a native Extended ORPort
 balancer, with the pluggable transport (obfs4, snowflake, webtunnel) in
 front. It ships a hardened systemd unit with readiness, watchdog and
 reload support, and checks the kernel and limits with "bridgectl doctor".
CONTROL
echo /etc/bridgectl/bridgectl.yaml >"$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$pk/$s" "$root/DEBIAN/$s"; done

mkdir -p "$out"
deb=$out/bridgectl_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
# Errors fail the build; warnings are shown.
lintian --fail-on error --suppress-tags no-manual-page "$deb" >&2
echo "$deb"
