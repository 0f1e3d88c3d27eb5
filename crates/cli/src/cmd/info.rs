//! `cryosplat info`: a summary of any supported file (MRC maps and stacks, RELION STAR,
//! cryoSPARC .cs, cryoDRGN pickles), for people or as JSON.

use anyhow::{bail, Context, Result};
use cryosplat_formats::mrc::MrcFile;
use cryosplat_train::dataset::{LoadOptions, ParticleSet};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Files to describe.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print JSON (one object per file, in an array when there are several).
    #[arg(long)]
    pub json: bool,
    /// Folder that image paths in the metadata are relative to.
    #[arg(long)]
    pub datadir: Option<PathBuf>,
}

fn mrc_info(path: &Path) -> Result<Value> {
    let f = MrcFile::open(path)?;
    let h = f.header();
    let s = f.stats();
    let stack = h.ispg == 0 || path.extension().is_some_and(|e| e == "mrcs");
    let mut problems = h.warnings.clone();
    if s.non_finite > 0 {
        problems.push(format!("{} NaN or infinite values", s.non_finite));
    }
    Ok(json!({
        "file": path.display().to_string(),
        "kind": if stack { "image stack" } else { "map" },
        "particles": if stack { h.nz } else { 0 },
        "box": h.nx,
        "dims": [h.nx, h.ny, h.nz],
        "mode": h.mode.number(),
        "apix": h.apix,
        "has_poses": false,
        "has_ctf": false,
        "stats": {"min": s.min, "max": s.max, "mean": s.mean, "std": s.std, "non_finite": s.non_finite},
        "problems": problems,
    }))
}

fn particles_info(path: &Path, datadir: Option<PathBuf>) -> Result<Value> {
    let set = ParticleSet::load(path, &LoadOptions { datadir, ..Default::default() })?;
    let (dmin, dmax) = set.defocus_range_a();
    let groups: Vec<Value> = set
        .optics_groups
        .iter()
        .map(|g| json!({"id": g.id, "name": g.name, "voltage_kv": g.voltage_kv, "cs_mm": g.cs_mm, "amp_contrast": g.amp_contrast}))
        .collect();
    let halves = set.has_random_subsets();
    Ok(json!({
        "file": path.display().to_string(),
        "kind": "particles",
        "particles": set.len(),
        "box": set.box_px,
        "apix": set.apix,
        "has_poses": set.has_poses,
        "has_ctf": set.has_ctf,
        "stacks": set.stacks.len(),
        "optics_groups": groups,
        "defocus_range_a": if set.has_ctf { json!([dmin, dmax]) } else { Value::Null },
        "random_subsets": halves,
        "inverted": set.invert,
        "problems": set.warnings,
    }))
}

fn pickle_info(path: &Path) -> Result<Value> {
    if let Ok(rows) = cryosplat_formats::pickle::read_ctf(path) {
        return Ok(json!({"file": path.display().to_string(), "kind": "cryoDRGN CTF pickle", "particles": rows.len(),
            "box": rows.first().map(|r| r[0] as usize), "apix": rows.first().map(|r| r[1]), "has_poses": false, "has_ctf": true, "problems": []}));
    }
    let (rots, trans) = cryosplat_formats::pickle::read_poses(path)?;
    Ok(json!({"file": path.display().to_string(), "kind": "cryoDRGN pose pickle", "particles": rots.len(), "box": Value::Null, "apix": Value::Null,
        "has_poses": true, "has_ctf": false, "has_translations": trans.is_some(), "problems": []}))
}

fn describe(path: &Path, datadir: &Option<PathBuf>) -> Result<Value> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "mrc" | "mrcs" | "map" | "st" => mrc_info(path),
        "star" | "cs" => particles_info(path, datadir.clone()),
        "pkl" => pickle_info(path),
        _ => bail!("{}: unknown file type (expected .mrc, .mrcs, .map, .star, .cs or .pkl)", path.display()),
    }
}

fn print_human(v: &Value) {
    println!("{}  ({})", v["file"].as_str().unwrap_or(""), v["kind"].as_str().unwrap_or(""));
    let apix = v["apix"].as_f64().map(|a| format!("{a:.4} Å/px")).unwrap_or_else(|| "unknown".into());
    match v["kind"].as_str() {
        Some("map") | Some("image stack") => {
            println!("  dimensions {}  mode {}  pixel size {apix}", v["dims"], v["mode"]);
            let s = &v["stats"];
            println!("  min {:.4}  max {:.4}  mean {:.4}  std {:.4}  NaN/Inf {}", s["min"].as_f64().unwrap_or(0.0), s["max"].as_f64().unwrap_or(0.0), s["mean"].as_f64().unwrap_or(0.0), s["std"].as_f64().unwrap_or(0.0), s["non_finite"]);
        }
        _ => {
            println!("  particles {}  box {}  pixel size {apix}", v["particles"], v["box"]);
            println!("  poses {}  CTF {}", if v["has_poses"].as_bool() == Some(true) { "yes" } else { "no" }, if v["has_ctf"].as_bool() == Some(true) { "yes" } else { "no" });
            if let Some(r) = v["defocus_range_a"].as_array() {
                println!("  defocus {:.0}–{:.0} Å", r[0].as_f64().unwrap_or(0.0), r[1].as_f64().unwrap_or(0.0));
            }
            if let Some(g) = v["optics_groups"].as_array() {
                for g in g {
                    println!("  optics group {} ({}): {} kV, Cs {} mm, Q0 {}", g["id"], g["name"].as_str().unwrap_or(""), g["voltage_kv"], g["cs_mm"], g["amp_contrast"]);
                }
            }
        }
    }
    if let Some(p) = v["problems"].as_array() {
        for p in p {
            println!("  note: {}", p.as_str().unwrap_or(""));
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let mut out = Vec::new();
    for f in &a.files {
        out.push(describe(f, &a.datadir).with_context(|| format!("describing {}", f.display()))?);
    }
    if a.json {
        let v = if out.len() == 1 { out.remove(0) } else { Value::Array(out) };
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for v in &out {
            print_human(v);
        }
    }
    Ok(())
}
