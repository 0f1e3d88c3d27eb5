//! `--init auto` (the default): a small set run with default settings starts from the
//! backprojection, records that start and why, gives the maps of `--init backprojection`
//! bitwise, and resumes with the same start.

mod common;

use common::{carbon_blob, read_map as read, rec};
use cryosplat_train::dataset::{LoadOptions, ParticleSet};
use cryosplat_train::progress::NoProgress;
use cryosplat_train::reconstruct::{init_choice, InitKind, ReconstructConfig, ReconstructError, AUTO_INIT_BACKPROJECTION_BELOW};
use cryosplat_train::simulate::{simulate, SimulateConfig, Source};

#[test]
fn a_small_set_with_default_settings_starts_from_the_backprojection() {
    assert_eq!(ReconstructConfig::default().init, InitKind::Auto, "auto is the default");
    let dir = tempfile::tempdir().unwrap();
    // 120 particles of a compact carbon blob at 40 px: about 60 per half, far below the threshold.
    let atoms = carbon_blob(120, [6.0, 4.0, 5.0], 30.0, 3);
    let sim = SimulateConfig { box_px: 40, apix: 1.5, count: 120, snr: 0.5, seed: 5, max_shift_px: 2.0, ..Default::default() };
    simulate(&Source::Atoms { atoms, label: "test".into() }, &sim, &dir.path().join("sim"), &NoProgress).unwrap();
    let set = ParticleSet::load(&dir.path().join("sim/particles.star"), &LoadOptions::default()).unwrap();
    // Default settings but for the size of the run (a test must be quick).
    let cfg = ReconstructConfig { gaussians: Some(300), epochs: Some(1), threads: 1, seed: 9, checkpoint_every: 0, ..Default::default() };
    // The simulation assigns the halves (random subsets), so they need not be equal: the
    // smaller one decides.
    let (a, b) = set.half_split(cfg.seed);
    let per_half = a.len().min(b.len());
    assert!(a.len() + b.len() == 120 && per_half > 0 && per_half < AUTO_INIT_BACKPROJECTION_BELOW, "{} / {}", a.len(), b.len());
    let want = format!("auto: {per_half} particles per half, fewer than {AUTO_INIT_BACKPROJECTION_BELOW}");
    assert_eq!(init_choice(&set, &cfg).reason, want);

    let auto = dir.path().join("auto");
    let s = rec(&set, &cfg, &auto, false).unwrap();
    assert_eq!((s.start.requested, s.start.used), (InitKind::Auto, InitKind::Backprojection));
    assert_eq!(s.start.reason, want);
    let run = common::json(&auto.join("run.json"));
    assert_eq!(run["settings"]["start"], serde_json::json!({"requested": "auto", "used": "backprojection", "reason": want}));
    assert_eq!(run["settings"]["config"]["init"], "backprojection", "the configuration records the start used");

    // The start auto chose is `--init backprojection`'s, bitwise.
    let named = dir.path().join("named");
    let s = rec(&set, &ReconstructConfig { init: InitKind::Backprojection, ..cfg.clone() }, &named, false).unwrap();
    assert_eq!(s.start.reason, "--init backprojection");
    for f in ["map.mrc", "half_map_a.mrc", "half_map_b.mrc"] {
        assert_eq!(read(&auto.join(f)), read(&named.join(f)), "{f}");
    }

    // Broken after 70 steps (in half B) and resumed: the same start, the same maps; resuming it
    // with the random start is refused, naming the option.
    let broken = dir.path().join("broken");
    let e = rec(&set, &ReconstructConfig { max_steps: Some(70), ..cfg.clone() }, &broken, false).unwrap_err();
    assert!(matches!(e, ReconstructError::Interrupted { steps: 70, .. }), "{e}");
    let e = rec(&set, &ReconstructConfig { init: InitKind::Random, ..cfg.clone() }, &broken, true).unwrap_err().to_string();
    assert!(e.contains("--init (\"backprojection\" then, \"random\" now)"), "{e}");
    let s = rec(&set, &cfg, &broken, true).unwrap();
    assert_eq!(s.start.used, InitKind::Backprojection);
    for f in ["map.mrc", "half_map_a.mrc", "half_map_b.mrc"] {
        assert_eq!(read(&auto.join(f)), read(&broken.join(f)), "{f}");
    }
}
