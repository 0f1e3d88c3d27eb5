#!/usr/bin/env python3
"""Half-map agreement against the truth, per shell and per cone of directions.

For a run folder (half_map_a.mrc, half_map_b.mrc) and its ground truth, prints every third
shell in four cones of Fourier directions by the angle to k_z (|cos| below 0.5, 0.5–0.8,
0.8–0.95, above 0.95; views that cluster around z leave the last cone barely measured): the
half maps' FSC F, the full map's FSC against the truth it predicts, sqrt(2F/(1+F)), and the
full map's (the mean of the halves) measured FSC against the truth. Unmasked.

With --axes, prints instead, for cones of 30° about k_x, k_y and k_z, where the map's
(map.mrc) FSC against the truth crosses 0.5 and where the half maps' FSC crosses 0.143 (Å;
Nyquist when a curve stays above): how much poorer a map is along the axis its views gather
about than the FSC over all directions shows.

Needs numpy and mrcfile (install them in a virtual environment outside the repository).
Usage: tools/cone_fsc.py RUN GT [--axes]
"""

import sys

import mrcfile
import numpy as np

from calibration import crossing, read

CONES = [(0.0, 0.5), (0.5, 0.8), (0.8, 0.95), (0.95, 1.01)]


def axes(run, gt_path):
    """Crossings per 30° cone about each axis (see the module docs)."""
    gt = read(gt_path)
    d = gt.shape[0]
    apix = float(mrcfile.open(gt_path).voxel_size.x)
    k = np.fft.fftfreq(d) * d
    kz, ky, kx = np.meshgrid(k, k, np.fft.rfftfreq(d) * d, indexing="ij")
    r = np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)
    shell = np.round(r).astype(int)
    n = d // 2
    # Components of the half-space stand for their conjugates too: weight 2 off the kx = 0 plane.
    weight = np.where(kx == 0, 1.0, 2.0)
    maps = {name: np.fft.rfftn(read(f"{run}/{name}.mrc")) for name in ("map", "half_map_a", "half_map_b")}
    ft = np.fft.rfftn(gt)

    def curve(x, y, sel):
        def s(v):
            return np.bincount(shell[sel], (weight * v)[sel], minlength=n + 1)[: n + 1]
        return s((x * np.conj(y)).real) / np.sqrt(s(abs(x) ** 2) * s(abs(y) ** 2) + 1e-30)

    def angstrom(c, t):
        x = crossing(c[: n + 1], t)
        return f"{d * apix / x:.2f}" if x else f"Nyquist ({2 * apix:.2f})"

    print("cone (30° about) | map vs truth, FSC 0.5 (Å) | half maps, FSC 0.143 (Å)")
    for name, axis in (("k_x", kx), ("k_y", ky), ("k_z", kz)):
        sel = np.abs(axis) >= np.cos(np.radians(30)) * np.maximum(r, 1e-9)
        sel[0, 0, 0] = True
        truth = angstrom(curve(maps["map"], ft, sel), 0.5)
        half = angstrom(curve(maps["half_map_a"], maps["half_map_b"], sel), 0.143)
        print(f"{name} | {truth} | {half}")


def main():
    if "--axes" in sys.argv:
        args = [a for a in sys.argv[1:] if a != "--axes"]
        return axes(args[0], args[1])
    run, gt_path = sys.argv[1], sys.argv[2]
    gt = read(gt_path)
    d = gt.shape[0]
    k = np.fft.fftfreq(d) * d
    kz, ky, kx = np.meshgrid(k, k, np.fft.rfftfreq(d) * d, indexing="ij")
    r = np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)
    shell = np.round(r).astype(int)
    cos_z = np.abs(kz) / np.maximum(r, 1e-9)
    ga, gb = read(f"{run}/half_map_a.mrc"), read(f"{run}/half_map_b.mrc")
    fa, fb, fm, ft = (np.fft.rfftn(x) for x in (ga, gb, (ga + gb) / 2, gt))
    length = d * float(mrcfile.open(gt_path).voxel_size.x)

    def corr(x, y, sel):
        num = (x[sel] * np.conj(y[sel])).real.sum()
        return num / np.sqrt((abs(x[sel]) ** 2).sum() * (abs(y[sel]) ** 2).sum() + 1e-30)

    print("shell (Å) | per cone of |cos| to k_z " + ", ".join(f"{lo}-{min(hi, 1)}" for lo, hi in CONES)
          + ": F / expected / measured")
    for s in range(4, d // 2 + 1, 3):
        row = []
        for lo, hi in CONES:
            sel = (cos_z >= lo) & (cos_z < hi) & (shell == s)
            f = corr(fa, fb, sel)
            row.append(f"{f:.2f} / {np.sqrt(max(2 * f / (1 + f), 0)):.2f} / {corr(fm, ft, sel):.2f}")
        print(f"{s} ({length / s:.2f}) | " + " | ".join(row))


if __name__ == "__main__":
    main()
