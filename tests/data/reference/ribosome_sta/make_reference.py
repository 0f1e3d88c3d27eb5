#!/usr/bin/env python3
"""Independent reference maps of the 219 ribosome sub-tilts
(tests/data/cryodrgn/sta_testing_bin8.optics31.DERIVED.star, 64 px at 14.56 A/px).

Two maps, made without any cryosplat code, by two different algorithms:

* aspire_ls.mrc   -- ASPIRE's MeanEstimator: least-squares reconstruction with the CTF
                     (conjugate gradients on a NUFFT projection model), images and metadata
                     read by ASPIRE's RelionSource.
* fbp_numpy.mrc   -- a filtered real-space backprojection written here in numpy/scipy:
                     phase-flip by the CTF sign, 2D ramp filter |k|, smear every filtered
                     image along its view direction (bilinear interpolation).

cryosplat's `backproject` is a third algorithm (Fourier-space insertion with trilinear weights,
CTF-weighted and regularised), so agreement between the three is a real check.

Before reconstructing, the script checks that ASPIRE reads the data with the project's
conventions (shared CONVENTIONS.md), against the reference files in tests/data/reference/:
  - Euler angles: ASPIRE's rotation of (rot, tilt, psi), fed to its projector, must reproduce
    the exact analytic projections of gmm_projections.json (which RELION's own projector
    confirms);
  - CTF: ASPIRE's CTFFilter on the centred grid must equal the RELION CTF of ctf_cases.json
    (it turns out to be its negative, see below);
  - pixel size, box, particle count, image values, defocus and angles read from the STAR.
It stops with an error if any check fails.

Two things ASPIRE's RelionSource does not read from a STAR file, and which this script adds
through ASPIRE's own API:
  - rlnCtfBfactor (per particle; here -13 ... -507 A^2, dose weighting): ASPIRE's CTFFilter
    takes a B in nm^2 applied as exp(-B s_nm^2); RELION applies exp(-B s_A^2 / 4), so
    B_aspire = B_relion / 400 (checked against ctf_cases.json cases with B = 100);
  - rlnCtfScalefactor (per particle; here 0.5 ... 1.0): set as ASPIRE's per-image amplitude,
    which multiplies the forward model exactly as RELION's scale multiplies the CTF.
ASPIRE's CTFFilter equals -CTF_RELION (it models raw, dark-contrast images); these images are
white (contrast already inverted), so the least-squares solution of ASPIRE's model is -V and
the script negates it.

Usage (from the repository root):
    python3 -m venv /tmp/aspire-venv
    /tmp/aspire-venv/bin/pip install aspire==0.14.3
    /tmp/aspire-venv/bin/python tests/data/reference/ribosome_sta/make_reference.py

Versions used for the stored maps: Python 3.11.7, aspire 0.14.3, numpy 2.4.6, scipy 1.17.1,
finufft 2.5.0, mrcfile 1.5.4. Output: the two maps (float16, MRC mode 12) and results.json
(checks, settings and correlations), all in this script's folder.
"""

import json
import os
import sys
import tempfile

# One thread for FINUFFT (OpenMP) and BLAS: multithreaded sums in ASPIRE's NUFFT made reruns
# differ in the last bits; with one thread the outputs are byte-identical.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import mrcfile  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "..", ".."))
DATA = os.path.join(ROOT, "tests", "data")
STAR = os.path.join(DATA, "cryodrgn", "sta_testing_bin8.optics31.DERIVED.star")
STACK = os.path.join(DATA, "cryodrgn", "ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs")
REF = os.path.join(DATA, "reference")

# ---------------------------------------------------------------------------------------------
# The project's conventions, written out independently (CONVENTIONS.md)


def relion_matrix(rot, tilt, psi):
    """A = Rz(psi) Ry(tilt) Rz(rot), RELION's Euler_angles2matrix (degrees)."""

    def rz(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])

    def ry(b):
        c, s = np.cos(b), np.sin(b)
        return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])

    r, t, p = np.deg2rad([rot, tilt, psi])
    return rz(p) @ ry(t) @ rz(r)


def relion_ctf(d, apix, kv, cs_mm, q0, dfu, dfv, dfang_deg, phase_deg=0.0, bfac=0.0, scale=1.0):
    """RELION CTF on the centred d x d grid: ctf[i][j] at kx=(j-d//2)/(d apix), ky=(i-d//2)/(d apix)."""
    v = kv * 1e3
    lam = 12.2643247 / np.sqrt(v * (1.0 + 0.978466e-6 * v))
    cs = cs_mm * 1e7
    f = (np.arange(d) - d // 2) / (d * apix)
    kx, ky = np.meshgrid(f, f, indexing="xy")
    s2 = kx**2 + ky**2
    th = np.arctan2(ky, kx)
    a = np.deg2rad(dfang_deg)
    df = dfu * np.cos(th - a) ** 2 + dfv * np.sin(th - a) ** 2
    g = -np.pi * lam * df * s2 + 0.5 * np.pi * cs * lam**3 * s2**2 - np.deg2rad(phase_deg) - np.arctan(q0 / np.sqrt(1 - q0 * q0))
    return -np.sin(g) * np.exp(-bfac * s2 / 4.0) * scale


def read_star(path):
    """The optics and particle loops of a RELION 3.1 STAR file (a tiny reader for this file)."""
    blocks, cur, labels, rows = {}, None, [], []
    for line in open(path):
        t = line.strip()
        if t.startswith("data_"):
            if cur:
                blocks[cur] = (labels, rows)
            cur, labels, rows = t, [], []
        elif t.startswith("_rln"):
            labels.append(t.split()[0])
        elif t and not t.startswith("#") and t != "loop_" and cur:
            rows.append(t.split())
    blocks[cur] = (labels, rows)
    out = {}
    for name, (labels, rows) in blocks.items():
        out[name] = {lab: [r[k] for r in rows] for k, lab in enumerate(labels)}
    return out


def corr(a, b):
    a = np.asarray(a, np.float64).ravel() - np.mean(a)
    b = np.asarray(b, np.float64).ravel() - np.mean(b)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def gauss_lowpass(v, sigma_px):
    """Gaussian low-pass of standard deviation sigma_px (pixels), applied in Fourier space
    (periodic): the transfer function is exp(-2 pi^2 sigma^2 |k|^2), k in cycles per pixel."""
    d = v.shape[0]
    k = np.fft.fftfreq(d)
    kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
    h = np.exp(-2.0 * np.pi**2 * sigma_px**2 * (kx**2 + ky**2 + kz**2))
    return np.real(np.fft.ifftn(np.fft.fftn(v) * h))


def mirror_z(v):
    """The mirror image z -> -z about the origin at index d//2 (index k -> d - k, mod d)."""
    d = v.shape[0]
    return v[(d - np.arange(d)) % d]


# ---------------------------------------------------------------------------------------------
# Checks of ASPIRE's reading against the project's conventions


def check_aspire_conventions(checks):
    from aspire.operators import CTFFilter
    from aspire.utils import Rotation
    from aspire.volume import Volume

    # Rotations: project voxelised Gaussian scenes with ASPIRE and compare with the analytic images.
    g = json.load(open(os.path.join(REF, "gmm_projections.json")))
    d, apix = 32, 1.5
    ax = (np.arange(d) - d // 2) * apix
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    pts = np.stack([xx, yy, zz], -1)
    worst_right, best_wrong = 0.0, np.inf
    for scene in g["scenes"]:
        vol = np.zeros((d, d, d))
        for gs in scene["gaussians"]:
            mu, cov, m = np.array(gs["mean_A"]), np.array(gs["cov_A2"]), gs["mass"]
            ci = np.linalg.inv(cov)
            r = pts - mu
            q = np.einsum("...i,ij,...j->...", r, ci, r)
            vol += m * np.exp(-0.5 * q) / np.sqrt((2 * np.pi) ** 3 * np.linalg.det(cov))
        for pose in scene["poses"]:
            a = np.array(pose["A"])
            assert np.abs(relion_matrix(pose["rot"], pose["tilt"], pose["psi"]) - a).max() < 1e-12
            exact = np.array(pose["image"])
            # ASPIRE's reading of RELION angles (ImageSource.__init__ does exactly this) and of
            # origins (offsets = rlnOriginXAngst / apix, applied as in ImageSource.vol_forward).
            rot = Rotation.from_euler(np.deg2rad([[pose["rot"], pose["tilt"], pose["psi"]]]), dtype=np.float64)
            off = np.array([[pose["origin_x_A"], pose["origin_y_A"]]]) / apix
            # ASPIRE's projection is the voxel sum over L; the exact image is the line integral.
            proj = lambda m: Volume(vol).project(m).shift(off).asnumpy()[0] * d * apix  # noqa: E731
            img = proj(rot.matrices)
            worst_right = max(worst_right, np.abs(img - exact).max() / np.abs(exact).max())
            # The same with the transposed rotation, to see that the check discriminates.
            if np.abs(a - a.T).max() > 1e-6:
                bad = proj(rot.matrices.transpose(0, 2, 1))
                best_wrong = min(best_wrong, np.abs(bad - exact).max() / np.abs(exact).max())
    checks["aspire_projection_vs_exact_max_rel_err"] = worst_right
    checks["aspire_projection_transposed_rotation_min_rel_err"] = best_wrong
    assert worst_right < 0.01, f"ASPIRE's projections disagree with the analytic ones ({worst_right})"
    assert best_wrong > 0.2, best_wrong

    # CTF: ASPIRE's CTFFilter on the centred grid against the RELION formula (ctf_cases.json).
    cases = json.load(open(os.path.join(REF, "ctf_cases.json")))["cases"]
    worst, worst_b = 0.0, 0.0
    for c in cases:
        if c["phase_shift_deg"] != 0.0:
            continue  # ASPIRE's CTFFilter has no phase plate term (none in these data)
        f = CTFFilter(
            voltage=c["voltage_kv"],
            defocus_u=c["defocus_u_A"],
            defocus_v=c["defocus_v_A"],
            defocus_ang=np.deg2rad(c["defocus_angle_deg"]),
            Cs=c["cs_mm"],
            alpha=c["amplitude_contrast"],
            B=c["bfactor_A2"] / 400.0,
        )
        h = f.evaluate_grid(c["D"], pixel_size=c["apix"], dtype=np.float64)
        ref = np.array(c["ctf"])
        e = np.abs(-h - ref).max()
        worst = max(worst, e)
        if c["bfactor_A2"] != 0.0:
            worst_b = max(worst_b, e)
    checks["aspire_ctf_negated_vs_relion_max_abs_err"] = worst
    checks["aspire_ctf_negated_vs_relion_max_abs_err_bfactor_cases"] = worst_b
    # ASPIRE's wavelength constants are cryoDRGN's (1.22639 nm / sqrt(V + 0.97845e-6 V^2)),
    # which differ from RELION's by ~3.5e-5 relative; ctf_cases.json reports 0.02 at most.
    assert worst < 0.025, f"ASPIRE's CTF is not -CTF_RELION ({worst})"


def aspire_source(star, checks):
    from aspire.operators import CTFFilter
    from aspire.source import RelionSource

    src = RelionSource(star, dtype=np.float64)
    meta = read_star(star)["data_particles"]
    optics = read_star(star)["data_optics"]
    n = len(meta["_rlnImageName"])
    apix = float(optics["_rlnImagePixelSize"][0])
    checks["aspire_pixel_size"] = float(src.pixel_size)
    checks["aspire_L"] = int(src.L)
    checks["aspire_n"] = int(src.n)
    assert src.n == n == 219 and src.L == 64 and abs(src.pixel_size - apix) < 1e-9 and apix == 14.56
    # Angles and offsets as read.
    ang = np.array([[float(x) for x in meta[k]] for k in ("_rlnAngleRot", "_rlnAngleTilt", "_rlnAnglePsi")]).T
    assert np.abs(src.get_metadata(["_rlnAngleRot", "_rlnAngleTilt", "_rlnAnglePsi"]) - ang).max() < 1e-9
    assert np.abs(src.offsets).max() == 0.0, "the DERIVED STAR has no origin columns"
    # Rotations: ASPIRE's matrix is the transpose of RELION's A (see the projection check).
    a = np.array([relion_matrix(*row) for row in ang])
    checks["aspire_rotation_vs_relion_A_transposed_max_abs_diff"] = float(np.abs(src.rotations - a.transpose(0, 2, 1)).max())
    assert checks["aspire_rotation_vs_relion_A_transposed_max_abs_diff"] < 1e-9
    # Images: the first 219 of the stack, as stored.
    with mrcfile.open(STACK, permissive=True) as m:
        stack = np.array(m.data, dtype=np.float64)
    imgs = src.images[:].asnumpy()
    assert np.abs(imgs - stack[:n]).max() == 0.0
    # Per-particle CTF with RELION's B-factor and scale (see the module docstring).
    kv = float(optics["_rlnVoltage"][0])
    cs = float(optics["_rlnSphericalAberration"][0])
    q0 = float(optics["_rlnAmplitudeContrast"][0])
    num = lambda k: np.array([float(x) for x in meta[k]])  # noqa: E731
    dfu, dfv, dfa = num("_rlnDefocusU"), num("_rlnDefocusV"), num("_rlnDefocusAngle")
    bf, sc = num("_rlnCtfBfactor"), num("_rlnCtfScalefactor")
    filters = [
        CTFFilter(voltage=kv, defocus_u=dfu[i], defocus_v=dfv[i], defocus_ang=np.deg2rad(dfa[i]), Cs=cs, alpha=q0, B=bf[i] / 400.0)
        for i in range(n)
    ]
    # ASPIRE's own filters (no B) must agree with ours at B = 0 for every particle.
    own = src.unique_filters
    for i in range(n):
        h0 = own[src.filter_indices[i]].evaluate_grid(64, pixel_size=apix, dtype=np.float64)
        r0 = relion_ctf(64, apix, kv, cs, q0, dfu[i], dfv[i], dfa[i])
        checks["aspire_star_ctf_negated_vs_relion_max_abs_err"] = max(
            checks.get("aspire_star_ctf_negated_vs_relion_max_abs_err", 0.0), float(np.abs(-h0 - r0).max())
        )
        h = filters[i].evaluate_grid(64, pixel_size=apix, dtype=np.float64) * sc[i]
        r = relion_ctf(64, apix, kv, cs, q0, dfu[i], dfv[i], dfa[i], bfac=bf[i], scale=sc[i])
        checks["aspire_full_ctf_negated_vs_relion_max_abs_err"] = max(
            checks.get("aspire_full_ctf_negated_vs_relion_max_abs_err", 0.0), float(np.abs(-h - r).max())
        )
    assert checks["aspire_star_ctf_negated_vs_relion_max_abs_err"] < 0.02
    assert checks["aspire_full_ctf_negated_vs_relion_max_abs_err"] < 0.02
    src.unique_filters = filters
    src.filter_indices = np.arange(n)
    src.amplitudes = sc
    return src, (kv, cs, q0, dfu, dfv, dfa, bf, sc, ang, apix, stack[:n])


# ---------------------------------------------------------------------------------------------
# Reconstructions


def aspire_map(src, maxiter):
    from aspire.reconstruction import MeanEstimator

    est = MeanEstimator(src, preconditioner="circulant", maxiter=maxiter, checkpoint_iterations=None)
    v = est.estimate().asnumpy()[0]
    return -np.asarray(v, np.float64)  # ASPIRE's CTF is -CTF_RELION (checked above)


def fbp_map(meta):
    """Filtered real-space backprojection: phase flip, ramp filter, smear along z of each view."""
    kv, cs, q0, dfu, dfv, dfa, bf, sc, ang, apix, imgs = meta
    n, d = imgs.shape[0], imgs.shape[1]
    f = np.fft.fftshift(np.fft.fftfreq(d))
    kx, ky = np.meshgrid(f, f, indexing="xy")
    ramp = np.sqrt(kx**2 + ky**2)
    ax = np.arange(d) - d // 2
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    r = np.stack([xx.ravel(), yy.ravel(), zz.ravel()]).astype(np.float64)  # voxel positions (px)
    vol = np.zeros(d**3)
    for i in range(n):
        ctf = relion_ctf(d, apix, kv, cs, q0, dfu[i], dfv[i], dfa[i], bfac=bf[i], scale=sc[i])
        spec = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(imgs[i])))
        filt = np.real(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(spec * np.sign(ctf) * ramp))))
        a = relion_matrix(*ang[i])
        p = a @ r  # a volume point r lands at A r in the image
        rows, cols = p[1] + d // 2, p[0] + d // 2
        vol += ndimage.map_coordinates(filt, [rows, cols], order=1, mode="constant", cval=0.0)
    return vol.reshape(d, d, d)


def nyquist_sphere(v):
    """Keep the Fourier components inside the Nyquist sphere, shells round(|k| D) <= D/2 (the
    FSC shells of CONVENTIONS.md); zero the cube's corners."""
    d = v.shape[0]
    k = np.fft.fftfreq(d) * d
    kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
    keep = np.round(np.sqrt(kx**2 + ky**2 + kz**2)) <= d // 2
    return np.real(np.fft.ifftn(np.fft.fftn(v) * keep))


def corner_power_fraction(v):
    d = v.shape[0]
    k = np.fft.fftfreq(d) * d
    kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
    p = np.abs(np.fft.fftn(v - v.mean())) ** 2
    return float(p[np.round(np.sqrt(kx**2 + ky**2 + kz**2)) > d // 2].sum() / p.sum())


def write_map(path, v, apix, label):
    """float16 (MRC mode 12), scaled to max |v| = 1 (the scale is arbitrary for a correlation
    reference; keeping values small also keeps mrcfile's float16 statistics from overflowing).
    One fixed label instead of mrcfile's time stamp, so reruns are byte-identical."""
    v = v / np.abs(v).max()
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(v.astype(np.float16))
        m.voxel_size = apix
        m.update_header_stats()
        m.header.label[0] = label.encode("ascii")
        m.header.nlabl = 1
    assert mrcfile.validate(path)


def comparisons(x, y):
    """Correlations of maps x and y: raw, after a Gaussian low-pass of sigma 1.5 px of both, and
    with y mirrored (z -> -z), raw and low-passed."""
    lp = lambda v: gauss_lowpass(v, 1.5)  # noqa: E731
    return {
        "raw": corr(x, y),
        "lowpass_sigma1.5px": corr(lp(x), lp(y)),
        "mirrored_raw": corr(x, mirror_z(y)),
        "mirrored_lowpass_sigma1.5px": corr(lp(x), lp(mirror_z(y))),
    }


def main():
    # ASPIRE writes log files, and a CG checkpoint when CG stops at maxiter, into the working
    # directory: work in a scratch folder (every path here is absolute).
    os.chdir(tempfile.mkdtemp(prefix="ribosome_ref_"))
    if len(sys.argv) == 3 and sys.argv[1] == "--compare":
        # Correlate a map (e.g. cryosplat's) with the stored references.
        with mrcfile.open(sys.argv[2], permissive=True) as m:
            x = np.array(m.data, np.float64)
        out = {}
        for name in ("aspire_ls.mrc", "fbp_numpy.mrc"):
            with mrcfile.open(os.path.join(HERE, name), permissive=True) as m:
                out[name] = comparisons(x, np.array(m.data, np.float64))
        print(json.dumps(out, indent=1))
        return 0
    maxiter = 50  # ASPIRE's default; no regulariser (its default too)
    checks = {}
    check_aspire_conventions(checks)
    src, meta = aspire_source(STAR, checks)
    apix = meta[9]
    va_raw = aspire_map(src, maxiter)
    vf_raw = fbp_map(meta)
    # Misread poses (A^T for A), for the record: what a convention slip does to the FBP map.
    m_t = list(meta)
    m_t[8] = np.array([[-p, -t, -r] for r, t, p in meta[8]])  # A(-psi, -tilt, -rot) = A(rot, tilt, psi)^T
    assert np.abs(relion_matrix(*m_t[8][0]) - relion_matrix(*meta[8][0]).T).max() < 1e-12
    vf_t = nyquist_sphere(fbp_map(m_t))
    va, vf = nyquist_sphere(va_raw), nyquist_sphere(vf_raw)
    res = {
        "checks": checks,
        "settings": {
            "aspire": f"RelionSource(dtype=float64) + per-particle CTFFilter(B=rlnCtfBfactor/400), amplitudes=rlnCtfScalefactor; "
            f"MeanEstimator(preconditioner='circulant', maxiter={maxiter}), DiracBasis3D, regularizer 0; map negated",
            "fbp": "phase flip by sign(RELION CTF), 2D ramp |k|, bilinear smear of every image along its view (volume point r -> A r)",
            "band_limit": "both maps keep only shells round(|k| D) <= D/2",
            "lowpass": "Gaussian, sigma 1.5 px: Fourier factor exp(-2 pi^2 sigma^2 |k|^2), k in cycles/px",
            "mirror": "z -> -z about index D/2 (index k -> (D - k) mod D)",
        },
        "aspire_raw_power_fraction_beyond_nyquist_sphere": corner_power_fraction(va_raw),
        "fbp_raw_power_fraction_beyond_nyquist_sphere": corner_power_fraction(vf_raw),
        "aspire_vs_fbp": comparisons(va, vf),
        "aspire_vs_fbp_without_band_limit": comparisons(va_raw, vf_raw),
        "aspire_vs_fbp_with_transposed_poses": comparisons(va, vf_t),
    }
    print(json.dumps(res, indent=1))
    write_map(os.path.join(HERE, "aspire_ls.mrc"), va, apix, "ribosome_sta: ASPIRE 0.14.3 MeanEstimator, see make_reference.py")
    write_map(os.path.join(HERE, "fbp_numpy.mrc"), vf, apix, "ribosome_sta: numpy filtered backprojection, see make_reference.py")
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
