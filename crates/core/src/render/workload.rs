//! The fixed workload of the renderer's benchmarks (`cryosplat bench` and the criterion
//! benches of this crate), so that both measure the same thing.
//!
//! Model: random anisotropic Gaussians with scales of 1.05–1.95 px along their axes (projected
//! σ about 1.5 px), random orientations, amplitudes 0.5–1.5, means uniform inside the central
//! sphere of radius 0.35 box. Images: random poses over SO(3), origin shifts up to 3 px, an
//! astigmatic CTF each (300 kV, Cs 2.7 mm, Q0 0.1, defocus 0.8–2.5 µm) in the half-plane
//! layout, and white-noise targets, at 1 Å/px. Everything comes from the caller's seeded
//! generator.

use crate::ctf::{CtfGrid, CtfParams};
use crate::gaussian::GaussianModel;
use crate::pose::Pose;
use crate::rng::Rng;
use crate::rotation::random_rotation;

/// The workload's random model (box units, see the module docs).
pub fn model(n: usize, d: usize, rng: &mut Rng) -> GaussianModel {
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

/// One CTF of the workload: 300 kV, Cs 2.7 mm, Q0 0.1, defocus 0.8–2.5 µm with 400 Å of
/// astigmatism at a random angle, drawn from `rng` (defocus, then angle).
pub fn ctf_params(rng: &mut Rng) -> CtfParams {
    let df = rng.uniform_range(8000.0, 25000.0);
    CtfParams {
        voltage_kv: 300.0,
        cs_mm: 2.7,
        amp_contrast: 0.1,
        defocus_u_a: df + 200.0,
        defocus_v_a: df - 200.0,
        defocus_angle_deg: rng.uniform_range(-180.0, 180.0),
        phase_shift_deg: 0.0,
        bfactor_a2: 0.0,
        scale: 1.0,
    }
}

/// Poses, half-plane CTFs and target images of the workload (`n` of each, box `d`, 1 Å/px).
pub fn images(n: usize, d: usize, rng: &mut Rng) -> (Vec<Pose>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let apix = 1.0;
    let grid = CtfGrid::new(d, apix);
    let poses = (0..n)
        .map(|_| Pose { rot: random_rotation(rng), origin_a: [rng.uniform_range(-3.0, 3.0), rng.uniform_range(-3.0, 3.0)] })
        .collect();
    let ctfs = (0..n)
        .map(|_| {
            let mut out = vec![0.0f32; grid.len()];
            grid.fill_rfft(&ctf_params(rng), &mut out);
            out
        })
        .collect();
    let images = (0..n).map(|_| (0..d * d).map(|_| rng.normal() as f32).collect()).collect();
    (poses, ctfs, images)
}
