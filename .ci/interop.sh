#!/usr/bin/env bash
# Files written by cryosplat, checked with independent Python readers.
# Usage: interop.sh CRYOSPLAT_BINARY PYTHON WORKDIR
set -euo pipefail
BIN="$1"; PY="$2"; WORK="$3"
cd "$(dirname "$0")/.."
"$BIN" -q simulate tests/data/models/1A8O.pdb -o "$WORK/sim" --box 48 --apix 1.5 --count 300 --snr 1 --seed 3
"$BIN" -q backproject "$WORK/sim/particles.star" -o "$WORK/bp"
"$BIN" -q reconstruct "$WORK/sim/particles.star" -o "$WORK/rec" --gaussians 500 --epochs 1
"$BIN" -q fsc "$WORK/rec/half_map_a.mrc" "$WORK/rec/half_map_b.mrc" --json > "$WORK/fsc.json"
"$BIN" -q info "$WORK/sim/particles.star" --json > "$WORK/info.json"
"$PY" .ci/interop.py "$WORK"
