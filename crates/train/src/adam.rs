//! Adam over a Gaussian model's raw parameters, and the learning-rate schedule.
//!
//! One learning rate serves every parameter type by default (the method's choice, in box
//! units); [`AdamConfig::lr_scale`] can scale it per parameter type. The schedule decays the
//! learning rate exponentially and continuously over the run, from `lr` at the first step to
//! `lr·decay` at the last (`decay = 0.1` by default: ×0.1 over the run).

use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};

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

/// Exponential learning-rate decay from `lr` to `lr·decay` over `total_steps`.
pub fn scheduled_lr(lr: f64, decay: f64, step: u64, total_steps: u64) -> f64 {
    if total_steps <= 1 {
        return lr;
    }
    let t = (step as f64 / (total_steps - 1) as f64).clamp(0.0, 1.0);
    lr * decay.powf(t)
}

/// Adam's moment estimates for every parameter, and its step count.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    pub config: AdamConfig,
    pub m: Vec<[f32; PARAMS_PER_GAUSSIAN]>,
    pub v: Vec<[f32; PARAMS_PER_GAUSSIAN]>,
    pub t: u64,
}

impl Adam {
    pub fn new(config: AdamConfig, n: usize) -> Self {
        Adam { config, m: vec![[0.0; PARAMS_PER_GAUSSIAN]; n], v: vec![[0.0; PARAMS_PER_GAUSSIAN]; n], t: 0 }
    }

    /// One update of `model` with gradient `grad` at learning rate `lr`. Non-finite gradient
    /// entries are treated as zero so that one bad value cannot destroy the model.
    pub fn step(&mut self, model: &mut GaussianModel, grad: &[[f32; PARAMS_PER_GAUSSIAN]], lr: f64) {
        assert_eq!(model.len(), grad.len());
        assert_eq!(model.len(), self.m.len());
        self.t += 1;
        let c = &self.config;
        let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        let step = (lr * bc2.sqrt() / bc1) as f32;
        let eps = (c.eps * bc2.sqrt()) as f32;
        let scale = c.lr_scale;
        for (((p, g), m), v) in model.params.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
            for k in 0..PARAMS_PER_GAUSSIAN {
                let gk = if g[k].is_finite() { g[k] } else { 0.0 };
                m[k] = b1 * m[k] + (1.0 - b1) * gk;
                v[k] = b2 * v[k] + (1.0 - b2) * gk * gk;
                p[k] -= step * scale[k] * m[k] / (v[k].sqrt() + eps);
            }
        }
    }

    /// Keep only the moments of the Gaussians listed in `keep` (in that order), and append
    /// zeroed moments for `added` new Gaussians (used by pruning and densification).
    pub fn remap(&mut self, keep: &[usize], added: usize) {
        self.m = keep.iter().map(|&i| self.m[i]).chain(std::iter::repeat([0.0; PARAMS_PER_GAUSSIAN]).take(added)).collect();
        self.v = keep.iter().map(|&i| self.v[i]).chain(std::iter::repeat([0.0; PARAMS_PER_GAUSSIAN]).take(added)).collect();
    }
}

#[cfg(test)]
mod tests {
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
}
