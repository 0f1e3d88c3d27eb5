#!/usr/bin/env python3
"""Is the cross-validated estimate's error what its standard error says, where it decides?

For each folder given (holding `gs/` with the Gaussian half maps, `bp/` with a `backproject` of
the same particles and `sim/gt.mrc`, as `tools/noise_realisations.py` and
`tools/science_matrix.py` lay them out once a backprojection is added), a copy of the estimate of
`cryosplat_core::crossval` in numpy (every shell's sums pooled with its neighbours', the
delete-one-wedge jackknife of 16 wedges about the x axis, all maps multiplied by the truth's
automatic mask from `cryosplat mask`) is compared with the map's FSC against the truth under the
same mask and pooling. At the first shell where that truth falls below 0.5 (where the figure is
decided), prints the estimate, the truth, the standard error and the error over the standard
error; the last line gives the mean and standard deviation of that ratio over the folders (an
unbiased estimate with a right standard error: about 0 and 1).

The copy differs from the tool's reading by its mask (the truth's, not the half maps') and is
for C1 runs (the tool deals a point group's orbits into the jackknife groups).

Needs numpy and mrcfile (a virtual environment outside the repository).
Usage: tools/estimate_error.py [--bin target/release/cryosplat] FOLDER...
"""

import argparse
import os
import subprocess

import mrcfile
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUPS = 16
POOL = 1
PAIRS = {"ga_gb": ("ga", "gb"), "ga_ga": ("ga", "ga"), "gb_gb": ("gb", "gb"), "ma_mb": ("ma", "mb"),
         "ma_ma": ("ma", "ma"), "mb_mb": ("mb", "mb"), "ga_mb": ("ga", "mb"), "gb_ma": ("gb", "ma"),
         "g_t": ("g", "t"), "g_g": ("g", "g"), "t_t": ("t", "t")}


def read(path):
    with mrcfile.open(path, permissive=True) as m:
        return m.data.astype(np.float64), float(m.voxel_size.x)


def shell_sums(maps, mask):
    """Per shell and jackknife wedge, the sums of every pair in PAIRS over the half spectrum."""
    d = mask.shape[0]
    f = np.fft.fftfreq(d) * d
    z, y, x = np.meshgrid(f, f, np.arange(d // 2 + 1), indexing="ij")
    shell = np.rint(np.sqrt(x * x + y * y + z * z)).astype(int)
    weight = np.where((x == 0) | (x == d // 2), 1.0, 2.0)
    wedge = np.minimum(((np.arctan2(y, z) + np.pi) / (2 * np.pi) * GROUPS).astype(int), GROUPS - 1)
    keep = (shell <= d // 2).ravel()
    index = (shell * GROUPS + wedge).ravel()[keep]
    weight = weight.ravel()[keep]
    spectra = {k: np.fft.rfftn(v * mask).ravel()[keep] for k, v in maps.items()}
    n = (d // 2 + 1) * GROUPS
    return {k: np.bincount(index, (spectra[p] * np.conj(spectra[q])).real * weight, minlength=n)[:n]
            .reshape(d // 2 + 1, GROUPS) for k, (p, q) in PAIRS.items()}


def pooled(v, last):
    out = np.zeros_like(v)
    for n in range(1, last + 1):
        out[n] = v[max(1, n - POOL):min(last, n + POOL) + 1].sum()
    return out


def estimate(s, last):
    """The estimate C per shell (NaN where the backprojections' pooled FSC is not positive)."""
    p = {k: pooled(v, last) for k, v in s.items()}
    with np.errstate(all="ignore"):
        corr = lambda a, b, c: p[a] / np.sqrt(p[b] * p[c])  # noqa: E731
        f_m = corr("ma_mb", "ma_ma", "mb_mb")
        x = 0.5 * (corr("ga_mb", "ga_ga", "mb_mb") + corr("gb_ma", "gb_gb", "ma_ma"))
        f_g = corr("ga_gb", "ga_ga", "gb_gb")
        c = x / np.sqrt(f_m) * np.sqrt(2 / (1 + np.maximum(f_g, 0)))
    c[~(f_m > 0)] = np.nan
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "cryosplat"))
    ap.add_argument("folders", nargs="+")
    a = ap.parse_args()
    ratios = []
    print("| folder | shell | estimate | truth | standard error | (estimate − truth) / error |")
    print("|---|---|---|---|---|---|")
    for folder in a.folders:
        gt_path = os.path.join(folder, "sim", "gt.mrc")
        mask_path = os.path.join(folder, "mask_gt.mrc")
        if not os.path.exists(mask_path):
            subprocess.run([a.bin, "-q", "mask", gt_path, "-o", mask_path], check=True)
        t, _ = read(gt_path)
        mask, _ = read(mask_path)
        ga, gb, ma, mb = (read(os.path.join(folder, *p))[0] for p in (
            ("gs", "half_map_a.mrc"), ("gs", "half_map_b.mrc"), ("bp", "half_map_a.mrc"), ("bp", "half_map_b.mrc")))
        s = shell_sums(dict(ga=ga, gb=gb, ma=ma, mb=mb, g=0.5 * (ga + gb), t=t), mask)
        last = t.shape[0] // 2 - 3  # the backprojection's last three shells carry no estimate
        total = {k: v.sum(1) for k, v in s.items()}
        c = estimate(total, last)
        without = np.array([estimate({k: total[k] - v[:, g] for k, v in s.items()}, last) for g in range(GROUPS)])
        without = np.nan_to_num(without, nan=0.0)
        se = np.sqrt((GROUPS - 1) / GROUPS * ((without - without.mean(0)) ** 2).sum(0))
        p = {k: pooled(total[k], last) for k in ("g_t", "g_g", "t_t")}
        with np.errstate(all="ignore"):
            truth = p["g_t"] / np.sqrt(p["g_g"] * p["t_t"])
        shell = next((n for n in range(2, last + 1) if truth[n] < 0.5), None)
        if shell is None or not np.isfinite(c[shell]) or se[shell] <= 0:
            print(f"| {folder} | — | | | | the truth stays above 0.5, or no estimate there |")
            continue
        r = (c[shell] - truth[shell]) / se[shell]
        ratios.append(r)
        print(f"| {folder} | {shell} | {c[shell]:.3f} | {truth[shell]:.3f} | {se[shell]:.3f} | {r:+.2f} |")
    if len(ratios) > 1:
        print(f"| {len(ratios)} folders | | | | | mean {np.mean(ratios):+.2f}, sd {np.std(ratios):.2f} |")


if __name__ == "__main__":
    main()
