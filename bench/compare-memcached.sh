#!/usr/bin/env bash
# memcached 1.6 vs CacheServer, driven by the identical client (`cachehost test -mix`, -protocol memcached
# for memcached, distcache for CacheServer; distcache ADD plays memcached's set). Each server runs pinned to
# one core (SERVER_CORE, default 0), the load tool pinned to another (CLIENT_CORE, default 1). Unix sockets only.
# Workload: 50 clients, 1 KB values, 1:4 set:get over 10000 keys, unpipelined and with -pipeline 8 and 16.
# Besides ops/s and latency it reports CPU per operation of the server and of the tool (server: /proc;
# tool: its own JSON "toolCpuSeconds"), which says which side is the bottleneck even on a noisy machine: a server near 100 % CPU is
# saturated; a tool near 100 % means the numbers are the tool's limit, not the server's.
# Usage: bash bench/compare-memcached.sh [seconds-per-run] [repeats]     (env: PIPELINES, CLIENTS, VALUESIZE, NOBUILD=1)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
REPEATS=${2:-1}
PIPELINES=${PIPELINES:-"1 8 16"}
CLIENTS=${CLIENTS:-50}
VALUESIZE=${VALUESIZE:-1024}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
command -v memcached >/dev/null || { echo "memcached not installed (apt-get install -y memcached)" >&2; exit 1; }
[ "${NOBUILD:-0}" = 1 ] || dotnet build src/CacheHost -c Release -nologo -v q >/dev/null
BIN=$PWD/src/CacheHost/bin/Release/net10.0/cachehost
DIR=$(mktemp -d /tmp/chcompare.XXXXXX)
SP=
cleanup() { [ -n "$SP" ] && kill "$SP" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_server() { # name -> sets SP, SOCK
  SOCK=$DIR/$1.sock
  if [ "$1" = memcached ]; then
    local user=(); [ "$(id -u)" = 0 ] && user=(-u root)
    taskset -c "$SERVER_CORE" memcached -s "$SOCK" -t 1 -m 256 -U 0 -c 4096 "${user[@]}" >"$DIR/memcached.log" 2>&1 & SP=$!
  else
    taskset -c "$SERVER_CORE" "$BIN" server -listen "UNIX:$SOCK" -sessions 1000000 >"$DIR/cacheserver.log" 2>&1 & SP=$!
  fi
  for _ in $(seq 1 100); do [ -S "$SOCK" ] && return 0; sleep 0.1; done
  echo "$1 did not start" >&2; exit 1
}

run() { # server pipeline seconds -> prints a table row (or nothing for warm-up)
  local server=$1 pipeline=$2 seconds=$3 protocol=distcache
  case "$server" in memcached*) protocol=memcached ;; esac
  local before after
  before=$(cpu_ticks "$SP")
  python3 - "$server" "$pipeline" "$before" "$SP" "$seconds" taskset -c "$CLIENT_CORE" "$BIN" test -connect "UNIX:$SOCK" -protocol "$protocol" \
      -mix get:4,add:1 -valuesize "$VALUESIZE" -keys 10000 -clients "$CLIENTS" -duration "$seconds" -persistent -pipeline "$pipeline" -json <<'PY'
import json, subprocess, sys, time
server, pipeline, before, pid, seconds, cmd = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), sys.argv[6:]
proc = subprocess.run(cmd, capture_output=True, text=True)
with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
after = int(fields[11]) + int(fields[12])
if proc.returncode != 0:
    print(f"| {server} | {pipeline} | FAILED: {proc.stderr.strip()[:80]} |||||||")
    sys.exit(0)
j = json.loads(proc.stdout)
if server.endswith("(warm-up)"):
    sys.exit(0)
ops, wall, lat = j["ops"], j["seconds"], j["latencyMicroseconds"]
server_cpu = (after - before) / 100.0
tool_cpu = j["toolCpuSeconds"]
print(f"| {server} | {pipeline} | {j['opsPerSecond']:,.0f} | {lat['p50']} | {lat['p99']} | {100*server_cpu/wall:.0f} % | {1e6*server_cpu/ops:.2f} | {100*tool_cpu/wall:.0f} % | {1e6*tool_cpu/ops:.2f} |")
PY
}

echo "<!-- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); memcached $(memcached -V | cut -d' ' -f2); $CLIENTS clients, ${VALUESIZE} B values, get:4,add:1 over 10000 keys, ${DURATION} s per run -->"
echo "| server | pipeline | ops/s | p50 µs | p99 µs | server CPU | server CPU µs/op | tool CPU | tool CPU µs/op |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for server in memcached cacheserver; do
  start_server "$server"
  run "$server (warm-up)" 16 5   # CacheServer's JIT tiers up here, not in the measured runs
  for pipeline in $PIPELINES; do
    for _ in $(seq 1 "$REPEATS"); do run "$server" "$pipeline" "$DURATION"; done
  done
  kill "$SP"; wait "$SP" 2>/dev/null || true; SP=
done
