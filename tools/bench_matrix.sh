#!/bin/bash
# The training-step figures of BENCHMARKS.md: `cryosplat bench` over box sizes, model sizes,
# thread counts and batch sizes, one JSON object per line on stdout.
# Usage: tools/bench_matrix.sh [path/to/cryosplat] > bench.jsonl
set -euo pipefail
B=${1:-target/release/cryosplat}
for box in 64 128 256; do
  for g in 2000 10000 30000 50000; do
    for t in 1 2; do
      steps=300
      [ "$box" = 256 ] && steps=100
      [ "$g" -ge 30000 ] && steps=$((steps / 2))
      "$B" bench --box "$box" --gaussians "$g" --threads "$t" --steps "$steps" --json
    done
  done
done
for box in 64 128 256; do
  for g in 10000 50000; do
    for t in 1 2; do
      steps=40
      [ "$box" = 256 ] && steps=15
      "$B" bench --box "$box" --gaussians "$g" --threads "$t" --batch 8 --steps "$steps" --json
    done
  done
done
