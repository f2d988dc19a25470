#!/usr/bin/env bash
# Browser test of the chat example: a real headless Chromium talks to
# examples/chat.rs through its page, in two sessions at once.
#
# Installs what it needs on a fresh machine: Debian's chromium (when
# /usr/bin/chromium is missing) and playwright-core, pinned in
# scripts/browser/package-lock.json, into target/browser-test (no browser
# download: Playwright drives /usr/bin/chromium). Then builds and starts
# target/release/examples/chat (on WsServer with SERVER=ws) on a free loopback port, runs
# scripts/browser/chat.test.mjs with node, and stops the server on exit.
#
# Usage: scripts/browser-test.sh          (from anywhere; needs node >= 20)
# Output: target/browser-test/chat.png (alice's page at the end of the test),
#         target/browser-test/server.log; last line `browser: N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=target/browser-test
CHROMIUM=/usr/bin/chromium
SERVER_PID=
RESULT=

finish() {
    local status=$?
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -z "$RESULT" ]; then
        echo "browser-test: setup failed (exit $status), see above" >&2
        RESULT="browser: 0 passed, 1 failed"
        status=1
    fi
    echo "$RESULT"
    exit "$status"
}
trap finish EXIT

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x "$CHROMIUM" ]; then
    echo "browser-test: installing Debian's chromium"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    echo "browser-test: node >= 20 is required (playwright-core 1.65)" >&2
    exit 1
fi

# playwright-core, at the version pinned in the lock file; reinstalled only
# when the lock file changed.
mkdir -p "$OUT"
if ! cmp -s scripts/browser/package-lock.json "$OUT/package-lock.json" \
    || [ ! -f "$OUT/node_modules/playwright-core/package.json" ]; then
    echo "browser-test: installing playwright-core into $OUT"
    cp scripts/browser/package.json scripts/browser/package-lock.json "$OUT/"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$OUT" --no-audit --no-fund
fi

cargo build --release --example chat

PORT=$(node -e '
    const server = require("net").createServer();
    server.listen(0, "127.0.0.1", () => { console.log(server.address().port); server.close(); });')
BASE_URL="http://127.0.0.1:$PORT/"

BIND="127.0.0.1:$PORT" RUST_LOG="${RUST_LOG:-info}" target/release/examples/chat >"$OUT/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 100); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "browser-test: the chat server exited; its log:" >&2
        cat "$OUT/server.log" >&2
        exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "browser-test: the chat server is not listening on $BASE_URL after 10 s" >&2
    exit 1
fi
echo "browser-test: chat server on $BASE_URL"

if BASE_URL="$BASE_URL" BROWSER_TEST_DIR="$OUT" CHROMIUM="$CHROMIUM" SCREENSHOT="$OUT/chat.png" \
    node scripts/browser/chat.test.mjs; then
    RESULT="browser: 1 passed, 0 failed"
else
    echo "browser-test: chat server log (last 30 lines):" >&2
    tail -n 30 "$OUT/server.log" >&2
    RESULT="browser: 0 passed, 1 failed"
    exit 1
fi
