#!/usr/bin/env bash
# Scale run (issue 24): CONNECTIONS live WebSocket connections held by NODES server processes that
# share one port with SO_REUSEPORT and one cluster group over Redis, opened by client processes from
# 127.0.0.2, 127.0.0.3, ... (one source address has ~28,000 ports toward one server port); each
# connection answers one echo after HOLD_S seconds, then one broadcast through the cluster group
# must reach every connection.
#
# Usage:  PORT=<free port> CONNECTIONS=100000 HOLD_S=15 scripts/scale.sh
#         CONNECTIONS=2000 NODES=2 HOLD_S=1 scripts/scale.sh      (the CI smoke run)
# Env:    PORT (default: a free one), CONNECTIONS (100000), HOLD_S (15), NODES (default: enough
#         for CONNECTIONS under `ulimit -Hn` per process, with 15 % room for SO_REUSEPORT's
#         hashing), CLIENTS (default: the same limit and <= 25,000 per source address),
#         PARALLEL (handshakes in flight per client, 64).
# Needs:  redis-server on PATH, ss (iproute2).
#
# Last line: connections=N held=H nodes=K kib_per_conn=X broadcast_ms=Y delivered=D
#            handshakes_per_s=Z
# held: most server-side established sockets on PORT counted with ss during the hold;
# kib_per_conn: the nodes' RSS growth over the connections, KiB per connection; broadcast_ms:
# from sending the broadcast command to the last delivery. Exits non-zero on any handshake, echo
# or delivery failure, or when anything falls short. Redis is started here and stopped by its
# PID; the servers and clients are children of the driver (benches/scale.rs), which kills them
# by PID (and they die with it).
set -euo pipefail
cd "$(dirname "$0")/.."

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

command -v redis-server >/dev/null || { echo "scale.sh: redis-server is not on PATH" >&2; exit 1; }
command -v ss >/dev/null || { echo "scale.sh: ss (iproute2) is not on PATH" >&2; exit 1; }

# The release build (the conformance and browser steps build the same dependencies).
cargo build --release --bench scale
BIN=$(cargo build --release --bench scale --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "scale" and m.get("executable"):
        print(m["executable"])')
[ -x "$BIN" ] || { echo "scale.sh: no bench binary" >&2; exit 1; }

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --loglevel warning >/dev/null &
REDIS_PID=$!
trap 'kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null || true' EXIT
for _ in $(seq 200); do
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then break; fi
    kill -0 "$REDIS_PID" 2>/dev/null || { echo "scale.sh: redis-server died" >&2; exit 1; }
    sleep 0.05
done

REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" PORT="${PORT:-$(free_port)}" \
    CONNECTIONS="${CONNECTIONS:-100000}" HOLD_S="${HOLD_S:-15}" "$BIN"
