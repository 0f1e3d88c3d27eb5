//! The fast renderer: splat a Gaussian model under a pose, apply the CTF by real FFT, take the
//! MSE against an observed image, and back-propagate to every raw parameter (f32 hot path).
//!
//! # Parallel work
//!
//! Splats are summed (no alpha, no depth order), so nothing is sorted and nothing is shared
//! while splatting. With a **batch of one** ([`Renderer::loss_and_grad`], the method's
//! default) one unit of parallel work is a fixed contiguous range of Gaussians (one per
//! thread): it activates and projects its Gaussians and scatters them into its thread's
//! private image; the images are summed in a fixed order and transformed by one thread
//! while a second transforms the observed image (it does not depend on the model), one
//! thread forms the residual's spectrum, the loss and the image-space gradient, and the same
//! ranges then gather their Gaussians' gradients from that image (threads other than the
//! first from a streamed copy in their own workspace, cheaper than scattered reads from
//! another core's cache), each writing only its own rows of `grad` (no atomics). The ranges
//! are handed out by recursive `rayon::join` over fixed worker indices, which allocates
//! nothing. With a **minibatch** ([`Renderer::loss_and_grad_batch`]) one unit of work is a fixed range
//! of whole images per thread, each thread accumulating into its private gradient buffer; the
//! buffers are reduced in thread order. Results therefore depend on the thread count but never
//! on scheduling: runs are bitwise reproducible for a given thread count. Every buffer, FFT plan
//! and per-Gaussian cache lives in a workspace made once; nothing is allocated per image (the
//! per-Gaussian caches only grow when the model does).
//!
//! # Public API
//!
//! * [`Renderer::new`]`(d, RenderOptions { n_sigma, threads })` — plans and workspaces for
//!   `D×D` images and a fixed number of workers (`threads = 0`: the current rayon pool's size).
//!   Call the methods from inside a rayon pool of that many threads.
//! * [`Renderer::loss_and_grad`]`(&mut self, model, &ImageTarget, grad) -> f32` — the loss of
//!   one image; its gradient is **added** into `grad` (one `[f32; 11]` row per Gaussian).
//! * [`Renderer::loss_and_grad_batch`]`(&mut self, model, &[ImageTarget], grad) -> f32` — the
//!   **sum** of the images' losses; the summed gradient is added into `grad`.
//! * [`Renderer::loss_and_grad_defocus`] and [`Renderer::loss_and_grad_batch_defocus`] — the
//!   same with, per image, the CTF's derivative `∂CTF/∂Δz` in the half-plane layout
//!   ([`crate::ctf::CtfGrid::fill_rfft_with_ddefocus`]); they also fill
//!   [`ImageStats::grad_defocus_a`]. Loss and model gradient are bitwise those of the plain
//!   methods, which skip this work (for refinement of per-particle defocus).
//! * [`Renderer::render`]`(&mut self, model, pose, apix, ctf: Option<&[f32]>, out)` — forward
//!   only (projection, then CTF if given) into a centred `D×D` image.
//! * [`Renderer::last_stats`] — per image of the last call: Gaussians skipped, and the gradient
//!   of that image's loss with respect to its origin offset (Å), to the first two rows of
//!   its rotation `A` (for a rotation-vector correction see
//!   [`crate::rotation::rotvec_gradient`]) and, from the `_defocus` methods, to a defocus
//!   offset (Å).
//!
//! # Image formation (project contract; box units, see [`crate::gaussian`])
//!
//! Gaussian `g` (mean `μ`, `Σ = R S Sᵀ Rᵀ` from the activated scales and normalised
//! quaternion, amplitude `w`) projects under pose `A` to the 2D mean `m = (A·μ)_xy − o_box` and
//! covariance `C` = top-left 2×2 of `A Σ Aᵀ`. The origin offset is applied to the model, not
//! the data: `o_box = o_Å/(D·apix)` (the recorded image is the centred projection moved by
//! `−o`, so the particle centre sits at pixel `D/2 − o/apix`). Its value at box position `p`
//! is `w/(2π√|C|)·exp(−½(p−m)ᵀC⁻¹(p−m))`, pixel `(i, j)` sitting at
//! `p = ((j − D/2)/D, (i − D/2)/D)`. Image values are therefore **mass per box²**: the pixel
//! sum divided by `D²` is `Σ w` (up to tails outside the box), and they equal the values of
//! [`crate::reference`] (mass per Å² for the model in Å) exactly.
//!
//! Each splat is cut to its footprint ellipse `(p−m)ᵀC⁻¹(p−m) ≤ n_sigma²` (default
//! [`DEFAULT_N_SIGMA`]; the backward pass uses the same footprint, so the gradient is exact for
//! the truncated model). Measured against no cutoff on the benchmark's scenes (projected σ
//! about 1.5 px, test `footprint_cutoff_error`): the error of the image relative to its
//! maximum is 1.2e-2 at 3σ, 3.2e-3 at 3.5σ and 3.7e-4 at 4σ.
//!
//! The predicted image is `ŷ = filter(projection)` with the CTF in the half-plane layout
//! (see the `filter` submodule); the loss is `L = (1/D²) Σ_p (ŷ_p − y_p)²`, the same definition as
//! [`crate::reference::mse_loss`]. The filter is symmetric, so `∂L/∂projection` is the same
//! filter applied to `2(ŷ − y)/D²`. With a CTF both are computed from spectra, with three
//! real transforms per image: the residual's spectrum is `H·X − Y`, the loss is its Parseval
//! sum and the gradient one inverse transform of `H·(H·X − Y)` (the `filter` submodule's
//! `loss_and_adjoint`). An empty CTF slice means no CTF. The derivative of the loss in a
//! defocus offset `Δz` (added to U and V) comes from the same spectra:
//! `∂L/∂Δz = (2/D⁴)·Σ_k m_k·Re(conj(R_k)·X_k)·∂H_k/∂Δz`, one more multiply-add per frequency.
//!
//! # Degenerate Gaussians
//!
//! A Gaussian with a non-finite raw parameter, or whose projection is not finite or has a
//! peak above [`MAX_PEAK`] (an absurd amplitude: its square would leave the f32 range), is
//! **skipped**: it adds nothing to the image, gets a zero gradient, and is counted in
//! [`ImageStats::skipped`]. It
//! can never poison the image. A zero raw quaternion reads as the identity and gets no
//! quaternion gradient; a clamped scale gets no scale gradient (as in
//! [`crate::gaussian::scale_activation`]). Gaussians whose footprint misses the image cost
//! nothing.

pub mod expand;
mod filter;
mod gauss;
mod kernel;
pub mod workload;

pub use kernel::{exp_bounded, LANES};

use crate::fourier::{CentredFft2, Fft2Scratch};
use crate::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use crate::pose::Pose;
use gauss::{ActBlock, InterBlock, PoseK, PosePartial, GB, INTER};
use kernel::Splat;
use rayon::prelude::*;

/// `a·b + c` for the hot loops: fused (one instruction, one rounding) where the build targets
/// FMA, as `.cargo/config.toml`'s `target-cpu=native` does on any recent x86-64; else a multiply
/// and an add. `f32::mul_add` alone would, on a build without FMA (`cargo` run from outside the
/// repository, where that file is not read, or a generic target), call a software fused
/// multiply-add: the demo's training then took 13 times as long.
#[inline(always)]
pub(crate) fn fmadd(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Default footprint half-width in standard deviations (see the module docs for the measured
/// truncation error).
pub const DEFAULT_N_SIGMA: f32 = 3.5;

/// Largest projected peak value (mass per box²) a Gaussian may have; above it the Gaussian
/// is skipped (see the module docs). An isotropic Gaussian of unit amplitude at the smallest
/// allowed scale peaks at `1/(2π·SCALE_MIN²)` ≈ 1.6e7, so this bound only removes amplitudes
/// no data can call for.
pub const MAX_PEAK: f32 = 1e15;

/// Renderer settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenderOptions {
    /// Footprint half-width in standard deviations.
    pub n_sigma: f32,
    /// Number of workers (units of parallel work); 0 means the current rayon pool's size.
    /// Results depend on this number, never on scheduling.
    pub threads: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { n_sigma: DEFAULT_N_SIGMA, threads: 0 }
    }
}

/// One observed particle image and what is needed to predict it.
#[derive(Clone, Copy, Debug)]
pub struct ImageTarget<'a> {
    /// `D×D` centred image, x fastest.
    pub image: &'a [f32],
    /// The CTF in the half-plane layout (`D·(D/2+1)` values, see [`crate::ctf`]), or an empty
    /// slice for no CTF.
    pub ctf_rfft: &'a [f32],
    pub pose: &'a Pose,
    /// Pixel size in Å (converts the origin offset).
    pub apix: f64,
}

/// What the renderer measured for one image besides its loss.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ImageStats {
    /// Gaussians skipped (non-finite parameters or projection).
    pub skipped: usize,
    /// `∂L/∂o` for this image's origin offset `o` in Å.
    pub grad_origin_a: [f64; 2],
    /// `∂L/∂A[r][c]` for the first two rows of this image's rotation (the third row does not
    /// enter the projection; it is zero here). Entries are treated as independent.
    pub grad_rot: [[f64; 3]; 3],
    /// `∂L/∂Δz` for a defocus offset `Δz` in Å added to both defocus U and V of this image's
    /// CTF: filled by [`Renderer::loss_and_grad_defocus`] and
    /// [`Renderer::loss_and_grad_batch_defocus`], 0 otherwise.
    pub grad_defocus_a: f64,
    /// Gauss–Newton curvatures of the loss (the second derivative without the residual's own
    /// second-order term, exact where the prediction matches the image) in that defocus
    /// offset (per Å²) and in the origin offset along x and y (per Å²); filled with
    /// `grad_defocus_a`, 0 otherwise.
    pub curv_defocus_a: f64,
    pub curv_origin_a: [f64; 2],
}

impl ImageStats {
    /// Fill the defocus gradient and the curvatures from the filter's measurements.
    fn set_ctf_terms(&mut self, t: &filter::CtfTerms, d: usize, apix: f64) {
        self.grad_defocus_a = t.dloss;
        self.curv_defocus_a = t.curv;
        let k = 2.0 * std::f64::consts::PI / (d as f64 * apix);
        self.curv_origin_a = t.curv_shift_index.map(|v| v * k * k);
    }
}

/// One thread's buffers.
struct Workspace {
    /// Padded forward image (`D` rows of `stride`).
    img: Vec<f32>,
    /// Padded image-space gradient (zero in the padding).
    gimg: Vec<f32>,
    fft: Fft2Scratch,
    /// Spectrum of an observed image (see the `filter` submodule's `loss_and_adjoint`).
    fy: Fft2Scratch,
    /// Minibatch only: this thread's projected Gaussians and intermediate gradients (one
    /// block of [`GB`] Gaussians each).
    splats: Vec<Option<Splat>>,
    inter: Vec<InterBlock>,
    /// Minibatch only: loss and statistics of this thread's images in the last call.
    results: Vec<(f32, ImageStats)>,
}

/// The renderer (see the module docs).
pub struct Renderer {
    d: usize,
    stride: usize,
    opts: RenderOptions,
    fft: CentredFft2,
    workspaces: Vec<Workspace>,
    /// Activated Gaussians, in blocks of [`GB`].
    acts: Vec<ActBlock>,
    /// Batch of one: the Gaussians projected under the current pose.
    splats: Vec<Option<Splat>>,
    stats: Vec<ImageStats>,
}

/// The Gaussians of blocks `r` in a model of `n`.
fn gaussians_of(r: &std::ops::Range<usize>, n: usize) -> std::ops::Range<usize> {
    (r.start * GB).min(n)..(r.end * GB).min(n)
}

/// Project one block of Gaussians and splat it into `img`; returns the number skipped.
#[inline]
fn forward_block(a: &ActBlock, k: &PoseK, splats: &mut [Option<Splat>], img: Option<&mut [f32]>, stride: usize) -> usize {
    gauss::project_block(a, k, splats);
    let mut skipped = 0;
    match img {
        Some(img) => {
            for s in splats.iter() {
                match s {
                    Some(s) if !s.is_empty() => kernel::splat_forward(s, img, stride, k.n2),
                    Some(_) => {}
                    None => skipped += 1,
                }
            }
        }
        None => skipped = splats.iter().filter(|s| s.is_none()).count(),
    }
    skipped
}

/// Gather the moments of one block of splats from `gimg` and turn them into intermediate
/// gradients (added into `inter`) and pose partials.
#[inline]
fn backward_block(
    a: &ActBlock,
    k: &PoseK,
    splats: &[Option<Splat>],
    gimg: &[f32],
    stride: usize,
    inter: &mut InterBlock,
    pose: &mut PosePartial,
) {
    let mut mo = [[0.0f32; 6]; GB];
    for (m, s) in mo.iter_mut().zip(splats) {
        if let Some(s) = s {
            if !s.is_empty() {
                *m = kernel::splat_backward(s, gimg, stride, k.n2);
            }
        }
    }
    gauss::backward_block(a, splats, k, &mo, inter, pose);
}

impl Renderer {
    /// A renderer for `D×D` images (`D ≥ 2`).
    pub fn new(d: usize, opts: RenderOptions) -> Self {
        assert!(d >= 2, "box of {d} px is too small");
        let threads = if opts.threads == 0 { rayon::current_num_threads() } else { opts.threads };
        let opts = RenderOptions { threads, ..opts };
        let stride = d + LANES;
        let fft = CentredFft2::new(d);
        let workspaces = (0..threads)
            .map(|_| Workspace {
                img: vec![0.0; d * stride],
                gimg: vec![0.0; d * stride],
                fft: fft.scratch(),
                fy: fft.scratch(),
                splats: Vec::new(),
                inter: Vec::new(),
                results: Vec::new(),
            })
            .collect();
        Renderer { d, stride, opts, fft, workspaces, acts: Vec::new(), splats: Vec::new(), stats: Vec::new() }
    }

    pub fn d(&self) -> usize {
        self.d
    }

    pub fn options(&self) -> RenderOptions {
        self.opts
    }

    /// Per image of the last `loss_and_grad*`, `backward_image` or `render` call, in order.
    pub fn last_stats(&self) -> &[ImageStats] {
        &self.stats
    }

    fn check(&self, model: &GaussianModel, t: &ImageTarget, dctf: &[f32], grad_len: usize) {
        let d = self.d;
        assert_eq!(t.image.len(), d * d, "observed image is not {d}×{d}");
        assert!(
            t.ctf_rfft.is_empty() || t.ctf_rfft.len() == d * (d / 2 + 1),
            "CTF of {} values is not in the half-plane layout for D = {d}",
            t.ctf_rfft.len()
        );
        assert!(
            dctf.is_empty() || (!t.ctf_rfft.is_empty() && dctf.len() == t.ctf_rfft.len()),
            "CTF derivative of {} values for a CTF of {}",
            dctf.len(),
            t.ctf_rfft.len()
        );
        assert_eq!(grad_len, model.len(), "gradient rows do not match the model");
    }

    /// Batch of one, forward half: each thread activates, projects and (if `splat`) splats
    /// its range of blocks into its private image; the images are summed into workspace 0.
    /// Returns the number of skipped Gaussians.
    fn forward_split(&mut self, model: &GaussianModel, k: &PoseK, splat: bool) -> usize {
        let skipped = self.project_split(model, k, splat);
        if splat {
            let (first, rest) = self.workspaces.split_at_mut(1);
            sum_images(&mut first[0].img, rest.iter().map(|ws| &ws.img[..]));
        }
        skipped
    }

    /// [`Renderer::forward_split`] without the final summation: each thread's image holds
    /// its own Gaussians.
    fn project_split(&mut self, model: &GaussianModel, k: &PoseK, splat: bool) -> usize {
        let n = model.len();
        let nb = n.div_ceil(GB);
        self.acts.resize(nb, ActBlock::default());
        self.splats.resize(n, None);
        let t = self.workspaces.len();
        let stride = self.stride;
        let (bound, gbound) = (|i: usize| i * nb / t, move |i: usize| (i * nb / t * GB).min(n));
        let part = (&mut self.workspaces[..], &mut self.acts[..], &mut self.splats[..], &model.params[..]);
        fan_out(
            0,
            t,
            part,
            &|(w, a, s, p), lo, mid| {
                let (w1, w2) = w.split_at_mut(mid - lo);
                let (a1, a2) = a.split_at_mut(bound(mid) - bound(lo));
                let (s1, s2) = s.split_at_mut(gbound(mid) - gbound(lo));
                let (p1, p2) = p.split_at(gbound(mid) - gbound(lo));
                ((w1, a1, s1, p1), (w2, a2, s2, p2))
            },
            &|_, (w, acts, splats, params)| {
                let ws = &mut w[0];
                if splat {
                    ws.img.fill(0.0);
                }
                let mut skipped = 0;
                for ((a, p), s) in acts.iter_mut().zip(params.chunks(GB)).zip(splats.chunks_mut(GB)) {
                    gauss::activate_block(p, a);
                    skipped += forward_block(a, k, s, if splat { Some(&mut ws.img) } else { None }, stride);
                }
                skipped
            },
            &|x, y| x + y,
        )
    }

    /// The predicted image of `model` under `pose` (projection, then the CTF if given in the
    /// half-plane layout), written to `out` (`D×D`, centred, x fastest).
    pub fn render(&mut self, model: &GaussianModel, pose: &Pose, apix: f64, ctf: Option<&[f32]>, out: &mut [f32]) {
        let d = self.d;
        assert_eq!(out.len(), d * d, "output is not {d}×{d}");
        let k = PoseK::new(pose, d, apix, self.opts.n_sigma);
        let skipped = self.forward_split(model, &k, true);
        let ws = &mut self.workspaces[0];
        match ctf {
            Some(c) if !c.is_empty() => {
                assert_eq!(c.len(), d * (d / 2 + 1), "CTF is not in the half-plane layout for D = {d}");
                filter::apply(&self.fft, &ws.img, self.stride, c, out, d, &mut ws.fft);
            }
            _ => {
                for (o, r) in out.chunks_exact_mut(d).zip(ws.img.chunks_exact(self.stride)) {
                    o.copy_from_slice(&r[..d]);
                }
            }
        }
        self.stats.clear();
        self.stats.push(ImageStats { skipped, ..Default::default() });
    }

    /// The loss of one image (see the module docs) and its gradient with respect to every raw
    /// parameter, **added** into `grad` (one row per Gaussian). Gaussians are split across the
    /// renderer's threads.
    pub fn loss_and_grad(&mut self, model: &GaussianModel, target: &ImageTarget, grad: &mut [[f32; PARAMS_PER_GAUSSIAN]]) -> f32 {
        self.single(model, target, &[], grad)
    }

    /// [`Renderer::loss_and_grad`] that also fills [`ImageStats::grad_defocus_a`] from
    /// `ctf_ddefocus`, the derivative of the target's CTF in a defocus offset, in the
    /// half-plane layout ([`crate::ctf::CtfGrid::fill_rfft_with_ddefocus`]; the target must
    /// have a CTF). Loss and gradient are bitwise those of [`Renderer::loss_and_grad`].
    pub fn loss_and_grad_defocus(
        &mut self,
        model: &GaussianModel,
        target: &ImageTarget,
        ctf_ddefocus: &[f32],
        grad: &mut [[f32; PARAMS_PER_GAUSSIAN]],
    ) -> f32 {
        assert!(!ctf_ddefocus.is_empty(), "loss_and_grad_defocus needs the CTF's derivative");
        self.single(model, target, ctf_ddefocus, grad)
    }

    /// Batch of one, with the CTF's derivative `dctf` or an empty slice.
    fn single(&mut self, model: &GaussianModel, target: &ImageTarget, dctf: &[f32], grad: &mut [[f32; PARAMS_PER_GAUSSIAN]]) -> f32 {
        self.check(model, target, dctf, grad.len());
        let (d, stride) = (self.d, self.stride);
        let k = PoseK::new(target.pose, d, target.apix, self.opts.n_sigma);
        let (loss, gdz);
        let skipped;
        if target.ctf_rfft.is_empty() || self.workspaces.len() == 1 {
            skipped = self.forward_split(model, &k, true);
            (loss, gdz) = image_loss_and_grad(&self.fft, &mut self.workspaces[0], target, dctf, d, stride);
        } else {
            // The observed image's spectrum does not depend on the model: one thread computes
            // it while another sums the thread images and transforms their sum.
            skipped = self.project_split(model, &k, true);
            let fft = &self.fft;
            let (first, rest) = self.workspaces.split_at_mut(1);
            let ws0 = &mut first[0];
            let (second, others) = rest.split_at_mut(1);
            let Workspace { img: img1, fy, .. } = &mut second[0];
            let img1 = &*img1;
            rayon::join(
                || {
                    sum_images(&mut ws0.img, std::iter::once(&img1[..]).chain(others.iter().map(|ws| &ws.img[..])));
                    fft.forward(&ws0.img, stride, &mut ws0.fft);
                },
                || fft.forward(target.image, d, fy),
            );
            let (l, g) = filter::loss_and_adjoint(fft, &mut ws0.fft, fy, target.ctf_rfft, dctf, &mut ws0.gimg, stride);
            (loss, gdz) = (l as f32, g);
        }
        let mut st = self.gather(&k, grad, skipped, target.apix);
        st.set_ctf_terms(&gdz, d, target.apix);
        self.stats.clear();
        self.stats.push(st);
        loss
    }

    /// The backward pass alone: add to `grad` the gradient of `⟨dl_dproj, projection⟩` with
    /// respect to every raw parameter, where `dl_dproj` is a centred `D×D` image (∂L/∂ of the
    /// projection before any CTF). Projects the model (no splatting) and gathers per Gaussian.
    pub fn backward_image(
        &mut self,
        model: &GaussianModel,
        pose: &Pose,
        apix: f64,
        dl_dproj: &[f32],
        grad: &mut [[f32; PARAMS_PER_GAUSSIAN]],
    ) {
        let (d, stride) = (self.d, self.stride);
        assert_eq!(dl_dproj.len(), d * d, "gradient image is not {d}×{d}");
        assert_eq!(grad.len(), model.len(), "gradient rows do not match the model");
        let k = PoseK::new(pose, d, apix, self.opts.n_sigma);
        let skipped = self.forward_split(model, &k, false);
        for (o, r) in self.workspaces[0].gimg.chunks_exact_mut(stride).zip(dl_dproj.chunks_exact(d)) {
            o[..d].copy_from_slice(r);
        }
        let st = self.gather(&k, grad, skipped, apix);
        self.stats.clear();
        self.stats.push(st);
    }

    /// The projection alone, for timing the parts of a step: activate and project every
    /// Gaussian under `pose` (the projected covariances and footprints of
    /// [`Renderer::render`]'s first half, split across the threads as there) without splatting
    /// anything. [`Renderer::last_stats`] then holds the number of Gaussians skipped.
    pub fn project(&mut self, model: &GaussianModel, pose: &Pose, apix: f64) {
        let k = PoseK::new(pose, self.d, apix, self.opts.n_sigma);
        let skipped = self.forward_split(model, &k, false);
        self.stats.clear();
        self.stats.push(ImageStats { skipped, ..Default::default() });
    }

    /// The middle of a batch-of-one step alone, for timing the parts of a step: the loss of
    /// `projection` (a centred `D×D` projection before any CTF, as [`Renderer::render`] gives
    /// it without a CTF) against `target`, returned, and `∂L/∂projection` written to
    /// `dl_dproj` (centred `D×D`). It is the work [`Renderer::loss_and_grad`] does between
    /// splatting and gathering (with a CTF and more than one worker, the observed image is
    /// transformed beside the projection), on the same numbers: `render` without a CTF, this,
    /// then [`Renderer::backward_image`] give `loss_and_grad`'s loss and gradient bitwise.
    pub fn image_loss_and_adjoint(&mut self, projection: &[f32], target: &ImageTarget, dl_dproj: &mut [f32]) -> f32 {
        let (d, stride) = (self.d, self.stride);
        assert_eq!(projection.len(), d * d, "projection is not {d}×{d}");
        assert_eq!(dl_dproj.len(), d * d, "gradient image is not {d}×{d}");
        assert_eq!(target.image.len(), d * d, "observed image is not {d}×{d}");
        assert!(
            target.ctf_rfft.is_empty() || target.ctf_rfft.len() == d * (d / 2 + 1),
            "CTF of {} values is not in the half-plane layout for D = {d}",
            target.ctf_rfft.len()
        );
        let fft = &self.fft;
        let (first, rest) = self.workspaces.split_at_mut(1);
        let ws0 = &mut first[0];
        for (row, p) in ws0.img.chunks_exact_mut(stride).zip(projection.chunks_exact(d)) {
            row[..d].copy_from_slice(p);
        }
        let loss = if target.ctf_rfft.is_empty() || rest.is_empty() {
            image_loss_and_grad(fft, ws0, target, &[], d, stride).0
        } else {
            let fy = &mut rest[0].fy;
            rayon::join(|| fft.forward(&ws0.img, stride, &mut ws0.fft), || fft.forward(target.image, d, fy));
            filter::loss_and_adjoint(fft, &mut ws0.fft, fy, target.ctf_rfft, &[], &mut ws0.gimg, stride).0 as f32
        };
        for (o, row) in dl_dproj.chunks_exact_mut(d).zip(ws0.gimg.chunks_exact(stride)) {
            o.copy_from_slice(&row[..d]);
        }
        loss
    }

    /// Batch of one, backward half: the block ranges of [`Renderer::forward_split`] gather
    /// their Gaussians' gradients from workspace 0's gradient image, each writing only its
    /// rows of `grad`; the pose partials are summed in range order.
    fn gather(&mut self, k: &PoseK, grad: &mut [[f32; PARAMS_PER_GAUSSIAN]], skipped: usize, apix: f64) -> ImageStats {
        let n = grad.len();
        let nb = n.div_ceil(GB);
        let t = self.workspaces.len();
        let stride = self.stride;
        let (bound, gbound) = (|i: usize| i * nb / t, move |i: usize| (i * nb / t * GB).min(n));
        let (first, rest) = self.workspaces.split_at_mut(1);
        let gimg = &first[0].gimg[..];
        let (acts, splats) = (&self.acts, &self.splats);
        // Workers 1.. own a workspace of `rest` each (worker k the (k−1)-th).
        let total = fan_out(
            0,
            t,
            (rest, grad),
            &|(w, g), lo, mid| {
                let (w1, w2) = w.split_at_mut(mid - lo.max(1));
                let (g1, g2) = g.split_at_mut(gbound(mid) - gbound(lo));
                ((w1, g1), (w2, g2))
            },
            &|wk, (w, rows)| {
                // Workers other than the first gather from their own copy: one streaming copy
                // is cheaper than scattered reads from another core's cache.
                let src: &[f32] = if wk == 0 {
                    gimg
                } else {
                    let local = &mut w[0].gimg;
                    local.copy_from_slice(gimg);
                    local
                };
                let mut pose = PosePartial::default();
                let blocks = &acts[bound(wk)..bound(wk + 1)];
                let sp = &splats[gbound(wk)..gbound(wk + 1)];
                for ((a, s), out) in blocks.iter().zip(sp.chunks(GB)).zip(rows.chunks_mut(GB)) {
                    let mut inter = [[0.0f32; GB]; INTER];
                    backward_block(a, k, s, src, stride, &mut inter, &mut pose);
                    gauss::finalise_block(a, &inter, out);
                }
                pose
            },
            &|mut x, y| {
                x.add(&y);
                x
            },
        );
        image_stats(skipped, &total, apix)
    }

    /// The **sum** of the losses of `targets` and the summed gradient, added into `grad`.
    /// Images are split across the renderer's threads in fixed contiguous ranges, each thread
    /// accumulating into its own buffer; the buffers are reduced in thread order.
    pub fn loss_and_grad_batch(&mut self, model: &GaussianModel, targets: &[ImageTarget], grad: &mut [[f32; PARAMS_PER_GAUSSIAN]]) -> f32 {
        self.batch(model, targets, None, grad)
    }

    /// [`Renderer::loss_and_grad_batch`] that also fills [`ImageStats::grad_defocus_a`] of
    /// every image from `ctf_ddefocus[i]`, the derivative of target `i`'s CTF in a defocus
    /// offset (half-plane layout; every target must have a CTF). Loss and gradient are bitwise
    /// those of [`Renderer::loss_and_grad_batch`].
    pub fn loss_and_grad_batch_defocus(
        &mut self,
        model: &GaussianModel,
        targets: &[ImageTarget],
        ctf_ddefocus: &[&[f32]],
        grad: &mut [[f32; PARAMS_PER_GAUSSIAN]],
    ) -> f32 {
        assert_eq!(ctf_ddefocus.len(), targets.len(), "one CTF derivative per target");
        assert!(ctf_ddefocus.iter().all(|g| !g.is_empty()), "loss_and_grad_batch_defocus needs every CTF's derivative");
        self.batch(model, targets, Some(ctf_ddefocus), grad)
    }

    /// The minibatch, with the CTFs' derivatives or none.
    fn batch(
        &mut self,
        model: &GaussianModel,
        targets: &[ImageTarget],
        dctfs: Option<&[&[f32]]>,
        grad: &mut [[f32; PARAMS_PER_GAUSSIAN]],
    ) -> f32 {
        let dctf = |i: usize| dctfs.map_or(&[][..], |v| v[i]);
        for (i, t) in targets.iter().enumerate() {
            self.check(model, t, dctf(i), grad.len());
        }
        let (d, stride) = (self.d, self.stride);
        let n = model.len();
        let nb = n.div_ceil(GB);
        let t = self.workspaces.len();
        let n_sigma = self.opts.n_sigma;
        // Activations once for the whole batch, in fixed block ranges.
        self.acts.resize(nb, ActBlock::default());
        let per = nb.div_ceil(t).max(1);
        self.acts.par_chunks_mut(per).enumerate().for_each(|(ci, a)| {
            let g = gaussians_of(&(ci * per..ci * per + a.len()), n);
            for (a, p) in a.iter_mut().zip(model.params[g].chunks(GB)) {
                gauss::activate_block(p, a);
            }
        });
        let acts = &self.acts;
        let fft = &self.fft;
        let tb = |i: usize| i * targets.len() / t;
        fan_out(
            0,
            t,
            &mut self.workspaces[..],
            &|w, lo, mid| w.split_at_mut(mid - lo),
            &|wk, w| {
                let ws = &mut w[0];
                ws.results.clear();
                if tb(wk) == tb(wk + 1) {
                    return;
                }
                ws.splats.resize(n, None);
                ws.inter.resize(nb, [[0.0; GB]; INTER]);
                ws.inter.fill([[0.0; GB]; INTER]);
                for (i, target) in targets.iter().enumerate().take(tb(wk + 1)).skip(tb(wk)) {
                    let k = PoseK::new(target.pose, d, target.apix, n_sigma);
                    ws.img.fill(0.0);
                    let mut skipped = 0;
                    for (a, s) in acts.iter().zip(ws.splats.chunks_mut(GB)) {
                        skipped += forward_block(a, &k, s, Some(&mut ws.img), stride);
                    }
                    let (loss, gdz) = image_loss_and_grad(fft, ws, target, dctf(i), d, stride);
                    let mut pose = PosePartial::default();
                    for ((a, s), inter) in acts.iter().zip(ws.splats.chunks(GB)).zip(ws.inter.iter_mut()) {
                        backward_block(a, &k, s, &ws.gimg, stride, inter, &mut pose);
                    }
                    let mut st = image_stats(skipped, &pose, target.apix);
                    st.set_ctf_terms(&gdz, d, target.apix);
                    ws.results.push((loss, st));
                }
            },
            &|(), ()| (),
        );
        // Reduce the intermediate gradients in thread order and apply the chain rule once.
        let workspaces = &self.workspaces;
        grad.par_chunks_mut(per * GB).zip(acts.par_chunks(per)).enumerate().for_each(|(ci, (g, a))| {
            for (bi, (out, a)) in g.chunks_mut(GB).zip(a).enumerate() {
                let b = ci * per + bi;
                let mut sum = [[0.0f32; GB]; INTER];
                for ws in workspaces.iter().filter(|ws| !ws.results.is_empty()) {
                    for (s, v) in sum.iter_mut().zip(&ws.inter[b]) {
                        for l in 0..GB {
                            s[l] += v[l];
                        }
                    }
                }
                gauss::finalise_block(a, &sum, out);
            }
        });
        self.stats.clear();
        let mut loss = 0.0f64;
        for &(l, st) in self.workspaces.iter().flat_map(|ws| ws.results.iter()) {
            loss += l as f64;
            self.stats.push(st);
        }
        loss as f32
    }
}

/// Run `leaf(k, part)` for the workers `k` in `lo..hi` by recursive halving with
/// `rayon::join`, where `split(part, lo, mid)` divides the data of workers `lo..hi` into that
/// of `lo..mid` and `mid..hi`. Results are merged in worker order, so they do not depend on
/// scheduling. Nothing is allocated.
fn fan_out<P: Send, R: Send>(
    lo: usize,
    hi: usize,
    part: P,
    split: &(impl Fn(P, usize, usize) -> (P, P) + Sync),
    leaf: &(impl Fn(usize, P) -> R + Sync),
    merge: &(impl Fn(R, R) -> R + Sync),
) -> R {
    if hi - lo == 1 {
        return leaf(lo, part);
    }
    let mid = (lo + hi) / 2;
    let (a, b) = split(part, lo, mid);
    let (ra, rb) = rayon::join(|| fan_out(lo, mid, a, split, leaf, merge), || fan_out(mid, hi, b, split, leaf, merge));
    merge(ra, rb)
}

fn image_stats(skipped: usize, p: &PosePartial, apix: f64) -> ImageStats {
    let mut st = ImageStats { skipped, ..Default::default() };
    // The mean's index coordinate is D/2 − o/apix + …, so ∂L/∂o = −∂L/∂m / apix.
    st.grad_origin_a[0] = -p.gm[0] / apix;
    st.grad_origin_a[1] = -p.gm[1] / apix;
    for r in 0..2 {
        for c in 0..3 {
            st.grad_rot[r][c] = p.gb[r][c];
        }
    }
    st
}

/// From the projection in `ws.img` to the loss of one image and the image-space gradient in
/// `ws.gimg` (padding left at zero); with the CTF's derivative `dctf` (or an empty slice),
/// also `∂L/∂Δz` (else 0).
fn image_loss_and_grad(
    fft: &CentredFft2,
    ws: &mut Workspace,
    target: &ImageTarget,
    dctf: &[f32],
    d: usize,
    stride: usize,
) -> (f32, filter::CtfTerms) {
    if !target.ctf_rfft.is_empty() {
        fft.forward(&ws.img, stride, &mut ws.fft);
        fft.forward(target.image, d, &mut ws.fy);
        let (loss, terms) = filter::loss_and_adjoint(fft, &mut ws.fft, &ws.fy, target.ctf_rfft, dctf, &mut ws.gimg, stride);
        return (loss as f32, terms);
    }
    let scale = 2.0 / (d * d) as f32;
    let mut sum = 0.0f64;
    for ((row_g, row_p), row_y) in ws.gimg.chunks_exact_mut(stride).zip(ws.img.chunks_exact(stride)).zip(target.image.chunks_exact(d)) {
        // Squares in f64: residuals of up to ~1e19 (see MAX_PEAK) cannot overflow.
        let mut rs = 0.0f64;
        for ((g, &p), &y) in row_g[..d].iter_mut().zip(&row_p[..d]).zip(row_y) {
            let r = p - y;
            rs += r as f64 * r as f64;
            *g = r * scale;
        }
        sum += rs;
    }
    ((sum / (d * d) as f64) as f32, filter::CtfTerms::default())
}

/// Add the images of `others` into `acc` (all rows of the same stride).
fn sum_images<'a>(acc: &mut [f32], others: impl Iterator<Item = &'a [f32]>) {
    for o in others {
        for (a, b) in acc.iter_mut().zip(o) {
            *a += b;
        }
    }
}
