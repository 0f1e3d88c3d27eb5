//! One half's training: its model, its optimiser state, its gradient statistics and its step
//! count, advanced one optimiser step at a time.
//!
//! A [`HalfTrainer`] sees only the images its caller hands it, so the two halves of a
//! gold-standard run never share anything but the settings. Actions between epochs (density
//! control today) are [`EpochHook`]s, so that later ones (a coarse-to-fine switch, symmetry
//! expansion, per-particle parameters) plug in without touching the step. The parallel work of
//! a step is the renderer's (`cryosplat_core::render`) and the optimiser's
//! (`crate::adam`); this module adds none of its own.
//!
//! With a point group ([`HalfTrainer::set_symmetry`]) the model holds the asymmetric unit:
//! each step expands it into its `|G|` copies ([`SymmetryExpansion`]) in a buffer kept here,
//! renders and differentiates the copies, and folds their gradient back onto the unit before
//! the optimiser step. The optimiser, the statistics and the hooks see the unit only.
//!
//! With a blur ([`HalfTrainer::set_blur`], for coarse-to-fine training on small images) each
//! step renders the model convolved with an isotropic 3D Gaussian of standard deviation `b`
//! (box units): every Gaussian keeps its mean, rotation and mass, and each of its scales `s`
//! becomes `√(s² + b²)`. The gradient is carried back to the model's raw scales by the chain
//! rule. Rendered at a coarse box, a blur of about half its pixel keeps Gaussians narrower than
//! a pixel from aliasing; the images it is compared with carry the same low-pass
//! (`crate::images::FourierCrop`), so the loss compares like with like.
//!
//! # Per-particle refinement
//!
//! [`ParticleRefinement`] holds one half's per-particle corrections — a rotation vector `w`
//! (radians, `A = R(w)·A_rec`, [`cryosplat_core::rotation::rotate_by_rotvec`]), an origin offset
//! `δo` (Å, `o = o_rec + δo`) and a defocus offset `δz` (Å, added to U and V). Each visit of a
//! particle takes one Newton step per component on the objective below, with the loss's
//! Gauss–Newton curvature: exact for the origin and the defocus (the renderer's
//! `curv_origin_a`, `curv_defocus_a`), and for each rotation axis the origin curvature of the
//! image directions that axis moves mass along (y for the image's x axis, x for its y axis,
//! both for the in-plane axis) times the particle's mean square radius (a rotation by `δ` moves
//! mass at distance `r` from its axis by `r·δ`; read from the model once per pass,
//! [`ParticleRefinement::lever_arm_a2`]). On trained models that matches the exact
//! Gauss–Newton curvature of each axis, and it bounds it from above where the detail is finer
//! (test `refine_rotation`). One step per visit suffices where the curvature is right, which
//! Adam (one step of about its learning rate per visit, whatever the evidence) did not
//! (BENCHMARKS.md). Each particle's objective is the negative log-posterior
//! of its image under white Gaussian noise of variance `σ²` (estimated by the caller, e.g. by
//! the running mean loss per pixel) with a Gaussian prior of width `s` toward the recorded
//! values:
//!
//! `E = D²·L/(2σ²) + |w|²/(2·s_rot²) + |δo|²/(2·s_shift²) + δz²/(2·s_defocus²)`,
//!
//! where `L` is the renderer's loss of that image (mean square per pixel). Its gradient comes
//! from the image's [`ImageStats`]: `∂L/∂w = J(w)ᵀ·rotvec_gradient(A, grad_rot)`
//! ([`cryosplat_core::rotation::rotvec_left_jacobian`]), `∂L/∂δo = grad_origin_a` and
//! `∂L/∂δz = grad_defocus_a` (from the renderer's `_defocus` methods).
//!
//! **The prior's widths from the data** ([`RefineConfig::estimate_prior`]). The recorded
//! values' errors are the prior's variance, and they are what the images are to tell. After
//! each refining pass the origin's and the defocus's widths become
//! `s² = Σθ² / Σ(1 − 1/(s²·P))` over the group's refined components (the two origin
//! components, or the defocus) of the half's particles, `θ` each component's value after its step and `P = ℓ·H + 1/s²` its
//! posterior precision, so that the denominator counts how many components the images
//! determine: the fixed-point update of the marginal likelihood for a Gaussian prior's
//! variance. It has the fixed point of expectation–maximisation (`s² = mean(θ² + 1/P)`) and
//! reaches small widths in fewer passes. Where the images carry the errors, the widths
//! approach their rms; where the records are exact, the corrections are noise that the
//! posterior's own spread explains, and the widths shrink toward zero, so refinement stops
//! moving good records (test `the_prior_widths_follow_the_errors`). The rotation's width is
//! not estimated: the half's model, trained with the recorded rotations, explains them well
//! enough that the corrections it finds are small, and the estimate collapsed far below the
//! errors (BENCHMARKS.md, "Per-particle refinement"), which freezes the rotations.

use super::density::{self, DensityChange, DensityConfig, GradStats};
use crate::adam::{Adam, AdamConfig};
use cryosplat_core::ctf::CtfParams;
use cryosplat_core::gaussian::{scale_activation, GaussianModel, PARAMS_PER_GAUSSIAN, P_SCALE};
use cryosplat_core::pose::Pose;
use cryosplat_core::render::expand::SymmetryExpansion;
use cryosplat_core::render::{ImageStats, ImageTarget, Renderer};
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::{rotate_by_rotvec, rotvec_gradient, rotvec_left_jacobian};
use std::borrow::Cow;

/// The state of one half model and its optimiser.
#[derive(Clone, Debug)]
pub struct HalfTrainer {
    pub model: GaussianModel,
    pub adam: Adam,
    /// Gradient statistics of the epoch in progress (kept only when a hook asks for them).
    pub stats: GradStats,
    /// Optimiser steps taken.
    pub steps: u64,
    /// The gradient of the step in progress; zero between steps.
    grad: Vec<[f32; PARAMS_PER_GAUSSIAN]>,
    /// The point group's expansion and its buffers; `None` without symmetry.
    sym: Option<Expanded>,
    /// The blur of the steps (box units; 0: none, [`HalfTrainer::set_blur`]).
    blur_box: f32,
    /// The blurred model of the step in progress and its gradient (zero between steps).
    blurred: GaussianModel,
    blurred_grad: Vec<[f32; PARAMS_PER_GAUSSIAN]>,
    /// The chain factors of the blurred scales ([`blur_model`]).
    blur_factor: Vec<[f32; 3]>,
    /// The running sum of the parameters over the run's last steps (`--average-tail`).
    pub tail: TailAverage,
}

/// The sum of a half model's raw parameters after each step of a window at the end of the run
/// (`--average-tail`): the mean replaces the last step's model in `map.mrc`, the half maps and
/// the Gaussians, averaging out the step-to-step noise
/// that a learning rate still at a tenth of its start leaves
/// (BENCHMARKS.md, "The run length at larger boxes"). Reset when the window moves (a run
/// extended with `--resume`) or the model changes size.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TailAverage {
    /// The optimiser step after which the window starts (the sum holds steps `from + 1 ..`).
    pub from: u64,
    /// Steps summed.
    pub count: u64,
    /// Per Gaussian, the sum of its raw parameters (f64, so that the order of a long sum
    /// loses nothing that matters).
    pub sum: Vec<[f64; PARAMS_PER_GAUSSIAN]>,
}

/// The Gaussians per unit of parallel work of the blur.
const BLUR_CHUNK: usize = 1024;

/// `model` convolved with an isotropic Gaussian of standard deviation `b` (box units) into
/// `out`: each activated scale `s` becomes `s' = √(s² + b²)`. `factor` receives, per scale,
/// `∂ŝ'/∂ŝ`'s inverse chain factor `(s/s')·(∂s/∂ŝ)/(∂s'/∂ŝ')`, which [`unblur_grad`] applies.
/// Each Gaussian is independent: chunks of [`BLUR_CHUNK`] run in parallel, with the same result
/// for any thread count.
fn blur_model(model: &GaussianModel, b: f32, out: &mut GaussianModel, factor: &mut Vec<[f32; 3]>) {
    use rayon::prelude::*;
    out.params.resize(model.len(), [0.0; PARAMS_PER_GAUSSIAN]);
    factor.resize(model.len(), [0.0; 3]);
    let b2 = b * b;
    out.params.par_chunks_mut(BLUR_CHUNK).zip(factor.par_chunks_mut(BLUR_CHUNK)).zip(model.params.par_chunks(BLUR_CHUNK)).for_each(
        |((out, factor), model)| {
            for ((q, f), p) in out.iter_mut().zip(factor.iter_mut()).zip(model) {
                *q = *p;
                for k in 0..3 {
                    let (s, ds) = scale_activation(p[P_SCALE + k]);
                    let sb = (s * s + b2).sqrt();
                    // softplus⁻¹(s') = ln(e^{s'} − 1), and softplus' there is (e^{s'} − 1)/e^{s'}.
                    // `exp − 1` rather than `exp_m1` (several times slower): s' ≥ b, so the
                    // rounding error relative to e^{s'} − 1 stays below 1e-5 for any blur of
                    // at least a 1/500 box, and the factor below uses the same e.
                    let e = (sb.exp() - 1.0).max(f32::MIN_POSITIVE);
                    q[P_SCALE + k] = e.ln();
                    f[k] = (s / sb) * ds * (1.0 + e) / e;
                }
            }
        },
    );
}

/// Add the gradient `blurred_grad` of the blurred model (by [`blur_model`], which gave
/// `factor`) into `grad`, the model's; `blurred_grad` is left at zero.
fn unblur_grad(factor: &[[f32; 3]], blurred_grad: &mut [[f32; PARAMS_PER_GAUSSIAN]], grad: &mut [[f32; PARAMS_PER_GAUSSIAN]]) {
    use rayon::prelude::*;
    grad.par_chunks_mut(BLUR_CHUNK).zip(blurred_grad.par_chunks_mut(BLUR_CHUNK)).zip(factor.par_chunks(BLUR_CHUNK)).for_each(
        |((grad, blurred_grad), factor)| {
            for ((g, gb), f) in grad.iter_mut().zip(blurred_grad.iter_mut()).zip(factor) {
                for k in 0..PARAMS_PER_GAUSSIAN {
                    let c = if (P_SCALE..P_SCALE + 3).contains(&k) { f[k - P_SCALE] } else { 1.0 };
                    g[k] += gb[k] * c;
                    gb[k] = 0.0;
                }
            }
        },
    );
}

/// The expansion of the unit and the buffers a step renders from.
#[derive(Clone, Debug)]
struct Expanded {
    expansion: SymmetryExpansion,
    /// The copies of the unit at the step in progress.
    model: GaussianModel,
    /// Their gradient; zero between steps.
    grad: Vec<[f32; PARAMS_PER_GAUSSIAN]>,
}

/// The mean loss per image of `targets` under `model`; the gradient of that mean is added
/// into `grad`. With the CTFs' derivatives in defocus (`dctfs`, one per target), the renderer's
/// `_defocus` methods also give each image's `∂L/∂Δz` (same loss and gradient).
fn mean_loss_and_grad(
    renderer: &mut Renderer,
    model: &GaussianModel,
    targets: &[ImageTarget],
    dctfs: Option<&[&[f32]]>,
    grad: &mut [[f32; PARAMS_PER_GAUSSIAN]],
) -> f32 {
    match (targets, dctfs) {
        ([one], None) => renderer.loss_and_grad(model, one, grad),
        ([one], Some(g)) => renderer.loss_and_grad_defocus(model, one, g[0], grad),
        (many, dctfs) => {
            let l = match dctfs {
                None => renderer.loss_and_grad_batch(model, many, grad),
                Some(g) => renderer.loss_and_grad_batch_defocus(model, many, g, grad),
            };
            let inv = 1.0 / many.len() as f32;
            grad.iter_mut().flatten().for_each(|g| *g *= inv);
            l * inv
        }
    }
}

/// [`mean_loss_and_grad`] of the unit `model`: with a symmetry, of its copies (expanded into
/// `sym`'s buffer), their gradient folded back onto the unit in `grad`.
fn loss_and_grad_of_unit(
    renderer: &mut Renderer,
    model: &GaussianModel,
    sym: &mut Option<Expanded>,
    targets: &[ImageTarget],
    dctfs: Option<&[&[f32]]>,
    grad: &mut [[f32; PARAMS_PER_GAUSSIAN]],
) -> f32 {
    match sym {
        None => mean_loss_and_grad(renderer, model, targets, dctfs, grad),
        Some(s) => {
            s.expansion.expand(model, &mut s.model);
            s.grad.resize(s.model.len(), [0.0; PARAMS_PER_GAUSSIAN]);
            let loss = mean_loss_and_grad(renderer, &s.model, targets, dctfs, &mut s.grad);
            s.expansion.fold_grad(model, &s.grad, grad);
            s.grad.fill([0.0; PARAMS_PER_GAUSSIAN]);
            loss
        }
    }
}

impl HalfTrainer {
    /// A trainer starting from `model` with fresh optimiser moments.
    pub fn new(model: GaussianModel, adam: AdamConfig) -> Self {
        let n = model.len();
        Self::restore(model, Adam::new(adam, n), GradStats::new(n), 0)
    }

    /// A trainer continuing from saved state.
    pub fn restore(model: GaussianModel, adam: Adam, stats: GradStats, steps: u64) -> Self {
        let n = model.len();
        HalfTrainer {
            model,
            adam,
            stats,
            steps,
            grad: vec![[0.0; PARAMS_PER_GAUSSIAN]; n],
            sym: None,
            blur_box: 0.0,
            blurred: GaussianModel { params: Vec::new() },
            blurred_grad: Vec::new(),
            blur_factor: Vec::new(),
            tail: TailAverage::default(),
        }
    }

    /// Add the model as it is after a step to the tail average of the window that starts after
    /// step `from` (a new window, or a model of another size, starts the sum afresh).
    pub fn add_to_tail(&mut self, from: u64) {
        let n = self.model.len();
        let t = &mut self.tail;
        if t.from != from || t.sum.len() != n {
            *t = TailAverage { from, count: 0, sum: vec![[0.0; PARAMS_PER_GAUSSIAN]; n] };
        }
        // Flat and in chunks across the pool's threads: one addition per raw parameter, in the
        // same order as a plain loop, vectorised (a per-Gaussian loop over 11 values was not,
        // and cost 4% of a 128 px run).
        use rayon::prelude::*;
        const CHUNK: usize = 4096;
        let params = self.model.params.as_flattened();
        t.sum.as_flattened_mut().par_chunks_mut(CHUNK).zip(params.par_chunks(CHUNK)).for_each(|(acc, p)| {
            for (a, &v) in acc.iter_mut().zip(p) {
                *a += f64::from(v);
            }
        });
        t.count += 1;
    }

    /// The whole model (as [`Self::full_model`]) with each raw parameter averaged over the tail
    /// window of `from`; `None` when no step of that window has been summed for this model.
    pub fn tail_full_model(&self, from: u64) -> Option<GaussianModel> {
        let t = &self.tail;
        if t.count == 0 || t.from != from || t.sum.len() != self.model.len() {
            return None;
        }
        let inv = 1.0 / t.count as f64;
        let unit = GaussianModel { params: t.sum.iter().map(|a| a.map(|v| (v * inv) as f32)).collect() };
        Some(self.expanded(Cow::Owned(unit)).into_owned())
    }

    /// Render the following steps' model blurred by an isotropic Gaussian of standard
    /// deviation `blur_box` (box units; 0: no blur, the model as it is). See the module docs.
    pub fn set_blur(&mut self, blur_box: f32) {
        assert!(blur_box >= 0.0 && blur_box.is_finite(), "blur {blur_box}");
        self.blur_box = blur_box;
    }

    /// Train the model as the asymmetric unit of `expansion`'s group (`None`, or a trivial
    /// group: no symmetry, the model is rendered as it is).
    pub fn set_symmetry(&mut self, expansion: Option<SymmetryExpansion>) {
        self.sym = expansion.filter(|e| e.order() > 1).map(|expansion| Expanded {
            expansion,
            model: GaussianModel { params: Vec::new() },
            grad: Vec::new(),
        });
    }

    /// The point group's expansion, if any.
    pub fn symmetry(&self) -> Option<&SymmetryExpansion> {
        self.sym.as_ref().map(|s| &s.expansion)
    }

    /// The whole model: the unit's copies with a symmetry, else the model itself.
    pub fn full_model(&self) -> Cow<'_, GaussianModel> {
        self.expanded(Cow::Borrowed(&self.model))
    }

    /// `unit` as a whole model: its copies with a symmetry, else `unit` itself.
    fn expanded<'a>(&self, unit: Cow<'a, GaussianModel>) -> Cow<'a, GaussianModel> {
        match &self.sym {
            None => unit,
            Some(s) => {
                let mut out = GaussianModel { params: Vec::new() };
                s.expansion.expand(&unit, &mut out);
                Cow::Owned(out)
            }
        }
    }

    /// Before a pass over the half's images: the hook acts on the model (with the previous
    /// pass's statistics), then the statistics restart and the gradient buffer follows the
    /// model's size.
    pub fn begin_epoch(&mut self, hook: &dyn EpochHook, epoch: usize, d: usize, rng: &mut Rng) -> DensityChange {
        let change = hook.before_epoch(self, epoch, d, rng);
        self.stats.reset(self.model.len());
        self.grad.clear();
        self.grad.resize(self.model.len(), [0.0; PARAMS_PER_GAUSSIAN]);
        change
    }

    /// One optimiser step on `targets` (one or more images) at learning rate `lr`; returns
    /// the mean loss per image (normalised units). Statistics are gathered when `keep_stats`.
    pub fn step(&mut self, renderer: &mut Renderer, targets: &[ImageTarget], lr: f64, keep_stats: bool) -> f32 {
        self.step_impl(renderer, targets, None, lr, keep_stats)
    }

    /// [`HalfTrainer::step`] that also has the renderer measure each image's `∂L/∂Δz`
    /// (`ImageStats::grad_defocus_a` in `renderer.last_stats()` afterwards, one per target in
    /// order), from `ctf_ddefocus[i]`, target `i`'s CTF derivative in defocus (half-plane
    /// layout, [`cryosplat_core::ctf::CtfGrid::fill_rfft_with_ddefocus`]). The model's step is
    /// bitwise that of [`HalfTrainer::step`].
    pub fn step_with_defocus(
        &mut self,
        renderer: &mut Renderer,
        targets: &[ImageTarget],
        ctf_ddefocus: &[&[f32]],
        lr: f64,
        keep_stats: bool,
    ) -> f32 {
        self.step_impl(renderer, targets, Some(ctf_ddefocus), lr, keep_stats)
    }

    fn step_impl(&mut self, renderer: &mut Renderer, targets: &[ImageTarget], dctfs: Option<&[&[f32]]>, lr: f64, keep_stats: bool) -> f32 {
        let loss = if self.blur_box > 0.0 {
            blur_model(&self.model, self.blur_box, &mut self.blurred, &mut self.blur_factor);
            self.blurred_grad.resize(self.model.len(), [0.0; PARAMS_PER_GAUSSIAN]);
            let loss = loss_and_grad_of_unit(renderer, &self.blurred, &mut self.sym, targets, dctfs, &mut self.blurred_grad);
            unblur_grad(&self.blur_factor, &mut self.blurred_grad, &mut self.grad);
            loss
        } else {
            loss_and_grad_of_unit(renderer, &self.model, &mut self.sym, targets, dctfs, &mut self.grad)
        };
        if keep_stats {
            self.stats.add(&self.grad);
        }
        // Leaves the gradient at zero for the next step.
        self.adam.step_and_clear(&mut self.model, &mut self.grad, lr);
        self.steps += 1;
        loss
    }
}

/// An action on one half's model before each pass over its images.
pub trait EpochHook: Sync {
    /// Whether steps must gather gradient statistics for this hook.
    fn wants_stats(&self) -> bool;
    /// Act on `t` before its pass `epoch` (0-based); `d` is the training box, `rng` the
    /// stream of this half and epoch.
    fn before_epoch(&self, t: &mut HalfTrainer, epoch: usize, d: usize, rng: &mut Rng) -> DensityChange;
}

/// Density control (splitting and pruning, see [`density`]) as a hook.
impl EpochHook for DensityConfig {
    fn wants_stats(&self) -> bool {
        self.is_active()
    }

    fn before_epoch(&self, t: &mut HalfTrainer, epoch: usize, d: usize, rng: &mut Rng) -> DensityChange {
        if !self.is_active() {
            return DensityChange::default();
        }
        density::control(self, epoch + 1, &mut t.model, &mut t.adam, &t.stats, d, rng)
    }
}

/// The model's growth, then density control.
impl EpochHook for density::ModelHooks<'_> {
    fn wants_stats(&self) -> bool {
        self.density.wants_stats()
    }

    fn before_epoch(&self, t: &mut HalfTrainer, epoch: usize, d: usize, rng: &mut Rng) -> DensityChange {
        let grown = match self.grow {
            Some(g) if g.before_epoch == epoch + 1 && t.model.len() <= g.start_count => Some(density::grow(&mut t.model, &mut t.adam, rng)),
            _ => None,
        };
        // Inactive density control reports nothing (its `after` is 0), so the growth's change
        // stands alone; active, it acts on the grown model and the splits add up.
        let change = self.density.before_epoch(t, epoch, d, rng);
        match grown {
            Some(g) if !self.density.is_active() => g,
            Some(g) => DensityChange { split: g.split + change.split, ..change },
            None => change,
        }
    }
}

/// Settings of per-particle refinement (see [Per-particle refinement](self#per-particle-refinement)).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RefineConfig {
    /// Which corrections are refined.
    pub pose: bool,
    pub shift: bool,
    pub defocus: bool,
    /// Widths of the Gaussian prior toward the recorded values: rotation angle per
    /// rotation-vector component in degrees, origin per axis and defocus in Å. With
    /// `estimate_prior`, the widths of the first refining pass only.
    pub prior_rot_deg: f64,
    pub prior_shift_a: f64,
    pub prior_defocus_a: f64,
    /// First epoch (0-based) whose steps refine the particles.
    pub start_epoch: usize,
    /// Re-estimate the origin's and the defocus's prior widths from the half's own corrections
    /// after every refining pass (see [Per-particle refinement](self#per-particle-refinement));
    /// otherwise they stay as given. The rotation's always does.
    #[serde(default)]
    pub estimate_prior: bool,
}

/// One half's per-particle corrections, indexed by the particle's position in the half (see
/// [Per-particle refinement](self#per-particle-refinement)).
#[derive(Clone, Debug)]
pub struct ParticleRefinement {
    cfg: RefineConfig,
    /// `[w₀, w₁, w₂ (rad), δo_x, δo_y (Å), δz (Å)]` per particle.
    values: Vec<[f64; 6]>,
    /// Steps taken per particle.
    steps: Vec<u32>,
    /// The rotations' lever arm for the pass in progress: the model's mean square radius (Å²)
    /// when the pass's first refining step read it ([`ParticleRefinement::lever_arm_a2`]).
    /// The model's extent changes little within a pass, and reading it at every step would
    /// cost as much as a large part of the step.
    lever_arm_a2: Option<f64>,
    /// The prior widths in use (rotation per component in degrees, origin per axis and
    /// defocus in Å).
    widths: [f64; 3],
    /// Per group (rotation, origin, defocus), over the pass in progress: the sum of each
    /// refined component's square, and of the fraction of its posterior precision that comes
    /// from the image (`1 − 1/(s²·P)`); the rotation's stay zero (its width is not estimated).
    moments: [[f64; 2]; 3],
}

/// What a checkpoint keeps of a [`ParticleRefinement`] (see [`ParticleRefinement::state`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RefineState {
    pub values: Vec<[f64; 6]>,
    pub steps: Vec<u32>,
    /// The pass's lever arm, once read (so that a run resumed within a pass uses the value
    /// an unbroken run does).
    #[serde(default)]
    pub lever_arm_a2: Option<f64>,
    /// The prior widths in use (absent: the configuration's).
    #[serde(default)]
    pub widths: Option<[f64; 3]>,
    /// The pass's sums for the next estimate of the widths.
    #[serde(default)]
    pub moments: [[f64; 2]; 3],
}

impl ParticleRefinement {
    /// No corrections yet for `n` particles.
    pub fn new(cfg: RefineConfig, n: usize) -> Self {
        let widths = [cfg.prior_rot_deg, cfg.prior_shift_a, cfg.prior_defocus_a];
        ParticleRefinement { cfg, values: vec![[0.0; 6]; n], steps: vec![0; n], lever_arm_a2: None, widths, moments: [[0.0; 2]; 3] }
    }

    pub fn config(&self) -> &RefineConfig {
        &self.cfg
    }

    /// The full state, for checkpoints: per particle the corrections
    /// `[w₀, w₁, w₂ (rad), δo_x, δo_y (Å), δz (Å)]` and the steps taken.
    pub fn state(&self) -> RefineState {
        RefineState {
            values: self.values.clone(),
            steps: self.steps.clone(),
            lever_arm_a2: self.lever_arm_a2,
            widths: Some(self.widths),
            moments: self.moments,
        }
    }

    /// Continue from a saved [`RefineState`]; `None` if its vectors differ in length.
    pub fn restore(cfg: RefineConfig, state: RefineState) -> Option<Self> {
        if state.steps.len() != state.values.len() {
            return None;
        }
        let widths = state.widths.unwrap_or([cfg.prior_rot_deg, cfg.prior_shift_a, cfg.prior_defocus_a]);
        Some(ParticleRefinement {
            cfg,
            values: state.values,
            steps: state.steps,
            lever_arm_a2: state.lever_arm_a2,
            widths,
            moments: state.moments,
        })
    }

    /// A new pass begins: its first refining step reads the lever arm afresh, and with
    /// [`RefineConfig::estimate_prior`] each width refined in the pass before is estimated
    /// from that pass's corrections (see the module docs).
    pub fn begin_pass(&mut self) {
        self.lever_arm_a2 = None;
        if self.cfg.estimate_prior {
            // The rotation's sums stay empty, so its width stays as given (see the module docs).
            for (w, &[sum, n]) in self.widths.iter_mut().zip(&self.moments) {
                if n > 0.0 {
                    *w = (sum / n).sqrt().max(f64::MIN_POSITIVE);
                }
            }
        }
        self.moments = [[0.0; 2]; 3];
    }

    /// The prior widths in use: rotation per rotation-vector component (°), origin per axis
    /// (Å) and defocus (Å).
    pub fn prior_widths(&self) -> [f64; 3] {
        self.widths
    }

    /// The rotations' lever arm of this pass (Å², the `radius2_a2` of
    /// [`ParticleRefinement::update`]): `read()` at the pass's first call, the same value
    /// after it.
    pub fn lever_arm_a2(&mut self, read: impl FnOnce() -> f64) -> f64 {
        *self.lever_arm_a2.get_or_insert_with(read)
    }

    /// Whether the steps of `epoch` (0-based) refine the particles.
    pub fn active(&self, epoch: usize) -> bool {
        epoch >= self.cfg.start_epoch && (self.cfg.pose || self.cfg.shift || self.cfg.defocus)
    }

    /// Particle `i`'s corrections: rotation vector (rad), origin offset (Å), defocus offset (Å).
    pub fn correction(&self, i: usize) -> ([f64; 3], [f64; 2], f64) {
        let c = &self.values[i];
        ([c[0], c[1], c[2]], [c[3], c[4]], c[5])
    }

    /// Particle `i`'s pose: the recorded one corrected.
    pub fn pose(&self, i: usize, recorded: &Pose) -> Pose {
        let (w, o, _) = self.correction(i);
        Pose { rot: rotate_by_rotvec(w, &recorded.rot), origin_a: [recorded.origin_a[0] + o[0], recorded.origin_a[1] + o[1]] }
    }

    /// Particle `i`'s CTF: the recorded one with its defocus offset added to U and V.
    pub fn ctf(&self, i: usize, recorded: &CtfParams) -> CtfParams {
        let dz = self.values[i][5];
        CtfParams { defocus_u_a: recorded.defocus_u_a + dz, defocus_v_a: recorded.defocus_v_a + dz, ..*recorded }
    }

    /// One Newton step on particle `i`'s corrections (see the module docs) from the statistics
    /// `st` of its image, rendered with [`ParticleRefinement::pose`] and
    /// [`ParticleRefinement::ctf`] by the renderer's `_defocus` methods (which give the
    /// gradients and the origin and defocus curvatures), the box size `d`, the noise variance
    /// `noise_var` per pixel (in the loss's units) and the particle's mean square radius
    /// `radius2_a2` (Å², about the box centre). A step is at most one prior width. Only the
    /// refined corrections move.
    pub fn update(&mut self, i: usize, recorded: &Pose, st: &ImageStats, d: usize, noise_var: f64, radius2_a2: f64) {
        assert!(noise_var > 0.0 && noise_var.is_finite(), "noise variance {noise_var}");
        let c = self.values[i];
        let like = (d * d) as f64 / (2.0 * noise_var);
        let w = [c[0], c[1], c[2]];
        let a = rotate_by_rotvec(w, &recorded.rot);
        let g0 = rotvec_gradient(&a, &st.grad_rot);
        let j = rotvec_left_jacobian(w);
        let gw: [f64; 3] = std::array::from_fn(|k| j[0][k] * g0[0] + j[1][k] * g0[1] + j[2][k] * g0[2]);
        let [hx, hy] = st.curv_origin_a;
        // A rotation about the image's x axis moves mass along y by its depth times the angle,
        // about y along x, about z (in-plane) along both. Each axis takes the origin curvature
        // of the directions it moves mass along times the whole mean square radius as the
        // lever arm's: a third of it per coordinate underestimates where the image's detail
        // lies far from the centre, and an underestimated curvature overshoots.
        let r2 = radius2_a2;
        let grad = [gw[0], gw[1], gw[2], st.grad_origin_a[0], st.grad_origin_a[1], st.grad_defocus_a];
        let curv = [hy * r2, hx * r2, (hx + hy) * r2, hx, hy, st.curv_defocus_a];
        let cfg = &self.cfg;
        let width = [self.widths[0].to_radians(), self.widths[1], self.widths[2]];
        let on = [cfg.pose, cfg.shift, cfg.defocus];
        let group = [0, 0, 0, 1, 1, 2];
        self.steps[i] += 1;
        for k in 0..6 {
            let gk = group[k];
            if !on[gk] {
                continue;
            }
            let p = 1.0 / (width[gk] * width[gk]);
            let precision = like * curv[k].max(0.0) + p;
            let step = (like * grad[k] + c[k] * p) / precision;
            self.values[i][k] -= step.clamp(-width[gk], width[gk]);
            // The sums for the next estimate of the origin's and the defocus's widths (Å, the
            // options' units); the rotation's is never estimated.
            if gk > 0 {
                self.moments[gk][0] += self.values[i][k].powi(2);
                self.moments[gk][1] += 1.0 - p / precision;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryosplat_core::ctf::CtfGrid;
    use cryosplat_core::render::RenderOptions;
    use cryosplat_core::rng::Rng;
    use cryosplat_core::rotation::{angle_between_deg, random_rotation};

    #[test]
    fn the_tail_average_is_the_mean_of_the_models_summed_in_its_window() {
        let model = |k: f32| GaussianModel { params: (0..2).map(|i| std::array::from_fn(|j| k * (1 + i * 11 + j) as f32)).collect() };
        let mut t = HalfTrainer::new(model(1.0), AdamConfig::default());
        assert!(t.tail_full_model(5).is_none());
        t.add_to_tail(5);
        t.model = model(2.0);
        t.add_to_tail(5);
        t.model = model(6.0);
        t.add_to_tail(5);
        assert_eq!(t.tail_full_model(5).unwrap(), model(3.0));
        // Another window (a run extended with --resume) starts afresh; so does another size.
        assert!(t.tail_full_model(7).is_none());
        t.add_to_tail(7);
        assert_eq!((t.tail.count, t.tail_full_model(7).unwrap()), (1, model(6.0)));
        t.model.params.pop();
        assert!(t.tail_full_model(7).is_none());
        t.add_to_tail(7);
        assert_eq!(t.tail.count, 1);
    }

    fn config() -> RefineConfig {
        RefineConfig {
            pose: true,
            shift: true,
            defocus: true,
            prior_rot_deg: 5.0,
            prior_shift_a: 3.0,
            prior_defocus_a: 1000.0,
            start_epoch: 1,
            estimate_prior: false,
        }
    }

    #[test]
    fn no_correction_is_the_recorded_values_and_inactive_settings_do_nothing() {
        let mut rng = Rng::new(2);
        let pose = Pose { rot: random_rotation(&mut rng), origin_a: [1.5, -0.5] };
        let ctf = CtfParams { defocus_u_a: 12000.0, defocus_v_a: 11000.0, ..CtfParams::flat() };
        let mut r = ParticleRefinement::new(RefineConfig { pose: false, shift: false, defocus: false, ..config() }, 3);
        assert_eq!((r.pose(1, &pose), r.ctf(1, &ctf)), (pose, ctf));
        assert!(!r.active(0) && !r.active(5));
        let st = ImageStats { grad_origin_a: [1.0, 2.0], grad_defocus_a: 3.0, grad_rot: [[1.0; 3]; 3], ..Default::default() };
        r.update(1, &pose, &st, 32, 1.0, 100.0);
        assert_eq!(r.correction(1), ([0.0; 3], [0.0; 2], 0.0));
        let r = ParticleRefinement::new(config(), 3);
        assert!(!r.active(0) && r.active(1));
    }

    /// A noise-free image of a model under known parameters, recorded with errors of 2° (as a
    /// rotation vector), 0.4 and −0.3 px and 300 Å, refined from the recorded values with the
    /// renderer's gradients and curvatures by 200 Newton steps under `cfg`: the errors (angle °,
    /// shift px, defocus Å) before and after.
    fn refine_one(cfg: RefineConfig) -> ((f64, f64, f64), (f64, f64, f64)) {
        let (d, apix) = (32usize, 2.0);
        let mut rng = Rng::new(9);
        let px = 1.0 / d as f64;
        let params = (0..12)
            .map(|_| {
                let m: [f32; 3] = std::array::from_fn(|_| rng.uniform_range(-0.25, 0.25) as f32);
                let s: [f32; 3] = std::array::from_fn(|_| (rng.uniform_range(1.5, 3.0) * px) as f32);
                let q = rng.unit_quaternion();
                GaussianModel::raw_from_physical(m, s, q.map(|v| v as f32), rng.uniform_range(0.5, 1.5) as f32)
            })
            .collect();
        let model = GaussianModel { params };
        let truth = Pose { rot: random_rotation(&mut rng), origin_a: [0.6, -1.0] };
        let true_ctf = CtfParams { defocus_u_a: 9000.0, defocus_v_a: 7500.0, defocus_angle_deg: 37.0, cs_mm: 2.7, ..CtfParams::flat() };
        let e = 2f64.to_radians() / 3f64.sqrt();
        let recorded = Pose { rot: rotate_by_rotvec([e, -e, e], &truth.rot), origin_a: [0.6 + 0.4 * apix, -1.0 - 0.3 * apix] };
        let recorded_ctf = CtfParams { defocus_u_a: 9300.0, defocus_v_a: 7800.0, ..true_ctf };
        let grid = CtfGrid::new(d, apix);
        let w = d / 2 + 1;
        let (mut h, mut dh) = (vec![0.0f32; d * w], vec![0.0f32; d * w]);
        grid.fill_rfft(&true_ctf, &mut h);
        let mut r = Renderer::new(d, RenderOptions { n_sigma: 6.0, threads: 1 });
        let mut observed = vec![0.0f32; d * d];
        r.render(&model, &truth, apix, Some(&h), &mut observed);
        let errors = |p: &ParticleRefinement| {
            let (pose, ctf) = (p.pose(0, &recorded), p.ctf(0, &recorded_ctf));
            let o = ((pose.origin_a[0] - truth.origin_a[0]).hypot(pose.origin_a[1] - truth.origin_a[1])) / apix;
            (angle_between_deg(&pose.rot, &truth.rot), o, (ctf.defocus_u_a - true_ctf.defocus_u_a).abs())
        };
        let mut p = ParticleRefinement::new(cfg, 1);
        let before = errors(&p);
        let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
        let radius2_a2 = model.mean_square_radius_a2(d, apix);
        for _ in 0..200 {
            let (pose, ctf) = (p.pose(0, &recorded), p.ctf(0, &recorded_ctf));
            grid.fill_rfft_with_ddefocus(&ctf, &mut h, &mut dh);
            let t = ImageTarget { image: &observed, ctf_rfft: &h, pose: &pose, apix };
            r.loss_and_grad_defocus(&model, &t, &dh, &mut grad);
            let st = r.last_stats()[0];
            // A nominal noise level.
            p.update(0, &recorded, &st, d, 1e-4, radius2_a2);
        }
        (before, errors(&p))
    }

    /// Passes of refinement with the prior estimated, on particles whose origin and defocus
    /// errors are drawn with widths `true_widths` (Å) and whose images each measure them with
    /// noise of widths `noise` (Å), through a quadratic loss: the widths after `passes` passes.
    fn estimated_widths(true_widths: [f64; 2], noise: [f64; 2], passes: usize) -> [f64; 3] {
        let (n, d, noise_var) = (3000, 32, 0.5);
        let like = (d * d) as f64 / (2.0 * noise_var);
        let mut rng = Rng::new(4);
        // Each particle's measured errors: its true error plus the measurement's noise.
        let measured: Vec<[f64; 3]> = (0..n)
            .map(|_| {
                let m = |w: f64, e: f64, rng: &mut Rng| w * rng.normal() + e * rng.normal();
                [m(true_widths[0], noise[0], &mut rng), m(true_widths[0], noise[0], &mut rng), m(true_widths[1], noise[1], &mut rng)]
            })
            .collect();
        // A loss whose curvature makes one image's evidence worth the measurement's noise.
        let (h_origin, h_defocus) = (1.0 / (like * noise[0] * noise[0]), 1.0 / (like * noise[1] * noise[1]));
        // Rotations are refined too, without evidence (no gradient): were their width estimated,
        // it would collapse.
        let cfg = RefineConfig { estimate_prior: true, prior_shift_a: 10.0, prior_defocus_a: 2000.0, ..config() };
        let mut r = ParticleRefinement::new(cfg, n);
        let pose = Pose::default();
        for _ in 0..passes {
            r.begin_pass();
            for (i, y) in measured.iter().enumerate() {
                // The recorded values are the truth plus the error, so the correction that
                // removes the error is its negative.
                let (_, o, z) = r.correction(i);
                let st = ImageStats {
                    grad_origin_a: [h_origin * (o[0] + y[0]), h_origin * (o[1] + y[1])],
                    curv_origin_a: [h_origin; 2],
                    grad_defocus_a: h_defocus * (z + y[2]),
                    curv_defocus_a: h_defocus,
                    ..Default::default()
                };
                r.update(i, &pose, &st, d, noise_var, 100.0);
            }
        }
        r.begin_pass();
        r.prior_widths()
    }

    /// The estimated prior widths approach the spread of the true errors when the images carry
    /// them, shrink far below the measurement's noise when the records are exact, and the
    /// rotation's width stays as given.
    #[test]
    fn the_prior_widths_follow_the_errors() {
        let w = estimated_widths([1.6, 300.0], [0.8, 200.0], 9);
        eprintln!("errors present: {w:?}");
        assert!((w[1] / 1.6 - 1.0).abs() < 0.06 && (w[2] / 300.0 - 1.0).abs() < 0.1, "{w:?}");
        assert_eq!(w[0], config().prior_rot_deg);
        let w = estimated_widths([0.0, 0.0], [0.8, 200.0], 9);
        eprintln!("exact records: {w:?}");
        assert!(w[1] < 0.4 * 0.8 && w[2] < 0.4 * 200.0, "{w:?}");
        // Fixed widths stay.
        let mut r = ParticleRefinement::new(config(), 1);
        r.update(
            0,
            &Pose::default(),
            &ImageStats { grad_origin_a: [1.0, 1.0], curv_origin_a: [1.0; 2], ..Default::default() },
            32,
            0.5,
            1.0,
        );
        r.begin_pass();
        assert_eq!(r.prior_widths(), [5.0, 3.0, 1000.0]);
    }

    /// Saving and restoring the state between two updates changes nothing (bitwise), and a
    /// state whose vectors differ in length is refused.
    #[test]
    fn a_restored_state_continues_exactly() {
        let mut rng = Rng::new(6);
        let pose = Pose { rot: random_rotation(&mut rng), origin_a: [0.5, 0.2] };
        let st = |k: f64| ImageStats {
            grad_origin_a: [k, -2.0 * k],
            grad_defocus_a: 1e-3 * k,
            grad_rot: [[k, 0.5, -k], [0.3 * k, 1.0, 0.2], [0.0; 3]],
            ..Default::default()
        };
        let mut a = ParticleRefinement::new(config(), 2);
        a.update(1, &pose, &st(1.0), 32, 0.5, 50.0);
        let mut b = ParticleRefinement::restore(config(), a.state()).unwrap();
        a.update(1, &pose, &st(-0.7), 32, 0.5, 50.0);
        b.update(1, &pose, &st(-0.7), 32, 0.5, 50.0);
        assert_eq!(a.state(), b.state());
        assert_ne!(a.correction(1), ([0.0; 3], [0.0; 2], 0.0));
        let mut bad = a.state();
        bad.steps.pop();
        assert!(ParticleRefinement::restore(config(), bad).is_none());
    }

    /// Refinement brings every parameter at least 95% closer to the truth. This checks the
    /// conventions end to end (the rotation is corrected on the left, origins and defocus
    /// add, the signs of every gradient).
    #[test]
    fn refinement_recovers_the_true_parameters_of_a_noise_free_image() {
        let (before, after) = refine_one(config());
        eprintln!("errors before {before:?}, after {after:?}");
        assert!(after.0 < 0.05 * before.0, "angle: {} → {} °", before.0, after.0);
        assert!(after.1 < 0.05 * before.1, "shift: {} → {} px", before.1, after.1);
        assert!(after.2 < 0.05 * before.2, "defocus: {} → {} Å", before.2, after.2);
    }

    /// A prior far narrower than the errors keeps the corrections near zero: every error stays
    /// within 10% of the recorded one. A parameter that is not refined does not move, and the
    /// others still come closer to the truth (less so: the wrong defocus biases the pose).
    #[test]
    fn a_narrow_prior_holds_the_recorded_values() {
        let cfg = RefineConfig { prior_rot_deg: 1e-6, prior_shift_a: 1e-6, prior_defocus_a: 1e-4, ..config() };
        let (before, after) = refine_one(cfg);
        eprintln!("errors before {before:?}, after {after:?}");
        assert!((after.0 / before.0 - 1.0).abs() < 0.1, "angle: {} → {} °", before.0, after.0);
        assert!((after.1 / before.1 - 1.0).abs() < 0.1, "shift: {} → {} px", before.1, after.1);
        assert!((after.2 / before.2 - 1.0).abs() < 0.1, "defocus: {} → {} Å", before.2, after.2);
        let (before, after) = refine_one(RefineConfig { defocus: false, ..config() });
        assert_eq!(after.2, before.2);
        assert!(after.0 < 0.5 * before.0 && after.1 < 0.1 * before.1, "{before:?} → {after:?}");
    }

    /// The gradient carried back through the blur is the derivative of the blurred model's
    /// loss: against central differences in each raw scale, for Gaussians narrower and wider
    /// than the blur.
    #[test]
    fn the_blur_carries_the_gradient_back_to_the_scales() {
        let (d, apix) = (24usize, 2.0);
        let b = 0.5 / 12.0f32;
        let mut rng = Rng::new(8);
        let gaussian = |rng: &mut Rng, shift: f64| {
            let m: [f32; 3] = std::array::from_fn(|_| (rng.uniform_range(-0.2, 0.2) + shift) as f32);
            let s: [f32; 3] = std::array::from_fn(|_| rng.uniform_range(0.01, 0.08) as f32);
            GaussianModel::raw_from_physical(m, s, rng.unit_quaternion().map(|v| v as f32), rng.uniform_range(0.5, 1.5) as f32)
        };
        let model = GaussianModel { params: (0..6).map(|_| gaussian(&mut rng, 0.0)).collect() };
        let other = GaussianModel { params: (0..6).map(|_| gaussian(&mut rng, 0.02)).collect() };
        let pose = Pose { rot: random_rotation(&mut rng), origin_a: [0.0; 2] };
        let mut r = Renderer::new(d, RenderOptions { n_sigma: 6.0, threads: 1 });
        let mut observed = vec![0.0f32; d * d];
        r.render(&other, &pose, apix, None, &mut observed);
        let t = ImageTarget { image: &observed, ctf_rfft: &[], pose: &pose, apix };
        let mut blurred = GaussianModel { params: Vec::new() };
        let mut loss_of = |m: &GaussianModel, r: &mut Renderer, grad: &mut Vec<[f32; PARAMS_PER_GAUSSIAN]>| {
            let mut factor = Vec::new();
            blur_model(m, b, &mut blurred, &mut factor);
            for (p, q) in m.params.iter().zip(&blurred.params) {
                assert_eq!((&p[..P_SCALE], &p[P_SCALE + 3..]), (&q[..P_SCALE], &q[P_SCALE + 3..]), "only the scales change");
                for k in P_SCALE..P_SCALE + 3 {
                    let (s, sb) = (scale_activation(p[k]).0, scale_activation(q[k]).0);
                    assert!((sb / (s * s + b * b).sqrt() - 1.0).abs() < 1e-4, "{sb} against {s} blurred by {b}");
                }
            }
            let mut gb = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; m.len()];
            let l = r.loss_and_grad(&blurred, &t, &mut gb) as f64;
            grad.clear();
            grad.resize(m.len(), [0.0; PARAMS_PER_GAUSSIAN]);
            unblur_grad(&factor, &mut gb, grad);
            assert!(gb.iter().flatten().all(|&v| v == 0.0), "the blurred gradient is left at zero");
            l
        };
        let mut grad = Vec::new();
        loss_of(&model, &mut r, &mut grad);
        let largest = grad.iter().flat_map(|g| g[P_SCALE..P_SCALE + 3].iter()).fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(largest > 0.0);
        let h = 1e-2f32;
        let mut scratch = Vec::new();
        for (i, g) in grad.iter().enumerate() {
            for (k, &analytic) in g.iter().enumerate().take(P_SCALE + 3).skip(P_SCALE) {
                let (mut plus, mut minus) = (model.clone(), model.clone());
                plus.params[i][k] += h;
                minus.params[i][k] -= h;
                let fd = (loss_of(&plus, &mut r, &mut scratch) - loss_of(&minus, &mut r, &mut scratch)) / (2.0 * h as f64);
                let err = (fd - analytic as f64).abs();
                assert!(err < 0.03 * largest as f64, "Gaussian {i}, raw scale {k}: {analytic} against {fd}");
            }
        }
    }

    /// `step_with_defocus` moves the model bitwise as `step` does, for one image and for a
    /// minibatch, and leaves each image's ∂L/∂Δz in the renderer's statistics.
    #[test]
    fn a_step_with_defocus_is_a_step() {
        let (d, apix) = (24usize, 2.0);
        let mut rng = Rng::new(4);
        let params = (0..20)
            .map(|_| {
                let m: [f32; 3] = std::array::from_fn(|_| rng.uniform_range(-0.2, 0.2) as f32);
                GaussianModel::raw_from_physical(m, [0.06; 3], [1.0, 0.0, 0.0, 0.0], 1.0)
            })
            .collect();
        let model = GaussianModel { params };
        let w = d / 2 + 1;
        let n = 3;
        let poses: Vec<Pose> = (0..n).map(|_| Pose { rot: random_rotation(&mut rng), origin_a: [0.0; 2] }).collect();
        let images: Vec<Vec<f32>> = (0..n).map(|_| (0..d * d).map(|_| rng.normal() as f32).collect()).collect();
        let ctfs: Vec<(Vec<f32>, Vec<f32>)> = (0..n)
            .map(|i| {
                let (mut h, mut g) = (vec![0.0f32; d * w], vec![0.0f32; d * w]);
                let p = CtfParams { defocus_u_a: 8000.0 + 1000.0 * i as f64, defocus_v_a: 8000.0, ..CtfParams::flat() };
                CtfGrid::new(d, apix).fill_rfft_with_ddefocus(&p, &mut h, &mut g);
                (h, g)
            })
            .collect();
        let targets: Vec<ImageTarget> =
            (0..n).map(|i| ImageTarget { image: &images[i], ctf_rfft: &ctfs[i].0, pose: &poses[i], apix }).collect();
        let dctfs: Vec<&[f32]> = ctfs.iter().map(|c| &c.1[..]).collect();
        for k in [1, n] {
            let adam = crate::adam::AdamConfig::default();
            let (mut a, mut b) = (HalfTrainer::new(model.clone(), adam.clone()), HalfTrainer::new(model.clone(), adam));
            let mut r = Renderer::new(d, RenderOptions { n_sigma: 3.5, threads: 1 });
            let la = a.step(&mut r, &targets[..k], 1e-3, true);
            let lb = b.step_with_defocus(&mut r, &targets[..k], &dctfs[..k], 1e-3, true);
            assert_eq!((la, &a.model), (lb, &b.model), "{k} images");
            assert_eq!(r.last_stats().len(), k);
            assert!(r.last_stats().iter().all(|st| st.grad_defocus_a != 0.0), "{k} images");
        }
    }
}
