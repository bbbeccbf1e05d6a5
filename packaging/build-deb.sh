#!/usr/bin/env bash
# Publishes CacheHost as one NativeAOT executable for linux-x64 (PublishAot in the project: no runtime, no
# extraction, starts in milliseconds; README "Native binary") and builds a .deb with dpkg-deb only (no
# debhelper). Usage: packaging/build-deb.sh [OUTDIR]   (env: VERSION, SKIP_PUBLISH=1)
# DEB_COMPRESSION=zstd|gzip|xz (default xz, readable by every dpkg; zstd is much faster to build).
# VERSION defaults to the top entry of packaging/debian/changelog.
# Layout (docs/systemd.md "Packaging"):
#   /usr/lib/cachehost/cachehost (+ native libraries beside it)   the program
#   /usr/bin/{cachehost,dc_server,dc_client,dc_snoop,dc_test,daemonproxy,clacks-server} -> ../lib/cachehost/cachehost
#   /etc/cachehost/appsettings.json (conffile)                    default configuration
#   /usr/lib/systemd/system/cachehost.{service,socket}, /usr/lib/sysusers.d, /usr/lib/tmpfiles.d
#   /usr/share/man/man1/cachehost.1.gz (+ drop-in name links)      man page: --help texts + README's key table
#   /usr/share/doc/cachehost/{copyright,changelog.Debian.gz,systemd.md,examples/}
#   DEBIAN/{control,conffiles,md5sums,postinst,prerm,postrm}       scripts from packaging/debian/
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/artifacts}" && cd "${1:-$root/artifacts}" && pwd)
changelog_version=$(sed -n '1s/^cachehost (\([^)]*\)).*/\1/p' "$root/packaging/debian/changelog")
version=${VERSION:-$changelog_version}
publish=$out/publish
stage=$out/deb-root
dropins=(dc_server dc_client dc_snoop dc_test daemonproxy clacks-server)

if [ "${SKIP_PUBLISH:-0}" != 1 ]; then
  rm -rf "$publish"
  dotnet publish "$root/src/CacheHost/CacheHost.csproj" -c Release -r linux-x64 \
    -p:DebugType=none -p:GenerateDocumentationFile=false \
    -p:Version="$version" -o "$publish" >&2
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

# Man page: the program's own --help texts (so it never disagrees with the binary) and README's table of
# configuration keys.
bin=$publish/cachehost
roff() { sed -e 's/\\/\\e/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\&'/"; }
{
  echo ".TH CACHEHOST 1 \"$(sed -n 's/^ -- .*>  //p' "$root/packaging/debian/changelog" | head -1 | cut -d' ' -f2-4)\" \"cachehost $version\" \"User Commands\""
  echo ".SH NAME"
  echo "cachehost, $(IFS=,; echo "${dropins[*]}" | sed 's/,/, /g') \\- SSL session cache, client proxy, snoop, load tool, process supervisor and Clacks server"
  echo ".SH SYNOPSIS"
  echo ".B cachehost"
  echo "[\\fBrun\\fR] [\\fB\\-\\-Key=Value\\fR ...]"
  echo ".br"
  echo ".B cachehost"
  echo "\\fISUBCOMMAND\\fR [\\fIOPTIONS\\fR]"
  echo ".br"
  echo ".B cachehost \\-\\-version"
  echo ".SH DESCRIPTION"
  echo "Without a subcommand, cachehost runs the roles listed in \\fBCacheHost:Roles\\fR of its configuration"
  echo "as one daemon (under systemd: \\fBsystemctl start cachehost\\fR). The subcommands and the drop-in program"
  echo "names run the tools CacheHost replaces with their original command lines."
  echo ".PP"
  echo ".nf"
  "$bin" --help | roff
  echo ".fi"
  echo ".SH COMMANDS"
  for sub in run server client snoop test ctl clacks daemonproxy; do
    echo ".SS cachehost $sub"
    echo ".nf"
    "$bin" "$sub" --help | roff
    echo ".fi"
  done
  echo ".SH CONFIGURATION"
  echo "Sources, later ones winning: /usr/lib/cachehost/appsettings.json (not shipped), the file named by"
  echo "\\fBCACHEHOST_CONFIG\\fR (the unit sets /etc/cachehost/appsettings.json), environment variables"
  echo "(\\fBCacheHost__CacheServer__Capacity=100000\\fR) and \\fB\\-\\-Key=Value\\fR arguments. A single string is"
  echo "accepted wherever a list of addresses is. Keys:"
  # | `key` | default | meaning |  ->  .TP / key / default and meaning
  awk '/^## Configuration keys/ { on = 1; next } /^## / { on = 0 } on && /^\| `/' "$root/README.md" |
    while IFS='|' read -r _ key default meaning _; do
      key=$(echo "$key" | sed -e 's/^ *//' -e 's/ *$//' -e 's/`//g')
      default=$(echo "$default" | sed -e 's/^ *//' -e 's/ *$//' -e 's/`//g')
      meaning=$(echo "$meaning" | sed -e 's/^ *//' -e 's/ *$//' -e 's/`//g' -e 's/\[\([^]]*\)\]([^)]*)/\1/g')
      echo ".TP"
      echo "$key" | roff | sed 's/^/.B /'
      printf '%s\n' "Default: $default. $meaning" | roff
    done
  echo ".SH EXIT STATUS"
  echo "0 on a clean stop (SIGTERM, SIGINT; SIGUSR1/SIGUSR2 with \\-killable); 1 on a usage error, an invalid"
  echo "configuration, a failed bind, a failed \\-user or \\-pidfile, or a role that crashed. Errors are one line"
  echo "on standard error naming the key or file."
  echo ".SH FILES"
  echo ".TP"
  echo ".B /etc/cachehost/appsettings.json"
  echo "the configuration of the cachehost service (a conffile)"
  echo ".TP"
  echo ".B /run/cachehost/control.sock"
  echo "control socket of the service (\\fBcachehost ctl\\fR); /run/cachehost/dc.sock is the shipped CacheServer socket"
  echo ".TP"
  echo ".B /usr/share/doc/cachehost/systemd.md"
  echo "systemd integration: notify, watchdog, reload, socket activation, control commands"
  echo ".SH SEE ALSO"
  echo "systemctl(1), journalctl(1), systemd.socket(5)"
} | iconv -f UTF-8 -t ASCII//TRANSLIT > "$out/cachehost.1"
gzip -9n < "$out/cachehost.1" > "$stage/usr/share/man/man1/cachehost.1.gz"
for name in "${dropins[@]}"; do
  ln -s cachehost.1.gz "$stage/usr/share/man/man1/$name.1.gz"
done

install -m 0644 "$root/packaging/debian/copyright" "$stage/usr/share/doc/cachehost/copyright"
if [ "$version" = "$changelog_version" ]; then
  gzip -9n < "$root/packaging/debian/changelog" > "$stage/usr/share/doc/cachehost/changelog.Debian.gz"
else
  # A build with another VERSION gets its own entry on top, so the package's changelog names its version.
  { printf 'cachehost (%s) unstable; urgency=medium\n\n  * Build of %s.\n\n -- CacheHost maintainers <cachehost@localhost>  %s\n\n' \
      "$version" "$version" "$(date -uR)"; cat "$root/packaging/debian/changelog"; } | gzip -9n > "$stage/usr/share/doc/cachehost/changelog.Debian.gz"
fi

installed_size=$(du -sk "$stage" | cut -f1)
# Depends: what the program loads at run time (glibc, libstdc++, libgcc, zlib; OpenSSL for Clacks TLS, which
# .NET opens by name), and what postinst creates the account with.
cat > "$stage/DEBIAN/control" <<CONTROL
Package: cachehost
Version: $version
Architecture: amd64
Maintainer: CacheHost maintainers <cachehost@localhost>
Installed-Size: $installed_size
Depends: libc6 (>= 2.31), libgcc-s1, libstdc++6, zlib1g, libssl3 | libssl3t64, systemd | adduser
Section: net
Priority: optional
Description: SSL session cache, client proxy and process supervisor (distcache/daemonproxy compatible)
 One self-contained .NET daemon that replaces distcache (dc_server, dc_client,
 dc_snoop, dc_test), daemonproxy and Net::Clacks, wire compatible with them.
 Runs as a Type=notify systemd service with journald logging, socket
 activation and a TSV control socket. The shipped configuration serves a
 session cache on 127.0.0.1:9001 and /run/cachehost/dc.sock.
CONTROL
echo "/etc/cachehost/appsettings.json" > "$stage/DEBIAN/conffiles"
install -m 0755 "$root/packaging/debian/postinst" "$root/packaging/debian/prerm" "$root/packaging/debian/postrm" "$stage/DEBIAN/"
# md5sums of every shipped file except conffiles (dh_md5sums' rule; dpkg tracks conffiles itself).
(cd "$stage" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"

deb="$out/cachehost_${version}_amd64.deb"
dpkg-deb --root-owner-group "-Z${DEB_COMPRESSION:-xz}" --build "$stage" "$deb" >&2
echo "$deb"
