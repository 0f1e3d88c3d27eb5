"""Check a STAR file with the independent `starfile` reader against expected values.

Usage: python check_star.py FILE.star EXPECTED.json

EXPECTED.json is the output of `cryosplat info FILE.star --json` (or any object with some of
the same keys): `particles`, `box`, `apix`, `has_poses`, `has_ctf`, `defocus_range_a`, and
`first_particle` with `rot_matrix`, `origin_a`, `index`, `stack` and `ctf`. Every key present
is compared with what starfile reads, the pose through RELION's convention written out here
with numpy: A = Rz(psi) Ry(tilt) Rz(rot), Rz(a) = [[c, s, 0], [-s, c, 0], [0, 0, 1]],
Ry(b) = [[c, 0, -s], [0, 1, 0], [s, 0, c]]. Exit status 1 on any mismatch.
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
import starfile

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def close(a, b, tol):
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def relion_a(rot, tilt, psi):
    def rz(a):
        c, s = math.cos(a), math.sin(a)
        return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])

    def ry(b):
        c, s = math.cos(b), math.sin(b)
        return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])

    r, t, p = (math.radians(x) for x in (rot, tilt, psi))
    return rz(p) @ ry(t) @ rz(r)


def main(star_path, expected_path):
    exp = json.loads(Path(expected_path).read_text())
    if isinstance(exp, list):
        exp = exp[0]
    blocks = starfile.read(star_path, always_dict=True)
    parts = blocks.get("particles")
    if parts is None:
        parts = next(b for b in blocks.values() if hasattr(b, "columns") and "rlnImageName" in b.columns)
    optics = blocks.get("optics")
    row = parts.iloc[0]
    orow = None
    if optics is not None:
        group = int(row["rlnOpticsGroup"]) if "rlnOpticsGroup" in parts.columns else 1
        orow = optics[optics["rlnOpticsGroup"] == group].iloc[0]

    def value(label, default=None):
        if label in parts.columns:
            return row[label]
        if orow is not None and label in orow.index:
            return orow[label]
        return default

    if "particles" in exp:
        check(len(parts) == exp["particles"], f"{len(parts)} particles (expected {exp['particles']})")
    if exp.get("apix") is not None:
        apix = value("rlnImagePixelSize")
        if apix is None and "rlnMagnification" in parts.columns:
            apix = 1e4 * float(row["rlnDetectorPixelSize"]) / float(row["rlnMagnification"])
        check(apix is not None and close(apix, exp["apix"], 1e-6), f"pixel size {apix} Å (expected {exp['apix']})")
    if exp.get("box") is not None and value("rlnImageSize") is not None:
        check(int(value("rlnImageSize")) == exp["box"], f"box {value('rlnImageSize')} (expected {exp['box']})")
    angles = all(c in parts.columns for c in ("rlnAngleRot", "rlnAngleTilt"))
    if "has_poses" in exp:
        check(angles == exp["has_poses"], f"angles present: {angles} (expected {exp['has_poses']})")
    if "has_ctf" in exp:
        has = "rlnDefocusU" in parts.columns
        check(has == exp["has_ctf"], f"defocus present: {has} (expected {exp['has_ctf']})")
    if exp.get("defocus_range_a") is not None and "rlnDefocusU" in parts.columns:
        v = parts["rlnDefocusV"] if "rlnDefocusV" in parts.columns else parts["rlnDefocusU"]
        mean = 0.5 * (parts["rlnDefocusU"].to_numpy() + v.to_numpy())
        lo, hi = exp["defocus_range_a"]
        check(close(mean.min(), lo, 1e-6) and close(mean.max(), hi, 1e-6), f"defocus range {mean.min()}–{mean.max()} Å (expected {lo}–{hi})")
    fp = exp.get("first_particle")
    if fp:
        num, _, name = str(row["rlnImageName"]).partition("@")
        check(int(num) == fp["index"] + 1, f"first image number {num} (expected {fp['index'] + 1})")
        check(Path(name).name == Path(fp["stack"]).name, f"first stack {name} (expected {Path(fp['stack']).name})")
        if angles:
            a = relion_a(float(row["rlnAngleRot"]), float(row["rlnAngleTilt"]), float(value("rlnAnglePsi", 0.0)))
            err = float(np.abs(a - np.array(fp["rot_matrix"])).max())
            check(err < 1e-5, f"first pose A from the angles matches cryosplat's (max diff {err:.2e})")
            if "rlnOriginXAngst" in parts.columns:
                o = (float(row["rlnOriginXAngst"]), float(row["rlnOriginYAngst"]))
            elif "rlnOriginX" in parts.columns:
                o = (float(row["rlnOriginX"]) * exp["apix"], float(row["rlnOriginY"]) * exp["apix"])
            else:
                o = (0.0, 0.0)
            err = max(abs(o[0] - fp["origin_a"][0]), abs(o[1] - fp["origin_a"][1]))
            check(err < 1e-5, f"first origin {o} Å (expected {fp['origin_a']})")
        ctf = fp.get("ctf")
        if ctf and "rlnDefocusU" in parts.columns:
            du = float(row["rlnDefocusU"])
            for label, key, default in [
                ("rlnDefocusU", "defocus_u_a", None),
                ("rlnDefocusV", "defocus_v_a", du),
                ("rlnDefocusAngle", "defocus_angle_deg", 0.0),
                ("rlnVoltage", "voltage_kv", 200.0),
                ("rlnSphericalAberration", "cs_mm", 0.0),
                ("rlnAmplitudeContrast", "amp_contrast", 0.0),
                ("rlnPhaseShift", "phase_shift_deg", 0.0),
                ("rlnCtfBfactor", "bfactor_a2", 0.0),
                ("rlnCtfScalefactor", "scale", 1.0),
            ]:
                got = float(value(label, default))
                check(close(got, ctf[key], 1e-6), f"first {label} {got} (expected {ctf[key]})")
    print(f"{len(failures)} failed" if failures else "the STAR file agrees with the expected values")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
