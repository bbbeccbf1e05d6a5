#!/usr/bin/env bash
# Memory of `cachehost server`: idle RSS 3 s after start, then the RSS growth per session when 101,000 sessions of
# 1 KB (32-byte ids) are added by the independent C client (dcload --op prepop), and the store's own counters.
# Usage: CACHEHOST=/path/to/published/cachehost bash bench/session-rss.sh     (env DCLOAD: a built dcload)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${CACHEHOST:?set CACHEHOST=/path/to/published/cachehost}
D=$(mktemp -d /tmp/sessionrss.XXXXXX); P=""
cleanup() { [ -n "$P" ] && kill "$P" 2>/dev/null; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
DCLOAD=${DCLOAD:-}
if [ -z "$DCLOAD" ]; then DCLOAD=$D/dcload; gcc -O2 -o "$DCLOAD" "$HERE/../../shared/tools/dcload.c" -lpthread; fi
CacheHost__Control__Socket=$D/c.sock "$BIN" server -listen "UNIX:$D/s.sock" -sessions 200000 >"$D/log" 2>&1 & P=$!
for _ in $(seq 100); do [ -S "$D/s.sock" ] && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$P/status"; }
sleep 3; idle=$(rss)
"$DCLOAD" --proto dc --unix "$D/s.sock" -c 10 -d 1024 -k 1000 --op prepop >/dev/null 2>&1
r0=$(rss)
"$DCLOAD" --proto dc --unix "$D/s.sock" -c 10 -d 1024 -k 101000 --op prepop >"$D/out" 2>&1
sleep 1; r1=$(rss)
"$BIN" ctl --socket "$D/c.sock" cache.stats | awk -F'\t' '$2 ~ /^(sessions|bytes\.stored|bytes\.slabs|gc\.gen[012]|gc\.heap_bytes)$/ {printf "%s=%s ", $2, $3} END {print ""}'
echo "idle RSS ${idle} kB; after 1k sessions ${r0} kB; after 101k more ${r1} kB: $(( (r1 - r0) * 1024 / 101000 )) B per 1 KB session; $(grep -o 'errors=[0-9]*' "$D/out")"
