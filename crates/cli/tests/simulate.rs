//! `cryosplat simulate` end to end on the bundled atomic models and the toy map.

use std::path::Path;
use std::process::Command;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/");

/// `cryosplat simulate INPUT -o OUT` with the options in `extra` (separated by spaces).
fn simulate_into(input: &str, out: &Path, extra: &str) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cryosplat"));
    cmd.arg("simulate").arg(input).arg("-o").arg(out).args(extra.split_whitespace());
    cmd.output().expect("run cryosplat")
}

fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap()
}

#[test]
fn pdb_and_mmcif_models() {
    // Atom counts from tests/data/README.upstream.md: 1A8O 644, 8ZPM 3,222.
    for (file, atoms) in [("models/1A8O.pdb", 644), ("models/8zpm.cif", 3222)] {
        let dir = tempfile::tempdir().unwrap();
        let out = simulate_into(&format!("{DATA}{file}"), dir.path(), "--box 32 --apix 3 --count 20 --threads 1");
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let m = meta(dir.path());
        assert_eq!(m["source"]["atoms"], atoms, "{file}");
        assert_eq!(m["count"], 20);
        for f in ["particles.mrcs", "particles.star", "gt.mrc"] {
            assert!(dir.path().join(f).exists(), "{file}: {f}");
        }
        assert_eq!(std::fs::metadata(dir.path().join("particles.mrcs")).unwrap().len(), 1024 + 20 * 32 * 32 * 4);
    }
}

#[test]
fn map_input_takes_size_and_pixel_from_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let out = simulate_into(&format!("{DATA}cryodrgn-toy/toymodel_small_nocenter.mrc"), dir.path(), "--count 4 --snr inf");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m = meta(dir.path());
    assert_eq!(m["box_px"], 30);
    assert_eq!(m["apix"], 1.0);
    assert_eq!(m["noise_sigma"], 0.0);
}

#[test]
fn bad_input_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pdb");
    std::fs::write(&bad, "ATOM      1  CA  ALA A   1      11.1xx  12.000  13.000  1.00 20.00           C\n").unwrap();
    let out = simulate_into(bad.to_str().unwrap(), &dir.path().join("o"), "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.pdb") && err.contains("line 1"), "{err}");
    let out = simulate_into(&format!("{DATA}models/1A8O.pdb"), &dir.path().join("o"), "--defocus 3 1");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("defocus"));
}
