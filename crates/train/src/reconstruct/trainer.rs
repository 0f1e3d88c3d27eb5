//! One half's training: its model, its optimiser state, its gradient statistics and its step
//! count, advanced one optimiser step at a time.
//!
//! A [`HalfTrainer`] sees only the images its caller hands it, so the two halves of a
//! gold-standard run never share anything but the settings. Actions between epochs (density
//! control today) are [`EpochHook`]s, so that later ones (a coarse-to-fine switch, symmetry
//! expansion, per-particle parameters) plug in without touching the step. The parallel work of
//! a step is the renderer's (`cryosplat_core::render`) and the optimiser's
//! (`crate::adam`); this module adds none of its own.

use super::density::{self, DensityChange, DensityConfig, GradStats};
use crate::adam::{Adam, AdamConfig};
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_core::render::{ImageTarget, Renderer};
use cryosplat_core::rng::Rng;

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
        HalfTrainer { model, adam, stats, steps, grad: vec![[0.0; PARAMS_PER_GAUSSIAN]; n] }
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
        let loss = match targets {
            [one] => renderer.loss_and_grad(&self.model, one, &mut self.grad),
            many => {
                let l = renderer.loss_and_grad_batch(&self.model, many, &mut self.grad);
                let inv = 1.0 / many.len() as f32;
                self.grad.iter_mut().flatten().for_each(|g| *g *= inv);
                l * inv
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
