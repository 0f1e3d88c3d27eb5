//! Adam over a Gaussian model's raw parameters, and the learning-rate schedule.
//!
//! One learning rate serves every parameter type by default (the method's choice, in box
//! units); [`AdamConfig::lr_scale`] can scale it per parameter, and
//! [`AdamConfig::set_group_scale`] per parameter group ([`ParamGroup`]).
//!
//! # Parallel work
//!
//! One unit of parallel work is a contiguous range of Gaussians (one range per thread, at least
//! 1,024 rows): the update is elementwise, so every thread reads its rows' gradient, moments
//! and parameters, writes them back, and (with [`Adam::step_and_clear`]) zeroes its gradient
//! rows while they are in cache. Rows are processed in blocks of 64 so that the per-parameter
//! learning-rate scale becomes a flat pattern and the inner loop vectorises. The result does
//! not depend on the number of threads, bit for bit (tested).
//!
//! # Settings
//!
//! `β1 = 0.9`, `β2 = 0.999` (Adam's usual values). `ε = 1e-15`, as Gaussian splatting uses,
//! rather than Adam's usual 1e-8: gradients here are small (box units, losses of order 1e-3
//! per pixel) and many parameters see gradients of 1e-8 or less, where an ε of 1e-8 would
//! silently turn Adam into plain gradient descent with a tiny step for exactly the Gaussians
//! that rarely project into a bright region.
//!
//! The update is the bias-corrected one, written as
//! `p ← p − lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε·√(1−β2ᵗ))`, which equals
//! `p ← p − lr · m̂ / (√v̂ + ε)` with `m̂ = m/(1−β1ᵗ)`, `v̂ = v/(1−β2ᵗ)`.
//!
//! # Schedule
//!
//! What the method does: its learning rate starts at 1e-3 and is multiplied by 0.1 at each
//! epoch boundary (1e-3, 1e-4, …, 1e-7 over 5 epochs; the scheduler steps once per epoch).
//! [`LrSchedule::Step`] is that schedule with the factor `gamma` as an option.
//!
//! What `reconstruct` does by default: [`LrSchedule::Exponential`], a continuous decay per
//! optimiser step over the whole run, `lr(t) = lr·decay^(t/(T−1))` for step `t` of `T`, so the
//! first step uses `lr` and the last `lr·decay` (0.1 by default): a total decay of ×0.1 over
//! the run, not per epoch. The default was chosen on small simulated sets where the method's
//! schedule leaves the model under-trained; the comparison is in BENCHMARKS.md.

use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use rayon::prelude::*;

/// The parameter groups of a Gaussian (see `cryosplat_core::gaussian`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamGroup {
    /// Mean (3 values, box units).
    Mean,
    /// Raw scales (3 values).
    Scale,
    /// Raw quaternion (4 values).
    Rotation,
    /// Raw amplitude (1 value).
    Amplitude,
}

impl ParamGroup {
    /// The raw parameter indices of the group.
    pub fn range(self) -> std::ops::Range<usize> {
        use cryosplat_core::gaussian::{P_AMP, P_MEAN, P_QUAT, P_SCALE};
        match self {
            ParamGroup::Mean => P_MEAN..P_MEAN + 3,
            ParamGroup::Scale => P_SCALE..P_SCALE + 3,
            ParamGroup::Rotation => P_QUAT..P_QUAT + 4,
            ParamGroup::Amplitude => P_AMP..P_AMP + 1,
        }
    }
}

/// Adam settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Per-parameter multipliers of the learning rate (mean ×3, scales ×3, quaternion ×4,
    /// amplitude ×1); all 1 by default.
    pub lr_scale: [f32; PARAMS_PER_GAUSSIAN],
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-15, lr_scale: [1.0; PARAMS_PER_GAUSSIAN] }
    }
}

impl AdamConfig {
    /// Multiply the learning rate of one parameter group by `scale` (on top of `lr`).
    pub fn set_group_scale(&mut self, group: ParamGroup, scale: f32) {
        for k in group.range() {
            self.lr_scale[k] = scale;
        }
    }
}

/// How the learning rate falls during a run (module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// Continuous: from `lr` to `lr·decay` over the run.
    #[default]
    Exponential,
    /// The method's: `lr·gamma^e` during epoch `e` (0-based).
    Step,
}

impl LrSchedule {
    /// The rate at optimiser step `step` (0-based, counted over the run) of a run of `epochs`
    /// epochs of `steps_per_epoch` steps each; `decay` is the exponential schedule's total
    /// decay, `gamma` the step schedule's factor per epoch.
    pub fn lr(self, lr: f64, decay: f64, gamma: f64, step: u64, steps_per_epoch: u64, epochs: usize) -> f64 {
        match self {
            LrSchedule::Exponential => scheduled_lr(lr, decay, step, steps_per_epoch * epochs as u64),
            LrSchedule::Step => lr * gamma.powi((step / steps_per_epoch.max(1)) as i32),
        }
    }
}

/// Exponential learning-rate decay from `lr` to `lr·decay` over `total_steps`.
pub fn scheduled_lr(lr: f64, decay: f64, step: u64, total_steps: u64) -> f64 {
    if total_steps <= 1 {
        return lr;
    }
    let t = (step as f64 / (total_steps - 1) as f64).clamp(0.0, 1.0);
    lr * decay.powf(t)
}

/// Adam's moment estimates for every parameter, and its step count. Everything here is
/// the optimiser's state: saving `m`, `v` and `t` (see `checkpoint`) and restoring them
/// continues the optimisation exactly.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    pub config: AdamConfig,
    pub m: Vec<[f32; PARAMS_PER_GAUSSIAN]>,
    pub v: Vec<[f32; PARAMS_PER_GAUSSIAN]>,
    pub t: u64,
}

/// Rows per block of the update: the per-parameter scale becomes a flat pattern over a block,
/// so the inner loop runs over contiguous floats and vectorises.
const ROWS: usize = 64;

/// The constants of one Adam update.
struct UpdateK {
    b1: f32,
    b2: f32,
    eps: f32,
    /// `step · lr_scale[k]` repeated over `ROWS` rows.
    pattern: [f32; ROWS * PARAMS_PER_GAUSSIAN],
}

impl UpdateK {
    #[inline]
    fn rows(
        &self,
        p: &mut [[f32; PARAMS_PER_GAUSSIAN]],
        g: &[[f32; PARAMS_PER_GAUSSIAN]],
        m: &mut [[f32; PARAMS_PER_GAUSSIAN]],
        v: &mut [[f32; PARAMS_PER_GAUSSIAN]],
    ) {
        let (b1, b2, eps) = (self.b1, self.b2, self.eps);
        for (((p, g), m), v) in p.chunks_mut(ROWS).zip(g.chunks(ROWS)).zip(m.chunks_mut(ROWS)).zip(v.chunks_mut(ROWS)) {
            let (p, g, m, v) = (p.as_flattened_mut(), g.as_flattened(), m.as_flattened_mut(), v.as_flattened_mut());
            for i in 0..p.len() {
                let gk = if g[i].is_finite() { g[i] } else { 0.0 };
                m[i] = b1 * m[i] + (1.0 - b1) * gk;
                v[i] = b2 * v[i] + (1.0 - b2) * gk * gk;
                p[i] -= self.pattern[i] * m[i] / (v[i].sqrt() + eps);
            }
        }
    }
}

impl Adam {
    pub fn new(config: AdamConfig, n: usize) -> Self {
        Adam { config, m: vec![[0.0; PARAMS_PER_GAUSSIAN]; n], v: vec![[0.0; PARAMS_PER_GAUSSIAN]; n], t: 0 }
    }

    /// One update of `model` with gradient `grad` at learning rate `lr`. Non-finite gradient
    /// entries are treated as zero so that one bad value cannot destroy the model.
    pub fn step(&mut self, model: &mut GaussianModel, grad: &[[f32; PARAMS_PER_GAUSSIAN]], lr: f64) {
        let (k, per) = self.begin(model, grad.len(), lr);
        model
            .params
            .par_chunks_mut(per)
            .zip(grad.par_chunks(per))
            .zip(self.m.par_chunks_mut(per))
            .zip(self.v.par_chunks_mut(per))
            .for_each(|(((p, g), m), v)| k.rows(p, g, m, v));
    }

    /// [`Adam::step`], then `grad` set to zero by the same worker right after it is read
    /// (ready for the next step's accumulation, without a separate pass over memory).
    pub fn step_and_clear(&mut self, model: &mut GaussianModel, grad: &mut [[f32; PARAMS_PER_GAUSSIAN]], lr: f64) {
        let (k, per) = self.begin(model, grad.len(), lr);
        model
            .params
            .par_chunks_mut(per)
            .zip(grad.par_chunks_mut(per))
            .zip(self.m.par_chunks_mut(per))
            .zip(self.v.par_chunks_mut(per))
            .for_each(|(((p, g), m), v)| {
                k.rows(p, g, m, v);
                g.fill([0.0; PARAMS_PER_GAUSSIAN]);
            });
    }

    /// Advance the step count and return the update's constants and the rows per worker.
    fn begin(&mut self, model: &GaussianModel, grad_rows: usize, lr: f64) -> (UpdateK, usize) {
        assert_eq!(model.len(), grad_rows);
        assert_eq!(model.len(), self.m.len());
        self.t += 1;
        let c = &self.config;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        let step = (lr * bc2.sqrt() / bc1) as f32;
        let mut pattern = [0.0f32; ROWS * PARAMS_PER_GAUSSIAN];
        for (i, s) in pattern.iter_mut().enumerate() {
            *s = step * c.lr_scale[i % PARAMS_PER_GAUSSIAN];
        }
        let k = UpdateK { b1: c.beta1 as f32, b2: c.beta2 as f32, eps: (c.eps * bc2.sqrt()) as f32, pattern };
        // Elementwise, so splitting the rows across workers changes no bit of the result.
        let per = (ROWS * 16).max(model.len().div_ceil(rayon::current_num_threads().max(1)).next_multiple_of(ROWS));
        (k, per)
    }

    /// Number of Gaussians the state covers.
    pub fn len(&self) -> usize {
        self.m.len()
    }

    pub fn is_empty(&self) -> bool {
        self.m.is_empty()
    }

    /// Keep only the moments of the Gaussians listed in `keep` (in that order, indices may
    /// repeat), and append zeroed moments for `added` new Gaussians (used by pruning and
    /// densification; the model must be remapped the same way).
    pub fn remap(&mut self, keep: &[usize], added: usize) {
        self.m = keep.iter().map(|&i| self.m[i]).chain(std::iter::repeat_n([0.0; PARAMS_PER_GAUSSIAN], added)).collect();
        self.v = keep.iter().map(|&i| self.v[i]).chain(std::iter::repeat_n([0.0; PARAMS_PER_GAUSSIAN], added)).collect();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn step_schedule_is_the_method_s() {
        let at = |step| LrSchedule::Step.lr(1e-3, 0.1, 0.1, step, 100, 5);
        for (step, want) in [(0, 1e-3), (99, 1e-3), (100, 1e-4), (250, 1e-5), (499, 1e-7)] {
            assert!((at(step) / want - 1.0).abs() < 1e-12, "step {step}: {}", at(step));
        }
        let e = |step| LrSchedule::Exponential.lr(1e-3, 0.1, 0.5, step, 100, 5);
        assert_eq!(e(0), 1e-3);
        assert!((e(499) / 1e-4 - 1.0).abs() < 1e-12);
        assert_eq!(e(250), scheduled_lr(1e-3, 0.1, 250, 500));
    }

    use super::*;

    #[test]
    fn first_step_is_lr_times_sign() {
        // With bias correction, Adam's first step moves every parameter by lr·sign(g).
        let mut model = GaussianModel { params: vec![[0.0; PARAMS_PER_GAUSSIAN]; 2] };
        let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; 2];
        grad[0][0] = 3.0;
        grad[1][10] = -0.25;
        let mut adam = Adam::new(AdamConfig::default(), 2);
        adam.step(&mut model, &grad, 0.01);
        assert!((model.params[0][0] + 0.01).abs() < 1e-7);
        assert!((model.params[1][10] - 0.01).abs() < 1e-7);
        assert_eq!(model.params[0][1], 0.0);
    }

    #[test]
    fn second_step_matches_a_hand_computation() {
        // g1 = 2, g2 = -1 on one parameter, lr 0.1, β1 0.9, β2 0.999, ε 1e-8.
        // m1 = 0.2, v1 = 0.004; m2 = 0.18 - 0.1 = 0.08, v2 = 0.003996 + 0.001 = 0.004996.
        // m̂2 = 0.08/0.19, v̂2 = 0.004996/0.001999; step 2 = 0.1·m̂2/(√v̂2 + ε).
        let cfg = AdamConfig { eps: 1e-8, ..Default::default() };
        let mut model = GaussianModel { params: vec![[0.0; PARAMS_PER_GAUSSIAN]] };
        let mut adam = Adam::new(cfg, 1);
        let mut g = vec![[0.0f32; PARAMS_PER_GAUSSIAN]];
        g[0][4] = 2.0;
        adam.step(&mut model, &g, 0.1);
        g[0][4] = -1.0;
        adam.step(&mut model, &g, 0.1);
        let m_hat: f64 = 0.08 / 0.19;
        let v_hat: f64 = 0.004996 / (1.0 - 0.999f64 * 0.999);
        let expected = -0.1 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
        assert!((model.params[0][4] as f64 - expected).abs() < 1e-6, "{} vs {expected}", model.params[0][4]);
        assert_eq!(adam.t, 2);
    }

    #[test]
    fn group_scales_and_remap() {
        let mut cfg = AdamConfig::default();
        cfg.set_group_scale(ParamGroup::Rotation, 0.5);
        cfg.set_group_scale(ParamGroup::Amplitude, 2.0);
        assert_eq!(cfg.lr_scale, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 2.0]);
        let mut model = GaussianModel { params: vec![[0.0; PARAMS_PER_GAUSSIAN]; 3] };
        let mut adam = Adam::new(cfg, 3);
        adam.step(&mut model, &[[1.0f32; PARAMS_PER_GAUSSIAN]; 3], 0.01);
        // (1 − β2 in f32 is 1.0000467e-3, hence the 1e-6 tolerance.)
        assert!((model.params[0][0] + 0.01).abs() < 1e-6);
        assert!((model.params[0][7] + 0.005).abs() < 1e-6);
        assert!((model.params[2][10] + 0.02).abs() < 1e-6, "{}", model.params[2][10]);
        adam.m[2][0] = 5.0;
        adam.remap(&[2, 0, 2], 2);
        assert_eq!(adam.len(), 5);
        assert_eq!(adam.m[0][0], 5.0);
        assert_eq!(adam.m[2][0], 5.0);
        assert_eq!(adam.m[3], [0.0; PARAMS_PER_GAUSSIAN]);
        assert_eq!(adam.v[4], [0.0; PARAMS_PER_GAUSSIAN]);
        let json = serde_json::to_string(&adam).unwrap();
        assert_eq!(serde_json::from_str::<Adam>(&json).unwrap(), adam);
    }

    #[test]
    fn converges_on_a_quadratic() {
        // Minimise Σ (p − target)² over all 11 parameters of 3 Gaussians.
        let target: Vec<[f32; PARAMS_PER_GAUSSIAN]> = (0..3).map(|g| std::array::from_fn(|k| (g * 11 + k) as f32 * 0.1 - 1.0)).collect();
        let mut model = GaussianModel { params: vec![[0.0; PARAMS_PER_GAUSSIAN]; 3] };
        let mut adam = Adam::new(AdamConfig::default(), 3);
        for step in 0..3000 {
            let grad: Vec<[f32; PARAMS_PER_GAUSSIAN]> =
                model.params.iter().zip(&target).map(|(p, t)| std::array::from_fn(|k| 2.0 * (p[k] - t[k]))).collect();
            adam.step(&mut model, &grad, scheduled_lr(0.05, 0.1, step, 3000));
        }
        for (p, t) in model.params.iter().zip(&target) {
            for k in 0..PARAMS_PER_GAUSSIAN {
                assert!((p[k] - t[k]).abs() < 1e-3, "{} vs {}", p[k], t[k]);
            }
        }
    }

    #[test]
    fn schedule_endpoints() {
        assert_eq!(scheduled_lr(1e-3, 0.1, 0, 100), 1e-3);
        assert!((scheduled_lr(1e-3, 0.1, 99, 100) - 1e-4).abs() < 1e-12);
        assert!((scheduled_lr(1e-3, 0.1, 33, 67) - 1e-3 * 0.1f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn non_finite_gradients_are_ignored() {
        let mut model = GaussianModel { params: vec![[1.0; PARAMS_PER_GAUSSIAN]] };
        let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]];
        grad[0][2] = f32::NAN;
        grad[0][3] = f32::INFINITY;
        let mut adam = Adam::new(AdamConfig::default(), 1);
        adam.step(&mut model, &grad, 0.1);
        assert!(model.params[0].iter().all(|v| *v == 1.0));
    }
    #[test]
    fn threaded_blocks_equal_a_plain_loop_bitwise() {
        // 5,003 rows (not a multiple of the block or thread split), non-finite gradients,
        // per-parameter scales, on 1 and 3 threads, against the textbook row-by-row loop.
        let n = 5003;
        let mut cfg = AdamConfig::default();
        cfg.set_group_scale(ParamGroup::Scale, 0.3);
        let mut rng = cryosplat_core::rng::Rng::new(11);
        let model0 = GaussianModel { params: (0..n).map(|_| std::array::from_fn(|_| rng.normal() as f32)).collect() };
        let grads: Vec<Vec<[f32; PARAMS_PER_GAUSSIAN]>> =
            (0..3).map(|_| (0..n).map(|_| std::array::from_fn(|_| (rng.normal() * 1e-4) as f32)).collect()).collect();
        let mut grads = grads;
        grads[1][17][3] = f32::NAN;
        grads[2][4000][10] = f32::INFINITY;
        let mut plain = model0.clone();
        let (mut m, mut v) = (vec![[0.0f32; PARAMS_PER_GAUSSIAN]; n], vec![[0.0f32; PARAMS_PER_GAUSSIAN]; n]);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            let bc1 = 1.0 - cfg.beta1.powi(t);
            let bc2 = 1.0 - cfg.beta2.powi(t);
            let step = (1e-3 * bc2.sqrt() / bc1) as f32;
            let eps = (cfg.eps * bc2.sqrt()) as f32;
            let (b1, b2) = (cfg.beta1 as f32, cfg.beta2 as f32);
            for i in 0..n {
                for k in 0..PARAMS_PER_GAUSSIAN {
                    let gk = if g[i][k].is_finite() { g[i][k] } else { 0.0 };
                    m[i][k] = b1 * m[i][k] + (1.0 - b1) * gk;
                    v[i][k] = b2 * v[i][k] + (1.0 - b2) * gk * gk;
                    plain.params[i][k] -= (step * cfg.lr_scale[k]) * m[i][k] / (v[i][k].sqrt() + eps);
                }
            }
        }
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut model = model0.clone();
            let mut adam = Adam::new(cfg.clone(), n);
            pool.install(|| {
                for g in &grads {
                    adam.step(&mut model, g, 1e-3);
                }
            });
            assert_eq!(model.params, plain.params, "{threads} threads");
            assert_eq!((adam.m.clone(), adam.v.clone()), (m.clone(), v.clone()));
            // The clearing variant: the same update, and the gradient left at zero.
            let mut model = model0.clone();
            let mut adam = Adam::new(cfg.clone(), n);
            pool.install(|| {
                for g in &grads {
                    let mut g = g.clone();
                    adam.step_and_clear(&mut model, &mut g, 1e-3);
                    assert!(g.iter().flatten().all(|&x| x == 0.0));
                }
            });
            assert_eq!(model.params, plain.params, "{threads} threads, clearing");
        }
    }
}
