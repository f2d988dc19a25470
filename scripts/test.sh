#!/usr/bin/env bash
# Everything CI runs, in order, installing what it needs on a fresh machine:
# formatting, lints, unit/integration/doc tests (with a local redis-server), docs, the package
# (with its verification build), the flow check, the Autobahn conformance suite and the
# headless-browser chat test.
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
fi

if [ "${SKIP_CONFORMANCE:-0}" != 1 ]; then
    step "Autobahn conformance"
    scripts/conformance.sh
fi

if [ "${SKIP_BROWSER:-0}" != 1 ] && [ -x scripts/browser-test.sh ]; then
    step "browser test (headless Chromium, chat demo)"
    scripts/browser-test.sh
fi

step "all checks passed"
