#!/usr/bin/env bash
# Publishes CacheHost as one NativeAOT executable for linux-x64 (PublishAot in the project: no runtime, no
# extraction, starts in milliseconds; README "Native binary") and builds a .deb with dpkg-deb only (no
# debhelper). Usage: packaging/build-deb.sh [OUTDIR]   (env: VERSION, SKIP_PUBLISH=1)
# DEB_COMPRESSION=zstd|gzip|xz (default xz, readable by every dpkg; zstd is much faster to build).
# Layout (docs/systemd.md "Packaging"):
#   /usr/lib/cachehost/cachehost (+ native libraries beside it)   the program
#   /usr/bin/{cachehost,dc_server,dc_client,dc_snoop,dc_test,daemonproxy} -> ../lib/cachehost/cachehost
#   /etc/cachehost/appsettings.json (conffile)                    default configuration
#   /usr/lib/systemd/system/cachehost.{service,socket}, /usr/lib/sysusers.d, /usr/lib/tmpfiles.d
#   /usr/share/man/man1/cachehost.1.gz (+ drop-in name links)      man page made from --help
#   /usr/share/doc/cachehost/{systemd.md,examples/}
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/artifacts}" && cd "${1:-$root/artifacts}" && pwd)
version=${VERSION:-0.1.0}
publish=$out/publish
stage=$out/deb-root
dropins=(dc_server dc_client dc_snoop dc_test daemonproxy)

if [ "${SKIP_PUBLISH:-0}" != 1 ]; then
  rm -rf "$publish"
  dotnet publish "$root/src/CacheHost/CacheHost.csproj" -c Release -r linux-x64 \
    -p:DebugType=none -p:GenerateDocumentationFile=false -o "$publish" >&2
fi

rm -rf "$stage"
install -d "$stage/DEBIAN" "$stage/usr/lib/cachehost" "$stage/usr/bin" "$stage/etc/cachehost" \
  "$stage/usr/lib/systemd/system" "$stage/usr/lib/sysusers.d" "$stage/usr/lib/tmpfiles.d" \
  "$stage/usr/share/man/man1" "$stage/usr/share/doc/cachehost/examples"

install -m 0755 "$publish/cachehost" "$stage/usr/lib/cachehost/cachehost"
for lib in "$publish"/*.so; do
  [ -e "$lib" ] && install -m 0644 "$lib" "$stage/usr/lib/cachehost/"
done
ln -s ../lib/cachehost/cachehost "$stage/usr/bin/cachehost"
for name in "${dropins[@]}"; do
  ln -s ../lib/cachehost/cachehost "$stage/usr/bin/$name"
done

install -m 0640 "$root/deploy/appsettings.json" "$stage/etc/cachehost/appsettings.json"
install -m 0644 "$root/deploy/cachehost.service" "$root/deploy/cachehost.socket" "$stage/usr/lib/systemd/system/"
install -m 0644 "$root/deploy/cachehost.sysusers.conf" "$stage/usr/lib/sysusers.d/cachehost.conf"
install -m 0644 "$root/deploy/cachehost.tmpfiles.conf" "$stage/usr/lib/tmpfiles.d/cachehost.conf"
install -m 0644 "$root/deploy/examples/"*.json "$stage/usr/share/doc/cachehost/examples/"
install -m 0644 "$root/docs/systemd.md" "$stage/usr/share/doc/cachehost/systemd.md"

# Man page: the program's own --help, preformatted, so it never disagrees with the binary.
help=$("$publish/cachehost" --help)
{
  echo ".TH CACHEHOST 1 \"$(date -u +%Y-%m-%d)\" \"cachehost $version\" \"User Commands\""
  echo ".SH NAME"
  echo "cachehost, dc_server, dc_client, dc_snoop, dc_test, daemonproxy \\- session cache, proxy and process supervisor daemon"
  echo ".SH SYNOPSIS"
  echo ".B cachehost"
  echo "[run|SUBCOMMAND] [--Key=Value ...]"
  echo ".SH DESCRIPTION"
  echo ".nf"
  printf '%s\n' "$help" | sed -e 's/\\/\\\\/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\&'/"
  echo ".fi"
  echo ".SH FILES"
  echo "/etc/cachehost/appsettings.json, /run/cachehost/control.sock, /usr/share/doc/cachehost/systemd.md"
  echo ".SH SEE ALSO"
  echo "systemctl(1), journalctl(1)"
} | gzip -9n > "$stage/usr/share/man/man1/cachehost.1.gz"
for name in "${dropins[@]}"; do
  ln -s cachehost.1.gz "$stage/usr/share/man/man1/$name.1.gz"
done

installed_size=$(du -sk "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: cachehost
Version: $version
Architecture: amd64
Maintainer: CacheHost maintainers <cachehost@localhost>
Installed-Size: $installed_size
Depends: libc6 (>= 2.31), libgcc-s1, libstdc++6, zlib1g
Section: net
Priority: optional
Description: SSL session cache, client proxy and process supervisor (distcache/daemonproxy compatible)
 One self-contained .NET daemon that replaces distcache (dc_server, dc_client,
 dc_snoop, dc_test), daemonproxy and Net::Clacks, wire compatible with them.
 Runs as a Type=notify systemd service with journald logging, socket
 activation and a TSV control socket.
CONTROL
echo "/etc/cachehost/appsettings.json" > "$stage/DEBIAN/conffiles"

cat > "$stage/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers cachehost.conf
  elif ! getent passwd cachehost >/dev/null; then
    adduser --system --group --home /var/lib/cachehost --no-create-home cachehost
  fi
  chgrp cachehost /etc/cachehost/appsettings.json || true
  if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create cachehost.conf || true
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable cachehost.service >/dev/null || true
    systemctl restart cachehost.service || true
  fi
fi
SCRIPT
cat > "$stage/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop cachehost.service cachehost.socket || true
  systemctl disable cachehost.service cachehost.socket >/dev/null || true
fi
SCRIPT
cat > "$stage/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
SCRIPT
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

deb="$out/cachehost_${version}_amd64.deb"
dpkg-deb --root-owner-group "-Z${DEB_COMPRESSION:-xz}" --build "$stage" "$deb" >&2
echo "$deb"
