#!/usr/bin/env bash
# The CacheServer's Redis store against Redis itself (issue 17): one redis-server; the independent C client
# (../shared/tools/dcload.c) drives (1) Redis directly with RESP (--proto redis), (2) a CacheServer whose Store
# is that Redis (--proto dc) and (3) a CacheServer with the memory store (--proto dc), interleaved
# (redis, cacheserver-redis, cacheserver-memory, redis, ...) so drift of a shared host favours none.
# 50 connections, 1 KiB values, GET and mix (dc: 20% ADD 75% GET 5% REMOVE; redis: 20% SET 75% GET 5% DEL), one
# request in flight per connection, over loopback TCP.
# Usage: bash bench/redis-store.sh [rounds] [seconds]     (env: CACHEHOST=program, default the Release build;
#        DCLOAD=binary, default built from ../shared/tools/dcload.c into a temp file; NOBUILD=1)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; SECS=${2:-5}
command -v redis-server >/dev/null || { echo "redis-server not installed (apt-get install -y redis-server redis-tools)" >&2; exit 1; }
DIR=$(mktemp -d /tmp/chredisbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
if [ -z "${CACHEHOST:-}" ]; then
  [ "${NOBUILD:-0}" = 1 ] || dotnet build src/CacheHost -c Release -nologo -v q >/dev/null
  CACHEHOST=$PWD/src/CacheHost/bin/Release/net10.0/cachehost
fi
DCLOAD=${DCLOAD:-}
if [ -z "$DCLOAD" ]; then
  DCLOAD=$DIR/dcload
  gcc -O2 -o "$DCLOAD" ../shared/tools/dcload.c -lpthread
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(port); CRP=$(port); CMP=$(port)
redis-server --port "$RP" --bind 127.0.0.1 --dir "$DIR" --save "" --appendonly no --maxmemory 1gb \
  --maxmemory-policy volatile-ttl --logfile "$DIR/redis.log" --daemonize no & PIDS+=($!)
until redis-cli -p "$RP" ping >/dev/null 2>&1; do sleep 0.1; done
# (the dc_server command line takes only dc_server's flags: the store comes from the environment)
CacheHost__CacheServer__Store=Redis CacheHost__CacheServer__Redis__Configuration="127.0.0.1:$RP" \
  "$CACHEHOST" server -listen "IP:127.0.0.1:$CRP" >"$DIR/cs-redis.log" 2>&1 & PIDS+=($!)
"$CACHEHOST" server -listen "IP:127.0.0.1:$CMP" -sessions 1000000 >"$DIR/cs-memory.log" 2>&1 & PIDS+=($!)
for p in "$CRP" "$CMP"; do
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue 2; sleep 0.1; done
  echo "no CacheServer on port $p:" >&2; cat "$DIR"/cs-*.log >&2; exit 1
done

COMMON=(-c 50 -d 1024 -k 10000)
# Redis needs its keys once (dcload's distcache mode pre-populates its own with ADDs).
"$DCLOAD" --proto redis --tcp "127.0.0.1:$RP" "${COMMON[@]}" --fill --ttl 3600 >/dev/null
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
echo "| target | op | ops/s | p50 µs | p99 µs | errors |"
echo "|---|---|---:|---:|---:|---:|"
for op in get mix; do
  for round in $(seq 0 "$ROUNDS"); do
    for target in redis cacheserver-redis cacheserver-memory; do
      case $target in
        redis) args=(--proto redis --tcp "127.0.0.1:$RP" --ttl 3600) ;;
        cacheserver-redis) args=(--proto dc --tcp "127.0.0.1:$CRP" --ttl 3600) ;;
        cacheserver-memory) args=(--proto dc --tcp "127.0.0.1:$CMP" --ttl 3600) ;;
      esac
      out=$("$DCLOAD" "${args[@]}" "${COMMON[@]}" --op "$op" -t "$SECS" -w 1 2>&1 | grep '^batch=' || true)
      [ "$round" = 0 ] && continue # round 0 warms the JIT and Redis
      echo "| $target | $op | $(field "$out" ops_per_s) | $(field "$out" p50_us) | $(field "$out" p99_us) | $(field "$out" errors) |"
    done
  done
done
