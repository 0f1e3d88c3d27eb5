//! The fixed benchmark workload of `cryosplat bench`: full training steps per second — forward
//! splat, CTF by real FFT, loss, adjoint, backward to every raw parameter, Adam update — with
//! the renderer of [`cryosplat_core::render`].
//!
//! Workload (everything seeded, so runs are comparable): the model and images of
//! [`cryosplat_core::render::workload`], `gaussians` Gaussians and a cycle of 16 (or `batch`,
//! if larger) images. One step renders `batch` images (1: the method's batch of one,
//! Gaussians split across threads; more: images split across threads), then applies Adam.
//! The timing is repeated `repeats` times after a warm-up and the best run is reported, since
//! other work on the machine can only slow a run down.
//!
//! With a point group (`sym` other than C1), the model is the asymmetric unit of
//! `gaussians / |G|` Gaussians (rounded up) and every step goes through the reconstruction's
//! [`HalfTrainer::step`]: expand the unit into its `|G|` copies, render them, fold the gradient
//! back, Adam on the unit. The rendered total is then about `gaussians`, so the figure compares
//! with a C1 run of the same total size.

use crate::adam::{Adam, AdamConfig};
use crate::reconstruct::trainer::HalfTrainer;
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_core::render::expand::SymmetryExpansion;
use cryosplat_core::render::workload;
use cryosplat_core::render::{ImageTarget, RenderOptions, Renderer, DEFAULT_N_SIGMA};
use cryosplat_core::rng::Rng;
use cryosplat_core::symmetry::PointGroup;
use std::time::Instant;

/// Benchmark settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchConfig {
    pub box_px: usize,
    pub gaussians: usize,
    pub threads: usize,
    /// Images per optimiser step (1 = the method's batch of one, parallel over Gaussians).
    pub batch: usize,
    /// Timed optimiser steps per repeat.
    pub steps: usize,
    /// Untimed steps before the first repeat.
    pub warmup: usize,
    /// Timed repeats; the best is reported.
    pub repeats: usize,
    pub n_sigma: f32,
    pub seed: u64,
    /// Point group of the model (RELION's names; C1: no symmetry).
    pub sym: String,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            box_px: 128,
            gaussians: 10_000,
            threads: 2,
            batch: 1,
            steps: 300,
            warmup: 20,
            repeats: 3,
            n_sigma: DEFAULT_N_SIGMA,
            seed: 7,
            sym: "C1".into(),
        }
    }
}

/// Benchmark result (the best repeat).
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    pub images_per_s: f64,
    pub steps_per_s: f64,
    #[serde(rename = "box")]
    pub box_px: usize,
    pub gaussians: usize,
    pub threads: usize,
    pub batch: usize,
    pub steps: usize,
    /// Seconds of the best repeat, and of every repeat in order.
    pub seconds: f64,
    pub repeat_seconds: Vec<f64>,
    pub n_sigma: f32,
    /// The point group and the Gaussians of its asymmetric unit (`gaussians` with C1).
    pub sym: String,
    pub unit_gaussians: usize,
}

/// Run the benchmark in a rayon pool of `config.threads` threads.
pub fn run(config: &BenchConfig) -> Result<BenchResult, String> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(config.threads.max(1)).build().map_err(|e| e.to_string())?;
    pool.install(|| run_in_pool(config))
}

fn run_in_pool(c: &BenchConfig) -> Result<BenchResult, String> {
    let d = c.box_px;
    if d < 8 {
        return Err(format!("box {d} px: expected at least 8"));
    }
    if c.gaussians == 0 || c.batch == 0 || c.steps == 0 || c.repeats == 0 || c.threads == 0 {
        return Err("gaussians, threads, batch, steps and repeats must be positive".into());
    }
    if !(c.n_sigma > 0.0 && c.n_sigma.is_finite()) {
        return Err(format!("footprint of {} σ: expected a positive number", c.n_sigma));
    }
    let group = PointGroup::parse(&c.sym).map_err(|e| format!("--sym: {e}"))?;
    let expansion = if group.is_trivial() { None } else { Some(SymmetryExpansion::new(&group)) };
    let unit = expansion.as_ref().map_or(c.gaussians, |e| c.gaussians.div_ceil(e.order()));
    let apix = 1.0;
    let mut rng = Rng::new(c.seed);
    let mut model = workload::model(unit, d, &mut rng);
    let cycle = 16.max(c.batch);
    let (poses, ctfs, images) = workload::images(cycle, d, &mut rng);
    let targets: Vec<ImageTarget> =
        (0..cycle).map(|i| ImageTarget { image: &images[i], ctf_rfft: &ctfs[i], pose: &poses[i], apix }).collect();
    let mut renderer = Renderer::new(d, RenderOptions { n_sigma: c.n_sigma, threads: c.threads });
    if let Some(e) = expansion {
        let mut trainer = HalfTrainer::new(model, AdamConfig::default());
        trainer.set_symmetry(Some(e));
        let mut k = 0usize;
        let mut batch: Vec<ImageTarget> = Vec::with_capacity(c.batch);
        let secs = time_steps(c, || {
            batch.clear();
            batch.extend((0..c.batch).map(|j| targets[(k + j) % cycle]));
            trainer.step(&mut renderer, &batch, 1e-4, false);
            k += c.batch;
        });
        return Ok(result(c, unit, secs));
    }
    let mut adam = Adam::new(AdamConfig::default(), model.len());
    let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    let mut batch: Vec<ImageTarget> = Vec::with_capacity(c.batch);
    let mut k = 0usize;
    let mut step = |model: &mut GaussianModel, adam: &mut Adam| {
        if c.batch == 1 {
            renderer.loss_and_grad(model, &targets[k % cycle], &mut grad);
        } else {
            batch.clear();
            batch.extend((0..c.batch).map(|j| targets[(k + j) % cycle]));
            renderer.loss_and_grad_batch(model, &batch, &mut grad);
        }
        k += c.batch;
        // Clears the gradient for the next step in the same pass.
        adam.step_and_clear(model, &mut grad, 1e-4);
    };
    let secs = time_steps(c, || step(&mut model, &mut adam));
    Ok(result(c, unit, secs))
}

/// The warm-up, then `repeats` timed runs of `steps` steps: the seconds of each run.
fn time_steps(c: &BenchConfig, mut step: impl FnMut()) -> Vec<f64> {
    for _ in 0..c.warmup {
        step();
    }
    let mut secs = Vec::with_capacity(c.repeats);
    for _ in 0..c.repeats {
        let t0 = Instant::now();
        for _ in 0..c.steps {
            step();
        }
        secs.push(t0.elapsed().as_secs_f64());
    }
    secs
}

fn result(c: &BenchConfig, unit: usize, secs: Vec<f64>) -> BenchResult {
    let best = secs.iter().copied().fold(f64::INFINITY, f64::min);
    BenchResult {
        images_per_s: (c.steps * c.batch) as f64 / best,
        steps_per_s: c.steps as f64 / best,
        box_px: c.box_px,
        gaussians: c.gaussians,
        threads: c.threads,
        batch: c.batch,
        steps: c.steps,
        seconds: best,
        repeat_seconds: secs,
        n_sigma: c.n_sigma,
        sym: c.sym.clone(),
        unit_gaussians: unit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_reports() {
        let cfg = BenchConfig { box_px: 32, gaussians: 50, threads: 2, steps: 4, warmup: 1, repeats: 2, ..Default::default() };
        let r = run(&cfg).unwrap();
        assert_eq!((r.steps, r.batch, r.repeat_seconds.len()), (4, 1, 2));
        assert!(r.images_per_s > 0.0 && r.seconds == r.repeat_seconds.iter().copied().fold(f64::INFINITY, f64::min));
        let r = run(&BenchConfig { batch: 3, threads: 1, ..cfg.clone() }).unwrap();
        assert!((r.images_per_s / r.steps_per_s - 3.0).abs() < 1e-9);
        assert!(run(&BenchConfig { box_px: 4, ..cfg.clone() }).is_err());
        assert!(run(&BenchConfig { steps: 0, ..cfg.clone() }).is_err());
        let r = run(&BenchConfig { sym: "C4".into(), gaussians: 50, ..cfg.clone() }).unwrap();
        assert_eq!((r.sym.as_str(), r.unit_gaussians, r.gaussians), ("C4", 13, 50));
        assert_eq!(run(&cfg).unwrap().unit_gaussians, 50);
        // Groups with mirrors are expanded too (12 copies of D3h).
        let r = run(&BenchConfig { sym: "D3h".into(), gaussians: 48, ..cfg.clone() }).unwrap();
        assert_eq!((r.sym.as_str(), r.unit_gaussians), ("D3h", 4));
        let e = run(&BenchConfig { sym: "X9".into(), ..cfg }).unwrap_err();
        assert!(e.contains("--sym"), "{e}");
    }
}
