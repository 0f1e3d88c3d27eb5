//! The files of a run's output folder, written in one place.
//!
//! `reconstruct` and `backproject` write their maps (`map.mrc`, `half_map_a.mrc`,
//! `half_map_b.mrc`), the half-map FSC table (`fsc.csv`), the Gaussian model files
//! (`gaussians.ply`, `gaussians_a.ply`, `gaussians_b.ply`, `gaussians.cif`) and `run.json`
//! through an [`OutputDir`], so that a program calling the library gets the same files as the
//! command-line tool. Every file is written atomically (temporary file and rename). The folder
//! remembers what it wrote, in order, for `run.json`'s list of outputs; files written by the
//! caller (figures, the report, the log) are added with [`OutputDir::record`].
//!
//! # One run per folder, and no silent overwrite
//!
//! [`OutputDir::open`] takes the folder for one run: it creates `.cryosplat.lock` atomically
//! (holding the process id) and removes it when the `OutputDir` is dropped, so two runs can
//! never mix their files in one folder; a lock left by a process that no longer exists (a
//! killed run) is taken over with a warning. A folder that already holds results of an earlier
//! run ([`RESULT_FILES`]) is refused unless the caller resumes that run ([`Existing::Resume`])
//! or asks to overwrite ([`Existing::Overwrite`]), which removes every earlier result first, so
//! that no report, model or checkpoint of another run is left beside the new maps.

use cryosplat_core::fsc::{FscReport, NoResolution, Resolution};
use cryosplat_core::gaussian::GaussianModel;
use cryosplat_formats::atoms::{write_pseudo_atoms_cif, PseudoAtom};
use cryosplat_formats::mrc::{self, WriteOptions};
use cryosplat_formats::ply::{write_gaussians, PlyGaussian};
use cryosplat_formats::FormatError;
use std::path::{Path, PathBuf};

/// A full map and its two half maps, in the input images' units.
pub struct Maps<'a> {
    pub full: &'a [f32],
    pub half_a: &'a [f32],
    pub half_b: &'a [f32],
    /// Box size (px) and pixel size (Å).
    pub d: usize,
    pub apix: f64,
}

/// Every file name a cryosplat command writes as a result into an output folder.
pub const RESULT_FILES: &[&str] = &[
    "map.mrc",
    "half_map_a.mrc",
    "half_map_b.mrc",
    "fsc.csv",
    "fsc.json",
    "fsc.png",
    "run.json",
    "run.log",
    "report.html",
    "checkpoint.ckpt",
    "gaussians.ply",
    "gaussians_a.ply",
    "gaussians_b.ply",
    "gaussians.cif",
    "slices.png",
    "projections.png",
    "loss.png",
    "amplitudes.png",
    "sizes.png",
    "views.png",
    "particles.star",
    "particles_true.star",
    "particles_refined.star",
    "particles_refined.cs",
    "poses_refined.pkl",
    "ctf_refined.pkl",
    "refine_angles.png",
    "refine_shifts.png",
    "refine_defocus.png",
    "particles.mrcs",
    "gt.mrc",
    "meta.json",
    "demo.json",
    "map_sharp.mrc",
    "map_sharp_mask.mrc",
    "postprocess_fsc.png",
    "postprocess.mrc",
    "postprocess_masked.mrc",
    "mask.mrc",
    "postprocess.json",
    "guinier.png",
    "view.cxc",
    "locres.mrc",
    "locres_map.mrc",
    "locres.png",
    "locres.json",
    "locres.cxc",
];

/// The name of the lock file of a folder in use.
pub const LOCK_FILE: &str = ".cryosplat.lock";

/// What to do with results of an earlier run in the folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Refuse the folder if it holds any.
    Refuse,
    /// Keep them: the run continues the earlier one (`--resume`).
    Resume,
    /// Remove them first (`--overwrite`).
    Overwrite,
}

impl Existing {
    /// The policy of the command-line flags `--resume` and `--overwrite` (which exclude each
    /// other; `--resume` wins if both are set).
    pub fn from_flags(resume: bool, overwrite: bool) -> Self {
        match (resume, overwrite) {
            (true, _) => Existing::Resume,
            (false, true) => Existing::Overwrite,
            (false, false) => Existing::Refuse,
        }
    }
}

/// A run's output folder, held for this run, and the files written into it so far.
#[derive(Debug)]
pub struct OutputDir {
    dir: PathBuf,
    written: Vec<PathBuf>,
    /// The lock file, removed on drop (None for a folder opened without a lock).
    lock: Option<PathBuf>,
    /// The folder did not exist before: if nothing was written into it, it goes on drop, so a
    /// run that failed early leaves no empty folder behind.
    created: bool,
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if let Some(l) = &self.lock {
            let _ = std::fs::remove_file(l);
        }
        if self.created {
            // Fails, as it should, when the folder holds anything.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Whether process `pid` exists (on systems without `/proc`, assume it does).
fn process_exists(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

impl OutputDir {
    /// The folder `dir` for one run: created if missing, locked against other runs, and
    /// checked for earlier results as `existing` says (see the module docs). `command` names
    /// the command in messages ("reconstruct").
    pub fn open(dir: &Path, existing: Existing, command: &str) -> Result<Self, FormatError> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
        let lock = match Self::lock(dir) {
            Ok(l) => l,
            Err(e) => {
                if created {
                    let _ = std::fs::remove_dir(dir);
                }
                return Err(e);
            }
        };
        let out = OutputDir { dir: dir.to_path_buf(), written: Vec::new(), lock: Some(lock), created };
        let found: Vec<&str> = RESULT_FILES.iter().copied().filter(|f| dir.join(f).exists()).collect();
        match existing {
            Existing::Resume => {}
            Existing::Refuse if !found.is_empty() => {
                let hint = if found.contains(&"checkpoint.ckpt") { "--resume to continue that run, " } else { "" };
                return Err(FormatError::invalid(
                    dir,
                    format!(
                        "the folder holds results of an earlier run ({}); {command} does not overwrite them: choose another folder, or use {hint}--overwrite to replace them",
                        found.join(", ")
                    ),
                ));
            }
            Existing::Refuse => {}
            Existing::Overwrite => {
                for f in &found {
                    let p = dir.join(f);
                    std::fs::remove_file(&p).map_err(|e| FormatError::io(&p, e))?;
                }
                if !found.is_empty() {
                    tracing::warn!("{}: removed the results of an earlier run ({})", dir.display(), found.join(", "));
                }
            }
        }
        Ok(out)
    }

    /// Create the lock file atomically, taking over a lock whose process is gone.
    fn lock(dir: &Path) -> Result<PathBuf, FormatError> {
        use std::io::Write;
        let path = dir.join(LOCK_FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id()).map_err(|e| FormatError::io(&path, e))?;
                    return Ok(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(pid) if pid != std::process::id() && !process_exists(pid) => {
                            tracing::warn!("{}: taking over the lock of process {pid}, which no longer runs", dir.display());
                            std::fs::remove_file(&path).map_err(|e| FormatError::io(&path, e))?;
                        }
                        Ok(pid) => {
                            return Err(FormatError::invalid(
                                dir,
                                format!(
                                "another cryosplat run (process {pid}) is writing into this folder; wait for it or choose another folder"
                            ),
                            ))
                        }
                        Err(_) => {
                            return Err(FormatError::invalid(
                                dir,
                                format!("{LOCK_FILE} exists but names no process; if no cryosplat run uses this folder, delete that file"),
                            ))
                        }
                    }
                }
                Err(e) => return Err(FormatError::io(&path, e)),
            }
        }
        Err(FormatError::invalid(dir, "the folder's lock changed hands while it was being taken; try again"))
    }

    /// The folder `dir`, created if missing, without a lock or a check for earlier results
    /// (for folders that belong to a caller that holds them already).
    pub fn create(dir: &Path) -> Result<Self, FormatError> {
        std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
        Ok(OutputDir { dir: dir.to_path_buf(), written: Vec::new(), lock: None, created: false })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of file `name` in the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Note a file written into the folder by someone else (figures, report, log, checkpoint).
    pub fn record(&mut self, path: PathBuf) {
        if !self.written.contains(&path) {
            self.written.push(path);
        }
    }

    /// Every file written so far, in the order first written.
    pub fn written(&self) -> &[PathBuf] {
        &self.written
    }

    /// `map.mrc`, `half_map_a.mrc` and `half_map_b.mrc` (MRC2014 float32, pixel size set).
    pub fn write_maps(&mut self, maps: &Maps, label: &str) -> Result<(), FormatError> {
        for (name, m) in [("map.mrc", maps.full), ("half_map_a.mrc", maps.half_a), ("half_map_b.mrc", maps.half_b)] {
            self.write_map(name, m, maps.d, maps.apix, label)?;
        }
        Ok(())
    }

    /// One `d³` map at pixel size `apix` as `name`, labelled `label`.
    pub fn write_map(&mut self, name: &str, map: &[f32], d: usize, apix: f64, label: &str) -> Result<(), FormatError> {
        let opts = WriteOptions { label: label.to_string(), ..Default::default() };
        let p = self.path(name);
        mrc::write_volume(&p, map, [d, d, d], apix, &opts)?;
        self.record(p);
        Ok(())
    }

    /// `fsc.csv`: the half-map FSC (see [`write_fsc_csv`]).
    pub fn write_fsc(&mut self, fsc: &FscReport) -> Result<(), FormatError> {
        let p = self.path("fsc.csv");
        write_fsc_csv(&p, fsc)?;
        self.record(p);
        Ok(())
    }

    /// The Gaussians of both half models (box units) as `gaussians.ply` (both halves with
    /// halved amplitudes, which voxelise to the full map), `gaussians_a.ply`, `gaussians_b.ply`,
    /// and the pseudo-atoms `gaussians.cif` (occupancy: amplitude relative to the largest;
    /// B-factor `8π²σ²` from the RMS standard deviation).
    pub fn write_gaussians(&mut self, models: [&GaussianModel; 2], d: usize, apix: f64) -> Result<(), FormatError> {
        let a = ply_gaussians(models[0], d, apix, 1.0);
        let b = ply_gaussians(models[1], d, apix, 1.0);
        let both: Vec<PlyGaussian> = a.iter().chain(&b).map(|g| PlyGaussian { amplitude: 0.5 * g.amplitude, ..*g }).collect();
        for (name, gs) in [("gaussians.ply", &both), ("gaussians_a.ply", &a), ("gaussians_b.ply", &b)] {
            let p = self.path(name);
            write_gaussians(&p, gs)?;
            self.record(p);
        }
        let max_amp = both.iter().map(|g| g.amplitude as f64).fold(0.0, f64::max).max(1e-30);
        let atoms: Vec<PseudoAtom> = both
            .iter()
            .map(|g| {
                let s = (g.scale_a.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 3.0).sqrt();
                PseudoAtom {
                    pos_a: [g.pos_a[0] as f64, g.pos_a[1] as f64, g.pos_a[2] as f64],
                    occupancy: g.amplitude as f64 / max_amp,
                    b_factor_a2: 8.0 * std::f64::consts::PI.powi(2) * s * s,
                }
            })
            .collect();
        let p = self.path("gaussians.cif");
        write_pseudo_atoms_cif(&p, "cryosplat_gaussians", &atoms)?;
        self.record(p);
        Ok(())
    }

    /// `run.json`: `value` pretty-printed.
    pub fn write_run_json(&mut self, value: &serde_json::Value) -> Result<(), FormatError> {
        let p = self.path("run.json");
        let text = serde_json::to_string_pretty(value).expect("a JSON value serialises");
        cryosplat_formats::atomic::write_bytes_atomic(&p, text.as_bytes())?;
        self.record(p);
        Ok(())
    }
}

/// Serialise paths as text, replacing what is not UTF-8 (a path can be any bytes on Unix;
/// JSON cannot hold them).
pub fn paths_as_text<S: serde::Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}

/// Serialise one path as text (see [`paths_as_text`]).
pub fn path_as_text<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// Gaussians of a box-unit model in Å, in the map's frame (MRC origin 0, box centre at `D/2`).
pub fn ply_gaussians(model: &GaussianModel, d: usize, apix: f64, amp_factor: f64) -> Vec<PlyGaussian> {
    let l = d as f64 * apix;
    let c = (d / 2) as f64 * apix;
    (0..model.len())
        .map(|i| {
            let g = model.physical_f64(i);
            PlyGaussian {
                pos_a: [(g.mean[0] * l + c) as f32, (g.mean[1] * l + c) as f32, (g.mean[2] * l + c) as f32],
                scale_a: [(g.scales[0] * l) as f32, (g.scales[1] * l) as f32, (g.scales[2] * l) as f32],
                quat: [g.quat[0] as f32, g.quat[1] as f32, g.quat[2] as f32, g.quat[3] as f32],
                amplitude: (g.amp * amp_factor) as f32,
            }
        })
        .collect()
}

/// `fsc.csv`: shell, frequency (1/Å), resolution (Å), unmasked, masked, corrected.
pub fn write_fsc_csv(path: &Path, f: &FscReport) -> Result<(), FormatError> {
    use std::io::Write;
    cryosplat_formats::atomic::write_atomic(path, |w| {
        writeln!(w, "shell,frequency_inv_a,resolution_a,fsc_unmasked,fsc_masked,fsc_corrected")?;
        for n in 0..f.unmasked.len() {
            let freq = f.frequency(n);
            let res = if n == 0 { String::from("inf") } else { format!("{:.4}", 1.0 / freq) };
            let m = f.masked.as_ref().map(|c| format!("{:.6}", c[n])).unwrap_or_default();
            let c = f.corrected.as_ref().map(|c| format!("{:.6}", c[n])).unwrap_or_default();
            writeln!(w, "{n},{freq:.6},{res},{:.6},{m},{c}", f.unmasked[n])?;
        }
        Ok(())
    })
}

/// A resolution read from an FSC curve, as reported in `run.json`, the terminal and the report.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReportedResolution {
    /// The curve crosses the threshold at `angstrom`.
    Crossing { angstrom: f64 },
    /// The curve stays above the threshold up to Nyquist (`angstrom` is Nyquist): the data
    /// support at least this, and no finer figure can be read.
    AtNyquist { angstrom: f64 },
    /// A bound at `angstrom`: the data support at least this. Written by `reconstruct` where
    /// the half maps claim more than the last shell their cross-validated estimate reaches and
    /// the estimate is not reliable up to that shell
    /// ([`crate::reconstruct::reported_with_limit`]; earlier versions wrote it wherever the
    /// estimate held to its last shell), and kept by `postprocess` of such a run.
    AtLeast { angstrom: f64 },
    /// The curve is below the threshold from the start.
    NoCorrelation,
}

impl ReportedResolution {
    /// From a curve's crossing, for pixel size `apix`.
    pub fn new(r: Resolution, apix: f64) -> Self {
        match r {
            Resolution::Angstrom(a) => ReportedResolution::Crossing { angstrom: a },
            Resolution::Nyquist => ReportedResolution::AtNyquist { angstrom: 2.0 * apix },
            Resolution::NoCorrelation => ReportedResolution::NoCorrelation,
        }
    }

    /// The crossing in Å; `None` at Nyquist, for a bound or without correlation (no number that
    /// could be mistaken for a measured resolution).
    pub fn angstrom(&self) -> Option<f64> {
        match *self {
            ReportedResolution::Crossing { angstrom } => Some(angstrom),
            _ => None,
        }
    }

    /// The crossing in Å, or the bound (Nyquist when the curve never crosses), for plots and
    /// comparisons.
    pub fn angstrom_or_nyquist(&self) -> Option<f64> {
        match *self {
            ReportedResolution::Crossing { angstrom }
            | ReportedResolution::AtNyquist { angstrom }
            | ReportedResolution::AtLeast { angstrom } => Some(angstrom),
            ReportedResolution::NoCorrelation => None,
        }
    }
}

/// Puts a resolution into a command's JSON (`fsc --json`, `postprocess.json`) the way `run.json`
/// holds one: `key` is the crossing in Å, or null when the curve gives no number (it stays
/// above the threshold to Nyquist, is below it from the start, or is undefined before it
/// crosses), and `resolution_details.key` says which: `{"kind": "crossing", "angstrom": 4.2}`,
/// `{"kind": "at_nyquist", "angstrom": 3.0}` (the bound), `{"kind": "no_correlation"}` or
/// `{"kind": "undefined", "reason": "…"}`, the form of `run.json`'s history.
pub fn insert_resolution_json(out: &mut serde_json::Value, key: &str, r: Result<Resolution, NoResolution>, apix: f64) {
    insert_reported_json(out, key, r.map(|r| ReportedResolution::new(r, apix)));
}

/// [`insert_resolution_json`] of a resolution already read as reported (a bound included).
pub fn insert_reported_json(out: &mut serde_json::Value, key: &str, r: Result<ReportedResolution, NoResolution>) {
    let (value, detail) = match r {
        Ok(r) => (serde_json::json!(r.angstrom()), serde_json::to_value(r).expect("a resolution serialises")),
        Err(e) => (serde_json::Value::Null, serde_json::json!({ "kind": "undefined", "reason": e.to_string() })),
    };
    out[key] = value;
    if !out["resolution_details"].is_object() {
        out["resolution_details"] = serde_json::json!({});
    }
    out["resolution_details"][key] = detail;
}

impl ReportedResolution {
    /// A short form for tables: "4.25 Å", "at Nyquist (3.00 Å)", "at least 4.41 Å", "none".
    pub fn short(&self) -> String {
        match *self {
            ReportedResolution::Crossing { angstrom } => format!("{angstrom:.2} Å"),
            ReportedResolution::AtNyquist { angstrom } => format!("at Nyquist ({angstrom:.2} Å)"),
            ReportedResolution::AtLeast { angstrom } => format!("at least {angstrom:.2} Å"),
            ReportedResolution::NoCorrelation => "none".into(),
        }
    }
}

impl std::fmt::Display for ReportedResolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ReportedResolution::Crossing { angstrom } => write!(f, "{angstrom:.2} Å"),
            ReportedResolution::AtNyquist { angstrom } => write!(f, "at Nyquist ({angstrom:.2} Å; the true resolution may be finer)"),
            ReportedResolution::AtLeast { angstrom } => write!(
                f,
                "at least {angstrom:.2} Å (the last shell the cross-validated estimate reaches; the true resolution may be finer)"
            ),
            ReportedResolution::NoCorrelation => write!(f, "none (no correlation)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions_read_as_numbers_only_at_a_crossing() {
        let c = ReportedResolution::new(Resolution::Angstrom(4.25), 1.0);
        assert_eq!(c.angstrom(), Some(4.25));
        assert_eq!(c.to_string(), "4.25 Å");
        let n = ReportedResolution::new(Resolution::Nyquist, 1.5);
        assert_eq!(n.angstrom(), None);
        assert_eq!(n.angstrom_or_nyquist(), Some(3.0));
        assert!(n.to_string().starts_with("at Nyquist (3.00 Å"));
        let z = ReportedResolution::new(Resolution::NoCorrelation, 1.0);
        assert_eq!((z.angstrom(), z.angstrom_or_nyquist()), (None, None));
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, r#"{"kind":"at_nyquist","angstrom":3.0}"#);
        assert_eq!(serde_json::from_str::<ReportedResolution>(&json).unwrap(), n);
        let b = ReportedResolution::AtLeast { angstrom: 4.41 };
        assert_eq!((b.angstrom(), b.angstrom_or_nyquist()), (None, Some(4.41)));
        assert_eq!(b.short(), "at least 4.41 Å");
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"{"kind":"at_least","angstrom":4.41}"#);
    }

    #[test]
    fn json_resolutions_are_a_number_or_null_with_the_reason_beside() {
        let mut out = serde_json::json!({ "box": 32 });
        insert_resolution_json(&mut out, "resolution_0143", Ok(Resolution::Angstrom(4.25)), 1.5);
        insert_resolution_json(&mut out, "resolution_05", Ok(Resolution::Nyquist), 1.5);
        insert_resolution_json(&mut out, "resolution_0143_unmasked", Ok(Resolution::NoCorrelation), 1.5);
        insert_resolution_json(&mut out, "resolution_05_unmasked", Err(NoResolution::NoPower { shells: vec![7, 8] }), 1.5);
        assert_eq!(out["resolution_0143"], 4.25);
        for key in ["resolution_05", "resolution_0143_unmasked", "resolution_05_unmasked"] {
            assert!(out[key].is_null(), "{key}: {out}");
        }
        let d = &out["resolution_details"];
        assert_eq!(d["resolution_0143"], serde_json::json!({"kind": "crossing", "angstrom": 4.25}));
        assert_eq!(d["resolution_05"], serde_json::json!({"kind": "at_nyquist", "angstrom": 3.0}));
        assert_eq!(d["resolution_0143_unmasked"], serde_json::json!({"kind": "no_correlation"}));
        assert_eq!(d["resolution_05_unmasked"]["kind"], "undefined");
        assert!(d["resolution_05_unmasked"]["reason"].as_str().unwrap().contains("shells 7"), "{d}");
        assert_eq!(out["box"], 32, "the rest of the object is kept");
    }

    #[test]
    fn one_run_per_folder_and_no_silent_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("out");
        // A folder created for a run that wrote nothing goes with it.
        drop(OutputDir::open(&d, Existing::Refuse, "reconstruct").unwrap());
        assert!(!d.exists());
        let first = OutputDir::open(&d, Existing::Refuse, "reconstruct").unwrap();
        assert!(d.join(LOCK_FILE).exists());
        std::fs::write(d.join("notes.txt"), b"mine").unwrap();
        // A second run into the same folder while the first holds it.
        let e = OutputDir::open(&d, Existing::Overwrite, "backproject").unwrap_err().to_string();
        assert!(e.contains("another cryosplat run") && e.contains(&std::process::id().to_string()), "{e}");
        drop(first);
        assert!(!d.join(LOCK_FILE).exists());
        // Results of an earlier run are refused, named, unless resumed or overwritten.
        std::fs::write(d.join("map.mrc"), b"x").unwrap();
        std::fs::write(d.join("checkpoint.ckpt"), b"x").unwrap();
        let e = OutputDir::open(&d, Existing::Refuse, "reconstruct").unwrap_err().to_string();
        assert!(e.contains("map.mrc, checkpoint.ckpt") && e.contains("--resume") && e.contains("--overwrite"), "{e}");
        assert!(!d.join(LOCK_FILE).exists(), "a refused open leaves no lock");
        drop(OutputDir::open(&d, Existing::Resume, "reconstruct").unwrap());
        assert!(d.join("map.mrc").exists());
        drop(OutputDir::open(&d, Existing::Overwrite, "reconstruct").unwrap());
        assert!(!d.join("map.mrc").exists() && !d.join("checkpoint.ckpt").exists());
        assert_eq!(std::fs::read(d.join("notes.txt")).unwrap(), b"mine", "files that are not results stay");
    }

    #[test]
    fn a_stale_lock_is_taken_over_and_a_garbled_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A process id far above any pid_max in use.
        std::fs::write(d.join(LOCK_FILE), "4000000000\n").unwrap();
        let out = OutputDir::open(d, Existing::Refuse, "reconstruct").unwrap();
        assert_eq!(std::fs::read_to_string(d.join(LOCK_FILE)).unwrap().trim(), std::process::id().to_string());
        drop(out);
        std::fs::write(d.join(LOCK_FILE), "garbage").unwrap();
        let e = OutputDir::open(d, Existing::Refuse, "reconstruct").unwrap_err().to_string();
        assert!(e.contains("names no process"), "{e}");
    }

    #[test]
    fn records_each_file_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = OutputDir::create(&dir.path().join("a/b")).unwrap();
        out.record(out.path("x"));
        out.record(out.path("y"));
        out.record(out.path("x"));
        assert_eq!(out.written(), &[dir.path().join("a/b/x"), dir.path().join("a/b/y")]);
        out.write_run_json(&serde_json::json!({"k": 1})).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path("run.json")).unwrap()).unwrap();
        assert_eq!(back["k"], 1);
        assert_eq!(out.written().len(), 3);
    }
}
