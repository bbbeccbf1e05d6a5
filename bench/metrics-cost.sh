#!/usr/bin/env bash
# Cost of CacheHost:Metrics (issue 18): two CacheServers side by side, metrics off and metrics on (every meter
# created, OTLP/HTTP export once a second to a local sink that answers 200), loaded in turn by the independent C
# client dcload (/work/shared/tools/dcload.c, the memcached comparison's session-cache MIX: 50 connections,
# pipeline 1, get/add mix, 1 KB values). Runs alternate off, on, off, on ... so a host whose speed drifts (other
# work on the machine) favours neither; the verdict is the median of the per-round on/off ratios.
# Usage: bash bench/metrics-cost.sh [rounds] [seconds] [warmup]      e.g.  bash bench/metrics-cost.sh 8 5 1
# (env: BIN=path/to/cachehost (default: the NativeAOT publish in /tmp/h18b-native if present, else the JIT
#  build), DCLOAD=path (built from dcload.c when absent), CLIENTS=50)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-8}; SECS=${2:-5}; WARM=${3:-1}; CLIENTS=${CLIENTS:-50}
TOOLS=$(cd ../shared/tools 2>/dev/null && pwd || echo /work/shared/tools)
DCLOAD=${DCLOAD:-/tmp/dcload-$(id -un)}
[ -x "$DCLOAD" ] || gcc -O2 -o "$DCLOAD" "$TOOLS/dcload.c" -lpthread
if [ -z "${BIN:-}" ]; then
  if [ -x /tmp/h18b-native/cachehost ]; then BIN=/tmp/h18b-native/cachehost; else BIN=$PWD/src/CacheHost/bin/Release/net10.0/cachehost; fi
fi
DIR=$(mktemp -d /tmp/chmetrics.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

# The OTLP sink: any POST gets 200 with an empty body (what a collector answers).
python3 - "$DIR/sink.port" >"$DIR/sink.log" 2>&1 <<'PY' & PIDS+=($!)
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        sys.stderr.write("POST " + self.path + "\n"); sys.stderr.flush()
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_port))
s.serve_forever()
PY
for _ in $(seq 100); do [ -s "$DIR/sink.port" ] && break; sleep 0.1; done
PORT=$(cat "$DIR/sink.port")

"$BIN" server -listen "UNIX:$DIR/off.sock" -sessions 1000000 >"$DIR/off.log" 2>&1 & PIDS+=($!)
CacheHost__Metrics__Enabled=true CacheHost__Metrics__OtlpEndpoint="http://127.0.0.1:$PORT/v1/metrics" CacheHost__Metrics__ExportInterval=00:00:01 \
  NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 "$BIN" server -listen "UNIX:$DIR/on.sock" -sessions 1000000 >"$DIR/on.log" 2>&1 & PIDS+=($!)
for s in off on; do
  for _ in $(seq 100); do [ -S "$DIR/$s.sock" ] && break; sleep 0.1; done
  [ -S "$DIR/$s.sock" ] || { echo "server '$s' did not start: $(tail -3 "$DIR/$s.log")" >&2; exit 1; }
done

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }
echo "binary: $BIN; $ROUNDS rounds of $SECS s (+$WARM s warm-up) per server, dcload --op mix -c $CLIENTS -P 1 -d 1024 -k 10000"
echo "| round | off ops/s | on ops/s | on/off | off p99 µs | on p99 µs |"
echo "|---:|---:|---:|---:|---:|---:|"
RATIOS=()
for round in $(seq 1 "$ROUNDS"); do
  declare -A OPS=() P99=()
  for s in off on; do
    out=$("$DCLOAD" --proto dc --unix "$DIR/$s.sock" -c "$CLIENTS" -P 1 --op mix -d 1024 -k 10000 -t "$SECS" -w "$WARM" 2>>"$DIR/dcload.err")
    OPS[$s]=$(field ops_per_s "$out"); P99[$s]=$(field p99_us "$out")
  done
  ratio=$(python3 -c "print(f'{$((${OPS[on]})) / $((${OPS[off]})):.4f}')")
  RATIOS+=("$ratio")
  echo "| $round | ${OPS[off]} | ${OPS[on]} | $ratio | ${P99[off]} | ${P99[on]} |"
done
median=$(printf '%s\n' "${RATIOS[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
echo "median on/off throughput ratio: $median (issue 18 asks >= 0.97); OTLP exports received: $(grep -c '^POST /v1/metrics' "$DIR/sink.log" || true)"
grep -qi "error\|fail" "$DIR/on.log" && { echo "on-server log has errors:"; grep -i "error\|fail" "$DIR/on.log" | head -3; } || true
