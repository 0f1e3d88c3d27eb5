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

With `--particle-jackknife K`, the standard error is also read a second way, from the particles
instead of the Fourier components: the particles are dealt into K groups (index modulo K), each
group is left out in turn (`backproject --subset`, the halves kept as the file labels them), the
estimate is read again from `fsc --cross-validate` with the Gaussian half maps unchanged, and the
spread of those K estimates gives a delete-one-group jackknife error that follows the images'
noise alone (no structure of the Fourier components enters it). The table then has both errors
and both ratios, and a last block gives, per set (folders of one name, noise realisations), the
scatter of the estimate's error over its realisations beside the root mean square of each
standard error.

Needs numpy and mrcfile (a virtual environment outside the repository).
Usage: tools/estimate_error.py [--bin target/release/cryosplat] [--particle-jackknife K] FOLDER...
"""

import argparse
import collections
import json
import os
import shutil
import tempfile

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


def estimate(binary, half, bp, mask_path):
    """The estimate and its (wedge) standard error per shell, and the last shell estimated."""
    j = json.loads(sh([binary, "-q", "fsc", *half, "--mask", mask_path, "--cross-validate", *bp, "--json"]))
    cv = j["cross_validated"]
    return np.array(cv["full_vs_truth"]), np.array(cv["standard_error"]), cv["last_shell"]


def particle_jackknife(binary, folder, half, mask_path, k):
    """Per shell, the delete-one-group jackknife error of the estimate over `k` groups of
    particles (index modulo `k`), each left out of both backprojections in turn."""
    star = os.path.join(folder, "sim", "particles.star")
    n = json.loads(sh([binary, "-q", "info", star, "--json"]))["particles"]
    work = tempfile.mkdtemp(prefix="jackknife-")
    try:
        estimates = []
        for g in range(k):
            subset = os.path.join(work, "subset.txt")
            with open(subset, "w") as f:
                f.write("\n".join(str(i) for i in range(n) if i % k != g) + "\n")
            out = os.path.join(work, "bp")
            sh([binary, "-q", "backproject", star, "--subset", subset, "-o", out, "--no-postprocess", "--overwrite"])
            # Its run.json records a selection of the halves, which `fsc --cross-validate` would
            # refuse as other halves than the Gaussian maps'; a subset of the same halves shares
            # no image with the other half, so the record is removed.
            os.remove(os.path.join(out, "run.json"))
            estimates.append(estimate(binary, half, [os.path.join(out, f"half_map_{h}.mrc") for h in "ab"], mask_path)[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    e = np.array(estimates)
    return np.sqrt((k - 1) / k * ((e - e.mean(0)) ** 2).sum(0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "cryosplat"))
    ap.add_argument("--particle-jackknife", type=int, default=0, metavar="K",
                    help="also read the standard error from K groups of particles left out in turn")
    ap.add_argument("folders", nargs="+")
    a = ap.parse_args()
    k = a.particle_jackknife
    ratios, ratios_p, by_set = [], [], collections.defaultdict(list)
    if k:
        print("| folder | shell | estimate | truth | error (wedges) | (estimate − truth) / error | error (particles) | (estimate − truth) / error |")
        print("|---|---|---|---|---|---|---|---|")
    else:
        print("| folder | shell | estimate | truth | standard error | (estimate − truth) / error |")
        print("|---|---|---|---|---|---|")
    for folder in a.folders:
        gt_path = os.path.join(folder, "sim", "gt.mrc")
        mask_path = os.path.join(folder, "mask_gt.mrc")
        if not os.path.exists(mask_path):
            sh([a.bin, "-q", "mask", gt_path, "-o", mask_path])
        half = [os.path.join(folder, "gs", f"half_map_{h}.mrc") for h in "ab"]
        bp = [os.path.join(folder, "bp", f"half_map_{h}.mrc") for h in "ab"]
        c, se, last = estimate(a.bin, half, bp, mask_path)
        g = 0.5 * (read(half[0]) + read(half[1]))
        truth = pooled_truth(g, read(gt_path), read(mask_path), last)
        shell = next((n for n in range(2, last + 1) if truth[n] < 0.5), None)
        if shell is None or se[shell] <= 0:
            print(f"| {folder} | — | | | | the truth stays above 0.5, or no estimate there |")
            continue
        err = c[shell] - truth[shell]
        r = err / se[shell]
        ratios.append(r)
        row = f"| {folder} | {shell} | {c[shell]:.3f} | {truth[shell]:.3f} | {se[shell]:.3f} | {r:+.2f} |"
        if k:
            sp = particle_jackknife(a.bin, folder, half, mask_path, k)[shell]
            ratios_p.append(err / sp)
            by_set[os.path.basename(os.path.normpath(folder))].append((err, se[shell], sp))
            row += f" {sp:.3f} | {err / sp:+.2f} |"
        print(row, flush=True)
    if len(ratios) > 1:
        tail = f" mean {np.mean(ratios_p):+.2f}, sd {np.std(ratios_p):.2f} |" if k else ""
        print(f"| {len(ratios)} folders | | | | | mean {np.mean(ratios):+.2f}, sd {np.std(ratios):.2f} |" + (" |" + tail if k else ""))
    if k and any(len(v) > 1 for v in by_set.values()):
        print()
        print("| set | realisations | sd of (estimate − truth) | rms error (wedges) | rms error (particles) |")
        print("|---|---|---|---|---|")
        for name, v in sorted(by_set.items()):
            if len(v) > 1:
                e, sw, sp = np.array(v).T
                rms = lambda x: np.sqrt(np.mean(x * x))
                print(f"| {name} | {len(v)} | {np.std(e, ddof=1):.3f} | {rms(sw):.3f} | {rms(sp):.3f} |")


if __name__ == "__main__":
    main()
