//! The real-space map projector against cryoDRGN's toy projections (tests/data/cryodrgn-toy,
//! noiseless projections of a known volume at known rotations; see its README for the exact rule).

mod common;

use common::read_mrc_f32;
use cryosplat_core::fsc::correlation;
use cryosplat_core::pose::{transpose, Mat3};
use cryosplat_core::projector::{project_stack, project_volume, trilinear};

const TOY: &str = common::TOY_DIR;

/// The rotation matrices of toy_angles.pkl: a pickled C-ordered float32 numpy array of shape
/// (1000, 3, 3), whose raw data is one BINBYTES record of 36000 bytes.
fn read_toy_rotations() -> Vec<Mat3> {
    let bytes = std::fs::read(format!("{TOY}toy_angles.pkl")).expect("read pkl");
    let mut tag = vec![b'B'];
    tag.extend_from_slice(&36000u32.to_le_bytes());
    let at = bytes.windows(5).position(|w| w == tag.as_slice()).expect("BINBYTES record of 36000 bytes");
    assert!(bytes.windows(5).skip(at + 1).all(|w| w != tag.as_slice()), "a single data record");
    let vals: Vec<f64> = bytes[at + 5..at + 5 + 36000].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect();
    vals.chunks_exact(9).map(|m| [[m[0], m[1], m[2]], [m[3], m[4], m[5]], [m[6], m[7], m[8]]]).collect()
}

/// RELION's A = Rz(psi)·Ry(tilt)·Rz(rot) from degrees (the project's contract).
fn euler_zyz(rot: f64, tilt: f64, psi: f64) -> Mat3 {
    let rz = |a: f64| {
        let (s, c) = a.to_radians().sin_cos();
        [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]
    };
    let (s, c) = tilt.to_radians().sin_cos();
    let ry = [[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]];
    cryosplat_core::pose::mat_mul(&rz(psi), &cryosplat_core::pose::mat_mul(&ry, &rz(rot)))
}

/// Rotations from the DERIVED STAR's Euler angles (columns found by label).
fn read_star_rotations() -> Vec<Mat3> {
    let text = std::fs::read_to_string(format!("{TOY}toy_projections.DERIVED.star")).expect("read star");
    let block = &text[text.find("data_particles").expect("particles block")..];
    let labels: Vec<&str> = block.lines().filter(|l| l.starts_with("_rln")).map(|l| l.split_whitespace().next().unwrap()).collect();
    let col = |name: &str| labels.iter().position(|l| *l == name).expect(name);
    let (cr, ct, cp) = (col("_rlnAngleRot"), col("_rlnAngleTilt"), col("_rlnAnglePsi"));
    block
        .lines()
        .filter(|l| l.contains('@'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let v = |c: usize| f[c].parse::<f64>().unwrap();
            euler_zyz(v(cr), v(ct), v(cp))
        })
        .collect()
}

#[test]
fn reproduces_the_toy_projections() {
    let (d, _, _, vol) = read_mrc_f32(&format!("{TOY}toymodel_small_nocenter.mrc"));
    let (nx, ny, nz, imgs) = read_mrc_f32(&format!("{TOY}toy_projections.mrcs"));
    assert_eq!((nx, ny, nz), (d, d, 1000));
    let rots = read_toy_rotations();
    assert_eq!(rots.len(), 1000);
    let ours = project_stack(&vol, d, &rots, None, 1);
    let (mut worst_cc, mut worst_abs) = (1.0f64, 0.0f64);
    for k in 0..1000 {
        let a = &ours[k * d * d..(k + 1) * d * d];
        let b = &imgs[k * d * d..(k + 1) * d * d];
        worst_cc = worst_cc.min(correlation(a, b));
        worst_abs = a.iter().zip(b).fold(worst_abs, |m, (x, y)| m.max((x - y).abs() as f64));
    }
    // The README measured a max abs difference of 1.06e-5 (float32 rounding) for this rule.
    assert!(worst_cc > 0.999999, "worst correlation {worst_cc}");
    assert!(worst_abs < 1e-4, "worst abs difference {worst_abs}");
}

#[test]
fn star_euler_angles_give_the_same_projections() {
    let (d, _, _, vol) = read_mrc_f32(&format!("{TOY}toymodel_small_nocenter.mrc"));
    let (_, _, _, imgs) = read_mrc_f32(&format!("{TOY}toy_projections.mrcs"));
    let rots = read_star_rotations();
    assert_eq!(rots.len(), 1000);
    let ours = project_stack(&vol, d, &rots[..200], None, 1);
    for k in 0..200 {
        let cc = correlation(&ours[k * d * d..(k + 1) * d * d], &imgs[k * d * d..(k + 1) * d * d]);
        assert!(cc >= 0.99, "image {k}: correlation {cc}");
    }
}

#[test]
fn transposed_rotations_do_not_match() {
    // The test above can fail: with Aᵀ instead of A the correlation drops (README: mean 0.46).
    let (d, _, _, vol) = read_mrc_f32(&format!("{TOY}toymodel_small_nocenter.mrc"));
    let (_, _, _, imgs) = read_mrc_f32(&format!("{TOY}toy_projections.mrcs"));
    let rots: Vec<Mat3> = read_toy_rotations()[..100].iter().map(transpose).collect();
    let ours = project_stack(&vol, d, &rots, None, 1);
    let mean: f64 =
        (0..100).map(|k| correlation(&ours[k * d * d..(k + 1) * d * d], &imgs[k * d * d..(k + 1) * d * d])).sum::<f64>() / 100.0;
    assert!(mean < 0.7, "mean correlation with Aᵀ: {mean}");
}

#[test]
fn integer_origin_moves_the_image_by_minus_origin() {
    let (d, _, _, vol) = read_mrc_f32(&format!("{TOY}toymodel_small_nocenter.mrc"));
    let rot = read_toy_rotations()[7];
    let mut a = vec![0.0f32; d * d];
    let mut b = vec![0.0f32; d * d];
    project_volume(&vol, d, &rot, [0.0, 0.0], 1, &mut a);
    // o = (+2, −3) px: the centre moves to c − o = (c − 2, c + 3), so b[i][j] = a[i − 3][j + 2].
    project_volume(&vol, d, &rot, [2.0, -3.0], 1, &mut b);
    let mut n = 0;
    for i in 3..d {
        for j in 0..d - 2 {
            assert!((b[i * d + j] - a[(i - 3) * d + j + 2]).abs() < 1e-5, "({i}, {j})");
            n += 1;
        }
    }
    assert!(n > 0 && a.iter().any(|&v| v > 1.0));
}

#[test]
fn oversampling_keeps_the_integral_and_stack_is_thread_independent() {
    let (d, _, _, vol) = read_mrc_f32(&format!("{TOY}toymodel_small_nocenter.mrc"));
    let rots = read_toy_rotations()[..8].to_vec();
    let one = project_stack(&vol, d, &rots, None, 1);
    let four = project_stack(&vol, d, &rots, None, 4);
    // The image integral is close to the volume integral (180 unit voxels) for both: sampling
    // the interpolated binary volume on a rotated lattice is exact only on average.
    for k in 0..8 {
        for img in [&one, &four] {
            let s: f64 = img[k * d * d..(k + 1) * d * d].iter().map(|&v| v as f64).sum();
            assert!((s - 180.0).abs() < 0.01 * 180.0, "image {k}: integral {s}");
        }
        let cc = correlation(&one[k * d * d..(k + 1) * d * d], &four[k * d * d..(k + 1) * d * d]);
        assert!(cc > 0.97, "{cc}");
    }
    let serial = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let again = serial.install(|| project_stack(&vol, d, &rots, None, 4));
    assert_eq!(again, four);
}

#[test]
fn trilinear_interpolates_between_voxels_and_is_zero_outside() {
    let d = 4;
    let vol: Vec<f32> = (0..d * d * d).map(|v| v as f32).collect();
    // Linear data are reproduced exactly inside: value = x + 4y + 16z.
    assert!((trilinear(&vol, d, 1.25, 2.5, 0.75) - (1.25 + 10.0 + 12.0)).abs() < 1e-12);
    assert_eq!(trilinear(&vol, d, -1.5, 1.0, 1.0), 0.0);
    assert_eq!(trilinear(&vol, d, 1.0, 1.0, 4.0), 0.0);
    // Half a voxel outside takes half of the border voxel.
    assert!((trilinear(&vol, d, -0.5, 0.0, 0.0) - 0.0).abs() < 1e-12);
    assert!((trilinear(&vol, d, 3.5, 0.0, 0.0) - 1.5).abs() < 1e-12);
}

#[test]
fn isotropic_splatting_equals_the_reference_projector() {
    use cryosplat_core::gaussian::{quat_to_rotation, GaussianA};
    use cryosplat_core::pose::Pose;
    use cryosplat_core::projector::{splat_isotropic, IsoGaussian, SplatScratch};
    use cryosplat_core::reference::project_gaussians_a;
    use cryosplat_core::rng::Rng;
    let (d, apix) = (48usize, 1.3);
    let mut rng = Rng::new(99);
    let gs: Vec<GaussianA> = (0..200)
        .map(|_| {
            GaussianA::isotropic(
                [rng.normal() * 12.0, rng.normal() * 12.0, rng.normal() * 12.0],
                rng.uniform_range(0.4, 3.0),
                rng.uniform_range(1.0, 50.0),
            )
        })
        .collect();
    let iso: Vec<IsoGaussian> = gs.iter().map(|g| IsoGaussian::from_gaussian_a(g).unwrap()).collect();
    let mut scratch = SplatScratch::default();
    for _ in 0..4 {
        let pose = Pose { rot: quat_to_rotation(rng.unit_quaternion()), origin_a: [rng.normal() * 3.0, rng.normal() * 3.0] };
        let exact = project_gaussians_a(&gs, &pose, d, apix);
        let peak = exact.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (cutoff, tol) in [(f64::INFINITY, 1e-13), (4.5, 2e-4)] {
            let mut img = vec![0.0f64; d * d];
            splat_isotropic(&iso, &pose.rot, pose.origin_a, d, apix, cutoff, &mut scratch, &mut img);
            let err = img.iter().zip(&exact).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / peak;
            assert!(err < tol, "cutoff {cutoff}: {err:e}");
        }
    }
    let aniso = GaussianA { mean_a: [0.0; 3], cov_a2: [[1.0, 0.1, 0.0], [0.1, 1.0, 0.0], [0.0, 0.0, 1.0]], mass: 1.0 };
    assert!(IsoGaussian::from_gaussian_a(&aniso).is_none());
}

#[test]
fn half_plane_filter_matches_the_full_complex_reference() {
    use cryosplat_core::projector::HalfPlaneFilter;
    use cryosplat_core::reference::apply_filter_centered;
    use cryosplat_core::rng::Rng;
    for d in [16usize, 17, 32] {
        let h = (d / 2) as i64;
        let mut rng = Rng::new(d as u64);
        let img: Vec<f64> = (0..d * d).map(|_| rng.normal()).collect();
        let peak = img.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let filt = HalfPlaneFilter::new(d);
        let mut scratch = filt.scratch();
        // An even filter (H(k) = H(−k) for continuous k) that is not symmetric on the grid's
        // Nyquist lines, like an oblique astigmatic CTF.
        let even = |kx: i64, ky: i64| (0.05 * ((kx * kx) as f64 * 1.3 + (ky * ky) as f64 * 0.7 + (kx * ky) as f64)).sin();
        // A filter that is not even at all.
        let odd = |kx: i64, ky: i64| 0.4 + (0.3 * kx as f64 - 0.1 * ky as f64).sin();
        for (f, is_even) in [(&even as &dyn Fn(i64, i64) -> f64, true), (&odd, false)] {
            let centred: Vec<f64> = (0..d * d).map(|p| f((p % d) as i64 - h, (p / d) as i64 - h)).collect();
            let want = apply_filter_centered(&img, &centred, d);
            let mut got = img.clone();
            filt.apply(&mut got, f, &mut scratch);
            let err = got.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / peak;
            assert!(err < 1e-12, "d = {d}, apply: {err:e}");
            if is_even {
                let mut got = img.clone();
                filt.apply_even(&mut got, f, &mut scratch);
                let err = got.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / peak;
                assert!(err < 1e-12, "d = {d}, apply_even: {err:e}");
            }
        }
    }
}
