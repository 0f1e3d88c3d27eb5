#!/usr/bin/env python3
"""Symmetric simulations with a ground truth, reconstructed with and without the point group.

Each set is an assembly of the bundled 1A8O model (its copies placed by the group's operators
about the box centre, `simulate --sym`); each variant is `backproject` or `reconstruct` with or
without `--sym`, and, for the Gaussian model, with several numbers of Gaussians (the asymmetric
unit holds `--gaussians / |G|`). The table gives the map's FSC against `gt.mrc` at 0.5 (unmasked
and auto-masked, corrected), the resolutions the run reports (for `reconstruct`, the half-map
FSC limited by the cross-validated estimate), the Gaussians of the unit and the run's own time
(`run.json`).

Usage: tools/symmetry_matrix.py [--bin target/release/cryosplat] [--work DIR] [--threads N]
                                [--sets NAME,...] [--variants NAME,...] [--reuse]

Only the Python standard library is used.
"""

import argparse
import json
import os
import sys

from toolrun import sh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "tests", "data", "models", "1A8O.pdb")

# name: (group, box, apix, particles, snr, seed, offset Å)
SETS = {
    "C4": ("C4", 64, 1.5, 2000, 0.03, 1, "18,6,0"),
    "D2": ("D2", 64, 1.5, 2000, 0.03, 2, "14,9,10"),
    "D2h": ("D2h", 64, 1.5, 2000, 0.03, 5, "14,9,10"),
    "O": ("O", 64, 3.0, 1000, 0.03, 3, "15,22,30"),
    "I": ("I", 64, 3.0, 1000, 0.03, 4, "20,30,45"),
}

# Held out (issue 11): point groups at a larger box than the sets above, read with
# `tools/noise_realisations.py SET --seeds 7,8,9` (not run by this script).
SETS_HOLDOUT = {
    "C4-96": ("C4", 96, 1.2, 3000, 0.02, 7, "18,6,0"),
    "O-96": ("O", 96, 2.2, 1500, 0.02, 7, "15,22,30"),
}

# name: (program, use the set's group, --gaussians or None for the default)
VARIANTS = {
    "bp-c1": ("backproject", False, None),
    "bp-sym": ("backproject", True, None),
    "gs-c1": ("reconstruct", False, None),
    "gs-sym-half": ("reconstruct", True, 10000),
    "gs-sym": ("reconstruct", True, None),
    "gs-sym-double": ("reconstruct", True, 40000),
    "gs-sym-20000": ("reconstruct", True, 20000),
}


def res(v, detail=None):
    """A resolution from `fsc --json` or run.json: a number, or null with `detail`, its typed
    entry (`resolution_details` of `fsc --json`, run.json's last history record), saying why."""
    if isinstance(v, (int, float)):
        return f"{v:.2f}"
    kind = detail.get("kind") if isinstance(detail, dict) else None
    if kind == "at_nyquist" or v == "nyquist" or (isinstance(v, dict) and "nyquist" in v):
        return "Nyquist"
    if kind == "at_least":
        return f"at least {detail['angstrom']:.2f}"
    if v is None and kind is None:
        return "Nyquist (null)"
    return kind.replace("_", " ") if kind else str(v)


def fsc_res(j, key):
    """The resolution `key` of `fsc --json`, with its entry in `resolution_details`."""
    return res(j[key], j.get("resolution_details", {}).get(key))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "cryosplat"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "symmetry"))
    ap.add_argument("--threads", default="2")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--reuse", action="store_true", help="keep finished sets and runs")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    rows = []
    for name in a.sets.split(","):
        group, box, apix, count, snr, seed, offset = SETS[name]
        sim = os.path.join(a.work, name)
        if not (a.reuse and os.path.exists(os.path.join(sim, "gt.mrc"))):
            sh([a.bin, "-q", "simulate", MODEL, "-o", sim, "--overwrite", "--box", str(box), "--apix", str(apix),
                "--count", str(count), "--snr", str(snr), "--bfactor", "50", "--max-shift", "3" if apix < 2 else "2",
                "--seed", str(seed), "--sym", group, "--sym-offset", offset, "--threads", a.threads])
        for var in a.variants.split(","):
            prog, use_sym, gaussians = VARIANTS[var]
            out = os.path.join(a.work, f"{name}-{var}")
            cmd = [a.bin, "-q", prog, os.path.join(sim, "particles.star"), "-o", out, "--overwrite", "--threads", a.threads,
                   "--no-postprocess"]
            if use_sym:
                cmd += ["--sym", group]
            if gaussians is not None:
                cmd += ["--gaussians", str(gaussians)]
            if not (a.reuse and os.path.exists(os.path.join(out, "run.json"))
                    and json.load(open(os.path.join(out, "run.json"))).get("finished")):
                sh(cmd)
            run = json.load(open(os.path.join(out, "run.json")))
            gt = os.path.join(sim, "gt.mrc")
            vs = json.loads(sh([a.bin, "fsc", os.path.join(out, "map.mrc"), gt, "--mask", "none", "--json"]))
            vsm = json.loads(sh([a.bin, "fsc", os.path.join(out, "map.mrc"), gt, "--json"]))
            summary = run.get("summary", {})
            last = (run.get("history") or [summary])[-1]
            if prog == "reconstruct":
                g = summary["history"][-1]["gaussians"][0]
            else:
                g = "—"
            seconds = summary.get("seconds", summary.get("wall_seconds", run.get("seconds")))
            rows.append([name, f"{count:,}", var, str(g), fsc_res(vs, "resolution_05"), fsc_res(vsm, "resolution_05"),
                         res(run.get("resolution_0143"), last.get("resolution_0143")),
                         res(run.get("resolution_05"), last.get("resolution_05")),
                         f"{seconds:.0f}" if isinstance(seconds, (int, float)) else "?"])
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    head = ["set", "particles", "variant", "Gaussians (unit, per half)", "vs truth FSC 0.5, unmasked (Å)",
            "vs truth FSC 0.5, masked (Å)", "reported 0.143 (Å)", "reported 0.5 (Å)", "seconds"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
