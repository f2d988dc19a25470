#!/usr/bin/env bash
# Everything CI runs, in order, installing what it needs on a fresh machine:
# formatting, lints, unit/integration/doc tests (with a local redis-server), docs, the Autobahn
# conformance suite and the headless-browser chat test.
#
# Usage: scripts/test.sh            (from anywhere; CI calls it via .ci/run)
# Env:   SKIP_FLOW=1, SKIP_CONFORMANCE=1, SKIP_BROWSER=1 to leave out the slow parts locally.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# The cross-node tests (tests/cluster.rs) start their own redis-server.
if ! command -v redis-server >/dev/null 2>&1; then
    step "install redis-server (Debian package)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (default features, then all features)"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --all-features -- -D warnings

step "cargo test (all features)"
cargo test --all-features

step "cargo doc (all features, warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features

if [ "${SKIP_FLOW:-0}" != 1 ]; then
    step "flow check (Python websockets client: slow reader, async order)"
    scripts/flow-check.sh
fi

if [ "${SKIP_CONFORMANCE:-0}" != 1 ]; then
    step "Autobahn conformance"
    scripts/conformance.sh
fi

if [ "${SKIP_BROWSER:-0}" != 1 ] && [ -x scripts/browser-test.sh ]; then
    step "browser test (headless Chromium, chat demo)"
    scripts/browser-test.sh
fi

# Scale smoke (issue 24): 2,000 connections over 2 SO_REUSEPORT nodes and a Redis cluster group, ~1.5 min (release build shares the conformance step's dependencies).
step "scale smoke (scripts/scale.sh, 2,000 connections, 2 nodes)"; CONNECTIONS=2000 NODES=2 HOLD_S=1 scripts/scale.sh

step "all checks passed"
