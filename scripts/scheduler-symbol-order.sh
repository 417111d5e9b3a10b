#!/usr/bin/env bash
# Regenerates scheduler/symbol-order.txt, the list of functions LLD places first in
# `kybern-scheduler`'s .text (see "Scheduler binary" in docs/architecture.md).
#
# It runs `kybern bench scheduler` (1000 nodes / 3000 pods) RUNS times with the
# scheduler under valgrind's callgrind, and writes every function of the binary that
# ran, then every other function of the scheduler's crates (`scheduler`, the library,
# and `kybern_scheduler`, the binary: plugins, preemption, scheduling code a run may
# not reach), one symbol a line. Functions missing from the
# list still work; they are only laid out after it. Rerun it after changing
# dependencies or the toolchain (symbol names change), and after large changes to the
# scheduler or client code.
#
# Needs valgrind, c++filt (binutils), and `kybern` built in release.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-2}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -p kybern
cargo build --profile release-small -p kybern-scheduler
bin=$(realpath "$target/release-small/kybern-scheduler")
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
cat >"$work/wrap.sh" <<EOF
#!/bin/sh
# Interrupted (not killed) at the end, so that callgrind writes its profile. The malloc
# settings are set here, so the scheduler does not re-execute itself out of valgrind.
export KYBERN_ALLOCATOR_TUNED=1 MALLOC_ARENA_MAX=1 MALLOC_TRIM_THRESHOLD_=131072 MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TOP_PAD_=0
setsid valgrind --tool=callgrind --demangle=no --callgrind-out-file=$work/cg.%p "$bin" "\$@" >>"$work/valgrind.log" 2>&1 &
echo \$! >"$work/pid"
wait
EOF
chmod +x "$work/wrap.sh"
for _ in $(seq "$RUNS"); do
    "$target/release/kybern" bench scheduler --binary standalone --skip-large --scheduler-binary "$work/wrap.sh" >/dev/null
    kill -INT "$(cat "$work/pid")" 2>/dev/null || true
    while kill -0 "$(cat "$work/pid")" 2>/dev/null; do sleep 0.2; done
done
# Every named function in the profiles (fn= and cfn= lines name each once).
sed -n 's/^c\{0,1\}fn=([0-9]*) \(.*\)$/\1/p' "$work"/cg.* | sort -u >"$work/ran"
nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u >"$work/text"
comm -12 "$work/ran" "$work/text" >"$work/hot"
# Demangled (after the mangled name and a space), the crate is a path's first segment
# (`scheduler::queue::…`, also inside `<…>` of generic code); tokio's own
# `…::runtime::scheduler::` follows `::` instead.
c++filt <"$work/text" | paste -d ' ' "$work/text" - |
    awk '/[^A-Za-z0-9_:](kybern_)?scheduler::/ {print $1}' |
    sort -u | comm -23 - "$work/hot" >"$work/rest"
cat "$work/hot" "$work/rest" >scheduler/symbol-order.txt
echo "scheduler/symbol-order.txt: $(wc -l <"$work/hot") functions that ran, $(wc -l <"$work/rest") more scheduler functions"
cargo build --profile release-small -p kybern-scheduler
