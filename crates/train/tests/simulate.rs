//! The simulator: its CTF and Euler angles against the reference values of
//! tests/data/reference, its clean images against the reference projector, its ground-truth
//! map against its images, its noise level, and its reproducibility.

mod common;

use common::{close, ctf_from_json, json, read_mrc, toy_atoms};
use cryosplat_core::ctf::CtfParams;
use cryosplat_core::fsc::correlation;
use cryosplat_core::gaussian::GaussianA;
use cryosplat_core::pose::{Mat3, Pose};
use cryosplat_core::potential::{atomic_potential, Atom, Centering, PotentialOptions};
use cryosplat_core::projector::{project_volume, HalfPlaneFilter};
use cryosplat_core::reference::image_a;
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::euler_to_matrix;
use cryosplat_train::progress::NoProgress;
use cryosplat_train::simulate::{draw_particle, simulate, CtfFilter, PreferredOrientation, SimulateConfig, SimulateError, Source};
use std::path::Path;

/// The simulator's CTF step applies the CTF of the 25 reference cases of tests/data/reference:
/// a random image filtered by [`CtfFilter`] equals the same half-plane filter applied with the
/// reference's values (a centred `D×D` grid, row `ky + D/2`, column `kx + D/2`), to the f32
/// rounding of the CTF values.
#[test]
fn ctf_filter_applies_the_reference_ctf_cases() {
    let cases = json(&common::data("reference/ctf_cases.json"));
    let cases = cases.get("cases").and_then(|c| c.as_array()).cloned().unwrap_or_else(|| cases.as_array().unwrap().clone());
    assert_eq!(cases.len(), 25);
    let mut worst = 0.0f64;
    for (k, c) in cases.iter().enumerate() {
        let d = c["D"].as_u64().unwrap() as usize;
        let apix = c["apix"].as_f64().unwrap();
        let half = (d / 2) as i64;
        let reference = |kx: i64, ky: i64| c["ctf"][(ky + half) as usize][(kx + half) as usize].as_f64().unwrap();
        let mut rng = Rng::new(k as u64);
        let image: Vec<f64> = (0..d * d).map(|_| rng.normal()).collect();
        let plain = HalfPlaneFilter::new(d);
        let mut want = image.clone();
        plain.apply_even(&mut want, reference, &mut plain.scratch());
        let filter = CtfFilter::new(d, apix);
        let mut got = image;
        filter.apply(&mut got, &ctf_from_json(c), &mut filter.scratch());
        let peak = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let err = got.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / peak;
        assert!(err < 1e-6, "case {}: CtfFilter vs the reference CTF: relative error {err:e}", c["id"]);
        worst = worst.max(err);
    }
    eprintln!("CtfFilter vs reference CTF cases: worst relative error {worst:.2e}");
}

/// For odd and even boxes, [`CtfFilter`] equals the half-plane filter applied with the core CTF
/// evaluated directly at every frequency (odd boxes use the frequencies outside the
/// half-plane grid for a whole row).
#[test]
fn ctf_filter_equals_the_direct_core_ctf_for_odd_and_even_boxes() {
    let params = CtfParams {
        defocus_u_a: 14000.0,
        defocus_v_a: 11000.0,
        defocus_angle_deg: 37.0,
        cs_mm: 2.7,
        bfactor_a2: 30.0,
        phase_shift_deg: 10.0,
        ..CtfParams::flat()
    };
    for (d, apix) in [(9, 1.7), (16, 1.1), (45, 1.5), (64, 0.9)] {
        let mut rng = Rng::new(d as u64);
        let image: Vec<f64> = (0..d * d).map(|_| rng.normal()).collect();
        let step = 1.0 / (d as f64 * apix);
        let plain = HalfPlaneFilter::new(d);
        let mut want = image.clone();
        plain.apply_even(&mut want, |kx, ky| params.eval(kx as f64 * step, ky as f64 * step), &mut plain.scratch());
        let filter = CtfFilter::new(d, apix);
        let mut got = image;
        filter.apply(&mut got, &params, &mut filter.scratch());
        let peak = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let err = got.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / peak;
        assert!(err < 1e-6, "D = {d}: CtfFilter vs the direct CTF: relative error {err:e}");
    }
}

/// Particle rows of a STAR file as label → value maps, read with the project's STAR parser.
fn read_star_particles(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let f = cryosplat_formats::star::read(path).unwrap();
    let optics = f.block("optics").unwrap().table().unwrap();
    assert_eq!(optics.len(), 1);
    let t = f.block("particles").unwrap().table().unwrap();
    t.rows.iter().map(|r| t.labels.iter().cloned().zip(r.iter().cloned()).collect()).collect()
}

fn small_config() -> SimulateConfig {
    SimulateConfig {
        box_px: 48,
        apix: 1.2,
        count: 12,
        snr: 0.5,
        max_shift_px: 4.0,
        seed: 7,
        write_clean: true,
        centering: Centering::None,
        ..Default::default()
    }
}

#[test]
fn clean_images_equal_the_reference_projector_and_noise_has_the_requested_snr() {
    let dir = tempfile::tempdir().unwrap();
    let atoms = toy_atoms(40, 1);
    let cfg = small_config();
    let summary = simulate(&Source::Atoms { atoms: atoms.clone(), label: "toy".into() }, &cfg, dir.path(), &NoProgress).unwrap();
    let (d, apix) = (cfg.box_px, cfg.apix);
    let (nx, ny, nz, ispg, clean) = read_mrc(&dir.path().join("clean.mrcs"));
    assert_eq!((nx, ny, nz, ispg), (d, d, cfg.count, 0));
    let (_, _, _, _, noisy) = read_mrc(&dir.path().join("particles.mrcs"));
    let rows = read_star_particles(&dir.path().join("particles.star"));
    assert_eq!(rows.len(), cfg.count);

    // The scene, built independently from the documented recipe: the potential's Gaussians
    // widened by the anti-aliasing Gaussian.
    let pot = atomic_potential(&atoms, &PotentialOptions { centering: Centering::None, ..Default::default() }).unwrap();
    let aa = (cfg.antialias_sigma_px * apix).powi(2);
    let widen = |g: &GaussianA| GaussianA {
        cov_a2: std::array::from_fn(|i| std::array::from_fn(|j| g.cov_a2[i][j] + if i == j { aa } else { 0.0 })),
        ..*g
    };
    let gs: Vec<GaussianA> = pot.gaussians.iter().map(widen).collect();
    let mut signal_var = 0.0;
    let mut worst = 0.0f64;
    for (k, row) in rows.iter().enumerate() {
        let v = |l: &str| row[l].parse::<f64>().unwrap();
        assert_eq!(row["rlnImageName"], format!("{:06}@particles.mrcs", k + 1));
        let pose = Pose {
            rot: euler_to_matrix(v("rlnAngleRot"), v("rlnAngleTilt"), v("rlnAnglePsi")),
            origin_a: [v("rlnOriginXAngst"), v("rlnOriginYAngst")],
        };
        let ctf = CtfParams {
            voltage_kv: 300.0,
            cs_mm: 2.7,
            amp_contrast: 0.1,
            defocus_u_a: v("rlnDefocusU"),
            defocus_v_a: v("rlnDefocusV"),
            defocus_angle_deg: v("rlnDefocusAngle"),
            phase_shift_deg: v("rlnPhaseShift"),
            bfactor_a2: v("rlnCtfBfactor"),
            scale: v("rlnCtfScalefactor"),
        };
        let h = (d / 2) as f64;
        let centred: Vec<f64> =
            (0..d * d).map(|p| ctf.eval(((p % d) as f64 - h) / (d as f64 * apix), ((p / d) as f64 - h) / (d as f64 * apix))).collect();
        let want = image_a(&gs, &pose, d, apix, Some(&centred));
        let got = &clean[k * d * d..(k + 1) * d * d];
        let peak = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let err = got.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs())) / peak;
        assert!(err < 1e-4, "particle {k}: clean image vs reference projector: {err:e}");
        worst = worst.max(err);
        let mean = want.iter().sum::<f64>() / (d * d) as f64;
        signal_var += want.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (d * d) as f64;
    }
    signal_var /= cfg.count as f64;
    eprintln!("clean images vs reference projector: worst relative error {worst:.2e}");
    assert!((summary.signal_variance / signal_var - 1.0).abs() < 1e-3);
    // The noise: particles − clean has the standard deviation σ_n = √(signal variance / SNR).
    assert!((summary.noise_sigma - (signal_var / cfg.snr).sqrt()).abs() < 1e-3 * summary.noise_sigma);
    let diff: Vec<f64> = noisy.iter().zip(&clean).map(|(a, b)| (a - b) as f64).collect();
    let m = diff.iter().sum::<f64>() / diff.len() as f64;
    let sd = (diff.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / diff.len() as f64).sqrt();
    assert!((sd / summary.noise_sigma - 1.0).abs() < 0.02 && m.abs() < 0.02 * sd, "noise sd {sd} vs {}", summary.noise_sigma);
    let meta = json(&dir.path().join("meta.json"));
    assert_eq!(meta["seed"], 7);
    assert_eq!(meta["count"], 12);
    assert!((meta["noise_sigma"].as_f64().unwrap() - summary.noise_sigma).abs() < 1e-12);
    assert!(meta["snr_definition"].as_str().unwrap().contains("variance"));
}

#[test]
fn ground_truth_projections_match_the_clean_images() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimulateConfig { box_px: 64, apix: 1.5, count: 10, seed: 3, ..small_config() };
    simulate(&Source::Atoms { atoms: toy_atoms(150, 2), label: "toy".into() }, &cfg, dir.path(), &NoProgress).unwrap();
    let d = cfg.box_px;
    let (nx, _, nz, ispg, gt) = read_mrc(&dir.path().join("gt.mrc"));
    assert_eq!((nx, nz, ispg), (d, d, 1));
    let (_, _, _, _, clean) = read_mrc(&dir.path().join("clean.mrcs"));
    let filter = CtfFilter::new(d, cfg.apix);
    let mut scratch = filter.scratch();
    let mut worst = 1.0f64;
    for k in 0..cfg.count {
        let p = draw_particle(&cfg, k as u64);
        let mut proj = vec![0.0f32; d * d];
        project_volume(&gt, d, &p.rot, [p.origin_a[0] / cfg.apix, p.origin_a[1] / cfg.apix], 2, &mut proj);
        let mut img: Vec<f64> = proj.iter().map(|&v| v as f64).collect();
        filter.apply(&mut img, &p.ctf, &mut scratch);
        let img: Vec<f32> = img.iter().map(|&v| v as f32).collect();
        let cc = correlation(&img, &clean[k * d * d..(k + 1) * d * d]);
        assert!(cc >= 0.99, "particle {k}: gt projection vs clean image: cc {cc}");
        worst = worst.min(cc);
    }
    eprintln!("gt projections vs clean images: worst correlation {worst:.5}");
}

#[test]
fn reproducible_whatever_the_thread_count() {
    let atoms = toy_atoms(30, 5);
    let cfg = SimulateConfig { count: 300, write_clean: false, ..small_config() };
    let run = |threads: usize| {
        let dir = tempfile::tempdir().unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| simulate(&Source::Atoms { atoms: atoms.clone(), label: "toy".into() }, &cfg, dir.path(), &NoProgress)).unwrap();
        let files: Vec<Vec<u8>> =
            ["particles.mrcs", "particles.star", "gt.mrc"].iter().map(|f| std::fs::read(dir.path().join(f)).unwrap()).collect();
        assert!(!dir.path().join("clean.mrcs").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4, "no temporary file is left");
        files
    };
    assert_eq!(run(1), run(2));
}

/// `float16` stacks hold the float32 stacks' values rounded to float16 (mode 12), everything
/// else unchanged; keeping the clean images or not leaves the particles as they are (the
/// second pass makes the clean images again instead of reading them back).
#[test]
fn float16_stacks_are_the_float32_stacks_rounded() {
    use cryosplat_formats::mrc::{Mode, MrcFile};
    let atoms = toy_atoms(30, 9);
    let run = |cfg: &SimulateConfig| {
        let dir = tempfile::tempdir().unwrap();
        simulate(&Source::Atoms { atoms: atoms.clone(), label: "toy".into() }, cfg, dir.path(), &NoProgress).unwrap();
        dir
    };
    let single = run(&small_config());
    let half = run(&SimulateConfig { float16: true, ..small_config() });
    let no_clean = run(&SimulateConfig { write_clean: false, ..small_config() });
    for name in ["particles.mrcs", "clean.mrcs"] {
        let (a, b) = (MrcFile::open(single.path().join(name)).unwrap(), MrcFile::open(half.path().join(name)).unwrap());
        assert_eq!((a.header().mode, b.header().mode), (Mode::Float32, Mode::Float16), "{name}");
        let want: Vec<f32> = a.read_all().unwrap().iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        assert_eq!(b.read_all().unwrap(), want, "{name}");
    }
    for name in ["particles.star", "gt.mrc"] {
        assert_eq!(std::fs::read(single.path().join(name)).unwrap(), std::fs::read(half.path().join(name)).unwrap(), "{name}");
    }
    let meta = json(&half.path().join("meta.json"));
    assert_eq!(meta["settings"]["float16"], serde_json::json!(true));
    assert_eq!(
        std::fs::read(single.path().join("particles.mrcs")).unwrap(),
        std::fs::read(no_clean.path().join("particles.mrcs")).unwrap(),
        "the particles do not depend on whether the clean images are kept"
    );
}

#[test]
fn view_distributions() {
    // Uniform over SO(3): viewing directions (third row of A) have mean 0 and E[v_z²] = 1/3.
    let cfg = SimulateConfig { count: 20000, ..small_config() };
    let n = 20000;
    let (mut m, mut z2) = ([0.0; 3], 0.0);
    for i in 0..n {
        let a: Mat3 = draw_particle(&cfg, i).rot;
        for k in 0..3 {
            m[k] += a[2][k] / n as f64;
        }
        z2 += a[2][2] * a[2][2] / n as f64;
    }
    assert!(m.iter().all(|v| v.abs() < 0.02) && (z2 - 1.0 / 3.0).abs() < 0.01, "{m:?} {z2}");
    // Preferred orientation around x with κ = 20: E[cos] = coth κ − 1/κ = 0.95.
    let cfg =
        SimulateConfig { preferred_orientation: Some(PreferredOrientation { direction: [2.0, 0.0, 0.0], kappa: 20.0 }), ..small_config() };
    let mean_cos: f64 = (0..n).map(|i| draw_particle(&cfg, i).rot[2][0]).sum::<f64>() / n as f64;
    assert!((mean_cos - 0.95).abs() < 0.005, "{mean_cos}");
}

#[test]
fn map_input_and_errors() {
    // The toy volume of tests/data/cryodrgn-toy (30³, 1 Å) as a map input without noise or CTF
    // phase flips: the gt map is the input, and the clean images are its projections.
    let toy = common::data("cryodrgn-toy/toymodel_small_nocenter.mrc");
    let bytes = std::fs::read(toy).unwrap();
    let vol: Vec<f32> = bytes[1024..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimulateConfig { box_px: 30, apix: 1.0, count: 5, snr: f64::INFINITY, ..small_config() };
    let src = Source::Map { data: vol.clone(), d: 30, apix: 1.0, label: "toy".into() };
    let s = simulate(&src, &cfg, dir.path(), &NoProgress).unwrap();
    assert_eq!(s.noise_sigma, 0.0);
    let (_, _, _, _, gt) = read_mrc(&dir.path().join("gt.mrc"));
    assert_eq!(gt, vol);
    let (_, _, _, _, clean) = read_mrc(&dir.path().join("clean.mrcs"));
    let (_, _, _, _, noisy) = read_mrc(&dir.path().join("particles.mrcs"));
    assert_eq!(clean, noisy);
    // Errors name the problem.
    let bad = SimulateConfig { defocus_min_um: 3.0, defocus_max_um: 1.0, ..cfg.clone() };
    assert!(matches!(simulate(&src, &bad, dir.path(), &NoProgress), Err(SimulateError::Config(m)) if m.contains("defocus")));
    let bad = SimulateConfig { snr: 0.0, ..cfg.clone() };
    assert!(matches!(simulate(&src, &bad, dir.path(), &NoProgress), Err(SimulateError::Config(_))));
    let with_b = SimulateConfig { bfactor_a2: 50.0, ..cfg.clone() };
    assert!(matches!(simulate(&src, &with_b, dir.path(), &NoProgress), Err(SimulateError::Config(_))));
    let e = simulate(&src, &cfg, Path::new("/proc/cryosplat-no-such-dir"), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("/proc/cryosplat-no-such-dir"), "{e}");
    let nan_atoms = vec![Atom { element: "C".into(), pos_a: [f64::NAN, 0.0, 0.0], b_factor_a2: 20.0, occupancy: 1.0 }];
    let e = simulate(&Source::Atoms { atoms: nan_atoms, label: "x".into() }, &small_config(), dir.path(), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("atom 1"), "{e}");
}

#[test]
fn the_particle_set_reader_recovers_what_was_simulated() {
    use cryosplat_train::dataset::{LoadOptions, ParticleSet};
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimulateConfig { count: 40, max_shift_px: 5.0, ..small_config() };
    simulate(&Source::Atoms { atoms: toy_atoms(20, 4), label: "toy".into() }, &cfg, dir.path(), &NoProgress).unwrap();
    let set = ParticleSet::load(&dir.path().join("particles.star"), &LoadOptions::default()).unwrap();
    assert_eq!((set.len(), set.box_px, set.apix), (40, cfg.box_px, cfg.apix));
    assert!(set.has_poses && set.has_ctf && !set.invert);
    let (_, _, _, _, stack) = read_mrc(&dir.path().join("particles.mrcs"));
    let npix = cfg.box_px * cfg.box_px;
    let mut img = vec![0.0f32; npix];
    for (k, p) in set.particles.iter().enumerate() {
        let want = draw_particle(&cfg, k as u64);
        assert!(close(&p.pose.rot, &want.rot, 1e-12), "particle {k}: A");
        assert_eq!(p.pose.origin_a, want.origin_a);
        assert_eq!(p.ctf, want.ctf);
        assert_eq!(p.random_subset, Some(want.subset));
        set.read_image(k, &mut img).unwrap();
        assert_eq!(img, stack[k * npix..(k + 1) * npix]);
    }
}
