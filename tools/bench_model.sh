#!/bin/bash
# The figures of BENCHMARKS.md "Training step on a trained model": `cryosplat bench --phases`
# on random models and on a model written by `reconstruct`, alternating the configurations in
# each round, one JSON object per line on stdout (tagged with "config" and "round").
#
# Configurations, all on 2 threads with a batch of one:
#   random       the random workload, 10,000 Gaussians, at the model's box
#   random_same  the random workload with as many Gaussians as the model, at its box
#   trained      the model in its own box (box and pixel size from the map.mrc beside it)
#   trained_d2   the same Gaussians in a box of half as many pixels of twice the size (the
#                same physical box: what a pass on images Fourier-cropped to D/2 renders)
#   trained_d4   the same at D/4
#   quarter      the model's first quarter of Gaussians in its own box
#   quarter_d2   that quarter at D/2
#
# Usage: [STEPS=300] tools/bench_model.sh path/to/cryosplat path/to/rec/gaussians_a.ply [rounds] > out.jsonl
set -euo pipefail
B=$1
PLY=$2
ROUNDS=${3:-3}
MAP=$(dirname "$PLY")/map.mrc
read -r D APIX < <("$B" info --json "$MAP" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["box"], v["apix"])')
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# Copies without a map beside them: their box and pixel size are given on the command line.
cp "$PLY" "$W/model.ply"
python3 - "$PLY" "$W/quarter.ply" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
end = data.index(b"end_header\n") + len(b"end_header\n")
header = data[:end].decode()
lines = header.split("\n")
n = next(int(l.split()[2]) for l in lines if l.startswith("element vertex"))
assert sum(l.startswith("property float") for l in lines) == 11 and "binary_little_endian" in header
keep = n // 4
header = header.replace(f"element vertex {n}\n", f"element vertex {keep}\n")
open(sys.argv[2], "wb").write(header.encode() + data[end:end + 44 * keep])
EOF
N=$(python3 -c "
import sys
data = open('$PLY', 'rb').read()
print(next(int(l.split()[2]) for l in data[:data.index(b'end_header')].decode().split('\n') if l.startswith('element vertex')))")
A2=$(python3 -c "print($APIX * 2)")
A4=$(python3 -c "print($APIX * 4)")
common=(bench --threads 2 --steps "${STEPS:-300}" --repeats 3 --phases --json)
for round in $(seq 1 "$ROUNDS"); do
  for config in random random_same trained trained_d2 trained_d4 quarter quarter_d2; do
    case $config in
      random) args=(--box "$D") ;;
      random_same) args=(--box "$D" --gaussians "$N") ;;
      trained) args=(--model "$PLY") ;;
      trained_d2) args=(--model "$W/model.ply" --box $((D / 2)) --apix "$A2") ;;
      trained_d4) args=(--model "$W/model.ply" --box $((D / 4)) --apix "$A4") ;;
      quarter) args=(--model "$W/quarter.ply" --box "$D" --apix "$APIX") ;;
      quarter_d2) args=(--model "$W/quarter.ply" --box $((D / 2)) --apix "$A2") ;;
    esac
    "$B" "${common[@]}" "${args[@]}" | python3 -c "
import json, sys
v = json.load(sys.stdin)
v['config'] = '$config'
v['round'] = $round
v['load'] = open('/proc/loadavg').read().split()[0]
print(json.dumps(v))"
  done
done
