//! `cryosplat postprocess` and `cryosplat mask` end to end, on RELION's reference half maps
//! (tests/data/reference/postprocess).

use std::path::Path;
use std::process::{Command, Output};

const REF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/reference/postprocess/");

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cryosplat")).args(args).output().expect("run cryosplat")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("postprocess.json")).unwrap()).unwrap()
}

/// Every `open` in the ChimeraX command file `cxc` names a file that exists, resolved as ChimeraX
/// resolves it: relative paths against the command file's own folder (ChimeraX runs a command
/// script with its folder as the current directory; see `CXC_PATHS_NOTE` in
/// crates/cli/src/cmd/postprocess.rs for the page that says so). Returns the files opened.
fn cxc_opens_resolve(cxc: &Path) -> Vec<std::path::PathBuf> {
    let text = std::fs::read_to_string(cxc).unwrap();
    let folder = cxc.parent().unwrap();
    let mut opened = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap();
        assert_ne!(command, "cd", "{}: a cd would change how the paths after it resolve: {line}", cxc.display());
        if command == "open" {
            let name = words.next().unwrap_or_else(|| panic!("{}: open without a file", cxc.display())).trim_matches('"');
            let path = Path::new(name);
            let resolved = if path.is_absolute() { path.to_path_buf() } else { folder.join(path) };
            assert!(resolved.is_file(), "{}: `{line}` opens {}, which does not exist", cxc.display(), resolved.display());
            opened.push(resolved);
        }
    }
    assert!(!opened.is_empty(), "{}: opens nothing\n{text}", cxc.display());
    opened
}

/// The report embeds `figures` PNGs (base64) and contains every piece of `text`.
fn check_report(dir: &Path, figures: usize, text: &[&str]) {
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    // The page without its embedded images, for the messages.
    let readable: String = html
        .split("base64,")
        .enumerate()
        .map(|(i, part)| if i == 0 { part } else { part.split_once('"').map_or(part, |(_, rest)| rest) })
        .collect::<Vec<_>>()
        .join("…");
    assert_eq!(html.matches("data:image/png;base64,iVBOR").count(), figures, "{readable}");
    assert!(!html.contains("figure not available"), "{readable}");
    for t in text {
        assert!(html.contains(t), "{t:?} is not in the report\n{readable}");
    }
}

fn postprocess(out: &Path, extra: &[&str]) -> Output {
    let (a, b) = (format!("{REF}half1.mrc"), format!("{REF}half2.mrc"));
    let mut args = vec!["postprocess", a.as_str(), b.as_str(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn relion_half_maps_with_relions_mask() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pp");
    let mask = format!("{REF}mask.mrc");
    // RELION 5's fit runs to Nyquist (2 × 2.2 Å), on the unmasked average; the same here.
    let o = postprocess(&out, &["--mask", &mask, "--autob-highres", "4.4", "--guinier-map", "unmasked"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for f in [
        "postprocess.mrc",
        "postprocess_masked.mrc",
        "mask.mrc",
        "postprocess.json",
        "fsc.png",
        "guinier.png",
        "view.cxc",
        "slices.png",
        "report.html",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert_eq!(cxc_opens_resolve(&out.join("view.cxc")), [out.join("postprocess_masked.mrc")]);
    // The report: the results, the mask and three figures (FSC, Guinier, slices of the map).
    check_report(
        &out,
        3,
        &[
            "Post-processing",
            "-167.7 Å² (automatic)",
            "4.61 Å",
            "10.00–4.40 Å (shells 15–32, 18 points)",
            "mask.mrc (given)",
            "Central slices of postprocess.mrc",
        ],
    );
    let slices = image::open(out.join("slices.png")).unwrap();
    assert_eq!((slices.width(), slices.height()), (3 * 192 + 4 * 8, 192 + 24 + 8), "three 64 px slices, 3× enlarged");
    let v = json(&out);
    let res = v["resolution_0143"].as_f64().unwrap();
    // RELION: 4.693 Å, shell 30 of 64 × 2.2 Å; ours within a shell.
    assert!((140.8 / res - 30.0).abs() <= 1.0, "{res}");
    assert_eq!(v["resolution_details"]["resolution_0143"], serde_json::json!({"kind": "crossing", "angstrom": res}));
    let b = v["bfactor"].as_f64().unwrap();
    assert!((b + 167.3).abs() < 0.1 * 167.3, "B {b} vs RELION's −167.3");
    assert_eq!(v["fit"]["first_shell"], 15);
    assert_eq!(v["fit"]["last_shell"], 32);
    assert!(v["fit_refused"].is_null());
    assert_eq!(v["guinier_map"], "unmasked");
    assert!(text(&o.stdout).contains("B-factor: -16"), "{}", text(&o.stdout));
    // The mask written is the one given.
    let given = cryosplat_formats::mrc::MrcFile::open(&mask).unwrap().read_all().unwrap();
    let written = cryosplat_formats::mrc::MrcFile::open(out.join("mask.mrc")).unwrap().read_all().unwrap();
    assert_eq!(given, written);

    // No silent overwrite; --overwrite replaces.
    let again = postprocess(&out, &["--mask", &mask]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("--overwrite"), "{}", text(&again.stderr));
    let again = postprocess(&out, &["--mask", &mask, "--overwrite"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    // The default fit stops at the resolution.
    let v = json(&out);
    assert_eq!(v["fit"]["last_shell"], 30);
}

#[test]
fn a_short_fit_range_falls_back_and_a_given_b_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mask = format!("{REF}mask.mrc");
    // 5 Å to the resolution (about 4.6 Å): three shells, too few to fit.
    let out = dir.path().join("short");
    let o = postprocess(&out, &["--mask", &mask, "--autob-lowres", "5"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("not sharpened"), "{}", text(&o.stdout));
    let v = json(&out);
    assert_eq!(v["bfactor"].as_f64(), Some(0.0));
    assert!(v["fit"].is_null());
    assert!(v["fit_refused"].as_str().unwrap().contains("fewer than"), "{v}");
    let out = dir.path().join("given");
    let o = postprocess(&out, &["--mask", &mask, "--bfactor", "-100", "--lowpass", "6"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v = json(&out);
    assert_eq!((v["bfactor"].as_f64(), v["bfactor_mode"].as_str(), v["lowpass_a"].as_f64()), (Some(-100.0), Some("given"), Some(6.0)));
}

#[test]
fn auto_mask_and_the_mask_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("auto");
    let o = postprocess(&out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("mask: auto"), "{}", text(&o.stdout));
    assert_eq!(json(&out)["mask"]["source"], "auto");

    let m = dir.path().join("m.mrc");
    let map = format!("{REF}half1.mrc");
    let o = run(&["mask", &map, "-o", m.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("auto: median"), "{}", text(&o.stdout));
    let v = cryosplat_formats::mrc::MrcFile::open(&m).unwrap().read_all().unwrap();
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)) && v.contains(&1.0) && v.contains(&0.0));
    let o = run(&["mask", &map, "-o", m.to_str().unwrap(), "--threshold", "4"]);
    assert!(!o.status.success() && text(&o.stderr).contains("--overwrite"), "{}", text(&o.stderr));
    let o = run(&["mask", &map, "-o", m.to_str().unwrap(), "--threshold", "4", "--overwrite", "--lowpass", "none"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run(&["mask", &map, "-o", dir.path().join("e.mrc").to_str().unwrap(), "--threshold", "400"]);
    assert!(!o.status.success() && text(&o.stderr).contains("empty"), "{}", text(&o.stderr));
}

/// `simulate --envelope B` multiplies every image by exp(−B s²/4) and records it only in
/// meta.json: the STAR file and gt.mrc are those of the same simulation without it.
#[test]
fn simulate_envelope_blurs_the_images_only() {
    use cryosplat_formats::mrc::{self, MrcFile, WriteOptions};
    let dir = tempfile::tempdir().unwrap();
    let (d, apix) = (32usize, 2.0f64);
    // A few Gaussian blobs, off centre so the images have power at every frequency.
    let mut map = vec![0.0f32; d * d * d];
    for (cx, cy, cz) in [(12.0, 15.0, 16.0), (19.0, 17.0, 14.0), (16.0, 11.0, 19.0)] {
        for z in 0..d {
            for y in 0..d {
                for x in 0..d {
                    let r2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2) + (z as f64 - cz).powi(2);
                    map[(z * d + y) * d + x] += (-r2 / 2.0).exp() as f32;
                }
            }
        }
    }
    let input = dir.path().join("blobs.mrc");
    mrc::write_volume(&input, &map, [d, d, d], apix, &WriteOptions::default()).unwrap();
    let sim = |name: &str, envelope: &str| {
        let out = dir.path().join(name);
        let o = run(&[
            "simulate",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--count",
            "3",
            "--snr",
            "inf",
            "--seed",
            "4",
            "--envelope",
            envelope,
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        out
    };
    let b = 300.0;
    let (plain, blurred) = (sim("plain", "0"), sim("blurred", "300"));
    let bytes = |dir: &Path, f: &str| std::fs::read(dir.join(f)).unwrap();
    assert_eq!(bytes(&plain, "particles.star"), bytes(&blurred, "particles.star"), "the envelope must not be recorded in the STAR file");
    assert_eq!(bytes(&plain, "gt.mrc"), bytes(&blurred, "gt.mrc"), "gt.mrc stays unblurred");
    let meta: serde_json::Value = serde_json::from_slice(&bytes(&blurred, "meta.json")).unwrap();
    assert_eq!(meta["envelope_bfactor_a2"].as_f64(), Some(b));
    assert_eq!(meta["settings"]["envelope_bfactor_a2"].as_f64(), Some(b));
    // Component (k, 0) of every image: the blurred one is exp(−B s²/4) times the plain one.
    let (p, q) = (MrcFile::open(plain.join("particles.mrcs")).unwrap(), MrcFile::open(blurred.join("particles.mrcs")).unwrap());
    let mut checked = 0;
    for i in 0..3 {
        let (mut a, mut c) = (vec![0.0f32; d * d], vec![0.0f32; d * d]);
        p.read_image(i, &mut a).unwrap();
        q.read_image(i, &mut c).unwrap();
        let dft = |img: &[f32], k: usize| -> (f64, f64) {
            let (mut re, mut im) = (0.0, 0.0);
            for (j, v) in img.iter().enumerate() {
                let ph = -2.0 * std::f64::consts::PI * (k * (j % d)) as f64 / d as f64;
                re += *v as f64 * ph.cos();
                im += *v as f64 * ph.sin();
            }
            (re, im)
        };
        let peak = dft(&a, 0).0.abs();
        for k in [2usize, 4, 6, 8] {
            let ((ar, ai), (cr, ci)) = (dft(&a, k), dft(&c, k));
            let amp = (ar * ar + ai * ai).sqrt();
            if amp < 1e-3 * peak {
                continue; // near a CTF zero
            }
            let s = k as f64 / (d as f64 * apix);
            let want = (-b * s * s / 4.0).exp();
            let ratio = (cr * ar + ci * ai) / (amp * amp);
            assert!((ratio - want).abs() < 1e-3 + 1e-3 * want, "image {i}, k {k}: ratio {ratio}, expected {want}");
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked}");
}

#[test]
fn local_resolution_of_the_reference_half_maps() {
    use cryosplat_formats::mrc::MrcFile;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lr");
    let (a, b, m) = (format!("{REF}half1.mrc"), format!("{REF}half2.mrc"), format!("{REF}mask.mrc"));
    let args = ["locres", a.as_str(), b.as_str(), "-o", out.to_str().unwrap(), "--mask", m.as_str(), "--step", "4"];
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lr = MrcFile::open(out.join("locres.mrc")).unwrap().read_all().unwrap();
    let mask = MrcFile::open(&m).unwrap().read_all().unwrap();
    let mut inside: Vec<f32> = lr.iter().zip(&mask).filter(|(_, &w)| w > 0.5).map(|(&v, _)| v).collect();
    assert!(lr.iter().zip(&mask).all(|(&v, &w)| (w > 0.5) == (v > 0.0)), "0 exactly outside the mask");
    // Between Nyquist (4.4 Å) and the window's size (18 px × 2.2 Å).
    assert!(inside.iter().all(|&v| (4.4 - 1e-4..=39.6 + 1e-4).contains(&v)));
    inside.sort_by(f32::total_cmp);
    let median = inside[inside.len() / 2];
    // The global resolution is 4.6 Å; locally the core is finer than the periphery.
    assert!(median > 4.4 && median < 8.0, "median {median}");
    let cxc = std::fs::read_to_string(out.join("locres.cxc")).unwrap();
    assert!(cxc.contains("open locres_map.mrc") && cxc.contains("color sample #1 map #2"), "{cxc}");
    assert_eq!(cxc_opens_resolve(&out.join("locres.cxc")), [out.join("locres_map.mrc"), out.join("locres.mrc")]);
    check_report(&out, 2, &["Local resolution", "median", "at Nyquist"]);
    let again = run(&args);
    assert!(!again.status.success() && text(&again.stderr).contains("--overwrite"), "{}", text(&again.stderr));
}

/// The bundled 1A8O model.
const MODEL_1A8O: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/models/1A8O.pdb");

/// Runs the tool with `args`, checks that it succeeded and returns its stdout and stderr.
fn succeeded(args: &[&str]) -> (String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cryosplat")).args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// `backproject` post-processes its half maps at the end: `map_sharp.mrc` and its mask are
/// written and `run.json` gains the B-factor and the post-processed resolution;
/// `--no-postprocess` leaves them out.
#[test]
fn backproject_postprocesses_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let model = MODEL_1A8O;
    let run = |args: &[&str]| succeeded(args).0;
    run(&["simulate", model, "-o", sim.to_str().unwrap(), "--box", "40", "--apix", "1.5", "--count", "600", "--snr", "0.5"]);
    let star = sim.join("particles.star");
    let with = dir.path().join("with");
    let stdout = run(&["backproject", star.to_str().unwrap(), "-o", with.to_str().unwrap()]);
    assert!(stdout.contains("post-processed:"), "{stdout}");
    assert!(with.join("map_sharp.mrc").exists() && with.join("map_sharp_mask.mrc").exists());
    let cxc = std::fs::read_to_string(with.join("view.cxc")).unwrap();
    assert!(cxc.contains("open map.mrc\nvolume #1 level ") && cxc.contains("open map_sharp.mrc"), "{cxc}");
    let opened = cxc_opens_resolve(&with.join("view.cxc"));
    assert!(opened.contains(&with.join("map.mrc")) && opened.contains(&with.join("map_sharp.mrc")), "{opened:?}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(with.join("run.json")).unwrap()).unwrap();
    let pp = &json["postprocess"];
    assert!(pp["bfactor"].is_number() && pp["resolution_0143"].is_number(), "{pp}");
    let res = pp["resolution_0143"].as_f64().unwrap();
    assert!((3.0..20.0).contains(&res), "post-processed resolution {res} Å");
    let without = dir.path().join("without");
    let stdout = run(&["backproject", star.to_str().unwrap(), "-o", without.to_str().unwrap(), "--no-postprocess"]);
    assert!(!stdout.contains("post-processed"), "{stdout}");
    assert!(!without.join("map_sharp.mrc").exists());
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(without.join("run.json")).unwrap()).unwrap();
    assert!(json.get("postprocess").is_none());
}

/// `-q` asks for warnings and errors only: `backproject` then prints nothing on stdout (the
/// files hold its results, post-processing's included), while `fsc`, which exists to print its
/// curves' resolutions, still prints them.
#[test]
fn quiet_runs_print_only_what_a_command_exists_to_print() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let model = MODEL_1A8O;
    let run = succeeded;
    let said = run(&["-q", "simulate", model, "-o", sim.to_str().unwrap(), "--box", "32", "--apix", "2", "--count", "200", "--snr", "0.5"]);
    assert_eq!(said, (String::new(), String::new()));
    let star = sim.join("particles.star");
    let (loud, quiet) = (dir.path().join("loud"), dir.path().join("quiet"));
    let (stdout, _) = run(&["backproject", star.to_str().unwrap(), "-o", loud.to_str().unwrap()]);
    assert!(stdout.contains("half-map resolution") && stdout.contains("post-processed:"), "{stdout}");
    let said = run(&["-q", "backproject", star.to_str().unwrap(), "-o", quiet.to_str().unwrap()]);
    assert_eq!(said, (String::new(), String::new()));
    assert!(quiet.join("map_sharp.mrc").exists() && quiet.join("run.json").exists());
    for file in ["map.mrc", "half_map_a.mrc", "map_sharp.mrc"] {
        assert_eq!(std::fs::read(loud.join(file)).unwrap(), std::fs::read(quiet.join(file)).unwrap(), "{file}");
    }
    let (a, b) = (quiet.join("half_map_a.mrc"), quiet.join("half_map_b.mrc"));
    let (stdout, _) = run(&["-q", "fsc", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(stdout.starts_with("FSC 0.143: "), "{stdout}");
}

/// `locres` on a synthetic pair of half maps whose left half (x < d/2) agrees at every
/// frequency and whose right half agrees only at low frequency: the local resolution is
/// Nyquist on the left and coarse on the right, `report.html` shows the histogram and the
/// slices, and the slices are coloured red (fine) on the left, blue (coarse) on the right and
/// grey outside the mask (y ≥ 40).
#[test]
fn locres_report_colours_fine_and_coarse_regions() {
    use cryosplat_formats::mrc::{self, MrcFile, WriteOptions};
    let (d, apix) = (48usize, 2.0f64);
    let n = d * d * d;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = || -> Vec<f32> {
        (0..n)
            .map(|_| {
                // The sum of 4 uniform numbers (xorshift), centred: close enough to Gaussian.
                let mut t = 0.0f32;
                for _ in 0..4 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    t += (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                }
                t
            })
            .collect()
    };
    let (signal, na, nb) = (noise(), noise(), noise());
    // The signal blurred by six passes of [1, 2, 1]/4 along each axis (periodic): little left
    // above half of Nyquist.
    let mut blurred = signal.clone();
    for _ in 0..6 {
        for axis in [1usize, d, d * d] {
            let prev = blurred.clone();
            for (i, v) in blurred.iter_mut().enumerate() {
                let c = (i / axis) % d;
                let (lo, hi) = (i - c * axis + ((c + d - 1) % d) * axis, i - c * axis + ((c + 1) % d) * axis);
                *v = 0.25 * prev[lo] + 0.5 * prev[i] + 0.25 * prev[hi];
            }
        }
    }
    let rms = (blurred.iter().map(|v| v * v).sum::<f32>() / n as f32).sqrt();
    let half = |own: &[f32]| -> Vec<f32> {
        (0..n).map(|i| if i % d < d / 2 { signal[i] + 0.05 * own[i] } else { blurred[i] / rms + own[i] }).collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, m) = (dir.path().join("a.mrc"), dir.path().join("b.mrc"), dir.path().join("mask.mrc"));
    mrc::write_volume(&a, &half(&na), [d, d, d], apix, &WriteOptions::default()).unwrap();
    mrc::write_volume(&b, &half(&nb), [d, d, d], apix, &WriteOptions::default()).unwrap();
    let mask: Vec<f32> = (0..n).map(|i| if (i / d) % d < 40 { 1.0 } else { 0.0 }).collect();
    mrc::write_volume(&m, &mask, [d, d, d], apix, &WriteOptions::default()).unwrap();
    let out = dir.path().join("lr");
    let o = run(&[
        "locres",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--mask",
        m.to_str().unwrap(),
        "--step",
        "4",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The measured values: Nyquist well inside the left half, coarse well inside the right.
    let lr = MrcFile::open(out.join("locres.mrc")).unwrap().read_all().unwrap();
    let at = |x: usize, y: usize| lr[((d / 2) * d + y) * d + x];
    for y in [8, 20, 32] {
        assert!((at(12, y) - 4.0).abs() < 1e-3, "left, y = {y}: {}", at(12, y));
        assert!(at(36, y) > 6.0, "right, y = {y}: {}", at(36, y));
    }
    check_report(&out, 2, &["Local resolution", "at Nyquist", "sample points"]);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("locres.json")).unwrap()).unwrap();
    let f = json["fraction_at_nyquist"].as_f64().unwrap();
    assert!(f > 0.2 && f < 0.8, "fraction at Nyquist {f}");
    // The slices: the layout of figures::LocresSlicesLayout for 48 px (4× enlarged, 192 px
    // panels, 8 px gaps, a 24 px title row, 110 px of colour bar).
    let img = image::open(out.join("slices.png")).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (3 * 192 + 4 * 8 + 110, 192 + 24 + 2 * 8 + 16));
    // Mean colour over a block of voxels of the first panel (slice z = d/2: x across, y up).
    let mean = |xs: std::ops::Range<u32>, ys: std::ops::Range<u32>| -> [f64; 3] {
        let mut sum = [0.0; 3];
        let mut count = 0.0;
        for x in xs.clone() {
            for y in ys.clone() {
                let p = img.get_pixel(8 + x * 4 + 2, 24 + 192 - (y + 1) * 4 + 2).0;
                for k in 0..3 {
                    sum[k] += p[k] as f64;
                }
                count += 1.0;
            }
        }
        sum.map(|s| s / count)
    };
    let (fine, coarse, outside) = (mean(10..14, 8..32), mean(34..38, 8..32), mean(0..48, 42..48));
    assert!(fine[0] > 2.0 * (fine[1] + fine[2]) + 20.0, "fine region not red: {fine:?}");
    assert!(coarse[0] < 0.5 * fine[0] && coarse[1] + coarse[2] > fine[1] + fine[2] + 40.0, "coarse region not towards blue: {coarse:?}");
    for x in 0..48 {
        let p = img.get_pixel(8 + x * 4 + 2, 24 + 192 - 45 * 4 + 2).0;
        assert!(p[0] == p[1] && p[1] == p[2], "outside the mask, x = {x}: {p:?}");
    }
    assert!(outside[0] == outside[1] && outside[1] == outside[2], "{outside:?}");
}
