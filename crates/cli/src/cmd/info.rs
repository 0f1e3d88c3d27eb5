//! `cryosplat info`: a summary of any supported file — MRC maps and stacks, RELION STAR,
//! cryoSPARC `.cs`, cryoDRGN pickles — for people, or as JSON (`--json`: one object per file,
//! an array when there are several).
//!
//! Every object has the keys `file`, `kind`, `particles`, `box`, `apix`, `has_poses`,
//! `has_ctf`, `warnings` and `errors`; the rest depends on the kind. Particle files also give
//! `first_particle` (image, `A`, RELION angles, origin, CTF) so that other readers can be
//! checked against cryosplat's reading. The command fails (non-zero exit) when any file has
//! errors — unreadable, or unusable as it stands (missing stacks, images out of range) —
//! after describing every file.

use anyhow::{bail, Result};
use cryosplat_core::rotation::matrix_to_euler;
use cryosplat_formats::mrc::MrcFile;
use cryosplat_formats::pickle::{self, Value as Pickled};
use cryosplat_train::dataset::{LoadOptions, ParticleSet, SourceKind};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Files to describe (.mrc, .mrcs, .map, .star, .cs, .pkl).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print JSON (one object per file, in an array when there are several).
    #[arg(long)]
    pub json: bool,
    /// Folder that image paths in the metadata are relative to.
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Pixel size in Å (overrides the metadata, as for the other commands).
    #[arg(long)]
    pub apix: Option<f64>,
}

/// What a file is, from its extension, or from its first bytes when the extension says nothing.
fn file_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "mrc" | "mrcs" | "map" | "st" | "rec" => return Some("mrc"),
        "star" => return Some("star"),
        "cs" | "npy" => return Some("cs"),
        "pkl" | "pickle" => return Some("pkl"),
        _ => {}
    }
    let mut head = [0u8; 1024];
    let n = std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).ok()?;
    let head = &head[..n];
    if head.starts_with(b"\x93NUMPY") || head.get(1..6) == Some(&b"CSDAT"[..]) {
        Some("cs")
    } else if head.first() == Some(&0x80) {
        Some("pkl")
    } else if head.get(208..212) == Some(&b"MAP "[..]) {
        Some("mrc")
    } else if std::str::from_utf8(head).is_ok_and(|t| t.contains("data_")) {
        Some("star")
    } else {
        None
    }
}

fn base(path: &Path, kind: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("file".into(), json!(path.display().to_string()));
    m.insert("kind".into(), json!(kind));
    for k in ["particles", "box", "apix"] {
        m.insert(k.into(), Value::Null);
    }
    m.insert("has_poses".into(), json!(false));
    m.insert("has_ctf".into(), json!(false));
    m.insert("warnings".into(), json!([]));
    m.insert("errors".into(), json!([]));
    m
}

fn mrc_info(path: &Path) -> Result<Value> {
    let f = MrcFile::open(path)?;
    let h = f.header();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    // A stack: named so, or sampled once along z (MZ = 1), or not cubic (unless named a map).
    let kind = if h.nz == 1 {
        "image"
    } else if ext == "mrcs" || (ext != "map" && (h.mxyz[2] == 1 || h.nz != h.nx)) {
        "image stack"
    } else {
        "map"
    };
    let s = f.stats();
    let mut m = base(path, kind);
    let is_stack = kind != "map";
    m.insert("particles".into(), if is_stack { json!(h.nz) } else { json!(0) });
    m.insert("box".into(), if h.nx == h.ny { json!(h.nx) } else { Value::Null });
    m.insert("apix".into(), json!(h.apix));
    m.insert("dims".into(), json!([h.nx, h.ny, h.nz]));
    m.insert("mode".into(), json!(h.mode.number()));
    m.insert("big_endian".into(), json!(h.big_endian));
    m.insert("nversion".into(), json!(h.nversion));
    m.insert("ispg".into(), json!(h.ispg));
    m.insert("labels".into(), json!(h.labels));
    m.insert(
        "stats".into(),
        json!({"min": s.min, "max": s.max, "mean": s.mean, "std": s.std, "non_finite": s.non_finite, "count": s.count}),
    );
    let mut warnings = h.warnings.clone();
    if h.apix.is_none() {
        warnings.push("the header gives no pixel size; it must come from the metadata or --apix".into());
    }
    if is_stack && h.nx != h.ny {
        warnings.push(format!("images are {}×{}; cryosplat needs square images", h.nx, h.ny));
    }
    m.insert("warnings".into(), json!(warnings));
    let mut errors = Vec::new();
    if s.non_finite > 0 {
        errors.push(format!("{} NaN or infinite values", s.non_finite));
    }
    m.insert("errors".into(), json!(errors));
    Ok(Value::Object(m))
}

fn kind_name(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Relion30 => "RELION 3.0 STAR",
        SourceKind::Relion31 => "RELION 3.1 STAR",
        SourceKind::CryoSparc => "cryoSPARC .cs",
        SourceKind::Stack => "image stack",
    }
}

fn particles_info(path: &Path, opts: &LoadOptions) -> Result<Value> {
    let mut set = ParticleSet::load_metadata(path, opts)?;
    let mut errors = Vec::new();
    let stacks_found = set.stacks.iter().filter(|s| s.is_file()).count();
    if let Err(e) = set.open_stacks(opts) {
        errors.push(e.to_string());
    }
    let mut m = base(path, kind_name(set.kind));
    m.insert("particles".into(), json!(set.len()));
    m.insert("box".into(), if set.box_px > 0 { json!(set.box_px) } else { Value::Null });
    m.insert("apix".into(), if set.apix > 0.0 { json!(set.apix) } else { Value::Null });
    m.insert("has_poses".into(), json!(set.has_poses));
    m.insert("has_ctf".into(), json!(set.has_ctf));
    m.insert("stacks".into(), json!(set.stacks.len()));
    m.insert("stacks_found".into(), json!(stacks_found));
    m.insert("inverted".into(), json!(set.invert));
    let n = set.len();
    m.insert("pose_coverage".into(), json!(if set.has_poses { n } else { 0 }));
    m.insert("ctf_coverage".into(), json!(if set.has_ctf { n } else { 0 }));
    if set.has_poses {
        let tilts = set.particles.iter().map(|p| p.pose.rot[2][2].clamp(-1.0, 1.0).acos().to_degrees());
        let (lo, hi) = tilts.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), t| (l.min(t), h.max(t)));
        let omax = set.particles.iter().map(|p| p.pose.origin_a[0].hypot(p.pose.origin_a[1])).fold(0.0, f64::max);
        m.insert("tilt_range_deg".into(), json!([lo, hi]));
        m.insert("max_origin_a".into(), json!(omax));
        let views = crate::report::Views::of_poses(set.particles.iter().map(|p| &p.pose.rot), &[cryosplat_core::pose::IDENTITY]);
        let s = views.summary;
        m.insert(
            "views".into(),
            json!({
                "directions": s.directions,
                "empty_fraction": s.empty_fraction,
                "max_over_mean": s.max_over_mean,
                "least_sampled": {
                    "rot_tilt_deg": views.least_sampled.rot_tilt_deg,
                    "share": views.least_sampled.share,
                    "uniform_share": views.least_sampled.uniform_share
                },
                "warning": views.warning(),
                "text": views.text()
            }),
        );
    }
    if set.has_ctf {
        let (lo, hi) = set.defocus_range_a();
        m.insert("defocus_range_a".into(), json!([lo, hi]));
        let astig = set.particles.iter().map(|p| (p.ctf.defocus_u_a - p.ctf.defocus_v_a).abs()).sum::<f64>() / n as f64;
        m.insert("mean_astigmatism_a".into(), json!(astig));
    }
    let groups: Vec<Value> = set
        .optics_groups
        .iter()
        .map(|g| {
            json!({"id": g.id, "name": g.name, "voltage_kv": g.voltage_kv, "cs_mm": g.cs_mm, "amp_contrast": g.amp_contrast,
                   "apix": g.apix, "box": g.box_px, "particles": g.particles})
        })
        .collect();
    m.insert("optics_groups".into(), json!(groups));
    let (a, b) = set.half_split(0);
    m.insert("half_sets".into(), json!({"from_file": set.has_random_subsets(), "sizes": [a.len(), b.len()]}));
    let p = &set.particles[0];
    let (stack, index) = set.image_ref(0);
    let (rot, tilt, psi) = matrix_to_euler(&p.pose.rot);
    let c = &p.ctf;
    m.insert(
        "first_particle".into(),
        json!({
            "stack": stack.display().to_string(), "index": index,
            "rot_matrix": p.pose.rot, "euler_deg": [rot, tilt, psi], "origin_a": p.pose.origin_a,
            "optics_group": p.optics_group, "random_subset": p.random_subset,
            "ctf": {"voltage_kv": c.voltage_kv, "cs_mm": c.cs_mm, "amp_contrast": c.amp_contrast,
                    "defocus_u_a": c.defocus_u_a, "defocus_v_a": c.defocus_v_a, "defocus_angle_deg": c.defocus_angle_deg,
                    "phase_shift_deg": c.phase_shift_deg, "bfactor_a2": c.bfactor_a2, "scale": c.scale},
        }),
    );
    m.insert("warnings".into(), json!(set.warnings));
    m.insert("errors".into(), json!(errors));
    Ok(Value::Object(m))
}

fn pickle_info(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let v = pickle::parse(&bytes, path)?;
    let shape_of = |v: &Pickled| match v {
        Pickled::Array(a) => json!(a.shape),
        _ => Value::Null,
    };
    if let Ok(rows) = pickle::ctf_from(&v, path) {
        let mut m = base(path, "cryoDRGN CTF pickle");
        m.insert("particles".into(), json!(rows.len()));
        if let Some(r) = rows.first() {
            m.insert("box".into(), json!(r[0] as usize));
            m.insert("apix".into(), json!(r[1]));
            let (lo, hi) =
                rows.iter().map(|r| 0.5 * (r[2] + r[3])).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), d| (l.min(d), h.max(d)));
            m.insert("defocus_range_a".into(), json!([lo, hi]));
            m.insert("voltage_kv".into(), json!(r[5]));
            m.insert("cs_mm".into(), json!(r[6]));
            m.insert("amp_contrast".into(), json!(r[7]));
        }
        m.insert("has_ctf".into(), json!(true));
        m.insert("ctf_coverage".into(), json!(rows.len()));
        m.insert("shape".into(), shape_of(&v));
        return Ok(Value::Object(m));
    }
    if let Ok((rots, trans)) = pickle::poses_from(&v, path) {
        let mut m = base(path, "cryoDRGN pose pickle");
        m.insert("particles".into(), json!(rots.len()));
        m.insert("has_poses".into(), json!(true));
        m.insert("pose_coverage".into(), json!(rots.len()));
        m.insert("has_translations".into(), json!(trans.is_some()));
        if let Some(t) = &trans {
            let tmax = t.iter().map(|t| t[0].hypot(t[1])).fold(0.0, f64::max);
            m.insert("max_translation_box_fraction".into(), json!(tmax));
        }
        let bad = rots
            .iter()
            .filter(|r| {
                (0..3).any(|i| (0..3).any(|j| ((0..3).map(|k| r[i][k] * r[j][k]).sum::<f64>() - (i == j) as u8 as f64).abs() > 1e-3))
            })
            .count();
        if bad > 0 {
            m.insert("errors".into(), json!([format!("{bad} of the matrices are not rotations")]));
        }
        return Ok(Value::Object(m));
    }
    if let Ok(idx) = pickle::indices_from(&v, path) {
        let mut m = base(path, "cryoDRGN index pickle");
        m.insert("indices".into(), json!(idx.len()));
        m.insert("index_range".into(), json!([idx.iter().min(), idx.iter().max()]));
        return Ok(Value::Object(m));
    }
    let mut m = base(path, "pickle");
    m.insert("shape".into(), shape_of(&v));
    m.insert(
        "errors".into(),
        json!(["neither a cryoDRGN pose pickle (rot[N,3,3] or (rot, trans)), a CTF pickle (N, 9) nor an index array"]),
    );
    Ok(Value::Object(m))
}

/// Describe one file. An `Err` means it could not be read at all.
pub fn describe(path: &Path, opts: &LoadOptions) -> Result<Value> {
    match file_type(path) {
        Some("mrc") => mrc_info(path),
        Some("star") | Some("cs") => particles_info(path, opts),
        Some("pkl") => pickle_info(path),
        _ if !path.exists() => bail!("{}: no such file", path.display()),
        _ => bail!("{}: unknown file type (expected .mrc, .mrcs, .map, .star, .cs or .pkl)", path.display()),
    }
}

fn num(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.digits$}"),
        None => "unknown".into(),
    }
}

/// A number as a person writes it: at most six decimals, trailing zeros removed
/// (`2.700000047683716` → `2.7`).
fn short(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => {
            let s = format!("{x:.6}");
            let t = s.trim_end_matches('0').trim_end_matches('.');
            if t == "-0" {
                "0".into()
            } else {
                t.to_string()
            }
        }
        None => "unknown".into(),
    }
}

fn print_human(v: &Value) {
    println!("{}  ({})", v["file"].as_str().unwrap_or(""), v["kind"].as_str().unwrap_or(""));
    let apix = match v["apix"].as_f64() {
        Some(a) => format!("{a:.4} Å/px"),
        None => "unknown".into(),
    };
    if v.get("dims").is_some() {
        let d = &v["dims"];
        println!("  dimensions {}×{}×{}  mode {}  pixel size {apix}", d[0], d[1], d[2], v["mode"]);
        let s = &v["stats"];
        println!(
            "  min {}  max {}  mean {}  std {}  NaN/Inf {}",
            num(&s["min"], 4),
            num(&s["max"], 4),
            num(&s["mean"], 4),
            num(&s["std"], 4),
            s["non_finite"]
        );
        for label in v["labels"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            println!("  label: {label}");
        }
    } else if v.get("indices").is_some() {
        println!("  {} indices, from {} to {}", v["indices"], v["index_range"][0], v["index_range"][1]);
    } else {
        let boxs = v["box"].as_u64().map(|b| format!("{b} px")).unwrap_or_else(|| "unknown".into());
        println!("  particles {}  box {boxs}  pixel size {apix}", v["particles"]);
        if let Some(s) = v.get("stacks") {
            println!(
                "  image stacks {} ({} found){}",
                s,
                v["stacks_found"],
                if v["inverted"] == json!(true) { ", contrast inverted on reading" } else { "" }
            );
        }
        let yes = |k: &str| v[k].as_bool() == Some(true);
        let n = v["particles"].as_u64().unwrap_or(0);
        if yes("has_poses") {
            let mut line = format!("  poses: {n} of {n}");
            if let Some(t) = v["tilt_range_deg"].as_array() {
                line += &format!(", tilt {}°–{}°", num(&t[0], 1), num(&t[1], 1));
            }
            if v.get("max_origin_a").is_some() {
                line += &format!(", origins up to {} Å", num(&v["max_origin_a"], 2));
            }
            println!("{line}");
            if let Some(t) = v["views"]["text"].as_str() {
                println!("  views: {t}");
            }
        } else {
            println!("  poses: none");
        }
        if yes("has_ctf") {
            let mut line = format!("  CTF: {n} of {n}");
            if let Some(r) = v["defocus_range_a"].as_array() {
                line += &format!(", defocus {}–{} Å", num(&r[0], 0), num(&r[1], 0));
            }
            println!("{line}");
        } else {
            println!("  CTF: none");
        }
        if let Some(g) = v["optics_groups"].as_array() {
            for g in g {
                println!(
                    "  optics group {} ({}): {} kV, Cs {} mm, Q0 {}, {} particles",
                    g["id"],
                    g["name"].as_str().unwrap_or(""),
                    short(&g["voltage_kv"]),
                    short(&g["cs_mm"]),
                    short(&g["amp_contrast"]),
                    g["particles"]
                );
            }
        }
        if let Some(h) = v.get("half_sets") {
            let from = if h["from_file"].as_bool() == Some(true) { "from the file" } else { "drawn at random (seed 0 shown)" };
            println!("  half sets {from}: {} + {}", h["sizes"][0], h["sizes"][1]);
        }
    }
    for (key, label) in [("warnings", "warning"), ("errors", "error")] {
        if let Some(p) = v[key].as_array() {
            for p in p {
                println!("  {label}: {}", p.as_str().unwrap_or(""));
            }
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let opts = LoadOptions { datadir: a.datadir.clone(), apix: a.apix, ..Default::default() };
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for f in &a.files {
        let v = match describe(f, &opts) {
            Ok(v) => v,
            Err(e) => {
                let mut m = base(f, "unreadable");
                m.insert("errors".into(), json!([crate::error_text(&e)]));
                Value::Object(m)
            }
        };
        if v["errors"].as_array().is_some_and(|e| !e.is_empty()) {
            failed.push(f.display().to_string());
        }
        out.push(v);
    }
    if a.json {
        let v = if out.len() == 1 { out.remove(0) } else { Value::Array(out) };
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for v in &out {
            print_human(v);
        }
    }
    if !failed.is_empty() {
        bail!("{} of {} files have errors: {}", failed.len(), a.files.len(), failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(rel)
    }

    fn info(rel: &str) -> Value {
        describe(&data(rel), &LoadOptions::default()).unwrap_or_else(|e| panic!("{rel}: {e:#}"))
    }

    fn errors(v: &Value) -> usize {
        v["errors"].as_array().unwrap().len()
    }

    #[test]
    fn every_kind_of_file() {
        // Numbers checked with mrcfile, starfile, numpy and pickle in Python.
        let v = info("cryodrgn/empiar_10076_7.mrc");
        assert_eq!((v["kind"].as_str(), v["particles"].as_u64(), v["box"].as_u64()), (Some("image stack"), Some(7), Some(320)));
        assert_eq!((v["dims"].clone(), v["mode"].as_i64(), v["apix"].clone()), (json!([320, 320, 7]), Some(2), Value::Null));
        assert_eq!((v["stats"]["non_finite"].as_u64(), v["stats"]["count"].as_u64()), (Some(0), Some(7 * 320 * 320)));
        assert_eq!(errors(&v), 0);
        let v = info("cryodrgn-toy/toymodel_small_nocenter.mrc");
        assert_eq!((v["kind"].as_str(), v["apix"].as_f64(), v["stats"]["max"].as_f64()), (Some("map"), Some(1.0), Some(1.0)));
        // 180 voxels are 1 (the toy README): the mean is 180 / 30³.
        assert!((v["stats"]["mean"].as_f64().unwrap() - 180.0 / 27000.0).abs() < 1e-9);
        assert!(!v["warnings"].as_array().unwrap().is_empty());

        let v = info("cryodrgn/relion31.star");
        assert_eq!((v["particles"].as_u64(), v["box"].as_u64(), v["apix"].as_f64()), (Some(5), Some(256), Some(2.806)));
        assert_eq!(
            (v["has_poses"].as_bool(), v["has_ctf"].as_bool(), v["kind"].as_str()),
            (Some(true), Some(true), Some("RELION 3.1 STAR"))
        );
        assert_eq!(v["first_particle"]["origin_a"], json!([0.019324, -0.64686]));
        let e = &v["first_particle"]["euler_deg"];
        assert!((e[0].as_f64().unwrap() - -102.30296).abs() < 1e-9 && (e[2].as_f64().unwrap() - 124.706463).abs() < 1e-9);
        assert_eq!(v["defocus_range_a"][1].as_f64(), Some(0.5 * (13108.082418 + 12845.582418)));
        assert_eq!(errors(&v), 0);

        let v = info("cryodrgn/empiar_10076_7.cs");
        assert_eq!((v["particles"].as_u64(), v["inverted"].as_bool(), v["has_poses"].as_bool()), (Some(7), Some(true), Some(false)));

        // Metadata without images: described, and an error.
        let v = info("cryodrgn/cryosparc_P12_J24_001_particles.cs");
        assert_eq!(
            (v["particles"].as_u64(), v["box"].as_u64(), v["stacks"].as_u64(), v["stacks_found"].as_u64()),
            (Some(2019), Some(180), Some(50), Some(0))
        );
        assert_eq!(v["half_sets"], json!({"from_file": true, "sizes": [1010, 1009]}));
        assert!(v["errors"][0].as_str().unwrap().contains("not found"));

        let v = info("cryodrgn/sta_ctf.pkl");
        assert_eq!((v["kind"].as_str(), v["particles"].as_u64(), v["box"].as_u64()), (Some("cryoDRGN CTF pickle"), Some(219), Some(512)));
        assert_eq!(v["apix"].as_f64(), Some(1.8200000524520874));
        let v = info("cryodrgn/sta_pose.pkl");
        assert_eq!((v["particles"].as_u64(), v["has_translations"].as_bool(), errors(&v)), (Some(219), Some(true), 0));
        let v = info("cryodrgn-toy/toy_angles.pkl");
        assert_eq!((v["particles"].as_u64(), v["has_translations"].as_bool()), (Some(1000), Some(false)));
    }

    #[test]
    fn bad_files_fail_after_all_are_described() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.star");
        std::fs::write(&bad, "data_\nloop_\n_rlnImageName\n_rlnDefocusU\n1@x.mrcs oops\n").unwrap();
        let e = describe(&bad, &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("bad.star: line 5") && e.contains("oops"), "{e}");
        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, b"nothing useful").unwrap();
        assert!(describe(&junk, &LoadOptions::default()).unwrap_err().to_string().contains("unknown file type"));
        let args = Args { files: vec![data("cryodrgn/relion31.star"), bad.clone(), junk], json: true, datadir: None, apix: None };
        let e = run(args).unwrap_err().to_string();
        assert!(e.contains("2 of 3 files have errors") && e.contains("bad.star"), "{e}");
        let ok = Args { files: vec![data("cryodrgn/relion31.star")], json: false, datadir: None, apix: None };
        run(ok).unwrap();
        // NaN pixels are an error for a map or stack.
        let nan = dir.path().join("nan.mrcs");
        let mut bytes = std::fs::read(data("cryodrgn-toy/toy_projections.mrcs")).unwrap();
        bytes[1024..1028].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&nan, bytes).unwrap();
        let v = describe(&nan, &LoadOptions::default()).unwrap();
        assert_eq!(v["stats"]["non_finite"].as_u64(), Some(1));
        assert!(v["errors"][0].as_str().unwrap().contains("1 NaN"));
    }
}
