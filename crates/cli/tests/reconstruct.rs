//! `cryosplat reconstruct` end to end on a tiny simulated set: every file of the output folder
//! is listed in run.json's outputs, and every listed file exists.

use std::collections::BTreeSet;
use std::process::Command;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/");

#[test]
fn run_json_lists_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let rec = dir.path().join("rec");
    let bin = env!("CARGO_BIN_EXE_cryosplat");
    let model = format!("{DATA}models/1A8O.pdb");
    let s = Command::new(bin)
        .args(["-q", "simulate", &model, "-o", sim.to_str().unwrap(), "--box", "24", "--apix", "2.5", "--count", "60", "--snr", "1"])
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let star = sim.join("particles.star");
    let r = Command::new(bin)
        .args(["-q", "reconstruct", star.to_str().unwrap(), "-o", rec.to_str().unwrap(), "--gaussians", "50", "--epochs", "1"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(rec.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["finished"], true);
    let listed: BTreeSet<String> = run["summary"]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| std::path::Path::new(p.as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let present: BTreeSet<String> =
        std::fs::read_dir(&rec).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(listed, present);
    for f in [
        "map.mrc",
        "map_gaussians.mrc",
        "half_map_a.mrc",
        "half_map_b.mrc",
        "fsc.csv",
        "fsc.png",
        "report.html",
        "gaussians.ply",
        "run.log",
        "views.png",
    ] {
        assert!(listed.contains(f), "{f} missing from {listed:?}");
    }
    // The report shows where the particles look along.
    let html = std::fs::read_to_string(rec.join("report.html")).unwrap();
    assert!(html.contains("<h2>Views</h2>") && html.contains("directions (10° cells"), "no views section");
    // The completed map is the one post-processed.
    assert!(listed.contains("map_sharp.mrc"), "{listed:?}");
    assert_eq!(run["postprocess"]["from"], "map.mrc (completed)", "{}", run["postprocess"]);
    // A backprojection of the same particles records the same halves, and `fsc
    // --cross-validate` takes it; given swapped, or made from other particles, it is refused
    // before anything is read.
    let backproject = |out: &std::path::Path, extra: &[&str]| {
        let o = Command::new(bin)
            .args(["-q", "backproject", star.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-postprocess"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(out.join("run.json")).unwrap()).unwrap()
    };
    let (bp, other) = (dir.path().join("bp"), dir.path().join("other"));
    let bp_run = backproject(&bp, &[]);
    assert_eq!(bp_run["half_split"], run["half_split"]);
    let halves = &run["half_split"]["particles"];
    assert_eq!(halves[0].as_u64().unwrap() + halves[1].as_u64().unwrap(), 60, "{halves}");
    let other_run = backproject(&other, &["--first", "40"]);
    assert_ne!(other_run["half_split"], run["half_split"]);
    let cross = |bp_dir: &std::path::Path, order: [&str; 2]| {
        let p = |d: &std::path::Path, f: &str| d.join(f).to_str().unwrap().to_string();
        Command::new(bin)
            .args([
                "fsc",
                &p(&rec, "half_map_a.mrc"),
                &p(&rec, "half_map_b.mrc"),
                "--cross-validate",
                &p(bp_dir, order[0]),
                &p(bp_dir, order[1]),
            ])
            .output()
            .unwrap()
    };
    let ok = cross(&bp, ["half_map_a.mrc", "half_map_b.mrc"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let swapped = cross(&bp, ["half_map_b.mrc", "half_map_a.mrc"]);
    let e = String::from_utf8_lossy(&swapped.stderr);
    assert!(!swapped.status.success() && e.contains("in the other order (as their run.json files record them)"), "{e}");
    let refused = cross(&other, ["half_map_a.mrc", "half_map_b.mrc"]);
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && e.contains("were made from other halves") && e.contains("may then share images"), "{e}");
}

#[test]
fn the_report_names_the_point_group_in_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let bin = env!("CARGO_BIN_EXE_cryosplat");
    let model = format!("{DATA}models/1A8O.pdb");
    let s = Command::new(bin)
        .args(["-q", "simulate", &model, "-o", sim.to_str().unwrap(), "--box", "24", "--apix", "2.5", "--count", "60", "--snr", "1"])
        .args(["--sym", "C2", "--sym-offset", "6,0,0"])
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let star = sim.join("particles.star");
    let result_section = |sym: &str| {
        let rec = dir.path().join(format!("rec-{sym}"));
        let r = Command::new(bin)
            .args(["-q", "reconstruct", star.to_str().unwrap(), "-o", rec.to_str().unwrap(), "--gaussians", "50", "--epochs", "1"])
            .args(["--sym", sym, "--no-postprocess", "--average-tail", "0.5"])
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let html = std::fs::read_to_string(rec.join("report.html")).unwrap();
        // The FSC section says how far the reported resolution was found to hold, and how it is
        // limited.
        assert!(html.contains("How far to trust the resolution") && html.contains("0.98 to 1.09 times"), "{html}");
        assert!(html.contains("cross-validated estimate (0.143)") && html.contains("half-map FSC alone (0.143)"), "{html}");
        // With the tail average, the map section says what map.mrc is made of.
        assert!(
            html.contains("the average of the half maps, each made from its half model averaged over the last 50% of its steps"),
            "{html}"
        );
        let start = html.find("Result").expect("a Result section");
        let end = html[start..].find("Fourier shell correlation").expect("the FSC section") + start;
        html[start..end].to_string()
    };
    let c2 = result_section("C2");
    assert!(c2.contains("point group") && c2.contains("C2 (2 copies of the asymmetric unit)"), "{c2}");
    assert!(c2.contains("25 in the asymmetric unit, 50 in all copies"), "{c2}");
    let c1 = result_section("C1");
    assert!(c1.contains("C1 (no symmetry)") && !c1.contains("asymmetric unit"), "{c1}");
}

#[test]
fn refine_names_what_it_refines() {
    let bin = env!("CARGO_BIN_EXE_cryosplat");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    for (arg, want) in [("pose,tilt", "\"tilt\" is not one of pose, shift, defocus"), (",", "name at least one of pose, shift, defocus")] {
        let r = Command::new(bin).args(["reconstruct", "missing.star", "-o", out.to_str().unwrap(), "--refine", arg]).output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.contains("--refine") && err.contains(want), "{arg}: {err}");
        assert!(!out.exists(), "{arg}: nothing is written");
    }
}
