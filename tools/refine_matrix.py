#!/usr/bin/env python3
"""Per-particle refinement at full size: a set simulated with recorded errors, reconstructed and
backprojected from the recorded, the refined and the true parameters.

The set (`simulate --pose-error --shift-error --defocus-error`) is reconstructed with the
recorded STAR, with `--refine` on it (one run per refinement variant), and with
`particles_true.star`; each STAR (recorded, every refined one, true) is also backprojected.
The first refinement variant also runs from the true STAR (refinement must not spoil exact
records). The table gives each map's FSC against `gt.mrc` at 0.5 (auto-masked and unmasked), the rms
errors of the STAR's parameters against the truth (rotation angle °, origin Å per axis,
defocus U Å) and the run's own time (run.json).

Usage: tools/refine_matrix.py [--bin target/release/cryosplat] [--work DIR] [--threads N]
                              [--model PDB/CIF] [--refine 'NAME=OPTIONS;...'] [--reuse] [--snr S]

`--refine` names the refinement variants, each a name and the options given to `reconstruct`
(default: `all=--refine pose,shift,defocus`); reconstructions use `--seed 1`. The figures in
BENCHMARKS.md ("Per-particle refinement") come from

    tools/refine_matrix.py --refine 'matched=--refine pose,shift,defocus --refine-prior-deg 1.15
        --refine-prior-shift 1.6 --refine-prior-defocus 300;default=--refine pose,shift,defocus'

Run it under the heavy-work lock, one run at a time. Only the Python standard library is used.
"""

import argparse
import json
import math
import os
import sys

from toolrun import sh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The set: 2° rms rotation, 0.8 px shift and 300 Å defocus errors, noise-limited.
SIM = ["--box", "64", "--apix", "2.2", "--count", "4000", "--snr", "0.05", "--max-shift", "2", "--seed", "1",
       "--pose-error", "2", "--shift-error", "0.8", "--defocus-error", "300"]


def read_particles(path):
    """The particles block of a RELION 3.1 STAR: one dict of column → text per particle."""
    cols, rows, block, in_loop = [], [], None, False
    for line in open(path):
        s = line.strip()
        if s.startswith("data_"):
            block, cols, in_loop = s, [], False
            continue
        if block != "data_particles" or not s or s.startswith("#"):
            continue
        if s == "loop_":
            in_loop = True
        elif s.startswith("_"):
            cols.append(s.split()[0])
        elif in_loop:
            rows.append(dict(zip(cols, s.split())))
    return rows


def euler(rot, tilt, psi):
    """RELION's ZYZ rotation matrix (degrees)."""
    a, b, g = (math.radians(v) for v in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(g), math.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return [[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb]]


def angle_deg(a, b):
    tr = sum(a[i][k] * b[i][k] for i in range(3) for k in range(3))
    return math.degrees(math.acos(max(-1.0, min(1.0, (tr - 1.0) / 2.0))))


def rms_errors(star, truth):
    """rms errors of `star` against `truth`: rotation angle (°), origin per axis (Å), defocus U (Å)."""
    p, t = read_particles(star), read_particles(truth)
    assert len(p) == len(t), f"{star}: {len(p)} particles, {truth}: {len(t)}"
    a2 = o2 = z2 = 0.0
    for x, y in zip(p, t):
        ex = euler(*(float(x[c]) for c in ("_rlnAngleRot", "_rlnAngleTilt", "_rlnAnglePsi")))
        ey = euler(*(float(y[c]) for c in ("_rlnAngleRot", "_rlnAngleTilt", "_rlnAnglePsi")))
        a2 += angle_deg(ex, ey) ** 2
        o2 += sum((float(x[c]) - float(y[c])) ** 2 for c in ("_rlnOriginXAngst", "_rlnOriginYAngst"))
        z2 += (float(x["_rlnDefocusU"]) - float(y["_rlnDefocusU"])) ** 2
    n = len(p)
    return math.sqrt(a2 / n), math.sqrt(o2 / (2 * n)), math.sqrt(z2 / n)


def res(j, key):
    """The resolution `key` of `fsc --json`: a number, or the kind its `resolution_details` names
    (older builds: "nyquist" in place of the number)."""
    v = j[key]
    if isinstance(v, (int, float)):
        return f"{v:.2f}"
    kind = j.get("resolution_details", {}).get(key, {}).get("kind", "at_nyquist")
    return "Nyquist" if kind == "at_nyquist" else kind.replace("_", " ")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "cryosplat"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "refine"))
    ap.add_argument("--threads", default="2")
    ap.add_argument("--model", default=os.path.join(ROOT, "tests", "data", "models", "7DDO.pdb"))
    ap.add_argument("--refine", default="all=--refine pose,shift,defocus")
    ap.add_argument("--reuse", action="store_true", help="keep the finished set and runs")
    ap.add_argument("--snr", default="0.05", help="the simulation's SNR (default: the issue's 0.05)")
    a = ap.parse_args()
    sim_args = [a.snr if i > 0 and SIM[i - 1] == "--snr" else v for i, v in enumerate(SIM)]
    os.makedirs(a.work, exist_ok=True)
    sim = os.path.join(a.work, "sim")
    if not (a.reuse and os.path.exists(os.path.join(sim, "gt.mrc"))):
        sh([a.bin, "-q", "simulate", a.model, "-o", sim, "--overwrite", "--threads", a.threads] + sim_args)
    recorded, truth, gt = (os.path.join(sim, f) for f in ("particles.star", "particles_true.star", "gt.mrc"))

    def run(prog, star, name, extra=()):
        out = os.path.join(a.work, name)
        done = os.path.exists(os.path.join(out, "run.json")) and json.load(open(os.path.join(out, "run.json"))).get("finished")
        if not (a.reuse and done):
            seed = ["--seed", "1"] if prog == "reconstruct" else []
            sh([a.bin, "-q", prog, star, "-o", out, "--overwrite", "--threads", a.threads] + seed + list(extra))
        fm = json.loads(sh([a.bin, "fsc", os.path.join(out, "map.mrc"), gt, "--json"]))
        summary = json.load(open(os.path.join(out, "run.json"))).get("summary", {})
        secs = summary.get("seconds", summary.get("wall_seconds"))
        return out, [res(fm, "resolution_05"), res(fm, "resolution_05_unmasked"),
                     f"{secs:.0f}" if isinstance(secs, (int, float)) else "?"]

    rows = []

    def add(label, star, cells):
        e = rms_errors(star, truth)
        rows.append([label, f"{e[0]:.2f}", f"{e[1]:.2f}", f"{e[2]:.0f}"] + cells)
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)

    add("reconstruct, recorded", recorded, run("reconstruct", recorded, "gs-recorded")[1])
    add("backproject, recorded", recorded, run("backproject", recorded, "bp-recorded")[1])
    for spec in a.refine.split(";"):
        name, opts = spec.split("=", 1)
        out, cells = run("reconstruct", recorded, f"gs-refine-{name}", opts.split())
        refined = os.path.join(out, "particles_refined.star")
        add(f"reconstruct {opts}", refined, cells)
        add(f"backproject, refined ({name})", refined, run("backproject", refined, f"bp-refined-{name}")[1])
    add("reconstruct, true", truth, run("reconstruct", truth, "gs-true")[1])
    name, opts = a.refine.split(";")[0].split("=", 1)
    out, cells = run("reconstruct", truth, f"gs-refine-{name}-from-true", opts.split())
    add(f"reconstruct {opts}, from the true STAR", os.path.join(out, "particles_refined.star"), cells)
    add("backproject, true", truth, run("backproject", truth, "bp-true")[1])
    head = ["run", "rms angle error (°)", "rms origin error (Å/axis)", "rms defocus error (Å)",
            "vs truth FSC 0.5, masked (Å)", "unmasked (Å)", "seconds"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
