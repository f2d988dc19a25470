#!/usr/bin/env bash
# Everything CI runs, in order, installing what it needs on a fresh machine:
# formatting, lints, unit/integration/doc tests (with a local redis-server; the integration tests
# twice: on actix-web's HttpServer and on WsServer), docs, the package (with its verification
# build), the flow check (on both servers), the Autobahn conformance suite and the headless-browser chat test (both
# on both servers) and the scale smoke run.
#
# Usage: scripts/test.sh            (from anywhere; CI calls it via .ci/run)
# Env:   SKIP_FLOW=1, SKIP_CONFORMANCE=1, SKIP_BROWSER=1 to leave out the slow parts locally.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

step() { printf '\n==> %s\n' "$*"; }

# The cross-node tests (tests/cluster.rs) start their own redis-server; the
# flow check and the conformance run make Python venvs.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" != 0 ]; then
    step "install ${missing[*]} (Debian packages)"
    apt_install "${missing[@]}"
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (default features, then all features)"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --all-features -- -D warnings

step "cargo test (all features)"
cargo test --all-features

# The same integration tests with every TestServer on WsServer (the
# connection owns its socket) instead of actix-web's HttpServer.
step "cargo test on WsServer (ACTIX_WS_LISTENER_SERVER=ws, integration tests)"
ACTIX_WS_LISTENER_SERVER=ws cargo test --all-features --tests

step "cargo doc (default features, then all features; warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features

# What a user downloads: the file list must hold only what Cargo.toml's
# `include` names, and the packaged crate must build on its own (a file the
# package forgot, a README example that no longer compiles from it).
step "cargo package (file list, then the verification build)"
cargo package --list
cargo package
# The verification build compiles the library only: run the doctests
# (README included) from the unpacked package too. The shared target dir
# keeps the dependencies' builds.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
step "doctests from the package (README included)"
cargo test --doc --all-features --target-dir target \
    --manifest-path "target/package/actix-ws-listener-$version/Cargo.toml"

if [ "${SKIP_FLOW:-0}" != 1 ]; then
    step "flow check (Python websockets client: slow reader, async order)"
    scripts/flow-check.sh
    step "flow check on WsServer (SERVER=ws)"
    SERVER=ws scripts/flow-check.sh
fi

if [ "${SKIP_CONFORMANCE:-0}" != 1 ]; then
    step "Autobahn conformance"
    scripts/conformance.sh
    step "Autobahn conformance on WsServer"
    SERVER=ws CONFORMANCE_REPORT_DIR=target/conformance-report-ws scripts/conformance.sh
fi

if [ "${SKIP_BROWSER:-0}" != 1 ] && [ -x scripts/browser-test.sh ]; then
    step "browser test (headless Chromium, chat demo)"
    scripts/browser-test.sh
    step "browser test on WsServer (SERVER=ws)"
    SERVER=ws scripts/browser-test.sh
fi

# Scale smoke (issue 24): 2,000 connections over 2 SO_REUSEPORT nodes and a Redis cluster group, ~1.5 min (release build shares the conformance step's dependencies).
step "scale smoke (scripts/scale.sh, 2,000 connections, 2 nodes)"; CONNECTIONS=2000 NODES=2 HOLD_S=1 scripts/scale.sh

step "all checks passed"
