#!/usr/bin/env bash
# Try it on one machine: a 3-master Redis Cluster with one replica each and two CacheServers on it, all on
# loopback, in a temp dir. Needs redis-server, redis-cli (Debian: redis-server redis-tools) and a built cachehost.
#   bash deploy/redis-cluster/try-local.sh [CACHEHOST]      (CACHEHOST default: dotnet src/CacheHost/bin/Release/net10.0/cachehost.dll)
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
cachehost=${1:-"dotnet src/CacheHost/bin/Release/net10.0/cachehost.dll"}
dir=$(mktemp -d /tmp/cachehost-redis-cluster.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; echo "logs kept in $dir"; }
trap cleanup EXIT INT TERM

base=${BASE_PORT:-17000}
nodes=()
for i in 0 1 2 3 4 5; do
  port=$((base + i)); mkdir -p "$dir/$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$port" --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout 2000 --maxmemory 256mb --maxmemory-policy volatile-ttl --save "" --appendonly no \
    --logfile "$dir/$port/redis.log" --daemonize no & pids+=($!)
  nodes+=("127.0.0.1:$port")
done
for n in "${nodes[@]}"; do until redis-cli -h 127.0.0.1 -p "${n##*:}" ping >/dev/null 2>&1; do sleep 0.1; done; done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes
until redis-cli -p "$base" cluster info | grep -q cluster_state:ok; do sleep 0.2; done

config=$(IFS=,; echo "${nodes[*]}")
for name in a b; do
  port=$([ "$name" = a ] && echo 9101 || echo 9102)
  CacheHost__CacheServer__Store=Redis CacheHost__CacheServer__Redis__Configuration="$config" \
    $cachehost server -listen "IP:127.0.0.1:$port" > "$dir/cachehost-$name.log" 2>&1 & pids+=($!)
  echo "CacheServer $name on 127.0.0.1:$port (log $dir/cachehost-$name.log)"
done
echo "Cluster: $config. Try: $cachehost test -connect IP:127.0.0.1:9101 (or dc_test), or kill a master:"
echo "  redis-cli -p $base cluster nodes"
wait
