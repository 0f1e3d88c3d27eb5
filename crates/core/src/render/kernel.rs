//! The pixel loops of the renderer: one splat's forward scatter into an image and its backward
//! gather of image-space moments, sharing one per-pixel function.
//!
//! One unit of work here is one Gaussian already projected under the image's pose (a
//! [`Splat`], made by [`super::gauss::project_block`]): [`splat_forward`] scatters it into the
//! thread's private image and [`splat_backward`] gathers its six weighted moments from the
//! image-space gradient. Both visit exactly the same pixels (same footprint, same chunks,
//! same mask) and evaluate the same per-pixel function, so the backward pass is the exact
//! adjoint of the forward pass.
//!
//! A footprint is walked as columns of [`LANES`] pixels, row by row, or as one column of
//! [`NARROW`] pixels when it is at most that wide (most splats of a trained model are: on
//! trained models at 48–128 px 12–46% more images per second, with the same numbers to the bit,
//! tested; BENCHMARKS.md, "Narrow footprints"). Two evaluations share
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

use super::fmadd;

/// Pixels per row chunk. Rows of a footprint are walked in whole chunks of this many
/// consecutive pixels (the image is padded on the right so a chunk never leaves the buffer),
/// which gives the inner loops a constant trip count that the compiler turns into two AVX2
/// vectors per chunk.
pub const LANES: usize = 16;

/// Chunk width for footprints of at most this many columns: one chunk of half the lanes does
/// the work of the full chunk, whose other lanes would all be masked (most splats of a trained
/// model are this narrow). The results are the same to the bit: the masked lanes only ever
/// added zeros.
pub(crate) const NARROW: usize = 8;

/// `[0, 1, …, N − 1]` as f32.
#[inline(always)]
fn lane_offsets<const N: usize>() -> [f32; N] {
    std::array::from_fn(|l| l as f32)
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
pub(crate) const FAST_ROWS: usize = 32;
/// Largest magnitude of the exponents the separable factors may reach (so that they stay far
/// from f32 overflow, underflow and denormals, and their rounding stays below 2e-6 of the
/// peak).
pub(crate) const FAST_RANGE: f32 = 30.0;

/// The unnormalised splat weight `exp(−½ dᵀC⁻¹d)` of one pixel, zero outside the footprint
/// ellipse `dᵀC⁻¹d ≤ n²`, from the exponent's per-lane part `pa = −½·ia·dx²` and its per-row
/// coefficients `hb = −ib·dy`, `hc = −½·ic·dy²`. Shared by the forward and backward passes of
/// the general path. The exponent is clamped to `[−½n², 0]` before the exponential, so
/// rounding can neither overflow it nor reach denormals.
#[inline(always)]
fn pixel_weight(dx: f32, pa: f32, hb: f32, hc: f32, cut: f32) -> f32 {
    let e = fmadd(dx, hb, pa + hc).min(0.0);
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
    let t = fmadd(x, std::f32::consts::LOG2_E, SHIFTER);
    let n = t - SHIFTER;
    let r = fmadd(n, -0.693_145_75, x);
    let r = fmadd(n, -1.428_606_8e-6, r);
    let mut p = 1.0f32 / 720.0;
    p = fmadd(p, r, 1.0 / 120.0);
    p = fmadd(p, r, 1.0 / 24.0);
    p = fmadd(p, r, 1.0 / 6.0);
    p = fmadd(p, r, 0.5);
    p = fmadd(p, r, 1.0);
    p = fmadd(p, r, 1.0);
    // The low mantissa bits of t hold n (two's complement); shifting them into the exponent
    // field and adding the bias gives 2ⁿ for −126 ≤ n ≤ 127.
    let scale = f32::from_bits(t.to_bits().wrapping_shl(23).wrapping_add(127 << 23));
    p * scale
}

/// Column offsets `dx` of one chunk of `N` lanes and the per-lane exponent part `−½·ia·dx²`.
#[inline(always)]
fn chunk_lanes<const N: usize>(s: &Splat, c: u32) -> (usize, [f32; N], [f32; N]) {
    let x = s.x0 as usize + c as usize * N;
    let dx0 = x as f32 - s.mx;
    let offsets = lane_offsets::<N>();
    let mut dx = [0.0f32; N];
    let mut pa = [0.0f32; N];
    for l in 0..N {
        dx[l] = dx0 + offsets[l];
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
fn fast_lanes<const N: usize>(s: &Splat, c: u32) -> (usize, [f32; N], [f32; N], [f32; N]) {
    let x = s.x0 as usize + c as usize * N;
    let dx0 = x as f32 - s.mx;
    let dym = s.ym - s.my;
    let k0 = s.y0 as f32 - s.ym;
    let inside = (s.x1 as usize - x) as f32;
    let offsets = lane_offsets::<N>();
    let mut dx = [0.0f32; N];
    let mut p = [0.0f32; N];
    let mut b = [0.0f32; N];
    for l in 0..N {
        dx[l] = dx0 + offsets[l];
        let a = -0.5 * (s.ia * dx[l] * dx[l] + s.ic * dym * dym) - s.ib * dx[l] * dym;
        let bl = -(s.ib * dx[l] + s.ic * dym);
        let pl = exp_bounded(fmadd(bl, k0, a).clamp(-87.0, 87.0));
        p[l] = if offsets[l] <= inside { pl } else { 0.0 };
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

/// Whether a (non-empty) splat's footprint fits one chunk of [`NARROW`] lanes.
#[inline(always)]
fn is_narrow(s: &Splat) -> bool {
    s.x1 - s.x0 < NARROW as u32
}

/// Scatter one splat into a padded image (`stride ≥ D + LANES`, rows `0..D`): the footprint's
/// bounding box is walked one chunk column at a time, every row of it in one [`LANES`]-wide
/// chunk, or one [`NARROW`]-wide chunk when the footprint is that narrow (the lanes outside
/// the ellipse or the image are masked or land in the padding).
#[inline]
pub(crate) fn splat_forward(s: &Splat, img: &mut [f32], stride: usize, n2: f32) {
    if is_narrow(s) {
        splat_forward_n::<NARROW>(s, 1, img, stride, n2)
    } else {
        splat_forward_n::<LANES>(s, s.chunks, img, stride, n2)
    }
}

/// [`splat_forward`] in `chunks` chunks of `N` lanes.
#[inline(always)]
fn splat_forward_n<const N: usize>(s: &Splat, chunks: u32, img: &mut [f32], stride: usize, n2: f32) {
    if s.fast {
        let thr = exp_bounded(-0.5 * n2);
        let mut rf = [0.0f32; FAST_ROWS];
        row_factors(s, &mut rf);
        for c in 0..chunks {
            let (x, _, mut p, b) = fast_lanes::<N>(s, c);
            for (y, &ck) in (s.y0..=s.y1).zip(rf.iter()) {
                let o = y as usize * stride + x;
                let out: &mut [f32; N] = (&mut img[o..o + N]).try_into().unwrap();
                for l in 0..N {
                    out[l] = fmadd(s.norm, fast_weight(&mut p[l], b[l], ck, thr), out[l]);
                }
            }
        }
        return;
    }
    let cut = -0.5 * n2;
    for c in 0..chunks {
        let (x, dx, pa) = chunk_lanes::<N>(s, c);
        for y in s.y0..=s.y1 {
            let dy = y as f32 - s.my;
            let hb = -s.ib * dy;
            let hc = -0.5 * s.ic * dy * dy;
            let o = y as usize * stride + x;
            let out: &mut [f32; N] = (&mut img[o..o + N]).try_into().unwrap();
            for l in 0..N {
                out[l] = fmadd(s.norm, pixel_weight(dx[l], pa[l], hb, hc, cut), out[l]);
            }
        }
    }
}

/// Sum of the lanes of a chunk (16 or 8) as a tree (vector additions, unlike a sequential
/// sum). The tree of 8 lanes is that of 16 whose upper lanes are zero, so a narrow splat's
/// moments are the same to the bit whichever width walked it.
#[inline(always)]
fn hsum<const N: usize>(v: &[f32; N]) -> f32 {
    const { assert!(N == 16 || N == 8) };
    let mut h = [0.0f32; 8];
    for l in 0..8 {
        h[l] = if N == 16 { v[l] + v[(l + 8) % N] } else { v[l] };
    }
    let mut q = [0.0f32; 4];
    for l in 0..4 {
        q[l] = h[l] + h[l + 4];
    }
    (q[0] + q[2]) + (q[1] + q[3])
}

/// [`hsum`] of each of the six moments.
#[inline(always)]
fn hsum6<const N: usize>(w: &[[f32; N]; 6]) -> [f32; 6] {
    let mut out = [0.0f32; 6];
    for k in 0..6 {
        out[k] = hsum(&w[k]);
    }
    out
}

/// Add one chunk column's per-lane sums `Σ g·e·[1, dy, dy²]` to the per-lane moments
/// `[1, dx, dy, dx², dx·dy, dy²]`.
#[inline(always)]
fn fold_lanes<const N: usize>(w: &mut [[f32; N]; 6], dx: &[f32; N], v0: &[f32; N], v1: &[f32; N], v2: &[f32; N]) {
    for l in 0..N {
        w[0][l] += v0[l];
        w[1][l] = fmadd(v0[l], dx[l], w[1][l]);
        w[2][l] += v1[l];
        w[3][l] = fmadd(v0[l] * dx[l], dx[l], w[3][l]);
        w[4][l] = fmadd(v1[l], dx[l], w[4][l]);
        w[5][l] += v2[l];
    }
}

/// Image-space moments of one splat against the gradient image `g` (padded like the forward
/// image, zero in the padding): with `e` the unnormalised weight and `(dx, dy)` the offset
/// from the mean, returns `Σ g·e·[1, dx, dy, dx², dx·dy, dy²]`. A lane keeps its `dx` down a
/// chunk column, so only `Σ g·e·[1, dy, dy²]` is accumulated per lane; the `dx` moments are
/// formed once per column.
#[inline]
pub(crate) fn splat_backward(s: &Splat, g: &[f32], stride: usize, n2: f32) -> [f32; 6] {
    if is_narrow(s) {
        splat_backward_n::<NARROW>(s, 1, g, stride, n2)
    } else {
        splat_backward_n::<LANES>(s, s.chunks, g, stride, n2)
    }
}

/// [`splat_backward`] in `chunks` chunks of `N` lanes.
#[inline(always)]
fn splat_backward_n<const N: usize>(s: &Splat, chunks: u32, g: &[f32], stride: usize, n2: f32) -> [f32; 6] {
    // Per-lane moments over all chunk columns; summed across lanes once at the end.
    let mut w = [[0.0f32; N]; 6];
    if s.fast {
        let thr = exp_bounded(-0.5 * n2);
        let mut rf = [0.0f32; FAST_ROWS];
        row_factors(s, &mut rf);
        for c in 0..chunks {
            let (x, dx, mut p, b) = fast_lanes::<N>(s, c);
            let mut v0 = [0.0f32; N];
            let mut v1 = [0.0f32; N];
            let mut v2 = [0.0f32; N];
            for (y, &ck) in (s.y0..=s.y1).zip(rf.iter()) {
                let dy = y as f32 - s.my;
                let dy2 = dy * dy;
                let o = y as usize * stride + x;
                let gin: &[f32; N] = (&g[o..o + N]).try_into().unwrap();
                for l in 0..N {
                    let ge = gin[l] * fast_weight(&mut p[l], b[l], ck, thr);
                    v0[l] += ge;
                    v1[l] = fmadd(ge, dy, v1[l]);
                    v2[l] = fmadd(ge, dy2, v2[l]);
                }
            }
            fold_lanes(&mut w, &dx, &v0, &v1, &v2);
        }
        return hsum6(&w);
    }
    let cut = -0.5 * n2;
    for c in 0..chunks {
        let (x, dx, pa) = chunk_lanes::<N>(s, c);
        let mut v0 = [0.0f32; N];
        let mut v1 = [0.0f32; N];
        let mut v2 = [0.0f32; N];
        for y in s.y0..=s.y1 {
            let dy = y as f32 - s.my;
            let hb = -s.ib * dy;
            let hc = -0.5 * s.ic * dy * dy;
            let dy2 = dy * dy;
            let o = y as usize * stride + x;
            let gin: &[f32; N] = (&g[o..o + N]).try_into().unwrap();
            for l in 0..N {
                let ge = gin[l] * pixel_weight(dx[l], pa[l], hb, hc, cut);
                v0[l] += ge;
                v1[l] = fmadd(ge, dy, v1[l]);
                v2[l] = fmadd(ge, dy2, v2[l]);
            }
        }
        fold_lanes(&mut w, &dx, &v0, &v1, &v2);
    }
    hsum6(&w)
}

#[cfg(test)]
mod tests {
    use super::super::gauss::{activate_block, project_block, ActBlock, PoseK};
    use super::*;
    use crate::gaussian::{PARAMS_PER_GAUSSIAN, P_AMP, P_QUAT, P_SCALE};
    use crate::pose::Pose;

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
            let mut a = ActBlock::default();
            activate_block(&[p], &mut a);
            let pose = Pose { rot: crate::rotation::random_rotation(&mut rng), origin_a: [0.3, -0.7] };
            let k = PoseK::new(&pose, d, 1.0, n2.sqrt());
            let mut sp = [None];
            project_block(&a, &k, &mut sp);
            if let Some(s) = sp[0] {
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

    /// A footprint of at most [`NARROW`] columns walked in one narrow chunk gives the image
    /// and the moments of the full-width walk to the bit, on both paths.
    #[test]
    fn narrow_chunks_match_full_chunks_to_the_bit() {
        let d = 48;
        let stride = d + LANES;
        let n2 = 3.5f32 * 3.5;
        let splats = random_splats(2000, d, n2, 21);
        let mut rng = crate::rng::Rng::new(4);
        let mut g = vec![0.0f32; d * stride];
        for row in g.chunks_exact_mut(stride) {
            for v in &mut row[..d] {
                *v = rng.normal() as f32;
            }
        }
        let mut narrow = [0usize; 2];
        for s in splats.iter().filter(|s| is_narrow(s)) {
            for s in [*s, Splat { fast: false, ..*s }] {
                narrow[usize::from(s.fast)] += 1;
                let (mut a, mut b) = (vec![0.0f32; d * stride], vec![0.0f32; d * stride]);
                splat_forward(&s, &mut a, stride, n2);
                splat_forward_n::<LANES>(&s, s.chunks, &mut b, stride, n2);
                for (x, y) in a.chunks_exact(stride).zip(b.chunks_exact(stride)).flat_map(|(x, y)| x[..d].iter().zip(&y[..d])) {
                    assert_eq!(x.to_bits(), y.to_bits(), "image of {s:?}");
                }
                let (ma, mb) = (splat_backward(&s, &g, stride, n2), splat_backward_n::<LANES>(&s, s.chunks, &g, stride, n2));
                assert_eq!(ma.map(f32::to_bits), mb.map(f32::to_bits), "moments of {s:?}");
            }
        }
        assert!(narrow[0] > 50 && narrow[1] > 50, "too few narrow splats: {narrow:?}");
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
