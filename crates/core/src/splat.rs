//! The fast splatting renderer: forward projection of a Gaussian model, the CTF applied in
//! Fourier space, the MSE loss against an observed image, and the analytic gradient of that
//! loss with respect to every raw parameter.
//!
//! # Parallel work
//!
//! Cryo-EM splats are additive (no depth order, no alpha blending), so nothing needs sorting.
//! In the **batch-of-one** path ([`Splatter::loss_and_grad`]) one unit of parallel work is a
//! fixed, contiguous range of Gaussians: the forward pass scatters that range into the
//! thread's private image (no atomics), the private images are summed in a fixed order, one
//! thread applies the CTF by real FFT and forms the image-space gradient, and the backward
//! pass again splits the Gaussians into fixed ranges, each gathering its own Gaussians'
//! gradients from the shared gradient image. In the **minibatch** path
//! ([`Splatter::loss_and_grad_batch`]) one unit of work is one whole image with a private
//! gradient buffer; the buffers are reduced in a fixed order. Both are deterministic for a
//! given thread count. Nothing is allocated per image: every buffer and FFT plan lives in a
//! per-thread [`Workspace`] made once.
//!
//! # Image formation (see the crate docs for units)
//!
//! Gaussian `g` with activated mean `μ`, scales `s`, rotation `R` and amplitude `w` (box
//! units) projects under pose `A` and origin `o` (Å) to the 2D Gaussian with mean
//! `m = D·((A·μ)_xy − o/(D·apix))` and covariance `C = D²·M diag(s²) Mᵀ` (pixels), where
//! `M` is the top two rows of `A·R`, with value `w·D²/(2π√|C|)·exp(−½ dᵀC⁻¹d)` at pixel offset
//! `d` from the mean — the view-dependent normalisation keeps every view's integral equal to
//! `w` (in units where a pixel is `1/D²` of the box). The origin shift is applied to the
//! model, exactly, rather than to the data. Pixel `(i, j)` sits at `(j − D/2, i − D/2)`.
//!
//! Each splat is evaluated inside its footprint ellipse `dᵀC⁻¹d ≤ n_sigma²`
//! (default [`DEFAULT_N_SIGMA`], chosen by measuring the error against no cutoff, see the
//! tests), so no far tail is evaluated and no denormal arises ([`exp_neg`] also clamps its
//! argument). Each row of the ellipse is processed in whole chunks of [`LANES`] pixels over an
//! image padded by `2·LANES` columns, so the inner loop has a constant trip count and
//! vectorises; the few pixels a chunk adds beyond the ellipse are evaluated identically by the
//! forward and backward passes, and padding pixels are never read back as data.
//!
//! The predicted image is `irfft(CTF · rfft(projection))` (the half-plane layout of
//! [`crate::ctf`]); the loss is `L = (1/D²) Σ (predicted − observed)²`. The CTF operator is
//! symmetric, so the image-space gradient is the same filter applied to `2(predicted −
//! observed)/D²`.
//!
//! Gaussians with a non-finite parameter are skipped (they add nothing and get a zero
//! gradient) and counted in [`StepStats::skipped`]; they never poison the image.

use crate::fourier::{Complex32, Fft2};
use crate::gaussian::{
    scale_activation, softplus, softplus_grad, GaussianModel, PARAMS_PER_GAUSSIAN, P_AMP, P_MEAN, P_QUAT, P_SCALE,
};
use crate::pose::Pose;
use rayon::prelude::*;

/// Default footprint half-width in standard deviations.
pub const DEFAULT_N_SIGMA: f32 = 3.5;
/// Pixels per row chunk: one 256-bit vector of f32, so the six backward accumulators stay
/// in registers on AVX2.
pub const LANES: usize = 8;

/// Renderer settings.
#[derive(Clone, Copy, Debug)]
pub struct SplatOptions {
    /// Footprint half-width in standard deviations.
    pub n_sigma: f32,
}

impl Default for SplatOptions {
    fn default() -> Self {
        SplatOptions { n_sigma: DEFAULT_N_SIGMA }
    }
}

/// One observed image and what is needed to predict it.
#[derive(Clone, Copy, Debug)]
pub struct ImageTarget<'a> {
    /// `D×D` centred image, x fastest.
    pub image: &'a [f32],
    /// The particle's CTF in the half-plane layout (`D·(D/2+1)` values), or `None` for no CTF.
    pub ctf: Option<&'a [f32]>,
    pub pose: &'a Pose,
    /// Pixel size in Å (converts the origin offset to pixels).
    pub apix: f64,
}

/// What a step measured besides the loss.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Gaussians skipped because a parameter was not finite.
    pub skipped: usize,
    /// Gradient of the loss with respect to the origin offset (Å), summed over the batch.
    pub grad_origin_a: [f64; 2],
}

/// A Gaussian projected under one pose, in pixel units, with the activations the backward
/// pass needs (so that no transcendental function is evaluated twice).
#[derive(Clone, Copy, Debug, Default)]
struct Projected {
    /// Mean in pixels from the image origin (index D/2).
    mx: f32,
    my: f32,
    /// Inverse covariance (pixels⁻²): [a b; b c].
    ia: f32,
    ib: f32,
    ic: f32,
    /// Normalised amplitude `w·D²/(2π√|C|)`.
    norm: f32,
    /// `D²/(2π√|C|)` (∂norm/∂w).
    kfac: f32,
    /// Footprint rows y0..=y1 (inclusive); empty when y1 < y0.
    y0: i32,
    y1: i32,
    /// Activated scales and their derivatives with respect to the raw scales.
    s: [f32; 3],
    ds: [f32; 3],
    /// ∂w/∂(raw amplitude).
    dw: f32,
    /// Unit quaternion, the norm of the raw one (0: the raw quaternion was zero).
    u: [f32; 4],
    qn: f32,
    /// M = D·A2·R (2×3), pixels per box unit.
    m: [[f32; 3]; 2],
    valid: bool,
}

/// A fast `exp(x)` for `x ≤ 0` (relative error below 5e-7; `x < −87` is treated as −87,
/// about 1.6e-38), written without branches so that loops over it vectorise: Cody–Waite range
/// reduction `x = n·ln2 + r`, `|r| ≤ ln2/2`, a degree-6 Taylor polynomial for `eʳ`, and `2ⁿ`
/// built from exponent bits.
#[inline(always)]
pub fn exp_neg(x: f32) -> f32 {
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = n.mul_add(-0.693_145_75, x);
    let r = n.mul_add(-1.428_606_8e-6, r);
    let p = (1.0f32 / 720.0).mul_add(r, 1.0 / 120.0);
    let p = p.mul_add(r, 1.0 / 24.0);
    let p = p.mul_add(r, 1.0 / 6.0);
    let p = p.mul_add(r, 0.5);
    let p = p.mul_add(r, 1.0);
    let p = p.mul_add(r, 1.0);
    // 2^n from the exponent bits; n ≥ −126 because x ≥ −87.
    // SAFETY: n is finite and in [−126, 0] (x is clamped and `max` maps NaN to −87).
    let bits = ((unsafe { n.to_int_unchecked::<i32>() } + 127) as u32) << 23;
    p * f32::from_bits(bits)
}

/// The per-pixel value of a splat: `exp(−½ dᵀ C⁻¹ d)` for offset `(dx, dy)`. Forward and
/// backward both call this, so they evaluate exactly the same function.
#[inline(always)]
fn splat_kernel(ia: f32, ib: f32, ic: f32, dx: f32, dy: f32) -> f32 {
    let q = ia * dx * dx + 2.0 * ib * dx * dy + ic * dy * dy;
    exp_neg(-0.5 * q)
}

/// Unit quaternion and its rotation matrix; `None` for a zero or non-finite quaternion.
#[inline]
fn quat_rotation(q: [f32; 4]) -> ([f32; 4], f32, [[f32; 3]; 3]) {
    let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    let (u, n) = if n > 0.0 && n.is_finite() { ([q[0] / n, q[1] / n, q[2] / n, q[3] / n], n) } else { ([1.0, 0.0, 0.0, 0.0], 0.0) };
    let [w, x, y, z] = u;
    let r = [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
    ];
    (u, n, r)
}

/// The pose in f32 pixel units: the top two rows of A and the origin in pixels.
#[derive(Clone, Copy, Debug)]
struct PosePx {
    a: [[f32; 3]; 2],
    o: [f32; 2],
    d: f32,
}

impl PosePx {
    fn new(pose: &Pose, d: usize, apix: f64) -> Self {
        let a = pose.rot;
        PosePx {
            a: [[a[0][0] as f32, a[0][1] as f32, a[0][2] as f32], [a[1][0] as f32, a[1][1] as f32, a[1][2] as f32]],
            o: [(pose.origin_a[0] / apix) as f32, (pose.origin_a[1] / apix) as f32],
            d: d as f32,
        }
    }
}

fn project(p: &[f32; PARAMS_PER_GAUSSIAN], pose: &PosePx, n_sigma: f32, d: usize) -> Projected {
    if !p.iter().all(|v| v.is_finite()) {
        return Projected::default();
    }
    let dd = pose.d;
    let a = &pose.a;
    let mu = [p[P_MEAN], p[P_MEAN + 1], p[P_MEAN + 2]];
    let mx = dd * (a[0][0] * mu[0] + a[0][1] * mu[1] + a[0][2] * mu[2]) - pose.o[0];
    let my = dd * (a[1][0] * mu[0] + a[1][1] * mu[1] + a[1][2] * mu[2]) - pose.o[1];
    let sa = [scale_activation(p[P_SCALE]), scale_activation(p[P_SCALE + 1]), scale_activation(p[P_SCALE + 2])];
    let s = [sa[0].0, sa[1].0, sa[2].0];
    let (u, qn, r) = quat_rotation([p[P_QUAT], p[P_QUAT + 1], p[P_QUAT + 2], p[P_QUAT + 3]]);
    // M = D·A2·R (2×3).
    let mut m = [[0.0f32; 3]; 2];
    for i in 0..2 {
        for k in 0..3 {
            m[i][k] = dd * (a[i][0] * r[0][k] + a[i][1] * r[1][k] + a[i][2] * r[2][k]);
        }
    }
    let mut c = [0.0f32; 3];
    for k in 0..3 {
        let s2 = s[k] * s[k];
        c[0] += m[0][k] * m[0][k] * s2;
        c[1] += m[0][k] * m[1][k] * s2;
        c[2] += m[1][k] * m[1][k] * s2;
    }
    let det = c[0] * c[2] - c[1] * c[1];
    if !(det > 0.0) || !det.is_finite() {
        return Projected::default();
    }
    let w = softplus(p[P_AMP]);
    let inv_det = 1.0 / det;
    let kfac = dd * dd / (2.0 * std::f32::consts::PI * det.sqrt());
    let norm = w * kfac;
    let half = (d / 2) as f32;
    let ry = n_sigma * c[2].sqrt();
    let lim = d as f32 - 1.0;
    // Rows clamped to the image before converting to integers.
    let fy0 = (my + half - ry).ceil().clamp(0.0, lim + 1.0);
    let fy1 = (my + half + ry).floor().clamp(-1.0, lim);
    Projected {
        mx,
        my,
        ia: c[2] * inv_det,
        ib: -c[1] * inv_det,
        ic: c[0] * inv_det,
        norm,
        kfac,
        y0: fy0 as i32,
        y1: fy1 as i32,
        s,
        ds: [sa[0].1, sa[1].1, sa[2].1],
        dw: softplus_grad(p[P_AMP]),
        u,
        qn,
        m,
        valid: norm.is_finite() && kfac.is_finite(),
    }
}

/// The columns of row `y` inside the footprint ellipse `dᵀC⁻¹d ≤ n²`, as a start column and a
/// number of `LANES` chunks (0 when the row misses the image or the ellipse).
#[inline(always)]
fn row_span(g: &Projected, dy: f32, n2: f32, half: f32, d: usize) -> (usize, usize) {
    // ia·dx² + 2·ib·dy·dx + ic·dy² ≤ n²  ⇔  (dx + ib·dy/ia)² ≤ (n² − dy²/C11... ) / ia
    let cx = -g.ib * dy / g.ia;
    let rem = (n2 - g.ic * dy * dy) / g.ia + cx * cx;
    if !(rem > 0.0) {
        return (0, 0);
    }
    let hw = rem.sqrt();
    let lim = d as f32 - 1.0;
    let x0 = (g.mx + half + cx - hw).ceil().clamp(0.0, lim + 1.0);
    let x1 = (g.mx + half + cx + hw).floor().clamp(-1.0, lim);
    if x1 < x0 {
        return (0, 0);
    }
    // Both are integral and in range after the clamp.
    let x0 = x0 as usize;
    let x1 = x1 as usize;
    (x0, (x1 - x0) / LANES + 1)
}

/// Scatter one projected Gaussian into a padded image (row stride `stride`).
#[inline]
fn splat_forward(g: &Projected, img: &mut [f32], stride: usize, half: f32, n2: f32, d: usize) {
    if !g.valid || g.y1 < g.y0 {
        return;
    }
    for y in g.y0 as usize..=g.y1 as usize {
        let dy = y as f32 - half - g.my;
        let (x0, chunks) = row_span(g, dy, n2, half, d);
        let dx0 = x0 as f32 - half - g.mx;
        let row = &mut img[y * stride + x0..y * stride + x0 + chunks * LANES];
        for (ci, chunk) in row.chunks_exact_mut(LANES).enumerate() {
            let base = dx0 + (ci * LANES) as f32;
            for (l, v) in chunk.iter_mut().enumerate() {
                *v += g.norm * splat_kernel(g.ia, g.ib, g.ic, base + l as f32, dy);
            }
        }
    }
}

/// Gather the six sums of the backward pass over one Gaussian's footprint from the padded
/// gradient image: `Σ g·E`, `Σ g·G·dx`, `Σ g·G·dy`, `Σ g·G·dx²`, `Σ g·G·dx·dy`, `Σ g·G·dy²`
/// where `E` is the kernel, `G = norm·E` and `g` the image-space gradient.
#[inline]
fn splat_backward_sums(g: &Projected, grad_img: &[f32], stride: usize, half: f32, n2: f32, d: usize) -> [f32; 6] {
    let mut acc = [[0.0f32; LANES]; 6];
    for y in g.y0 as usize..=g.y1 as usize {
        let dy = y as f32 - half - g.my;
        let (x0, chunks) = row_span(g, dy, n2, half, d);
        let dx0 = x0 as f32 - half - g.mx;
        let row = &grad_img[y * stride + x0..y * stride + x0 + chunks * LANES];
        for (ci, chunk) in row.chunks_exact(LANES).enumerate() {
            let base = dx0 + (ci * LANES) as f32;
            for l in 0..LANES {
                let dx = base + l as f32;
                let ge = chunk[l] * splat_kernel(g.ia, g.ib, g.ic, dx, dy);
                let gg = g.norm * ge;
                acc[0][l] += ge;
                acc[1][l] += gg * dx;
                acc[2][l] += gg * dy;
                acc[3][l] += gg * dx * dx;
                acc[4][l] += gg * dx * dy;
                acc[5][l] += gg * dy * dy;
            }
        }
    }
    let mut out = [0.0f32; 6];
    for k in 0..6 {
        out[k] = acc[k].iter().sum();
    }
    out
}

/// Chain the six footprint sums back to the 11 raw parameters (added into `grad`); returns
/// the gradient with respect to the projected mean in pixels (for the origin gradient).
fn backward_params(
    g: &Projected,
    sums: [f32; 6],
    pose: &PosePx,
    grad: &mut [f32; PARAMS_PER_GAUSSIAN],
) -> [f32; 2] {
    let [s_ge, s_x, s_y, s_xx, s_xy, s_yy] = sums;
    let (ia, ib, ic) = (g.ia, g.ib, g.ic);
    // ∂L/∂m = C⁻¹·(Σ gG d).
    let dm = [ia * s_x + ib * s_y, ib * s_x + ic * s_y];
    // ∂L/∂C⁻¹ = −½ Σ gG d dᵀ; ∂L/∂C = −C⁻¹ (∂L/∂C⁻¹) C⁻¹ − ½·norm·(Σ gE)·C⁻¹.
    let (ja, jb, jc) = (-0.5 * s_xx, -0.5 * s_xy, -0.5 * s_yy);
    // K = C⁻¹ J C⁻¹ with C⁻¹ = [ia ib; ib ic], J = [ja jb; jb jc].
    let t00 = ia * ja + ib * jb;
    let t01 = ia * jb + ib * jc;
    let t10 = ib * ja + ic * jb;
    let t11 = ib * jb + ic * jc;
    let k00 = t00 * ia + t01 * ib;
    let k01 = t00 * ib + t01 * ic;
    let k11 = t10 * ib + t11 * ic;
    let hn = -0.5 * g.norm * s_ge;
    let gc = [-k00 + hn * ia, -k01 + hn * ib, -k11 + hn * ic]; // symmetric: [gc0 gc1; gc1 gc2]

    let dd = pose.d;
    let a = &pose.a;
    // Mean: m = D·A2·μ − o.
    for k in 0..3 {
        grad[P_MEAN + k] += dd * (a[0][k] * dm[0] + a[1][k] * dm[1]);
    }
    // Amplitude: norm = w·kfac.
    grad[P_AMP] += s_ge * g.kfac * g.dw;
    // Scales and rotation: C = M diag(s²) Mᵀ with M = D·A2·R.
    let m = &g.m;
    // ∂L/∂M = 2·G_C·M·diag(s²); ∂L/∂s_k = 2 s_k · m_kᵀ G_C m_k.
    let mut dmm = [[0.0f32; 3]; 2];
    for k in 0..3 {
        let (x, y) = (m[0][k], m[1][k]);
        let gx = gc[0] * x + gc[1] * y;
        let gy = gc[1] * x + gc[2] * y;
        let s = g.s[k];
        grad[P_SCALE + k] += 2.0 * s * (x * gx + y * gy) * g.ds[k];
        dmm[0][k] = 2.0 * gx * s * s;
        dmm[1][k] = 2.0 * gy * s * s;
    }
    if g.qn > 0.0 {
        // ∂L/∂R = D·A2ᵀ·∂L/∂M (3×3).
        let mut dr = [[0.0f32; 3]; 3];
        for i in 0..3 {
            for k in 0..3 {
                dr[i][k] = dd * (a[0][i] * dmm[0][k] + a[1][i] * dmm[1][k]);
            }
        }
        let u = g.u;
        let qn = g.qn;
        let [w, x, y, z] = u;
        // ∂R/∂q contracted with ∂L/∂R, for the unit quaternion.
        let dq = [
            2.0 * (-z * dr[0][1] + y * dr[0][2] + z * dr[1][0] - x * dr[1][2] - y * dr[2][0] + x * dr[2][1]),
            2.0 * (y * dr[0][1] + z * dr[0][2] + y * dr[1][0] - 2.0 * x * dr[1][1] - w * dr[1][2] + z * dr[2][0] + w * dr[2][1]
                - 2.0 * x * dr[2][2]),
            2.0 * (-2.0 * y * dr[0][0] + x * dr[0][1] + w * dr[0][2] + x * dr[1][0] + z * dr[1][2] - w * dr[2][0] + z * dr[2][1]
                - 2.0 * y * dr[2][2]),
            2.0 * (-2.0 * z * dr[0][0] - w * dr[0][1] + x * dr[0][2] + w * dr[1][0] - 2.0 * z * dr[1][1] + y * dr[1][2]
                + x * dr[2][0]
                + y * dr[2][1]),
        ];
        // Through normalisation: ∂L/∂q̂ = (dq − u·(u·dq)) / |q̂|.
        let dot = u[0] * dq[0] + u[1] * dq[1] + u[2] * dq[2] + u[3] * dq[3];
        for k in 0..4 {
            grad[P_QUAT + k] += (dq[k] - u[k] * dot) / qn;
        }
    }
    dm
}

/// Per-thread buffers and FFT plans, made once.
pub struct Workspace {
    d: usize,
    stride: usize,
    /// Padded image (forward accumulation, then the gradient image).
    img: Vec<f32>,
    fft: Fft2,
    spec: Vec<Complex32>,
    plain: Vec<f32>,
    /// Gradient buffer (minibatch path).
    grad: Vec<[f32; PARAMS_PER_GAUSSIAN]>,
    proj: Vec<Projected>,
}

impl Workspace {
    fn new(d: usize) -> Self {
        let stride = d + 2 * LANES;
        let fft = Fft2::new(d);
        let n = fft.spectrum_len();
        Workspace {
            d,
            stride,
            img: vec![0.0; stride * d],
            fft,
            spec: vec![Complex32::new(0.0, 0.0); n],
            plain: vec![0.0; d * d],
            grad: Vec::new(),
            proj: Vec::new(),
        }
    }

    fn clear_img(&mut self) {
        self.img.iter_mut().for_each(|v| *v = 0.0);
    }

    /// Copy the padded image into `plain` (unpadded).
    fn unpad(&mut self) {
        let (d, s) = (self.d, self.stride);
        for y in 0..d {
            self.plain[y * d..(y + 1) * d].copy_from_slice(&self.img[y * s..y * s + d]);
        }
    }

    /// Copy `plain` into the padded image (padding zero).
    fn pad(&mut self) {
        let (d, s) = (self.d, self.stride);
        self.clear_img();
        for y in 0..d {
            self.img[y * s..y * s + d].copy_from_slice(&self.plain[y * d..(y + 1) * d]);
        }
    }

    /// `plain ← irfft(ctf · rfft(plain))`.
    fn apply_ctf(&mut self, ctf: &[f32]) {
        self.fft.forward(&self.plain, &mut self.spec);
        for (s, &c) in self.spec.iter_mut().zip(ctf) {
            *s *= c;
        }
        self.fft.inverse(&self.spec, &mut self.plain);
    }

    /// From the rendered projection in `img`: the loss against `target`, and the image-space
    /// gradient left in `img` (padded).
    fn loss_and_image_grad(&mut self, target: &ImageTarget) -> f32 {
        self.unpad();
        if let Some(ctf) = target.ctf {
            self.apply_ctf(ctf);
        }
        let n = (self.d * self.d) as f32;
        let mut loss = 0.0f64;
        for (p, &y) in self.plain.iter_mut().zip(target.image) {
            let r = *p - y;
            loss += (r as f64) * (r as f64);
            *p = 2.0 * r / n;
        }
        if let Some(ctf) = target.ctf {
            self.apply_ctf(ctf);
        }
        self.pad();
        (loss / n as f64) as f32
    }
}

/// The renderer: per-thread workspaces for a fixed box size and thread count.
pub struct Splatter {
    d: usize,
    opts: SplatOptions,
    workspaces: Vec<Workspace>,
    proj: Vec<Projected>,
    dm: Vec<[f32; 2]>,
}

fn ranges(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.max(1);
    (0..parts).map(|k| (k * n / parts)..((k + 1) * n / parts)).collect()
}

impl Splatter {
    /// A renderer for `D×D` images using `threads` workers (the caller's rayon pool should have
    /// at least that many threads; results depend only on `threads`, not on scheduling).
    pub fn new(d: usize, opts: SplatOptions, threads: usize) -> Self {
        let threads = threads.max(1);
        Splatter { d, opts, workspaces: (0..threads).map(|_| Workspace::new(d)).collect(), proj: Vec::new(), dm: Vec::new() }
    }

    pub fn d(&self) -> usize {
        self.d
    }
    pub fn threads(&self) -> usize {
        self.workspaces.len()
    }

    fn check(&self, model: &GaussianModel, t: &ImageTarget) {
        let d = self.d;
        assert_eq!(t.image.len(), d * d, "observed image is not {d}×{d}");
        if let Some(c) = t.ctf {
            assert_eq!(c.len(), d * (d / 2 + 1), "CTF is not in the half-plane layout for D = {d}");
        }
        let _ = model;
    }

    /// Project every Gaussian (parallel over fixed ranges) into `self.proj`.
    fn project_all(&mut self, model: &GaussianModel, pose: &PosePx) -> usize {
        let n = model.len();
        self.proj.resize(n, Projected::default());
        let n_sigma = self.opts.n_sigma;
        let d = self.d;
        let chunk = n.div_ceil(self.workspaces.len()).max(1);
        self.proj.par_chunks_mut(chunk).zip(model.params.par_chunks(chunk)).for_each(|(out, ps)| {
            for (o, p) in out.iter_mut().zip(ps) {
                *o = project(p, pose, n_sigma, d);
            }
        });
        self.proj.iter().filter(|g| !g.valid).count()
    }

    /// The predicted image (projection, then CTF if given) of `model` under `pose`, written to
    /// `out` (`D×D`, centred, x fastest).
    pub fn render(&mut self, model: &GaussianModel, pose: &Pose, apix: f64, ctf: Option<&[f32]>, out: &mut [f32]) {
        let d = self.d;
        assert_eq!(out.len(), d * d);
        let pp = PosePx::new(pose, d, apix);
        self.project_all(model, &pp);
        self.forward_split();
        let ws = &mut self.workspaces[0];
        ws.unpad();
        if let Some(c) = ctf {
            ws.apply_ctf(c);
        }
        out.copy_from_slice(&ws.plain);
    }

    /// Forward pass split over workspaces by Gaussian ranges; the sum lands in workspace 0.
    fn forward_split(&mut self) {
        let half = (self.d / 2) as f32;
        let d = self.d;
        let n2 = self.opts.n_sigma * self.opts.n_sigma;
        let rs = ranges(self.proj.len(), self.workspaces.len());
        let proj = &self.proj;
        self.workspaces.par_iter_mut().zip(rs).for_each(|(ws, r)| {
            ws.clear_img();
            let stride = ws.stride;
            for g in &proj[r] {
                splat_forward(g, &mut ws.img, stride, half, n2, d);
            }
        });
        let (first, rest) = self.workspaces.split_at_mut(1);
        for ws in rest.iter() {
            for (a, b) in first[0].img.iter_mut().zip(&ws.img) {
                *a += b;
            }
        }
    }

    /// Loss of one image and its gradient (added into `grad`, one row per Gaussian), the
    /// Gaussians split across threads (the method's batch of one).
    pub fn loss_and_grad(
        &mut self,
        model: &GaussianModel,
        target: &ImageTarget,
        grad: &mut [[f32; PARAMS_PER_GAUSSIAN]],
    ) -> (f32, StepStats) {
        self.check(model, target);
        assert_eq!(grad.len(), model.len());
        let d = self.d;
        let pp = PosePx::new(target.pose, d, target.apix);
        let skipped = self.project_all(model, &pp);
        self.forward_split();
        let loss = self.workspaces[0].loss_and_image_grad(target);
        // Backward: each range gathers from workspace 0's gradient image.
        let half = (d / 2) as f32;
        let n2 = self.opts.n_sigma * self.opts.n_sigma;
        let n = model.len();
        self.dm.resize(n, [0.0; 2]);
        let chunk = n.div_ceil(self.workspaces.len()).max(1);
        let img = &self.workspaces[0].img;
        let stride = self.workspaces[0].stride;
        let proj = &self.proj;
        grad.par_chunks_mut(chunk)
            .zip(proj.par_chunks(chunk))
            .zip(self.dm.par_chunks_mut(chunk))
            .for_each(|((gr, pr), dms)| {
                for ((g, pj), dm) in gr.iter_mut().zip(pr).zip(dms.iter_mut()) {
                    if !pj.valid || pj.y1 < pj.y0 {
                        *dm = [0.0; 2];
                        continue;
                    }
                    let sums = splat_backward_sums(pj, img, stride, half, n2, d);
                    *dm = backward_params(pj, sums, &pp, g);
                }
            });
        let mut go = [0.0f64; 2];
        for dm in &self.dm {
            go[0] -= dm[0] as f64;
            go[1] -= dm[1] as f64;
        }
        let go = [go[0] / target.apix, go[1] / target.apix];
        (loss, StepStats { skipped, grad_origin_a: go })
    }

    /// Summed loss over `targets` and the summed gradient (added into `grad`), images split
    /// across threads in fixed ranges, gradient buffers reduced in a fixed order.
    pub fn loss_and_grad_batch(
        &mut self,
        model: &GaussianModel,
        targets: &[ImageTarget],
        grad: &mut [[f32; PARAMS_PER_GAUSSIAN]],
    ) -> (f32, StepStats) {
        for t in targets {
            self.check(model, t);
        }
        assert_eq!(grad.len(), model.len());
        let d = self.d;
        let n = model.len();
        let n_sigma = self.opts.n_sigma;
        let half = (d / 2) as f32;
        let n2 = n_sigma * n_sigma;
        let rs = ranges(targets.len(), self.workspaces.len());
        let results: Vec<(f64, StepStats)> = self
            .workspaces
            .par_iter_mut()
            .zip(rs)
            .map(|(ws, r)| {
                ws.grad.clear();
                ws.grad.resize(n, [0.0; PARAMS_PER_GAUSSIAN]);
                let mut loss = 0.0f64;
                let mut st = StepStats::default();
                for t in &targets[r] {
                    let pp = PosePx::new(t.pose, d, t.apix);
                    ws.proj.clear();
                    ws.proj.extend(model.params.iter().map(|p| project(p, &pp, n_sigma, d)));
                    st.skipped += ws.proj.iter().filter(|g| !g.valid).count();
                    ws.clear_img();
                    let stride = ws.stride;
                    for g in &ws.proj {
                        splat_forward(g, &mut ws.img, stride, half, n2, d);
                    }
                    loss += ws.loss_and_image_grad(t) as f64;
                    let mut dmx = 0.0f64;
                    let mut dmy = 0.0f64;
                    for (g, pj) in ws.grad.iter_mut().zip(&ws.proj) {
                        if !pj.valid || pj.y1 < pj.y0 {
                            continue;
                        }
                        let sums = splat_backward_sums(pj, &ws.img, stride, half, n2, d);
                        let dm = backward_params(pj, sums, &pp, g);
                        dmx += dm[0] as f64;
                        dmy += dm[1] as f64;
                    }
                    st.grad_origin_a[0] -= dmx / t.apix;
                    st.grad_origin_a[1] -= dmy / t.apix;
                }
                (loss, st)
            })
            .collect();
        let mut loss = 0.0f64;
        let mut st = StepStats::default();
        for (l, s) in &results {
            loss += l;
            st.skipped += s.skipped;
            st.grad_origin_a[0] += s.grad_origin_a[0];
            st.grad_origin_a[1] += s.grad_origin_a[1];
        }
        for ws in &self.workspaces {
            if ws.grad.len() != n {
                continue;
            }
            for (g, w) in grad.iter_mut().zip(&ws.grad) {
                for k in 0..PARAMS_PER_GAUSSIAN {
                    g[k] += w[k];
                }
            }
        }
        (loss as f32, st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = (x as f64).exp();
            let got = exp_neg(x) as f64;
            assert!(((got - want) / want).abs() < 5e-7, "{x}: {got} vs {want}");
            x += 0.013;
        }
        assert_eq!(exp_neg(-1000.0), exp_neg(-87.0));
        assert!(exp_neg(-1000.0) < 2e-38);
    }
}
