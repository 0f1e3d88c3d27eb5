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
# STAR files (the simulated set and every real one in tests/data) read by starfile and compared
# with cryosplat's reading: counts, pixel size, box, first pose, origin and CTF.
for star in "$WORK/sim/particles.star" tests/data/cryodrgn/relion31.star \
    tests/data/cryodrgn/sta_testing_bin8.optics31.DERIVED.star tests/data/cryodrgn/sta_testing_bin8.star \
    tests/data/cryodrgn/empiar_10076_7.star tests/data/aspire/sample_particles_relion30.star \
    tests/data/cryodrgn-toy/toy_projections.DERIVED.star; do
  "$BIN" -q info "$star" --json > "$WORK/star_info.json"
  "$PY" .ci/check_star.py "$star" "$WORK/star_info.json" > "$WORK/check_star.log" || { cat "$WORK/check_star.log"; exit 1; }
  echo "starfile agrees with cryosplat on $star ($(grep -c '^ok' "$WORK/check_star.log") checks)"
done
