//! Coarse-to-fine training (`--coarse-to-fine`): a run broken right after a switch of size
//! resumes to the unbroken run's maps bitwise, and a toy set trains to a map at least as close
//! to the truth as without it.

mod common;

use common::{carbon_blob, read_map as read, rec};

use cryosplat_core::fsc::correlation as corr;
use cryosplat_train::dataset::{LoadOptions, ParticleSet};
use cryosplat_train::progress::NoProgress;
use cryosplat_train::reconstruct::{CoarseStage, CoarseToFine, ReconstructConfig, ReconstructError};
use cryosplat_train::simulate::{simulate, SimulateConfig, Source};
use std::path::{Path, PathBuf};

/// A compact random "molecule" of 150 carbon atoms, simulated at 32 px and 1.5 Å/px.
fn simulated(dir: &Path, count: usize, snr: f64) -> PathBuf {
    let atoms = carbon_blob(150, [5.0, 3.5, 4.0], 20.0, 11);
    let cfg = SimulateConfig { box_px: 32, apix: 1.5, count, snr, seed: 7, max_shift_px: 1.5, ..Default::default() };
    simulate(&Source::Atoms { atoms, label: "test".into() }, &cfg, dir, &NoProgress).unwrap();
    dir.join("particles.star")
}

fn stages(list: &[(usize, f64)]) -> CoarseToFine {
    CoarseToFine::Stages(list.iter().map(|&(box_px, until)| CoarseStage { box_px, until }).collect())
}

#[test]
fn a_run_broken_right_after_a_switch_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let star = simulated(&dir.path().join("sim"), 200, 1.0);
    let set = ParticleSet::load(&star, &LoadOptions::default()).unwrap();
    let (a, b) = set.half_split(9);
    assert_eq!((a.len(), b.len()), (100, 100), "the schedule below assumes halves of 100");
    // 400 steps per half: 16 px until step 100, 24 px until step 220, then 32 px. Half A takes
    // its steps 200..300 in pass 3, after both halves' first two passes (400 steps): its first
    // step at the full box is the run's step 421.
    let cfg = ReconstructConfig {
        gaussians: Some(500),
        epochs: Some(4),
        threads: 2,
        seed: 9,
        checkpoint_every: 0,
        coarse_to_fine: stages(&[(16, 0.25), (24, 0.55)]),
        ..Default::default()
    };
    let unbroken = dir.path().join("a");
    rec(&set, &cfg, &unbroken, false).unwrap();
    let broken = dir.path().join("b");
    // Broken right after half A's first step at the full box, and again right after half B's
    // (its step 220 is the run's step 520 + 1).
    let e = rec(&set, &ReconstructConfig { max_steps: Some(421), ..cfg.clone() }, &broken, false).unwrap_err();
    assert!(matches!(e, ReconstructError::Interrupted { steps: 421, .. }), "{e}");
    let e = rec(&set, &ReconstructConfig { max_steps: Some(100), ..cfg.clone() }, &broken, true).unwrap_err();
    assert!(matches!(e, ReconstructError::Interrupted { steps: 521, .. }), "{e}");
    rec(&set, &cfg, &broken, true).unwrap();
    for f in ["map.mrc", "half_map_a.mrc", "half_map_b.mrc"] {
        assert_eq!(std::fs::read(unbroken.join(f)).unwrap(), std::fs::read(broken.join(f)).unwrap(), "{f} differs");
    }
    // The coarse boxes change the run, and resuming with other stages is refused.
    let plain = dir.path().join("plain");
    rec(&set, &ReconstructConfig { coarse_to_fine: CoarseToFine::Off, ..cfg.clone() }, &plain, false).unwrap();
    assert_ne!(std::fs::read(unbroken.join("map.mrc")).unwrap(), std::fs::read(plain.join("map.mrc")).unwrap());
    let e = rec(&set, &ReconstructConfig { coarse_to_fine: CoarseToFine::Off, epochs: Some(5), ..cfg.clone() }, &broken, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--coarse-to-fine") && e.contains("\"off\" now"), "{e}");
    // A coarse box that is not below the training box is refused before any work.
    let e = rec(&set, &ReconstructConfig { coarse_to_fine: stages(&[(32, 0.5)]), ..cfg }, &dir.path().join("c"), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--coarse-to-fine") && e.contains("32 px"), "{e}");
}

#[test]
fn coarse_to_fine_trains_a_toy_set_as_well_as_the_full_box() {
    let dir = tempfile::tempdir().unwrap();
    let star = simulated(&dir.path().join("sim"), 1000, 0.3);
    let set = ParticleSet::load(&star, &LoadOptions::default()).unwrap();
    let gt = read(&dir.path().join("sim/gt.mrc"));
    let base = ReconstructConfig { gaussians: Some(800), epochs: Some(6), threads: 2, seed: 3, checkpoint_every: 0, ..Default::default() };
    let mut score = Vec::new();
    for (name, c2f) in [("off", CoarseToFine::Off), ("16:0.25,24:0.5", stages(&[(16, 0.25), (24, 0.5)]))] {
        let out = dir.path().join(name.replace([':', ','], "_"));
        let s = rec(&set, &ReconstructConfig { coarse_to_fine: c2f, ..base.clone() }, &out, false).unwrap();
        let c = corr(&gt, &read(&out.join("map.mrc")));
        eprintln!("{name}: correlation with the truth {c:.4}, {:.1} s", s.seconds);
        score.push(c);
    }
    assert!(score[1] >= score[0], "coarse-to-fine {:.4} against {:.4} at the full box", score[1], score[0]);
}
