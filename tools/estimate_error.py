#!/usr/bin/env python3
"""Is the cross-validated estimate's error what its standard error says, where it decides?

For each folder given (holding `gs/` with the Gaussian half maps, `bp/` with a `backproject` of
the same particles and `sim/gt.mrc`, as `tools/noise_realisations.py` and
`tools/science_matrix.py` lay them out once a backprojection is added), the estimate and its
standard error per shell are read from `cryosplat fsc HALF_A HALF_B --cross-validate BP_A BP_B
--json`, with the truth's automatic mask from `cryosplat mask` for all four maps. The map's FSC
against the truth is made under the same mask, its shell sums pooled with the neighbouring
shells' as the estimate's are (`POOL` of `cryosplat_core::crossval`). At the first shell where
that truth falls below 0.5 (where the figure is decided), prints the estimate, the truth, the
standard error and the error over the standard error; the last line gives the mean and standard
deviation of that ratio over the folders (an unbiased estimate with a right standard error:
about 0 and 1).

Needs numpy and mrcfile (a virtual environment outside the repository).
Usage: tools/estimate_error.py [--bin target/release/cryosplat] FOLDER...
"""

import argparse
import json
import os

import mrcfile
import numpy as np

from toolrun import sh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POOL = 1


def read(path):
    with mrcfile.open(path, permissive=True) as m:
        return m.data.astype(np.float64)


def pooled_truth(g, t, mask, last):
    """Per shell, the FSC of `g` against `t` (both times `mask`), each shell's sums pooled with
    those of its `POOL` neighbours on either side within shells 1..=last."""
    d = mask.shape[0]
    f = np.fft.fftfreq(d) * d
    z, y, x = np.meshgrid(f, f, f, indexing="ij")
    shell = np.rint(np.sqrt(x * x + y * y + z * z)).astype(int).ravel()
    fg, ft = np.fft.fftn(g * mask).ravel(), np.fft.fftn(t * mask).ravel()
    sums = [np.bincount(shell, (p * np.conj(q)).real)[: d // 2 + 1] for p, q in ((fg, ft), (fg, fg), (ft, ft))]
    truth = np.ones(d // 2 + 1)
    for n in range(1, last + 1):
        gt, gg, tt = (s[max(1, n - POOL):min(last, n + POOL) + 1].sum() for s in sums)
        truth[n] = gt / np.sqrt(gg * tt)
    return truth


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
            sh([a.bin, "-q", "mask", gt_path, "-o", mask_path])
        half = [os.path.join(folder, "gs", f"half_map_{h}.mrc") for h in "ab"]
        bp = [os.path.join(folder, "bp", f"half_map_{h}.mrc") for h in "ab"]
        j = json.loads(sh([a.bin, "-q", "fsc", *half, "--mask", mask_path, "--cross-validate", *bp, "--json"]))
        cv = j["cross_validated"]
        c, se, last = np.array(cv["full_vs_truth"]), np.array(cv["standard_error"]), cv["last_shell"]
        g = 0.5 * (read(half[0]) + read(half[1]))
        truth = pooled_truth(g, read(gt_path), read(mask_path), last)
        shell = next((n for n in range(2, last + 1) if truth[n] < 0.5), None)
        if shell is None or se[shell] <= 0:
            print(f"| {folder} | — | | | | the truth stays above 0.5, or no estimate there |")
            continue
        r = (c[shell] - truth[shell]) / se[shell]
        ratios.append(r)
        print(f"| {folder} | {shell} | {c[shell]:.3f} | {truth[shell]:.3f} | {se[shell]:.3f} | {r:+.2f} |")
    if len(ratios) > 1:
        print(f"| {len(ratios)} folders | | | | | mean {np.mean(ratios):+.2f}, sd {np.std(ratios):.2f} |")


if __name__ == "__main__":
    main()
