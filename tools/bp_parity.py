#!/usr/bin/env python3
"""Compare backprojected maps with the ground truth of a simulated set (issue 17).

For each map: the masked FSC against gt.mrc at 0.5 and 0.143 (`cryosplat fsc --mask`), the mean
masked FSC over shells 1..D/2, and the real-space correlation inside the mask (weighted by it).
The mask is made from gt.mrc: voxels above 0.1 of its maximum, extended 3 px, 5 px raised-cosine
edge, no low-pass (`cryosplat mask`), the recipe of shared/reference/backprojection/README.md.

Usage: tools/bp_parity.py --bin BIN --gt gt.mrc MAP [MAP ...]

Only the Python standard library is used.
"""

import argparse
import array
import json
import math
import os
import struct
import subprocess
import sys
import tempfile


def read_mrc(path):
    with open(path, "rb") as f:
        head = f.read(1024)
        nx, ny, nz, mode = struct.unpack("<4i", head[:16])
        if mode != 2:
            sys.exit(f"{path}: MRC mode {mode}, expected 2 (float32)")
        next_bytes = struct.unpack("<i", head[92:96])[0]
        f.seek(1024 + next_bytes)
        a = array.array("f")
        a.frombytes(f.read(nx * ny * nz * 4))
    if sys.byteorder != "little":
        a.byteswap()
    return nx, a


def masked_cc(a, b, m):
    sw = sum(m)
    ma = sum(x * w for x, w in zip(a, m)) / sw
    mb = sum(x * w for x, w in zip(b, m)) / sw
    sab = saa = sbb = 0.0
    for x, y, w in zip(a, b, m):
        dx, dy = x - ma, y - mb
        sab += w * dx * dy
        saa += w * dx * dx
        sbb += w * dy * dy
    return sab / math.sqrt(saa * sbb)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/cryosplat")
    ap.add_argument("--gt", required=True)
    ap.add_argument("maps", nargs="+")
    args = ap.parse_args()
    _, gt = read_mrc(args.gt)
    with tempfile.TemporaryDirectory() as tmp:
        mask_path = os.path.join(tmp, "mask.mrc")
        thr = 0.1 * max(gt)
        subprocess.run([args.bin, "mask", args.gt, "-o", mask_path, "--threshold", repr(thr), "--extend", "3",
                        "--soft-edge", "5", "--lowpass", "none", "-q"], check=True, stdout=subprocess.DEVNULL)
        _, mask = read_mrc(mask_path)
        print("| map | FSC 0.5 | FSC 0.143 | mean FSC, shells 1–D/2 | real-space cc in the mask |")
        print("|---|---|---|---|---|")
        for m in args.maps:
            out = subprocess.run([args.bin, "fsc", m, args.gt, "--mask", mask_path, "--json"], check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out)
            half = r["box"] // 2
            curve = [c["fsc_masked"] for c in r["curve"] if 1 <= c["shell"] <= half]
            _, v = read_mrc(m)
            cc = masked_cc(v, gt, mask)
            res = [f"{r[k]:.2f} Å" if isinstance(r[k], (int, float)) else str(r.get("resolution_details", {}).get(k, r[k]))
                   for k in ("resolution_05", "resolution_0143")]
            print(f"| {m} | {res[0]} | {res[1]} | "
                  f"{sum(curve) / len(curve):.3f} | {cc:.3f} |")


if __name__ == "__main__":
    main()
