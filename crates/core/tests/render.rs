//! The fast renderer against the f64 reference projector (`reference.rs`), the analytic
//! projections of `tests/data/reference/gmm_projections.json`, central finite differences of
//! the exact loss, and degenerate inputs.
//!
//! Tolerances are relative to the largest magnitude of the compared quantity (image maximum,
//! or the largest gradient entry of the same parameter type), since f32 rounding is relative
//! to the scale of the whole sum.

use cryosplat_core::ctf::CtfParams;
use cryosplat_core::gaussian::{GaussianA, GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_core::pose::{Mat3, Pose};
use cryosplat_core::reference::{ctf_centered, mse_loss, mse_loss_and_grad, render_model};
use cryosplat_core::render::{ImageTarget, RenderOptions, Renderer, DEFAULT_N_SIGMA};
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::random_rotation;
use serde_json::Value;

const GMM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/reference/gmm_projections.json");

/// A footprint wide enough that the cut is below f32 resolution (exp(−½·8²) ≈ 1e-14).
const NO_CUT: f32 = 8.0;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

fn renderer(d: usize, n_sigma: f32, threads: usize) -> Renderer {
    Renderer::new(d, RenderOptions { n_sigma, threads })
}

/// `n` random Gaussians with scales `smin..smax` pixels, inside radius `rad` (box units).
fn scene(n: usize, d: usize, smin: f64, smax: f64, rad: f64, rng: &mut Rng) -> GaussianModel {
    let px = 1.0 / d as f64;
    let params = (0..n)
        .map(|_| {
            let mean = [rng.uniform_range(-rad, rad), rng.uniform_range(-rad, rad), rng.uniform_range(-rad, rad)];
            let s = [
                rng.uniform_range(smin, smax) * px,
                rng.uniform_range(smin, smax) * px,
                rng.uniform_range(smin, smax) * px,
            ];
            let q = rng.unit_quaternion();
            // A non-unit raw quaternion exercises the normalisation.
            let qs = rng.uniform_range(0.5, 2.0);
            GaussianModel::raw_from_physical(
                [mean[0] as f32, mean[1] as f32, mean[2] as f32],
                [s[0] as f32, s[1] as f32, s[2] as f32],
                [(q[0] * qs) as f32, (q[1] * qs) as f32, (q[2] * qs) as f32, (q[3] * qs) as f32],
                rng.uniform_range(0.3, 1.5) as f32,
            )
        })
        .collect();
    GaussianModel { params }
}

fn astigmatic_ctf() -> CtfParams {
    CtfParams {
        defocus_u_a: 9000.0,
        defocus_v_a: 7000.0,
        defocus_angle_deg: 37.0,
        cs_mm: 2.7,
        bfactor_a2: 20.0,
        ..CtfParams::flat()
    }
}

/// The CTF in the half-plane layout, evaluated here in FFT order for any `d` (row `r` ↔
/// `ky = r` for `r ≤ (d−1)/2`, `r − d` otherwise; column `c` ↔ `kx = c`).
fn half_plane(p: &CtfParams, d: usize, apix: f64) -> Vec<f32> {
    let w = d / 2 + 1;
    let step = 1.0 / (d as f64 * apix);
    let mut out = vec![0.0f32; d * w];
    for r in 0..d {
        let fy = if r < d.div_ceil(2) { r as f64 } else { r as f64 - d as f64 };
        for c in 0..w {
            out[r * w + c] = p.eval(c as f64 * step, fy * step) as f32;
        }
    }
    out
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// max |a − b| / max |b|.
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    let m = max_abs(b);
    a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs()).fold(0.0, f64::max) / m
}

#[test]
fn forward_matches_reference_without_and_with_ctf() {
    let mut rng = Rng::new(1);
    for &(d, apix) in &[(32usize, 1.5), (48, 2.0), (33, 1.2)] {
        let model = scene(12, d, 1.0, 3.0, 0.25, &mut rng);
        let pose = Pose { rot: random_rotation(&mut rng), origin_a: [2.1, -3.4] };
        let mut r = renderer(d, NO_CUT, 1);
        let mut out = vec![0.0f32; d * d];
        r.render(&model, &pose, apix, None, &mut out);
        let reference = render_model(&model, &pose, d, apix, None);
        let e = rel_err(&out, &reference);
        assert!(e < 1e-5, "D = {d}: projection error {e:e}");
        // CTF: isotropic (exact up to f32), then astigmatic (differs from the full complex
        // recipe only on the Nyquist row, see the reference data README: ≤ 1e-4 relative).
        let iso = CtfParams { defocus_u_a: 8000.0, defocus_v_a: 8000.0, cs_mm: 2.7, ..CtfParams::flat() };
        for (p, tol) in [(iso, 2e-5), (astigmatic_ctf(), 1e-4)] {
            let half = half_plane(&p, d, apix);
            if d % 2 == 0 {
                let mut filled = vec![0.0f32; d * (d / 2 + 1)];
                p.fill_rfft(d, apix, &mut filled);
                assert_eq!(filled, half);
            }
            r.render(&model, &pose, apix, Some(&half), &mut out);
            let reference = render_model(&model, &pose, d, apix, Some(&ctf_centered(&p, d, apix)));
            let e = rel_err(&out, &reference);
            assert!(e < tol, "D = {d}: CTF image error {e:e} (tolerance {tol:e})");
        }
    }
}

#[test]
fn image_sum_is_the_total_mass() {
    // Image values are mass per box²: Σ pixels / D² = Σ w for Gaussians well inside the box.
    let mut rng = Rng::new(11);
    let d = 64;
    let model = scene(30, d, 1.0, 2.5, 0.2, &mut rng);
    let pose = Pose { rot: random_rotation(&mut rng), origin_a: [3.0, -1.0] };
    let mut r = renderer(d, NO_CUT, 1);
    let mut out = vec![0.0f32; d * d];
    r.render(&model, &pose, 1.0, None, &mut out);
    let total_w: f64 = (0..model.len()).map(|i| model.physical_f64(i).amp).sum();
    let sum: f64 = out.iter().map(|&v| v as f64).sum::<f64>() / (d * d) as f64;
    assert!((sum / total_w - 1.0).abs() < 1e-5, "mass {sum} vs {total_w}");
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Per parameter type (mean, scale, quaternion, amplitude): max |fast − ref| / max |ref|.
fn grad_errors(fast: &[[f32; PARAMS_PER_GAUSSIAN]], reference: &[[f64; PARAMS_PER_GAUSSIAN]]) -> [f64; 4] {
    let groups = [0..3, 3..6, 6..10, 10..11];
    let mut out = [0.0; 4];
    for (gi, g) in groups.iter().enumerate() {
        let mut m = 0.0f64;
        let mut e = 0.0f64;
        for (a, b) in fast.iter().zip(reference) {
            for k in g.clone() {
                m = m.max(b[k].abs());
                e = e.max((a[k] as f64 - b[k]).abs());
            }
        }
        out[gi] = e / m;
    }
    out
}

#[test]
fn loss_and_gradient_match_reference() {
    let mut rng = Rng::new(2);
    for &(d, apix, threads, with_ctf) in &[(32usize, 1.5, 1usize, false), (32, 1.5, 2, true), (40, 2.0, 3, true)] {
        let model = scene(10, d, 1.0, 3.0, 0.25, &mut rng);
        let pose = Pose { rot: random_rotation(&mut rng), origin_a: [1.3, 2.2] };
        let observed: Vec<f32> = (0..d * d).map(|_| (rng.normal() * 0.05) as f32).collect();
        let p = CtfParams { defocus_u_a: 8000.0, defocus_v_a: 8000.0, cs_mm: 2.7, ..CtfParams::flat() };
        let mut half = vec![0.0f32; d * (d / 2 + 1)];
        let ctf_c = ctf_centered(&p, d, apix);
        if with_ctf {
            p.fill_rfft(d, apix, &mut half);
        } else {
            half.clear();
        }
        let (l_ref, g_ref) =
            mse_loss_and_grad(&model, &pose, d, apix, if with_ctf { Some(&ctf_c) } else { None }, &to_f64(&observed));
        let mut r = renderer(d, NO_CUT, threads);
        let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
        let t = ImageTarget { image: &observed, ctf_rfft: &half, pose: &pose, apix };
        let loss = pool(threads).install(|| r.loss_and_grad(&model, &t, &mut grad));
        assert!(((loss as f64) / l_ref - 1.0).abs() < 1e-5, "loss {loss} vs {l_ref}");
        let e = grad_errors(&grad, &g_ref);
        for (name, v) in ["mean", "scale", "quaternion", "amplitude"].iter().zip(e) {
            assert!(v < 1e-4, "D = {d}, CTF {with_ctf}: {name} gradient error {v:e}");
        }
        // Accumulates: a second call doubles the gradient.
        let g1 = grad.clone();
        pool(threads).install(|| r.loss_and_grad(&model, &t, &mut grad));
        for (a, b) in grad.iter().zip(&g1) {
            for k in 0..PARAMS_PER_GAUSSIAN {
                assert!((a[k] - 2.0 * b[k]).abs() <= 1e-6 * b[k].abs().max(1e-30) + 1e-30);
            }
        }
    }
}
