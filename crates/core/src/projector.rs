//! The map projector: real-space ray sums through a `D³` volume with trilinear interpolation,
//! used to simulate particle images from a map and to check maps against images; and the
//! exact, fast projection of isotropic Gaussians ([`splat_isotropic`]) used to simulate
//! images of atomic models.
//!
//! **One unit of parallel work is one image** ([`project_stack`]): an image reads the shared
//! volume and writes only its own `D×D` output, so images need no synchronisation and the
//! result does not depend on the thread count. A single image ([`project_volume`],
//! [`splat_isotropic`]) is a serial loop, which is what a per-particle pipeline (project,
//! CTF, noise) calls from its own parallel loop over particles.
//!
//! # Rule
//!
//! With `c = D/2` (integer division), pose rotation `A` and origin offset `o` (pixels),
//!
//! `img[i][j] = (1/n) Σ_t V_trilinear(Aᵀ·(j − c + o_x, i − c + o_y, z_t) + c)`, `z_t = t/n`,
//!
//! over every integer `t` whose sample lies inside the volume, where `V_trilinear` is the
//! volume (index triple (x, y, z), x fastest) trilinearly interpolated and zero outside the
//! grid (a sample within one voxel of the border still takes its share of the border voxels),
//! and `n ≥ 1` is the oversampling along the ray. With `n = 1` and a volume whose content lies
//! inside the sphere of radius `c` this is exactly `Σ_{k=0}^{D−1} V(Aᵀ·(j−c, i−c, k−c) + c)`,
//! the rule that reproduces cryoDRGN's toy projections; the ray is extended past
//! `k ∈ [0, D)` only where the rotated cube's corners need it.
//!
//! The origin follows the project's convention: the recorded image is the centred projection
//! moved by `−o` (`o` = `rlnOriginX/YAngst / apix`), so the particle centre lands at pixel
//! `c − o`. Values are in the map's units times voxels; with the crate's map scale (a column
//! sum is the projection) they are projection image values.

#![allow(clippy::needless_range_loop)] // index loops mirror the matrix algebra

use crate::fourier::{freq_index, freq_position, CentredFft2, Fft2Scratch};
use crate::pose::Mat3;
use rayon::prelude::*;

/// Trilinear interpolation of `vol` (`d³`, x fastest) at index coordinates `(x, y, z)`, zero
/// outside the grid.
#[inline]
pub fn trilinear(vol: &[f32], d: usize, x: f64, y: f64, z: f64) -> f64 {
    let fx = x.floor();
    let fy = y.floor();
    let fz = z.floor();
    let (ix, iy, iz) = (fx as i64, fy as i64, fz as i64);
    let n = d as i64;
    if ix < -1 || iy < -1 || iz < -1 || ix >= n || iy >= n || iz >= n {
        return 0.0;
    }
    let (tx, ty, tz) = (x - fx, y - fy, z - fz);
    let at = |a: i64, b: i64, c: i64| -> f64 {
        if a < 0 || b < 0 || c < 0 || a >= n || b >= n || c >= n {
            0.0
        } else {
            vol[((c as usize) * d + b as usize) * d + a as usize] as f64
        }
    };
    let c00 = at(ix, iy, iz) * (1.0 - tx) + at(ix + 1, iy, iz) * tx;
    let c10 = at(ix, iy + 1, iz) * (1.0 - tx) + at(ix + 1, iy + 1, iz) * tx;
    let c01 = at(ix, iy, iz + 1) * (1.0 - tx) + at(ix + 1, iy, iz + 1) * tx;
    let c11 = at(ix, iy + 1, iz + 1) * (1.0 - tx) + at(ix + 1, iy + 1, iz + 1) * tx;
    let c0 = c00 * (1.0 - ty) + c10 * ty;
    let c1 = c01 * (1.0 - ty) + c11 * ty;
    c0 * (1.0 - tz) + c1 * tz
}

/// Interior trilinear interpolation without bounds checks on the eight neighbours: requires
/// `0 ≤ x, y, z` and `x, y, z < d − 1`.
#[inline]
fn trilinear_inner(vol: &[f32], d: usize, x: f64, y: f64, z: f64) -> f64 {
    let (ix, iy, iz) = (x as usize, y as usize, z as usize);
    let (tx, ty, tz) = (x - ix as f64, y - iy as f64, z - iz as f64);
    let b = (iz * d + iy) * d + ix;
    let s = d * d;
    let v = |o: usize| vol[b + o] as f64;
    let c00 = v(0) + tx * (v(1) - v(0));
    let c10 = v(d) + tx * (v(d + 1) - v(d));
    let c01 = v(s) + tx * (v(s + 1) - v(s));
    let c11 = v(s + d) + tx * (v(s + d + 1) - v(s + d));
    let c0 = c00 + ty * (c10 - c00);
    let c1 = c01 + ty * (c11 - c01);
    c0 + tz * (c1 - c0)
}

/// The range of integer `t` for which `base + (t/n)·dir` lies strictly inside `(lo, hi)` on
/// every axis, as an inclusive pair (empty when `t0 > t1`).
fn ray_range(base: [f64; 3], dir: [f64; 3], n: f64, lo: f64, hi: f64) -> (i64, i64) {
    let mut tmin = f64::NEG_INFINITY;
    let mut tmax = f64::INFINITY;
    for a in 0..3 {
        if dir[a].abs() < 1e-12 {
            if base[a] <= lo || base[a] >= hi {
                return (1, 0);
            }
        } else {
            let t0 = (lo - base[a]) / dir[a] * n;
            let t1 = (hi - base[a]) / dir[a] * n;
            tmin = tmin.max(t0.min(t1));
            tmax = tmax.min(t0.max(t1));
        }
    }
    if tmin > tmax {
        return (1, 0);
    }
    // Strict inequalities: the open interval (tmin, tmax).
    let a = tmin.floor() as i64 + 1;
    let b = tmax.ceil() as i64 - 1;
    (a, b)
}

/// Project `vol` (`d³`, x fastest) under rotation `rot` (the pose's `A`) with origin offset
/// `origin_px` (pixels, the recorded image moved by `−o`) and `oversample` samples per voxel
/// along the ray, into `out` (`d×d`, row-major). See the module docs for the rule.
///
/// Panics if the slice lengths do not match `d` or `oversample` is 0.
pub fn project_volume(vol: &[f32], d: usize, rot: &Mat3, origin_px: [f64; 2], oversample: usize, out: &mut [f32]) {
    assert_eq!(vol.len(), d * d * d, "volume is not {d}³");
    assert_eq!(out.len(), d * d, "image is not {d}×{d}");
    assert!(oversample >= 1, "oversample must be at least 1");
    let c = (d / 2) as f64;
    let n = oversample as f64;
    // Aᵀ·(x, y, z) = x·(row 0 of A) + y·(row 1) + z·(row 2).
    let ex = rot[0];
    let ey = rot[1];
    let dir = rot[2];
    let hi_all = d as f64; // a sample is non-zero only strictly inside (−1, d)
                           // Margins keep rounding of the sample positions away from the last interior voxel.
    let (lo_inner, hi_inner) = (1e-9, d as f64 - 1.0 - 1e-9);
    for i in 0..d {
        let y = i as f64 - c + origin_px[1];
        for j in 0..d {
            let x = j as f64 - c + origin_px[0];
            let base = [ex[0] * x + ey[0] * y + c, ex[1] * x + ey[1] * y + c, ex[2] * x + ey[2] * y + c];
            let (t0, t1) = ray_range(base, dir, n, -1.0, hi_all);
            // The sub-range where all eight neighbours are inside the grid (no checks needed).
            let (u0, u1) = ray_range(base, dir, n, lo_inner, hi_inner);
            let mut acc = 0.0f64;
            let sample = |t: i64| {
                let z = t as f64 / n;
                (base[0] + z * dir[0], base[1] + z * dir[1], base[2] + z * dir[2])
            };
            if u0 <= u1 {
                for t in t0..u0 {
                    let (px, py, pz) = sample(t);
                    acc += trilinear(vol, d, px, py, pz);
                }
                for t in u0..=u1 {
                    let (px, py, pz) = sample(t);
                    acc += trilinear_inner(vol, d, px, py, pz);
                }
                for t in (u1 + 1)..=t1 {
                    let (px, py, pz) = sample(t);
                    acc += trilinear(vol, d, px, py, pz);
                }
            } else {
                for t in t0..=t1 {
                    let (px, py, pz) = sample(t);
                    acc += trilinear(vol, d, px, py, pz);
                }
            }
            out[i * d + j] = (acc / n) as f32;
        }
    }
}

/// Project `vol` under every rotation in `rots` (origin offsets in pixels in `origins_px`, or
/// none), in parallel over images. Returns `rots.len()` images of `d×d` concatenated.
pub fn project_stack(vol: &[f32], d: usize, rots: &[Mat3], origins_px: Option<&[[f64; 2]]>, oversample: usize) -> Vec<f32> {
    if let Some(o) = origins_px {
        assert_eq!(o.len(), rots.len(), "one origin per rotation");
    }
    let mut out = vec![0.0f32; rots.len() * d * d];
    out.par_chunks_mut(d * d).enumerate().for_each(|(k, img)| {
        let o = origins_px.map_or([0.0, 0.0], |o| o[k]);
        project_volume(vol, d, &rots[k], o, oversample, img);
    });
    out
}

/// An isotropic 3D Gaussian in Å: mean, variance per axis (Å²) and mass (its integral).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IsoGaussian {
    pub mean_a: [f64; 3],
    pub var_a2: f64,
    pub mass: f64,
}

impl IsoGaussian {
    /// From a [`crate::gaussian::GaussianA`] whose covariance is isotropic (`σ²·I`); `None`
    /// otherwise (relative tolerance 1e-9).
    pub fn from_gaussian_a(g: &crate::gaussian::GaussianA) -> Option<Self> {
        let v = g.cov_a2[0][0];
        let tol = 1e-9 * v.abs();
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { v } else { 0.0 };
                if (g.cov_a2[i][j] - want).abs() > tol {
                    return None;
                }
            }
        }
        (v > 0.0).then_some(IsoGaussian { mean_a: g.mean_a, var_a2: v, mass: g.mass })
    }
}

/// `out[t] = scale·exp(−(t0 + t)²·inv2)` for `t` in `0..n`. Uses the exact recurrences
/// `g(x+1) = g(x)·e^(−(2x+1)·inv2)` and `g(x−1) = g(x)·e^((2x−1)·inv2)`, whose ratios are
/// themselves updated by one factor `e^(−2·inv2)`, outward from the sample nearest the centre
/// (three `exp` per profile instead of `n`; relative rounding grows like `n·ε`, and values
/// underflow to zero only where they are below the smallest f64). Narrow profiles
/// (`inv2 > 50`, σ below 0.1 px) are evaluated directly.
fn gaussian_profile(out: &mut Vec<f64>, t0: f64, n: usize, inv2: f64, scale: f64) {
    out.clear();
    if n < 4 || inv2 > 50.0 {
        out.extend((0..n).map(|t| {
            let x = t0 + t as f64;
            scale * (-x * x * inv2).exp()
        }));
        return;
    }
    out.resize(n, 0.0);
    let m = (-t0).round().clamp(0.0, (n - 1) as f64) as usize;
    let xm = t0 + m as f64;
    let q = (-2.0 * inv2).exp();
    let gm = scale * (-xm * xm * inv2).exp();
    let (mut g, mut r) = (gm, (-(2.0 * xm + 1.0) * inv2).exp());
    for v in out[m..].iter_mut() {
        *v = g;
        g *= r;
        r *= q;
    }
    let (mut g, mut l) = (gm, ((2.0 * xm - 1.0) * inv2).exp());
    for v in out[..m].iter_mut().rev() {
        g *= l;
        l *= q;
        *v = g;
    }
}

/// Per-thread scratch for [`splat_isotropic`] (two 1D profiles).
#[derive(Default)]
pub struct SplatScratch {
    ex: Vec<f64>,
    ey: Vec<f64>,
}

/// Add the exact projections of isotropic Gaussians under pose (`rot`, `origin_a` in Å) to
/// `out` (`d×d`, f64, row-major) on the grid of `apix` Å: the image formation model of the
/// crate (a Gaussian of variance `σ²` projects to a 2D Gaussian of the same variance at
/// `(A·μ)_xy − o`, value `mass/(2πσ²)·exp(−|p − m|²/(2σ²))`), evaluated in the square of
/// half-width `cutoff_sigma·σ` around each centre.
///
/// The 2D Gaussian is separable, so each Gaussian costs two 1D profiles of `exp` and one
/// outer product; this makes analytic projection of atomic models (tens of thousands of
/// Gaussians) a few milliseconds per image. Summation order is the Gaussians' order.
#[allow(clippy::too_many_arguments)]
pub fn splat_isotropic(
    gaussians: &[IsoGaussian],
    rot: &Mat3,
    origin_a: [f64; 2],
    d: usize,
    apix: f64,
    cutoff_sigma: f64,
    scratch: &mut SplatScratch,
    out: &mut [f64],
) {
    assert_eq!(out.len(), d * d, "image is not {d}×{d}");
    let h = (d / 2) as f64;
    let last = d as i64 - 1;
    for g in gaussians {
        let mx = rot[0][0] * g.mean_a[0] + rot[0][1] * g.mean_a[1] + rot[0][2] * g.mean_a[2] - origin_a[0];
        let my = rot[1][0] * g.mean_a[0] + rot[1][1] * g.mean_a[1] + rot[1][2] * g.mean_a[2] - origin_a[1];
        let (cx, cy) = (mx / apix + h, my / apix + h);
        let sigma_px = g.var_a2.sqrt() / apix;
        let r = cutoff_sigma * sigma_px;
        let (x0, x1) = (((cx - r).ceil() as i64).max(0), ((cx + r).floor() as i64).min(last));
        let (y0, y1) = (((cy - r).ceil() as i64).max(0), ((cy + r).floor() as i64).min(last));
        if x0 > x1 || y0 > y1 {
            continue;
        }
        let inv2 = 0.5 / (sigma_px * sigma_px);
        let norm = g.mass / (2.0 * std::f64::consts::PI * g.var_a2);
        gaussian_profile(&mut scratch.ex, x0 as f64 - cx, (x1 - x0 + 1) as usize, inv2, 1.0);
        gaussian_profile(&mut scratch.ey, y0 as f64 - cy, (y1 - y0 + 1) as usize, inv2, norm);
        for (i, &wy) in (y0..=y1).zip(scratch.ey.iter()) {
            let row = &mut out[i as usize * d + x0 as usize..=i as usize * d + x1 as usize];
            for (o, &wx) in row.iter_mut().zip(scratch.ex.iter()) {
                *o += wy * wx;
            }
        }
    }
}

/// Fourier filtering of centred real images with plans made once: exactly
/// `real(IFFT(H·FFT(img)))` on the centred grid (the full complex recipe of the reference
/// projector), computed in `f64` through the crate's centred 2D transform
/// ([`crate::fourier::CentredFft2`]; the half-plane layout of the crate: columns
/// `kx = 0..=D/2`, rows `ky` in FFT order). Used to apply a CTF to simulated images.
///
/// `H` is a real function of the integer frequency indices `(kx, ky)` of the grid, each in
/// `[−D/2, D/2)` as in the centred layout (divide by `D·apix` for 1/Å). For a real image,
/// `real(IFFT(H·F)) = IFFT(H_s·F)` with `H_s(k) = ½(H(k) + H(−k))`, `−k` taken on the grid
/// (modulo `D`), so the filter applied is `H_s`. [`HalfPlaneFilter::apply`] evaluates `H`
/// twice per frequency to form it; [`HalfPlaneFilter::apply_even`] assumes `H(k) = H(−k)` for
/// the continuous frequencies (true of every CTF) and evaluates twice only on the Nyquist row
/// and column of an even box, where the grid wraps `+D/2` onto `−D/2`.
pub struct HalfPlaneFilter {
    fft: CentredFft2<f64>,
}

/// Per-thread buffers for [`HalfPlaneFilter::apply`].
pub type FilterScratch = Fft2Scratch<f64>;

impl HalfPlaneFilter {
    /// Plans for `d×d` images.
    pub fn new(d: usize) -> Self {
        assert!(d >= 2, "image too small");
        HalfPlaneFilter { fft: CentredFft2::new(d) }
    }

    /// Scratch buffers sized for this plan (make one per thread).
    pub fn scratch(&self) -> FilterScratch {
        self.fft.scratch()
    }

    /// Filter the centred `d×d` image `img` in place by `h(kx, ky)` (see the type's docs):
    /// exactly `real(IFFT(h·FFT(img)))` for any real `h`.
    pub fn apply(&self, img: &mut [f64], h: impl Fn(i64, i64) -> f64, s: &mut FilterScratch) {
        self.run(img, &h, false, s)
    }

    /// As [`HalfPlaneFilter::apply`] for a filter with `h(k) = h(−k)` (a CTF), at half the
    /// evaluations of `h`.
    pub fn apply_even(&self, img: &mut [f64], h: impl Fn(i64, i64) -> f64, s: &mut FilterScratch) {
        self.run(img, &h, true, s)
    }

    fn run(&self, img: &mut [f64], h: &dyn Fn(i64, i64) -> f64, even: bool, s: &mut FilterScratch) {
        let d = self.fft.d();
        assert_eq!(img.len(), d * d, "image is not {d}×{d}");
        let nyquist = -((d / 2) as i64);
        // The frequency index on the grid of −k.
        let mirror = |k: i64| freq_index(freq_position(-k, d), d);
        self.fft.forward(img, d, s);
        let norm = 1.0 / (d * d) as f64;
        for (c, col) in s.columns_mut().chunks_exact_mut(d).enumerate() {
            let kx = freq_index(c, d);
            for (r, v) in col.iter_mut().enumerate() {
                let ky = freq_index(r, d);
                let wrapped = d.is_multiple_of(2) && (kx == nyquist || ky == nyquist);
                let hv = if even && !wrapped { h(kx, ky) } else { 0.5 * (h(kx, ky) + h(mirror(kx), mirror(ky))) };
                *v *= hv * norm;
            }
        }
        // The inverse drops the imaginary parts of the DC and Nyquist columns (rounding noise
        // of a Hermitian spectrum) and undoes the shift.
        self.fft.inverse_unnormalised(s, img, d);
    }
}
