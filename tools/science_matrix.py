#!/usr/bin/env python3
"""Judge a change to training, FSC or backprojection on simulations with a ground truth.

Simulates each set of the matrix (models, particle counts, SNR, B-factor envelopes, preferred
views) with `cryosplat simulate`, reconstructs it by backprojection and by Gaussian splatting in
each variant, and prints one Markdown table: the map's FSC against the ground truth (0.5,
unmasked and auto-masked), the resolution the run reports (0.143: the half-map FSC,
auto-masked and corrected, limited by the cross-validated estimate; where the limit applied, the
half maps' own claim in brackets), their ratio to the masked truth (how well the report predicts
the truth; 1 is ideal, below 1 is optimistic; "≤" where the report is Nyquist, a bound), the
low-frequency deficit (how far the map's unmasked FSC against the truth falls
below the backprojection's at any shell before the backprojection's falls below 0.5; 0 is
none), the run's own low-resolution check (the Gaussian map against a backprojection of the
same images; passed or FAILED with the worst estimated FSC against the truth), and the wall time.
A run that completes its map (the default) is judged twice: `map.mrc` (completed by the
backprojection) and `map_gaussians.mrc` (the Gaussian map alone, "Gaussians alone").

Usage: tools/science_matrix.py [--bin target/release/cryosplat] [--work DIR] [--sets small|mid|full|large|large-noisy|holdout|holdout2|holdout3|holdout4]
                               [--variants NAME,...] [--threads N]

Only the Python standard library is used. Models come from tests/data/models (bundled).
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "tests", "data", "models")

# name: (model, box, apix, particles, snr, extra simulate args)
SETS_SMALL = {
    "2XHE-1k-snr0.02-B50": ("2XHE.cif", 64, 2.0, 1000, 0.02, ["--bfactor", "50", "--max-shift", "3"]),
    "7DDO-4k-snr0.05": ("7DDO.pdb", 64, 2.2, 4000, 0.05, ["--max-shift", "2"]),
    "1A8O-2k-snr0.01-B100": ("1A8O.pdb", 48, 1.5, 2000, 0.01, ["--bfactor", "100"]),
    "8zpm-2k-snr0.1-prefview": ("8zpm.cif", 64, 2.0, 2000, 0.1, ["--preferred-orientation", "0,0,1,10"]),
}
# Between the small and the large sets: 3,000 to 10,000 particles per half (where
# `reconstruct --init auto` chooses the start).
SETS_MID = {
    "7DDO-10k-snr0.05": ("7DDO.pdb", 64, 2.2, 10000, 0.05, ["--max-shift", "2"]),
    "2XHE-10k-snr0.02-B50": ("2XHE.cif", 64, 2.0, 10000, 0.02, ["--bfactor", "50", "--max-shift", "3"]),
    "1A8O-6k-snr0.01-B100": ("1A8O.pdb", 48, 1.5, 6000, 0.01, ["--bfactor", "100"]),
    "7DDO-6k-snr0.005": ("7DDO.pdb", 64, 2.2, 6000, 0.005, ["--max-shift", "2"]),
    "7DDO-8k-snr0.005": ("7DDO.pdb", 64, 2.2, 8000, 0.005, ["--max-shift", "2"]),
    "7DDO-10k-snr0.005": ("7DDO.pdb", 64, 2.2, 10000, 0.005, ["--max-shift", "2"]),
    "7DDO-15k-snr0.005": ("7DDO.pdb", 64, 2.2, 15000, 0.005, ["--max-shift", "2"]),
    "2XHE-20k-snr0.02-B50": ("2XHE.cif", 64, 2.0, 20000, 0.02, ["--bfactor", "50"]),
}
# Boxes above 64 px with few particles per half, where the run's length is set by the minimum
# number of optimiser steps rather than by the number of particles.
SETS_LARGE = {
    "7DDO-3k-128-snr0.05": ("7DDO.pdb", 128, 1.1, 3000, 0.05, ["--max-shift", "2"]),
    "2XHE-2k-128-snr0.02-B50": ("2XHE.cif", 128, 1.0, 2000, 0.02, ["--bfactor", "50", "--max-shift", "3"]),
    "1A8O-2k-96-snr0.01-B100": ("1A8O.pdb", 96, 0.75, 2000, 0.01, ["--bfactor", "100"]),
    "8zpm-3k-96-snr0.02-prefview": ("8zpm.cif", 96, 1.2, 3000, 0.02, ["--preferred-orientation", "0,0,1,10"]),
}
# Noise-limited sets above 64 px (SNR 0.005–0.01, thousands of particles): the estimate's scatter
# where a shell is 1–2% in resolution near the crossing instead of 3–4% (BENCHMARKS.md, "Noise
# realisations above 64 px").
SETS_LARGE_NOISY = {
    "2XHE-8k-128-snr0.005": ("2XHE.cif", 128, 1.0, 8000, 0.005, ["--max-shift", "3"]),
    "7DDO-10k-128-snr0.005-B50": ("7DDO.pdb", 128, 1.1, 10000, 0.005, ["--bfactor", "50", "--max-shift", "2"]),
    "8zpm-6k-96-snr0.01-B30": ("8zpm.cif", 96, 1.2, 6000, 0.01, ["--bfactor", "30", "--max-shift", "2"]),
    "1A8O-12k-96-snr0.005": ("1A8O.pdb", 96, 0.75, 12000, 0.005, ["--max-shift", "1"]),
}
# Held out: sets the defaults were not chosen on, to check a rule measured on the sets above
# (models, sizes, SNRs and B-factors not used there).
SETS_HOLDOUT = {
    "8zpm-6k-snr0.02-B50": ("8zpm.cif", 64, 1.8, 6000, 0.02, ["--bfactor", "50", "--max-shift", "2"]),
    "2XHE-14k-snr0.01": ("2XHE.cif", 64, 2.0, 14000, 0.01, ["--max-shift", "2"]),
    "7DDO-2k-snr0.02-B30": ("7DDO.pdb", 64, 2.2, 2000, 0.02, ["--bfactor", "30", "--max-shift", "2"]),
    "1A8O-12k-snr0.005": ("1A8O.pdb", 48, 1.5, 12000, 0.005, ["--max-shift", "1"]),
}
# Sets first run after the cross-validated estimate's margin was chosen (BENCHMARKS.md, "The
# cross-validated estimate, masked"): a check of it on data it was not chosen on.
SETS_HOLDOUT2 = {
    "8zpm-10k-snr0.005-B30": ("8zpm.cif", 64, 1.8, 10000, 0.005, ["--bfactor", "30", "--max-shift", "2"]),
    "2XHE-4k-snr0.005": ("2XHE.cif", 64, 2.0, 4000, 0.005, ["--max-shift", "2"]),
    "7DDO-12k-snr0.01-prefview": ("7DDO.pdb", 64, 2.2, 12000, 0.01, ["--preferred-orientation", "0,0,1,10", "--max-shift", "2"]),
    "1A8O-4k-snr0.02-B50": ("1A8O.pdb", 48, 1.5, 4000, 0.02, ["--bfactor", "50", "--max-shift", "1"]),
}
# Held out a third time (issue 11): sets the estimate and its rules were never chosen or
# checked on (models, sizes, SNRs, envelopes and views not used above), read with
# `tools/noise_realisations.py SET --seeds 7,8,9`.
SETS_HOLDOUT3 = {
    "2XHE-5k-96-snr0.01-B30": ("2XHE.cif", 96, 1.3, 5000, 0.01, ["--bfactor", "30", "--max-shift", "2"]),
    "8zpm-8k-64-snr0.005": ("8zpm.cif", 64, 1.6, 8000, 0.005, ["--max-shift", "2"]),
    "1A8O-5k-64-snr0.01-B30": ("1A8O.pdb", 64, 1.1, 5000, 0.01, ["--bfactor", "30", "--max-shift", "1"]),
    "7DDO-6k-96-snr0.02-B50": ("7DDO.pdb", 96, 1.4, 6000, 0.02, ["--bfactor", "50", "--max-shift", "2"]),
    "2XHE-3k-64-snr0.05-B80": ("2XHE.cif", 64, 1.8, 3000, 0.05, ["--bfactor", "80", "--max-shift", "2"]),
    "8zpm-1k-64-snr0.1": ("8zpm.cif", 64, 2.0, 1000, 0.1, ["--max-shift", "2"]),
    "1A8O-20k-64-snr0.005-B50": ("1A8O.pdb", 64, 1.0, 20000, 0.005, ["--bfactor", "50", "--max-shift", "1"]),
    "7DDO-15k-96-snr0.005-prefview": ("7DDO.pdb", 96, 1.5, 15000, 0.005, ["--preferred-orientation", "0,0,1,10", "--max-shift", "2"]),
}
# Held out a fourth time (issue 11): fresh sets to test a reading chosen with SETS_HOLDOUT3 in
# view, read with `tools/noise_realisations.py SET --seeds 21,22`.
SETS_HOLDOUT4 = {
    "2XHE-7k-80-snr0.008-B40": ("2XHE.cif", 80, 1.5, 7000, 0.008, ["--bfactor", "40", "--max-shift", "2"]),
    "7DDO-4k-80-snr0.03": ("7DDO.pdb", 80, 1.6, 4000, 0.03, ["--max-shift", "2"]),
    "8zpm-12k-80-snr0.005-B20": ("8zpm.cif", 80, 1.4, 12000, 0.005, ["--bfactor", "20", "--max-shift", "2"]),
    "1A8O-8k-80-snr0.008-B60": ("1A8O.pdb", 80, 0.9, 8000, 0.008, ["--bfactor", "60", "--max-shift", "1"]),
    "7DDO-9k-64-snr0.01-prefview": ("7DDO.pdb", 64, 2.0, 9000, 0.01, ["--preferred-orientation", "0,0,1,10", "--max-shift", "2"]),
    "2XHE-2k-96-snr0.05": ("2XHE.cif", 96, 1.4, 2000, 0.05, ["--max-shift", "2"]),
}
SETS_FULL = dict(SETS_SMALL)
SETS_FULL.update({
    "7DDO-20k-snr0.005": ("7DDO.pdb", 64, 2.2, 20000, 0.005, ["--max-shift", "2"]),
    "2XHE-40k-snr0.02-B50": ("2XHE.cif", 64, 2.0, 40000, 0.02, ["--bfactor", "50"]),
})
# Every group of sets by its `--sets` name (`tools/noise_realisations.py` looks sets up here too).
SET_GROUPS = {"small": SETS_SMALL, "mid": SETS_MID, "full": SETS_FULL, "large": SETS_LARGE, "large-noisy": SETS_LARGE_NOISY,
              "holdout": SETS_HOLDOUT, "holdout2": SETS_HOLDOUT2, "holdout3": SETS_HOLDOUT3, "holdout4": SETS_HOLDOUT4}

# name: extra reconstruct args (None: backprojection)
VARIANTS = {
    "backproject": None,
    "gs-5ep-exp": ["--epochs", "5"],
    "gs-5ep-step": ["--epochs", "5", "--lr-schedule", "step"],
    "gs-min20k-exp": ["--min-steps", "20000"],
    "gs-default": [],
    "gs-no-completion": ["--no-completion"],
    "gs-init-bp": ["--init", "backprojection"],
    "gs-init-random": ["--init", "random"],
    "gs-init-auto": ["--init", "auto"],
    "gs-c2f-auto": ["--coarse-to-fine", "auto"],
    "gs-grow-auto": ["--grow", "auto"],
    "gs-min7500": ["--min-steps", "7500"],
    "gs-min10000": ["--min-steps", "10000"],
    "gs-min15000": ["--min-steps", "15000"],
    "gs-min5000": ["--min-steps", "5000"],
    "gs-min8889": ["--min-steps", "8889"],
    "gs-decay0.01": ["--lr-decay", "0.01"],
    "gs-avg0.2": ["--average-tail", "0.2"],
    "gs-avg0.1": ["--average-tail", "0.1"],
    "gs-min7071": ["--min-steps", "7071"],
    "gs-min10887": ["--min-steps", "10887"],
    "gs-avg0.4": ["--average-tail", "0.4"],
    "gs-avg0.3": ["--average-tail", "0.3"],
    "gs-lr0.002": ["--lr", "0.002"],
    "gs-lr0.0015": ["--lr", "0.0015"],
    "gs-min5000-decay0.03": ["--min-steps", "5000", "--lr-decay", "0.03"],
    "gs-min5000-decay0.01": ["--min-steps", "5000", "--lr-decay", "0.01"],
    "gs-min5000-lr2e-3": ["--min-steps", "5000", "--lr", "0.002"],
    "gs-grow-auto-min7500": ["--grow", "auto", "--min-steps", "7500"],
    "gs-g8000": ["--gaussians", "8000"],
    "gs-g15000": ["--gaussians", "15000"],
    "gs-g20000": ["--gaussians", "20000"],
    "gs-g30000": ["--gaussians", "30000"],
}
# The variants run on the default set of variants (`--variants` left out).
DEFAULT_VARIANTS = list(VARIANTS)


def variant_args(name):
    """The reconstruct arguments of a variant; `NAME-seedK` is NAME with `--seed K` (another half
    split, start and order of images on the same simulation), e.g. `gs-default-seed1`,
    `gs-avg0.4-seed2`; `gs-seedK` is `gs-default-seedK`."""
    base, sep, seed = name.rpartition("-seed")
    base = "gs-default" if base == "gs" else base
    if sep and seed.isdigit() and base in VARIANTS and VARIANTS[base] is not None:
        return VARIANTS[base] + ["--seed", seed]
    return VARIANTS[name]


def run(cmd):
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, time.time() - t, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "failed"
    return p.stdout, time.time() - t, None


def fsc_json(bin_, a, b, mask):
    p = subprocess.run([bin_, "-q", "fsc", a, b, "--json", "--mask", mask], capture_output=True, text=True)
    try:
        return json.loads(p.stdout)
    except ValueError:
        return None


class AtNyquist(float):
    """A curve that never crosses: Nyquist is a bound, not a measured resolution."""


class AtLeast(AtNyquist):
    """A reconstruction's bound at the last shell its cross-validated estimate reaches (its half
    maps claimed more): a bound like Nyquist, not a measured resolution."""


def detail(j, key):
    """The resolution `key` of `fsc --json` or `postprocess.json`: its typed entry in
    `resolution_details` (the form of run.json's history) where there is one, else the plain
    value (outputs of older builds: a number, "nyquist" or "none")."""
    return j.get("resolution_details", {}).get(key, j.get(key))


def res_value(r, apix):
    """A resolution of `fsc --json` (see `detail`) or of run.json's history (a typed object)."""
    if r is None:
        return None
    if isinstance(r, (int, float)):
        return float(r)
    if isinstance(r, dict):
        if r.get("kind") == "at_nyquist":
            return AtNyquist(r["angstrom"])
        if r.get("kind") == "at_least":
            return AtLeast(r["angstrom"])
        return r.get("angstrom")
    if r == "nyquist":
        return AtNyquist(2.0 * apix)
    return None


class Bound(float):
    """A ratio with a Nyquist bound on one side: `sign` is "≤" or "≥"."""

    def __new__(cls, x, sign):
        b = float.__new__(cls, x)
        b.sign = sign
        return b


class Claim:
    """The reported figure and, in brackets, the half maps' own where the cross-validated limit
    made the reported one coarser."""

    def __init__(self, reported, alone):
        self.reported, self.alone = reported, alone


def claim_ratio(claim, truth):
    """Claimed over true resolution (below 1: optimistic); a bound when one of them is Nyquist
    (a claim of Nyquist for a map that crosses 0.5 before it is at most Nyquist / truth)."""
    if claim is None or truth is None:
        return None
    c_nyq, t_nyq = isinstance(claim, AtNyquist), isinstance(truth, AtNyquist)
    if c_nyq and t_nyq:
        return None
    if c_nyq:
        return Bound(claim / truth, "≤")
    if t_nyq:
        return Bound(claim / truth, "≥")
    return claim / truth


def fmt(x):
    if x is None:
        return "—"
    if isinstance(x, Claim):
        return f"{fmt(x.reported)} (half maps alone {fmt(x.alone)})"
    if isinstance(x, Bound):
        return f"{x.sign}{x:.2f}"
    if isinstance(x, AtLeast):
        return f"≤{x:.2f} (bound)"
    return f"≤{x:.2f} (Nyquist)" if isinstance(x, AtNyquist) else f"{x:.2f}"


def lf_deficit(curve, bp_curve):
    """The largest amount by which a map's unmasked FSC against the truth falls short of the
    backprojection's (same particles), over the shells 1… before the backprojection's first falls
    below 0.5; 0 when it never falls short. None without both curves (run the backproject
    variant first)."""
    if curve is None or bp_curve is None:
        return None
    worst = 0.0
    for k in range(1, min(len(curve), len(bp_curve))):
        if bp_curve[k] is None or bp_curve[k] < 0.5:
            break
        worst = max(worst, bp_curve[k] - (curve[k] if curve[k] is not None else 0.0))
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "cryosplat"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "science"))
    ap.add_argument("--sets", default="small", choices=list(SET_GROUPS))
    ap.add_argument("--only", default="", help="comma-separated set names")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    ap.add_argument("--threads", default="2")
    ap.add_argument("--gaussians", default="default",
                    help="Gaussians per half, or 'default' (the default) for the tool's own choice by box and particles per half")
    ap.add_argument("--reuse", action="store_true", help="keep finished runs found in --work (only re-read them)")
    a = ap.parse_args()
    sets = SET_GROUPS[a.sets]
    if a.only:
        sets = {k: v for k, v in sets.items() if k in a.only.split(",")}
    variants = [v for v in a.variants.split(",") if v]
    rows = []
    for name, (model, box, apix, count, snr, extra) in sets.items():
        bp_curve = None
        sim = os.path.join(a.work, name, "sim")
        if not os.path.exists(os.path.join(sim, "particles.star")):
            cmd = [a.bin, "-q", "simulate", os.path.join(MODELS, model), "-o", sim, "--box", str(box), "--apix", str(apix),
                   "--count", str(count), "--snr", str(snr), "--seed", "3"] + extra
            out, _, err = run(cmd)
            if out is None:
                print(f"simulate {name}: {err}", file=sys.stderr)
                continue
        star, gt = os.path.join(sim, "particles.star"), os.path.join(sim, "gt.mrc")
        for v in variants:
            out_dir = os.path.join(a.work, name, v)
            args = variant_args(v)
            if args is None:
                cmd = [a.bin, "-q", "backproject", star, "-o", out_dir, "--threads", a.threads, "--overwrite"]
            else:
                gaussians = [] if a.gaussians == "default" else ["--gaussians", a.gaussians]
                cmd = [a.bin, "-q", "reconstruct", star, "-o", out_dir, "--threads", a.threads, "--checkpoint-every", "0",
                       "--overwrite"] + gaussians + args
            run_path = os.path.join(out_dir, "run.json")
            if a.reuse and os.path.exists(run_path) and json.load(open(run_path)).get("finished"):
                out, secs, err = "", None, None
            else:
                out, secs, err = run(cmd)
            if out is None:
                rows.append((name, v, None, None, None, None, None, None, secs, err))
                continue
            run_json = json.load(open(run_path))
            if secs is None:
                secs = run_json.get("summary", {}).get("seconds") or 0.0
            hist = run_json.get("history")
            if hist:
                half = res_value(hist[-1]["resolution_0143"], apix)
                # The half-map FSC's own claim where the cross-validated limit was applied.
                alone = res_value(hist[-1].get("half_map_0143"), apix) if hist[-1].get("half_map_0143") else None
            else:
                half = res_value(run_json["summary"]["resolution_0143"], apix)
                alone = None
            chk = run_json.get("low_resolution_check")
            check = "—" if not chk else ("passed" if chk["passed"] else "FAILED") + (
                f" ({chk['worst_estimate']:.2f})" if isinstance(chk.get("worst_estimate"), (int, float)) else " (not judged)")
            # A completed run also keeps the Gaussian map alone (map_gaussians.mrc): both are
            # judged, the completed map first.
            maps = [(v, "map.mrc")]
            if os.path.exists(os.path.join(out_dir, "map_gaussians.mrc")):
                maps.append((v + ", Gaussians alone", "map_gaussians.mrc"))
            for label, map_name in maps:
                un = fsc_json(a.bin, os.path.join(out_dir, map_name), gt, "none")
                ma = fsc_json(a.bin, os.path.join(out_dir, map_name), gt, "auto")
                t_un = res_value(detail(un, "resolution_05_unmasked"), apix) if un else None
                t_ma = res_value(detail(ma, "resolution_05"), apix) if ma else None
                curve = [c["fsc_unmasked"] for c in un["curve"]] if un else None
                if args is None:
                    bp_curve = curve
                deficit = lf_deficit(curve, bp_curve) if args is not None else None
                claim, ratio = half, claim_ratio(half, t_ma)
                if alone is not None and alone != half:
                    claim, ratio = Claim(half, alone), Claim(ratio, claim_ratio(alone, t_ma))
                rows.append((name, label, t_un, t_ma, claim, ratio, deficit, check, secs, None))
                print(f"{name} {label}: truth {fmt(t_un)}/{fmt(t_ma)} Å, reported {fmt(claim)} Å, {secs:.0f} s", file=sys.stderr)
    print("| set | method | vs truth, FSC 0.5 unmasked (Å) | vs truth, FSC 0.5 masked (Å) | reported FSC 0.143 (Å) | reported / truth (masked) "
          "| low-frequency deficit | low-resolution check (worst estimate) | wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, v, t_un, t_ma, half, ratio, deficit, check, secs, err in rows:
        if err:
            print(f"| {name} | {v} | failed: {err} | | | | | | {secs:.0f} |")
        else:
            d = "—" if deficit is None else f"{deficit:.3f}"
            print(f"| {name} | {v} | {fmt(t_un)} | {fmt(t_ma)} | {fmt(half)} | {fmt(ratio)} | {d} | {check} | {secs:.0f} |")


if __name__ == "__main__":
    main()
