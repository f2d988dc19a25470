#!/usr/bin/env bash
# Outside check of S15/S16 with a real third-party client (Python
# `websockets`): a client that reads nothing for 5 s gets all of 1,024
# numbered 64 KiB echoes back, in order, from examples/echo.rs and
# examples/async_echo.rs with the server's RSS growth under 96 MiB; 20
# messages to async_echo come back in order, no sooner than 20 x DELAY_MS.
#
# Usage: scripts/flow-check.sh   (installs websockets and psutil into a venv
#        under target/, builds the two examples, starts and stops them)
# Env:   SERVER=ws runs the examples on WsServer instead of actix-web's HttpServer.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

VENV=target/flow-venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "websockets>=13,<16" "psutil>=5,<8"
fi
cargo build -q --example echo --example async_echo

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# start NAME ENV... : starts target/debug/examples/NAME on a free port,
# sets ADDR and PID once it accepts connections.
start() {
    local name=$1; shift
    ADDR=127.0.0.1:$(free_port)
    env BIND="$ADDR" RUST_LOG=warn SERVER="${SERVER:-}" "$@" "target/debug/examples/$name" &
    PID=$!
    pids+=("$PID")
    wait_for_port "${ADDR#*:}" "$PID" 10 || { echo "flow-check: $name did not start" >&2; exit 1; }
}

start echo
"$VENV/bin/python" scripts/flow_check.py slow "ws://$ADDR/ws" "$PID" --skip-greeting

start async_echo DELAY_MS=1
"$VENV/bin/python" scripts/flow_check.py slow "ws://$ADDR/ws" "$PID"

start async_echo DELAY_MS=100
"$VENV/bin/python" scripts/flow_check.py order "ws://$ADDR/ws" 100
echo "flow-check: passed${SERVER:+ (SERVER=$SERVER)}"
