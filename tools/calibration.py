#!/usr/bin/env python3
"""Calibration of the reported resolution on the simulation matrix's finished runs.

For each set under WORK (the folders `tools/science_matrix.py` leaves: SET/sim/gt.mrc,
SET/backproject/ and SET/VARIANT/ with half_map_a.mrc and half_map_b.mrc), prints, all unmasked:
- the 0.5 crossing of the full map's FSC against the ground truth (what the reported resolution
  should predict);
- the 0.143 crossing of the half-map FSC (the gold-standard figure);
- a cross-validated estimate: each Gaussian half map against the *other* half's backprojection,
  divided by the square root of the backprojection halves' FSC, estimates each half's
  correlation with the truth (the halves share no data, so a bias both Gaussian halves share
  does not enter); the full map's correlation with the truth follows as
  rho * sqrt(2 / (1 + FSC_halves)), read at 0.5. Shells where the backprojection halves' FSC is
  below --cut carry no estimate (0).

Needs numpy and mrcfile (install them in a virtual environment outside the repository).
Usage: tools/calibration.py WORK VARIANT [--cut C] [--bp FOLDER]

`--bp` names the folder of each set whose half maps serve as the backprojection (default
`backproject`, the matrix's own; another binary's backprojections can be written beside it).
"""

import argparse
import os

import mrcfile
import numpy as np


def read(path):
    return mrcfile.open(path, permissive=True).data.astype(np.float64)


def shells(d):
    k = np.fft.fftfreq(d) * d
    kz, ky, kx = np.meshgrid(k, k, np.fft.rfftfreq(d) * d, indexing="ij")
    return np.round(np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)).astype(int)


def fsc(a, b, sh, n):
    fa, fb = np.fft.rfftn(a), np.fft.rfftn(b)
    num = np.bincount(sh.ravel(), (fa * np.conj(fb)).real.ravel(), minlength=n + 1)[: n + 1]
    da = np.bincount(sh.ravel(), (abs(fa) ** 2).ravel(), minlength=n + 1)[: n + 1]
    db = np.bincount(sh.ravel(), (abs(fb) ** 2).ravel(), minlength=n + 1)[: n + 1]
    return num / np.sqrt(da * db + 1e-30)


def crossing(curve, t):
    for i in range(1, len(curve)):
        if curve[i] < t:
            x0, x1 = curve[i - 1], curve[i]
            return i - 1 + ((x0 - t) / (x0 - x1) if x0 != x1 else 0.0)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("variant")
    ap.add_argument("--cut", type=float, default=0.0)
    ap.add_argument("--bp", default="backproject")
    a = ap.parse_args()
    print(f"| set | {a.variant}: vs truth 0.5 (Å) | half-map 0.143 (Å) | ratio | cross-validated 0.5 (Å) | ratio |")
    print("|---|---|---|---|---|---|")
    for name in sorted(os.listdir(a.work)):
        base = os.path.join(a.work, name)
        if not os.path.exists(os.path.join(base, a.variant, "half_map_a.mrc")):
            continue
        gt_path = os.path.join(base, "sim", "gt.mrc")
        gt = read(gt_path)
        d = gt.shape[0]
        n, sh = d // 2, shells(d)
        length = d * float(mrcfile.open(gt_path).voxel_size.x)
        ga, gb = (read(os.path.join(base, a.variant, f"half_map_{h}.mrc")) for h in "ab")
        ba, bb = (read(os.path.join(base, a.bp, f"half_map_{h}.mrc")) for h in "ab")
        truth = fsc((ga + gb) / 2, gt, sh, n)
        halves = np.clip(fsc(ga, gb, sh, n), 0, 1)
        f_bb = fsc(ba, bb, sh, n)
        cross = 0.5 * (fsc(ga, bb, sh, n) + fsc(gb, ba, sh, n))
        rho = np.clip(cross / np.sqrt(np.clip(f_bb, 1e-3, None)), 0, 1)
        rho[f_bb < a.cut] = 0
        predicted = rho * np.sqrt(2 / (1 + halves))
        res = [None if x is None else length / x for x in (crossing(truth, 0.5), crossing(halves, 0.143), crossing(predicted, 0.5))]
        t, h, c = res
        f = lambda v: "Nyquist" if v is None else f"{v:.2f}"
        r = lambda v: "—" if v is None or t is None else f"{v / t:.2f}"
        print(f"| {name} | {f(t)} | {f(h)} | {r(h)} | {f(c)} | {r(c)} |")


if __name__ == "__main__":
    main()
