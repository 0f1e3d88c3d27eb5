//! Per-particle refinement against simulate's recorded errors: a noise-free set simulated with
//! 2° rms rotation, 0.5 px rms shift and 300 Å rms defocus errors in `particles.star`, refined
//! from those records with the true model by `ParticleRefinement` and the renderer's
//! gradients, comes much closer to `particles_true.star`. This ties the simulator's
//! conventions (images, origins, defocus, recorded errors) to the renderer's and the
//! refinement's.

mod common;

use common::toy_atoms;
use cryosplat_core::ctf::CtfGrid;
use cryosplat_core::gaussian::PARAMS_PER_GAUSSIAN;
use cryosplat_core::potential::Centering;
use cryosplat_core::render::{ImageTarget, RenderOptions, Renderer};
use cryosplat_core::rotation::angle_between_deg;
use cryosplat_train::dataset::{LoadOptions, ParticleSet};
use cryosplat_train::progress::NoProgress;
use cryosplat_train::reconstruct::trainer::{ParticleRefinement, RefineConfig};
use cryosplat_train::simulate::{simulate, SimulateConfig, Source};

/// Simulate `n` particles at `snr` with recorded errors, refine each from its record with the
/// true model, and return the rms errors (angle °, shift px per axis, defocus Å) of the records
/// and of the refined values against the truth.
fn refine_simulated(snr: f64, n: usize) -> ((f64, f64, f64), (f64, f64, f64)) {
    let dir = tempfile::tempdir().unwrap();
    let (d, apix) = (32usize, 2.0);
    let atoms = toy_atoms(40, 3);
    let cfg = SimulateConfig {
        box_px: d,
        apix,
        count: n,
        snr,
        max_shift_px: 1.0,
        seed: 21,
        centering: Centering::None,
        pose_error_deg: 2.0,
        shift_error_px: 0.5,
        defocus_error_a: 300.0,
        ..Default::default()
    };
    simulate(&Source::Atoms { atoms: atoms.clone(), label: "toy".into() }, &cfg, dir.path(), &NoProgress).unwrap();
    let recorded = ParticleSet::load(&dir.path().join("particles.star"), &LoadOptions::default()).unwrap();
    let truth = ParticleSet::load(&dir.path().join("particles_true.star"), &LoadOptions::default()).unwrap();
    // The true model: the potential's Gaussians widened by the simulator's anti-aliasing.
    let model = common::true_model(&atoms, Centering::None, cfg.antialias_sigma_px, d, apix);
    let mut r = Renderer::new(d, RenderOptions { n_sigma: 4.0, threads: 1 });
    let grid = CtfGrid::new(d, apix);
    let w = d / 2 + 1;
    let (mut h, mut dh) = (vec![0.0f32; d * w], vec![0.0f32; d * w]);
    let mut images: Vec<Vec<f32>> = (0..n)
        .map(|k| {
            let mut img = vec![0.0f32; d * d];
            recorded.read_image(k, &mut img).unwrap();
            img
        })
        .collect();
    // The images' units against the renderer's, from particle 0 at its true parameters; the
    // prediction must match the image (a wrong origin sign or CTF would not).
    grid.fill_rfft(&truth.particles[0].ctf, &mut h);
    let mut pred = vec![0.0f32; d * d];
    r.render(&model, &truth.particles[0].pose, apix, Some(&h), &mut pred);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>();
    let corr = dot(&images[0], &pred) / (dot(&images[0], &images[0]) * dot(&pred, &pred)).sqrt();
    if snr.is_infinite() {
        assert!(corr > 0.99, "the true model predicts image 1 with correlation {corr}");
    }
    let scale = (dot(&pred, &pred) / dot(&images[0], &pred)) as f32;
    images.iter_mut().flatten().for_each(|v| *v *= scale);
    // The noise variance in the scaled units (a nominal small one without noise).
    let meta = common::json(&dir.path().join("meta.json"));
    let sigma = meta["noise_sigma"].as_f64().unwrap() * scale as f64;
    let signal = images.iter().flatten().map(|&v| v as f64 * v as f64).sum::<f64>() / (n * d * d) as f64;
    let noise_var = (sigma * sigma).max(1e-3 * signal);

    let rc = RefineConfig {
        pose: true,
        shift: true,
        defocus: true,
        prior_rot_deg: 5.0,
        prior_shift_a: 3.0,
        prior_defocus_a: 1000.0,
        start_epoch: 0,
        estimate_prior: false,
    };
    let mut p = ParticleRefinement::new(rc, n);
    let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    let radius2_a2 = model.mean_square_radius_a2(d, apix);
    for (k, img) in images.iter().enumerate() {
        let rec = &recorded.particles[k];
        for _ in 0..40 {
            let (pose, ctf) = (p.pose(k, &rec.pose), p.ctf(k, &rec.ctf));
            grid.fill_rfft_with_ddefocus(&ctf, &mut h, &mut dh);
            r.loss_and_grad_defocus(&model, &ImageTarget { image: img, ctf_rfft: &h, pose: &pose, apix }, &dh, &mut grad);
            let st = r.last_stats()[0];
            p.update(k, &rec.pose, &st, d, noise_var, radius2_a2);
        }
    }
    // rms errors (angle °, shift px per axis, defocus Å) of the records and of the refined values.
    let rms = |refined: bool| {
        let (mut a2, mut o2, mut z2) = (0.0, 0.0, 0.0);
        for k in 0..n {
            let (rec, t) = (&recorded.particles[k], &truth.particles[k]);
            let (pose, ctf) = if refined { (p.pose(k, &rec.pose), p.ctf(k, &rec.ctf)) } else { (rec.pose, rec.ctf) };
            a2 += angle_between_deg(&pose.rot, &t.pose.rot).powi(2);
            o2 += ((pose.origin_a[0] - t.pose.origin_a[0]).powi(2) + (pose.origin_a[1] - t.pose.origin_a[1]).powi(2)) / (apix * apix);
            z2 += (ctf.defocus_u_a - t.ctf.defocus_u_a).powi(2);
        }
        ((a2 / n as f64).sqrt(), (o2 / (2 * n) as f64).sqrt(), (z2 / n as f64).sqrt())
    };
    (rms(false), rms(true))
}

#[test]
fn refinement_brings_noise_free_records_close_to_the_truth() {
    let (before, after) = refine_simulated(f64::INFINITY, 8);
    eprintln!("rms errors (°, px, Å): recorded {before:?}, refined {after:?}");
    assert!(after.0 < 0.2 * before.0, "angle: {} → {} °", before.0, after.0);
    assert!(after.1 < 0.2 * before.1, "shift: {} → {} px", before.1, after.1);
    assert!(after.2 < 0.2 * before.2, "defocus: {} → {} Å", before.2, after.2);
}

/// With noise (SNR 1 by the simulator's definition), refinement with the true model still
/// reduces every rms error by at least 40%, the target for angles and defocus.
#[test]
fn refinement_reduces_noisy_records_errors() {
    let (before, after) = refine_simulated(1.0, 16);
    eprintln!("SNR 1: rms errors (°, px, Å): recorded {before:?}, refined {after:?}");
    assert!(after.0 < 0.6 * before.0, "angle: {} → {} °", before.0, after.0);
    assert!(after.1 < 0.6 * before.1, "shift: {} → {} px", before.1, after.1);
    assert!(after.2 < 0.6 * before.2, "defocus: {} → {} Å", before.2, after.2);
}
