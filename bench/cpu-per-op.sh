#!/usr/bin/env bash
# CPU time per request of the server (and of the client) under the independent C client, dcload
# (../shared/tools/dcload.c): the measure that survives a busy host, unlike ops/s and p99. The server runs pinned
# to core 0, dcload to core 1; the server's utime+stime (/proc/PID/stat) is read when dcload's warm-up ends and
# when it exits, and divided by the requests dcload counted in between. For CacheServer the GC counts and
# allocated bytes of that window come from `cache.stats` on the control socket (per million requests).
# Usage: CACHEHOST=/path/to/published/cachehost bash bench/cpu-per-op.sh cachehost|memcached [dcload args...]
#   default dcload args: --op mix -c 50 -P 1 -d 1024 -k 10000 -t 5 -w 2 (the session mix of vs-memcached.sh)
# Env: DCLOAD (built from ../shared/tools/dcload.c if unset), SERVER_ARGS (extra cachehost server arguments),
#      SERVER_ENV (extra environment for the server, e.g. "DOTNET_TieredPGO=0").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
NAME=${1:?usage: cpu-per-op.sh cachehost|memcached [dcload args]}; shift
ARGS=("$@"); [ ${#ARGS[@]} -gt 0 ] || ARGS=(--op mix -c 50 -P 1 -d 1024 -k 10000 -t 5 -w 2)
WARM=2; for ((i = 0; i < ${#ARGS[@]}; i++)); do [ "${ARGS[$i]}" = -w ] && WARM=${ARGS[$((i + 1))]}; done
D=$(mktemp -d /tmp/cpuperop.XXXXXX); SPID=""
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
DCLOAD=${DCLOAD:-}
if [ -z "$DCLOAD" ]; then DCLOAD=$D/dcload; gcc -O2 -o "$DCLOAD" "$HERE/../../shared/tools/dcload.c" -lpthread; fi
SOCK=$D/s.sock; CTL=$D/ctl.sock
case $NAME in
  cachehost)
    : "${CACHEHOST:?set CACHEHOST=/path/to/published/cachehost}"
    # shellcheck disable=SC2086 # SERVER_ENV/SERVER_ARGS hold several words
    env CacheHost__Control__Socket="$CTL" ${SERVER_ENV:-} taskset -c 0 "$CACHEHOST" server -listen "UNIX:$SOCK" -sessions 200000 ${SERVER_ARGS:-} >"$D/server.log" 2>&1 & SPID=$!
    PROTO=dc ;;
  memcached)
    taskset -c 0 memcached -u "$(id -un)" -t 1 -m 256 -s "$SOCK" -a 0700 & SPID=$!
    PROTO=mc ;;
  *) echo "unknown server $NAME" >&2; exit 1 ;;
esac
for _ in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ "$PROTO" = mc ] && "$DCLOAD" --proto mc --unix "$SOCK" --fill -c 10 -P 16 -d 1024 -k 10000 >/dev/null
ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$SPID/stat"; }
gcstats() { [ "$NAME" = cachehost ] && "$CACHEHOST" ctl --socket "$CTL" cache.stats 2>/dev/null | awk -F'\t' '$2 ~ /^gc\.(gen[012]|allocated_bytes)$/ {printf "%s=%s ", $2, $3}'; true; }
: >"$D/err"
taskset -c 1 "$DCLOAD" --proto "$PROTO" --unix "$SOCK" "${ARGS[@]}" >"$D/out" 2>"$D/err" & LPID=$!
# the measured window starts WARM seconds after pre-population (dc) or start (mc)
if [ "$PROTO" = dc ]; then while ! grep -q pre-populated "$D/err" && kill -0 "$LPID" 2>/dev/null; do sleep 0.02; done; fi
sleep "$WARM"; t0=$(ticks); g0=$(gcstats)
wait "$LPID" || { echo "dcload failed: $(tail -2 "$D/err")" >&2; exit 1; }
t1=$(ticks); g1=$(gcstats)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$SPID/status")
line=$(grep '^batch=' "$D/out")
ops=$(sed -n 's/.* ops=\([0-9]*\).*/\1/p' <<<"$line"); secs=$(sed -n 's/.* secs=\([0-9.]*\).*/\1/p' <<<"$line")
f() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v ops="$ops" -v s="$secs" -v ccpu="$(f client_cpu_pct)" \
    -v name="$NAME" -v ops_s="$(f ops_per_s)" -v p99="$(f p99_us)" -v err="$(f errors)" -v rss="$rss" 'BEGIN {
  printf "%s: ops/s %.0f  p99 %s us  server CPU %.2f us/op (%.0f%% of a core)  client CPU %.2f us/op  errors %s  server RSS %.1f MB\n",
    name, ops_s, p99, t / hz * 1e6 / ops, 100 * t / hz / s, ccpu / 100 * s * 1e6 / ops, err, rss / 1024 }'
if [ "$NAME" = cachehost ] && [ -n "$g0" ]; then
  python3 - "$g0" "$g1" "$ops" <<'PY'
import sys
a = dict(kv.split('=') for kv in sys.argv[1].split()); b = dict(kv.split('=') for kv in sys.argv[2].split()); ops = int(sys.argv[3])
print("  per million requests: " + "  ".join(f"{k} {(int(b[k]) - int(a[k])) * 1e6 / ops:.1f}" for k in sorted(b) if k in a))
PY
fi
