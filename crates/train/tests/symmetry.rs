//! Symmetric particles end to end: `simulate` with a point group gives a symmetric ground
//! truth and images, and `backproject` with the group recovers it better than without.

mod common;

use cryosplat_core::fsc::correlation as corr;
use cryosplat_core::fsc::fsc;
use cryosplat_core::pose::mat_vec;
use cryosplat_core::potential::{Atom, Centering};
use cryosplat_core::rng::Rng;
use cryosplat_core::symmetry::PointGroup;
use cryosplat_formats::mrc::MrcFile;
use cryosplat_train::backproject::{backproject, BackprojectConfig};
use cryosplat_train::dataset::{LoadOptions, ParticleSet};
use cryosplat_train::progress::NoProgress;
use cryosplat_train::simulate::{simulate, SimulateConfig, Source};

/// A compact asymmetric blob of carbon atoms about the origin.
fn unit_atoms(n: usize, seed: u64) -> Vec<Atom> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| Atom {
            element: "C".into(),
            pos_a: [r.normal() * 3.0, r.normal() * 2.0, r.normal() * 4.0],
            b_factor_a2: 20.0,
            occupancy: 1.0,
        })
        .collect()
}

/// `V(R·r)` on the grid about `D/2` for an `R` that maps the grid onto itself, compared with
/// `V` on the voxels whose partner lies in the box: the largest difference.
fn grid_asymmetry(map: &[f32], d: usize, r: &cryosplat_core::pose::Mat3) -> f32 {
    let c = (d / 2) as f64;
    let mut worst = 0.0f32;
    for k in 0..d {
        for i in 0..d {
            for j in 0..d {
                let p = mat_vec(r, [j as f64 - c, i as f64 - c, k as f64 - c]);
                let q: Vec<f64> = p.iter().map(|v| v.round() + c).collect();
                if q.iter().all(|&v| v >= 0.0 && v < d as f64) {
                    let (x, y, z) = (q[0] as usize, q[1] as usize, q[2] as usize);
                    worst = worst.max((map[(z * d + y) * d + x] - map[(k * d + i) * d + j]).abs());
                }
            }
        }
    }
    worst
}

#[test]
fn a_c4_simulation_is_symmetric_and_symmetric_backprojection_recovers_it_better() {
    let dir = tempfile::tempdir().unwrap();
    let d = 32;
    let cfg = SimulateConfig {
        box_px: d,
        apix: 2.0,
        count: 300,
        snr: 0.05,
        seed: 4,
        max_shift_px: 1.0,
        centering: Centering::CentreOfMass,
        sym: "C4".into(),
        sym_offset_a: [8.0, 3.0, 0.0],
        ..Default::default()
    };
    let summary = simulate(&Source::Atoms { atoms: unit_atoms(60, 9), label: "unit".into() }, &cfg, dir.path(), &NoProgress).unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    let meta = common::json(&dir.path().join("meta.json"));
    assert_eq!(meta["source"]["symmetry"], "C4");
    assert_eq!(meta["source"]["symmetry_order"], 4);
    assert_eq!(meta["settings"]["sym"], "C4");
    let gt = MrcFile::open(dir.path().join("gt.mrc")).unwrap().read_all().unwrap();
    let scale = gt.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let c4 = PointGroup::parse("C4").unwrap();
    for r in c4.operators() {
        let a = grid_asymmetry(&gt, d, r);
        assert!(a <= 1e-5 * scale, "gt.mrc not C4-symmetric: {a} of {scale}");
    }
    // Not D2 or C4 about another axis: the x two-fold moves it.
    let x2 = PointGroup::parse("D2").unwrap().operators()[2];
    assert!(grid_asymmetry(&gt, d, &x2) > 0.1 * scale);

    let set = ParticleSet::load(&dir.path().join("particles.star"), &LoadOptions::default()).unwrap();
    let plain = backproject(&set, &BackprojectConfig { threads: 2, ..Default::default() }, &NoProgress).unwrap();
    let sym = backproject(&set, &BackprojectConfig { threads: 2, sym: "c4".into(), ..Default::default() }, &NoProgress).unwrap();
    assert_eq!((plain.symmetry.as_str(), plain.symmetry_order), ("C1", 1));
    assert_eq!((sym.symmetry.as_str(), sym.symmetry_order), ("C4", 4));
    // The symmetric maps are symmetric (up to the trilinear insertion's rounding).
    let s_scale = sym.map.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for r in c4.operators() {
        let a = grid_asymmetry(&sym.half_a, d, r);
        assert!(a <= 1e-3 * s_scale, "half map A not C4-symmetric: {a} of {s_scale}");
    }
    let (c_plain, c_sym) = (corr(&plain.map, &gt), corr(&sym.map, &gt));
    let (f_plain, f_sym) = (fsc(&plain.map, &gt, d), fsc(&sym.map, &gt, d));
    eprintln!("correlation with gt: C1 {c_plain:.4}, C4 {c_sym:.4}\nFSC C1 {f_plain:.3?}\nFSC C4 {f_sym:.3?}");
    assert!(c_sym > c_plain + 0.02, "C1 {c_plain}, C4 {c_sym}");
    let mid: f64 = f_sym[6..14].iter().zip(&f_plain[6..14]).map(|(a, b)| a - b).sum::<f64>() / 8.0;
    assert!(mid > 0.05, "mean FSC gain over shells 6–13: {mid}");
    // The half-map resolution improves too.
    assert!(sym.resolution(0.143).angstrom().unwrap() < plain.resolution(0.143).angstrom().unwrap());

    // run.json records the group.
    let out_dir = dir.path().join("bp");
    let mut out = cryosplat_train::output::OutputDir::open(&out_dir, cryosplat_train::output::Existing::Refuse, "test").unwrap();
    let cfg_sym = BackprojectConfig { threads: 2, sym: "c4".into(), ..Default::default() };
    sym.write_outputs(&mut out, &cfg_sym, &serde_json::json!({})).unwrap();
    let run = common::json(&out_dir.join("run.json"));
    assert_eq!(run["summary"]["symmetry"], "C4");
    assert_eq!(run["summary"]["symmetry_order"], 4);
    assert_eq!(run["settings"]["config"]["sym"], "c4");
}

#[test]
fn unknown_groups_are_refused_by_simulate_and_backproject() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimulateConfig { box_px: 16, count: 2, sym: "I5".into(), ..Default::default() };
    let e = simulate(&Source::Atoms { atoms: unit_atoms(5, 1), label: "u".into() }, &cfg, dir.path(), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("I5") && e.to_string().contains("not supported"), "{e}");
    let cfg = SimulateConfig { box_px: 16, count: 4, snr: f64::INFINITY, ..Default::default() };
    simulate(&Source::Atoms { atoms: unit_atoms(5, 1), label: "u".into() }, &cfg, dir.path(), &NoProgress).unwrap();
    let set = ParticleSet::load(&dir.path().join("particles.star"), &LoadOptions::default()).unwrap();
    let e = backproject(&set, &BackprojectConfig { sym: "Q7".into(), ..Default::default() }, &NoProgress).err().unwrap();
    assert!(e.to_string().contains("--sym") && e.to_string().contains("Q7"), "{e}");
}

#[test]
fn a_map_input_is_averaged_over_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let d = 16;
    let mut r = Rng::new(3);
    let map: Vec<f32> = (0..d * d * d).map(|_| r.normal() as f32).collect();
    let cfg = SimulateConfig { box_px: d, apix: 2.0, count: 2, snr: f64::INFINITY, sym: "D2".into(), ..Default::default() };
    simulate(&Source::Map { data: map.clone(), d, apix: 2.0, label: "m".into() }, &cfg, dir.path(), &NoProgress).unwrap();
    let gt = MrcFile::open(dir.path().join("gt.mrc")).unwrap().read_all().unwrap();
    let expected = cryosplat_core::symmetry::symmetrize_map(&map, d, &PointGroup::parse("D2").unwrap());
    assert_eq!(gt, expected);
    // An offset is for atomic models only.
    let cfg = SimulateConfig { sym_offset_a: [1.0, 0.0, 0.0], ..cfg };
    let e = simulate(&Source::Map { data: map, d, apix: 2.0, label: "m".into() }, &cfg, dir.path(), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("offset"), "{e}");
}
