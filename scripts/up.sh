#!/usr/bin/env bash
# Brings up a single-node kybern cluster on this machine: installs what running needs
# (not the test-only packages), builds the release binary (the first build compiles
# about 300 crates; cargo shows its progress) and runs `kybern up` (data in
# /var/lib/kybern by default; extra arguments go to `kybern up`, e.g. --data-dir).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh --run
echo "building kybern (release); the first build takes a while, later ones seconds" >&2
cargo build --release --bin kybern
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
exec "$target_dir/release/kybern" up "$@"
