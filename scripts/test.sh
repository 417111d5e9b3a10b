#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing, builds the
# kybern binary the end-to-end tests run, then runs every test with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
command -v kubectl >/dev/null || { echo "kubectl is missing: install kubectl (v1.32+) on PATH" >&2; exit 1; }
cargo build --workspace
cargo nextest run --workspace --no-fail-fast
