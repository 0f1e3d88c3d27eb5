//! The reference projector against the analytic projections of `tests/data/reference/gmm_projections.json`
//! (computed independently in numpy and cross-checked with RELION; see that folder's README),
//! and its analytic gradient against finite differences.

mod common;

use common::{ctf_params, gmm_projections, grid, max_rel_diff, pose_of, reference_json, scene_gaussians};
use cryosplat_core::gaussian::{GaussianA, GaussianModel, PhysicalGaussian, PARAMS_PER_GAUSSIAN};
use cryosplat_core::pose::Pose;
use cryosplat_core::reference::{
    apply_filter_centered, image_a, mse_grad_finite_diff, mse_loss, mse_loss_and_grad, project_gaussians_a, render_model,
};
use cryosplat_core::rng::Rng;
use serde_json::Value;

const D: usize = 32;
const APIX: f64 = 1.5;

#[test]
fn projections_match_the_analytic_reference() {
    let data = gmm_projections();
    let mut n = 0;
    for scene in data["scenes"].as_array().unwrap() {
        let gs = scene_gaussians(scene);
        for p in scene["poses"].as_array().unwrap() {
            let img = project_gaussians_a(&gs, &pose_of(p), D, APIX);
            let err = max_rel_diff(&img, &grid(&p["image"]));
            assert!(err < 1e-12, "scene {} image: rel err {err:e}", scene["id"]);
            n += 1;
        }
    }
    assert_eq!(n, 12);
}

/// For every pose of every scene: `image(scene, its Gaussians, the pose, its centred CTF)`
/// against the reference `image_ctf`, within `tol` of the image maximum.
fn check_ctf_images(what: &str, tol: f64, image: impl Fn(&Value, &[GaussianA], &Pose, &[f64]) -> Vec<f64>) {
    let data = gmm_projections();
    let mut n = 0;
    for scene in data["scenes"].as_array().unwrap() {
        let gs = scene_gaussians(scene);
        let ctf = grid(&scene["ctf"]);
        for p in scene["poses"].as_array().unwrap() {
            let err = max_rel_diff(&image(scene, &gs, &pose_of(p), &ctf), &grid(&p["image_ctf"]));
            assert!(err < tol, "scene {} {what}: rel err {err:e}", scene["id"]);
            n += 1;
        }
    }
    assert_eq!(n, 12);
}

#[test]
fn ctf_images_match_the_analytic_reference() {
    check_ctf_images("image_ctf", 1e-10, |_, gs, pose, ctf| image_a(gs, pose, D, APIX, Some(ctf)));
}

#[test]
fn ctf_from_parameters_reproduces_the_reference_images() {
    // Each scene's CTF is a case of ctf_cases.json re-evaluated on the D = 32, 1.5 Å grid.
    use cryosplat_core::reference::ctf_centered;
    let cases = reference_json("ctf_cases.json");
    let ctf_of = |scene: &Value| {
        let id = scene["ctf_case_id"].as_u64().unwrap() as usize;
        let c = &cases["cases"][id];
        assert_eq!(c["id"].as_u64().unwrap() as usize, id);
        ctf_centered(&ctf_params(c), D, APIX)
    };
    for scene in gmm_projections()["scenes"].as_array().unwrap() {
        let want = grid(&scene["ctf"]);
        assert!(ctf_of(scene).iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12), "scene {}", scene["id"]);
    }
    check_ctf_images("image from CTF parameters", 1e-10, |scene, gs, pose, _| image_a(gs, pose, D, APIX, Some(&ctf_of(scene))));
}

#[test]
fn origin_shift_moves_the_image_by_minus_origin() {
    // Scene 0, pose 1 is pose 0 with origin (+1, -2) px: img1[i][j] = img0[i-2][j+1].
    let data = gmm_projections();
    let gs = scene_gaussians(&data["scenes"][0]);
    let img0 = project_gaussians_a(&gs, &Pose::default(), D, APIX);
    let img1 = project_gaussians_a(&gs, &Pose { rot: cryosplat_core::pose::IDENTITY, origin_a: [1.5, -3.0] }, D, APIX);
    for i in 2..D {
        for j in 0..D - 1 {
            assert!((img1[i * D + j] - img0[(i - 2) * D + j + 1]).abs() < 1e-15);
        }
    }
}

#[test]
fn box_unit_model_renders_the_same_image() {
    // The scene converted to a box-unit model (f32 raw parameters) renders to the same pixel
    // values, to f32 precision of the parameters.
    check_ctf_images("box-unit render", 2e-5, |_, gs, pose, ctf| {
        render_model(&GaussianModel::from_angstrom(gs, D, APIX), pose, D, APIX, Some(ctf))
    });
}

#[test]
fn filter_of_ones_is_identity_and_dc_filter_gives_the_mean() {
    let mut rng = Rng::new(3);
    let img: Vec<f64> = (0..D * D).map(|_| rng.normal()).collect();
    let out = apply_filter_centered(&img, &vec![1.0; D * D], D);
    assert!(max_rel_diff(&out, &img) < 1e-14);
    let mut dc = vec![0.0; D * D];
    dc[(D / 2) * D + D / 2] = 1.0;
    let out = apply_filter_centered(&img, &dc, D);
    let mean = img.iter().sum::<f64>() / (D * D) as f64;
    assert!(out.iter().all(|v| (v - mean).abs() < 1e-14));
}

/// A small random model in box units with anisotropic, rotated Gaussians, some raw
/// quaternions not normalised.
fn random_model(n: usize, rng: &mut Rng) -> GaussianModel {
    let params = (0..n)
        .map(|_| {
            let g = PhysicalGaussian {
                mean: [rng.normal() * 0.08, rng.normal() * 0.08, rng.normal() * 0.08],
                scales: [rng.uniform_range(0.03, 0.08), rng.uniform_range(0.03, 0.08), rng.uniform_range(0.03, 0.08)],
                quat: rng.unit_quaternion(),
                amp: rng.uniform_range(0.2, 1.0),
            };
            let mut raw = g.to_raw();
            let k = rng.uniform_range(0.5, 2.0) as f32;
            for c in raw[6..10].iter_mut() {
                *c *= k;
            }
            raw
        })
        .collect();
    GaussianModel { params }
}

fn check_grad(ctf: Option<&[f64]>, seed: u64) {
    let d = 16;
    let apix = 2.0;
    let mut rng = Rng::new(seed);
    let model = random_model(3, &mut rng);
    let q = rng.unit_quaternion();
    let pose = Pose { rot: cryosplat_core::gaussian::quat_to_rotation(q), origin_a: [1.3, -0.7] };
    // Observed: another model's image, so the residual is structured.
    let other = random_model(3, &mut rng);
    let observed = render_model(&other, &pose, d, apix, ctf);
    let (loss, grad) = mse_loss_and_grad(&model, &pose, d, apix, ctf, &observed);
    assert!((loss - mse_loss(&model, &pose, d, apix, ctf, &observed)).abs() <= 1e-15 * loss.max(1.0));
    let fd = mse_grad_finite_diff(&model, &pose, d, apix, ctf, &observed, 1e-5);
    let scale = grad.iter().flat_map(|g| g.iter()).fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    for g in 0..model.len() {
        for k in 0..PARAMS_PER_GAUSSIAN {
            let (a, b) = (grad[g][k], fd[g][k]);
            assert!((a - b).abs() <= 1e-6 * scale + 1e-6 * b.abs(), "gaussian {g} param {k}: analytic {a:e} vs fd {b:e}");
        }
    }
}

#[test]
fn analytic_gradient_matches_finite_differences() {
    check_grad(None, 17);
}

#[test]
fn analytic_gradient_with_astigmatic_ctf_matches_finite_differences() {
    // A filter that is not symmetric under k → −k on the Nyquist row and column, like an
    // astigmatic CTF at an oblique angle, exercises the transpose of the CTF step.
    let d = 16;
    let mut ctf = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            let ky = i as f64 - 8.0;
            let kx = j as f64 - 8.0;
            ctf[i * d + j] = 0.1 + (0.05 * (kx * kx * 1.3 + ky * ky * 0.7 + kx * ky)).sin();
        }
    }
    check_grad(Some(&ctf), 23);
}
