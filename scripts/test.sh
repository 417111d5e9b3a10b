#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing, checks the
# format and lint gates, builds the kybern binary the end-to-end tests run, then runs
# every test with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
command -v kubectl >/dev/null || { echo "kubectl is missing: install kubectl (v1.32+) on PATH" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
echo "== format (cargo fmt --all --check; run 'cargo fmt --all' to fix)"
cargo fmt --all --check
echo "== lints (cargo clippy --workspace --all-targets -- -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build"
cargo build --workspace
echo "== tests"
cargo nextest run --workspace --no-fail-fast
