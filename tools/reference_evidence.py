#!/usr/bin/env python3
"""Is the reported figure's error the evidence of the backprojections it is read against?

The cross-validated estimate reads each Gaussian half map against a backprojection of the other
half's images. If its error at the crossing is that backprojection's noise, a reference holding
k times the images should shrink the error by about √k, and nothing else should change. This
script tries it on run folders laid out as `tools/estimate_error.py` reads them (`gs/` with the
Gaussian half maps, `bp/` with a `backproject` of the same particles, `sim/` with `gt.mrc` and
`meta.json`; the folder's name is a set of `science_matrix.py` or `symmetry_matrix.py`): for
each folder and each k, a new simulation of the same set (the same truth) with k times the
particles and another seed is backprojected, and `cryosplat fsc HALF_A HALF_B --cross-validate
REF_A REF_B` reads the Gaussian half maps against it, with everything else as `reconstruct`
reports (auto mask, the half-error margin). k = 0 stands for the run's own backprojection (the figure the run reported).

The reference shares no image with either Gaussian half, so it is a valid cross-validation
reference for both; its `run.json` (which records other halves than the maps') is removed so
that `fsc` does not refuse it. Its particle stack is deleted once backprojected.

One Markdown row per folder gives the truth (`map.mrc` against `gt.mrc` at FSC 0.5, auto-masked,
as the matrices read it) and, per k, the reported figure over the truth (below 1: optimistic)
and the half width of the printed one-error range over the truth; then per set and k the mean
and standard deviation of the ratio and how many runs lie within 3%.

Usage: tools/reference_evidence.py [--k 1,9] [--seed-offset 1000] [--work DIR]
                                   [--bin target/release/cryosplat] FOLDER...

Only the Python standard library is used.
"""

import argparse
import collections
import json
import os
import statistics

import noise_realisations
import science_matrix
from toolrun import sh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reference(binary, folder, name, sim_args, sym, k, offset, work):
    """Folder of a backprojection of k times the folder's particles, simulated afresh (set
    `name`, simulated with `sim_args`, point-group arguments `sym`)."""
    meta = json.load(open(os.path.join(folder, "sim", "meta.json")))
    at = sim_args.index("--count") + 1
    sim_args = sim_args[:at] + [str(k * int(sim_args[at]))] + sim_args[at + 1:]
    seed = offset + 100 * k + int(meta["seed"])
    base = os.path.join(work, f"k{k}-seed{seed}", name)
    bp = os.path.join(base, "bp")
    if not os.path.exists(os.path.join(bp, "half_map_b.mrc")):
        sim = os.path.join(base, "sim")
        sh([binary, "-q", "simulate", *sim_args, "-o", sim, "--seed", str(seed), "--overwrite"])
        sh([binary, "-q", "backproject", os.path.join(sim, "particles.star"), "-o", bp, "--overwrite",
            "--no-postprocess", *sym])
        os.remove(os.path.join(sim, "particles.mrcs"))
    # It records other halves than the Gaussian maps' (it shares no image with them); removed
    # here, not only after backprojecting, so that a run stopped in between is mended.
    run_json = os.path.join(bp, "run.json")
    if os.path.exists(run_json):
        os.remove(run_json)
    return bp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", default="1,9", help="reference sizes, in multiples of the run's particles")
    ap.add_argument("--seed-offset", type=int, default=1000)
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "reference_evidence"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "cryosplat"))
    ap.add_argument("folders", nargs="+")
    a = ap.parse_args()
    ks = [0] + [int(x) for x in a.k.split(",")]
    head = ["folder", "truth (Å)"] + [f"k = {k}: reported / truth, range ±" for k in ks]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    by_set = collections.defaultdict(lambda: collections.defaultdict(list))
    for folder in a.folders:
        name = os.path.basename(os.path.normpath(folder))
        sim_args, group, apix = noise_realisations.set_spec(name)
        sym = ["--sym", group] if group else []
        gs = os.path.join(folder, "gs")
        tj = json.loads(sh([a.bin, "-q", "fsc", os.path.join(gs, "map.mrc"), os.path.join(folder, "sim", "gt.mrc"),
                            "--json", *sym]))
        truth = science_matrix.res_value(science_matrix.detail(tj, "resolution_05"), apix)
        cells = []
        for k in ks:
            bp = (os.path.join(folder, "bp") if k == 0
                  else reference(a.bin, folder, name, sim_args, sym, k, a.seed_offset, a.work))
            j = json.loads(sh([a.bin, "-q", "fsc", *(os.path.join(gs, f"half_map_{h}.mrc") for h in "ab"),
                               "--cross-validate", *(os.path.join(bp, f"half_map_{h}.mrc") for h in "ab"), "--json",
                               *sym]))
            reported = science_matrix.res_value(science_matrix.detail(j, "resolution_0143_limited"), apix)
            ratio = science_matrix.claim_ratio(reported, truth)
            rng = j["cross_validated"].get("range_0143") or {}
            half = None
            if type(truth) is float and rng.get("finer") and rng.get("coarser"):
                half = (rng["coarser"] - rng["finer"]) / 2 / truth
            # Bounds (a figure or truth at Nyquist) are shown but left out of the summary.
            if type(ratio) is float:
                text = f"{ratio:.3f}"
                by_set[name][k].append(ratio)
            elif ratio is None and reported is not None:
                # Both bounds (the truth at Nyquist, the figure at Nyquist or the estimate's
                # last shell): the figure itself, in Å.
                text = f"{science_matrix.fmt(reported)} Å"
            else:
                text = science_matrix.fmt(ratio)
            cells.append(f"{text}, ±{half:.3f}" if half is not None else text)
        print(f"| {folder} | {science_matrix.fmt(truth)} | " + " | ".join(cells) + " |", flush=True)
    if not by_set:
        return
    print()
    print("| set | k | runs | reported / truth, mean ± sd | within 3% | > 3% optimistic | > 3% pessimistic |")
    print("|---|---|---|---|---|---|---|")
    for name, per_k in sorted(by_set.items()):
        for k in ks:
            r = per_k.get(k, [])
            if not r:
                continue
            sd = statistics.stdev(r) if len(r) > 1 else 0.0
            print(f"| {name} | {k} | {len(r)} | {statistics.mean(r):.3f} ± {sd:.3f} | "
                  f"{sum(abs(x - 1) <= 0.03 for x in r)} | {sum(x < 0.97 for x in r)} | {sum(x > 1.03 for x in r)} |")


if __name__ == "__main__":
    main()
