//! Per-Gaussian math of the renderer: activations, projection under a pose, the per-pixel
//! splat weight shared by the forward scatter and the backward gather, and the chain rule from
//! image-space sums back to the 11 raw parameters.
//!
//! One unit of work here is one Gaussian: [`activate_all`] once per call (pose independent,
//! eight Gaussians at a time so that their softplus evaluations share vector lanes),
//! [`project`] once per image, then [`splat_forward`] scatters it into a private image and
//! [`splat_backward`] gathers its six weighted moments from the image-space gradient. Both
//! visit exactly the same pixels (same footprint, same chunks, same mask) and evaluate the
//! same per-pixel function, so the backward pass is the exact adjoint of the forward pass.
//!
//! A footprint is walked as columns of [`LANES`] pixels, row by row. Two evaluations share
//! this walk: the **separable path** (the usual one; two exponentials per column and one per
//! row, then two multiplications per pixel, see [`fast_weight`]) for footprints of at most 32
//! rows whose factors stay well inside the f32 range, and the **per-pixel path** (one
//! exponential per pixel, [`pixel_weight`]) for the rest: large or needle-like splats. They
//! agree to rounding (≤ 5e-6 of the peak, tested).
//!
//! # Units
//!
//! Inside the kernels everything is in **pixels**: column `j` / row `i` of the image are the
//! coordinates `x = j`, `y = i` (index space), so a Gaussian whose box-unit projected mean is
//! `m_box` sits at `D·m_box + D/2`. The projected covariance is `C_px = D²·C_box` and the
//! splat value `w·D²/(2π√|C_px|)·exp(−½ dᵀC_px⁻¹d)` equals the box-unit value
//! `w/(2π√|C_box|)·exp(…)`: image values are mass per box².

#![allow(clippy::needless_range_loop)] // index loops mirror the matrix algebra

use crate::gaussian::{PARAMS_PER_GAUSSIAN, P_AMP, P_QUAT, P_SCALE, SCALE_MAX, SCALE_MIN};
use crate::pose::Pose;

/// Pixels per row chunk. Rows of a footprint are walked in whole chunks of this many
/// consecutive pixels (the image is padded on the right so a chunk never leaves the buffer),
/// which gives the inner loops a constant trip count that the compiler turns into two AVX2
/// vectors per chunk.
pub const LANES: usize = 16;

const LANE_OFFSETS: [f32; LANES] = {
    let mut a = [0.0f32; LANES];
    let mut i = 0;
    while i < LANES {
        a[i] = i as f32;
        i += 1;
    }
    a
};

/// Pose-independent activated parameters of one Gaussian (computed once per call).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Act {
    pub mu: [f32; 3],
    /// Rotation of the unit quaternion.
    pub r: [[f32; 3]; 3],
    /// Activated scales and `ds/draw` (zero where the clamp holds).
    pub s: [f32; 3],
    pub ds: [f32; 3],
    /// Amplitude and `dw/draw`.
    pub w: f32,
    pub dw: f32,
    /// Unit quaternion and the norm of the raw one (0: the raw quaternion was zero, read as
    /// the identity, and gets no gradient).
    pub q: [f32; 4],
    pub qn: f32,
    pub valid: bool,
}

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
    p = p.mul_add(s2, 2.0 / 7.0);
    p = p.mul_add(s2, 2.0 / 5.0);
    p = p.mul_add(s2, 2.0 / 3.0);
    p = p.mul_add(s2, 2.0);
    e.mul_add(std::f32::consts::LN_2, s * p)
}

/// `softplus(x) = ln(1 + eˣ)` and its derivative `eˣ/(1 + eˣ)`, branch-free so that a loop over
/// several Gaussians vectorises: one exponential `t = eˣ`, `ln(1 + t)` as `ln u + (t − (u − 1))/u`
/// with `u = 1 + t` rounded (the usual correction that keeps `ln(1 + t)` accurate when `t` is
/// tiny), `x` itself above 20 and 0 below −87 (as [`crate::gaussian::softplus`] up to rounding).
#[inline(always)]
pub(crate) fn softplus_and_grad(x: f32) -> (f32, f32) {
    let t = exp_bounded(x.clamp(-87.0, 20.0));
    let u = 1.0 + t;
    let l = ln_ge1(u) + (t - (u - 1.0)) / u;
    let g = t / u;
    let sp = if x > 20.0 { x } else if x < -87.0 { 0.0 } else { l };
    let g = if x < -87.0 { 0.0 } else { g };
    (sp, g)
}

/// Gaussians activated together, so that their softplus evaluations fill vector lanes.
const ACT_BATCH: usize = 8;

/// Activations of many Gaussians' raw parameters (`acts[i]` from `params[i]`). A Gaussian with
/// any non-finite raw parameter is marked invalid (it is skipped and receives a zero gradient).
pub(crate) fn activate_all(params: &[[f32; PARAMS_PER_GAUSSIAN]], acts: &mut [Act]) {
    debug_assert_eq!(params.len(), acts.len());
    for (p8, a8) in params.chunks(ACT_BATCH).zip(acts.chunks_mut(ACT_BATCH)) {
        // Softplus inputs: the three raw scales and the raw amplitude of each Gaussian.
        let mut x = [[0.0f32; ACT_BATCH]; 4];
        for (i, p) in p8.iter().enumerate() {
            x[0][i] = p[P_SCALE];
            x[1][i] = p[P_SCALE + 1];
            x[2][i] = p[P_SCALE + 2];
            x[3][i] = p[P_AMP];
        }
        let mut sp = [[0.0f32; ACT_BATCH]; 4];
        let mut sg = [[0.0f32; ACT_BATCH]; 4];
        for k in 0..4 {
            for i in 0..ACT_BATCH {
                (sp[k][i], sg[k][i]) = softplus_and_grad(x[k][i]);
            }
        }
        for (i, (p, a)) in p8.iter().zip(a8.iter_mut()).enumerate() {
            *a = activate_with(p, [sp[0][i], sp[1][i], sp[2][i]], [sg[0][i], sg[1][i], sg[2][i]], sp[3][i], sg[3][i]);
        }
    }
}

/// The rest of the activation once the softplus values are known: the clamp of
/// [`crate::gaussian::scale_activation`] (a held scale gets derivative 0), the quaternion's
/// normalisation and rotation matrix.
#[inline(always)]
fn activate_with(p: &[f32; PARAMS_PER_GAUSSIAN], sp: [f32; 3], sg: [f32; 3], w: f32, dw: f32) -> Act {
    if !p.iter().all(|v| v.is_finite()) {
        return Act::default();
    }
    let mut a = Act { mu: [p[0], p[1], p[2]], valid: true, w, dw, ..Act::default() };
    for k in 0..3 {
        (a.s[k], a.ds[k]) = if sp[k] < SCALE_MIN {
            (SCALE_MIN, 0.0)
        } else if sp[k] > SCALE_MAX {
            (SCALE_MAX, 0.0)
        } else {
            (sp[k], sg[k])
        };
    }
    let raw = [p[P_QUAT], p[P_QUAT + 1], p[P_QUAT + 2], p[P_QUAT + 3]];
    let n = (raw[0] * raw[0] + raw[1] * raw[1] + raw[2] * raw[2] + raw[3] * raw[3]).sqrt();
    if n > 0.0 && n.is_finite() {
        let inv = 1.0 / n;
        a.q = [raw[0] * inv, raw[1] * inv, raw[2] * inv, raw[3] * inv];
        a.qn = n;
    } else {
        a.q = [1.0, 0.0, 0.0, 0.0];
        a.qn = 0.0;
    }
    let [w, x, y, z] = a.q;
    a.r = [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
    ];
    a
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

/// One Gaussian projected under one pose (pixel units), as the pixel loops need it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Splat {
    /// Mean in index coordinates (column, row).
    pub mx: f32,
    pub my: f32,
    /// Inverse covariance `[ia ib; ib ic]` (px⁻²).
    pub ia: f32,
    pub ib: f32,
    pub ic: f32,
    /// `w·kfac`, the peak value.
    pub norm: f32,
    /// `D²/(2π√|C_px|)` = ∂norm/∂w.
    pub kfac: f32,
    /// Columns `x0..=x1` of the footprint's bounding box (clipped to the image), walked in
    /// `chunks` chunks of [`LANES`] pixels.
    pub x0: u32,
    pub x1: u32,
    pub chunks: u32,
    /// Footprint rows `y0..=y1` clipped to the image; empty when `y1 < y0`.
    pub y0: i32,
    pub y1: i32,
    /// Reference row of the separable evaluation (the middle row of the footprint).
    pub ym: f32,
    /// Whether the separable evaluation ([`splat_forward`]'s fast path) is safe in f32.
    pub fast: bool,
}

impl Splat {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.y1 < self.y0
    }
}

/// Most footprint rows the separable path handles (its row factors live on the stack).
const FAST_ROWS: usize = 32;
/// Largest magnitude of the exponents the separable factors may reach (so that they stay far
/// from f32 overflow, underflow and denormals, and their rounding stays below 2e-6 of the
/// peak).
const FAST_RANGE: f32 = 30.0;

/// `M = b·R·diag(s)` (2×3, pixels): the projected principal axes, `C_px = M Mᵀ`.
#[inline]
pub(crate) fn axes(a: &Act, k: &PoseK) -> [[f32; 3]; 2] {
    let mut m = [[0.0f32; 3]; 2];
    for r in 0..2 {
        for c in 0..3 {
            m[r][c] = (k.b[r][0] * a.r[0][c] + k.b[r][1] * a.r[1][c] + k.b[r][2] * a.r[2][c]) * a.s[c];
        }
    }
    m
}

/// Project one activated Gaussian. Returns `None` if the projection is not finite (the
/// Gaussian is then skipped like a non-finite one); a Gaussian whose footprint misses the
/// image gives an empty [`Splat`].
#[inline]
pub(crate) fn project(a: &Act, k: &PoseK) -> Option<Splat> {
    if !a.valid {
        return None;
    }
    let m = axes(a, k);
    let c00 = m[0][0] * m[0][0] + m[0][1] * m[0][1] + m[0][2] * m[0][2];
    let c01 = m[0][0] * m[1][0] + m[0][1] * m[1][1] + m[0][2] * m[1][2];
    let c11 = m[1][0] * m[1][0] + m[1][1] * m[1][1] + m[1][2] * m[1][2];
    // |C| = |m0 × m1|², and m0 × m1 = D²·(s1s2 n0, s0s2 n1, s0s1 n2) with n = (A·R)₂ the
    // viewing direction in the principal frame: no cancellation even for needle-like splats.
    let mut n = [0.0f32; 3];
    for c in 0..3 {
        n[c] = k.a2[0] * a.r[0][c] + k.a2[1] * a.r[1][c] + k.a2[2] * a.r[2][c];
    }
    let d2 = (k.d * k.d) as f32;
    let [s0, s1, s2] = a.s;
    let t0 = s1 * s2 * n[0];
    let t1 = s0 * s2 * n[1];
    let t2 = s0 * s1 * n[2];
    let det = d2 * d2 * (t0 * t0 + t1 * t1 + t2 * t2);
    let sq = det.sqrt();
    let kfac = d2 / (2.0 * std::f32::consts::PI * sq);
    let norm = a.w * kfac;
    let idet = 1.0 / det;
    let mx = k.b[0][0] * a.mu[0] + k.b[0][1] * a.mu[1] + k.b[0][2] * a.mu[2] + k.cx;
    let my = k.b[1][0] * a.mu[0] + k.b[1][1] * a.mu[1] + k.b[1][2] * a.mu[2] + k.cy;
    let s = Splat { mx, my, ia: c11 * idet, ib: -c01 * idet, ic: c00 * idet, norm, kfac, y1: -1, ..Splat::default() };
    let ok = [s.mx, s.my, s.ia, s.ib, s.ic, s.norm, s.kfac].iter().all(|v| v.is_finite());
    if !ok || !(det > 0.0) {
        return None;
    }
    // Bounding box of the footprint ellipse, clipped to the image (computed in float, so
    // far-away or huge splats cannot overflow an integer).
    let half_h = (k.n2 * c11).sqrt();
    let half_w = (k.n2 * c00).sqrt();
    let last = (k.d - 1) as f32;
    let y0 = (my - half_h).ceil().max(0.0);
    let y1 = (my + half_h).floor().min(last);
    let xl = (mx - half_w).ceil().max(0.0);
    let xr = (mx + half_w).floor().min(last);
    if !(y0 <= y1 && xl <= xr) {
        return Some(s);
    }
    let chunks = ((xr - xl) / LANES as f32).floor() as u32 + 1;
    // The separable path is exact in exact arithmetic; in f32 it needs its factors in range.
    // The exponent is concave, so its minimum over the clipped box is at a corner.
    let ym = ((y0 + y1) * 0.5).floor();
    let kmax = (ym - y0).max(y1 - ym);
    let e = |dx: f32, dy: f32| -0.5 * (s.ia * dx * dx + 2.0 * s.ib * dx * dy + s.ic * dy * dy);
    let emin = e(xl - mx, y0 - my).min(e(xr - mx, y0 - my)).min(e(xl - mx, y1 - my)).min(e(xr - mx, y1 - my));
    let fast = y1 - y0 < FAST_ROWS as f32 && 0.5 * s.ic * kmax * kmax <= FAST_RANGE && emin >= -FAST_RANGE;
    Some(Splat { y0: y0 as i32, y1: y1 as i32, x0: xl as u32, x1: xr as u32, chunks, ym, fast, ..s })
}

/// The unnormalised splat weight `exp(−½ dᵀC⁻¹d)` of one pixel, zero outside the footprint
/// ellipse `dᵀC⁻¹d ≤ n²`, from the exponent's per-lane part `pa = −½·ia·dx²` and its per-row
/// coefficients `hb = −ib·dy`, `hc = −½·ic·dy²`. Shared by the forward and backward passes of
/// the general path. The exponent is clamped to `[−½n², 0]` before the exponential, so
/// rounding can neither overflow it nor reach denormals.
#[inline(always)]
fn pixel_weight(dx: f32, pa: f32, hb: f32, hc: f32, cut: f32) -> f32 {
    let e = dx.mul_add(hb, pa + hc).min(0.0);
    let v = exp_bounded(e.max(cut));
    if e >= cut {
        v
    } else {
        0.0
    }
}

/// `eˣ` for `x ∈ [−87, 87]` without branches (vectorisable): `x = n·ln2 + r` with `n` rounded
/// by the 1.5·2²³ trick (so no float→int cast), `eʳ` by a degree-6 Taylor polynomial on
/// `|r| ≤ ln2/2` (relative error < 3e-7), `2ⁿ` assembled from exponent bits.
#[inline(always)]
pub fn exp_bounded(x: f32) -> f32 {
    const SHIFTER: f32 = 12_582_912.0; // 1.5·2²³
    let t = x.mul_add(std::f32::consts::LOG2_E, SHIFTER);
    let n = t - SHIFTER;
    let r = n.mul_add(-0.693_145_75, x);
    let r = n.mul_add(-1.428_606_8e-6, r);
    let mut p = 1.0f32 / 720.0;
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    // The low mantissa bits of t hold n (two's complement); shifting them into the exponent
    // field and adding the bias gives 2ⁿ for −126 ≤ n ≤ 127.
    let scale = f32::from_bits(t.to_bits().wrapping_shl(23).wrapping_add(127 << 23));
    p * scale
}

/// Column offsets `dx` of one chunk of lanes and the per-lane exponent part `−½·ia·dx²`.
#[inline(always)]
fn chunk_lanes(s: &Splat, c: u32) -> (usize, [f32; LANES], [f32; LANES]) {
    let x = s.x0 as usize + c as usize * LANES;
    let dx0 = x as f32 - s.mx;
    let mut dx = [0.0f32; LANES];
    let mut pa = [0.0f32; LANES];
    for l in 0..LANES {
        dx[l] = dx0 + LANE_OFFSETS[l];
        pa[l] = -0.5 * s.ia * dx[l] * dx[l];
    }
    (x, dx, pa)
}

/// Separable evaluation (fast path). With `k = y − ym` the row offset from the footprint's
/// middle row, the exponent of a pixel is `a + b·k − ½·ic·k²`, where `a` and `b` depend on the
/// column only. So the weight is `P·Ck` with the per-row factor `Ck = exp(−½·ic·k²)` and the
/// per-column factor `P = exp(a + b·k)`, which steps from one row to the next by one
/// multiplication with `B = exp(b)`: two exponentials per column and one per row instead of
/// one per pixel. [`Splat::fast`] guarantees every factor stays within `exp(±FAST_RANGE)`.
///
/// Row factors `Ck` for the footprint's rows `y0..=y1` (computed in blocks of 8).
#[inline(always)]
fn row_factors(s: &Splat, out: &mut [f32; FAST_ROWS]) {
    let rows = (s.y1 - s.y0 + 1) as usize;
    let k0 = s.y0 as f32 - s.ym;
    let c = -0.5 * s.ic;
    for (blk, o) in out.chunks_exact_mut(8).take(rows.div_ceil(8)).enumerate() {
        for (l, v) in o.iter_mut().enumerate() {
            let k = k0 + (blk * 8 + l) as f32;
            *v = exp_bounded((c * k * k).max(-87.0));
        }
    }
}

/// Per-column factors of one chunk of lanes for the separable path, at the first footprint
/// row: the column offsets `dx`, `P` (zero for lanes right of the footprint's last column,
/// which then stay zero) and the row step `B`.
#[inline(always)]
fn fast_lanes(s: &Splat, c: u32) -> (usize, [f32; LANES], [f32; LANES], [f32; LANES]) {
    let x = s.x0 as usize + c as usize * LANES;
    let dx0 = x as f32 - s.mx;
    let dym = s.ym - s.my;
    let k0 = s.y0 as f32 - s.ym;
    let inside = (s.x1 as usize - x) as f32;
    let mut dx = [0.0f32; LANES];
    let mut p = [0.0f32; LANES];
    let mut b = [0.0f32; LANES];
    for l in 0..LANES {
        dx[l] = dx0 + LANE_OFFSETS[l];
        let a = -0.5 * (s.ia * dx[l] * dx[l] + s.ic * dym * dym) - s.ib * dx[l] * dym;
        let bl = -(s.ib * dx[l] + s.ic * dym);
        let pl = exp_bounded(bl.mul_add(k0, a).clamp(-87.0, 87.0));
        p[l] = if LANE_OFFSETS[l] <= inside { pl } else { 0.0 };
        b[l] = exp_bounded(bl.clamp(-87.0, 87.0));
    }
    (x, dx, p, b)
}

/// The unnormalised weight of one pixel on the separable path (zero outside the footprint
/// ellipse, i.e. below `thr = exp(−½n²)`), stepping the column factor to the next row.
/// Shared by the forward and backward passes.
#[inline(always)]
fn fast_weight(p: &mut f32, b: f32, ck: f32, thr: f32) -> f32 {
    let v = *p * ck;
    *p *= b;
    if v >= thr {
        v
    } else {
        0.0
    }
}

/// Scatter one splat into a padded image (`stride ≥ D + LANES`, rows `0..D`): the footprint's
/// bounding box is walked one chunk column at a time, every row of it in one [`LANES`]-wide
/// chunk (the lanes outside the ellipse or the image are masked or land in the padding).
#[inline]
pub(crate) fn splat_forward(s: &Splat, img: &mut [f32], stride: usize, n2: f32) {
    if s.fast {
        let thr = exp_bounded(-0.5 * n2);
        let mut rf = [0.0f32; FAST_ROWS];
        row_factors(s, &mut rf);
        for c in 0..s.chunks {
            let (x, _, mut p, b) = fast_lanes(s, c);
            for (y, &ck) in (s.y0..=s.y1).zip(rf.iter()) {
                let o = y as usize * stride + x;
                let out: &mut [f32; LANES] = (&mut img[o..o + LANES]).try_into().unwrap();
                for l in 0..LANES {
                    out[l] = s.norm.mul_add(fast_weight(&mut p[l], b[l], ck, thr), out[l]);
                }
            }
        }
        return;
    }
    let cut = -0.5 * n2;
    for c in 0..s.chunks {
        let (x, dx, pa) = chunk_lanes(s, c);
        for y in s.y0..=s.y1 {
            let dy = y as f32 - s.my;
            let hb = -s.ib * dy;
            let hc = -0.5 * s.ic * dy * dy;
            let o = y as usize * stride + x;
            let out: &mut [f32; LANES] = (&mut img[o..o + LANES]).try_into().unwrap();
            for l in 0..LANES {
                out[l] = s.norm.mul_add(pixel_weight(dx[l], pa[l], hb, hc, cut), out[l]);
            }
        }
    }
}

/// Image-space moments of one splat against the gradient image `g` (padded like the forward
/// image, zero in the padding): with `e` the unnormalised weight and `(dx, dy)` the offset
/// from the mean, returns `Σ g·e·[1, dx, dy, dx², dx·dy, dy²]`. A lane keeps its `dx` down a
/// chunk column, so only `Σ g·e·[1, dy, dy²]` is accumulated per lane; the `dx` moments are
/// formed once per column.
#[inline]
pub(crate) fn splat_backward(s: &Splat, g: &[f32], stride: usize, n2: f32) -> [f32; 6] {
    let mut acc = [0.0f32; 6];
    let mut fold = |dx: &[f32; LANES], v0: &[f32; LANES], v1: &[f32; LANES], v2: &[f32; LANES]| {
        let mut m = [0.0f32; 6];
        for l in 0..LANES {
            m[0] += v0[l];
            m[1] += v0[l] * dx[l];
            m[2] += v1[l];
            m[3] += v0[l] * dx[l] * dx[l];
            m[4] += v1[l] * dx[l];
            m[5] += v2[l];
        }
        for k in 0..6 {
            acc[k] += m[k];
        }
    };
    if s.fast {
        let thr = exp_bounded(-0.5 * n2);
        let mut rf = [0.0f32; FAST_ROWS];
        row_factors(s, &mut rf);
        for c in 0..s.chunks {
            let (x, dx, mut p, b) = fast_lanes(s, c);
            let mut v0 = [0.0f32; LANES];
            let mut v1 = [0.0f32; LANES];
            let mut v2 = [0.0f32; LANES];
            for (y, &ck) in (s.y0..=s.y1).zip(rf.iter()) {
                let dy = y as f32 - s.my;
                let dy2 = dy * dy;
                let o = y as usize * stride + x;
                let gin: &[f32; LANES] = (&g[o..o + LANES]).try_into().unwrap();
                for l in 0..LANES {
                    let ge = gin[l] * fast_weight(&mut p[l], b[l], ck, thr);
                    v0[l] += ge;
                    v1[l] = ge.mul_add(dy, v1[l]);
                    v2[l] = ge.mul_add(dy2, v2[l]);
                }
            }
            fold(&dx, &v0, &v1, &v2);
        }
        return acc;
    }
    let cut = -0.5 * n2;
    for c in 0..s.chunks {
        let (x, dx, pa) = chunk_lanes(s, c);
        let mut v0 = [0.0f32; LANES];
        let mut v1 = [0.0f32; LANES];
        let mut v2 = [0.0f32; LANES];
        for y in s.y0..=s.y1 {
            let dy = y as f32 - s.my;
            let hb = -s.ib * dy;
            let hc = -0.5 * s.ic * dy * dy;
            let dy2 = dy * dy;
            let o = y as usize * stride + x;
            let gin: &[f32; LANES] = (&g[o..o + LANES]).try_into().unwrap();
            for l in 0..LANES {
                let ge = gin[l] * pixel_weight(dx[l], pa[l], hb, hc, cut);
                v0[l] += ge;
                v1[l] = ge.mul_add(dy, v1[l]);
                v2[l] = ge.mul_add(dy2, v2[l]);
            }
        }
        fold(&dx, &v0, &v1, &v2);
    }
    acc
}

/// Number of intermediate gradient values per Gaussian: `∂L/∂μ` (3), `∂L/∂(R·diag s)` (9,
/// row-major), `∂L/∂w` (1). These are linear in the image gradient, so a minibatch can sum
/// them over images and apply the activations' chain rule once ([`finalise`]).
pub(crate) const INTER: usize = 13;

/// What one splat contributes to the pose gradients of its image.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SplatGrad {
    /// `∂L/∂m` (pixels; the projected mean in index coordinates).
    pub gm: [f32; 2],
}

/// From the moments of [`splat_backward`] to the intermediate gradient of one Gaussian (added
/// into `inter`), and `∂L/∂m`, `∂L/∂C` for the pose gradients. Also adds this Gaussian's
/// contribution to `∂L/∂B` (`B` = the first two rows of `A`) into `gb`.
#[inline]
pub(crate) fn backward_params(
    a: &Act,
    s: &Splat,
    k: &PoseK,
    mo: &[f32; 6],
    inter: &mut [f32; INTER],
    gb: &mut [[f64; 3]; 2],
) -> SplatGrad {
    let n = s.norm;
    let (s0, sx, sy, sxx, sxy, syy) = (n * mo[0], n * mo[1], n * mo[2], n * mo[3], n * mo[4], n * mo[5]);
    let (ia, ib, ic) = (s.ia, s.ib, s.ic);
    // ∂f/∂m = f·C⁻¹d.
    let gm = [ia * sx + ib * sy, ib * sx + ic * sy];
    // ∂f/∂C = ½ f (C⁻¹ddᵀC⁻¹ − C⁻¹) (the normalisation contributes −½ f C⁻¹).
    // U = C⁻¹ P C⁻¹ with P = Σ g f d dᵀ.
    let p0 = [ia * sxx + ib * sxy, ia * sxy + ib * syy];
    let p1 = [ib * sxx + ic * sxy, ib * sxy + ic * syy];
    let u00 = p0[0] * ia + p0[1] * ib;
    let u01 = p0[0] * ib + p0[1] * ic;
    let u11 = p1[0] * ib + p1[1] * ic;
    let gc = [[0.5 * (u00 - s0 * ia), 0.5 * (u01 - s0 * ib)], [0.5 * (u01 - s0 * ib), 0.5 * (u11 - s0 * ic)]];
    // C = M Mᵀ: ∂L/∂M = 2 gC M.
    let m = axes(a, k);
    let mut gmm = [[0.0f32; 3]; 2];
    for r in 0..2 {
        for c in 0..3 {
            gmm[r][c] = 2.0 * (gc[r][0] * m[0][c] + gc[r][1] * m[1][c]);
        }
    }
    // m = b μ + centre; M = b (R diag s).
    for j in 0..3 {
        inter[j] += k.b[0][j] * gm[0] + k.b[1][j] * gm[1];
        for c in 0..3 {
            inter[3 + 3 * j + c] += k.b[0][j] * gmm[0][c] + k.b[1][j] * gmm[1][c];
        }
    }
    inter[12] += s.kfac * mo[0];
    // Pose: m = D·B μ, M = D·B·(R diag s): ∂L/∂B = D (gm μᵀ + gM (R diag s)ᵀ).
    let df = k.d as f64;
    for r in 0..2 {
        for j in 0..3 {
            let mut acc = gm[r] * a.mu[j];
            for c in 0..3 {
                acc += gmm[r][c] * a.r[j][c] * a.s[c];
            }
            gb[r][j] += df * acc as f64;
        }
    }
    SplatGrad { gm }
}

/// Apply the activations' chain rule to an intermediate gradient and add the result to the
/// raw-parameter gradient `out`.
#[inline]
pub(crate) fn finalise(a: &Act, inter: &[f32; INTER], out: &mut [f32; PARAMS_PER_GAUSSIAN]) {
    if !a.valid {
        return;
    }
    // RS[j][c] = R[j][c]·s[c].
    let g = |j: usize, c: usize| inter[3 + 3 * j + c];
    let mut gr = [[0.0f32; 3]; 3];
    for c in 0..3 {
        let mut gs = 0.0;
        for j in 0..3 {
            gs += g(j, c) * a.r[j][c];
            gr[j][c] = g(j, c) * a.s[c];
        }
        out[P_SCALE + c] += gs * a.ds[c];
    }
    for j in 0..3 {
        out[j] += inter[j];
    }
    out[P_AMP] += inter[12] * a.dw;
    if a.qn > 0.0 {
        let [w, x, y, z] = a.q;
        let gq = [
            2.0 * (-z * gr[0][1] + y * gr[0][2] + z * gr[1][0] - x * gr[1][2] - y * gr[2][0] + x * gr[2][1]),
            2.0 * (y * gr[0][1] + z * gr[0][2] + y * gr[1][0] - 2.0 * x * gr[1][1] - w * gr[1][2]
                + z * gr[2][0]
                + w * gr[2][1]
                - 2.0 * x * gr[2][2]),
            2.0 * (-2.0 * y * gr[0][0] + x * gr[0][1] + w * gr[0][2] + x * gr[1][0] + z * gr[1][2] - w * gr[2][0]
                + z * gr[2][1]
                - 2.0 * y * gr[2][2]),
            2.0 * (-2.0 * z * gr[0][0] - w * gr[0][1] + x * gr[0][2] + w * gr[1][0] - 2.0 * z * gr[1][1]
                + y * gr[1][2]
                + x * gr[2][0]
                + y * gr[2][1]),
        ];
        // q = q̂/|q̂|: ∂q/∂q̂ = (I − q qᵀ)/|q̂|.
        let dot = a.q[0] * gq[0] + a.q[1] * gq[1] + a.q[2] * gq[2] + a.q[3] * gq[3];
        for c in 0..4 {
            out[P_QUAT + c] += (gq[c] - a.q[c] * dot) / a.qn;
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

    /// Random splats of projected σ 0.7–6 px, elongation up to 1:4, under random poses; some
    /// hang over the image border.
    fn random_splats(n: usize, d: usize, n2: f32, seed: u64) -> Vec<Splat> {
        let mut rng = crate::rng::Rng::new(seed);
        let mut out = Vec::new();
        while out.len() < n {
            let px = 1.0 / d as f64;
            let mut p = [0.0f32; PARAMS_PER_GAUSSIAN];
            for k in 0..3 {
                p[k] = rng.uniform_range(-0.5, 0.5) as f32;
            }
            let base = rng.uniform_range(0.7, 6.0);
            for k in 0..3 {
                let s = base * rng.uniform_range(0.5, 2.0) * px;
                p[P_SCALE + k] = crate::gaussian::softplus_inv(s as f32);
            }
            let q = rng.unit_quaternion();
            for k in 0..4 {
                p[P_QUAT + k] = q[k] as f32;
            }
            p[P_AMP] = rng.uniform_range(-1.0, 1.0) as f32;
            let mut a = [Act::default()];
            activate_all(&[p], &mut a);
            let pose = Pose { rot: crate::rotation::random_rotation(&mut rng), origin_a: [0.3, -0.7] };
            let k = PoseK::new(&pose, d, 1.0, n2.sqrt());
            if let Some(s) = project(&a[0], &k) {
                if !s.is_empty() {
                    out.push(s);
                }
            }
        }
        out
    }

    #[test]
    fn separable_path_matches_per_pixel_path() {
        // Both paths evaluate the same footprint; the separable one may differ by rounding
        // (≤ 5e-6 of the splat's peak in the image: its exponents reach magnitudes of about
        // 2·FAST_RANGE = 60, so an absolute rounding error of 60·2⁻²⁴ ≈ 4e-6; ≤ 1e-5 of the
        // largest moment).
        let d = 64;
        let stride = d + LANES;
        for &n_sigma in &[3.0f32, 3.5, 4.0] {
            let n2 = n_sigma * n_sigma;
            let splats = random_splats(300, d, n2, 5 + n_sigma as u64);
            let fast = splats.iter().filter(|s| s.fast).count();
            // Footprints of more than 32 rows (σ above about 4.5 px) take the per-pixel path.
            assert!(fast > 150, "only {fast} of 300 splats take the separable path at {n_sigma} σ");
            let mut rng = crate::rng::Rng::new(9);
            let mut g = vec![0.0f32; d * stride];
            for row in g.chunks_exact_mut(stride) {
                for v in &mut row[..d] {
                    *v = rng.normal() as f32;
                }
            }
            for s in splats.iter().filter(|s| s.fast) {
                let slow = Splat { fast: false, ..*s };
                let mut a = vec![0.0f32; d * stride];
                let mut b = vec![0.0f32; d * stride];
                splat_forward(s, &mut a, stride, n2);
                splat_forward(&slow, &mut b, stride, n2);
                // Compare the image, not the padding (where the per-pixel path may write).
                let worst = a
                    .chunks_exact(stride)
                    .zip(b.chunks_exact(stride))
                    .flat_map(|(x, y)| x[..d].iter().zip(&y[..d]))
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst <= 5e-6 * s.norm, "image differs by {worst} (peak {})", s.norm);
                let ma = splat_backward(s, &g, stride, n2);
                let mb = splat_backward(&slow, &g, stride, n2);
                let scale = mb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for k in 0..6 {
                    assert!((ma[k] - mb[k]).abs() <= 1e-5 * scale, "moment {k}: {} vs {}", ma[k], mb[k]);
                }
            }
        }
    }

    #[test]
    fn exp_bounded_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let e = exp_bounded(x) as f64;
            let r = (x as f64).exp();
            worst = worst.max((e - r).abs() / r);
            x += 0.001;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp_bounded(0.0), 1.0);
    }
}
