#!/usr/bin/env bash
# JIT against NativeAOT CacheServer in one interleaved run, with the memcached comparison's client and rules
# (../shared/tools/vs-memcached.sh: the independent C client dcload.c, session-cache mix 20% ADD / 75% GET /
# 5% REMOVE, 50 clients, 1 KB, unix socket, server pinned to core 0 and client to core 1, warm-up first).
# Rounds alternate the order (JIT,AOT then AOT,JIT) so a drifting host penalises both alike. Besides ops/s it
# reports the server's CPU time per operation (utime+stime over the measured run / ops), which is much less
# sensitive to other load on the machine than ops/s.
# Usage: JIT=src/CacheHost/bin/Release/net10.0/cachehost AOT=artifacts/native/cachehost bash bench/jit-vs-aot.sh
# Knobs: ROUNDS (5), SECS (3), WARM (2), CLIENTS (50), KEYS (10000), TOOLS (../shared/tools), OUT (/tmp/jit-vs-aot).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${TOOLS:-$root/../shared/tools}
OUT=${OUT:-/tmp/jit-vs-aot}
ROUNDS=${ROUNDS:-5}; SECS=${SECS:-3}; WARM=${WARM:-2}; CLIENTS=${CLIENTS:-50}; KEYS=${KEYS:-10000}
JIT=${JIT:-$root/src/CacheHost/bin/Release/net10.0/cachehost}
AOT=${AOT:-$root/artifacts/native/cachehost}
for p in "$JIT" "$AOT"; do [ -x "$p" ] || { echo "not executable: $p"; exit 1; }; done
mkdir -p "$OUT"
gcc -O2 -o "$OUT/dcload" "$TOOLS/dcload.c" -lpthread || exit 1
hz=$(getconf CLK_TCK)
dir=$(mktemp -d /tmp/jva.XXXXXX); trap 'rm -rf "$dir"' EXIT
declare -A OPS CPU
run() { # run NAME PROGRAM ROUND
  local sock=$dir/s.sock pid out ops t0 t1 cpu
  rm -f "$sock"
  taskset -c 0 "$2" server -listen "UNIX:$sock" -sessions 200000 >"$dir/$1.out" 2>&1 </dev/null & pid=$!
  for _ in $(seq 300); do [ -S "$sock" ] && break; sleep 0.1; done
  # Warm-up run first (JIT tier-up for both alike); then the server's CPU over the measured client run, divided
  # by the requests it served in it: the measured ops plus the KEYS ADDs dcload sends first to prepopulate.
  taskset -c 1 "$OUT/dcload" --proto dc --unix "$sock" -c "$CLIENTS" -P 1 --op mix -d 1024 -k "$KEYS" -t "$WARM" >/dev/null 2>&1
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 "$OUT/dcload" --proto dc --unix "$sock" -c "$CLIENTS" -P 1 --op mix -d 1024 -k "$KEYS" -t "$SECS" -w 0 2>&1 | grep '^batch=' | tail -1)
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null
  ops=$(sed -n 's/.* ops_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
  total=$(sed -n 's/.* ops=\([0-9]*\).*/\1/p' <<<"$out")
  total=$(( ${total:-0} + KEYS ))
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$total" 'BEGIN {printf "%.2f", (n > 0 ? d / hz * 1e6 / n : 0)}')
  OPS[$1]+="$ops "; CPU[$1]+="$cpu "
  printf 'round %d %-3s %8.0f ops/s  server CPU %5.2f us/op  (%s)\n' "$3" "$1" "$ops" "$cpu" "$out"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); mix 20/75/5, $CLIENTS clients x 1 KB, unix, $ROUNDS rounds x $SECS s"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then run JIT "$JIT" "$r"; run AOT "$AOT" "$r"; else run AOT "$AOT" "$r"; run JIT "$JIT" "$r"; fi
done
for s in JIT AOT; do
  # shellcheck disable=SC2086
  printf 'median %-3s %8.0f ops/s  server CPU %5.2f us/op\n' "$s" "$(median ${OPS[$s]})" "$(median ${CPU[$s]})"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
