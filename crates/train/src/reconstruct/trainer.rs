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

use super::density::{self, DensityChange, DensityConfig, GradStats};
use crate::adam::{Adam, AdamConfig};
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_core::render::expand::SymmetryExpansion;
use cryosplat_core::render::{ImageTarget, Renderer};
use cryosplat_core::rng::Rng;
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
/// into `grad`.
fn mean_loss_and_grad(
    renderer: &mut Renderer,
    model: &GaussianModel,
    targets: &[ImageTarget],
    grad: &mut [[f32; PARAMS_PER_GAUSSIAN]],
) -> f32 {
    match targets {
        [one] => renderer.loss_and_grad(model, one, grad),
        many => {
            let l = renderer.loss_and_grad_batch(model, many, grad);
            let inv = 1.0 / many.len() as f32;
            grad.iter_mut().flatten().for_each(|g| *g *= inv);
            l * inv
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
        HalfTrainer { model, adam, stats, steps, grad: vec![[0.0; PARAMS_PER_GAUSSIAN]; n], sym: None }
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
        match &self.sym {
            None => Cow::Borrowed(&self.model),
            Some(s) => {
                let mut out = GaussianModel { params: Vec::new() };
                s.expansion.expand(&self.model, &mut out);
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
        let loss = match &mut self.sym {
            None => mean_loss_and_grad(renderer, &self.model, targets, &mut self.grad),
            Some(s) => {
                s.expansion.expand(&self.model, &mut s.model);
                s.grad.resize(s.model.len(), [0.0; PARAMS_PER_GAUSSIAN]);
                let loss = mean_loss_and_grad(renderer, &s.model, targets, &mut s.grad);
                s.expansion.fold_grad(&self.model, &s.grad, &mut self.grad);
                s.grad.fill([0.0; PARAMS_PER_GAUSSIAN]);
                loss
            }
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
