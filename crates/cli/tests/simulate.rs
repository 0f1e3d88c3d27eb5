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

/// FNV-1a (64 bits) of a file's bytes: a fingerprint for comparing outputs with earlier ones.
fn fnv1a(path: &Path) -> u64 {
    std::fs::read(path).unwrap().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The particle rows of a STAR file, each as its whitespace-separated fields.
fn star_rows(path: &Path) -> Vec<Vec<String>> {
    let f = cryosplat_formats::star::read(path).unwrap();
    f.block("particles").unwrap().table().unwrap().rows.clone()
}

#[test]
fn default_output_is_that_of_the_simulator_before_recorded_errors() {
    // Files written by the simulator before `--pose-error`, `--shift-error` and
    // `--defocus-error` existed, for these options: the particle rows and the fingerprints
    // of particles.star and particles.mrcs. Zero errors, given or not, change nothing.
    let want_rows = [
        "000001@particles.mrcs -80.473023 91.494765 -0.244495 -4.954117 2.618315 20467.377451 20319.046617 -89.757137 0.000000 0.000000 1.000000 1 2",
        "000002@particles.mrcs 88.886556 58.961366 -150.068933 5.498833 0.292905 11160.063734 11009.855381 162.071403 0.000000 0.000000 1.000000 1 1",
        "000003@particles.mrcs 26.514296 53.374425 151.854035 -3.988439 -3.603232 11901.146554 11685.037048 157.504639 0.000000 0.000000 1.000000 1 2",
        "000004@particles.mrcs -38.742018 88.596082 81.198709 -0.059523 4.993469 11510.711905 11407.853613 23.899620 0.000000 0.000000 1.000000 1 1",
    ];
    let base = "--box 16 --apix 3 --count 4 --max-shift 2 --seed 11 --threads 1";
    for extra in ["", " --pose-error 0 --shift-error 0 --defocus-error 0"] {
        let dir = tempfile::tempdir().unwrap();
        let out = simulate_into(&format!("{DATA}models/1A8O.pdb"), dir.path(), &format!("{base}{extra}"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let star = dir.path().join("particles.star");
        let text = std::fs::read_to_string(&star).unwrap();
        let rows: Vec<&str> = text.lines().filter(|l| l.contains("@particles.mrcs")).collect();
        assert_eq!(rows, want_rows, "options '{extra}'");
        assert_eq!(fnv1a(&star), 0x485d_11a0_f97c_64c7, "particles.star, options '{extra}'");
        assert_eq!(fnv1a(&dir.path().join("particles.mrcs")), 0xc5e0_d6f3_5af7_bfc1, "particles.mrcs, options '{extra}'");
        assert!(!dir.path().join("particles_true.star").exists());
        let m = meta(dir.path());
        assert_eq!(m["recorded_errors"]["rms_angle_deg"], 0.0);
        assert!(m["recorded_errors"]["truth"].is_null());
    }
}

#[test]
fn recorded_errors_have_the_requested_rms_and_the_truth_is_kept() {
    // 1000 particles with 2° rms rotation errors, 0.8 px rms shifts per axis and 300 Å rms
    // defocus offsets, against the same set without errors.
    let n = 1000usize;
    let (sigma_deg, sigma_px, sigma_a, apix) = (2.0, 0.8, 300.0, 3.0);
    let base = format!("--box 16 --apix {apix} --count {n} --max-shift 2 --seed 5 --snr 1");
    let input = format!("{DATA}models/1A8O.pdb");
    let plain = tempfile::tempdir().unwrap();
    let out = simulate_into(&input, plain.path(), &format!("{base} --threads 1"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let errors = format!(" --pose-error {sigma_deg} --shift-error {sigma_px} --defocus-error {sigma_a}");
    let [with, again] = [1, 2].map(|threads| {
        let dir = tempfile::tempdir().unwrap();
        let out = simulate_into(&input, dir.path(), &format!("{base}{errors} --threads {threads}"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        dir
    });
    // The images are those of the true parameters, and the truth is the plain run's STAR.
    for f in ["particles.mrcs", "gt.mrc"] {
        assert_eq!(std::fs::read(with.path().join(f)).unwrap(), std::fs::read(plain.path().join(f)).unwrap(), "{f}");
    }
    let truth = std::fs::read(plain.path().join("particles.star")).unwrap();
    assert_eq!(std::fs::read(with.path().join("particles_true.star")).unwrap(), truth);
    // Reproducible whatever the thread count.
    for f in ["particles.star", "particles_true.star", "particles.mrcs"] {
        assert_eq!(std::fs::read(with.path().join(f)).unwrap(), std::fs::read(again.path().join(f)).unwrap(), "{f}");
    }
    // The differences between the two STAR files.
    let (t, r) = (star_rows(&with.path().join("particles_true.star")), star_rows(&with.path().join("particles.star")));
    assert_eq!((t.len(), r.len()), (n, n));
    let num = |row: &[String], k: usize| row[k].parse::<f64>().unwrap();
    let rotation = |row: &[String]| cryosplat_core::rotation::euler_to_matrix(num(row, 1), num(row, 2), num(row, 3));
    let (mut a2, mut o2, mut z2) = (0.0, 0.0, 0.0);
    for (t, r) in t.iter().zip(&r) {
        assert_eq!(t[0], r[0], "image names");
        assert_eq!(t[9..], r[9..], "defocus angle, other CTF values, optics group and half set are kept");
        a2 += cryosplat_core::rotation::angle_between_deg(&rotation(t), &rotation(r)).powi(2);
        o2 += ((num(r, 4) - num(t, 4)) / apix).powi(2) + ((num(r, 5) - num(t, 5)) / apix).powi(2);
        let (du, dv) = (num(r, 6) - num(t, 6), num(r, 7) - num(t, 7));
        assert!((du - dv).abs() < 3e-6, "one defocus offset for U and V: {du} vs {dv}");
        z2 += du * du;
    }
    let (rms_angle, rms_shift, rms_defocus) = ((a2 / n as f64).sqrt(), (o2 / (2 * n) as f64).sqrt(), (z2 / n as f64).sqrt());
    // Sampling error of a mean square of m values of (σ²/ν)·χ²_ν: relative standard deviation
    // sqrt(2/(ν·m)). Angles: ν = 3, m = n; shifts: ν = 1, m = 2n; defocus: ν = 1, m = n. Each
    // rms must be within 4 such standard deviations (halved for the root).
    eprintln!("recorded errors: rms angle {rms_angle:.4}°, shift {rms_shift:.4} px per axis, defocus {rms_defocus:.2} Å");
    let nf = n as f64;
    for (name, got, want, rel_sd) in [
        ("angle (°)", rms_angle, sigma_deg, (2.0 / (3.0 * nf)).sqrt()),
        ("shift per axis (px)", rms_shift, sigma_px, (1.0 / nf).sqrt()),
        ("defocus (Å)", rms_defocus, sigma_a, (2.0 / nf).sqrt()),
    ] {
        assert!((got / want - 1.0).abs() < 2.0 * rel_sd, "rms {name}: {got} for {want} requested");
    }
    let m = meta(with.path());
    let e = &m["recorded_errors"];
    assert_eq!(e["pose_error_deg"], sigma_deg);
    assert_eq!(e["truth"], "particles_true.star");
    for (key, want) in [("rms_angle_deg", rms_angle), ("rms_shift_px_per_axis", rms_shift), ("rms_defocus_a", rms_defocus)] {
        let got = e[key].as_f64().unwrap();
        assert!((got - want).abs() < 1e-6 * want, "meta.json {key}: {got} vs {want}");
    }
}

#[test]
fn negative_recorded_errors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (opt, name) in [("--pose-error", "pose error"), ("--shift-error", "shift error"), ("--defocus-error", "defocus error")] {
        let out = simulate_into(&format!("{DATA}models/1A8O.pdb"), &dir.path().join("o"), &format!("--box 16 --count 2 {opt}=-1"));
        assert!(!out.status.success(), "{opt}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name), "{opt}: {err}");
    }
}

/// The viewing directions `info` and `backproject` report are those `simulate` drew: uniform
/// views leave no more directions empty than chance, views gathered about an axis leave most
/// empty and peak on that axis (the convention of the preferred orientation and of the views'
/// summary agree), and `backproject` draws them in views.png and warns of gathered views.
#[test]
fn the_views_reported_are_the_views_simulated() {
    let dir = tempfile::tempdir().unwrap();
    let info = |sim: &Path| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_cryosplat")).args(["info", "--json"]).arg(sim.join("particles.star")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let model = format!("{DATA}models/1A8O.pdb");
    let uniform = dir.path().join("uniform");
    let out = simulate_into(&model, &uniform, "--box 16 --apix 4 --count 3000 --threads 1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = &info(&uniform)["views"];
    // 3,000 views on 324 directions: (1 − 1/324)^3000 ≈ 1e-4 of them empty by chance.
    assert!(v["empty_fraction"].as_f64().unwrap() < 0.01 && v["max_over_mean"].as_f64().unwrap() < 2.0, "{v}");
    // Gathered about the x axis (rot 0°, tilt 90°): 90% within 37° at κ = 10, so at κ = 50.
    let gathered = dir.path().join("gathered");
    let out = simulate_into(&model, &gathered, "--box 16 --apix 4 --count 3000 --threads 1 --preferred-orientation 1,0,0,50");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = &info(&gathered)["views"];
    assert!(v["empty_fraction"].as_f64().unwrap() > 0.8 && v["max_over_mean"].as_f64().unwrap() > 20.0, "{v}");
    // The map's transform is least measured along the views' axis, ±x: tilt near 90°, rot
    // near 0° or ±180°; and there is a warning. The uniform set has none.
    let rot = v["least_sampled"]["rot_tilt_deg"][0].as_f64().unwrap();
    let tilt = v["least_sampled"]["rot_tilt_deg"][1].as_f64().unwrap();
    let off_axis = rot.abs().min(180.0 - rot.abs());
    assert!((tilt - 90.0).abs() < 10.0 && off_axis < 10.0 && v["least_sampled"]["share"].as_f64().unwrap() < 0.01, "{v}");
    assert!(v["warning"].is_string() && info(&uniform)["views"]["warning"].is_null(), "{v}");
    let bp = dir.path().join("bp");
    let out = Command::new(env!("CARGO_BIN_EXE_cryosplat"))
        .args(["backproject", "--no-postprocess", "-o"])
        .arg(&bp)
        .arg(gathered.join("particles.star"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("views: "), "{}", String::from_utf8_lossy(&out.stdout));
    // Views gathered about one axis are warned of; uniform ones are not.
    assert!(String::from_utf8_lossy(&out.stderr).contains("barely measured"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_cryosplat"))
        .args(["backproject", "--no-postprocess", "-o"])
        .arg(dir.path().join("bp_uniform"))
        .arg(uniform.join("particles.star"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("barely measured"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&std::fs::read(bp.join("views.png")).unwrap()[1..4], b"PNG");
}
