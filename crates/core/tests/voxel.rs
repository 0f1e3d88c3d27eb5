//! The voxeliser against the point-sampled reference volume `tests/data/reference/gmm_scene0_vol.mrc`
//! and the analytic projections of `gmm_projections.json` (see that folder's README).

mod common;

use common::{gmm_projections, max_abs, pose_of, read_mrc_f32, scene_gaussians, REFERENCE_DIR};
use cryosplat_core::fsc::correlation;
use cryosplat_core::gaussian::{GaussianA, GaussianModel};
use cryosplat_core::pose::Pose;
use cryosplat_core::projector::project_volume;
use cryosplat_core::reference::project_gaussians_a;
use cryosplat_core::voxel::{voxelize_a, voxelize_model, DEFAULT_CUTOFF_SIGMA};
use serde_json::Value;

const D: usize = 32;
const APIX: f64 = 1.5;

/// The Gaussians of scene `s` of `gmm_projections.json`.
fn scene(data: &Value, s: usize) -> Vec<GaussianA> {
    scene_gaussians(&data["scenes"][s])
}

#[test]
fn matches_the_point_sampled_reference_volume() {
    let (nx, ny, nz, vol) = read_mrc_f32(&format!("{REFERENCE_DIR}gmm_scene0_vol.mrc"));
    assert_eq!((nx, ny, nz), (D, D, D));
    let gs = scene(&gmm_projections(), 0);
    // The file holds V in mass/Å³; the map scale is V·apix.
    let expected: Vec<f64> = vol.iter().map(|&v| v as f64 * APIX).collect();
    let peak = max_abs(&expected);
    for cutoff in [f64::INFINITY, DEFAULT_CUTOFF_SIGMA] {
        let map = voxelize_a(&gs, D, APIX, cutoff);
        let err = map.iter().zip(&expected).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs())) / peak;
        // Untruncated: float32 rounding of the file and of the map. Truncated: the value bound
        // of `truncation_error_is_bounded` (three Gaussians).
        let tol = if cutoff.is_finite() { 3.0 * (-0.5 * cutoff * cutoff).exp() } else { 2e-7 };
        assert!(err < tol, "cutoff {cutoff}: max rel err {err:e}");
    }
}

/// χ²₃ tail: the mass of a 3D Gaussian outside `c` standard deviations.
fn chi3_tail(c: f64) -> f64 {
    // erfc by its continued-fraction-free series is not in std; integrate the density instead.
    let n = 200_000;
    let h = (c + 40.0 - c) / n as f64;
    let dens = |r: f64| (2.0 / std::f64::consts::PI).sqrt() * r * r * (-0.5 * r * r).exp();
    (0..n).map(|k| dens(c + (k as f64 + 0.5) * h) * h).sum()
}

#[test]
fn truncation_error_is_bounded() {
    // Against the untruncated map: the value error at any voxel is below e^(−c²/2) of the
    // largest single-Gaussian peak, and the missing mass below the χ²₃ tail of the total.
    let gs = scene(&gmm_projections(), 0);
    let exact = voxelize_a(&gs, D, APIX, f64::INFINITY);
    let exact_sum: f64 = exact.iter().map(|&v| v as f64).sum();
    let peak: f64 = exact.iter().fold(0.0f64, |m, &v| m.max(v as f64));
    // Sum of the Gaussians' own peaks in map units (mass/((2π)^3/2 √|Σ|)·apix), relative to
    // the map's peak: the truncation error at one voxel is at most e^(−c²/2) times this.
    let peaks: f64 = gs
        .iter()
        .map(|g| {
            let c = g.cov_a2;
            let det = c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1]) - c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0])
                + c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0]);
            g.mass / ((2.0 * std::f64::consts::PI).powf(1.5) * det.sqrt()) * APIX
        })
        .sum::<f64>()
        / peak;
    let mut prev = f64::INFINITY;
    for c in [3.0, 4.0, 4.5, 5.0] {
        let map = voxelize_a(&gs, D, APIX, c);
        let err = map.iter().zip(&exact).fold(0.0f64, |m, (a, b)| m.max((a - b).abs() as f64)) / peak;
        let lost = (exact_sum - map.iter().map(|&v| v as f64).sum::<f64>()) / exact_sum;
        assert!(err <= (-0.5 * c * c).exp() * peaks, "c = {c}: value error {err:e}");
        assert!(lost >= -1e-7 && lost <= chi3_tail(c) * 1.05, "c = {c}: lost mass {lost:e} vs {:e}", chi3_tail(c));
        assert!(err < prev);
        prev = err;
        eprintln!("cutoff {c}σ: max value error {err:.2e} of peak, lost mass {lost:.2e}");
    }
}

#[test]
fn column_sums_equal_the_reference_projection() {
    // Identity pose: summing the map along z is the projection (module docs), up to the
    // truncation and the Riemann sum, which is negligible for σ ≥ 1.2 voxels.
    let data = gmm_projections();
    for s in 0..4 {
        let gs = scene(&data, s);
        let map = voxelize_a(&gs, D, APIX, DEFAULT_CUTOFF_SIGMA);
        let mut col = vec![0.0f64; D * D];
        for k in 0..D {
            for p in 0..D * D {
                col[p] += map[k * D * D + p] as f64;
            }
        }
        let img = project_gaussians_a(&gs, &Pose::default(), D, APIX);
        let err = col.iter().zip(&img).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / max_abs(&img);
        assert!(err < 2e-4, "scene {s}: column sums vs projection: {err:e}");
    }
}

#[test]
fn map_projections_match_the_reference_projector() {
    // Every pose of every scene: the voxelised map projected by the real-space projector
    // (trilinear, oversampled ×2 along the ray) against the exact analytic images. Identity
    // poses sample the map at grid points and are exact; rotated poses interpolate, and
    // trilinear interpolation widens Gaussians 1.2–2.7 voxels wide by up to ~10% at the peak.
    let data = gmm_projections();
    let (mut worst_cc, mut worst_l2, mut worst_identity) = (1.0f64, 0.0f64, 0.0f64);
    for s in 0..4 {
        let gs = scene(&data, s);
        let map = voxelize_a(&gs, D, APIX, DEFAULT_CUTOFF_SIGMA);
        for p in data["scenes"][s]["poses"].as_array().unwrap() {
            let pose = pose_of(p);
            let mut img32 = vec![0.0f32; D * D];
            project_volume(&map, D, &pose.rot, [pose.origin_a[0] / APIX, pose.origin_a[1] / APIX], 2, &mut img32);
            let img: Vec<f64> = img32.iter().map(|&v| v as f64).collect();
            let exact = project_gaussians_a(&gs, &pose, D, APIX);
            let exact32: Vec<f32> = exact.iter().map(|&v| v as f32).collect();
            if pose.rot == cryosplat_core::pose::IDENTITY {
                let err = img.iter().zip(&exact).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / max_abs(&exact);
                worst_identity = worst_identity.max(err);
            }
            let l2 =
                (img.iter().zip(&exact).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / exact.iter().map(|b| b * b).sum::<f64>()).sqrt();
            worst_l2 = worst_l2.max(l2);
            worst_cc = worst_cc.min(correlation(&img32, &exact32));
        }
    }
    eprintln!("map projections: worst cc {worst_cc:.6}, worst relative L2 {worst_l2:.2e}, identity {worst_identity:.2e}");
    assert!(worst_identity < 2e-4, "identity poses: {worst_identity:e}");
    assert!(worst_cc > 0.995, "worst correlation {worst_cc}");
    assert!(worst_l2 < 0.08, "worst relative L2 error {worst_l2:e}");
}

#[test]
fn model_voxelisation_is_in_box_units_and_thread_independent() {
    let gs = scene(&gmm_projections(), 1);
    let model = GaussianModel::from_angstrom(&gs, D, APIX);
    let map = voxelize_model(&model, D);
    // V_box/D equals V_Å·apix: the same map as voxelising in Å, to f32 parameter precision.
    let in_a = voxelize_a(&gs, D, APIX, DEFAULT_CUTOFF_SIGMA);
    let peak = in_a.iter().fold(0.0f32, |m, &v| m.max(v));
    let err = map.iter().zip(&in_a).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / peak;
    assert!(err < 1e-4, "{err:e}");
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    assert_eq!(one.install(|| voxelize_model(&model, D)), map);
}
