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
    // The typed entry beside it says it is a crossing, at the same figure.
    assert_eq!(v["resolution_details"]["resolution_05"], serde_json::json!({"kind": "crossing", "angstrom": r}));
}

#[test]
fn a_curve_that_never_crosses_is_null_with_its_nyquist_bound_as_in_run_json() {
    // A map against a copy of itself at twice the scale agrees in every shell: no crossing, so
    // no number at the top level (as `run.json`'s `resolution_0143`), and the details give the
    // bound in the form of `run.json`'s history.
    let dir = tempfile::tempdir().unwrap();
    let a = format!("{CASE}vol_a.mrc");
    let doubled = dir.path().join("doubled.mrc");
    let v: Vec<f32> = mrc::MrcFile::open(&a).unwrap().read_all().unwrap().iter().map(|x| 2.0 * x).collect();
    mrc::write_volume(&doubled, &v, [32, 32, 32], 1.0, &WriteOptions::default()).unwrap();
    let out = fsc(&[&a, doubled.to_str().unwrap(), "--json", "--apix", "1.5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["resolution_0143", "resolution_05", "resolution_0143_unmasked", "resolution_05_unmasked"] {
        assert!(v[key].is_null(), "{key}: {v}");
        assert_eq!(v["resolution_details"][key], serde_json::json!({"kind": "at_nyquist", "angstrom": 3.0}), "{key}");
    }
}

#[test]
fn degenerate_maps_exit_non_zero_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let zero = flat_map(dir.path(), "zero.mrc", 0.0);
    let flat = flat_map(dir.path(), "flat.mrc", 3.0);
    let (zero, flat) = (zero.to_str().unwrap(), flat.to_str().unwrap());
    let (a, b) = (format!("{CASE}vol_a.mrc"), format!("{CASE}vol_b.mrc"));
    let same = format!("no resolution: {a} (first map) and {a} (second map) hold the same values (one map given twice?)");
    for (args, expect) in [
        (vec![a.as_str(), zero], format!("no resolution: {zero} (second map) is all zero")),
        (vec![zero, zero, "--json"], format!("no resolution: {zero} (first map) is all zero")),
        (vec![flat, a.as_str(), "--mask", "none"], format!("no resolution: {flat} (first map) is constant (3 everywhere)")),
        (vec![a.as_str(), b.as_str(), "--mask", zero], "no resolution: the mask is all zero".to_string()),
        (vec![a.as_str(), a.as_str()], same.clone()),
        (vec![a.as_str(), a.as_str(), "--mask", "none", "--json"], same),
        (
            vec![a.as_str(), b.as_str(), "--cross-validate", b.as_str(), b.as_str()],
            format!("no resolution: {b} (--cross-validate) and {b} (--cross-validate) hold the same values"),
        ),
        (
            vec![a.as_str(), b.as_str(), "--cross-validate", zero, b.as_str()],
            format!("no resolution: {zero} (--cross-validate) is all zero"),
        ),
        (
            vec![a.as_str(), b.as_str(), "--cross-validate", b.as_str(), flat],
            format!("no resolution: {flat} (--cross-validate) is constant (3 everywhere)"),
        ),
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
    let (a, b) = (format!("{CASE}vol_a.mrc"), format!("{CASE}vol_b.mrc"));
    for bad in ["0", "-1", "-0.5", "nan", "NaN", "inf", "-inf", "1e999", "one"] {
        for args in [vec![a.as_str(), b.as_str(), "--apix", bad], vec![a.as_str(), b.as_str(), &*format!("--apix={bad}")]] {
            let out = fsc(&args);
            let err = text(&out.stderr);
            assert!(!out.status.success(), "{args:?}");
            assert!(err.contains("--apix"), "{args:?}: {err}");
            assert!(out.stdout.is_empty(), "{args:?}");
        }
    }
    let out = fsc(&[&a, &b, "--apix", "1.5", "--mask", "none"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn sym_reports_each_maps_agreement_with_its_group_average() {
    use cryosplat_core::symmetry::{symmetrize_map, PointGroup};
    let dir = tempfile::tempdir().unwrap();
    let c4 = PointGroup::parse("C4").unwrap();
    let read = |p: &str| mrc::MrcFile::open(p).unwrap().read_all().unwrap();
    let (va, vb) = (read(&format!("{CASE}vol_a.mrc")), read(&format!("{CASE}vol_b.mrc")));
    let mut sym = Vec::new();
    for (name, v) in [("a4.mrc", &va), ("b4.mrc", &vb)] {
        let p = dir.path().join(name);
        mrc::write_volume(&p, &symmetrize_map(v, 32, &c4), [32, 32, 32], 1.0, &WriteOptions::default()).unwrap();
        sym.push(p.to_str().unwrap().to_string());
    }
    let agreement = |args: &[&str]| {
        let out = fsc(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["symmetry"].as_str().unwrap().to_string(), v["symmetry_agreement"]["first"].as_f64(), v["symmetry_agreement"]["second"].as_f64())
    };
    // Symmetrised maps agree with their C4 average (quarter turns map the grid onto itself;
    // the voxels of the first row and column have no partner inside the box).
    let (name, a, b) = agreement(&[&sym[0], &sym[1], "--sym", "c4", "--json"]);
    assert_eq!(name, "C4");
    assert!(a.unwrap() > 0.999 && b.unwrap() > 0.999, "{a:?} {b:?}");
    // The unsymmetrised maps do not, nor do the C4 maps under a group they lack.
    let (_, a, b) = agreement(&[&format!("{CASE}vol_a.mrc"), &format!("{CASE}vol_b.mrc"), "--sym", "C4", "--json"]);
    eprintln!("C1 maps under C4: {a:?} {b:?}");
    assert!(a.unwrap() < 0.9 && b.unwrap() < 0.9, "{a:?} {b:?}");
    let (_, a, _) = agreement(&[&sym[0], &sym[1], "--sym", "D4", "--json"]);
    eprintln!("C4 maps under D4: {a:?}");
    assert!(a.unwrap() < 0.9, "{a:?}");
    // Without --sym nothing is reported, and the text output names the group.
    let (name, a, _) = agreement(&[&sym[0], &sym[1], "--json"]);
    assert_eq!((name.as_str(), a), ("C1", None));
    let out = fsc(&[&sym[0], &sym[1], "--sym", "C4"]);
    assert!(text(&out.stdout).contains("C4 symmetry: each map's correlation with its group average"), "{}", text(&out.stdout));
    // An unknown group is refused naming the option.
    let out = fsc(&[&sym[0], &sym[1], "--sym", "Q9"]);
    assert!(!out.status.success() && text(&out.stderr).contains("--sym") && text(&out.stderr).contains("Q9"), "{}", text(&out.stderr));
}

/// A 32³ random volume whose spectrum falls as `exp(−k²/(2σ²))`, `σ = width` shells, scaled to
/// rms `rms`.
fn random_volume(width: f64, rms: f32, rng: &mut cryosplat_core::rng::Rng) -> Vec<f32> {
    use cryosplat_core::fourier::{freq_index, Fft3};
    let d = 32;
    let f = Fft3::new(d);
    let white: Vec<f32> = (0..d * d * d).map(|_| rng.normal() as f32).collect();
    let mut spec = f.forward(&white);
    let w = d / 2 + 1;
    for (i, c) in spec.iter_mut().enumerate() {
        let (p, r, x) = (i / (d * w), (i / w) % d, i % w);
        let k2 = (freq_index(p, d).pow(2) + freq_index(r, d).pow(2)) as f64 + (x * x) as f64;
        *c *= (-k2 / (2.0 * width * width)).exp() as f32;
    }
    let v = f.inverse(spec);
    let now = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    v.iter().map(|x| x * rms / now).collect()
}

#[test]
fn cross_validation_limits_half_maps_that_share_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = cryosplat_core::rng::Rng::new(11);
    let truth = random_volume(6.0, 1.0, &mut rng);
    // An error both model halves share, growing against the truth with frequency, and each
    // half's own noise; the backprojections hold the truth and their own noise only.
    let shared = random_volume(10.0, 0.4, &mut rng);
    let write = |name: &str, parts: &[&[f32]], rng: &mut cryosplat_core::rng::Rng| -> String {
        let v: Vec<f32> = (0..truth.len()).map(|i| parts.iter().map(|p| p[i]).sum::<f32>() + 2.0 * rng.normal() as f32).collect();
        let p = dir.path().join(name);
        mrc::write_volume(&p, &v, [32, 32, 32], 1.0, &WriteOptions::default()).unwrap();
        p.to_string_lossy().into_owned()
    };
    let (ga, gb) = (write("ga.mrc", &[&truth, &shared], &mut rng), write("gb.mrc", &[&truth, &shared], &mut rng));
    let (ma, mb) = (write("ma.mrc", &[&truth], &mut rng), write("mb.mrc", &[&truth], &mut rng));
    let plots = dir.path().join("plots");
    let out = fsc(&[&ga, &gb, "--mask", "none", "--json", "--cross-validate", &ma, &mb, "--out", plots.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let claimed = v["resolution_0143_unmasked"].as_f64().unwrap_or_else(|| panic!("{v}"));
    let limit = v["cross_validated"]["limit_0143"].as_f64().unwrap_or_else(|| panic!("{v}"));
    let limited = v["resolution_0143_limited"].as_f64().unwrap_or_else(|| panic!("{v}"));
    assert!(limit > 1.05 * claimed, "the limit {limit} Å is not coarser than the claim {claimed} Å");
    assert_eq!(limited, limit);
    assert_eq!(v["cross_validated"]["half_map_equivalent"].as_array().map(|c| c.len()), Some(17));
    assert!(plots.join("fsc.png").exists() && plots.join("fsc.csv").exists());
    // The limit lies within its range of one standard error.
    let range = &v["cross_validated"]["range_0143"];
    let (finer, coarser) =
        (range["finer"].as_f64().unwrap_or_else(|| panic!("{v}")), range["coarser"].as_f64().unwrap_or_else(|| panic!("{v}")));
    assert!(finer < limit && limit < coarser, "{finer} < {limit} < {coarser} expected");
    // The same in words, and a backprojection of another box is refused with its name.
    let out = fsc(&[&ga, &gb, "--mask", "none", "--cross-validate", &ma, &mb]);
    let said = text(&out.stdout);
    assert!(
        said.contains("cross-validated estimate:")
            && said.contains("within one standard error at 0.143: from ")
            && said.contains("limited (the coarser):"),
        "{said}"
    );
    let small = dir.path().join("small.mrc");
    mrc::write_volume(&small, &vec![1.0; 16 * 16 * 16], [16, 16, 16], 1.0, &WriteOptions::default()).unwrap();
    let out = fsc(&[&ga, &gb, "--cross-validate", &ma, small.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out.stderr).contains("small.mrc (--cross-validate) is 16×16×16"), "{}", text(&out.stderr));
}

#[test]
fn backprojections_given_in_the_wrong_order_are_refused() {
    // Each half's images carry their own noise; its backprojection holds all of it, and a model
    // fitted to the same images holds some of it (as every Gaussian half map does).
    let dir = tempfile::tempdir().unwrap();
    let mut rng = cryosplat_core::rng::Rng::new(23);
    let truth = random_volume(6.0, 1.0, &mut rng);
    let image_noise: Vec<Vec<f32>> = (0..2).map(|_| (0..truth.len()).map(|_| 2.0 * rng.normal() as f32).collect()).collect();
    let write = |name: &str, v: Vec<f32>| -> String {
        let p = dir.path().join(name);
        mrc::write_volume(&p, &v, [32, 32, 32], 1.0, &WriteOptions::default()).unwrap();
        p.to_string_lossy().into_owned()
    };
    let map = |fitted: f32, own: &[f32], rng: &mut cryosplat_core::rng::Rng| -> Vec<f32> {
        truth.iter().zip(own).map(|(t, n)| t + fitted * n + 0.5 * rng.normal() as f32).collect()
    };
    let (ga, gb) = (write("ga.mrc", map(0.3, &image_noise[0], &mut rng)), write("gb.mrc", map(0.3, &image_noise[1], &mut rng)));
    let (ma, mb) = (write("ma.mrc", map(1.0, &image_noise[0], &mut rng)), write("mb.mrc", map(1.0, &image_noise[1], &mut rng)));
    let out = fsc(&[&ga, &gb, "--json", "--cross-validate", &ma, &mb]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["cross_validated"]["pairing"];
    let (excess, se) = (p["own_minus_cross"].as_f64().unwrap_or_else(|| panic!("{v}")), p["standard_error"].as_f64().unwrap());
    assert!(excess > 10.0 * se, "{p}");
    let out = fsc(&[&ga, &gb, "--cross-validate", &mb, &ma]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        err.contains("the --cross-validate backprojections look swapped") && err.contains(&format!("images {ga} was made from")),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// Backprojections whose estimate holds to its last shell: beyond the shells it estimates
/// reliably the maps' own FSC is read, lowered by its largest excess over the estimate. Half
/// maps with independent errors keep their claim; half maps that share an error growing against
/// the molecule's spectrum are read coarser than they claim, as `reconstruct` reports them.
#[test]
fn beyond_the_estimates_last_shell_the_claim_is_lowered_by_its_excess() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = cryosplat_core::rng::Rng::new(5);
    let truth = random_volume(6.0, 1.0, &mut rng);
    let write = |name: &str, extra: &[f32], rng: &mut cryosplat_core::rng::Rng| -> String {
        let v: Vec<f32> = truth.iter().zip(extra).map(|(&t, &e)| t + e + rng.normal() as f32).collect();
        let p = dir.path().join(name);
        mrc::write_volume(&p, &v, [32, 32, 32], 1.0, &WriteOptions::default()).unwrap();
        p.to_string_lossy().into_owned()
    };
    let run = |ga: &str, gb: &str, ma: &str, mb: &str| -> serde_json::Value {
        let out = fsc(&[ga, gb, "--mask", "none", "--json", "--cross-validate", ma, mb]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let none = vec![0.0; truth.len()];
    let [ga, gb, ma, mb] = ["ga.mrc", "gb.mrc", "ma.mrc", "mb.mrc"].map(|n| write(n, &none, &mut rng));
    let v = run(&ga, &gb, &ma, &mb);
    // 32 px at 1 Å: the estimate's last shell is 13 (Nyquist 16, less the backprojection's
    // edge), and the independent halves cross 0.143 just beyond it, where their claim stands.
    let cv = &v["cross_validated"];
    assert!(cv["limit_0143"].is_null() && cv["reliable_shell"] == 13 && cv["excess"].as_f64().unwrap() < 0.02, "{v}");
    let claim = v["resolution_0143"].as_f64().unwrap_or_else(|| panic!("{v}"));
    assert!(claim < 32.0 / 13.0, "{v}");
    let limited = v["resolution_0143_limited"].as_f64().unwrap();
    assert!((limited - claim).abs() / claim < 0.01, "{v}");
    let said = text(&fsc(&[&ga, &gb, "--mask", "none", "--cross-validate", &ma, &mb]).stdout);
    assert!(said.contains("beyond shell 13 (2.46 Å, the last where its standard error is within 10% of it)"), "{said}");
    // An error both Gaussian halves share, white: against the molecule's falling spectrum it grows
    // with frequency. The halves claim Nyquist; the reading beyond the estimate is coarser than
    // that and than 2.2 Å, near the independent halves' crossing.
    let shared = random_volume(40.0, 0.5, &mut rng);
    let [sa, sb] = ["sa.mrc", "sb.mrc"].map(|n| write(n, &shared, &mut rng));
    let v = run(&sa, &sb, &ma, &mb);
    let cv = &v["cross_validated"];
    assert_eq!(v["resolution_details"]["resolution_0143"]["kind"], "at_nyquist", "{v}");
    assert!(cv["limit_0143"].is_null() && cv["excess"].as_f64().unwrap() > 0.1, "{v}");
    let beyond = cv["beyond_0143"].as_f64().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(v["resolution_0143_limited"].as_f64(), Some(beyond), "{v}");
    assert!(beyond > 2.2 && beyond < 1.05 * claim, "read {beyond} Å beyond the estimate; independent halves {claim} Å");
}

/// With `--sym` the cross-validated estimate's standard error is made over whole orbits of
/// symmetry mates: for C4-symmetric maps it is larger than the same maps read as C1 (whose
/// wedges split the mates, and read a fraction of the scatter).
#[test]
fn with_sym_the_cross_validated_error_counts_symmetry_mates_once() {
    use cryosplat_core::symmetry::{symmetrize_map, PointGroup};
    let dir = tempfile::tempdir().unwrap();
    let c4 = PointGroup::parse("C4").unwrap();
    let mut rng = cryosplat_core::rng::Rng::new(9);
    let truth = symmetrize_map(&random_volume(6.0, 1.0, &mut rng), 32, &c4);
    let mut write = |name: &str, sigma: f32| -> String {
        let noise: Vec<f32> = (0..truth.len()).map(|_| sigma * rng.normal() as f32).collect();
        let v: Vec<f32> = truth.iter().zip(symmetrize_map(&noise, 32, &c4)).map(|(t, n)| t + n).collect();
        let p = dir.path().join(name);
        mrc::write_volume(&p, &v, [32, 32, 32], 1.0, &WriteOptions::default()).unwrap();
        p.to_string_lossy().into_owned()
    };
    let [ga, gb] = ["ga.mrc", "gb.mrc"].map(|n| write(n, 0.5));
    let [ma, mb] = ["ma.mrc", "mb.mrc"].map(|n| write(n, 1.5));
    let error = |sym: &str| -> Vec<f64> {
        let out = fsc(&[&ga, &gb, "--mask", "none", "--sym", sym, "--json", "--cross-validate", &ma, &mb]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["cross_validated"]["standard_error"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    };
    let (c1, sym) = (error("C1"), error("C4"));
    let ratio = (6..=12).map(|n| sym[n] / c1[n]).sum::<f64>() / 7.0;
    eprintln!("standard error with C4 / as C1: {ratio:.2}");
    assert!(ratio > 1.5, "standard error with C4 / as C1, shells 6–12: {ratio} ({sym:?} against {c1:?})");
}

/// Half maps written by `reconstruct` (their label) and read alone, by `fsc` without
/// `--cross-validate`, `postprocess` or `locres`: each warns that their FSC reads finer than the
/// map holds, gives the run's own figures from the run.json beside them, and records them in its
/// JSON; the same maps with another label get no warning.
#[test]
fn gaussian_half_maps_read_alone_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let copy = |from: &str, to: &Path, label: &str| {
        let v = mrc::MrcFile::open(format!("{CASE}{from}")).unwrap().read_all().unwrap();
        mrc::write_volume(to, &v, [32, 32, 32], 1.0, &WriteOptions { label: label.into(), ..Default::default() }).unwrap();
    };
    let label = format!("{}, epoch 7", cryosplat_train::reconstruct::MAP_LABEL);
    let (a, b) = (run_dir.join("half_map_a.mrc"), run_dir.join("half_map_b.mrc"));
    copy("vol_a.mrc", &a, &label);
    copy("vol_b.mrc", &b, &label);
    let run = serde_json::json!({
        "resolution_details": { "resolution_0143": { "kind": "crossing", "angstrom": 12.5 } },
        "cross_validated": { "limit_0143": { "kind": "crossing", "angstrom": 12.5 } },
        "history": [{ "half_map_0143": { "kind": "crossing", "angstrom": 4.1 } }]
    });
    std::fs::write(run_dir.join("run.json"), run.to_string()).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    // `info` shows the label a command goes by.
    let o = Command::new(env!("CARGO_BIN_EXE_cryosplat")).args(["info", a]).output().unwrap();
    assert!(text(&o.stdout).contains(&format!("  label: {label}\n")), "{}", text(&o.stdout));
    let warned = |o: &Output| {
        let e = text(&o.stderr);
        assert!(o.status.success(), "{e}");
        e.contains("these are Gaussian half maps")
            && e.contains("their run reports 12.50 Å at FSC 0.143")
            && e.contains("half maps alone claim 4.10 Å")
    };
    let o = fsc(&[a, b, "--json"]);
    assert!(warned(&o), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["gaussian_half_maps"]["run_resolution_0143"]["angstrom"], 12.5, "{}", v["gaussian_half_maps"]);
    let tool = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_cryosplat")).args(args).output().unwrap();
    let (pp, lr) = (dir.path().join("pp"), dir.path().join("lr"));
    let o = tool(&["postprocess", a, b, "-o", pp.to_str().unwrap()]);
    assert!(warned(&o), "{}", text(&o.stderr));
    // postprocess keeps to the run's figure, as the run's own post-processing does.
    assert!(text(&o.stdout).contains("12.50 Å, the run's figure (this FSC alone: "), "{}", text(&o.stdout));
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(pp.join("postprocess.json")).unwrap()).unwrap();
    assert_eq!(j["gaussian_half_maps"]["run_half_map_0143"]["angstrom"], 4.1, "{j}");
    assert_eq!((j["resolution_0143"].as_f64(), j["lowpass_a"].as_f64()), (Some(12.5), Some(12.5)), "{j}");
    assert_eq!(j["gaussian_half_maps"]["run_limit_applied"], true, "{j}");
    assert!(j["gaussian_half_maps"]["half_map_0143"]["angstrom"].as_f64().unwrap() < 12.5, "{j}");
    assert!(std::fs::read_to_string(pp.join("report.html")).unwrap().contains("Gaussian half maps"));
    let o = tool(&["locres", a, b, "-o", lr.to_str().unwrap(), "--step", "4"]);
    assert!(warned(&o), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(lr.join("locres.json")).unwrap()).unwrap();
    assert_eq!(j["gaussian_half_maps"]["run_resolution_0143"]["kind"], "crossing", "{j}");
    // A run that reports no resolution: postprocess refuses, naming the run.
    let none = serde_json::json!({
        "resolution_details": { "resolution_0143": { "kind": "no_correlation" } },
        "cross_validated": { "limit_0143": { "kind": "no_correlation" } }
    });
    std::fs::write(run_dir.join("run.json"), none.to_string()).unwrap();
    let o = tool(&["postprocess", a, b, "-o", dir.path().join("pp_none").to_str().unwrap()]);
    let e = text(&o.stderr);
    assert!(!o.status.success() && e.contains("run.json (the half maps' run): the run reports no resolution"), "{e}");
    assert!(!dir.path().join("pp_none").join("postprocess.mrc").exists());
    // Other maps: no warning, and null in the JSON.
    let o = fsc(&[&format!("{CASE}vol_a.mrc"), &format!("{CASE}vol_b.mrc"), "--json"]);
    assert!(o.status.success() && !text(&o.stderr).contains("Gaussian half maps"), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["gaussian_half_maps"].is_null(), "{v}");
}
