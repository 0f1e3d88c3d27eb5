#!/usr/bin/env python3
"""Noise substitution in the images: how much of the half maps' agreement a shared model bias makes.

`make SIM OUT K` copies a simulation (`particles.star`, `gt.mrc`) to OUT with every particle
image's Fourier components beyond radius K px (of the image's own grid) given random phases:
beyond K the images then hold no signal. Reconstructing OUT as the original was reconstructed,
the half maps' FSC beyond K (`F_sub`) is what the two halves share without data: the bias of the
model, extrapolated from the shells up to K. `compare ORIG SUB GT K APIX` prints, per shell and
unmasked, the original half-map FSC `F`, `F_sub`, the corrected `(F - F_sub)/(1 - F_sub)` beyond
K (as high-resolution noise substitution corrects a mask's FSC), the full map's FSC against the
truth and what `F` and the corrected curve predict for it (`sqrt(2F/(1+F))`), with the 0.143
crossings of `F` and of the corrected curve and the truth's 0.5 crossing.

Needs numpy and mrcfile (a virtual environment outside the repository).
Usage: tools/noise_substitution.py make SIM OUT K
       tools/noise_substitution.py compare ORIG_RUN SUB_RUN GT K APIX
"""

import os
import shutil
import sys

import mrcfile
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from calibration import crossing, fsc, read, shells  # noqa: E402


def make(sim, out, k):
    os.makedirs(out, exist_ok=True)
    for f in ("particles.star", "gt.mrc"):
        shutil.copy(os.path.join(sim, f), out)
    with mrcfile.open(os.path.join(sim, "particles.mrcs"), permissive=True) as m:
        imgs = m.data.astype(np.float32)
        voxel = m.voxel_size.x
    n, d, _ = imgs.shape
    r = np.hypot(*np.meshgrid(np.fft.fftfreq(d) * d, np.fft.rfftfreq(d) * d, indexing="ij"))
    outer = r > k
    rng = np.random.default_rng(7)
    subst = np.empty_like(imgs)
    for i in range(n):
        f = np.fft.rfft2(imgs[i])
        phase = np.exp(2j * np.pi * rng.random(f.shape))
        f[outer] *= phase[outer]
        subst[i] = np.fft.irfft2(f, s=(d, d))
    with mrcfile.new(os.path.join(out, "particles.mrcs"), overwrite=True) as m:
        m.set_data(subst)
        m.voxel_size = voxel
    print(f"{n} images of {d} px, phases random beyond {k} px")


def curves(run, gt):
    a, b = read(os.path.join(run, "half_map_a.mrc")), read(os.path.join(run, "half_map_b.mrc"))
    d = a.shape[0]
    sh, n = shells(d), d // 2
    return fsc(a, b, sh, n), fsc(read(os.path.join(run, "map.mrc")), read(gt), sh, n), d


def compare(orig, sub, gt, k, apix):
    f, truth, d = curves(orig, gt)
    f_sub, _, _ = curves(sub, gt)
    corrected = f.copy()
    beyond = np.arange(len(f)) > k
    corrected[beyond] = (f[beyond] - f_sub[beyond]) / (1 - f_sub[beyond])
    predict = lambda c: np.sqrt(2 * np.clip(c, 0, None) / (1 + np.clip(c, 0, None)))
    res = lambda x: f"{d * apix / x:.2f}" if x else "Nyquist"
    print(f"half-map 0.143: {res(crossing(f, 0.143))} Å; corrected: {res(crossing(corrected, 0.143))} Å; "
          f"map against the truth, 0.5: {res(crossing(truth, 0.5))} Å")
    print("shell  Å      F      F_sub  corrected  truth  predicted(F)  predicted(corrected)")
    for i in range(max(1, int(k) - 1), len(f)):
        print(f"{i:5d} {d * apix / i:6.2f} {f[i]:6.3f} {f_sub[i]:6.3f} {corrected[i]:9.3f} {truth[i]:6.3f} "
              f"{predict(f[i]):12.3f} {predict(corrected[i]):12.3f}")


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif len(sys.argv) == 7 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
