//! The low-resolution check at a cropped box judges the shells it keeps as the full box does:
//! the backprojection's half-map agreement (`C_B`) and the Gaussian map's estimated FSC
//! against the truth agree shell by shell, and a map that misses the low frequencies fails at
//! both boxes. The completion, which works at the same box, repairs such a map at both.

mod common;

use common::{carbon_blob, read_map};
use cryosplat_core::fourier::{low_pass_volume, resample_volume};
use cryosplat_core::symmetry::PointGroup;
use cryosplat_train::dataset::{LoadOptions, ParticleSet};
use cryosplat_train::images::Images;
use cryosplat_train::progress::NoProgress;
use cryosplat_train::reconstruct::check::{backproject_halves, check_box, judge, Particles, MAX_BOX};
use cryosplat_train::simulate::{simulate, SimulateConfig, Source};

/// The box and pixel size of [`simulated`]'s set.
const D: usize = 48;
const APIX: f64 = 2.0;

/// `count` particles of a carbon blob at `snr` in `dir/sim` (`d` px, `apix`), and the ground truth.
fn blob_set(dir: &std::path::Path, d: usize, apix: f64, count: usize, snr: f64) -> (ParticleSet, Vec<f32>) {
    let atoms = carbon_blob(300, [12.0, 9.0, 10.0], 40.0, 4);
    let sim = SimulateConfig { box_px: d, apix, count, snr, seed: 2, max_shift_px: 2.0, ..Default::default() };
    simulate(&Source::Atoms { atoms, label: "test".into() }, &sim, &dir.join("sim"), &NoProgress).unwrap();
    let set = ParticleSet::load(&dir.join("sim/particles.star"), &LoadOptions::default()).unwrap();
    (set, read_map(&dir.join("sim/gt.mrc")))
}

/// 1,200 particles of a carbon blob at SNR 0.3 ([`blob_set`] at [`D`], [`APIX`]).
fn simulated(dir: &std::path::Path) -> (ParticleSet, Vec<f32>) {
    blob_set(dir, D, APIX, 1200, 0.3)
}

#[test]
fn a_cropped_check_judges_the_shells_it_keeps_as_the_full_box_does() {
    assert_eq!((check_box(64), check_box(MAX_BOX), check_box(2 * MAX_BOX)), (64, MAX_BOX, MAX_BOX));
    let dir = tempfile::tempdir().unwrap();
    let (d, apix) = (D, APIX);
    let (set, truth) = simulated(dir.path());
    let images = Images::new(&set, d);
    let (a, b) = set.half_split(0);
    // A map without the truth's lowest frequencies: a blob of the same mass in their place.
    let low = low_pass_volume(&truth, d, apix, 24.0, 1.0);
    let (sum_t, sum_l) = (truth.iter().map(|&v| v as f64).sum::<f64>(), low.iter().map(|&v| v as f64).sum::<f64>());
    let c = d as f64 / 2.0;
    let blob: Vec<f32> = (0..d * d * d)
        .map(|i| {
            let (x, y, z) = ((i % d) as f64 - c, ((i / d) % d) as f64 - c, (i / (d * d)) as f64 - c);
            (-(x * x + y * y + z * z) / 8.0).exp() as f32
        })
        .collect();
    let sum_b = blob.iter().map(|&v| v as f64).sum::<f64>();
    let wrong: Vec<f32> = truth.iter().zip(&low).zip(&blob).map(|((t, l), g)| t - l + g * (sum_l / sum_b) as f32).collect();
    assert!((wrong.iter().map(|&v| v as f64).sum::<f64>() - sum_t).abs() < 1e-3 * sum_t.abs());

    let c1 = PointGroup::parse("C1").unwrap();
    let particles = Particles { apix, no_ctf: false, refined: None };
    let full_bp = backproject_halves(&images, [&a, &b], &particles, &c1, 2, d).unwrap();
    let small = d / 2;
    let small_bp = backproject_halves(&images, [&a, &b], &particles, &c1, 2, small).unwrap();
    assert!(small_bp.iter().all(|m| m.len() == small * small * small));
    let small_apix = apix * d as f64 / small as f64;
    for (name, map, passes) in [("truth", &truth, true), ("without its low frequencies", &wrong, false)] {
        let full = judge(map, &full_bp, d, apix);
        let cropped = judge(&resample_volume(map, d, small), &small_bp, small, small_apix);
        assert_eq!((full.passed, cropped.passed), (passes, passes), "{name}: {full:?} / {cropped:?}");
        assert!(cropped.last_shell >= 3 && cropped.last_shell < small / 2, "{name}: {cropped:?}");
        // Shell n is the same frequency at both boxes.
        let at = |c: &cryosplat_train::reconstruct::check::LowResolutionCheck, n: usize| {
            c.worst_shell_a.unwrap() * c.worst_shell as f64 / n as f64
        };
        assert!((at(&full, 1) - at(&cropped, 1)).abs() < 1e-9, "{name}");
        assert!((full.worst_estimate - cropped.worst_estimate).abs() < 0.03, "{name}");
        for n in 1..=cropped.last_shell.min(full.last_shell) {
            let (cb, cbs) = (full.backprojection_vs_truth[n], cropped.backprojection_vs_truth[n]);
            let (e, es) = (full.estimate[n], cropped.estimate[n]);
            assert!((cb - cbs).abs() < 0.01, "{name}, shell {n}: C_B {cb} at {d} px, {cbs} at {small} px");
            assert!((e - es).abs() < 0.03, "{name}, shell {n}: estimate {e} at {d} px, {es} at {small} px");
        }
    }
}

/// The completion ([`cryosplat_train::reconstruct::completion`]) at the full box and at a
/// cropped one: a Gaussian map equal to the truth is left as it is (the images show no
/// departure from it), and one that misses the truth's lowest frequencies gets them back from
/// the images, at both boxes alike (the cropped box's units are right).
#[test]
fn completion_leaves_a_right_map_and_restores_missing_low_frequencies_at_any_box() {
    use cryosplat_core::fsc::{correlation, fsc};
    use cryosplat_train::reconstruct::completion::complete;
    let dir = tempfile::tempdir().unwrap();
    let (d, apix) = (D, APIX);
    let (set, truth) = simulated(dir.path());
    let images = Images::new(&set, d);
    let (a, b) = set.half_split(0);
    // The truth without its shells 1-3 (above 32 Å): a map that missed the low resolution.
    let low = low_pass_volume(&truth, d, apix, 32.0, 1.0);
    let mean = truth.iter().map(|&v| v as f64).sum::<f64>() as f32 / truth.len() as f32;
    let wrong: Vec<f32> = truth.iter().zip(&low).map(|(t, l)| t - l + mean).collect();
    let c1 = PointGroup::parse("C1").unwrap();
    let particles = Particles { apix, no_ctf: false, refined: None };
    let rms = |v: &[f32]| (v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    for to_d in [d, d / 2] {
        let right = complete(&images, [&a, &b], &particles, [&truth, &truth], &c1, 2, to_d).unwrap();
        let change: Vec<f32> = right.map.iter().zip(&truth).map(|(m, t)| m - t).collect();
        let shells = right.summary.data_share.iter().filter(|&&s| s > 0.0).count();
        eprintln!("{to_d} px, the truth as the model: change rms {:.4} of {:.4}, {shells} shells with data", rms(&change), rms(&truth));
        // Left as it is, to within the backprojection's own low-shell error (about 1% here).
        assert!(rms(&change) < 0.02 * rms(&truth), "{to_d} px: a right map changed by {:.4} of {:.4}", rms(&change), rms(&truth));
        let fixed = complete(&images, [&a, &b], &particles, [&wrong, &wrong], &c1, 2, to_d).unwrap();
        let (before, after) = (fsc(&wrong, &truth, d), fsc(&fixed.map, &truth, d));
        eprintln!(
            "{to_d} px, low frequencies missing: FSC with the truth at shells 1-4 {:.3?} -> {:.3?}; correlation {:.3} -> {:.3}",
            &before[1..5],
            &after[1..5],
            correlation(&wrong, &truth),
            correlation(&fixed.map, &truth)
        );
        assert!(after[1..4].iter().all(|&f| f > 0.9), "{to_d} px: {after:?}");
        assert!(correlation(&fixed.map, &truth) > correlation(&wrong, &truth) + 0.1);
    }
}

/// A run larger than 64 px starts from a backprojection made at 64 px (`start_box`): its map is
/// the molecule, and the Gaussians drawn from it sit
/// where the molecule is in the run's own box (box units do not depend on the map's box).
#[test]
fn the_backprojection_start_of_a_larger_box_is_made_at_64_px_and_holds_the_molecule() {
    use cryosplat_core::fsc::correlation as corr;
    use cryosplat_core::gaussian::GaussianModel;
    use cryosplat_core::rng::Rng;
    use cryosplat_core::voxel::voxelize_model;
    use cryosplat_train::reconstruct::start::{half_backprojection, start_box, START_MAX_BOX};
    assert_eq!((start_box(48), start_box(64), start_box(96), start_box(256)), (48, 64, START_MAX_BOX, START_MAX_BOX));
    let (d, apix) = (96, 1.0);
    let dir = tempfile::tempdir().unwrap();
    let (set, truth) = blob_set(dir.path(), d, apix, 400, 0.5);
    let images = Images::new(&set, d);
    let (a, _) = set.half_split(0);
    let c1 = PointGroup::parse("C1").unwrap();

    let (map, map_d) = half_backprojection(&images, &a, apix, false, &c1).unwrap();
    assert_eq!((map_d, map.len()), (64, 64 * 64 * 64));
    // Against the truth, cropped alike and low-passed to 6 Å.
    let low_truth = resample_volume(&low_pass_volume(&truth, d, apix, 6.0, 1.0), d, 64);
    let start_vs_truth = corr(&map, &low_truth);
    eprintln!("64 px start map: correlation {start_vs_truth:.3} with the truth (6 Å)");
    assert!(start_vs_truth > 0.85, "{start_vs_truth}");

    // Gaussians drawn from the 64 px map, voxelised at the run's 96 px box.
    let model = GaussianModel::sample_from_map(&map, map_d, 20_000, 1.0, 0.0075, &mut Rng::new(1)).unwrap();
    let drawn = voxelize_model(&model, d);
    let truth_low = low_pass_volume(&truth, d, apix, 6.0, 1.0);
    let centre = |m: &[f32], d: usize| {
        let (mut s, mut c) = (0.0f64, [0.0f64; 3]);
        for (i, &v) in m.iter().enumerate() {
            let w = (v as f64).max(0.0);
            s += w;
            for (k, ck) in c.iter_mut().enumerate() {
                *ck += w * ((i / d.pow(k as u32)) % d) as f64;
            }
        }
        c.map(|x| x / s)
    };
    // The map's own centre of mass (of its positive part, at 64 px) in the run's pixels.
    let cm_map = centre(&map, map_d).map(|c| (c - (map_d / 2) as f64) * d as f64 / map_d as f64 + (d / 2) as f64);
    let cm_drawn = centre(&drawn, d);
    let off = (0..3).map(|k| (cm_drawn[k] - cm_map[k]).powi(2)).sum::<f64>().sqrt();
    let drawn_vs_truth = corr(&drawn, &truth_low);
    eprintln!("drawn Gaussians at 96 px: centre of mass {off:.2} px from the map's, correlation {drawn_vs_truth:.3} with the truth (6 Å)");
    // Drawn from a map of either box, 20,000 Gaussians land within about 0.15 px of its centre
    // of mass; a slip of box units (drawing at 64 px, placing at 96 px) would be pixels off.
    assert!(off < 0.4 && drawn_vs_truth > 0.8, "{off} {drawn_vs_truth}");
}

/// With clean data a backprojection holds every shell up to its box's Nyquist, and its samples
/// end there alike in both halves. A Gaussian map equal to the truth then passes the check at
/// the full box and at cropped ones, and the completion leaves it as it is in every shell: the
/// last shells of each box are neither judged nor completed (`check::EDGE_SHELLS`). Without
/// that the check failed at the crops' Nyquist shells (estimates 0.21 at 24 px, 0.43 at
/// 32 px), as it did on a 120,000-particle set at 256 px.
#[test]
fn a_clean_set_passes_the_check_and_keeps_its_map_at_every_box() {
    use cryosplat_core::fsc::fsc;
    use cryosplat_train::reconstruct::check::last_usable_shell;
    use cryosplat_train::reconstruct::completion::complete;
    let dir = tempfile::tempdir().unwrap();
    let (d, apix) = (D, APIX);
    let (set, truth) = blob_set(dir.path(), d, apix, 3000, 2.0);
    let images = Images::new(&set, d);
    let (a, b) = set.half_split(0);
    let c1 = PointGroup::parse("C1").unwrap();
    let particles = Particles { apix, no_ctf: false, refined: None };
    for to_d in [d, 32, 24] {
        let done = complete(&images, [&a, &b], &particles, [&truth, &truth], &c1, 2, to_d).unwrap();
        let g = if to_d < d { resample_volume(&truth, d, to_d) } else { truth.clone() };
        let c = judge(&g, &done.backprojection, to_d, apix * d as f64 / to_d as f64);
        let edge = last_usable_shell(to_d);
        eprintln!("{to_d} px: check {:.3?} (last {}), data share {:.2?}", &c.estimate[1..], c.last_shell, &done.summary.data_share[1..]);
        assert!(c.passed && c.last_shell == edge, "{to_d} px: {c:?}");
        assert!(done.summary.data_share[edge + 1..].iter().all(|&s| s == 0.0), "{to_d} px: {:?}", done.summary.data_share);
        let f = fsc(&done.map, &truth, d);
        assert!(f[1..].iter().all(|&x| x > 0.995), "{to_d} px: the completed map against the truth {f:.4?}");
    }
}
