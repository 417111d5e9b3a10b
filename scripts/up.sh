#!/usr/bin/env bash
# Brings up a single-node kybern cluster on this machine: installs what is missing,
# builds the release binary and runs `kybern up` (data in /var/lib/kybern by default;
# extra arguments go to `kybern up`, e.g. --data-dir or --listen).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo build --release --bin kybern
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
exec "$target_dir/release/kybern" up "$@"
