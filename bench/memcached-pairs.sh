#!/usr/bin/env bash
# memcached 1.6 and CacheServer as interleaved runs (memcached, CacheServer, memcached, ...), so that a host whose
# speed drifts does not favour either; same client, same pinning and workload as compare-memcached.sh.
# Usage: bash bench/memcached-pairs.sh [pairs] [seconds] [tool-args]    e.g.  bash bench/memcached-pairs.sh 4 6 "-pipeline 8"
# (env: SERVER_CORE=0, CLIENT_CORE=1, NOBUILD=1)
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-4}; SECONDS_PER_RUN=${2:-6}; EXTRA=${3:-}
SERVER_CORE=${SERVER_CORE:-0}; CLIENT_CORE=${CLIENT_CORE:-1}
command -v memcached >/dev/null || { echo "memcached not installed (apt-get install -y memcached)" >&2; exit 1; }
[ "${NOBUILD:-0}" = 1 ] || dotnet build src/CacheHost -c Release -nologo -v q >/dev/null
BIN=$PWD/src/CacheHost/bin/Release/net10.0/cachehost
DIR=$(mktemp -d /tmp/chmcpairs.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT
taskset -c "$SERVER_CORE" memcached -u "$(id -un)" -s "$DIR/memcached.sock" -t 1 -m 256 -U 0 -c 4096 & MP=$!; PIDS+=($MP)
taskset -c "$SERVER_CORE" "$BIN" server -listen "UNIX:$DIR/cacheserver.sock" -sessions 1000000 >"$DIR/server.log" 2>&1 & SP=$!; PIDS+=($SP)
sleep 2
MIX=(-mix get:4,add:1 -valuesize 1024 -keys 10000 -clients 50 -persistent)
for pair in memcached:$MP cacheserver:$SP; do # warm-up (CacheServer's JIT tiering)
  taskset -c "$CLIENT_CORE" "$BIN" test -connect "UNIX:$DIR/${pair%%:*}.sock" -protocol "$([ "${pair%%:*}" = memcached ] && echo memcached || echo distcache)" "${MIX[@]}" -pipeline 16 -duration 3 -quiet >/dev/null 2>&1
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "| server | args | ops/s | p99 µs | server CPU µs/op |"
echo "|---|---|---:|---:|---:|"
for _ in $(seq 1 "$PAIRS"); do
  for pair in memcached:$MP cacheserver:$SP; do
    name=${pair%%:*}; pid=${pair##*:}
    before=$(ticks "$pid")
    # shellcheck disable=SC2086 # EXTRA holds several tool arguments
    json=$(taskset -c "$CLIENT_CORE" "$BIN" test -connect "UNIX:$DIR/$name.sock" -protocol "$([ "$name" = memcached ] && echo memcached || echo distcache)" "${MIX[@]}" -duration "$SECONDS_PER_RUN" -json $EXTRA 2>/dev/null)
    after=$(ticks "$pid")
    python3 - "$name" "${EXTRA:-(none)}" "$json" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
name, extra, j, ticks, hz = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(f"| {name} | {extra} | {j['opsPerSecond']:,.0f} | {j['latencyMicroseconds']['p99']} | {ticks / hz * 1e6 / j['ops']:.2f} |")
PY
  done
done
