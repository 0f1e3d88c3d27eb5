//! The per-image gradients that refinement of poses, origins and defocus uses — `∂L/∂Δz` for a
//! defocus offset common to U and V, `∂L/∂w` for a rotation-vector correction `A = R(w)·A₀`
//! (from `ImageStats::grad_rot` by `rotation::rotvec_gradient`) and `∂L/∂o` for the origin —
//! against central differences of the renderer's own loss and of the f64 reference loss, on a
//! small model with an astigmatic CTF; and the `_defocus` methods against the plain ones.

use cryosplat_core::ctf::{CtfGrid, CtfParams};
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_core::pose::Pose;
use cryosplat_core::reference::{ctf_centered, mse_loss};
use cryosplat_core::render::{ImageStats, ImageTarget, RenderOptions, Renderer};
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::{random_rotation, rotate_by_rotvec, rotvec_gradient};

/// A footprint wide enough that the cut is below f32 resolution, so the loss is smooth in the
/// pose.
const NO_CUT: f32 = 8.0;

struct Case {
    d: usize,
    apix: f64,
    model: GaussianModel,
    pose: Pose,
    ctf: CtfParams,
    observed: Vec<f32>,
}

/// Ten Gaussians of 1.5 to 3 px inside a sphere of radius 0.25 box; the observed image is the
/// model under a pose 3° and 0.6 Å away, with 250 Å more defocus, plus noise, so that every
/// gradient is far from zero.
fn case() -> Case {
    let (d, apix) = (32usize, 2.0);
    let mut rng = Rng::new(17);
    let px = 1.0 / d as f64;
    let params = (0..10)
        .map(|_| {
            let m: [f32; 3] = std::array::from_fn(|_| rng.uniform_range(-0.25, 0.25) as f32);
            let s: [f32; 3] = std::array::from_fn(|_| (rng.uniform_range(1.5, 3.0) * px) as f32);
            let q = rng.unit_quaternion();
            GaussianModel::raw_from_physical(m, s, q.map(|v| v as f32), rng.uniform_range(0.5, 1.5) as f32)
        })
        .collect();
    let model = GaussianModel { params };
    let pose = Pose { rot: random_rotation(&mut rng), origin_a: [0.7, -1.1] };
    let ctf =
        CtfParams { defocus_u_a: 9000.0, defocus_v_a: 7500.0, defocus_angle_deg: 37.0, cs_mm: 2.7, bfactor_a2: 20.0, ..CtfParams::flat() };
    let truth = Pose { rot: rotate_by_rotvec([0.03, -0.03, 0.02], &pose.rot), origin_a: [0.7 + 0.5, -1.1 - 0.3] };
    let mut half = vec![0.0f32; d * (d / 2 + 1)];
    CtfGrid::new(d, apix).fill_rfft(&CtfParams { defocus_u_a: 9250.0, defocus_v_a: 7750.0, ..ctf }, &mut half);
    let mut observed = vec![0.0f32; d * d];
    Renderer::new(d, RenderOptions { n_sigma: NO_CUT, threads: 1 }).render(&model, &truth, apix, Some(&half), &mut observed);
    let peak = observed.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for v in observed.iter_mut() {
        *v += 0.05 * peak * rng.normal() as f32;
    }
    Case { d, apix, model, pose, ctf, observed }
}

/// The pose and CTF moved by a rotation vector `w`, an origin step `o` (Å) and a defocus
/// offset `dz` (Å).
fn moved(c: &Case, w: [f64; 3], o: [f64; 2], dz: f64) -> (Pose, CtfParams) {
    let pose = Pose { rot: rotate_by_rotvec(w, &c.pose.rot), origin_a: [c.pose.origin_a[0] + o[0], c.pose.origin_a[1] + o[1]] };
    (pose, CtfParams { defocus_u_a: c.ctf.defocus_u_a + dz, defocus_v_a: c.ctf.defocus_v_a + dz, ..c.ctf })
}

/// The renderer's loss for the moved parameters.
fn renderer_loss(c: &Case, r: &mut Renderer, w: [f64; 3], o: [f64; 2], dz: f64) -> f64 {
    let (pose, ctf) = moved(c, w, o, dz);
    let mut half = vec![0.0f32; c.d * (c.d / 2 + 1)];
    CtfGrid::new(c.d, c.apix).fill_rfft(&ctf, &mut half);
    let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; c.model.len()];
    r.loss_and_grad(&c.model, &ImageTarget { image: &c.observed, ctf_rfft: &half, pose: &pose, apix: c.apix }, &mut grad) as f64
}

/// The f64 reference loss for the moved parameters.
fn reference_loss(c: &Case, w: [f64; 3], o: [f64; 2], dz: f64) -> f64 {
    let (pose, ctf) = moved(c, w, o, dz);
    let obs: Vec<f64> = c.observed.iter().map(|&v| v as f64).collect();
    mse_loss(&c.model, &pose, c.d, c.apix, Some(&ctf_centered(&ctf, c.d, c.apix)), &obs)
}

/// The analytic gradients `(∂L/∂Δz, ∂L/∂w, ∂L/∂o)` at the case's parameters, with `threads`
/// workers, and the loss.
fn analytic(c: &Case, threads: usize) -> (f64, [f64; 3], [f64; 2], f32) {
    let (d, w) = (c.d, c.d / 2 + 1);
    let (mut half, mut dhalf) = (vec![0.0f32; d * w], vec![0.0f32; d * w]);
    CtfGrid::new(d, c.apix).fill_rfft_with_ddefocus(&c.ctf, &mut half, &mut dhalf);
    let mut r = Renderer::new(d, RenderOptions { n_sigma: NO_CUT, threads });
    let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; c.model.len()];
    let t = ImageTarget { image: &c.observed, ctf_rfft: &half, pose: &c.pose, apix: c.apix };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let loss = pool.install(|| r.loss_and_grad_defocus(&c.model, &t, &dhalf, &mut grad));
    let st: ImageStats = r.last_stats()[0];
    (st.grad_defocus_a, rotvec_gradient(&c.pose.rot, &st.grad_rot), st.grad_origin_a, loss)
}

/// Central differences of `loss` in each refined parameter: defocus (step `hz` Å), rotation
/// vector (`hw` rad) and origin (`ho` Å).
fn central(loss: &mut dyn FnMut([f64; 3], [f64; 2], f64) -> f64, hz: f64, hw: f64, ho: f64) -> (f64, [f64; 3], [f64; 2]) {
    let gz = (loss([0.0; 3], [0.0; 2], hz) - loss([0.0; 3], [0.0; 2], -hz)) / (2.0 * hz);
    let gw: [f64; 3] = std::array::from_fn(|k| {
        let (mut p, mut m) = ([0.0; 3], [0.0; 3]);
        p[k] = hw;
        m[k] = -hw;
        (loss(p, [0.0; 2], 0.0) - loss(m, [0.0; 2], 0.0)) / (2.0 * hw)
    });
    let go: [f64; 2] = std::array::from_fn(|k| {
        let (mut p, mut m) = ([0.0; 2], [0.0; 2]);
        p[k] = ho;
        m[k] = -ho;
        (loss([0.0; 3], p, 0.0) - loss([0.0; 3], m, 0.0)) / (2.0 * ho)
    });
    (gz, gw, go)
}

fn check(what: &str, got: (f64, [f64; 3], [f64; 2]), want: (f64, [f64; 3], [f64; 2]), rel: f64) {
    eprintln!("{what}: ∂L/∂Δz {:.6e} vs {:.6e}; ∂L/∂w {:?} vs {:?}; ∂L/∂o {:?} vs {:?}", got.0, want.0, got.1, want.1, got.2, want.2);
    assert!((got.0 - want.0).abs() <= rel * want.0.abs(), "{what}: ∂L/∂Δz {} vs {}", got.0, want.0);
    let wn = want.1.iter().map(|v| v * v).sum::<f64>().sqrt();
    for k in 0..3 {
        assert!((got.1[k] - want.1[k]).abs() <= rel * wn, "{what}: ∂L/∂w[{k}] {} vs {}", got.1[k], want.1[k]);
    }
    let on = want.2[0].hypot(want.2[1]);
    for k in 0..2 {
        assert!((got.2[k] - want.2[k]).abs() <= rel * on, "{what}: ∂L/∂o[{k}] {} vs {}", got.2[k], want.2[k]);
    }
}

#[test]
fn refinement_gradients_match_central_differences_of_the_renderers_loss() {
    let c = case();
    let (gz, gw, go, _) = analytic(&c, 1);
    let mut r = Renderer::new(c.d, RenderOptions { n_sigma: NO_CUT, threads: 1 });
    // Steps large enough for the f32 loss (a phase change of about 0.05 rad at Nyquist, a
    // tenth of a degree, a fortieth of a pixel).
    let fd = central(&mut |w, o, dz| renderer_loss(&c, &mut r, w, o, dz), 20.0, 2e-3, 0.05);
    check("renderer", (gz, gw, go), fd, 5e-4);
}

#[test]
fn refinement_gradients_match_central_differences_of_the_reference_loss() {
    let c = case();
    let (gz, gw, go, _) = analytic(&c, 1);
    // The reference filters with the CTF on the centred grid, whose Nyquist row and column
    // differ from the half-plane layout's for an astigmatic CTF: its ∂L/∂Δz differs from the
    // renderer's by about 1.5e-4 relative here, inside the tolerance.
    let fd = central(&mut |w, o, dz| reference_loss(&c, w, o, dz), 0.5, 1e-5, 1e-4);
    check("reference", (gz, gw, go), fd, 5e-4);
}

#[test]
fn the_defocus_methods_change_nothing_else_and_agree_across_paths() {
    // Loss, model gradient and the other statistics are bitwise those of the plain methods;
    // ∂L/∂Δz agrees between the batch of one (one and two workers) and the minibatch (one to
    // three workers), within 1e-5 relative; the plain methods report 0.
    let c = case();
    let (d, w) = (c.d, c.d / 2 + 1);
    let mut rng = Rng::new(3);
    let n = 4;
    let poses: Vec<Pose> = (0..n).map(|_| Pose { rot: random_rotation(&mut rng), origin_a: [rng.normal(), rng.normal()] }).collect();
    let ctfs: Vec<(Vec<f32>, Vec<f32>)> = (0..n)
        .map(|i| {
            let (mut h, mut g) = (vec![0.0f32; d * w], vec![0.0f32; d * w]);
            let p = CtfParams { defocus_u_a: c.ctf.defocus_u_a + 500.0 * i as f64, ..c.ctf };
            CtfGrid::new(d, c.apix).fill_rfft_with_ddefocus(&p, &mut h, &mut g);
            (h, g)
        })
        .collect();
    let targets: Vec<ImageTarget> =
        (0..n).map(|i| ImageTarget { image: &c.observed, ctf_rfft: &ctfs[i].0, pose: &poses[i], apix: c.apix }).collect();
    let dctfs: Vec<&[f32]> = ctfs.iter().map(|(_, g)| &g[..]).collect();
    let zero = || vec![[0.0f32; PARAMS_PER_GAUSSIAN]; c.model.len()];
    let mut single = Vec::new();
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut r = Renderer::new(d, RenderOptions { n_sigma: NO_CUT, threads });
        for (i, t) in targets.iter().enumerate() {
            let (mut g1, mut g2) = (zero(), zero());
            let l1 = pool.install(|| r.loss_and_grad(&c.model, t, &mut g1));
            let s1 = r.last_stats()[0];
            let l2 = pool.install(|| r.loss_and_grad_defocus(&c.model, t, dctfs[i], &mut g2));
            let s2 = r.last_stats()[0];
            assert_eq!((l1, &g1), (l2, &g2), "{threads} workers, image {i}");
            assert_eq!(s1.grad_defocus_a, 0.0);
            assert_eq!(ImageStats { grad_defocus_a: 0.0, curv_defocus_a: 0.0, curv_origin_a: [0.0; 2], ..s2 }, s1);
            if threads == 1 {
                single.push(s2.grad_defocus_a);
            } else {
                assert!(
                    (s2.grad_defocus_a - single[i]).abs() <= 1e-5 * single[i].abs(),
                    "image {i}: {} vs {}",
                    s2.grad_defocus_a,
                    single[i]
                );
            }
        }
    }
    assert!(single.iter().all(|g| g.abs() > 0.0));
    for threads in [1usize, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut r = Renderer::new(d, RenderOptions { n_sigma: NO_CUT, threads });
        let (mut g1, mut g2) = (zero(), zero());
        let l1 = pool.install(|| r.loss_and_grad_batch(&c.model, &targets, &mut g1));
        let s1 = r.last_stats().to_vec();
        let l2 = pool.install(|| r.loss_and_grad_batch_defocus(&c.model, &targets, &dctfs, &mut g2));
        let s2 = r.last_stats().to_vec();
        assert_eq!((l1, &g1), (l2, &g2), "{threads} workers");
        for (i, (a, b)) in s1.iter().zip(&s2).enumerate() {
            assert_eq!(a.grad_defocus_a, 0.0);
            assert_eq!(&ImageStats { grad_defocus_a: 0.0, curv_defocus_a: 0.0, curv_origin_a: [0.0; 2], ..*b }, a);
            assert!(
                (b.grad_defocus_a - single[i]).abs() <= 1e-5 * single[i].abs(),
                "{threads} workers, image {i}: {} vs {}",
                b.grad_defocus_a,
                single[i]
            );
        }
    }
}

/// Where the prediction matches the image, the loss's second derivative is its Gauss–Newton
/// curvature: `ImageStats::curv_defocus_a` and `curv_origin_a` against second central
/// differences of the f64 reference loss.
#[test]
fn curvatures_match_second_differences_where_the_prediction_fits() {
    let mut c = case();
    let (d, w) = (c.d, c.d / 2 + 1);
    let (mut half, mut dhalf) = (vec![0.0f32; d * w], vec![0.0f32; d * w]);
    CtfGrid::new(d, c.apix).fill_rfft_with_ddefocus(&c.ctf, &mut half, &mut dhalf);
    let mut r = Renderer::new(d, RenderOptions { n_sigma: NO_CUT, threads: 1 });
    let mut observed = vec![0.0f32; d * d];
    r.render(&c.model, &c.pose, c.apix, Some(&half), &mut observed);
    c.observed = observed;
    let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; c.model.len()];
    let t = ImageTarget { image: &c.observed, ctf_rfft: &half, pose: &c.pose, apix: c.apix };
    r.loss_and_grad_defocus(&c.model, &t, &dhalf, &mut grad);
    let st = r.last_stats()[0];
    let second = |f: &dyn Fn(f64) -> f64, h: f64| (f(h) + f(-h) - 2.0 * f(0.0)) / (h * h);
    let hz = second(&|h| reference_loss(&c, [0.0; 3], [0.0; 2], h), 5.0);
    let hx = second(&|h| reference_loss(&c, [0.0; 3], [h, 0.0], 0.0), 0.01);
    let hy = second(&|h| reference_loss(&c, [0.0; 3], [0.0, h], 0.0), 0.01);
    eprintln!("curvatures: defocus {:.6e} vs {hz:.6e}; origin {:?} vs [{hx:.6e}, {hy:.6e}]", st.curv_defocus_a, st.curv_origin_a);
    assert!(st.curv_defocus_a > 0.0 && (st.curv_defocus_a - hz).abs() <= 2e-2 * hz, "defocus: {} vs {hz}", st.curv_defocus_a);
    for (got, want) in st.curv_origin_a.iter().zip([hx, hy]) {
        assert!(*got > 0.0 && (got - want).abs() <= 2e-2 * want, "origin: {got} vs {want}");
    }
    // Without a derivative, nothing is measured.
    r.loss_and_grad(&c.model, &t, &mut grad);
    assert_eq!((r.last_stats()[0].curv_defocus_a, r.last_stats()[0].curv_origin_a), (0.0, [0.0; 2]));
}
