//! The reference projector: slow, f64, obviously correct. It is the yardstick the fast
//! renderer, the voxeliser and the simulator are tested against; nothing in a training loop
//! calls it.
//!
//! # Image formation
//!
//! Following the project's contract, a Gaussian with mean `μ` (Å), covariance `Σ` (Å²) and
//! mass `w` projects under pose `A`, origin `o` (Å) to the 2D Gaussian
//!
//! * mean `m = (A·μ)_xy − o`, covariance `C` = top-left 2×2 block of `A Σ Aᵀ`,
//! * value `w·(2π)⁻¹|C|^-½ exp(−½ (p−m)ᵀ C⁻¹ (p−m))` at pixel position `p`,
//!
//! where pixel `(i, j)` of a `D×D` image sits at `p = ((j − D/2)·apix, (i − D/2)·apix)`. Every
//! Gaussian is evaluated at every pixel, with no cutoff. Images are `Vec<f64>` indexed
//! `[i*D + j]` (row `i` ↔ y). Image values are mass per Å² for Gaussians in Å; for a
//! [`GaussianModel`] in box units the values are identical (see [`crate::gaussian`]: mass is
//! `w·(D·apix)²`).
//!
//! The CTF is applied as `real(IFFT(CTF·FFT(image)))` on the centred grid with a full complex
//! f64 FFT: `fftshift(real(ifft2(fft2(ifftshift(image))·ifftshift(ctf))))`, the CTF given as a
//! centred `D×D` array (DC at `[D/2][D/2]`, row ↔ ky, column ↔ kx).
//!
//! # Loss and gradient
//!
//! [`mse_loss_and_grad`] defines the loss the renderer is checked against:
//!
//! `L = (1/D²) Σ_p (ŷ_p − y_p)²`, the **mean** over the `D²` pixels of the squared difference
//! between the predicted image `ŷ` (projection, then CTF if one is given) and the observed
//! image `y`.
//!
//! Its gradient with respect to the **raw** parameters of every Gaussian (the
//! [`PARAMS_PER_GAUSSIAN`] layout of [`crate::gaussian`], through the softplus/clamp and
//! quaternion-normalisation activations) is computed analytically in f64 by the chain rule,
//! pixel by pixel; [`mse_grad_finite_diff`] gives the same numbers by central finite
//! differences and the tests check that the two agree. A loss summed over pixels instead of
//! averaged has `D²` times this gradient.

#![allow(clippy::needless_range_loop)] // index loops mirror the matrix algebra

use crate::ctf::CtfParams;
use crate::fourier::{centred_index, centred_position, freq_index};
use crate::gaussian::{
    quat_to_rotation, scale_activation_f64, softplus_grad_f64, GaussianA, GaussianModel, PhysicalGaussian, PARAMS_PER_GAUSSIAN, P_AMP,
    P_MEAN, P_QUAT, P_SCALE,
};
use crate::pose::{Mat3, Pose};
use rustfft::num_complex::Complex64;
use rustfft::FftPlanner;
use std::f64::consts::PI;

/// A Gaussian's projection under a pose: mean `m` (Å), the inverse of `C` and the
/// normalisation `w/(2π√|C|)`.
struct Projected {
    m: [f64; 2],
    cinv: [[f64; 2]; 2],
    norm: f64,
}

fn project_one(g: &GaussianA, pose: &Pose) -> Projected {
    let a = &pose.rot;
    let mut m = [0.0; 2];
    for r in 0..2 {
        m[r] = a[r][0] * g.mean_a[0] + a[r][1] * g.mean_a[1] + a[r][2] * g.mean_a[2] - pose.origin_a[r];
    }
    // C = B Σ Bᵀ with B the first two rows of A.
    let mut c = sandwich(&[a[0], a[1]], &g.cov_a2);
    let sym = 0.5 * (c[0][1] + c[1][0]);
    c[0][1] = sym;
    c[1][0] = sym;
    let det = c[0][0] * c[1][1] - c[0][1] * c[1][0];
    assert!(det > 0.0, "projected covariance is not positive definite: {c:?}");
    let cinv = [[c[1][1] / det, -c[0][1] / det], [-c[1][0] / det, c[0][0] / det]];
    Projected { m, cinv, norm: g.mass / (2.0 * PI * det.sqrt()) }
}

/// `M·X·Mᵀ` for an `R×K` matrix `M` and a `K×K` matrix `X`: entry `(r, s)` is
/// `Σ_k Σ_l M[r][k]·X[k][l]·M[s][l]`, summed in that order.
fn sandwich<const R: usize, const K: usize>(m: &[[f64; K]; R], x: &[[f64; K]; K]) -> [[f64; R]; R] {
    let mut out = [[0.0; R]; R];
    for r in 0..R {
        for s in 0..R {
            let mut acc = 0.0;
            for k in 0..K {
                for l in 0..K {
                    acc += m[r][k] * x[k][l] * m[s][l];
                }
            }
            out[r][s] = acc;
        }
    }
    out
}

/// Pixel position (x, y) in Å of row `i`, column `j` on the FFT-aligned grid.
#[inline]
fn pixel_pos(i: usize, j: usize, d: usize, apix: f64) -> [f64; 2] {
    [centred_index(j, d) as f64 * apix, centred_index(i, d) as f64 * apix]
}

/// The projection image (no CTF) of Gaussians in Å under `pose`, on a `d×d` grid of `apix` Å:
/// every Gaussian at every pixel, no cutoff. Values in mass/Å².
///
/// Panics if a projected covariance is not positive definite.
pub fn project_gaussians_a(gaussians: &[GaussianA], pose: &Pose, d: usize, apix: f64) -> Vec<f64> {
    let mut img = vec![0.0; d * d];
    for g in gaussians {
        let p = project_one(g, pose);
        for i in 0..d {
            for j in 0..d {
                let pos = pixel_pos(i, j, d, apix);
                let dx = pos[0] - p.m[0];
                let dy = pos[1] - p.m[1];
                let q = dx * (p.cinv[0][0] * dx + p.cinv[0][1] * dy) + dy * (p.cinv[1][0] * dx + p.cinv[1][1] * dy);
                img[i * d + j] += p.norm * (-0.5 * q).exp();
            }
        }
    }
    img
}

/// Multiply the centred 2D spectrum of a `d×d` image by `filter` (centred, DC at
/// `[d/2][d/2]`) and return the real part of the inverse, all in full complex f64:
/// `fftshift(real(ifft2(fft2(ifftshift(image))·ifftshift(filter))))`.
pub fn apply_filter_centered(image: &[f64], filter: &[f64], d: usize) -> Vec<f64> {
    assert_eq!(image.len(), d * d, "image is not {d}×{d}");
    assert_eq!(filter.len(), d * d, "filter is not {d}×{d}");
    // ifftshift: FFT position u takes the centred sample at the same frequency index (and
    // fftshift puts it back).
    let centred = |u: usize| centred_position(freq_index(u, d), d);
    let mut buf = vec![Complex64::new(0.0, 0.0); d * d];
    let mut filt = vec![0.0; d * d];
    for u in 0..d {
        for v in 0..d {
            let c = centred(u) * d + centred(v);
            buf[u * d + v] = Complex64::new(image[c], 0.0);
            filt[u * d + v] = filter[c];
        }
    }
    let mut planner = FftPlanner::<f64>::new();
    fft2(&mut buf, d, planner.plan_fft_forward(d).as_ref());
    for (b, &f) in buf.iter_mut().zip(filt.iter()) {
        *b *= f;
    }
    fft2(&mut buf, d, planner.plan_fft_inverse(d).as_ref());
    let n = (d * d) as f64;
    let mut out = vec![0.0; d * d];
    for u in 0..d {
        for v in 0..d {
            out[centred(u) * d + centred(v)] = buf[u * d + v].re / n;
        }
    }
    out
}

/// In-place unnormalised 2D transform of a `d×d` complex array (rows, then columns).
fn fft2(buf: &mut [Complex64], d: usize, plan: &dyn rustfft::Fft<f64>) {
    for row in buf.chunks_exact_mut(d) {
        plan.process(row);
    }
    let mut col = vec![Complex64::new(0.0, 0.0); d];
    for j in 0..d {
        for i in 0..d {
            col[i] = buf[i * d + j];
        }
        plan.process(&mut col);
        for i in 0..d {
            buf[i * d + j] = col[i];
        }
    }
}

/// The CTF on the centred `d×d` grid of `apix` Å (DC at `[d/2][d/2]`, row ↔ ky, column ↔ kx),
/// evaluated in f64 with [`CtfParams::eval`]: the `ctf` argument of the functions below.
pub fn ctf_centered(params: &CtfParams, d: usize, apix: f64) -> Vec<f64> {
    let step = 1.0 / (d as f64 * apix);
    (0..d * d).map(|p| params.eval(centred_index(p % d, d) as f64 * step, centred_index(p / d, d) as f64 * step)).collect()
}

/// The image of Gaussians in Å: projection, then the centred CTF if given.
pub fn image_a(gaussians: &[GaussianA], pose: &Pose, d: usize, apix: f64, ctf: Option<&[f64]>) -> Vec<f64> {
    let img = project_gaussians_a(gaussians, pose, d, apix);
    match ctf {
        Some(c) => apply_filter_centered(&img, c, d),
        None => img,
    }
}

/// The image of a box-unit [`GaussianModel`] (activations evaluated in f64): projection, then
/// the centred CTF if given. `pose.origin_a` is in Å; `d` and `apix` fix the box. Pixel values
/// are the same as the model's own (box-unit) projection values.
pub fn render_model(model: &GaussianModel, pose: &Pose, d: usize, apix: f64, ctf: Option<&[f64]>) -> Vec<f64> {
    image_a(&model.to_angstrom(d, apix), pose, d, apix, ctf)
}

fn raw_f64(model: &GaussianModel) -> Vec<[f64; PARAMS_PER_GAUSSIAN]> {
    model
        .params
        .iter()
        .map(|p| {
            let mut r = [0.0f64; PARAMS_PER_GAUSSIAN];
            for (a, &b) in r.iter_mut().zip(p.iter()) {
                *a = b as f64;
            }
            r
        })
        .collect()
}

fn mse(pred: &[f64], observed: &[f64]) -> f64 {
    pred.iter().zip(observed).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / pred.len() as f64
}

fn loss_of_raw(raw: &[[f64; PARAMS_PER_GAUSSIAN]], pose: &Pose, d: usize, apix: f64, ctf: Option<&[f64]>, observed: &[f64]) -> f64 {
    let gs: Vec<GaussianA> = raw.iter().map(|p| PhysicalGaussian::from_raw_f64(p).to_angstrom(d, apix)).collect();
    mse(&image_a(&gs, pose, d, apix, ctf), observed)
}

/// The loss `L = (1/D²) Σ_p (ŷ_p − y_p)²` of the model's image `ŷ` (see [`render_model`])
/// against `observed` (`d×d`, row-major).
pub fn mse_loss(model: &GaussianModel, pose: &Pose, d: usize, apix: f64, ctf: Option<&[f64]>, observed: &[f64]) -> f64 {
    assert_eq!(observed.len(), d * d, "observed image is not {d}×{d}");
    loss_of_raw(&raw_f64(model), pose, d, apix, ctf, observed)
}

/// ∂R/∂q for the rotation of a unit quaternion `q = (w, x, y, z)` ([`quat_to_rotation`]):
/// `out[c][r][s] = ∂R[r][s]/∂q[c]`.
fn rotation_jacobian(q: [f64; 4]) -> [Mat3; 4] {
    let [w, x, y, z] = q;
    let t = 2.0;
    [
        [[0.0, -t * z, t * y], [t * z, 0.0, -t * x], [-t * y, t * x, 0.0]],
        [[0.0, t * y, t * z], [t * y, -2.0 * t * x, -t * w], [t * z, t * w, -2.0 * t * x]],
        [[-2.0 * t * y, t * x, t * w], [t * x, 0.0, t * z], [-t * w, t * z, -2.0 * t * y]],
        [[-2.0 * t * z, -t * w, t * x], [t * w, -2.0 * t * z, t * y], [t * x, t * y, 0.0]],
    ]
}

/// The loss of [`mse_loss`] and its gradient with respect to every raw parameter, computed
/// analytically in f64 (chain rule through the projection, the box→Å conversion and the
/// activations). `grad[g][k]` is `∂L/∂params[g][k]`; parameters held by a clamp (a scale at
/// `SCALE_MIN`/`SCALE_MAX`) get zero, and so does the quaternion of a Gaussian whose raw
/// quaternion is zero.
pub fn mse_loss_and_grad(
    model: &GaussianModel,
    pose: &Pose,
    d: usize,
    apix: f64,
    ctf: Option<&[f64]>,
    observed: &[f64],
) -> (f64, Vec<[f64; PARAMS_PER_GAUSSIAN]>) {
    assert_eq!(observed.len(), d * d, "observed image is not {d}×{d}");
    let raw = raw_f64(model);
    let phys: Vec<PhysicalGaussian> = raw.iter().map(PhysicalGaussian::from_raw_f64).collect();
    let gs: Vec<GaussianA> = phys.iter().map(|g| g.to_angstrom(d, apix)).collect();
    let pred = image_a(&gs, pose, d, apix, ctf);
    let loss = mse(&pred, observed);
    // ∂L/∂(projection): the transpose of the CTF operator applied to 2(ŷ − y)/D². For a real
    // filter H the operator x ↦ real(F⁻¹ H F x) has the matrix (1/N) Σ_k H_k cos(2π k·(a−b)/N),
    // which is symmetric, so the transpose is the operator itself (even where H(k) ≠ H(−k)).
    let n = (d * d) as f64;
    let resid: Vec<f64> = pred.iter().zip(observed).map(|(a, b)| 2.0 * (a - b) / n).collect();
    let dl_dimg = match ctf {
        Some(c) => apply_filter_centered(&resid, c, d),
        None => resid,
    };
    let l = d as f64 * apix;
    let a = &pose.rot;
    let mut grads = Vec::with_capacity(gs.len());
    for (gi, g) in gs.iter().enumerate() {
        let p = project_one(g, pose);
        // Accumulate ∂L/∂mass, ∂L/∂m (2) and ∂L/∂C (2×2, entries treated as independent).
        let mut g_mass = 0.0;
        let mut g_m = [0.0; 2];
        let mut g_c = [[0.0; 2]; 2];
        for i in 0..d {
            for j in 0..d {
                let e = dl_dimg[i * d + j];
                if e == 0.0 {
                    continue;
                }
                let pos = pixel_pos(i, j, d, apix);
                let dv = [pos[0] - p.m[0], pos[1] - p.m[1]];
                let u = [p.cinv[0][0] * dv[0] + p.cinv[0][1] * dv[1], p.cinv[1][0] * dv[0] + p.cinv[1][1] * dv[1]];
                let q = dv[0] * u[0] + dv[1] * u[1];
                let f = p.norm * (-0.5 * q).exp();
                g_mass += e * f / g.mass;
                g_m[0] += e * f * u[0];
                g_m[1] += e * f * u[1];
                for r in 0..2 {
                    for s in 0..2 {
                        g_c[r][s] += e * f * 0.5 * (u[r] * u[s] - p.cinv[r][s]);
                    }
                }
            }
        }
        // Back to Å: m = (A μ)_xy − o, C = B Σ Bᵀ with B = A[0..2].
        let mut g_mu_a = [0.0; 3];
        for k in 0..3 {
            g_mu_a[k] = a[0][k] * g_m[0] + a[1][k] * g_m[1];
        }
        let bt = [[a[0][0], a[1][0]], [a[0][1], a[1][1]], [a[0][2], a[1][2]]];
        let g_sigma_a = sandwich(&bt, &g_c);
        // Å → box: μ_Å = L μ, Σ_Å = L² Σ, mass = L² w.
        let ph = &phys[gi];
        let g_mu: Vec<f64> = g_mu_a.iter().map(|v| v * l).collect();
        let mut g_sigma = g_sigma_a;
        for row in g_sigma.iter_mut() {
            for v in row.iter_mut() {
                *v *= l * l;
            }
        }
        let g_amp = g_mass * l * l;
        // Σ = R diag(s²) Rᵀ.
        let r = quat_to_rotation(ph.quat);
        let s2: Vec<f64> = ph.scales.iter().map(|s| s * s).collect();
        let mut g_s = [0.0; 3];
        for k in 0..3 {
            let mut acc = 0.0;
            for i in 0..3 {
                for j in 0..3 {
                    acc += g_sigma[i][j] * r[i][k] * r[j][k];
                }
            }
            g_s[k] = 2.0 * ph.scales[k] * acc;
        }
        // ∂L/∂R = (G + Gᵀ) R diag(s²).
        let mut g_r = [[0.0; 3]; 3];
        for i in 0..3 {
            for k in 0..3 {
                let mut acc = 0.0;
                for j in 0..3 {
                    acc += (g_sigma[i][j] + g_sigma[j][i]) * r[j][k];
                }
                g_r[i][k] = acc * s2[k];
            }
        }
        let jac = rotation_jacobian(ph.quat);
        let mut g_q = [0.0; 4];
        for c in 0..4 {
            let mut acc = 0.0;
            for i in 0..3 {
                for k in 0..3 {
                    acc += g_r[i][k] * jac[c][i][k];
                }
            }
            g_q[c] = acc;
        }
        // Raw parameters.
        let rp = &raw[gi];
        let mut out = [0.0; PARAMS_PER_GAUSSIAN];
        for k in 0..3 {
            out[P_MEAN + k] = g_mu[k];
            out[P_SCALE + k] = g_s[k] * scale_activation_f64(rp[P_SCALE + k]).1;
        }
        let qr = [rp[P_QUAT], rp[P_QUAT + 1], rp[P_QUAT + 2], rp[P_QUAT + 3]];
        let nq = (qr[0] * qr[0] + qr[1] * qr[1] + qr[2] * qr[2] + qr[3] * qr[3]).sqrt();
        if nq > 0.0 && nq.is_finite() {
            // q = q̂/|q̂|: ∂q/∂q̂ = (I − q qᵀ)/|q̂|.
            let q = ph.quat;
            let dot: f64 = (0..4).map(|c| q[c] * g_q[c]).sum();
            for c in 0..4 {
                out[P_QUAT + c] = (g_q[c] - q[c] * dot) / nq;
            }
        }
        out[P_AMP] = g_amp * softplus_grad_f64(rp[P_AMP]);
        grads.push(out);
    }
    (loss, grads)
}

/// The gradient of [`mse_loss`] by central finite differences in f64 on the raw parameters
/// (step `step` on every parameter; `1e-5` is a good choice for box-unit models). Slow: two
/// full renders per parameter. An independent check of [`mse_loss_and_grad`].
pub fn mse_grad_finite_diff(
    model: &GaussianModel,
    pose: &Pose,
    d: usize,
    apix: f64,
    ctf: Option<&[f64]>,
    observed: &[f64],
    step: f64,
) -> Vec<[f64; PARAMS_PER_GAUSSIAN]> {
    assert_eq!(observed.len(), d * d, "observed image is not {d}×{d}");
    let mut raw = raw_f64(model);
    let mut grads = vec![[0.0; PARAMS_PER_GAUSSIAN]; raw.len()];
    for g in 0..raw.len() {
        for k in 0..PARAMS_PER_GAUSSIAN {
            let x0 = raw[g][k];
            raw[g][k] = x0 + step;
            let lp = loss_of_raw(&raw, pose, d, apix, ctf, observed);
            raw[g][k] = x0 - step;
            let lm = loss_of_raw(&raw, pose, d, apix, ctf, observed);
            raw[g][k] = x0;
            grads[g][k] = (lp - lm) / (2.0 * step);
        }
    }
    grads
}
