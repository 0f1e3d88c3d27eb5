//! The fast renderer against the f64 reference projector (`reference.rs`), the analytic
//! projections of `tests/data/reference/gmm_projections.json`, central finite differences of
//! the exact loss, and degenerate inputs.
//!
//! Tolerances are relative to the largest magnitude of the compared quantity (image maximum,
//! or the largest gradient entry of the same parameter type), since f32 rounding is relative
//! to the scale of the whole sum.

mod common;

use common::{gmm_projections, grid, max_abs, pose_of, scene_gaussians};
use cryosplat_core::ctf::CtfParams;
use cryosplat_core::fourier::{centred_position, freq_index};
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN, P_AMP, P_QUAT, P_SCALE};
use cryosplat_core::pose::Pose;
use cryosplat_core::reference::{ctf_centered, mse_grad_finite_diff, mse_loss, mse_loss_and_grad, render_model};
use cryosplat_core::render::{ImageStats, ImageTarget, RenderOptions, Renderer, DEFAULT_N_SIGMA};
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::random_rotation;

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
            let s = [rng.uniform_range(smin, smax) * px, rng.uniform_range(smin, smax) * px, rng.uniform_range(smin, smax) * px];
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
    CtfParams { defocus_u_a: 9000.0, defocus_v_a: 7000.0, defocus_angle_deg: 37.0, cs_mm: 2.7, bfactor_a2: 20.0, ..CtfParams::flat() }
}

/// The CTF in the half-plane layout, evaluated here in FFT order for any `d` (row `r` ↔
/// `ky = freq_index(r, d)`, column `c` ↔ `kx = c`).
fn half_plane(p: &CtfParams, d: usize, apix: f64) -> Vec<f32> {
    let w = d / 2 + 1;
    let step = 1.0 / (d as f64 * apix);
    let mut out = vec![0.0f32; d * w];
    for r in 0..d {
        let fy = freq_index(r, d) as f64;
        for c in 0..w {
            out[r * w + c] = p.eval(c as f64 * step, fy * step) as f32;
        }
    }
    out
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
            if d.is_multiple_of(2) {
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
        let (l_ref, g_ref) = mse_loss_and_grad(&model, &pose, d, apix, if with_ctf { Some(&ctf_c) } else { None }, &to_f64(&observed));
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

/// The half-plane layout of a centred `D×D` CTF (even `D`). The column `kx = +D/2` is not on
/// the centred grid; it takes the value at `(−D/2, −ky)`, equal by the CTF's symmetry
/// `CTF(k) = CTF(−k)`. The full complex recipe `real(IFFT(CTF·FFT(x)))` applies
/// `½(CTF(k) + CTF(−k))` at every `k`; on the Nyquist row `ky = −D/2` (its own mirror row) an
/// astigmatic CTF makes the two differ. With `symmetrise` that row holds the average, and the
/// renderer's filter then equals the full recipe exactly.
fn half_from_centred(c: &[f64], d: usize, symmetrise: bool) -> Vec<f32> {
    let (w, h) = (d / 2 + 1, d / 2);
    let at = |kx: i64, ky: i64| c[centred_position(ky, d) * d + centred_position(kx, d)];
    let mut out = vec![0.0f32; d * w];
    for r in 0..d {
        let ky = freq_index(r, d);
        for col in 0..w {
            let kx = col as i64;
            // (kx, ky) with kx = +D/2 read as (−D/2, −ky).
            let v = if col == h { at(-kx, -ky) } else { at(kx, ky) };
            out[r * w + col] = if symmetrise && r == h { (0.5 * (v + at(-kx, ky))) as f32 } else { v as f32 };
        }
    }
    out
}

#[test]
fn analytic_projections_of_the_reference_data() {
    // Scenes in Å (D = 32, 1.5 Å/px) converted to box units; the images are in mass/Å², the
    // same numbers as mass per box² for the box-unit model. Tolerances relative to the image
    // maximum: 1e-5 for the projection (f32 with an 8σ footprint) and for the CTF image with
    // the Nyquist row symmetrised as the full complex recipe has it (see half_from_centred);
    // 2e-4 with the plain half-plane values (the reference data's README estimates 1e-4).
    let v = gmm_projections();
    let (d, apix) = (32usize, 1.5);
    let mut r = renderer(d, NO_CUT, 1);
    let mut out = vec![0.0f32; d * d];
    let mut worst = [0.0f64; 3];
    for scene in v["scenes"].as_array().unwrap() {
        let model = GaussianModel::from_angstrom(&scene_gaussians(scene), d, apix);
        let centred = grid(&scene["ctf"]);
        let half = half_from_centred(&centred, d, false);
        let half_sym = half_from_centred(&centred, d, true);
        for p in scene["poses"].as_array().unwrap() {
            let pose = pose_of(p);
            r.render(&model, &pose, apix, None, &mut out);
            let e = rel_err(&out, &grid(&p["image"]));
            worst[0] = worst[0].max(e);
            let reference = grid(&p["image_ctf"]);
            r.render(&model, &pose, apix, Some(&half_sym), &mut out);
            worst[1] = worst[1].max(rel_err(&out, &reference));
            r.render(&model, &pose, apix, Some(&half), &mut out);
            worst[2] = worst[2].max(rel_err(&out, &reference));
        }
    }
    println!("relative errors (image, image_ctf exact layout, image_ctf plain layout) {worst:?}");
    assert!(
        worst[0] < 1e-5 && worst[1] < 1e-5 && worst[2] < 2e-4,
        "relative errors (image, image_ctf exact layout, image_ctf plain layout) {worst:?}"
    );
}

/// Benchmark-like scene: `n` Gaussians with scales 1.05–1.95 px inside radius 0.35 box.
fn bench_scene(n: usize, d: usize, rng: &mut Rng) -> GaussianModel {
    scene(n, d, 1.05, 1.95, 0.3, rng)
}

#[test]
fn footprint_cutoff_error() {
    // The measurement behind DEFAULT_N_SIGMA: the image error relative to its maximum against
    // no cutoff, on benchmark-like scenes (projected σ about 1.5 px).
    let d = 64;
    let mut rng = Rng::new(21);
    let model = bench_scene(400, d, &mut rng);
    let mut out = vec![0.0f32; d * d];
    let mut exact = vec![0.0f32; d * d];
    let mut errs = Vec::new();
    for n_sigma in [3.0f32, 3.5, 4.0] {
        let mut worst = 0.0f64;
        for _ in 0..4 {
            let pose = Pose { rot: random_rotation(&mut rng), origin_a: [0.0, 0.0] };
            renderer(d, NO_CUT, 1).render(&model, &pose, 1.0, None, &mut exact);
            renderer(d, n_sigma, 1).render(&model, &pose, 1.0, None, &mut out);
            worst = worst.max(rel_err(&out, &to_f64(&exact)));
        }
        errs.push(worst);
    }
    println!("cutoff error relative to the image maximum at 3, 3.5, 4 σ: {:.2e} {:.2e} {:.2e}", errs[0], errs[1], errs[2]);
    assert!(errs[0] < 2e-2 && errs[1] < 4e-3 && errs[2] < 8e-4, "{errs:?}");
    assert!(errs[0] > errs[1] && errs[1] > errs[2]);
    assert_eq!(DEFAULT_N_SIGMA, 3.5);
}

#[test]
fn separable_path_matches_reference() {
    // At 5σ most splats take the separable path and the cut costs < exp(−12.5) ≈ 4e-6 of a
    // splat's peak: image within 2e-5 of the maximum, gradients within 2e-4 per type.
    let mut rng = Rng::new(31);
    let (d, apix) = (48usize, 1.3);
    let model = scene(25, d, 1.0, 2.5, 0.3, &mut rng);
    let pose = Pose { rot: random_rotation(&mut rng), origin_a: [2.0, -1.0] };
    let mut r = renderer(d, 5.0, 2);
    let mut out = vec![0.0f32; d * d];
    pool(2).install(|| r.render(&model, &pose, apix, None, &mut out));
    let e = rel_err(&out, &render_model(&model, &pose, d, apix, None));
    assert!(e < 2e-5, "projection error {e:e}");
    let observed: Vec<f32> = (0..d * d).map(|_| (rng.normal() * 0.05) as f32).collect();
    let p = astigmatic_ctf();
    let mut half = vec![0.0f32; d * (d / 2 + 1)];
    p.fill_rfft(d, apix, &mut half);
    let (_, g_ref) = mse_loss_and_grad(&model, &pose, d, apix, Some(&ctf_centered(&p, d, apix)), &to_f64(&observed));
    let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    let t = ImageTarget { image: &observed, ctf_rfft: &half, pose: &pose, apix };
    pool(2).install(|| r.loss_and_grad(&model, &t, &mut grad));
    for (name, v) in ["mean", "scale", "quaternion", "amplitude"].iter().zip(grad_errors(&grad, &g_ref)) {
        assert!(v < 2e-4, "{name} gradient error {v:e}");
    }
}

#[test]
fn gradient_matches_central_differences() {
    // Every parameter type against central differences (step 1e-5, f64) of the exact loss,
    // on a small scene with an 8σ footprint (so nothing crosses the cut): within 1e-4 of the
    // largest entry of each type. A scale held by the clamp and a zero quaternion get 0.
    let mut rng = Rng::new(41);
    let (d, apix) = (24usize, 2.0);
    let mut model = scene(5, d, 1.0, 2.5, 0.2, &mut rng);
    model.params[1][P_SCALE + 2] = -40.0; // held at SCALE_MIN
    model.params[2][P_QUAT..P_QUAT + 4].copy_from_slice(&[0.0; 4]);
    model.params[3][P_AMP] = -3.0;
    let pose = Pose { rot: random_rotation(&mut rng), origin_a: [0.7, -1.1] };
    let observed: Vec<f32> = (0..d * d).map(|_| (rng.normal() * 0.02) as f32).collect();
    let p = astigmatic_ctf();
    let mut half = vec![0.0f32; d * (d / 2 + 1)];
    p.fill_rfft(d, apix, &mut half);
    let ctf_c = ctf_centered(&p, d, apix);
    let obs = to_f64(&observed);
    let fd = mse_grad_finite_diff(&model, &pose, d, apix, Some(&ctf_c), &obs, 1e-5);
    let mut r = renderer(d, NO_CUT, 1);
    let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    let t = ImageTarget { image: &observed, ctf_rfft: &half, pose: &pose, apix };
    r.loss_and_grad(&model, &t, &mut grad);
    for (name, v) in ["mean", "scale", "quaternion", "amplitude"].iter().zip(grad_errors(&grad, &fd)) {
        assert!(v < 1e-4, "{name} gradient error {v:e} against finite differences");
    }
    assert_eq!(grad[1][P_SCALE + 2], 0.0);
    assert_eq!(&grad[2][P_QUAT..P_QUAT + 4], &[0.0; 4]);
    // Origin shift (Å) and the first two rows of A, against central differences of the
    // exact loss (steps 1e-4 Å and 1e-6).
    let st: ImageStats = r.last_stats()[0];
    let loss_at = |pose: &Pose| mse_loss(&model, pose, d, apix, Some(&ctf_c), &obs);
    let fd_o: [f64; 2] = std::array::from_fn(|k| {
        let (mut a, mut b) = (pose, pose);
        a.origin_a[k] += 1e-4;
        b.origin_a[k] -= 1e-4;
        (loss_at(&a) - loss_at(&b)) / 2e-4
    });
    // The origin gradient is a sum over Gaussians that may cancel: the tolerance is relative
    // to the size of its terms, Σ_g |∂L/∂μ_g| / (D·apix) (∂L/∂o = −Σ_g ∂L/∂m_g / apix and
    // ∂L/∂μ = D·Aᵀ∂L/∂m in box units).
    let terms: f64 = grad.iter().map(|g| (g[0] as f64).hypot(g[1] as f64).hypot(g[2] as f64)).sum::<f64>() / (d as f64 * apix);
    for (k, (&got, &want)) in st.grad_origin_a.iter().zip(&fd_o).enumerate() {
        assert!((got - want).abs() < 1e-5 * terms, "origin {k}: {got} vs {want} (terms {terms})");
    }
    let fd_a: [[f64; 3]; 2] = std::array::from_fn(|rr| {
        std::array::from_fn(|c| {
            let (mut a, mut b) = (pose, pose);
            a.rot[rr][c] += 1e-6;
            b.rot[rr][c] -= 1e-6;
            (loss_at(&a) - loss_at(&b)) / 2e-6
        })
    });
    // Within 1e-4 of the largest entry.
    let m = fd_a.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    for (rr, (got_row, want_row)) in st.grad_rot.iter().zip(&fd_a).enumerate() {
        for (c, (&got, &want)) in got_row.iter().zip(want_row).enumerate() {
            assert!((got - want).abs() < 1e-4 * m, "A[{rr}][{c}]: {got} vs {want}");
        }
    }
}

#[test]
fn minibatch_is_the_sum_of_single_images_on_any_thread_count() {
    // Loss: within 1e-5 relative; gradient: within 1e-5 of the largest entry. The same thread
    // count gives bitwise the same result twice.
    let mut rng = Rng::new(51);
    let d = 40;
    let model = bench_scene(300, d, &mut rng);
    let n_img = 5;
    let poses: Vec<Pose> = (0..n_img).map(|_| Pose { rot: random_rotation(&mut rng), origin_a: [rng.normal(), rng.normal()] }).collect();
    let images: Vec<Vec<f32>> = (0..n_img).map(|_| (0..d * d).map(|_| rng.normal() as f32).collect()).collect();
    let mut half = vec![0.0f32; d * (d / 2 + 1)];
    astigmatic_ctf().fill_rfft(d, 1.0, &mut half);
    let targets: Vec<ImageTarget> =
        (0..n_img).map(|i| ImageTarget { image: &images[i], ctf_rfft: &half, pose: &poses[i], apix: 1.0 }).collect();
    let mut single = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    let mut r1 = renderer(d, DEFAULT_N_SIGMA, 1);
    let mut loss1 = 0.0f64;
    let mut stats1 = Vec::new();
    for t in &targets {
        loss1 += r1.loss_and_grad(&model, t, &mut single) as f64;
        stats1.push(r1.last_stats()[0]);
    }
    let scale = single.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
    for threads in [1usize, 2, 3] {
        let mut r = renderer(d, DEFAULT_N_SIGMA, threads);
        let mut runs = Vec::new();
        for _ in 0..2 {
            let mut g = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
            let l = pool(threads).install(|| r.loss_and_grad_batch(&model, &targets, &mut g));
            runs.push((l, g));
        }
        assert_eq!(runs[0], runs[1], "{threads} threads: not repeatable");
        let (l, g) = &runs[0];
        assert!((*l as f64 / loss1 - 1.0).abs() < 1e-5, "{threads} threads: loss {l} vs {loss1}");
        for (a, b) in g.iter().flatten().zip(single.iter().flatten()) {
            assert!((a - b).abs() <= 1e-5 * scale, "{threads} threads: {a} vs {b}");
        }
        for (a, b) in r.last_stats().iter().zip(&stats1) {
            assert!((a.grad_origin_a[0] - b.grad_origin_a[0]).abs() <= 1e-4 * b.grad_origin_a[0].abs().max(1e-12));
        }
        // Batch of one on this many threads: the same image, the same gradient.
        let mut g = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
        let l = pool(threads).install(|| r.loss_and_grad(&model, &targets[0], &mut g));
        let mut g1 = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
        let l1 = r1.loss_and_grad(&model, &targets[0], &mut g1);
        assert!((l / l1 - 1.0).abs() < 1e-6);
        for (a, b) in g.iter().flatten().zip(g1.iter().flatten()) {
            assert!((a - b).abs() <= 1e-6 * scale);
        }
    }
}

#[test]
fn backward_alone_is_the_gradient_of_an_inner_product() {
    // backward_image(G) adds ∂⟨G, projection⟩/∂θ. Without a CTF, loss_and_grad's gradient is
    // backward_image of 2(ŷ − y)/D² (within 1e-6 of the largest entry).
    let mut rng = Rng::new(61);
    let d = 32;
    let model = bench_scene(60, d, &mut rng);
    let pose = Pose { rot: random_rotation(&mut rng), origin_a: [0.5, 0.25] };
    let observed: Vec<f32> = (0..d * d).map(|_| rng.normal() as f32).collect();
    let mut r = renderer(d, DEFAULT_N_SIGMA, 2);
    let mut pred = vec![0.0f32; d * d];
    pool(2).install(|| r.render(&model, &pose, 1.0, None, &mut pred));
    let gimg: Vec<f32> = pred.iter().zip(&observed).map(|(p, y)| 2.0 * (p - y) / (d * d) as f32).collect();
    let mut a = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    pool(2).install(|| r.backward_image(&model, &pose, 1.0, &gimg, &mut a));
    let mut b = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
    let t = ImageTarget { image: &observed, ctf_rfft: &[], pose: &pose, apix: 1.0 };
    pool(2).install(|| r.loss_and_grad(&model, &t, &mut b));
    let scale = b.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() <= 1e-6 * scale, "{x} vs {y}");
    }
}

#[test]
fn degenerate_gaussians_never_poison_the_image() {
    // Invariants, for scenes mixing ordinary Gaussians with zero, tiny and huge scales, zero
    // quaternions, NaN/Inf parameters, means far outside the box and overflowing amplitudes:
    // the image, loss and gradient are finite; Gaussians with a non-finite parameter are
    // skipped, counted, and get a zero gradient; Gaussians far outside the box change nothing.
    let d = 32;
    let mut rng = Rng::new(71);
    let base = bench_scene(20, d, &mut rng);
    let observed: Vec<f32> = (0..d * d).map(|_| rng.normal() as f32).collect();
    let mut half = vec![0.0f32; d * (d / 2 + 1)];
    astigmatic_ctf().fill_rfft(d, 1.0, &mut half);
    let specials: Vec<f32> = vec![0.0, -1.0, 1e-30, -1e-30, 1e30, -1e30, 50.0, -50.0, 88.0, -88.0, 1e6, -1e6];
    let non_finite = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    for case in 0..200u64 {
        let mut rng = Rng::stream(72, case);
        let mut model = base.clone();
        let mut bad = 0;
        for _ in 0..6 {
            let mut p = base.params[rng.below(base.len() as u64) as usize];
            for _ in 0..1 + rng.below(3) {
                let k = rng.below(PARAMS_PER_GAUSSIAN as u64) as usize;
                p[k] = specials[rng.below(specials.len() as u64) as usize];
            }
            if rng.below(4) == 0 {
                p[rng.below(PARAMS_PER_GAUSSIAN as u64) as usize] = non_finite[rng.below(3) as usize];
                bad += 1;
            }
            model.params.push(p);
        }
        let pose = Pose { rot: random_rotation(&mut rng), origin_a: [rng.normal(), rng.normal()] };
        let threads = 1 + (case % 2) as usize;
        let mut r = renderer(d, DEFAULT_N_SIGMA, threads);
        let mut out = vec![0.0f32; d * d];
        pool(threads).install(|| r.render(&model, &pose, 1.0, Some(&half), &mut out));
        assert!(out.iter().all(|v| v.is_finite()), "case {case}: non-finite image");
        let skipped = r.last_stats()[0].skipped;
        assert!(skipped >= bad, "case {case}: {skipped} skipped, {bad} with non-finite parameters");
        let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
        let t = ImageTarget { image: &observed, ctf_rfft: &half, pose: &pose, apix: 1.0 };
        let loss = pool(threads).install(|| r.loss_and_grad(&model, &t, &mut grad));
        assert!(loss.is_finite(), "case {case}: loss {loss}");
        for (p, g) in model.params.iter().zip(&grad) {
            assert!(g.iter().all(|v| v.is_finite()), "case {case}: gradient {g:?} for {p:?}");
            if !p.iter().all(|v| v.is_finite()) {
                assert_eq!(g, &[0.0; PARAMS_PER_GAUSSIAN]);
            }
        }
        assert_eq!(r.last_stats()[0].skipped, skipped);
    }
    // Far outside the box: nothing changes, bitwise.
    let mut far = base.clone();
    for m in [[5.0f32, 0.0, 0.0], [0.0, -40.0, 3.0], [1e20, 1e20, -1e20]] {
        let mut p = base.params[0];
        p[..3].copy_from_slice(&m);
        far.params.push(p);
    }
    let pose = Pose::default();
    let mut a = vec![0.0f32; d * d];
    let mut b = vec![0.0f32; d * d];
    renderer(d, DEFAULT_N_SIGMA, 1).render(&base, &pose, 1.0, None, &mut a);
    renderer(d, DEFAULT_N_SIGMA, 1).render(&far, &pose, 1.0, None, &mut b);
    assert_eq!(a, b);
}
