//! The fast renderer against the f64 reference projector (forward and gradients, element by
//! element), against analytic Gaussian projections computed independently
//! (tests/data/reference/gmm_projections.json), central finite differences for every
//! parameter type, and degenerate Gaussians.

use cryosplat_core::ctf::{CtfGrid, CtfParams};
use cryosplat_core::gaussian::{GaussianA, GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_core::pose::{Mat3, Pose};
use cryosplat_core::reference;
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::{euler_to_matrix, random_rotation};
use cryosplat_core::splat::{ImageTarget, SplatOptions, Splatter};

const D: usize = 32;
const APIX: f64 = 1.5;

fn ctf_params() -> CtfParams {
    CtfParams { defocus_u_a: 9000.0, defocus_v_a: 8000.0, defocus_angle_deg: 30.0, cs_mm: 2.7, ..CtfParams::flat() }
}

fn ctfs() -> (Vec<f32>, Vec<f64>) {
    let p = ctf_params();
    let mut half = vec![0.0f32; D * (D / 2 + 1)];
    CtfGrid::new(D, APIX).fill_rfft(&p, &mut half);
    let mut full = vec![0.0f32; D * D];
    p.fill_centered(D, APIX, &mut full);
    (half, full.iter().map(|&v| v as f64).collect())
}

/// A random scene of anisotropic Gaussians well inside the box (box units).
fn scene(n: usize, seed: u64) -> GaussianModel {
    let mut r = Rng::new(seed);
    let params = (0..n)
        .map(|_| {
            let mean = [r.uniform_range(-0.2, 0.2) as f32, r.uniform_range(-0.2, 0.2) as f32, r.uniform_range(-0.2, 0.2) as f32];
            let scales = [r.uniform_range(0.03, 0.07) as f32, r.uniform_range(0.03, 0.07) as f32, r.uniform_range(0.03, 0.07) as f32];
            let q = r.unit_quaternion();
            GaussianModel::raw_from_physical(mean, scales, [q[0] as f32, q[1] as f32, q[2] as f32, q[3] as f32], r.uniform_range(0.5, 2.0) as f32)
        })
        .collect();
    GaussianModel { params }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

#[test]
fn forward_matches_reference_projector() {
    let model = scene(6, 1);
    let (half, full) = ctfs();
    let mut r = Rng::new(2);
    let mut sp = Splatter::new(D, SplatOptions { n_sigma: 7.0 }, 2);
    for k in 0..4 {
        let pose = Pose { rot: random_rotation(&mut r), origin_a: [1.3 * k as f64 - 2.0, 0.7] };
        for ctf in [false, true] {
            let want = reference::render_model(&model, &pose, D, APIX, if ctf { Some(&full) } else { None });
            let mut got = vec![0.0f32; D * D];
            sp.render(&model, &pose, APIX, if ctf { Some(&half) } else { None }, &mut got);
            let scale = max_abs(&want);
            // f32 arithmetic; with the CTF, the half-plane Nyquist terms differ by ~3e-5 (reference README).
            let tol = if ctf { 1e-4 } else { 2e-5 };
            for i in 0..D * D {
                assert!((got[i] as f64 - want[i]).abs() < tol * scale, "pose {k} ctf {ctf} px {i}: {} vs {}", got[i], want[i]);
            }
        }
    }
}

#[test]
fn default_cutoff_error_is_small() {
    // The default footprint (3.5σ, elliptical) against no cutoff: the largest error relative
    // to the peak. The value at the cut is exp(−3.5²/2) = 2.2e-3 of a splat's peak, and 0.2%
    // of its mass falls outside; 3σ (1.1%) is 20% faster, 4σ (3.4e-4) 12% slower.
    let model = scene(8, 3);
    let pose = Pose::default();
    let want = reference::render_model(&model, &pose, D, APIX, None);
    let mut got = vec![0.0f32; D * D];
    Splatter::new(D, SplatOptions::default(), 1).render(&model, &pose, APIX, None, &mut got);
    let scale = max_abs(&want);
    let err = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max) / scale;
    assert!(err < 2.5e-3, "relative truncation error {err}");
}

#[test]
fn matches_independent_analytic_projections() {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/reference/gmm_projections.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let ctf_cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/reference/ctf_cases.json")).unwrap(),
    )
    .unwrap();
    let f = |x: &serde_json::Value| x.as_f64().unwrap();
    let mut sp = Splatter::new(D, SplatOptions { n_sigma: 8.0 }, 2);
    for s in v["scenes"].as_array().unwrap() {
        let gs: Vec<GaussianA> = s["gaussians"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let mut cov: Mat3 = [[0.0; 3]; 3];
                for i in 0..3 {
                    for j in 0..3 {
                        cov[i][j] = f(&g["cov_A2"][i][j]);
                    }
                }
                GaussianA { mean_a: [f(&g["mean_A"][0]), f(&g["mean_A"][1]), f(&g["mean_A"][2])], cov_a2: cov, mass: f(&g["mass"]) }
            })
            .collect();
        let model = GaussianModel::from_angstrom(&gs, D, APIX);
        let case = &ctf_cases["cases"][s["ctf_case_id"].as_u64().unwrap() as usize];
        let cp = CtfParams {
            voltage_kv: f(&case["voltage_kv"]),
            cs_mm: f(&case["cs_mm"]),
            amp_contrast: f(&case["amplitude_contrast"]),
            defocus_u_a: f(&case["defocus_u_A"]),
            defocus_v_a: f(&case["defocus_v_A"]),
            defocus_angle_deg: f(&case["defocus_angle_deg"]),
            phase_shift_deg: f(&case["phase_shift_deg"]),
            bfactor_a2: f(&case["bfactor_A2"]),
            scale: f(&case["scale"]),
        };
        let mut half = vec![0.0f32; D * (D / 2 + 1)];
        cp.fill_rfft(D, APIX, &mut half);
        for pose_v in s["poses"].as_array().unwrap() {
            let pose = Pose {
                rot: euler_to_matrix(f(&pose_v["rot"]), f(&pose_v["tilt"]), f(&pose_v["psi"])),
                origin_a: [f(&pose_v["origin_x_A"]), f(&pose_v["origin_y_A"])],
            };
            // With an astigmatic CTF a real (half-plane) filter cannot reproduce the complex
            // reference on the Nyquist row, whose ±ky partners have different CTF values: the
            // reference README measures 3.3e-5 for +Nyquist; our layout takes −Nyquist (1.1e-4).
            for (key, ctf, tol) in [("image", None, 2e-5), ("image_ctf", Some(&half[..]), 2e-4)] {
                let want: Vec<f64> = pose_v[key].as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap().iter().map(f)).collect();
                let mut got = vec![0.0f32; D * D];
                sp.render(&model, &pose, APIX, ctf, &mut got);
                let scale = max_abs(&want);
                let err = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max) / scale;
                assert!(err < tol, "scene {} {key}: relative error {err}", s["id"]);
            }
        }
    }
}

fn observed(seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..D * D).map(|_| (r.normal() * 0.05) as f32).collect()
}

#[test]
fn gradients_match_reference_element_by_element() {
    let model = scene(5, 7);
    let (half, full) = ctfs();
    let obs = observed(8);
    let obs64: Vec<f64> = obs.iter().map(|&v| v as f64).collect();
    let pose = Pose { rot: euler_to_matrix(20.0, 70.0, -35.0), origin_a: [1.1, -2.4] };
    let (want_loss, want) = reference::mse_loss_and_grad(&model, &pose, D, APIX, Some(&full), &obs64);
    for threads in [1, 2, 3] {
        let mut sp = Splatter::new(D, SplatOptions { n_sigma: 7.0 }, threads);
        let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
        let target = ImageTarget { image: &obs, ctf: Some(&half), pose: &pose, apix: APIX };
        let (loss, st) = sp.loss_and_grad(&model, &target, &mut grad);
        assert_eq!(st.skipped, 0);
        assert!(((loss as f64) - want_loss).abs() < 1e-4 * want_loss, "loss {loss} vs {want_loss}");
        // Per parameter type, relative to the largest gradient of that type.
        for (name, range) in [("mean", 0..3), ("scale", 3..6), ("quaternion", 6..10), ("amplitude", 10..11)] {
            let scale = want.iter().flat_map(|g| g[range.clone()].iter().map(|v| v.abs())).fold(0.0, f64::max);
            for (gi, (g, w)) in grad.iter().zip(&want).enumerate() {
                for k in range.clone() {
                    assert!(
                        (g[k] as f64 - w[k]).abs() < 2e-3 * scale,
                        "threads {threads} {name} gaussian {gi} param {k}: {} vs {}",
                        g[k],
                        w[k]
                    );
                }
            }
        }
    }
}

fn fast_loss(sp: &mut Splatter, model: &GaussianModel, pose: &Pose, half: &[f32], obs: &[f32]) -> f64 {
    let mut img = vec![0.0f32; D * D];
    sp.render(model, pose, APIX, Some(half), &mut img);
    img.iter().zip(obs).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / (D * D) as f64
}

#[test]
fn finite_differences_for_every_parameter_type_and_the_origin() {
    let model = scene(3, 11);
    let (half, _) = ctfs();
    let obs = observed(12);
    let pose = Pose { rot: euler_to_matrix(-40.0, 30.0, 100.0), origin_a: [0.8, 0.3] };
    let mut sp = Splatter::new(D, SplatOptions { n_sigma: 7.0 }, 1);
    let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    let target = ImageTarget { image: &obs, ctf: Some(&half), pose: &pose, apix: APIX };
    let (_, st) = sp.loss_and_grad(&model, &target, &mut grad);
    for g in 0..model.len() {
        for k in 0..PARAMS_PER_GAUSSIAN {
            let h = 2e-3f32;
            let mut mp = model.clone();
            mp.params[g][k] += h;
            let lp = fast_loss(&mut sp, &mp, &pose, &half, &obs);
            let mut mm = model.clone();
            mm.params[g][k] -= h;
            let lm = fast_loss(&mut sp, &mm, &pose, &half, &obs);
            let fd = (lp - lm) / (2.0 * h as f64);
            let an = grad[g][k] as f64;
            let tol = 2e-2 * an.abs().max(fd.abs()) + 1e-6;
            assert!((fd - an).abs() < tol, "gaussian {g} param {k}: fd {fd} analytic {an}");
        }
    }
    for axis in 0..2 {
        // Image values are O(100) here, so the step must be large enough for f32 rendering.
        let h = 0.05;
        let mut pp = pose;
        pp.origin_a[axis] += h;
        let lp = fast_loss(&mut sp, &model, &pp, &half, &obs);
        pp.origin_a[axis] -= 2.0 * h;
        let lm = fast_loss(&mut sp, &model, &pp, &half, &obs);
        let fd = (lp - lm) / (2.0 * h);
        let an = st.grad_origin_a[axis];
        assert!((fd - an).abs() < 2e-2 * an.abs().max(fd.abs()) + 1e-6, "origin {axis}: fd {fd} analytic {an}");
    }
}

#[test]
fn minibatch_equals_sum_of_single_images() {
    let model = scene(20, 21);
    let (half, _) = ctfs();
    let mut r = Rng::new(4);
    let poses: Vec<Pose> = (0..5).map(|_| Pose { rot: random_rotation(&mut r), origin_a: [r.normal(), r.normal()] }).collect();
    let obs: Vec<Vec<f32>> = (0..5).map(|k| observed(100 + k)).collect();
    let targets: Vec<ImageTarget> = poses.iter().zip(&obs).map(|(p, o)| ImageTarget { image: o, ctf: Some(&half), pose: p, apix: APIX }).collect();
    let mut sp = Splatter::new(D, SplatOptions::default(), 2);
    let mut g1 = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    let mut l1 = 0.0;
    for t in &targets {
        l1 += sp.loss_and_grad(&model, t, &mut g1).0;
    }
    let mut g2 = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    let (l2, _) = sp.loss_and_grad_batch(&model, &targets, &mut g2);
    assert!((l1 - l2).abs() < 1e-5 * l1.abs());
    let scale = g1.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
    for (a, b) in g1.iter().flatten().zip(g2.iter().flatten()) {
        assert!((a - b).abs() < 1e-4 * scale, "{a} vs {b}");
    }
    // Deterministic for a given thread count.
    let mut g3 = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    let (l3, _) = sp.loss_and_grad_batch(&model, &targets, &mut g3);
    assert_eq!(l2, l3);
    assert_eq!(g2, g3);
}

#[test]
fn degenerate_gaussians_never_poison_the_image() {
    // Invariants: the image, loss and every gradient are finite; non-finite parameters are
    // skipped and counted; zero, tiny and huge scales, a zero quaternion and Gaussians far
    // outside the box are handled.
    let mut r = Rng::new(99);
    let mut model = scene(4, 5);
    let q = [1.0f32, 0.0, 0.0, 0.0];
    model.params.push(GaussianModel::raw_from_physical([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], q, 1.0)); // zero scale → clamped
    model.params.push(GaussianModel::raw_from_physical([0.1, 0.0, 0.0], [1e-9, 0.05, 0.05], q, 1.0)); // tiny
    model.params.push(GaussianModel::raw_from_physical([0.0, 0.1, 0.0], [1e6, 1e6, 1e6], q, 1.0)); // huge → clamped
    model.params.push(GaussianModel::raw_from_physical([0.0, 0.0, 0.1], [0.05, 0.05, 0.05], [0.0; 4], 1.0)); // zero quaternion
    model.params.push(GaussianModel::raw_from_physical([50.0, -50.0, 3.0], [0.05, 0.05, 0.05], q, 1.0)); // far outside
    let mut nan = GaussianModel::raw_from_physical([0.0, 0.0, 0.0], [0.05, 0.05, 0.05], q, 1.0);
    nan[4] = f32::NAN;
    model.params.push(nan);
    let mut inf = GaussianModel::raw_from_physical([0.0, 0.0, 0.0], [0.05, 0.05, 0.05], q, 1.0);
    inf[0] = f32::INFINITY;
    model.params.push(inf);
    let (half, _) = ctfs();
    let obs = observed(1);
    for _ in 0..5 {
        let pose = Pose { rot: random_rotation(&mut r), origin_a: [r.normal() * 3.0, r.normal() * 3.0] };
        for threads in [1, 2] {
            let mut sp = Splatter::new(D, SplatOptions::default(), threads);
            let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
            let target = ImageTarget { image: &obs, ctf: Some(&half), pose: &pose, apix: APIX };
            let (loss, st) = sp.loss_and_grad(&model, &target, &mut grad);
            assert!(loss.is_finite());
            assert_eq!(st.skipped, 2);
            assert!(grad.iter().flatten().all(|v| v.is_finite()), "{grad:?}");
            let mut img = vec![0.0f32; D * D];
            sp.render(&model, &pose, APIX, Some(&half), &mut img);
            assert!(img.iter().all(|v| v.is_finite()));
        }
    }
}

