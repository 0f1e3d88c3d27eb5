//! Backprojection checks: cryoDRGN's toy set against its true volume, and a noiseless simulated
//! set against its ground truth.

use cryosplat_core::fsc::fsc;
use cryosplat_core::potential::Atom;
use cryosplat_core::rng::Rng;
use cryosplat_formats::mrc::MrcFile;
use cryosplat_train::backproject::{backproject, BackprojectConfig};
use cryosplat_train::dataset::{LoadOptions, ParticleSet};
use cryosplat_train::progress::NoProgress;
use cryosplat_train::simulate::{simulate, SimulateConfig, Source};
use std::path::Path;

fn corr(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().map(|&v| v as f64).sum::<f64>() / n, b.iter().map(|&v| v as f64).sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn toy_set_gives_back_the_toy_volume() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/cryodrgn-toy");
    let set = ParticleSet::load(&data.join("toy_projections.DERIVED.star"), &LoadOptions::default()).unwrap();
    let r = backproject(&set, &BackprojectConfig { no_ctf: true, threads: 2, ..Default::default() }, &NoProgress).unwrap();
    let truth = MrcFile::open(data.join("toymodel_small_nocenter.mrc")).unwrap().read_all().unwrap();
    let c = corr(&r.map, &truth);
    assert!(c >= 0.97, "correlation with the toy volume {c}");
    // Without a CTF the set must be declared so.
    let e = backproject(&set, &BackprojectConfig::default(), &NoProgress).err().unwrap().to_string();
    assert!(e.contains("no CTF parameters"), "{e}");
}

#[test]
fn noiseless_simulation_matches_the_ground_truth_to_near_nyquist() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Rng::new(8);
    let atoms: Vec<Atom> = (0..150)
        .map(|_| Atom { element: "C".into(), pos_a: [r.normal() * 7.0, r.normal() * 5.0, r.normal() * 6.0], b_factor_a2: 20.0, occupancy: 1.0 })
        .collect();
    let cfg = SimulateConfig { box_px: 32, apix: 2.0, count: 1500, snr: f64::INFINITY, seed: 2, max_shift_px: 2.0, ..Default::default() };
    simulate(&Source::Atoms { atoms, label: "t".into() }, &cfg, dir.path(), &NoProgress).unwrap();
    let set = ParticleSet::load(&dir.path().join("particles.star"), &LoadOptions::default()).unwrap();
    let bp = backproject(&set, &BackprojectConfig { threads: 2, wiener: 1e-3, ..Default::default() }, &NoProgress).unwrap();
    let gt = MrcFile::open(dir.path().join("gt.mrc")).unwrap().read_all().unwrap();
    let curve = fsc(&bp.map, &gt, 32);
    // FSC against the ground truth: above 0.9 up to 60% of Nyquist, and above 0.5 up to the
    // last shell before Nyquist (trilinear insertion loses some contrast at the highest
    // frequencies, where the atoms' B-factor leaves little signal).
    for (n, v) in curve.iter().enumerate().take(16) {
        let bound = if n <= 10 { 0.9 } else { 0.5 };
        assert!(*v > bound, "shell {n}: FSC {v} ({curve:?})");
    }
    let c = corr(&bp.map, &gt);
    // Measured 0.867: the constant Wiener term damps low frequencies near CTF zeros.
    assert!(c > 0.8, "correlation with the ground truth {c}");
}
