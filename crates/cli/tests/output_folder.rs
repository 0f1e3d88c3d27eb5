//! Output folders: a folder that holds results is refused unless resumed or overwritten, two
//! runs never write into one folder, and a few inputs that used to panic give clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/");
const BIN: &str = env!("CARGO_BIN_EXE_cryosplat");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).arg("-q").args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A tiny simulated set; returns its STAR file.
fn simulated(dir: &Path) -> PathBuf {
    let sim = dir.join("sim");
    let model = format!("{DATA}models/1A8O.pdb");
    let o = run(&["simulate", &model, "-o", sim.to_str().unwrap(), "--box", "24", "--apix", "2.5", "--count", "40", "--snr", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    sim.join("particles.star")
}

fn reconstruct(star: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["reconstruct", star.to_str().unwrap(), "-o", out.to_str().unwrap(), "--gaussians", "40", "--epochs", "1"];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn results_are_never_overwritten_silently() {
    let dir = tempfile::tempdir().unwrap();
    let star = simulated(dir.path());
    let rec = dir.path().join("rec");
    assert!(reconstruct(&star, &rec, &[]).status.success());
    let map = std::fs::read(rec.join("map.mrc")).unwrap();
    let run_json = std::fs::read(rec.join("run.json")).unwrap();
    // A second run into the folder is refused, naming what is there and what to do.
    let o = reconstruct(&star, &rec, &["--seed", "5"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("map.mrc") && e.contains("--overwrite") && e.contains("--resume"), "{e}");
    assert_eq!(std::fs::read(rec.join("map.mrc")).unwrap(), map, "the earlier map was changed");
    assert_eq!(std::fs::read(rec.join("run.json")).unwrap(), run_json, "the earlier run.json was changed");
    // backproject into a reconstruct folder: refused; with --overwrite, nothing of the earlier
    // run (report, Gaussians, checkpoint) is left beside the new maps.
    let o = run(&["backproject", star.to_str().unwrap(), "-o", rec.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("backproject does not overwrite"), "{}", stderr(&o));
    let o = run(&["backproject", star.to_str().unwrap(), "-o", rec.to_str().unwrap(), "--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for gone in ["report.html", "gaussians.ply", "checkpoint.ckpt", "run.log", "loss.png"] {
        assert!(!rec.join(gone).exists(), "{gone} of the earlier run is still there");
    }
    let run_json: serde_json::Value = serde_json::from_slice(&std::fs::read(rec.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["settings"]["config"]["pad"], 2, "run.json is backproject's");
    // fsc -o and simulate -o follow the same rule.
    let (ha, hb) = (rec.join("half_map_a.mrc"), rec.join("half_map_b.mrc"));
    let fsc_dir = dir.path().join("fsc");
    let fsc = |extra: &[&str]| {
        let mut args = vec!["fsc", ha.to_str().unwrap(), hb.to_str().unwrap(), "-o", fsc_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(&args)
    };
    assert!(fsc(&[]).status.success());
    let o = fsc(&[]);
    assert!(!o.status.success() && stderr(&o).contains("fsc.csv"), "{}", stderr(&o));
    assert!(fsc(&["--overwrite"]).status.success());
    let model = format!("{DATA}models/1A8O.pdb");
    let sim = dir.path().join("sim");
    let o = run(&["simulate", &model, "-o", sim.to_str().unwrap(), "--box", "24", "--count", "10"]);
    assert!(!o.status.success() && stderr(&o).contains("particles.star"), "{}", stderr(&o));
    // --overwrite replaces a reconstruction.
    assert!(reconstruct(&star, &rec, &["--overwrite"]).status.success());
    assert!(rec.join("checkpoint.ckpt").exists() && !rec.join(".cryosplat.lock").exists());
}

#[test]
fn a_folder_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let star = simulated(dir.path());
    let rec = dir.path().join("busy");
    std::fs::create_dir_all(&rec).unwrap();
    // This test process is alive: its lock holds the folder.
    std::fs::write(rec.join(".cryosplat.lock"), format!("{}\n", std::process::id())).unwrap();
    let o = reconstruct(&star, &rec, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("another cryosplat run"), "{}", stderr(&o));
    assert!(!rec.join("map.mrc").exists());
    // A lock whose process has gone (a killed run) is taken over.
    std::fs::write(rec.join(".cryosplat.lock"), "4000000000\n").unwrap();
    let o = reconstruct(&star, &rec, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!rec.join(".cryosplat.lock").exists());
}

#[test]
fn run_json_tells_the_particles_box_from_the_maps_box() {
    // With --downsample the maps are at a smaller box and a larger pixel than the stack:
    // run.json's settings give the stack's (particles_box_px, particles_apix), its summary
    // the maps'.
    let dir = tempfile::tempdir().unwrap();
    let star = simulated(dir.path());
    for prog in ["reconstruct", "backproject"] {
        let out = dir.path().join(prog);
        let o = if prog == "reconstruct" {
            reconstruct(&star, &out, &["--downsample", "16", "--no-postprocess"])
        } else {
            run(&["backproject", star.to_str().unwrap(), "-o", out.to_str().unwrap(), "--downsample", "16", "--no-postprocess"])
        };
        assert!(o.status.success(), "{prog}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
        assert_eq!(v["settings"]["particles_box_px"], 24, "{prog}");
        assert_eq!(v["settings"]["particles_apix"], 2.5, "{prog}");
        assert!(v["settings"]["box_px"].is_null() && v["settings"]["apix"].is_null(), "{prog}: ambiguous names are gone");
        assert_eq!(v["summary"]["box_px"], 16, "{prog}");
        assert!((v["summary"]["apix"].as_f64().unwrap() - 3.75).abs() < 1e-9, "{prog}: {}", v["summary"]["apix"]);
    }
}

#[test]
fn inputs_that_used_to_panic() {
    let dir = tempfile::tempdir().unwrap();
    let star = simulated(dir.path());
    for ds in ["0", "7", "15"] {
        let out = dir.path().join(format!("bp{ds}"));
        let o = run(&["backproject", star.to_str().unwrap(), "-o", out.to_str().unwrap(), "--downsample", ds]);
        let e = stderr(&o);
        assert!(!o.status.success() && !e.contains("panicked"), "{e}");
        assert!(e.contains(&format!("--downsample {ds}")) && e.contains("at least 16"), "{e}");
    }
    // An odd box that reconstruct would refuse is refused by simulate too.
    let model = format!("{DATA}models/1A8O.pdb");
    let odd = dir.path().join("odd");
    let o = run(&["simulate", &model, "-o", odd.to_str().unwrap(), "--box", "45", "--count", "4"]);
    assert!(!o.status.success() && stderr(&o).contains("--box 45") && stderr(&o).contains("even box"), "{}", stderr(&o));
    // One particle leaves a half empty: no resolution can be had, and no empty folder is left.
    let out = dir.path().join("one");
    let o = run(&["backproject", star.to_str().unwrap(), "-o", out.to_str().unwrap(), "--first", "1"]);
    assert!(!o.status.success() && stderr(&o).contains("both halves"), "{}", stderr(&o));
    assert!(!out.exists(), "a failed backprojection left its folder");
    // A non-UTF-8 byte in an argument (here the output folder's name).
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"out-\xff");
        let out = dir.path().join(name);
        let o = Command::new(BIN)
            .args(["-q", "reconstruct", star.to_str().unwrap(), "--gaussians", "40", "--epochs", "1", "-o"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success() && !stderr(&o).contains("panicked"), "{}", stderr(&o));
        assert!(out.join("map.mrc").exists());
    }
}
