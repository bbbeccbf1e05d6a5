#!/usr/bin/env bash
# Load tool benchmarks: CacheServer directly and through ClientProxy, unix socket and TCP, 1 and 4 clients,
# persistent and per-operation connections, plus the memcached-comparable mix. Prints a markdown table
# (ops/s and p99 in microseconds). Loopback only. Usage: bash bench/loadtool.sh [ops-per-client]
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=${1:-20000}
PEROP_OPS=$((OPS / 4))
dotnet build src/CacheHost -c Release -nologo -v q >/dev/null
BIN=src/CacheHost/bin/Release/net10.0/cachehost
DIR=$(mktemp -d /tmp/chbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

wait_for() { # address
  for _ in $(seq 1 200); do
    if $BIN test -connect "$1" -ops 1 -sessions 1 -persistent -quiet >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "not reachable: $1" >&2; exit 1
}

$BIN server -listen "UNIX:$DIR/server.sock" -sessions 200000 >"$DIR/server-unix.log" 2>&1 & PIDS+=($!)
$BIN server -listen IP:127.0.0.1:19101 -sessions 200000 >"$DIR/server-tcp.log" 2>&1 & PIDS+=($!)
wait_for "UNIX:$DIR/server.sock"; wait_for IP:127.0.0.1:19101
$BIN client -listen "UNIX:$DIR/proxy.sock" -server "UNIX:$DIR/server.sock" --CacheHost:ClientProxy:ServerKind=CacheHost >"$DIR/proxy-unix.log" 2>&1 & PIDS+=($!)
$BIN client -listen IP:127.0.0.1:19102 -server IP:127.0.0.1:19101 --CacheHost:ClientProxy:ServerKind=CacheHost >"$DIR/proxy-tcp.log" 2>&1 & PIDS+=($!)
wait_for "UNIX:$DIR/proxy.sock"; wait_for IP:127.0.0.1:19102

run() { # label address extra-args...
  local label=$1 addr=$2; shift 2
  local json
  json=$($BIN test -connect "$addr" -sessions 100 -json "$@" 2>/dev/null)
  python3 - "$label" "$json" <<'PY'
import json, sys
label, j = sys.argv[1], json.loads(sys.argv[2])
l = j["latencyMicroseconds"]
print(f"| {label} | {j['ops']} | {j['opsPerSecond']:,.0f} | {l['p50']} | {l['p99']} | {'FAILED' if j['failed'] else 'ok'} |")
PY
}

echo "| path | ops | ops/s | p50 us | p99 us | verified |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
for transport in unix tcp; do
  if [ $transport = unix ]; then direct="UNIX:$DIR/server.sock"; proxy="UNIX:$DIR/proxy.sock"; else direct=IP:127.0.0.1:19101; proxy=IP:127.0.0.1:19102; fi
  for clients in 1 4; do
    for path in direct proxy; do
      addr=$direct; [ $path = proxy ] && addr=$proxy
      run "$path $transport, $clients client(s), persistent" "$addr" -clients $clients -ops "$OPS" -persistent
      run "$path $transport, $clients client(s), per-op" "$addr" -clients $clients -ops "$PEROP_OPS"
    done
  done
  # The same 4 persistent clients on one tool thread (memtier-style "1 thread, 4 connections"): the tool then
  # takes at most one core, leaving the other to the server and the proxy.
  for path in direct proxy; do
    addr=$direct; [ $path = proxy ] && addr=$proxy
    run "$path $transport, 4 client(s), persistent, -threads 1" "$addr" -clients 4 -ops "$OPS" -persistent -threads 1
  done
done
# memcached-comparable: 50 clients, 1 KB values, 1:4 add:get, unix socket (memcached's figure: ~190k ops/s).
run "mix get:4,add:1 1KB, 50 clients, unix direct" "UNIX:$DIR/server.sock" -mix get:4,add:1 -valuesize 1024 -keys 10000 -clients 50 -persistent -duration 5
run "same, pipeline 8" "UNIX:$DIR/server.sock" -mix get:4,add:1 -valuesize 1024 -keys 10000 -clients 50 -pipeline 8 -duration 5
run "same through ClientProxy, pipeline 8" "UNIX:$DIR/proxy.sock" -mix get:4,add:1 -valuesize 1024 -keys 10000 -clients 50 -pipeline 8 -duration 5
