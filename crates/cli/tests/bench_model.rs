//! `cryosplat bench --model` on the models of tiny reconstructions: the model is used in its
//! own box with the parts of a step timed, a disagreeing box and missing or malformed files
//! are refused with the file named, and a symmetric run's file is the expansion the benchmark
//! expects.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/");
const BIN: &str = env!("CARGO_BIN_EXE_cryosplat");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Simulate 60 particles of 24 px (with `sym` extra arguments for both commands) and
/// reconstruct them with 50 Gaussians per half for one epoch; returns the output folder.
fn tiny_reconstruction(dir: &Path, name: &str, sym: &[&str]) -> PathBuf {
    let sim = dir.join(format!("sim-{name}"));
    let rec = dir.join(format!("rec-{name}"));
    let model = format!("{DATA}models/1A8O.pdb");
    let mut args = vec!["-q", "simulate", &model, "-o", sim.to_str().unwrap(), "--box", "24", "--apix", "2.5", "--count", "60"];
    args.extend(["--snr", "1"]);
    args.extend(sym);
    let s = run(&args);
    assert!(s.status.success(), "{}", stderr(&s));
    let star = sim.join("particles.star");
    let mut args = vec!["-q", "reconstruct", star.to_str().unwrap(), "-o", rec.to_str().unwrap(), "--gaussians", "50"];
    args.extend(["--epochs", "1", "--no-postprocess", "--threads", "2"]);
    args.extend(sym.iter().take(2));
    let r = run(&args);
    assert!(r.status.success(), "{}", stderr(&r));
    rec
}

fn bench_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench", "--steps", "2", "--repeats", "1", "--threads", "2", "--json"];
    all.extend(args);
    let o = run(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn count(ply: &Path) -> u64 {
    cryosplat_formats::ply::read_gaussians(ply).unwrap().len() as u64
}

#[test]
fn bench_runs_on_a_reconstruction_s_model() {
    let dir = tempfile::tempdir().unwrap();
    let rec = tiny_reconstruction(dir.path(), "c1", &[]);
    let half = rec.join("gaussians_a.ply");
    let v = bench_json(&["--model", half.to_str().unwrap(), "--phases"]);
    assert_eq!(
        (v["box"].as_u64(), v["gaussians"].as_u64(), v["unit_gaussians"].as_u64()),
        (Some(24), Some(count(&half)), Some(count(&half)))
    );
    assert!((v["apix"].as_f64().unwrap() - 2.5).abs() < 1e-6, "{v}");
    assert_eq!(v["images"], "model projections + unit white noise");
    assert_eq!(v["model"]["path"].as_str(), half.to_str());
    assert!(v["model"]["box_from"].as_str().unwrap().ends_with("map.mrc"), "{v}");
    let p = &v["phases"];
    for k in ["project_ms", "forward_ms", "loss_ms", "backward_ms", "adam_ms", "ctf_eval_ms", "step_ms"] {
        assert!(p[k].as_f64().unwrap() > 0.0, "{k}: {p}");
    }
    assert!(v["footprints"]["mean_area_px2"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["notes"].as_array().unwrap().is_empty());
    // The box the map gives is accepted; another one is refused, naming the model and the map.
    assert_eq!(bench_json(&["--model", half.to_str().unwrap(), "--box", "24"])["box"].as_u64(), Some(24));
    let o = run(&["bench", "--model", half.to_str().unwrap(), "--box", "32", "--steps", "2", "--repeats", "1"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("--box 32") && e.contains("gaussians_a.ply") && e.contains("map.mrc"), "{e}");
    // The file of both halves runs, and says that a step renders one half.
    let both = rec.join("gaussians.ply");
    let o = run(&["bench", "--model", both.to_str().unwrap(), "--steps", "2", "--repeats", "1", "--threads", "2"]);
    let (out, e) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{e}");
    assert_eq!(count(&both), 2 * count(&half));
    assert!(e.contains("both half models") && e.contains("gaussians_a.ply"), "{e}");
    assert!(out.contains("images/s") && out.contains("footprints") && out.contains("gaussians.ply"), "{out}");
    // Refinement on the trained model.
    let v = bench_json(&["--model", half.to_str().unwrap(), "--refine", "pose,defocus"]);
    assert!(v["images_per_s"].as_f64().unwrap() > 0.0 && v["refine"]["pose"] == true, "{v}");
    // --gaussians belongs to the random model.
    let o = run(&["bench", "--model", half.to_str().unwrap(), "--gaussians", "10"]);
    assert!(!o.status.success() && stderr(&o).contains("--gaussians"), "{}", stderr(&o));
}

#[test]
fn missing_and_malformed_models_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.ply");
    let o = run(&["bench", "--model", absent.to_str().unwrap(), "--box", "24", "--apix", "2", "--steps", "2", "--repeats", "1"]);
    assert!(!o.status.success() && stderr(&o).contains("absent.ply"), "{}", stderr(&o));
    let broken = dir.path().join("broken.ply");
    std::fs::write(&broken, b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nend_header\n").unwrap();
    let o = run(&["bench", "--model", broken.to_str().unwrap(), "--box", "24", "--apix", "2", "--steps", "2", "--repeats", "1"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("broken.ply") && e.contains("no property y"), "{e}");
    std::fs::write(&broken, b"not a model").unwrap();
    let o = run(&["bench", "--model", broken.to_str().unwrap(), "--box", "24", "--apix", "2", "--steps", "2", "--repeats", "1"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("broken.ply") && e.contains("not a PLY file"), "{e}");
    // Without a map beside it, the box and the pixel size must be stated.
    let o = run(&["bench", "--model", broken.to_str().unwrap(), "--steps", "2", "--repeats", "1"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("broken.ply"), "{e}");
}

#[test]
fn a_symmetric_run_s_model_is_its_unit_s_expansion() {
    let dir = tempfile::tempdir().unwrap();
    let rec = tiny_reconstruction(dir.path(), "c2", &["--sym", "C2", "--sym-offset", "6,0,0"]);
    let half = rec.join("gaussians_a.ply");
    let n = count(&half);
    let v = bench_json(&["--model", half.to_str().unwrap(), "--sym", "C2", "--phases"]);
    assert_eq!((v["gaussians"].as_u64(), v["unit_gaussians"].as_u64(), v["sym"].as_str()), (Some(n), Some(n / 2), Some("C2")));
    assert!(v["phases"]["expand_ms"].as_f64().unwrap() > 0.0 && v["phases"]["fold_ms"].as_f64().unwrap() > 0.0, "{v}");
    // The same file rendered as a C1 model of all its Gaussians.
    let v = bench_json(&["--model", half.to_str().unwrap()]);
    assert_eq!((v["gaussians"].as_u64(), v["unit_gaussians"].as_u64()), (Some(n), Some(n)));
    // Not the expansion of its first half under another group of order 2 (the inversion).
    let o = run(&["bench", "--model", half.to_str().unwrap(), "--sym", "Ci", "--steps", "2", "--repeats", "1"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("gaussians_a.ply") && e.contains("not the expansion"), "{e}");
}
