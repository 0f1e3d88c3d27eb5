//! The backprojection pipeline: stream a particle set through [`Accumulator`]s, one pair
//! (half A, half B) per worker, and finish the full map, both half maps and their FSC.
//!
//! One unit of parallel work is a block of consecutive particles read, optionally
//! Fourier-cropped, and inserted by one worker into its own accumulators; the workers'
//! accumulators are summed in a fixed order, so the maps do not depend on scheduling. The
//! halves are the same as `reconstruct`'s for the same seed.
//!
//! With a point group ([`BackprojectConfig::sym`]) each image goes into its half once per
//! operator `R_k`, at the pose `A·R_k` ([`Accumulator::insert_symmetric`]): the half maps stay
//! independent, and both are symmetric about the box centre.
//!
//! # Regularisation
//!
//! By default ([`BackprojectConfig::wiener`] `None`) the map is regularised from the
//! gold-standard FSC, as RELION does (formula in [`cryosplat_core::backproject`],
//! [`Accumulator::finish_halves`]): the half maps are finished with the constant term of
//! [`cryosplat_core::backproject::BASE_WIENER`], their unmasked FSC gives the spectral SNR per
//! shell of the full set ([`cryosplat_core::fsc::ssnr_from_fsc`], twice the half-set SSNR),
//! and the full map is `data/(W + λ_n)` with `λ_n = mean_n(W)/SSNR_n`.
//! `Some(f)` selects the constant term `λ = f · mean(W)` for every map instead.
//!
//! The half maps written and their FSC stay those of the constant term: they are what FSC
//! validation, masking and post-processing expect, and the SSNR filter, steep where the half
//! maps stop agreeing, would make a masked FSC leak low-frequency power into the damped shells
//! (measured on a 64 px simulation: BENCHMARKS.md).

use crate::dataset::{DatasetError, ParticleSet};
use crate::images::{working_box, Images};
use crate::output::{Maps, OutputDir, ReportedResolution};
use crate::progress::Progress;
use cryosplat_core::backproject::{Accumulator, InsertScratch, Insertion, WeightCorrection};
use cryosplat_core::fsc::{gold_standard, FscReport, MaskChoice};
use cryosplat_core::symmetry::PointGroup;
use cryosplat_formats::FormatError;
use rayon::prelude::*;

/// Backprojection settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BackprojectConfig {
    /// Padding factor of the Fourier grid.
    pub pad: usize,
    /// Regularisation: `None` (default) derives the full map's from the half-map FSC (module
    /// docs); `Some(f)` adds the constant `f · mean(weight)` to every weight of every map.
    pub wiener: Option<f64>,
    pub threads: usize,
    pub seed: u64,
    pub downsample: Option<usize>,
    /// Ignore the CTF (data without one).
    pub no_ctf: bool,
    /// Point group of the particle (RELION's name, [`cryosplat_core::symmetry`]): every image
    /// is inserted once per operator `R_k` with the pose `A·R_k`, into its own half.
    pub sym: String,
    /// Iterations of the gridding-weight correction ([`WeightCorrection::Gridding`], for
    /// example [`cryosplat_core::backproject::GRIDDING_ITERATIONS`]); 0 (default) divides every
    /// padded voxel by its own weight ([`WeightCorrection::PerVoxel`]).
    pub gridding_iterations: usize,
    /// Insert the zero-padded images' spectra ([`Insertion::PaddedImage`]) instead of the
    /// images' own ([`Insertion::Direct`]).
    pub pad_images: bool,
}

impl Default for BackprojectConfig {
    fn default() -> Self {
        BackprojectConfig {
            pad: 2,
            wiener: None,
            threads: 0,
            seed: 0,
            downsample: None,
            no_ctf: false,
            sym: "C1".into(),
            gridding_iterations: 0,
            pad_images: false,
        }
    }
}

impl BackprojectConfig {
    /// The finish's weight correction these settings select.
    pub fn correction(&self) -> WeightCorrection {
        match self.gridding_iterations {
            0 => WeightCorrection::PerVoxel,
            n => WeightCorrection::Gridding { iterations: n },
        }
    }

    /// The insertion these settings select.
    pub fn insertion(&self) -> Insertion {
        if self.pad_images {
            Insertion::PaddedImage
        } else {
            Insertion::Direct
        }
    }
}

/// Maps and their FSC.
pub struct Backprojection {
    pub map: Vec<f32>,
    pub half_a: Vec<f32>,
    pub half_b: Vec<f32>,
    pub fsc: FscReport,
    /// The full-set SSNR per shell `map` was regularised with (`None` for a constant term).
    pub ssnr: Option<Vec<f64>>,
    pub d: usize,
    pub apix: f64,
    /// The point group's canonical name and order (`C1` and 1 without symmetry).
    pub symmetry: String,
    pub symmetry_order: usize,
    pub seconds: f64,
    /// The halves, as `run.json` records them.
    pub half_split: crate::dataset::HalfSplitRecord,
}

/// Errors of the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum BackprojectError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{0}")]
    Config(String),
    /// The half maps give no resolution (a half without particles or signal).
    #[error("no resolution: {0}")]
    NoResolution(String),
}

/// Backproject `set`.
pub fn backproject(set: &ParticleSet, cfg: &BackprojectConfig, progress: &dyn Progress) -> Result<Backprojection, BackprojectError> {
    set.require_poses()?;
    if !cfg.no_ctf {
        set.require_ctf()?;
    }
    if let Some(w) = cfg.wiener {
        if !(w.is_finite() && w >= 0.0) {
            return Err(BackprojectError::Config(format!("--wiener {w}: expected a fraction ≥ 0")));
        }
    }
    let group = PointGroup::parse(&cfg.sym).map_err(|e| BackprojectError::Config(format!("--sym: {e}")))?;
    if cfg.pad == 0 || cfg.pad > 4 {
        return Err(BackprojectError::Config(format!("--pad {}: expected 1 to 4", cfg.pad)));
    }
    let threads = if cfg.threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { cfg.threads };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| BackprojectError::Config(e.to_string()))?;
    let started = std::time::Instant::now();
    let full = set.box_px;
    let d = working_box(cfg.downsample, full).map_err(BackprojectError::Config)?;
    let apix = set.apix * full as f64 / d as f64;
    let (ha, hb) = set.half_split(cfg.seed);
    let half_split = set.half_split_record([&ha, &hb]);
    if ha.is_empty() || hb.is_empty() {
        return Err(BackprojectError::Config(format!(
            "{}: a gold-standard backprojection needs particles in both halves ({} and {})",
            set.source.display(),
            ha.len(),
            hb.len()
        )));
    }
    let mut in_a = vec![false; set.len()];
    for i in ha {
        in_a[i] = true;
    }
    progress.start("backprojecting", set.len() as u64);
    let n = set.len();
    let blocks = threads.max(1);
    let images = Images::new(set, d);
    let results: Result<Vec<(Accumulator, Accumulator)>, BackprojectError> = pool.install(|| {
        (0..blocks)
            .into_par_iter()
            .map(|b| {
                let mut acc = (Accumulator::new(d, cfg.pad), Accumulator::new(d, cfg.pad));
                let mut s = InsertScratch::with_insertion(d, cfg.pad, apix, cfg.insertion());
                let mut read = images.scratch();
                let mut img = vec![0.0f32; d * d];
                let (lo, hi) = (b * n / blocks, (b + 1) * n / blocks);
                for (i, &is_a) in in_a.iter().enumerate().take(hi).skip(lo) {
                    images.read(i, &mut img, &mut read)?;
                    let p = &set.particles[i];
                    let target = if is_a { &mut acc.0 } else { &mut acc.1 };
                    target.insert_symmetric(&img, &p.pose, apix, (!cfg.no_ctf).then_some(&p.ctf), group.operators(), &mut s);
                    progress.inc(1);
                }
                Ok(acc)
            })
            .collect()
    });
    let results = results?;
    progress.finish();
    let mut it = results.into_iter();
    let (mut a, mut b) = it.next().expect("at least one block");
    for (x, y) in it {
        a.add(&x);
        b.add(&y);
    }
    let correction = cfg.correction();
    let (half_a, half_b, map, ssnr) = pool.install(|| match cfg.wiener {
        Some(wiener) => {
            let half_a = a.finish_with(wiener, correction);
            let half_b = b.finish_with(wiener, correction);
            a.add(&b);
            (half_a, half_b, a.finish_with(wiener, correction), None)
        }
        None => {
            let h = a.finish_halves_with(&b, correction);
            (h.half_a, h.half_b, h.full, Some(h.ssnr_full))
        }
    });
    let fsc = pool.install(|| gold_standard(&half_a, &half_b, d, apix, MaskChoice::Auto, cfg.seed));
    for t in [0.143, 0.5] {
        fsc.try_resolution(t).map_err(|e| BackprojectError::NoResolution(e.to_string()))?;
    }
    Ok(Backprojection {
        map,
        half_a,
        half_b,
        fsc,
        ssnr,
        d,
        apix,
        symmetry: group.name().to_string(),
        symmetry_order: group.order(),
        seconds: started.elapsed().as_secs_f64(),
        half_split,
    })
}

impl Backprojection {
    /// Half-map resolution at `threshold` (auto-masked, phase-randomisation corrected).
    pub fn resolution(&self, threshold: f64) -> ReportedResolution {
        ReportedResolution::new(self.fsc.resolution(threshold), self.apix)
    }

    /// `map.mrc`, the half maps, `fsc.csv` and `run.json` (with `settings`, the caller's
    /// description of the run, and `cfg`) into `out`.
    pub fn write_outputs(&self, out: &mut OutputDir, cfg: &BackprojectConfig, settings: &serde_json::Value) -> Result<(), FormatError> {
        let maps = Maps { full: &self.map, half_a: &self.half_a, half_b: &self.half_b, d: self.d, apix: self.apix };
        let label = if self.symmetry_order > 1 {
            format!("cryosplat backproject, symmetry {}", self.symmetry)
        } else {
            "cryosplat backproject".into()
        };
        out.write_maps(&maps, &label)?;
        out.write_fsc(&self.fsc)?;
        let mut settings = settings.clone();
        if let Some(m) = settings.as_object_mut() {
            m.insert("config".into(), serde_json::to_value(cfg).expect("config serialises"));
        }
        let (r0143, r05) = (self.resolution(0.143), self.resolution(0.5));
        let run = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "finished": true,
            "resolution_0143": r0143.angstrom(),
            "resolution_05": r05.angstrom(),
            "resolution_method": crate::reconstruct::RESOLUTION_METHOD,
            "half_split": self.half_split,
            "settings": settings,
            "summary": {
                "resolution_0143": r0143,
                "resolution_05": r05,
                "box_px": self.d,
                "apix": self.apix,
                "symmetry": self.symmetry,
                "symmetry_order": self.symmetry_order,
                "regularisation": if self.ssnr.is_some() { "half-map FSC (SSNR per shell)" } else { "constant" },
                "seconds": self.seconds,
                "outputs": out.written().iter().map(|p| p.display().to_string()).chain([out.path("run.json").display().to_string()]).collect::<Vec<_>>(),
            },
        });
        out.write_run_json(&run)
    }
}
