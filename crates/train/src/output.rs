//! The files of a run's output folder, written in one place.
//!
//! `reconstruct` and `backproject` write their maps (`map.mrc`, `half_map_a.mrc`,
//! `half_map_b.mrc`), the half-map FSC table (`fsc.csv`), the Gaussian model files
//! (`gaussians.ply`, `gaussians_a.ply`, `gaussians_b.ply`, `gaussians.cif`) and `run.json`
//! through an [`OutputDir`], so that a program calling the library gets the same files as the
//! command-line tool. Every file is written atomically (temporary file and rename). The folder
//! remembers what it wrote, in order, for `run.json`'s list of outputs; files written by the
//! caller (figures, the report, the log) are added with [`OutputDir::record`].

use cryosplat_core::fsc::{FscReport, Resolution};
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

/// A run's output folder and the files written into it so far.
#[derive(Debug)]
pub struct OutputDir {
    dir: PathBuf,
    written: Vec<PathBuf>,
}

impl OutputDir {
    /// The folder `dir`, created if missing.
    pub fn create(dir: &Path) -> Result<Self, FormatError> {
        std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
        Ok(OutputDir { dir: dir.to_path_buf(), written: Vec::new() })
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
        let opts = WriteOptions { label: label.to_string(), ..Default::default() };
        for (name, m) in [("map.mrc", maps.full), ("half_map_a.mrc", maps.half_a), ("half_map_b.mrc", maps.half_b)] {
            let p = self.path(name);
            mrc::write_volume(&p, m, [maps.d, maps.d, maps.d], maps.apix, &opts)?;
            self.record(p);
        }
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

    /// The crossing in Å; `None` at Nyquist or without correlation (no number that could be
    /// mistaken for a measured resolution).
    pub fn angstrom(&self) -> Option<f64> {
        match *self {
            ReportedResolution::Crossing { angstrom } => Some(angstrom),
            _ => None,
        }
    }

    /// The crossing in Å, or Nyquist when the curve never crosses (a bound, for plots and
    /// comparisons).
    pub fn angstrom_or_nyquist(&self) -> Option<f64> {
        match *self {
            ReportedResolution::Crossing { angstrom } | ReportedResolution::AtNyquist { angstrom } => Some(angstrom),
            ReportedResolution::NoCorrelation => None,
        }
    }
}

impl ReportedResolution {
    /// A short form for tables: "4.25 Å", "at Nyquist (3.00 Å)", "none".
    pub fn short(&self) -> String {
        match *self {
            ReportedResolution::Crossing { angstrom } => format!("{angstrom:.2} Å"),
            ReportedResolution::AtNyquist { angstrom } => format!("at Nyquist ({angstrom:.2} Å)"),
            ReportedResolution::NoCorrelation => "none".into(),
        }
    }
}

impl std::fmt::Display for ReportedResolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ReportedResolution::Crossing { angstrom } => write!(f, "{angstrom:.2} Å"),
            ReportedResolution::AtNyquist { angstrom } => write!(f, "at Nyquist ({angstrom:.2} Å; the true resolution may be finer)"),
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
