#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each), then shrinks each corpus
# to the inputs that add coverage. New inputs land in corpus/TARGET (commit them); a crash
# is written to artifacts/TARGET/ — copy it into corpus/TARGET, fix the bug, and the normal
# suite (host/tests/fuzz_corpus.rs) keeps checking it.
#
#   host/fuzz/run.sh [SECONDS] [TARGET...]
#
# cargo-fuzz drives libFuzzer with flags of the nightly compiler; on the stable toolchain
# RUSTC_BOOTSTRAP=1 lets them through. Rust code is memory-safe (Kontor forbids unsafe),
# so the targets run without AddressSanitizer: what they look for is panics, hangs and
# server errors.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(workflow expression template signature api_body)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kontor/target}/fuzz"
for target in "${targets[@]}"; do
    echo "== $target: ${seconds}s"
    mkdir -p "corpus/$target"
    cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1
    cargo fuzz cmin --sanitizer none "$target" "corpus/$target" -- -max_len=65536 >/dev/null 2>&1 || true
done
