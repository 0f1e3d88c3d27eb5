#!/usr/bin/env python3
"""How far the reported resolution of one simulated set moves between noise realisations.

A set of `science_matrix.py` or `symmetry_matrix.py` is simulated again with other seeds (the
same model, box, pixel size, particle count, SNR and envelope: the same truth, other poses,
shifts, defoci and noise), each realisation is reconstructed with the defaults (`reconstruct`,
with the set's point group for a symmetric set), and one Markdown row per realisation gives the
truth (the map's FSC against `gt.mrc` at 0.5, auto-masked, as the matrices read it; also of the
Gaussian map alone, `map_gaussians.mrc`, which the half maps and the estimate describe), the
resolution the run reports (FSC 0.143), their ratio (below 1: optimistic), the half maps' own
claim, the range the run gives for its cross-validated estimate (one standard error either way)
and whether the truth lies inside it. A last row gives the mean and standard deviation of the
ratio over the realisations (a bound, where the run reports Nyquist or "at least", counted at its value).

A set whose reported figure misses the truth by a few percent on one realisation and by as much
the other way on another has no bias to correct there: the miss is the estimate's noise.

Usage: tools/noise_realisations.py SET [--seeds 11,12,...] [--bin target/release/cryosplat]
                                   [--work DIR] [--threads N] [--reuse]

Only the Python standard library is used.
"""

import argparse
import json
import os
import statistics
import sys

import science_matrix
import symmetry_matrix
from toolrun import sh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def set_spec(name):
    """(simulate arguments without output and seed, point group or None, Å/px) of a set of
    either matrix."""
    every = {}
    for group in science_matrix.SET_GROUPS.values():
        every.update(group)
    if name in every:
        model, box, apix, count, snr, extra = every[name]
        args = [os.path.join(science_matrix.MODELS, model), "--box", str(box), "--apix", str(apix),
                "--count", str(count), "--snr", str(snr)] + extra
        return args, None, apix
    point_group_sets = dict(symmetry_matrix.SETS, **symmetry_matrix.SETS_HOLDOUT)
    if name in point_group_sets:
        group, box, apix, count, snr, _seed, offset = point_group_sets[name]
        args = [symmetry_matrix.MODEL, "--box", str(box), "--apix", str(apix), "--count", str(count),
                "--snr", str(snr), "--bfactor", "50", "--max-shift", "3" if apix < 2 else "2", "--sym", group,
                "--sym-offset", offset]
        return args, group, apix
    sys.exit(f"no set {name} in science_matrix.py or symmetry_matrix.py")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("set")
    ap.add_argument("--seeds", default="11,12,13,14,15,16")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "cryosplat"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "realisations"))
    ap.add_argument("--threads", default="2")
    ap.add_argument("--reuse", action="store_true", help="keep finished simulations and runs")
    a = ap.parse_args()
    sim_args, group, apix = set_spec(a.set)
    head = ["seed", "truth (Å)", "truth, Gaussians alone (Å)", "reported (Å)", "ratio", "half maps alone (Å)", "range (Å)", "truth in range"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    ratios = []
    for seed in a.seeds.split(","):
        sim = os.path.join(a.work, a.set, f"seed{seed}", "sim")
        out = os.path.join(a.work, a.set, f"seed{seed}", "gs")
        if not (a.reuse and os.path.exists(os.path.join(sim, "gt.mrc"))):
            sh([a.bin, "-q", "simulate"] + sim_args + ["-o", sim, "--overwrite", "--seed", seed, "--threads", a.threads])
        run_path = os.path.join(out, "run.json")
        if not (a.reuse and os.path.exists(run_path) and json.load(open(run_path)).get("finished")):
            cmd = [a.bin, "-q", "reconstruct", os.path.join(sim, "particles.star"), "-o", out, "--overwrite",
                   "--threads", a.threads, "--checkpoint-every", "0", "--no-postprocess"]
            sh(cmd + (["--sym", group] if group else []))
        run = json.load(open(run_path))

        def truth_of(map_path):
            # FSC 0.5 against the ground truth, auto-masked, as the matrices read it.
            j = json.loads(sh([a.bin, "-q", "fsc", map_path, os.path.join(sim, "gt.mrc"), "--json"]))
            return science_matrix.res_value(science_matrix.detail(j, "resolution_05"), apix)

        truth = truth_of(os.path.join(out, "map.mrc"))
        alone_map = os.path.join(out, "map_gaussians.mrc")
        truth_g = truth_of(alone_map) if os.path.exists(alone_map) else None
        reported = science_matrix.res_value(run["resolution_details"]["resolution_0143"], apix)
        alone = science_matrix.res_value(run["history"][-1].get("half_map_0143"), apix)
        cv = run.get("cross_validated") or {}
        rng = cv.get("range_0143") or {}
        finer, coarser = (science_matrix.res_value(rng.get(end), apix) for end in ("finer", "coarser"))
        ratio = science_matrix.claim_ratio(reported, truth)
        if ratio is not None:
            # A bound (Nyquist reported, or the truth at Nyquist) counts at its value.
            ratios.append(float(ratio))
        inside = "—"
        if isinstance(truth, float) and (finer is not None or coarser is not None):
            lo = finer if finer is not None else 0.0
            hi = coarser if coarser is not None else float("inf")
            inside = "inside" if lo <= truth <= hi else ("finer" if truth < lo else "coarser")

        def f(x):
            return science_matrix.fmt(x)

        range_text = f"{f(finer) if finer else '…'}–{f(coarser) if coarser else '…'}" if rng else "—"
        row = [seed, f(truth), f(truth_g), f(reported), f(ratio), f(alone), range_text, inside]
        print("| " + " | ".join(row) + " |", flush=True)
    if len(ratios) > 1:
        mean, sd = statistics.mean(ratios), statistics.stdev(ratios)
        within = sum(abs(r - 1) <= 0.03 for r in ratios)
        print(f"| mean ± sd | | | | {mean:.3f} ± {sd:.3f} | | | within 3%: {within} of {len(ratios)} |")


if __name__ == "__main__":
    main()
