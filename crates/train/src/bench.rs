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
//!
//! With per-particle refinement (`refine`), every step is the one `reconstruct --refine` takes
//! once refinement is active: each image of the cycle is a particle with its own corrections
//! ([`ParticleRefinement`]); the step fills each image's CTF and its derivative in defocus
//! from the corrected parameters (a plain reconstruction fills the CTF alone; the plain
//! benchmark's CTFs are filled once), renders the corrected poses by
//! [`HalfTrainer::step_with_defocus`] and takes each image's Newton step
//! ([`ParticleRefinement::update`]). The rotations' lever arm (the model's mean square radius)
//! is read once, as a reconstruction reads it once per pass of thousands of images. The images' CTFs are the workload's
//! kind (300 kV, astigmatic, 0.8–2.5 µm) drawn from a stream of their own.

use crate::adam::{Adam, AdamConfig};
use crate::reconstruct::trainer::{HalfTrainer, ParticleRefinement, RefineConfig};
use cryosplat_core::ctf::{CtfGrid, CtfParams};
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_core::pose::Pose;
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
    /// Per-particle refinement in every step (`None`: the plain step).
    pub refine: Option<RefineConfig>,
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
            refine: None,
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
    /// What each step refined (`None`: the plain step).
    pub refine: Option<RefineConfig>,
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
    if let Some(rc) = &c.refine {
        let mut trainer = HalfTrainer::new(model, AdamConfig::default());
        trainer.set_symmetry(expansion);
        let (secs, _) = time_refining_steps(c, rc, &mut trainer, &mut renderer, &poses, &images, &mut rng);
        return Ok(result(c, unit, secs));
    }
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

/// The timed runs of the refining step (see the module docs): image `i` of the cycle is
/// particle `i`, whose corrections persist across steps. Returns the seconds of each run and
/// the corrections at the end.
fn time_refining_steps(
    c: &BenchConfig,
    rc: &RefineConfig,
    trainer: &mut HalfTrainer,
    renderer: &mut Renderer,
    poses: &[Pose],
    images: &[Vec<f32>],
    rng: &mut Rng,
) -> (Vec<f64>, ParticleRefinement) {
    let (d, apix) = (c.box_px, 1.0);
    let cycle = poses.len();
    // The recorded CTFs: the workload's kind.
    let recorded_ctfs: Vec<CtfParams> = (0..cycle).map(|_| workload::ctf_params(rng)).collect();
    let grid = CtfGrid::new(d, apix);
    let mut refine = ParticleRefinement::new(RefineConfig { start_epoch: 0, ..rc.clone() }, cycle);
    let (mut ctfs, mut dctfs) = (vec![vec![0.0f32; grid.len()]; c.batch], vec![vec![0.0f32; grid.len()]; c.batch]);
    let mut batch_poses = vec![Pose::default(); c.batch];
    let mut ids = vec![0usize; c.batch];
    let mut k = 0usize;
    let secs = time_steps(c, || {
        for j in 0..c.batch {
            let i = (k + j) % cycle;
            ids[j] = i;
            batch_poses[j] = refine.pose(i, &poses[i]);
            grid.fill_rfft_with_ddefocus(&refine.ctf(i, &recorded_ctfs[i]), &mut ctfs[j], &mut dctfs[j]);
        }
        k += c.batch;
        let targets: Vec<ImageTarget> =
            (0..c.batch).map(|j| ImageTarget { image: &images[ids[j]], ctf_rfft: &ctfs[j], pose: &batch_poses[j], apix }).collect();
        let dctf: Vec<&[f32]> = dctfs.iter().map(|v| &v[..]).collect();
        trainer.step_with_defocus(renderer, &targets, &dctf, 1e-4, false);
        // The workload's images are white noise of unit variance.
        let model = &trainer.model;
        let radius2_a2 = refine.lever_arm_a2(|| model.mean_square_radius_a2(d, apix));
        for (&i, st) in ids.iter().zip(renderer.last_stats()) {
            refine.update(i, &poses[i], st, d, 1.0, radius2_a2);
        }
    });
    (secs, refine)
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
        refine: c.refine.clone(),
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
        let e = run(&BenchConfig { sym: "X9".into(), ..cfg.clone() }).unwrap_err();
        assert!(e.contains("--sym"), "{e}");
        // With refinement, with and without a symmetry, one image per step and a minibatch.
        for (sym, batch) in [("C1", 1), ("C1", 3), ("C4", 2)] {
            let refine = RefineConfig {
                pose: true,
                shift: false,
                defocus: true,
                prior_rot_deg: 5.0,
                prior_shift_a: 3.0,
                prior_defocus_a: 1000.0,
                start_epoch: 1,
                estimate_prior: false,
            };
            let r = run(&BenchConfig { sym: sym.into(), batch, refine: Some(refine.clone()), ..cfg.clone() }).unwrap();
            assert_eq!((r.refine.as_ref(), r.batch, r.repeat_seconds.len()), (Some(&refine), batch, 2), "{sym}");
            assert!(r.images_per_s > 0.0);
        }
    }

    /// The refining step moves the refined corrections of every image it visited and leaves
    /// the others (and every unrefined correction) at zero.
    #[test]
    fn the_refining_step_refines() {
        let c = BenchConfig { box_px: 24, gaussians: 40, threads: 1, batch: 2, steps: 3, warmup: 1, repeats: 1, ..Default::default() };
        let rc = RefineConfig {
            pose: true,
            shift: true,
            defocus: false,
            prior_rot_deg: 5.0,
            prior_shift_a: 3.0,
            prior_defocus_a: 1000.0,
            start_epoch: 4,
            estimate_prior: false,
        };
        let mut rng = Rng::new(c.seed);
        let mut trainer = HalfTrainer::new(workload::model(c.gaussians, c.box_px, &mut rng), AdamConfig::default());
        let (poses, _, images) = workload::images(16, c.box_px, &mut rng);
        let mut renderer = Renderer::new(c.box_px, RenderOptions { n_sigma: c.n_sigma, threads: 1 });
        let (secs, refine) = time_refining_steps(&c, &rc, &mut trainer, &mut renderer, &poses, &images, &mut rng);
        assert_eq!(secs.len(), 1);
        // Four steps of two images: particles 0–7.
        for i in 0..16 {
            let (w, o, dz) = refine.correction(i);
            assert_eq!(dz, 0.0);
            assert_eq!(i < 8, w.iter().all(|v| *v != 0.0) && o.iter().all(|v| *v != 0.0), "particle {i}: {w:?} {o:?}");
        }
        assert_eq!(trainer.steps, 4);
    }
}
