#!/usr/bin/env python3
"""Where two half maps share an error: their departures from the truth, located in the map.

For a finished run (`half_map_a.mrc`, `half_map_b.mrc`) and its ground truth, the shells LO..HI
of each half map are reduced, shell by shell, to their part orthogonal to the truth's (what
the half gets wrong there). Independent half-map errors make the product of the two halves'
errors average to zero; a shared error does not. Prints the shared part over the errors'
power, in the whole box and in four regions set by the truth low-passed by 1.5 px (solvent,
the molecule's edge, its outer shell, its core), with each region's share of the voxels, of the
shared error, of the error power and of the truth's power in those shells. Then the same
shared fraction once each half's shells are fitted, by least squares, with one scale per region
of the truth (the truth times each region's soft mask) instead of one scale: what is left is
the shared error that an amplitude depending on the density level does not explain.

Needs numpy, scipy and mrcfile (a virtual environment outside the repository).
Usage: tools/shared_error.py RUN GT LO HI
"""

import os
import sys

import numpy as np
from scipy.ndimage import gaussian_filter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from calibration import read, shells  # noqa: E402


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    run, gt, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    a, b, t = (read(os.path.join(run, "half_map_a.mrc")), read(os.path.join(run, "half_map_b.mrc")), read(gt))
    sh = shells(a.shape[0])
    axes = (0, 1, 2)
    fa, fb, ft = (np.fft.rfftn(v, axes=axes) for v in (a, b, t))

    def error(f, parts=None):
        """f less, shell by shell, its least-squares fit by real multiples of `parts` (default:
        the truth alone), in real space."""
        parts = [ft] if parts is None else parts
        out = np.zeros_like(f)
        for s in range(lo, hi + 1):
            m = sh == s
            x = np.stack([p[m] for p in parts], 1)
            c, *_ = np.linalg.lstsq(np.concatenate([x.real, x.imag]), np.concatenate([f[m].real, f[m].imag]), rcond=None)
            out[m] = f[m] - x @ c
        return np.fft.irfftn(out, s=a.shape, axes=axes)

    ea, eb = error(fa), error(fb)
    band = np.fft.irfftn(np.where((sh >= lo) & (sh <= hi), ft, 0), s=a.shape, axes=axes)
    shared, power, signal = ea * eb, 0.5 * (ea ** 2 + eb ** 2), band ** 2
    low = gaussian_filter(t, 1.5)
    top = low.max()
    regions = [
        ("solvent (< 2% of the maximum)", low < 0.02 * top),
        ("edge (2-10%)", (low >= 0.02 * top) & (low < 0.1 * top)),
        ("outer (10-30%)", (low >= 0.1 * top) & (low < 0.3 * top)),
        ("core (> 30%)", low >= 0.3 * top),
    ]
    print(f"shells {lo}-{hi}: shared error / error power {shared.sum() / power.sum():.3f}")
    print("region                         voxels  shared  power  truth  shared/power")
    for name, m in regions:
        print(f"{name:30s} {m.mean():6.3f} {shared[m].sum() / shared.sum():7.3f} {power[m].sum() / power.sum():6.3f} "
              f"{signal[m].sum() / signal.sum():6.3f} {shared[m].sum() / power[m].sum():8.3f}")
    parts = [np.fft.rfftn(gaussian_filter(m.astype(float), 1.0) * t, axes=axes) for _, m in regions]
    ra, rb = error(fa, parts), error(fb, parts)
    print(f"with one scale per region and shell: shared error / error power "
          f"{(ra * rb).sum() / (0.5 * (ra ** 2 + rb ** 2)).sum():.3f}")


if __name__ == "__main__":
    main()
