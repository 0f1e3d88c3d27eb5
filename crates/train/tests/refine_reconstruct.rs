//! `reconstruct` with per-particle refinement end to end: a set simulated with recorded errors
//! (`simulate --pose-error --shift-error --defocus-error`) is reconstructed with refinement of
//! poses, origins and defoci; the corrections move the particles and land in
//! `particles_refined.star` and run.json, a run broken during a refining pass and resumed
//! equals an unbroken one, and settings that cannot work are refused.
//!
//! The refined origins and defoci come closer to the truth (asserted). The rotations get
//! worse on this small, coarse set, whose trained models carry no information on them (test
//! `refine_rotation`; BENCHMARKS.md, "Per-particle refinement"), so only their numbers are
//! printed.

use cryosplat_core::rotation::angle_between_deg;
use cryosplat_train::dataset::{LoadOptions, ParticleSet};
use cryosplat_train::progress::NoProgress;
use cryosplat_train::reconstruct::{ReconstructConfig, ReconstructError, RefineConfig};
use cryosplat_train::simulate::{simulate, SimulateConfig, Source};

mod common;

use common::rec;

fn refine_all() -> RefineConfig {
    RefineConfig {
        pose: true,
        shift: true,
        defocus: true,
        prior_rot_deg: 2.0,
        prior_shift_a: 1.6,
        prior_defocus_a: 300.0,
        start_epoch: 2,
        estimate_prior: false,
    }
}

/// rms errors (angle °, origin Å per axis, defocus Å) of `set` against `truth`.
fn rms_errors(set: &ParticleSet, truth: &ParticleSet) -> (f64, f64, f64) {
    let n = set.len() as f64;
    let (mut a, mut o, mut z) = (0.0, 0.0, 0.0);
    for (p, t) in set.particles.iter().zip(&truth.particles) {
        a += angle_between_deg(&p.pose.rot, &t.pose.rot).powi(2);
        o += (p.pose.origin_a[0] - t.pose.origin_a[0]).powi(2) + (p.pose.origin_a[1] - t.pose.origin_a[1]).powi(2);
        z += (p.ctf.defocus_u_a - t.ctf.defocus_u_a).powi(2);
    }
    ((a / n).sqrt(), (o / (2.0 * n)).sqrt(), (z / n).sqrt())
}

#[test]
fn refined_particles_come_closer_to_the_truth_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let cfg = SimulateConfig {
        box_px: 32,
        apix: 2.0,
        count: 400,
        snr: 0.5,
        seed: 4,
        max_shift_px: 1.0,
        pose_error_deg: 2.0,
        shift_error_px: 0.8,
        defocus_error_a: 300.0,
        ..Default::default()
    };
    simulate(&Source::Atoms { atoms: common::toy_atoms(60, 8), label: "toy".into() }, &cfg, &sim, &NoProgress).unwrap();
    let recorded = ParticleSet::load(&sim.join("particles.star"), &LoadOptions::default()).unwrap();
    let truth = ParticleSet::load(&sim.join("particles_true.star"), &LoadOptions::default()).unwrap();
    let rc = ReconstructConfig {
        gaussians: Some(500),
        epochs: Some(8),
        threads: 2,
        seed: 1,
        checkpoint_every: 0,
        refine: Some(refine_all()),
        ..Default::default()
    };
    let s = rec(&recorded, &rc, &dir.path().join("a"), false).unwrap();
    let r = s.refinement.as_ref().expect("a refinement summary");
    assert_eq!(r.angle_deg.len(), 400);
    let refined = ParticleSet::load(&dir.path().join("a/particles_refined.star"), &LoadOptions::default()).unwrap();
    let (before, after) = (rms_errors(&recorded, &truth), rms_errors(&refined, &truth));
    eprintln!(
        "rms errors (°, Å, Å): recorded {before:?}, refined {after:?}; changes {:?} {:?} {:?}",
        r.angle_deg_stats, r.shift_a_stats, r.defocus_a_stats
    );
    assert!(after.1 < 0.8 * before.1, "origin {} → {} Å", before.1, after.1);
    assert!(after.2 < 0.9 * before.2, "defocus {} → {} Å", before.2, after.2);
    // The corrections moved every kind of parameter, and the refined STAR holds them.
    assert!(r.angle_deg_stats.rms > 0.05 && r.shift_a_stats.rms > 0.05 && r.defocus_a_stats.rms > 5.0, "{r:?}");
    let moved =
        refined.particles.iter().zip(&recorded.particles).filter(|(a, b)| angle_between_deg(&a.pose.rot, &b.pose.rot) > 0.01).count();
    assert_eq!(moved, 400);
    for (i, (a, b)) in refined.particles.iter().zip(&recorded.particles).enumerate() {
        assert!((a.ctf.defocus_u_a - b.ctf.defocus_u_a - r.defocus_a[i]).abs() < 1e-3, "particle {i}");
        assert!((angle_between_deg(&a.pose.rot, &b.pose.rot) - r.angle_deg[i]).abs() < 1e-3, "particle {i}");
    }
    let run = common::json(&dir.path().join("a/run.json"));
    assert!(run["summary"]["refinement"]["angle_deg_stats"]["rms"].as_f64().unwrap() > 0.0);
    assert!(run["summary"]["outputs"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().ends_with("particles_refined.star")));

    // Broken during a refining pass and resumed: the same maps and refined values, also with
    // the prior widths estimated (they change from pass to pass, so checkpoints must keep them
    // and the pass's sums).
    let estimating = ReconstructConfig { refine: Some(RefineConfig { estimate_prior: true, ..refine_all() }), ..rc.clone() };
    for (cfg, a, b) in [(&rc, "a", "b"), (&estimating, "c", "d")] {
        if a == "c" {
            rec(&recorded, cfg, &dir.path().join(a), false).unwrap();
            let w = &common::json(&dir.path().join(a).join("run.json"))["summary"]["refinement"]["prior_widths"];
            assert!(w[0][1] != 1.6 && w[1][2] != 300.0 && w[0][0] == 2.0, "{w}");
        }
        let e = rec(&recorded, &ReconstructConfig { max_steps: Some(1300), ..cfg.clone() }, &dir.path().join(b), false).unwrap_err();
        assert!(matches!(e, ReconstructError::Interrupted { .. }), "{e}");
        rec(&recorded, cfg, &dir.path().join(b), true).unwrap();
        for f in ["map.mrc", "half_map_a.mrc", "particles_refined.star"] {
            let same = std::fs::read(dir.path().join(a).join(f)).unwrap() == std::fs::read(dir.path().join(b).join(f)).unwrap();
            assert!(same, "{f} differs between the unbroken and the resumed run ({b})");
        }
    }

    // Settings that cannot work are refused before training.
    for (bad, why) in [
        (ReconstructConfig { refine: Some(RefineConfig { prior_rot_deg: 0.0, ..refine_all() }), ..rc.clone() }, "--refine-prior-deg"),
        (ReconstructConfig { refine: Some(RefineConfig { start_epoch: 8, ..refine_all() }), ..rc.clone() }, "--refine-from-pass 9"),
        (ReconstructConfig { no_ctf: true, ..rc.clone() }, "--no-ctf"),
    ] {
        let e = rec(&recorded, &bad, &dir.path().join("bad"), false).unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
}
