"""Check files written by cryosplat with mrcfile, starfile and plyfile (independent readers)."""
import json
import sys
from pathlib import Path

import mrcfile
import numpy as np
import plyfile
import starfile

work = Path(sys.argv[1])
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


meta = json.loads((work / "sim/meta.json").read_text())
for rel in ["sim/particles.mrcs", "sim/gt.mrc", "bp/map.mrc", "bp/half_map_a.mrc", "rec/map.mrc", "rec/half_map_a.mrc", "rec/half_map_b.mrc"]:
    p = work / rel
    check(mrcfile.validate(str(p), print_file=open("/dev/null", "w")), f"mrcfile.validate({rel})")
    with mrcfile.open(p) as m:
        check(np.isclose(float(m.voxel_size.x), 1.5, rtol=1e-5), f"{rel}: voxel size 1.5 Å (got {float(m.voxel_size.x)})")
        check(bool(np.all(np.isfinite(m.data))), f"{rel}: finite values")
with mrcfile.open(work / "sim/particles.mrcs") as m:
    check(m.data.shape == (300, 48, 48), f"stack shape {m.data.shape}")
    check(m.is_image_stack(), "particles.mrcs is an image stack (ISPG 0)")

star = starfile.read(work / "sim/particles.star")
optics, parts = star["optics"], star["particles"]
check(len(parts) == 300, f"starfile reads 300 particles (got {len(parts)})")
check(float(optics["rlnImagePixelSize"][0]) == 1.5, "rlnImagePixelSize 1.5")
check(int(optics["rlnImageSize"][0]) == 48, "rlnImageSize 48")
info = json.loads((work / "info.json").read_text())
info = info[0] if isinstance(info, list) else info
check(info["particles"] == 300 and info["box"] == 48 and abs(info["apix"] - 1.5) < 1e-9, "cryosplat info agrees with starfile on count, box, apix")
check(info["has_poses"] and info["has_ctf"], "cryosplat info: poses and CTF present")
du = parts["rlnDefocusU"].to_numpy()
check(bool(np.all((du > 0.8e4) & (du < 2.6e4))), "defocus within the simulated range (Å)")
for col in ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]:
    check(col in parts.columns and bool(np.all(np.isfinite(parts[col].to_numpy()))), f"column {col}")

ply = plyfile.PlyData.read(str(work / "rec/gaussians.ply"))
v = ply["vertex"]
check(v.count == 1000, f"gaussians.ply holds both halves' 2×500 Gaussians (got {v.count})")
for prop in ["x", "y", "z", "scale_0", "rot_0", "amplitude"]:
    check(bool(np.all(np.isfinite(v[prop]))), f"gaussians.ply property {prop} finite")
fsc = json.loads((work / "fsc.json").read_text())
check("resolution_0143" in fsc and "resolution_05" in fsc and len(fsc["curve"]) == 25, "cryosplat fsc --json keys and curve length")

print(f"{len(failures)} failed" if failures else "all interoperability checks passed")
sys.exit(1 if failures else 0)
