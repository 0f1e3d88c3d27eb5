//! `cryosplat fsc` end to end: degenerate maps are refused with the reason, `--apix` is checked
//! where it is parsed, and a normal pair still gives a resolution.

use cryosplat_formats::mrc::{self, WriteOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/reference/fsc_case/");

fn fsc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cryosplat")).arg("fsc").args(args).output().expect("run cryosplat")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A 32³ map of `value` everywhere, 1 Å/px, written into `dir`.
fn flat_map(dir: &Path, name: &str, value: f32) -> PathBuf {
    let p = dir.join(name);
    mrc::write_volume(&p, &vec![value; 32 * 32 * 32], [32, 32, 32], 1.0, &WriteOptions::default()).unwrap();
    p
}

#[test]
fn a_normal_pair_gives_a_resolution() {
    let out = fsc(&[&format!("{CASE}vol_a.mrc"), &format!("{CASE}vol_b.mrc"), "--mask", "none", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The same data as the core test `relion_shells_and_resolutions`: 0.5 is crossed between 3.5 and 7 Å.
    let r = v["resolution_05"].as_f64().unwrap_or_else(|| panic!("{v}"));
    assert!(r > 3.5 && r < 7.0, "{r}");
}

#[test]
fn degenerate_maps_exit_non_zero_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let zero = flat_map(dir.path(), "zero.mrc", 0.0);
    let flat = flat_map(dir.path(), "flat.mrc", 3.0);
    let (zero, flat) = (zero.to_str().unwrap(), flat.to_str().unwrap());
    let a = format!("{CASE}vol_a.mrc");
    for (args, expect) in [
        (vec![a.as_str(), zero], format!("no resolution: {zero} (second map) is all zero")),
        (vec![zero, zero, "--json"], format!("no resolution: {zero} (first map) is all zero")),
        (vec![flat, a.as_str(), "--mask", "none"], format!("no resolution: {flat} (first map) is constant (3 everywhere)")),
        (vec![a.as_str(), a.as_str(), "--mask", zero], "no resolution: the mask is all zero".to_string()),
    ] {
        let out = fsc(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {}", text(&out.stdout));
        assert!(err.contains(&expect), "{args:?}: {err}");
        assert!(!text(&out.stdout).contains("Nyquist"), "{args:?}");
    }
}

#[test]
fn bad_pixel_sizes_are_refused_naming_the_option() {
    let a = format!("{CASE}vol_a.mrc");
    for bad in ["0", "-1", "-0.5", "nan", "NaN", "inf", "-inf", "1e999", "one"] {
        for args in [vec![a.as_str(), a.as_str(), "--apix", bad], vec![a.as_str(), a.as_str(), &*format!("--apix={bad}")]] {
            let out = fsc(&args);
            let err = text(&out.stderr);
            assert!(!out.status.success(), "{args:?}");
            assert!(err.contains("--apix"), "{args:?}: {err}");
            assert!(out.stdout.is_empty(), "{args:?}");
        }
    }
    let out = fsc(&[&a, &a, "--apix", "1.5", "--mask", "none"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
