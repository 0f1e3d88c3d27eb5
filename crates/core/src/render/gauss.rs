//! Per-Gaussian math of the renderer, eight Gaussians at a time: activations of the raw
//! parameters, projection under a pose, and the chain rule from a splat's image-space moments
//! back to the 11 raw parameters.
//!
//! One unit of work here is a block of [`GB`] consecutive Gaussians held as a structure of
//! arrays (every quantity is a `[f32; GB]`, one lane per Gaussian), so that the compiler runs
//! the scalar-looking formulas on whole AVX2 vectors; branches are written as selects. The
//! pixel loops of [`super::kernel`] still take one Gaussian at a time: [`project_block`] hands
//! them one [`Splat`] per Gaussian, and [`backward_block`] takes back their moments.
//!
//! # Conventions
//!
//! Everything is in pixels (see [`super::kernel`]): `b = D·A[0..2]` maps box units to pixels,
//! the projected axes are `M = b·R·diag(s)` and `C_px = M Mᵀ`. The intermediate gradient of a
//! Gaussian ([`INTER`] values: `∂L/∂μ`, `∂L/∂(R·diag s)`, `∂L/∂w`) is linear in the image
//! gradient, so a minibatch sums it over images and applies the activations once
//! ([`finalise_block`]).

#![allow(clippy::needless_range_loop)] // lane loops mirror the matrix algebra

use super::fmadd;
use super::kernel::{exp_bounded, Splat, FAST_RANGE, FAST_ROWS, LANES};
use crate::gaussian::{PARAMS_PER_GAUSSIAN, P_AMP, P_QUAT, P_SCALE, SCALE_MAX, SCALE_MIN};
use crate::pose::Pose;

/// Gaussians per block.
pub(crate) const GB: usize = 8;
type L = [f32; GB];
const Z: L = [0.0; GB];

/// `ln u` for finite `u ≥ 1` without branches (vectorisable): `u = 2ᵉ·m` with `m ∈ [√½, √2)`
/// split off by integer arithmetic on the bits, `ln m = 2·atanh((m−1)/(m+1))` by its odd series
/// to the ninth power (relative error below 1e-7).
#[inline(always)]
fn ln_ge1(u: f32) -> f32 {
    const SQRT_HALF_BITS: u32 = 0x3f35_04f3;
    let adj = u.to_bits().wrapping_sub(SQRT_HALF_BITS);
    let e = ((adj as i32) >> 23) as f32;
    let m = f32::from_bits((adj & 0x007f_ffff).wrapping_add(SQRT_HALF_BITS));
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p = 2.0f32 / 9.0;
    p = fmadd(p, s2, 2.0 / 7.0);
    p = fmadd(p, s2, 2.0 / 5.0);
    p = fmadd(p, s2, 2.0 / 3.0);
    p = fmadd(p, s2, 2.0);
    fmadd(e, std::f32::consts::LN_2, s * p)
}

/// `softplus(x) = ln(1 + eˣ)` and its derivative `eˣ/(1 + eˣ)`, branch-free: one exponential
/// `t = eˣ`, `ln(1 + t)` as `ln u + (t − (u − 1))/u` with `u = 1 + t` rounded (the usual
/// correction that keeps `ln(1 + t)` accurate when `t` is tiny), `x` itself above 20 and 0
/// below −87 (as [`crate::gaussian::softplus`] up to rounding).
#[inline(always)]
pub(crate) fn softplus_and_grad(x: f32) -> (f32, f32) {
    let t = exp_bounded(x.clamp(-87.0, 20.0));
    let u = 1.0 + t;
    let l = ln_ge1(u) + (t - (u - 1.0)) / u;
    let g = t / u;
    // Plain two-way selects (an `else if` chain keeps the compiler from vectorising).
    let sp = if x > 20.0 { x } else { l };
    let sp = if x < -87.0 { 0.0 } else { sp };
    let g = if x < -87.0 { 0.0 } else { g };
    (sp, g)
}

/// Pose-independent activated parameters of a block of Gaussians (computed once per call).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ActBlock {
    pub mu: [L; 3],
    /// Rotation of the unit quaternion, `r[row][col]`.
    pub r: [[L; 3]; 3],
    /// Activated scales and `ds/draw` (zero where the clamp holds).
    pub s: [L; 3],
    pub ds: [L; 3],
    /// Amplitude and `dw/draw`.
    pub w: L,
    pub dw: L,
    /// Unit quaternion and `1/|q̂|` of the raw one (0: the raw quaternion was zero or
    /// overflowed, it reads as the identity and gets no gradient).
    pub q: [L; 4],
    pub qinv: L,
    /// False for a Gaussian with a non-finite raw parameter (skipped, zero gradient) and for
    /// the unused lanes of the last block.
    pub valid: [bool; GB],
}

/// Activations of up to [`GB`] Gaussians' raw parameters (`params.len() ≤ GB`; lanes beyond
/// are invalid). Invalid lanes compute on zeros, so nothing non-finite enters the arithmetic.
pub(crate) fn activate_block(params: &[[f32; PARAMS_PER_GAUSSIAN]], a: &mut ActBlock) {
    debug_assert!(params.len() <= GB);
    let mut x = [Z; PARAMS_PER_GAUSSIAN];
    let mut valid = [false; GB];
    for (i, p) in params.iter().enumerate() {
        if p.iter().all(|v| v.is_finite()) {
            valid[i] = true;
            for k in 0..PARAMS_PER_GAUSSIAN {
                x[k][i] = p[k];
            }
        }
    }
    a.valid = valid;
    a.mu = [x[0], x[1], x[2]];
    for k in 0..3 {
        for l in 0..GB {
            let (sp, sg) = softplus_and_grad(x[P_SCALE + k][l]);
            // The clamp of `gaussian::scale_activation`: a held scale has derivative 0.
            // Not `!(SCALE_MIN..=SCALE_MAX).contains(&sp)`: a NaN must read as not held, and
            // the branch-free `|` keeps the lane loop simple.
            #[allow(clippy::manual_range_contains)]
            let held = (sp < SCALE_MIN) | (sp > SCALE_MAX);
            a.s[k][l] = sp.clamp(SCALE_MIN, SCALE_MAX);
            a.ds[k][l] = if held { 0.0 } else { sg };
        }
    }
    for l in 0..GB {
        (a.w[l], a.dw[l]) = softplus_and_grad(x[P_AMP][l]);
    }
    for l in 0..GB {
        let raw = [x[P_QUAT][l], x[P_QUAT + 1][l], x[P_QUAT + 2][l], x[P_QUAT + 3][l]];
        let n = (raw[0] * raw[0] + raw[1] * raw[1] + raw[2] * raw[2] + raw[3] * raw[3]).sqrt();
        let ok = (n > 0.0) & (n < f32::INFINITY);
        let inv = 1.0 / if ok { n } else { 1.0 };
        let q = [
            if ok { raw[0] * inv } else { 1.0 },
            if ok { raw[1] * inv } else { 0.0 },
            if ok { raw[2] * inv } else { 0.0 },
            if ok { raw[3] * inv } else { 0.0 },
        ];
        a.qinv[l] = if ok { inv } else { 0.0 };
        for c in 0..4 {
            a.q[c][l] = q[c];
        }
        let [w, x, y, z] = q;
        let r = [
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
            [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
            [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
        ];
        for i in 0..3 {
            for j in 0..3 {
                a.r[i][j][l] = r[i][j];
            }
        }
    }
}

/// Per-image constants of a pose, in pixel units.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoseK {
    /// `b = D·A[0..2]`: box units → pixels for the first two rows of `A`.
    pub b: [[f32; 3]; 2],
    /// The third row of `A` (viewing direction), for the determinant of `C`.
    pub a2: [f32; 3],
    /// Index of the origin of box coordinates minus the origin offset in pixels:
    /// a Gaussian with `A·μ = 0` lands at column `cx`, row `cy`.
    pub cx: f32,
    pub cy: f32,
    pub d: usize,
    /// Footprint half-width in σ, squared.
    pub n2: f32,
}

impl PoseK {
    pub fn new(pose: &Pose, d: usize, apix: f64, n_sigma: f32) -> Self {
        let df = d as f64;
        let a = &pose.rot;
        let b = [
            [(df * a[0][0]) as f32, (df * a[0][1]) as f32, (df * a[0][2]) as f32],
            [(df * a[1][0]) as f32, (df * a[1][1]) as f32, (df * a[1][2]) as f32],
        ];
        // The origin offset o (Å) moves the image by −o: o/apix pixels, subtracted from the mean.
        let h = (d / 2) as f64;
        PoseK {
            b,
            a2: [a[2][0] as f32, a[2][1] as f32, a[2][2] as f32],
            cx: (h - pose.origin_a[0] / apix) as f32,
            cy: (h - pose.origin_a[1] / apix) as f32,
            d,
            n2: n_sigma * n_sigma,
        }
    }
}

/// `M = b·R·diag(s)` (2×3 per lane, pixels): the projected principal axes, `C_px = M Mᵀ`.
#[inline(always)]
fn axes(a: &ActBlock, k: &PoseK) -> [[L; 3]; 2] {
    let mut m = [[Z; 3]; 2];
    for r in 0..2 {
        for c in 0..3 {
            for l in 0..GB {
                m[r][c][l] = (k.b[r][0] * a.r[0][c][l] + k.b[r][1] * a.r[1][c][l] + k.b[r][2] * a.r[2][c][l]) * a.s[c][l];
            }
        }
    }
    m
}

/// Project a block of activated Gaussians (`out.len()` of them, ≤ [`GB`]). `None` for an
/// invalid Gaussian or one whose projection is not finite or peaks above
/// [`super::MAX_PEAK`] (skipped); an empty [`Splat`] for a footprint that misses the image.
pub(crate) fn project_block(a: &ActBlock, k: &PoseK, out: &mut [Option<Splat>]) {
    debug_assert!(out.len() <= GB);
    let m = axes(a, k);
    let d2 = (k.d * k.d) as f32;
    let last = (k.d - 1) as f32;
    let mut f = [Z; 13];
    let mut ok = [false; GB];
    let mut fast = [false; GB];
    for l in 0..GB {
        let c00 = m[0][0][l] * m[0][0][l] + m[0][1][l] * m[0][1][l] + m[0][2][l] * m[0][2][l];
        let c01 = m[0][0][l] * m[1][0][l] + m[0][1][l] * m[1][1][l] + m[0][2][l] * m[1][2][l];
        let c11 = m[1][0][l] * m[1][0][l] + m[1][1][l] * m[1][1][l] + m[1][2][l] * m[1][2][l];
        // |C| = |m0 × m1|², and m0 × m1 = D²·(s1s2 n0, s0s2 n1, s0s1 n2) with n = (A·R)₂ the
        // viewing direction in the principal frame: no cancellation even for needle-like splats.
        let mut n = [0.0f32; 3];
        for c in 0..3 {
            n[c] = k.a2[0] * a.r[0][c][l] + k.a2[1] * a.r[1][c][l] + k.a2[2] * a.r[2][c][l];
        }
        let (s0, s1, s2) = (a.s[0][l], a.s[1][l], a.s[2][l]);
        let t0 = s1 * s2 * n[0];
        let t1 = s0 * s2 * n[1];
        let t2 = s0 * s1 * n[2];
        let det = d2 * d2 * (t0 * t0 + t1 * t1 + t2 * t2);
        let kfac = d2 / (2.0 * std::f32::consts::PI * det.sqrt());
        let norm = a.w[l] * kfac;
        let idet = 1.0 / det;
        let mx = k.b[0][0] * a.mu[0][l] + k.b[0][1] * a.mu[1][l] + k.b[0][2] * a.mu[2][l] + k.cx;
        let my = k.b[1][0] * a.mu[0][l] + k.b[1][1] * a.mu[1][l] + k.b[1][2] * a.mu[2][l] + k.cy;
        let (ia, ib, ic) = (c11 * idet, -c01 * idet, c00 * idet);
        // `&` rather than `&&` throughout: no branches, so the lanes vectorise.
        let finite =
            mx.is_finite() & my.is_finite() & ia.is_finite() & ib.is_finite() & ic.is_finite() & norm.is_finite() & kfac.is_finite();
        ok[l] = a.valid[l] & finite & (det > 0.0) & (norm <= super::MAX_PEAK);
        // Bounding box of the footprint ellipse, clipped to the image (in float, so far-away
        // or huge splats cannot overflow an integer).
        let half_h = (k.n2 * c11).sqrt();
        let half_w = (k.n2 * c00).sqrt();
        let y0 = (my - half_h).ceil().max(0.0);
        let y1 = (my + half_h).floor().min(last);
        let xl = (mx - half_w).ceil().max(0.0);
        let xr = (mx + half_w).floor().min(last);
        // The separable path is exact in exact arithmetic; in f32 it needs its factors in
        // range. The exponent is concave, so its minimum over the clipped box is at a corner.
        let ym = ((y0 + y1) * 0.5).floor();
        let kmax = (ym - y0).max(y1 - ym);
        let e = |dx: f32, dy: f32| -0.5 * (ia * dx * dx + 2.0 * ib * dx * dy + ic * dy * dy);
        let emin = e(xl - mx, y0 - my).min(e(xr - mx, y0 - my)).min(e(xl - mx, y1 - my)).min(e(xr - mx, y1 - my));
        fast[l] = (y1 - y0 < FAST_ROWS as f32) & (0.5 * ic * kmax * kmax <= FAST_RANGE) & (emin >= -FAST_RANGE);
        let chunks = ((xr - xl) * (1.0 / LANES as f32)).floor() + 1.0;
        let vals = [mx, my, ia, ib, ic, norm, kfac, y0, y1, xl, xr, ym, chunks];
        for (j, v) in vals.iter().enumerate() {
            f[j][l] = *v;
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        if !ok[i] {
            *o = None;
            continue;
        }
        let s = Splat {
            mx: f[0][i],
            my: f[1][i],
            ia: f[2][i],
            ib: f[3][i],
            ic: f[4][i],
            norm: f[5][i],
            kfac: f[6][i],
            y1: -1,
            ..Splat::default()
        };
        let (y0, y1, xl, xr) = (f[7][i], f[8][i], f[9][i], f[10][i]);
        *o = Some(if y0 <= y1 && xl <= xr {
            Splat { y0: y0 as i32, y1: y1 as i32, x0: xl as u32, x1: xr as u32, chunks: f[12][i] as u32, ym: f[11][i], fast: fast[i], ..s }
        } else {
            s
        });
    }
}

/// Number of intermediate gradient values per Gaussian: `∂L/∂μ` (3), `∂L/∂(R·diag s)` (9,
/// row-major), `∂L/∂w` (1).
pub(crate) const INTER: usize = 13;

/// Intermediate gradients of a block, `[value][lane]`.
pub(crate) type InterBlock = [L; INTER];

/// A block's contribution to the pose gradient of one image.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PosePartial {
    /// `Σ ∂L/∂m` over the Gaussians (pixels; the projected mean in index coordinates).
    pub gm: [f64; 2],
    /// `∂L/∂B` for `B` the first two rows of `A`.
    pub gb: [[f64; 3]; 2],
}

impl PosePartial {
    pub fn add(&mut self, o: &PosePartial) {
        for r in 0..2 {
            self.gm[r] += o.gm[r];
            for c in 0..3 {
                self.gb[r][c] += o.gb[r][c];
            }
        }
    }
}

/// From the image-space moments `mo[i] = Σ g·e·[1, dx, dy, dx², dx·dy, dy²]` of each splat of
/// a block (zero for skipped or empty ones) to its intermediate gradients, added into `inter`,
/// and its pose gradients, added into `pose`.
///
/// With `f` the splat value: `∂f/∂m = f·C⁻¹d`, and `∂f/∂C = ½ f (C⁻¹ddᵀC⁻¹ − C⁻¹)` (the
/// normalisation contributes the `−½ f C⁻¹`); `C = M Mᵀ` gives `∂L/∂M = 2·∂L/∂C·M`; then
/// `m = b μ + centre`, `M = b (R diag s)` and, for the pose, `∂L/∂B = D (gm μᵀ + gM (R diag s)ᵀ)`.
pub(crate) fn backward_block(
    a: &ActBlock,
    splats: &[Option<Splat>],
    k: &PoseK,
    mo: &[[f32; 6]; GB],
    inter: &mut InterBlock,
    pose: &mut PosePartial,
) {
    let mut n = Z;
    let (mut ia, mut ib, mut ic, mut kfac) = (Z, Z, Z, Z);
    let mut o = [Z; 6];
    for (i, s) in splats.iter().enumerate() {
        if let Some(s) = s {
            if !s.is_empty() {
                (n[i], ia[i], ib[i], ic[i], kfac[i]) = (s.norm, s.ia, s.ib, s.ic, s.kfac);
                for j in 0..6 {
                    o[j][i] = mo[i][j];
                }
            }
        }
    }
    let m = axes(a, k);
    let mut gml = [Z; 2];
    let mut gbl = [[Z; 3]; 2];
    for l in 0..GB {
        let (s0, sx, sy) = (n[l] * o[0][l], n[l] * o[1][l], n[l] * o[2][l]);
        let (sxx, sxy, syy) = (n[l] * o[3][l], n[l] * o[4][l], n[l] * o[5][l]);
        let (ia, ib, ic) = (ia[l], ib[l], ic[l]);
        let gm = [ia * sx + ib * sy, ib * sx + ic * sy];
        // U = C⁻¹ P C⁻¹ with P = Σ g f d dᵀ.
        let p0 = [ia * sxx + ib * sxy, ia * sxy + ib * syy];
        let p1 = [ib * sxx + ic * sxy, ib * sxy + ic * syy];
        let u00 = p0[0] * ia + p0[1] * ib;
        let u01 = p0[0] * ib + p0[1] * ic;
        let u11 = p1[0] * ib + p1[1] * ic;
        let gc = [[0.5 * (u00 - s0 * ia), 0.5 * (u01 - s0 * ib)], [0.5 * (u01 - s0 * ib), 0.5 * (u11 - s0 * ic)]];
        let mut gmm = [[0.0f32; 3]; 2];
        for r in 0..2 {
            for c in 0..3 {
                gmm[r][c] = 2.0 * (gc[r][0] * m[0][c][l] + gc[r][1] * m[1][c][l]);
            }
        }
        for j in 0..3 {
            inter[j][l] += k.b[0][j] * gm[0] + k.b[1][j] * gm[1];
            for c in 0..3 {
                inter[3 + 3 * j + c][l] += k.b[0][j] * gmm[0][c] + k.b[1][j] * gmm[1][c];
            }
        }
        inter[12][l] += kfac[l] * o[0][l];
        for r in 0..2 {
            gml[r][l] = gm[r];
            for j in 0..3 {
                let mut acc = gm[r] * a.mu[j][l];
                for c in 0..3 {
                    acc += gmm[r][c] * a.r[j][c][l] * a.s[c][l];
                }
                gbl[r][j][l] = acc;
            }
        }
    }
    let df = k.d as f64;
    for r in 0..2 {
        pose.gm[r] += gml[r].iter().map(|&v| v as f64).sum::<f64>();
        for j in 0..3 {
            pose.gb[r][j] += df * gbl[r][j].iter().map(|&v| v as f64).sum::<f64>();
        }
    }
}

/// Apply the activations' chain rule to a block's intermediate gradients and add the result
/// to the raw-parameter gradient rows `out` (`out.len() ≤ GB`; invalid Gaussians get nothing).
pub(crate) fn finalise_block(a: &ActBlock, inter: &InterBlock, out: &mut [[f32; PARAMS_PER_GAUSSIAN]]) {
    let mut g = [Z; PARAMS_PER_GAUSSIAN];
    for l in 0..GB {
        // RS[j][c] = R[j][c]·s[c].
        let gi = |j: usize, c: usize| inter[3 + 3 * j + c][l];
        let mut gr = [[0.0f32; 3]; 3];
        for c in 0..3 {
            let mut gs = 0.0;
            for j in 0..3 {
                gs += gi(j, c) * a.r[j][c][l];
                gr[j][c] = gi(j, c) * a.s[c][l];
            }
            g[P_SCALE + c][l] = gs * a.ds[c][l];
        }
        for j in 0..3 {
            g[j][l] = inter[j][l];
        }
        g[P_AMP][l] = inter[12][l] * a.dw[l];
        let (w, x, y, z) = (a.q[0][l], a.q[1][l], a.q[2][l], a.q[3][l]);
        let gq = [
            2.0 * (-z * gr[0][1] + y * gr[0][2] + z * gr[1][0] - x * gr[1][2] - y * gr[2][0] + x * gr[2][1]),
            2.0 * (y * gr[0][1] + z * gr[0][2] + y * gr[1][0] - 2.0 * x * gr[1][1] - w * gr[1][2] + z * gr[2][0] + w * gr[2][1]
                - 2.0 * x * gr[2][2]),
            2.0 * (-2.0 * y * gr[0][0] + x * gr[0][1] + w * gr[0][2] + x * gr[1][0] + z * gr[1][2] - w * gr[2][0] + z * gr[2][1]
                - 2.0 * y * gr[2][2]),
            2.0 * (-2.0 * z * gr[0][0] - w * gr[0][1] + x * gr[0][2] + w * gr[1][0] - 2.0 * z * gr[1][1]
                + y * gr[1][2]
                + x * gr[2][0]
                + y * gr[2][1]),
        ];
        // q = q̂/|q̂|: ∂q/∂q̂ = (I − q qᵀ)/|q̂| (zero when the raw quaternion was zero).
        let dot = w * gq[0] + x * gq[1] + y * gq[2] + z * gq[3];
        for c in 0..4 {
            g[P_QUAT + c][l] = (gq[c] - a.q[c][l] * dot) * a.qinv[l];
        }
    }
    for (i, row) in out.iter_mut().enumerate() {
        if a.valid[i] {
            for k in 0..PARAMS_PER_GAUSSIAN {
                row[k] += g[k][i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softplus_matches_f64() {
        // Relative error against f64 above −87; below, both are under 2e-38 (this function
        // returns 0 there).
        let mut worst = [0.0f64; 2];
        let mut x = -95.0f32;
        while x <= 40.0 {
            let (v, g) = softplus_and_grad(x);
            let rv = crate::gaussian::softplus_f64(x as f64);
            let rg = crate::gaussian::softplus_grad_f64(x as f64);
            if x >= -87.0 {
                worst[0] = worst[0].max((v as f64 - rv).abs() / rv);
                worst[1] = worst[1].max((g as f64 - rg).abs() / rg);
            } else {
                assert!(v == 0.0 && g == 0.0 && rv < 2e-38 && rg < 2e-38);
            }
            x += 0.0037;
        }
        assert!(worst[0] < 5e-7 && worst[1] < 5e-7, "relative errors {worst:?}");
    }

    #[test]
    fn ln_is_accurate() {
        let mut worst = 0.0f64;
        let mut u = 1.0f32;
        while u < 1e9 {
            let r = (u as f64).ln();
            worst = worst.max((ln_ge1(u) as f64 - r).abs() / r.max(1e-30));
            u = if u < 2.0 { u + 1e-5 } else { u * 1.0007 };
        }
        assert!(worst < 2e-7, "relative error {worst}");
        assert_eq!(ln_ge1(1.0), 0.0);
    }

    #[test]
    fn activations_match_the_model() {
        // Against gaussian::physical (libm softplus, same clamp and normalisation), including
        // clamped scales, a zero quaternion and a non-finite Gaussian.
        let mut rng = crate::rng::Rng::new(4);
        let mut params: Vec<[f32; PARAMS_PER_GAUSSIAN]> = (0..13)
            .map(|_| {
                let mut p = [0.0f32; PARAMS_PER_GAUSSIAN];
                for v in p.iter_mut() {
                    *v = rng.uniform_range(-6.0, 3.0) as f32;
                }
                p
            })
            .collect();
        params[2][P_SCALE] = -30.0; // below SCALE_MIN
        params[3][P_SCALE + 1] = 5.0; // above SCALE_MAX
        params[4][P_QUAT..P_QUAT + 4].copy_from_slice(&[0.0; 4]);
        params[5][1] = f32::NAN;
        let model = crate::gaussian::GaussianModel { params: params.clone() };
        for (bi, chunk) in params.chunks(GB).enumerate() {
            let mut a = ActBlock::default();
            activate_block(chunk, &mut a);
            for l in 0..chunk.len() {
                let i = bi * GB + l;
                if i == 5 {
                    assert!(!a.valid[l]);
                    continue;
                }
                assert!(a.valid[l]);
                let (mean, scales, quat, amp) = model.physical(i);
                for c in 0..3 {
                    assert_eq!(a.mu[c][l], mean[c]);
                    assert!((a.s[c][l] - scales[c]).abs() <= 1e-6 * scales[c], "scale {i} {c}");
                    let (_, ds) = crate::gaussian::scale_activation(chunk[l][P_SCALE + c]);
                    assert!((a.ds[c][l] - ds).abs() <= 1e-6 * ds.max(1e-30), "scale derivative {i} {c}");
                }
                for c in 0..4 {
                    assert!((a.q[c][l] - quat[c]).abs() <= 1e-6);
                }
                assert!((a.w[l] - amp).abs() <= 1e-6 * amp);
            }
        }
    }
}
