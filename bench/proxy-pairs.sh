#!/usr/bin/env bash
# ClientProxy against direct as interleaved pairs (direct, proxy, direct, proxy, ...) so that a host whose speed
# drifts does not favour either side; prints medians. 4 persistent clients, verified barrage, -sessions 100.
# Usage: bash bench/proxy-pairs.sh [pairs] [tool-args ...]      (env: TCP=1 for 127.0.0.1, NOBUILD=1, PIN=1)
# PIN=1 applies the memcached comparison's rule (docs/benchmarks.md): the cache service gets core 0 (the server,
# and in the proxied runs the proxy with it), the load tool core 1.
# Each extra argument is one tool configuration, e.g.  bash bench/proxy-pairs.sh 5 "" "-threads 1"
# The configuration "processes" runs the 4 clients as 4 tool processes of one client each (like 4 dc_test
# processes); their ops/s are added and the highest p99 is reported.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-5}; shift || true
[ $# -gt 0 ] || set -- ""
[ "${NOBUILD:-0}" = 1 ] || dotnet build src/CacheHost -c Release -nologo -v q >/dev/null
BIN=$PWD/src/CacheHost/bin/Release/net10.0/cachehost
DIR=$(mktemp -d /tmp/chpairs.XXXXXX)
PIDS=()
SERVICE=(); TOOL=()
if [ "${PIN:-0}" = 1 ]; then SERVICE=(taskset -c 0); TOOL=(taskset -c 1); fi
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT
if [ "${TCP:-0}" = 1 ]; then DIRECT=IP:127.0.0.1:19201; PROXY=IP:127.0.0.1:19202; else DIRECT=UNIX:$DIR/server.sock; PROXY=UNIX:$DIR/proxy.sock; fi
"${SERVICE[@]}" $BIN server -listen "$DIRECT" -sessions 200000 >"$DIR/server.log" 2>&1 & PIDS+=($!)
sleep 1.5
"${SERVICE[@]}" $BIN client -listen "$PROXY" -server "$DIRECT" --CacheHost:ClientProxy:ServerKind=CacheHost >"$DIR/proxy.log" 2>&1 & PIDS+=($!)
sleep 1.5
"${TOOL[@]}" $BIN test -connect "$PROXY" -sessions 100 -clients 4 -ops 20000 -persistent -quiet >/dev/null 2>&1 # warm-up (JIT tiering)
for _ in $(seq 1 "$PAIRS"); do
  for cfg in "$@"; do
    for path in direct proxy; do
      addr=$DIRECT; [ $path = proxy ] && addr=$PROXY
      if [ "$cfg" = processes ]; then
        for k in 1 2 3 4; do "${TOOL[@]}" $BIN test -connect "$addr" -sessions 100 -clients 1 -ops 40000 -persistent -json >"$DIR/p$k.json" 2>/dev/null & done
        wait "${!}"; sleep 0.2; while [ "$(jobs -rp | wc -l)" -gt 2 ]; do sleep 0.1; done # the server and the proxy stay
        json=$(python3 -c 'import json, sys
js = [json.load(open(f)) for f in sys.argv[1:]]
print(json.dumps({"failed": any(j["failed"] for j in js), "opsPerSecond": sum(j["opsPerSecond"] for j in js),
  "latencyMicroseconds": {"p99": max(j["latencyMicroseconds"]["p99"] for j in js)}}))' "$DIR"/p[1-4].json)
      else
        # shellcheck disable=SC2086 # cfg holds several tool arguments
        json=$("${TOOL[@]}" $BIN test -connect "$addr" -sessions 100 -clients 4 -ops 40000 -persistent -json $cfg 2>/dev/null)
      fi
      echo "$cfg|$path|$json" >> "$DIR/results"
    done
  done
done
python3 - "$DIR/results" <<'PY'
import collections, json, statistics as st, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    cfg, path, js = line.rstrip("\n").split("|", 2)
    j = json.loads(js)
    if j["failed"]:
        sys.exit(f"a run failed verification: {cfg} {path}")
    runs[(cfg, path)].append((j["opsPerSecond"], j["latencyMicroseconds"]["p99"]))
print("| tool args | direct ops/s (median) | proxy ops/s (median) | time per request, proxy / direct (median of pairs) | p99 µs direct → proxy (medians) |")
print("|---|---:|---:|---:|---:|")
for cfg in dict.fromkeys(c for c, _ in runs):
    d, p = runs[(cfg, "direct")], runs[(cfg, "proxy")]
    ratios = [a[0] / b[0] for a, b in zip(d, p)]
    print(f"| {cfg or '(default)'} | {st.median(x for x, _ in d):,.0f} | {st.median(x for x, _ in p):,.0f} | "
          f"{st.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}) | {st.median(y for _, y in d):.0f} → {st.median(y for _, y in p):.0f} |")
PY
