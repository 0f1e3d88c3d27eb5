//! Half maps written by `reconstruct`, given to a command that reads a resolution from their FSC
//! alone (`fsc` without `--cross-validate`, `postprocess`, `locres`).
//!
//! Two Gaussian half models share an error no half-map FSC can see: both infer the same fine
//! detail from the coarser structure both halves' images show, so their FSC reads finer than the
//! map holds against the truth (BENCHMARKS.md, "Calibration of the reported resolution"), and
//! `reconstruct` reports the coarser of that FSC and its cross-validated estimate. A command
//! that reads the half maps alone says so, with the run's own figures when its `run.json` is
//! beside them, instead of printing the half maps' claim as if it were the map's resolution.

use cryosplat_formats::mrc::MrcFile;
use cryosplat_train::output::ReportedResolution;
use cryosplat_train::reconstruct::MAP_LABEL;
use std::path::{Path, PathBuf};

/// A pair of half maps that `reconstruct` wrote, and what its run reported.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianHalves {
    /// The `run.json` beside the first map, when there is one that reports a resolution.
    pub run: Option<RunFigures>,
}

/// The figures of a `reconstruct` run at FSC 0.143.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFigures {
    pub path: PathBuf,
    /// The whole `run.json`, as read.
    pub json: serde_json::Value,
    /// The resolution the run reports (`resolution_details.resolution_0143`).
    pub reported: ReportedResolution,
    /// What its half maps alone claim (the last pass's `half_map_0143`), when recorded.
    pub half_maps: Option<ReportedResolution>,
}

/// Whether both maps were written by `reconstruct` (the first MRC label of each), with the
/// figures of the run in the first map's folder; `None` for any other pair, or a map whose
/// header cannot be read (the command reading it reports that).
pub fn detect(a: &Path, b: &Path) -> Option<GaussianHalves> {
    let written_by_reconstruct =
        |p: &Path| MrcFile::open(p).is_ok_and(|f| f.header().labels.first().is_some_and(|l| l.starts_with(MAP_LABEL)));
    if !(written_by_reconstruct(a) && written_by_reconstruct(b)) {
        return None;
    }
    let run = run_json_beside(a).and_then(|(path, json)| {
        let reported = serde_json::from_value(json["resolution_details"]["resolution_0143"].clone()).ok()?;
        let last = json["history"].as_array().and_then(|h| h.last()).map(|r| r["half_map_0143"].clone());
        let half_maps = last.and_then(|v| serde_json::from_value(v).ok());
        Some(RunFigures { path, json, reported, half_maps })
    });
    Some(GaussianHalves { run })
}

/// The `run.json` in `map`'s folder (where `reconstruct` and `backproject` write it beside their
/// maps), its path and its contents; `None` where there is none that parses.
pub fn run_json_beside(map: &Path) -> Option<(PathBuf, serde_json::Value)> {
    run_json_in(map.parent().unwrap_or(Path::new(".")))
}

/// The `run.json` in the run folder `dir`, its path and its contents; `None` where there is none
/// that parses.
pub fn run_json_in(dir: &Path) -> Option<(PathBuf, serde_json::Value)> {
    let path = dir.join("run.json");
    let json = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    Some((path, json))
}

impl GaussianHalves {
    /// The warning for a command that reads `what` (e.g. "this FSC") from the half maps alone.
    pub fn warning(&self, what: &str) -> String {
        let run = match &self.run {
            Some(r) => format!(
                "; their run reports {} at FSC 0.143 ({}){}",
                r.reported.short(),
                r.path.display(),
                r.half_maps.map_or(String::new(), |h| format!(", where its half maps alone claim {}", h.short()))
            ),
            None => String::new(),
        };
        format!(
            "these are Gaussian half maps (written by {MAP_LABEL}): their FSC also counts as signal the fine detail both half models infer alike, which no image confirms, so {what} can read finer than the map holds{run}. For the map's resolution use the run's, or `cryosplat fsc` with --cross-validate and backprojections of the same halves"
        )
    }

    /// The same for a JSON output: `{"run_json", "run_resolution_0143", "run_half_map_0143"}`
    /// (nulls where unknown).
    pub fn json(&self) -> serde_json::Value {
        let r = self.run.as_ref();
        serde_json::json!({
            "run_json": r.map(|r| r.path.to_string_lossy().into_owned()),
            "run_resolution_0143": r.map(|r| r.reported),
            "run_half_map_0143": r.and_then(|r| r.half_maps),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryosplat_formats::mrc::{self, WriteOptions};

    fn write(dir: &Path, name: &str, label: &str) -> PathBuf {
        let p = dir.join(name);
        let v: Vec<f32> = (0..8 * 8 * 8).map(|i| (i % 7) as f32).collect();
        mrc::write_volume(&p, &v, [8, 8, 8], 2.0, &WriteOptions { label: label.into(), ..Default::default() }).unwrap();
        p
    }

    #[test]
    fn half_maps_of_a_reconstruction_are_told_from_others() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "half_map_a.mrc", &format!("{MAP_LABEL}, epoch 12"));
        let b = write(dir.path(), "half_map_b.mrc", &format!("{MAP_LABEL}, epoch 12"));
        let bp = write(dir.path(), "bp.mrc", "cryosplat backproject");
        let plain = write(dir.path(), "plain.mrc", "");
        assert_eq!(detect(&a, &b), Some(GaussianHalves { run: None }));
        assert_eq!(detect(&a, &bp), None);
        assert_eq!(detect(&plain, &b), None);
        assert_eq!(detect(&a, &dir.path().join("missing.mrc")), None);
        let w = detect(&a, &b).unwrap().warning("this FSC");
        assert!(
            w.starts_with("these are Gaussian half maps") && w.contains("so this FSC can read finer") && !w.contains("their run"),
            "{w}"
        );
        // With the run's run.json beside them: its figures.
        let run = serde_json::json!({
            "resolution_details": { "resolution_0143": { "kind": "crossing", "angstrom": 4.47 } },
            "history": [
                { "half_map_0143": { "kind": "crossing", "angstrom": 9.0 } },
                { "half_map_0143": { "kind": "at_nyquist", "angstrom": 4.0 } }
            ]
        });
        std::fs::write(dir.path().join("run.json"), run.to_string()).unwrap();
        let g = detect(&a, &b).unwrap();
        let figures = g.run.as_ref().unwrap();
        assert_eq!(figures.reported, ReportedResolution::Crossing { angstrom: 4.47 });
        assert_eq!(figures.half_maps, Some(ReportedResolution::AtNyquist { angstrom: 4.0 }));
        let w = g.warning("the local resolution");
        assert!(
            w.contains("their run reports 4.47 Å at FSC 0.143") && w.contains("where its half maps alone claim at Nyquist (4.00 Å)"),
            "{w}"
        );
        let j = g.json();
        assert_eq!(j["run_resolution_0143"]["angstrom"], 4.47);
        assert_eq!(j["run_half_map_0143"]["kind"], "at_nyquist");
    }
}
