#!/usr/bin/env bash
# TLS against plain TCP, direct and through the proxy, as interleaved pairs (plain, tls, plain, tls, ...) so a host
# whose speed drifts favours neither; prints medians. One server process serves both a plain and a mutual-TLS
# TCP listener (same store); two proxies forward to one each. Certificates: a throw-away CA made with openssl.
#   per request:   4 persistent clients, verified barrage (-sessions 100), direct and via the proxy
#   per handshake: 1 client, one connection per operation (dc_test's default), direct
# Usage: bash bench/tls.sh [pairs]      (env: NOBUILD=1, SECONDS_PER_RUN=5)
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
[ "${NOBUILD:-0}" = 1 ] || dotnet build src/CacheHost -c Release -nologo -v q >/dev/null
BIN=$PWD/src/CacheHost/bin/Release/net10.0/cachehost
DIR=$(mktemp -d /tmp/chtls.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

# A CA, a server certificate for 127.0.0.1 and a client certificate (ECDSA P-256), as docs/systemd.md shows.
cd "$DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=bench CA" 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $who.key -out $who.csr -subj "/CN=bench-$who" 2>/dev/null
  eku=$([ $who = server ] && echo serverAuth || echo clientAuth)
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=%s\n' $eku > $who.ext
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days 2 -extfile $who.ext 2>/dev/null
done
cd - >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PLAIN=IP:127.0.0.1:$(port); TLS=IP:127.0.0.1:$(port)
CLIENT_TLS=(-tls-cert "$DIR/client.pem" -tls-key "$DIR/client.key" -tls-ca "$DIR/ca.pem")
$BIN run --CacheHost:Roles:0=CacheServer --CacheHost:CacheServer:Capacity=200000 --CacheHost:Control:Enabled=false \
  --CacheHost:CacheServer:Listen:0="$PLAIN" --CacheHost:CacheServer:TlsListen:0:Address="$TLS" \
  --CacheHost:CacheServer:TlsListen:0:Certificate="$DIR/server.pem" --CacheHost:CacheServer:TlsListen:0:Key="$DIR/server.key" \
  --CacheHost:CacheServer:TlsListen:0:CertificateAuthority="$DIR/ca.pem" --CacheHost:CacheServer:TlsListen:0:RequireClientCertificate=true \
  >"$DIR/server.log" 2>&1 & PIDS+=($!)
for _ in $(seq 200); do grep -q Ready "$DIR/server.log" && break; sleep 0.2; done
$BIN client -listen "UNIX:$DIR/plain.sock" -server "$PLAIN" --CacheHost:ClientProxy:ServerKind=CacheHost --CacheHost:Control:Enabled=false >"$DIR/proxy-plain.log" 2>&1 & PIDS+=($!)
$BIN client -listen "UNIX:$DIR/tls.sock" -server "$TLS" "${CLIENT_TLS[@]}" -tls-verify --CacheHost:ClientProxy:ServerKind=CacheHost --CacheHost:Control:Enabled=false >"$DIR/proxy-tls.log" 2>&1 & PIDS+=($!)
for _ in $(seq 200); do grep -q Ready "$DIR/proxy-plain.log" && grep -q Ready "$DIR/proxy-tls.log" && break; sleep 0.2; done
$BIN test -connect "$TLS" "${CLIENT_TLS[@]}" -sessions 100 -clients 4 -duration 3 -persistent -quiet >/dev/null 2>&1 # warm-up (JIT tiering)
run() { # kind label addr tls(0/1)
  local extra=(); [ "$4" = 1 ] && extra=("${CLIENT_TLS[@]}")
  if [ "$1" = handshake ]; then
    json=$($BIN test -connect "$3" "${extra[@]}" -sessions 20 -clients 1 -duration "$SECONDS_PER_RUN" -json 2>/dev/null)
  else
    json=$($BIN test -connect "$3" "${extra[@]}" -sessions 100 -clients 4 -duration "$SECONDS_PER_RUN" -persistent -json 2>/dev/null)
  fi
  echo "$1|$2|$json" >> "$DIR/results"
}
for _ in $(seq 1 "$PAIRS"); do
  run request direct-plain "$PLAIN" 0; run request direct-tls "$TLS" 1
  run request proxy-plain "UNIX:$DIR/plain.sock" 0; run request proxy-tls "UNIX:$DIR/tls.sock" 0
  run handshake direct-plain "$PLAIN" 0; run handshake direct-tls "$TLS" 1
done
echo "failed handshakes logged by the server: $(grep -c "adapter failed" "$DIR/server.log" || true)"
python3 - "$DIR/results" <<'PY'
import collections, json, statistics as st, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    kind, label, js = line.rstrip("\n").split("|", 2)
    j = json.loads(js)
    if j["failed"]:
        sys.exit(f"a run failed verification: {kind} {label}")
    runs[(kind, label)].append((j["opsPerSecond"], j["latencyMicroseconds"]["p99"]))
print("| measure | plain ops/s (median) | TLS ops/s (median) | µs per op plain → TLS | extra µs per op (TLS) | p99 µs plain → TLS |")
print("|---|---:|---:|---:|---:|---:|")
for kind, path, what in [("request", "direct", "per request, direct (4 persistent clients)"),
                         ("request", "proxy", "per request, through the proxy (TLS upstream link)"),
                         ("handshake", "direct", "per connection: connect + handshake + 1 op (1 client)")]:
    p, t = runs[(kind, path + "-plain")], runs[(kind, path + "-tls")]
    po, to = st.median(x for x, _ in p), st.median(x for x, _ in t)
    # 4 clients share the time: µs per op of the whole run (wall clock / ops).
    pu, tu = 1e6 / po, 1e6 / to
    print(f"| {what} | {po:,.0f} | {to:,.0f} | {pu:.1f} → {tu:.1f} | {tu - pu:+.1f} | {st.median(y for _, y in p):.0f} → {st.median(y for _, y in t):.0f} |")
PY
