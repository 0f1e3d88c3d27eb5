//! The fixed benchmark workload of `cryosplat bench`: full training steps (forward splat,
//! CTF by FFT, loss, adjoint, backward, Adam update) per second.
//!
//! Workload: `gaussians` random anisotropic Gaussians whose projected standard deviations are
//! about 1.5 px (scales 1.05–1.95 px along their axes), placed uniformly inside the central
//! sphere of radius 0.35 box, amplitudes 0.5–1.5; random poses over SO(3) with random origin
//! shifts of up to 3 px; a different astigmatic CTF per image (300 kV, Cs 2.7 mm, Q0 0.1,
//! defocus 0.8–2.5 µm); random target images. Everything is seeded, so runs are comparable.

use crate::adam::{Adam, AdamConfig};
use cryosplat_core::ctf::{CtfGrid, CtfParams};
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_core::pose::Pose;
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::random_rotation;
use cryosplat_core::splat::{ImageTarget, SplatOptions, Splatter};
use std::time::Instant;

/// Benchmark settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchConfig {
    pub box_px: usize,
    pub gaussians: usize,
    pub threads: usize,
    /// Images per optimiser step (1 = the method's batch of one, parallel over Gaussians).
    pub batch: usize,
    /// Measured images (after `warmup` images).
    pub images: usize,
    pub warmup: usize,
    pub n_sigma: f32,
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig { box_px: 128, gaussians: 10_000, threads: 2, batch: 1, images: 400, warmup: 40, n_sigma: cryosplat_core::splat::DEFAULT_N_SIGMA, seed: 7 }
    }
}

/// Benchmark result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    pub images_per_s: f64,
    #[serde(rename = "box")]
    pub box_px: usize,
    pub gaussians: usize,
    pub threads: usize,
    pub batch: usize,
    pub images: usize,
    pub seconds: f64,
    pub n_sigma: f32,
}

/// The benchmark's random model (box units).
pub fn bench_model(n: usize, d: usize, rng: &mut Rng) -> GaussianModel {
    let px = 1.0 / d as f64;
    let params = (0..n)
        .map(|_| {
            let mut p;
            loop {
                p = [rng.uniform_range(-0.35, 0.35), rng.uniform_range(-0.35, 0.35), rng.uniform_range(-0.35, 0.35)];
                if p[0] * p[0] + p[1] * p[1] + p[2] * p[2] <= 0.35 * 0.35 {
                    break;
                }
            }
            let s = [rng.uniform_range(1.05, 1.95) * px, rng.uniform_range(1.05, 1.95) * px, rng.uniform_range(1.05, 1.95) * px];
            let q = rng.unit_quaternion();
            GaussianModel::raw_from_physical(
                [p[0] as f32, p[1] as f32, p[2] as f32],
                [s[0] as f32, s[1] as f32, s[2] as f32],
                [q[0] as f32, q[1] as f32, q[2] as f32, q[3] as f32],
                rng.uniform_range(0.5, 1.5) as f32,
            )
        })
        .collect();
    GaussianModel { params }
}

/// Run the benchmark in a pool of `config.threads` threads.
pub fn run(config: &BenchConfig) -> Result<BenchResult, String> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(config.threads.max(1)).build().map_err(|e| e.to_string())?;
    pool.install(|| run_in_pool(config))
}

fn run_in_pool(c: &BenchConfig) -> Result<BenchResult, String> {
    let d = c.box_px;
    if d < 8 || d % 2 != 0 {
        return Err(format!("box {d} px: expected an even size of at least 8"));
    }
    if c.gaussians == 0 || c.batch == 0 || c.images == 0 {
        return Err("gaussians, batch and images must be positive".into());
    }
    let apix = 1.0;
    let mut rng = Rng::new(c.seed);
    let mut model = bench_model(c.gaussians, d, &mut rng);
    // A pool of distinct images, poses and CTFs, cycled through.
    let pool_n = 16.max(c.batch);
    let grid = CtfGrid::new(d, apix);
    let poses: Vec<Pose> = (0..pool_n)
        .map(|_| Pose { rot: random_rotation(&mut rng), origin_a: [rng.uniform_range(-3.0, 3.0), rng.uniform_range(-3.0, 3.0)] })
        .collect();
    let ctfs: Vec<Vec<f32>> = (0..pool_n)
        .map(|_| {
            let df = rng.uniform_range(8000.0, 25000.0);
            let p = CtfParams {
                voltage_kv: 300.0,
                cs_mm: 2.7,
                amp_contrast: 0.1,
                defocus_u_a: df + 200.0,
                defocus_v_a: df - 200.0,
                defocus_angle_deg: rng.uniform_range(-180.0, 180.0),
                phase_shift_deg: 0.0,
                bfactor_a2: 0.0,
                scale: 1.0,
            };
            let mut out = vec![0.0f32; grid.len()];
            grid.fill_rfft(&p, &mut out);
            out
        })
        .collect();
    let images: Vec<Vec<f32>> = (0..pool_n).map(|_| (0..d * d).map(|_| rng.normal() as f32).collect()).collect();
    let mut splatter = Splatter::new(d, SplatOptions { n_sigma: c.n_sigma }, c.threads.max(1));
    let mut adam = Adam::new(AdamConfig::default(), model.len());
    let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    let mut k = 0usize;
    let mut step = |model: &mut GaussianModel, adam: &mut Adam| {
        grad.iter_mut().for_each(|g| *g = [0.0; PARAMS_PER_GAUSSIAN]);
        if c.batch == 1 {
            let i = k % pool_n;
            let t = ImageTarget { image: &images[i], ctf: Some(&ctfs[i]), pose: &poses[i], apix };
            splatter.loss_and_grad(model, &t, &mut grad);
        } else {
            let targets: Vec<ImageTarget> = (0..c.batch)
                .map(|j| {
                    let i = (k + j) % pool_n;
                    ImageTarget { image: &images[i], ctf: Some(&ctfs[i]), pose: &poses[i], apix }
                })
                .collect();
            splatter.loss_and_grad_batch(model, &targets, &mut grad);
        }
        k += c.batch;
        adam.step(model, &grad, 1e-4);
    };
    let warm_steps = c.warmup.div_ceil(c.batch);
    for _ in 0..warm_steps {
        step(&mut model, &mut adam);
    }
    let steps = c.images.div_ceil(c.batch);
    let t0 = Instant::now();
    for _ in 0..steps {
        step(&mut model, &mut adam);
    }
    let secs = t0.elapsed().as_secs_f64();
    let n_images = steps * c.batch;
    Ok(BenchResult {
        images_per_s: n_images as f64 / secs,
        box_px: d,
        gaussians: c.gaussians,
        threads: c.threads,
        batch: c.batch,
        images: n_images,
        seconds: secs,
        n_sigma: c.n_sigma,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_reports() {
        let r = run(&BenchConfig { box_px: 32, gaussians: 50, threads: 2, images: 8, warmup: 2, ..Default::default() }).unwrap();
        assert_eq!(r.images, 8);
        assert!(r.images_per_s > 0.0);
        let r = run(&BenchConfig { box_px: 32, gaussians: 50, threads: 1, batch: 4, images: 8, warmup: 2, ..Default::default() }).unwrap();
        assert_eq!(r.images, 8);
        assert!(run(&BenchConfig { box_px: 31, ..Default::default() }).is_err());
    }
}
