#!/usr/bin/env bash
# Run one fuzz target for a time budget on the stable toolchain.
#
#   fuzz/run.sh TARGET SECONDS [libFuzzer options...]
#
# Needs `cargo install cargo-fuzz`. cargo-fuzz passes unstable flags (-Z sanitizer, coverage
# instrumentation) to rustc; RUSTC_BOOTSTRAP=1 lets the stable compiler accept them.
# FUZZ_SANITIZER selects the sanitizer (default: address; use "none" where ASan is unavailable).
# Inputs that crash are written to fuzz/artifacts/TARGET/; the growing corpus lives in
# fuzz/corpus/TARGET/ (both ignored by git); committed seeds, if any, are in fuzz/seeds/TARGET/.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer options...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2
cd "$(dirname "$0")"
if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1
corpus=corpus/$target
mkdir -p "$corpus"
dirs=("$corpus")
if [ -d "seeds/$target" ]; then
    dirs+=("seeds/$target")
fi
exec cargo fuzz run --sanitizer "${FUZZ_SANITIZER:-address}" "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 "$@"
