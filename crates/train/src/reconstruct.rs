//! Gaussian-splatting reconstruction with gold-standard half maps.
//!
//! # The method
//!
//! Two independent models, one per half of the particles (`rlnRandomSubset` when every
//! particle has it, otherwise a seeded random split), each from its own start (see "Start"
//! below): `N` Gaussians (up to 64 px two per particle of the smaller half, from 8,000 to
//! 20,000, and 20,000 with a point group; 15,000 above, where the runs are shorter:
//! [`auto_gaussians`]; `--gaussians` sets a count) with identity rotations and equal
//! amplitudes totalling the estimated mass (see "Initial mass" below). Each half is trained by its own
//! [`trainer::HalfTrainer`] with Adam (one learning rate for every parameter type, 1e-3 in box
//! units, decayed exponentially to ×0.1 over the run) on the MSE between its CTF-modulated
//! projections and its own images, one image per step by default, visiting its images in a
//! seeded random order every epoch; no regulariser. The run makes at least 5 passes, and more
//! when a half would otherwise take fewer than `min_steps` optimiser steps (20,000 up to 64 px,
//! and beyond as many as see the same number of pixels, 5,000 at 128 px: [`auto_min_steps`],
//! [`ReconstructConfig::planned_epochs`]); `--epochs` forces a count. The halves never see each
//! other's data. With `--average-tail F`, `map.mrc`, the half maps and the Gaussians are of
//! each half's raw parameters averaged over its last `F` of the planned steps
//! ([`trainer::TailAverage`]); without it, over the last 20% above 64 px, where the runs are
//! shorter, and not at all up to 64 px ([`auto_average_tail`]).
//!
//! With `--grow auto` the model grows ([`Growth`]): each half starts with half of the
//! Gaussians, and after the first 40% of the passes every Gaussian is split in two along one of
//! its axes, the pair keeping its mass, centre and covariance and its Adam moments
//! ([`density::grow`]). The early passes cost half as much; it is not the default because it
//! was coarser on some simulated sets (BENCHMARKS.md, "Growing the model").
//! After every epoch both halves are voxelised, the half maps are compared by FSC (unmasked,
//! auto-masked, phase-randomisation corrected) and the full map is their average. After the
//! last, the full map is completed by the backprojection of the same images wherever both
//! halves' images hold what their Gaussians miss ([`completion`]; `completion: false` leaves
//! the average); the half maps and the reported resolution stay the Gaussian ones.
//!
//! With `--coarse-to-fine` the early steps of each half train on Fourier-cropped images at
//! smaller boxes, the model unchanged (box units); see [`CoarseToFine`].
//!
//! Actions between epochs are [`trainer::EpochHook`]s: the model's growth and density control
//! (splitting and pruning, off by default), both in [`density`].
//!
//! # Start
//!
//! `--init random` is the method's random start: positions drawn from a normal distribution
//! around the box centre (σ = 0.075 box) and isotropic scales of 0.0075 box, the same
//! distribution for both halves. `--init backprojection` draws each half's centres from that
//! half's own backprojection ([`start::half_backprojection`]: its images, Fourier-cropped to
//! at most 64 px, alternately in two accumulators, whose FSC gives the half's own spectral SNR
//! to regularise their sum), with
//! probability proportional to the map's positive part, and isotropic scales of half the mean
//! spacing of the Gaussians over the volume that density fills, at least 0.0075 box
//! ([`GaussianModel::sample_from_map`]). The random blob must first spread to the molecule's
//! extent, which the lowest frequencies pull on weakly where the CTF is small; a short run, or a
//! molecule that fills the box (crowded sub-tomograms), is left with a low-resolution deficit
//! that both halves share. BENCHMARKS.md ("Backprojection start") has the measurements.
//! `--init auto` (the default) chooses between the two once, before the run, from the number
//! of particles in the smaller half ([`ReconstructConfig::resolve_init`],
//! [`AUTO_INIT_BACKPROJECTION_BELOW`]): the backprojection start below 4,500, where it resolved
//! at least as finely on every simulation measured (up to 3,967 per half), the random start from
//! there on (at 4,986 per half the sets disagreed; from 7,427 the random start resolved 7–9%
//! more finely). The run records the start it used and why ([`InitChoice`]), and resuming uses
//! the same one.
//!
//! # Symmetry
//!
//! With `--sym NAME` (any point group RELION names, mirrors and the inversion included, in
//! RELION's orientation; see `cryosplat_core::symmetry`), each half model holds the asymmetric
//! unit, `N/|G|` Gaussians (rounded up) carrying `1/|G|` of the start's mass; every step renders
//! all `|G|` copies (positions and frames transformed by each operator about the box centre) and
//! folds their gradient back onto the unit (`cryosplat_core::render::expand`). Maps, FSC and the written
//! Gaussians are of the expanded model, so the maps are exactly symmetric.
//!
//! # Data scale
//!
//! Each half's images are divided by one factor (the standard deviation of the pixel values
//! over a sample of up to 256 of that half's images) so that learning rates behave the same on
//! every data set; the losses are in these normalised units, and each half map is multiplied
//! back so that the maps are written in the units of the input images (a projection of
//! `map.mrc` is on the scale of the CTF-free particle images).
//!
//! # Independent halves
//!
//! Everything a half's model depends on comes from that half's images, the settings and the
//! seed: its data scale, its mass estimate, its random start, its visiting order and its
//! density control. So half B's map is bitwise the same whatever half A's images hold
//! (tested), and the half-map FSC compares two reconstructions that share no data.
//!
//! # Initial mass
//!
//! The random start needs a total mass. The projection of a mass `m` integrates to `m` in
//! every view, and the CTF scales the zero frequency by `CTF(0)` (`Q0` without a phase
//! plate), so `Σ image integrals / Σ CTF(0)` over up to 1000 images of each half estimates it
//! ([`MassEstimate`]). Dividing by `Q0 ≈ 0.1` amplifies the noise of the zero frequency ten
//! times; averaging 1000 images brings the standard error down to a few per cent on the
//! simulated sets in BENCHMARKS.md. When that standard error exceeds 25%, or the estimate is
//! not positive, a least-squares fit of the initial blob rendered at 128 particles' poses with
//! their CTFs is used instead, with a warning: it is biased low when the molecule is more
//! extended than the blob, and a low start costs resolution. The fit is always made, because a
//! negative fit means the contrast is inverted, which is an error that says to use `--invert`.
//! The initial model carries `init_mass_fraction` of the estimate: 1 by default, chosen by
//! measurement (BENCHMARKS.md). The method's recipe gives each Gaussian `total/(2N)`, half the
//! mass, which one learning rate of 1e-3 on softplus amplitudes recovers too slowly in a few
//! epochs; `--init-mass-fraction 0.5` gives the recipe.
//!
//! # Determinism and resuming
//!
//! Every random choice comes from a named stream of the seed ([`crate::streams`]), the
//! renderer's reductions are in a fixed order for a given thread count (fixed ranges of
//! Gaussians or images per thread, summed in order; no work-stealing order enters a float
//! sum), and a checkpoint holds everything else, so a run resumed from a checkpoint ends
//! bitwise with the same maps as an unbroken run with the same settings and thread count. The
//! checkpoint's fingerprint covers the settings, the data (poses, CTFs, image references) and
//! the thread count; resuming with anything else is refused with a message naming what differs.
//! Only `--epochs` may change: resuming a finished run with a larger `--epochs` extends it, and
//! the learning-rate schedule then spans the new total (so an extended run is not bitwise the
//! run that had the larger `--epochs` from the start).
//!
//! The maps depend on `--threads`: the renderer splits each image's Gaussians, and a minibatch's
//! images, over fixed per-thread ranges and sums the ranges in order, so a different thread
//! count sums in a different order and rounds differently. The same thread count gives the same
//! maps on any machine with the same instruction set.

use crate::adam::{AdamConfig, LrSchedule};
use crate::checkpoint::{self, CheckpointMeta};
use crate::dataset::{DatasetError, ParticleSet, SourceKind};
use crate::output::{Maps, OutputDir, ReportedResolution};
use crate::progress::Progress;
use crate::streams::Stream;
use cryosplat_core::crossval;
use cryosplat_core::ctf::{CtfGrid, CtfParams};
use cryosplat_core::fourier::resample_volume;
use cryosplat_core::fsc::{gold_standard, FscReport, MaskChoice, NoResolution, Resolution};
use cryosplat_core::gaussian::{GaussianModel, INIT_SCALE};
use cryosplat_core::pose::Pose;
use cryosplat_core::render::expand::SymmetryExpansion;
use cryosplat_core::render::{ImageTarget, RenderOptions, Renderer};
use cryosplat_core::symmetry::PointGroup;
use cryosplat_core::voxel::voxelize_model;
use cryosplat_formats::FormatError;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub mod check;
pub mod completion;
pub mod density;
mod fingerprint;
pub mod start;
pub mod trainer;

use crate::images::{working_box, Images, ReadScratch};
use density::{DensityChange, DensityConfig, GrowAt, ModelHooks};
pub use fingerprint::{fingerprint, Fingerprint};
pub use start::MassEstimate;
pub use trainer::RefineConfig;
use trainer::{EpochHook, HalfTrainer, ParticleRefinement, RefineState};

/// Every setting of a reconstruction (each is a command-line option with this default).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReconstructConfig {
    /// Gaussians per half model; `None`: [`auto_gaussians`] of the training box and the halves.
    pub gaussians: Option<usize>,
    /// Passes over each half's particles; `None`: as many as [`ReconstructConfig::min_steps`]
    /// needs, and at least [`MIN_EPOCHS`] ([`ReconstructConfig::planned_epochs`]).
    pub epochs: Option<usize>,
    /// Optimiser steps each half takes at least when `epochs` is `None` (small sets then make
    /// more passes); `None`: [`auto_min_steps`] of the training box.
    #[serde(default)]
    pub min_steps: Option<u64>,
    /// The fraction of each half's optimiser steps, at the end of the run, whose parameters
    /// are averaged into the final model (`--average-tail`; 0: the last step's model); `None`:
    /// [`auto_average_tail`] of the training box.
    #[serde(default)]
    pub average_tail: Option<f64>,
    /// Adam learning rate (box units), for every parameter type.
    pub lr: f64,
    /// How the learning rate falls ([`LrSchedule`]).
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Total decay of the learning rate over the run (exponential schedule).
    pub lr_decay: f64,
    /// Factor per epoch (step schedule; the method's is 0.1).
    #[serde(default = "tenth")]
    pub lr_gamma: f64,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Random seed (half split, initialisation, visiting order).
    pub seed: u64,
    /// Footprint of a splat in standard deviations.
    pub n_sigma: f32,
    /// Train on images Fourier-cropped to this box size (None: full size).
    pub downsample: Option<usize>,
    /// Also checkpoint every this many steps (0: only at the end of each half-epoch).
    pub checkpoint_every: usize,
    /// Keep images in memory when they take less than this many GiB (else read them per step),
    /// and each particle's CTF when images and CTFs together take less.
    pub cache_gib: f64,
    /// Stop after this many optimiser steps in total (for tests of resuming); None: no limit.
    pub max_steps: Option<u64>,
    /// Train without a CTF (for data without one, such as noiseless simulations).
    pub no_ctf: bool,
    /// The initial model's total mass as a fraction of the data's estimated total mass (1 by
    /// measurement; the method's recipe of amplitudes `total/(2N)` is 0.5).
    #[serde(default = "one")]
    pub init_mass_fraction: f64,
    /// Where each half's Gaussians start ([`InitKind`]).
    #[serde(default)]
    pub init: InitKind,
    /// Splitting and pruning between epochs (off by default).
    #[serde(default)]
    pub density: DensityConfig,
    /// Whether the model grows during the run ([`Growth`]; absent in files written before the
    /// option existed, which trained a fixed number of Gaussians).
    #[serde(default)]
    pub grow: Growth,
    /// Point group of the particle (RELION's names, [`PointGroup::parse`]). With a group
    /// other than `C1` each half model holds the asymmetric unit, with `gaussians / |G|`
    /// Gaussians (rounded up), and is rendered, voxelised and written as its `|G|` copies
    /// ([`SymmetryExpansion`]).
    #[serde(default = "c1")]
    pub sym: String,
    /// Per-particle refinement of poses, origins and defoci (`None`: off; see
    /// [`trainer::ParticleRefinement`]).
    #[serde(default)]
    pub refine: Option<RefineConfig>,
    /// Early steps on Fourier-cropped images ([`CoarseToFine`]).
    #[serde(default)]
    pub coarse_to_fine: CoarseToFine,
    /// Complete the last pass's Gaussian maps by each half's backprojection ([`completion`]).
    #[serde(default = "yes")]
    pub completion: bool,
}

fn yes() -> bool {
    true
}

/// Coarse-to-fine training: which steps of each half train on smaller images.
///
/// The model is in box units, so it carries across sizes unchanged. A step at a coarse box `d'`
/// (even, `< d`) sees every image Fourier-cropped to `d'` (pixel `apix·d/d'`) and low-passed by
/// a Gaussian of [`COARSE_BLUR_PX`] pixels of `d'`, made once per size
/// ([`crate::images::Images::coarse`]), with the CTF at that size and pixel, the renderer at `d'`,
/// and the model blurred by the same Gaussian ([`HalfTrainer::set_blur`]), so that Gaussians
/// narrower than the coarse pixel do not alias and the loss compares like with like. The loss
/// stays the mean square per pixel of the data scaled by the half's data scale, and origins,
/// poses and the learning-rate schedule are unchanged. A step's size follows the fraction of
/// the half's planned steps already taken (the run's length in steps, as the learning-rate
/// schedule counts it), so a resumed run switches where an unbroken one does. Maps, FSC and
/// density control are at the working box `d` throughout.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoarseToFine {
    /// Every step at the working box.
    #[default]
    Off,
    /// [`AUTO_COARSE_STAGES`]: `d/4` then `d/2` (each rounded down to an even size, and only
    /// sizes of at least [`MIN_COARSE_BOX`] px); off with `--refine`.
    Auto,
    /// Explicit stages, by increasing size.
    Stages(Vec<CoarseStage>),
}

/// Steps train at `box_px` until the fraction `until` of the half's planned steps is taken.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CoarseStage {
    pub box_px: usize,
    pub until: f64,
}

/// The automatic stages: (divisor of the working box, fraction of the steps it ends at), set
/// a priori (a quarter of the steps at `d/4`, a quarter at `d/2`), not tuned: BENCHMARKS.md
/// ("Coarse-to-fine training (issue 17)") has what they give, and why the option stays off.
pub const AUTO_COARSE_STAGES: [(usize, f64); 2] = [(4, 0.25), (2, 0.5)];

/// The smallest coarse box (px).
pub const MIN_COARSE_BOX: usize = 16;

/// The low-pass of coarse images and the blur of the model at a coarse box, in its pixels.
pub const COARSE_BLUR_PX: f64 = 0.5;

impl CoarseToFine {
    /// Parse `off`, `auto` or a list `SIZE:FRACTION,...` (e.g. `32:0.25,64:0.5`).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "off" => Ok(CoarseToFine::Off),
            "auto" => Ok(CoarseToFine::Auto),
            list => {
                let mut stages = Vec::new();
                for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    let bad = || format!("--coarse-to-fine: `{item}`: expected SIZE:FRACTION (e.g. 32:0.25), `auto` or `off`");
                    let (b, f) = item.split_once(':').ok_or_else(bad)?;
                    let box_px = b.trim().parse().map_err(|_| bad())?;
                    let until = f.trim().parse().map_err(|_| bad())?;
                    stages.push(CoarseStage { box_px, until });
                }
                if stages.is_empty() {
                    return Err("--coarse-to-fine: expected `auto`, `off` or a list SIZE:FRACTION,...".into());
                }
                Ok(CoarseToFine::Stages(stages))
            }
        }
    }

    /// The stages for working box `d`, checked: sizes even, at least [`MIN_COARSE_BOX`] and
    /// below `d`, increasing, and fractions increasing within (0, 1]. `auto` has none with
    /// per-particle refinement (`refine`), which an explicit list refuses.
    pub fn stages(&self, d: usize, refine: bool) -> Result<Vec<CoarseStage>, String> {
        let stages = match self {
            CoarseToFine::Off => return Ok(Vec::new()),
            CoarseToFine::Auto if refine => return Ok(Vec::new()),
            CoarseToFine::Auto => AUTO_COARSE_STAGES
                .iter()
                .map(|&(div, until)| CoarseStage { box_px: (d / div) & !1, until })
                .filter(|s| s.box_px >= MIN_COARSE_BOX && s.box_px < d)
                .collect(),
            CoarseToFine::Stages(s) => s.clone(),
        };
        if refine && !stages.is_empty() {
            return Err("--coarse-to-fine with --refine: refinement's steps need the full images; use --coarse-to-fine off".into());
        }
        let mut last = (0usize, 0.0f64);
        for s in &stages {
            if s.box_px % 2 != 0 || s.box_px < MIN_COARSE_BOX || s.box_px >= d {
                return Err(format!(
                    "--coarse-to-fine: a coarse box of {} px; expected an even size of at least {MIN_COARSE_BOX} px below the {d} px training box",
                    s.box_px
                ));
            }
            if !(s.until > last.1 && s.until <= 1.0) || s.box_px <= last.0 {
                return Err("--coarse-to-fine: expected sizes and fractions both increasing, fractions within (0, 1]".into());
            }
            last = (s.box_px, s.until);
        }
        Ok(stages)
    }
}

/// Where each half's Gaussians start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitKind {
    /// The method's random start: a normal blob around the box centre ([`GaussianModel::random_init`]).
    Random,
    /// Centres drawn from the half's own backprojection ([`start::half_backprojection`],
    /// [`GaussianModel::sample_from_map`]).
    Backprojection,
    /// Chosen from the data once, before the run ([`ReconstructConfig::resolve_init`]): the
    /// backprojection start for halves of fewer than [`AUTO_INIT_BACKPROJECTION_BELOW`]
    /// particles, the random start otherwise. The default.
    #[default]
    Auto,
}

impl InitKind {
    /// The option's value (`--init NAME`).
    pub fn name(self) -> &'static str {
        match self {
            InitKind::Random => "random",
            InitKind::Backprojection => "backprojection",
            InitKind::Auto => "auto",
        }
    }
}

/// `--init auto` starts from the backprojection when the smaller half has fewer particles than
/// this, and from the random blob otherwise. Placed by measurement (BENCHMARKS.md, "`--init
/// auto`: where the start switches"; 64 px simulations, 8,000 Gaussians): between the largest
/// halves where the backprojection start resolved at least as finely against the truth on every
/// set, unmasked and masked (3,967 particles), and the smallest where the random start resolved
/// more finely on some set (4,986: by 1–2% on 7DDO at SNR 0.005, while on 2XHE the
/// backprojection start was 3% finer; the random start was 7–9% finer at 7,427 and 9,936). The
/// boundary is not clean at 5,000, so the threshold stays below it.
pub const AUTO_INIT_BACKPROJECTION_BELOW: usize = 4_500;

/// The start a run uses, and why: `--init` resolved once before the run
/// ([`ReconstructConfig::resolve_init`]). `run.json` records it as `settings.start`, and its
/// configuration (`settings.config.init`) and the checkpoint's fingerprint hold the resolved
/// start, so a resumed run starts as the first did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InitChoice {
    /// What was asked for (`--init`).
    pub requested: InitKind,
    /// The start used: [`InitKind::Random`] or [`InitKind::Backprojection`], never `Auto`.
    pub used: InitKind,
    /// Why, in words (e.g. "auto: 500 particles per half, fewer than 5000").
    pub reason: String,
}

impl std::fmt::Display for InitChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.used.name(), self.reason)
    }
}

impl Default for ReconstructConfig {
    fn default() -> Self {
        ReconstructConfig {
            gaussians: None,
            epochs: None,
            min_steps: None,
            average_tail: None,
            lr: 1e-3,
            lr_schedule: LrSchedule::Exponential,
            lr_decay: 0.1,
            lr_gamma: 0.1,
            batch_size: 1,
            threads: 0,
            seed: 0,
            n_sigma: cryosplat_core::render::DEFAULT_N_SIGMA,
            downsample: None,
            checkpoint_every: 2000,
            cache_gib: 8.0,
            max_steps: None,
            no_ctf: false,
            init_mass_fraction: 1.0,
            init: InitKind::default(),
            density: DensityConfig::default(),
            grow: Growth::Off,
            sym: c1(),
            refine: None,
            coarse_to_fine: CoarseToFine::Off,
            completion: true,
        }
    }
}

/// How many Gaussians a half model holds over the run (`--grow`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Growth {
    /// `gaussians` from the first step to the last (the method's, and the default).
    #[default]
    Off,
    /// Half of `gaussians` (rounded up) for the first [`GROW_AT_FRACTION`] of the passes, then
    /// every Gaussian split in two ([`density::grow`]). Not the default: on the simulations
    /// measured it was finer on the large sets (up to 3%) and faster, but up to 6% coarser on
    /// low-SNR sets of 3,000–5,000 particles per half (BENCHMARKS.md, "Growing the model").
    Auto,
}

impl Growth {
    /// The pass (1-based) before which the model grows in a run of `epochs` passes: the one
    /// after the first [`GROW_AT_FRACTION`] of them (rounded), at least the second; `None` when
    /// the model does not grow (off, or a single pass).
    pub fn before_epoch(self, epochs: usize) -> Option<usize> {
        match self {
            Growth::Off => None,
            Growth::Auto if epochs < 2 => None,
            Growth::Auto => Some(((GROW_AT_FRACTION * epochs as f64).round() as usize + 1).clamp(2, epochs)),
        }
    }
}

/// The fraction of the passes a growing model makes at half its final size.
pub const GROW_AT_FRACTION: f64 = 0.4;

/// The fewest passes a run makes when its length follows the data.
pub const MIN_EPOCHS: usize = 5;

/// The least optimiser steps per half of a run at [`AUTO_MIN_STEPS_BOX`] px or less when its
/// length follows the data. 20,000 by measurement: on every simulated set of BENCHMARKS.md
/// ("Training length and schedule") it resolved at least as finely against the ground truth as
/// five epochs, and much more finely on small sets; half as many steps were up to 4% coarser
/// on the 48 px set, twice as many up to 2.5% coarser on two 64 px sets.
pub const AUTO_MIN_STEPS: u64 = 20_000;

/// The box up to which [`AUTO_MIN_STEPS`] holds; see [`auto_min_steps`].
pub const AUTO_MIN_STEPS_BOX: usize = 64;

/// The least optimiser steps per half of a run on `d` px images whose length follows the data:
/// [`AUTO_MIN_STEPS`] up to [`AUTO_MIN_STEPS_BOX`] px, and beyond it as many as give each half
/// the same number of pixels, `AUTO_MIN_STEPS·(64/d)²` (a step on a larger image informs every
/// Gaussian from more pixels). On the simulations of BENCHMARKS.md ("The run length at larger
/// boxes") runs at 96 and 128 px that long resolved within 1.2% of runs of 20,000 steps against
/// the ground truth (0.4–1.2% coarser on three sets of four), in a third of the time.
pub fn auto_min_steps(d: usize) -> u64 {
    if d <= AUTO_MIN_STEPS_BOX {
        return AUTO_MIN_STEPS;
    }
    let r = AUTO_MIN_STEPS_BOX as f64 / d as f64;
    (AUTO_MIN_STEPS as f64 * r * r).round() as u64
}

/// The most Gaussians per half model at [`AUTO_MIN_STEPS_BOX`] px or less when `--gaussians` is
/// not given; see [`auto_gaussians`].
pub const AUTO_GAUSSIANS: usize = 20_000;

/// The fewest Gaussians per half model at [`AUTO_MIN_STEPS_BOX`] px or less when `--gaussians`
/// is not given; see [`auto_gaussians`].
pub const AUTO_GAUSSIANS_FEWEST: usize = 8_000;

/// Gaussians per particle of the smaller half at [`AUTO_MIN_STEPS_BOX`] px or less when
/// `--gaussians` is not given, between [`AUTO_GAUSSIANS_FEWEST`] and [`AUTO_GAUSSIANS`]; see
/// [`auto_gaussians`].
pub const AUTO_GAUSSIANS_PER_PARTICLE: usize = 2;

/// Gaussians per half model above [`AUTO_MIN_STEPS_BOX`] px when `--gaussians` is not given;
/// see [`auto_gaussians`].
pub const AUTO_GAUSSIANS_LARGER_BOX: usize = 15_000;

/// Gaussians per half model (in all the copies of a point group of order `order`) on `d` px
/// images when `--gaussians` is not given, for halves whose smaller one holds `per_half`
/// particles.
///
/// Up to [`AUTO_MIN_STEPS_BOX`] px and without a point group the count follows the data:
/// [`AUTO_GAUSSIANS_PER_PARTICLE`] per particle of the smaller half, at least
/// [`AUTO_GAUSSIANS_FEWEST`] and at most [`AUTO_GAUSSIANS`] (8,000 up to 4,000 particles per
/// half, 20,000 from 10,000). On the 64 px
/// simulations of BENCHMARKS.md ("The 64 px matrix at the tool's own Gaussian count") 20,000
/// Gaussians resolved 1.5–2.2% more finely against the ground truth than 8,000 on two of the
/// three sets of about 10,000 particles per half or more (alike on the third), alike from 4,000
/// to 7,500, and 1–6.5% more coarsely on the sets of 500 to 3,000 (where their half maps also
/// claimed more than the map holds: 5% on 1,000 particles per half), at 2.2–2.5 times the cost.
/// The counts in between (10,000 and 15,000 at 5,000 and 7,500 particles per half) resolved as
/// finely as the finer of the two or more finely on two sets, and between them on the third
/// ("The Gaussian count follows the particles"). With a point group it stays [`AUTO_GAUSSIANS`]:
/// on the C4 and D2 sets of 1,000 particles per half of "The symmetry matrix", 8,000 Gaussians
/// (the count of the same particles without symmetry, and of the same images counted once per
/// copy) were 3–10% coarser against the truth than 20,000.
///
/// Above it, [`AUTO_GAUSSIANS_LARGER_BOX`], where [`auto_min_steps`] shortens the runs. On the
/// four simulated sets at 96 and 128 px of BENCHMARKS.md ("Fewer Gaussians above 64 px"), three
/// seeds each, the shorter runs with 15,000 resolved against the ground truth within 0.2% of the
/// 20,000-step runs with 20,000 Gaussians (finer on two), where 20,000 in the shorter runs were
/// up to 0.9% coarser, and took 10–25% less time; on 10,000 particles at 128 px (25,000 steps)
/// as finely as 20,000, 22% faster. Their half maps claimed more than the map holds on the
/// preferred-view set (up to 14%); the cross-validated limit reports 6–7% coarser than the truth
/// there instead. There the count does not follow the particles: with 1,000–1,500 particles per
/// half, 8,000 Gaussians were 3.6% finer on one set and 8% coarser on another ("The Gaussian
/// count follows the particles").
pub fn auto_gaussians(d: usize, per_half: usize, order: usize) -> usize {
    match GaussianRule::of(d, order) {
        GaussianRule::LargerBox => AUTO_GAUSSIANS_LARGER_BOX,
        GaussianRule::PointGroup => AUTO_GAUSSIANS,
        GaussianRule::PerParticle => per_half.saturating_mul(AUTO_GAUSSIANS_PER_PARTICLE).clamp(AUTO_GAUSSIANS_FEWEST, AUTO_GAUSSIANS),
    }
}

/// Which rule of [`auto_gaussians`] sets the default count, on `d` px images with a point
/// group of `order` operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaussianRule {
    /// Above [`AUTO_MIN_STEPS_BOX`] px: [`AUTO_GAUSSIANS_LARGER_BOX`].
    LargerBox,
    /// Up to it, with a point group: [`AUTO_GAUSSIANS`].
    PointGroup,
    /// Up to it, without one: [`AUTO_GAUSSIANS_PER_PARTICLE`] per particle of the smaller half,
    /// within [`AUTO_GAUSSIANS_FEWEST`] and [`AUTO_GAUSSIANS`].
    PerParticle,
}

impl GaussianRule {
    pub fn of(d: usize, order: usize) -> GaussianRule {
        if d > AUTO_MIN_STEPS_BOX {
            GaussianRule::LargerBox
        } else if order > 1 {
            GaussianRule::PointGroup
        } else {
            GaussianRule::PerParticle
        }
    }
}

/// The fraction of each half's steps whose parameters are averaged into the final model when
/// `--average-tail` is not given, on `d` px images: none up to [`AUTO_MIN_STEPS_BOX`] px, where
/// the runs take at least [`AUTO_MIN_STEPS`] steps and the average was coarser on three of
/// fourteen simulated sets; [`AUTO_AVERAGE_TAIL`] beyond, where [`auto_min_steps`] shortens the
/// runs and the average was within 0.1% of the last step's model or finer on every set
/// measured (BENCHMARKS.md, "The run length at larger boxes").
pub fn auto_average_tail(d: usize) -> f64 {
    if d <= AUTO_MIN_STEPS_BOX {
        0.0
    } else {
        AUTO_AVERAGE_TAIL
    }
}

/// The fraction of the steps averaged by default above [`AUTO_MIN_STEPS_BOX`] px
/// ([`auto_average_tail`]).
pub const AUTO_AVERAGE_TAIL: f64 = 0.2;

impl ReconstructConfig {
    /// The start of a run on halves of `half_sizes` particles: `init` itself when it names one,
    /// else (`auto`) the backprojection start when the smaller half has fewer than
    /// [`AUTO_INIT_BACKPROJECTION_BELOW`] particles, the random start otherwise.
    pub fn resolve_init(&self, half_sizes: [usize; 2]) -> InitChoice {
        let per_half = half_sizes[0].min(half_sizes[1]);
        let (used, reason) = match self.init {
            InitKind::Auto if per_half < AUTO_INIT_BACKPROJECTION_BELOW => {
                (InitKind::Backprojection, format!("auto: {per_half} particles per half, fewer than {AUTO_INIT_BACKPROJECTION_BELOW}"))
            }
            InitKind::Auto => (InitKind::Random, format!("auto: {per_half} particles per half, at least {AUTO_INIT_BACKPROJECTION_BELOW}")),
            given => (given, format!("--init {}", given.name())),
        };
        InitChoice { requested: self.init, used, reason }
    }

    /// The fraction of each half's last steps averaged into its final model on `d` px images:
    /// `average_tail` when given, else [`auto_average_tail`].
    pub fn average_tail_for(&self, d: usize) -> f64 {
        self.average_tail.unwrap_or_else(|| auto_average_tail(d))
    }

    /// Gaussians per half model on `d` px images for halves of `half_sizes` particles:
    /// `gaussians` when given, else [`auto_gaussians`] of the smaller half and the point
    /// group's order.
    pub fn gaussians_for(&self, half_sizes: [usize; 2], d: usize) -> usize {
        self.gaussians.unwrap_or_else(|| auto_gaussians(d, half_sizes[0].min(half_sizes[1]), self.group_order()))
    }

    /// The order of the point group `--sym` names (1 for a name it cannot parse; the run
    /// refuses such a name before it starts).
    fn group_order(&self) -> usize {
        PointGroup::parse(&self.sym).map_or(1, |g| g.order())
    }

    /// The least optimiser steps per half of a run whose length follows the data, on `d` px
    /// images: `min_steps` when given, else [`auto_min_steps`].
    pub fn min_steps_for(&self, d: usize) -> u64 {
        self.min_steps.unwrap_or_else(|| auto_min_steps(d))
    }

    /// The number of passes for halves of `half_sizes` particles on `d` px images: `epochs`
    /// when given, else enough for [`Self::min_steps_for`] optimiser steps in the smaller half,
    /// and at least [`MIN_EPOCHS`].
    pub fn planned_epochs(&self, half_sizes: [usize; 2], d: usize) -> usize {
        match self.epochs {
            Some(n) => n,
            None => {
                let per_epoch = half_sizes.iter().map(|n| n.div_ceil(self.batch_size.max(1))).min().unwrap_or(1).max(1) as u64;
                (self.min_steps_for(d).div_ceil(per_epoch) as usize).max(MIN_EPOCHS)
            }
        }
    }
}

fn one() -> f64 {
    1.0
}

fn c1() -> String {
    "C1".into()
}

impl ReconstructConfig {
    /// The point group of `sym`, and its expansion for a model of the asymmetric unit; an
    /// unknown name is refused.
    pub fn symmetry(&self) -> Result<(PointGroup, SymmetryExpansion), ReconstructError> {
        let group = PointGroup::parse(&self.sym).map_err(|e| ReconstructError::Config(format!("--sym: {e}")))?;
        let expansion = SymmetryExpansion::new(&group);
        Ok((group, expansion))
    }

    /// Why [`Self::gaussians_for`] gives its count, in words (for the plan the run prints).
    pub fn gaussians_reason(&self, half_sizes: [usize; 2], d: usize) -> String {
        let per_half = half_sizes[0].min(half_sizes[1]);
        let Some(n) = self.gaussians else {
            return match GaussianRule::of(d, self.group_order()) {
                GaussianRule::LargerBox => format!("auto: {AUTO_GAUSSIANS_LARGER_BOX} above {AUTO_MIN_STEPS_BOX} px"),
                GaussianRule::PointGroup => format!("auto: {AUTO_GAUSSIANS} with a point group ({})", self.sym),
                GaussianRule::PerParticle => format!(
                    "auto: {AUTO_GAUSSIANS_PER_PARTICLE} per particle of the smaller half ({per_half}), from {AUTO_GAUSSIANS_FEWEST} to {AUTO_GAUSSIANS}"
                ),
            };
        };
        format!("--gaussians {n}")
    }

    /// When the model grows in a run of `epochs` passes on `d` px images of halves of
    /// `half_sizes` particles ([`Growth::before_epoch`]), and the Gaussians each half starts with: half of
    /// [`Self::gaussians_for`] (rounded up) when it grows, all of them otherwise.
    pub fn growth(&self, epochs: usize, half_sizes: [usize; 2], d: usize) -> (Option<usize>, usize) {
        let before = self.grow.before_epoch(epochs);
        let n = self.gaussians_for(half_sizes, d);
        (before, if before.is_some() { n.div_ceil(2) } else { n })
    }

    /// Gaussians in each half's asymmetric unit on `d` px images of halves of `half_sizes`
    /// particles: [`Self::gaussians_for`] divided by `|G|`, rounded up, at least 1.
    pub fn unit_gaussians(&self, order: usize, half_sizes: [usize; 2], d: usize) -> usize {
        self.gaussians_for(half_sizes, d).div_ceil(order.max(1)).max(1)
    }
}

fn tenth() -> f64 {
    0.1
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ReconstructError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{0}")]
    Config(String),
    /// The checkpoint belongs to another run.
    #[error("{}: the checkpoint was written by a run with other {what}; resume with the same data, options and --threads (only --epochs may change), or start afresh without --resume", path.display())]
    Mismatch { path: PathBuf, what: String },
    /// The half maps give no resolution (a map without signal or power); the reason says why.
    #[error("no resolution {0}")]
    NoResolution(String),
    /// Training ran away: the loss or the map stopped being meaningful.
    #[error("{0}")]
    Diverged(String),
    #[error("interrupted after {steps} steps; the checkpoint {} holds the run: continue it with --resume", checkpoint.display())]
    Interrupted { steps: u64, checkpoint: PathBuf },
}

/// The results of one epoch.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean training loss of each half over the epoch (normalised units).
    pub loss: [f64; 2],
    /// The reported resolution at FSC 0.143 and 0.5: the half-map FSC's crossings
    /// (auto-masked, phase-randomisation corrected), and after the last pass the coarser of
    /// those and what the cross-validated estimate reads ([`CrossValidatedSummary`],
    /// [`reported_with_limit`]).
    pub resolution_0143: ReportedResolution,
    pub resolution_05: ReportedResolution,
    /// After the last pass, the half-map FSC's own crossings (which the two above may be
    /// coarser than); absent for earlier passes, where they are the two above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_map_0143: Option<ReportedResolution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_map_05: Option<ReportedResolution>,
    pub seconds: f64,
    pub images_per_s: f64,
    /// Gaussians per half at the end of the epoch (of the asymmetric unit with a symmetry).
    pub gaussians: [usize; 2],
    /// Density control before this epoch, per half.
    pub density: [DensityChange; 2],
}

/// The start of the first MRC label of every map `reconstruct` writes (`map.mrc`, the half
/// maps, `map_gaussians.mrc`): how other commands tell Gaussian half maps, whose FSC alone reads
/// finer than the map holds, from others.
pub const MAP_LABEL: &str = "cryosplat reconstruct";

/// The curve the resolutions of each pass (and of `backproject`) come from.
pub const RESOLUTION_METHOD: &str = "half-map FSC, auto-masked, corrected by phase randomisation (gold standard)";

/// How the final resolution of a reconstruction is read ([`CrossValidatedSummary`]).
pub const LIMITED_RESOLUTION_METHOD: &str = "the coarser of the half-map FSC (auto-masked, corrected by phase randomisation) and its cross-validated limit (each Gaussian half map against the backprojection of the other half's images, with the same mask; beyond the shells it estimates reliably, the half-map FSC lowered by the largest excess it measured, past its last shell only where it is reliable up to that shell: otherwise a bound there)";

/// The final resolution in words: the reported figure, and when the cross-validated limit made
/// it coarser, its range within one standard error and the half maps' own claim beside it.
pub fn resolution_words(r: &EpochRecord, cv: Option<&CrossValidatedSummary>) -> String {
    match (r.half_map_0143, cv) {
        (Some(half), Some(cv)) if cv.limited && matches!(r.resolution_0143, ReportedResolution::AtLeast { .. }) => format!(
            "{} (FSC 0.143), {} (0.5): the cross-validated estimate holds to its last shell ({:.2} Å) but is reliable only to {:.2} Å, so nothing is read past the last shell; the half maps alone claim {}",
            r.resolution_0143.short(),
            r.resolution_05.short(),
            cv.last_shell_a,
            cv.reliable_shell_a,
            half.short()
        ),
        (Some(half), Some(cv)) if cv.limited && cv.limit_0143.is_none() => format!(
            "{} (FSC 0.143), {} (0.5): the cross-validated estimate holds to its last shell ({:.2} Å){}; beyond, the half-map FSC lowered by the largest excess the estimate measured over it ({:.3} in correlation with the truth) reads this, where the half maps alone claim {}",
            r.resolution_0143.short(),
            r.resolution_05.short(),
            cv.last_shell_a,
            match cv.reliable_shell < cv.last_shell {
                true => format!(", reliable to {:.2} Å", cv.reliable_shell_a),
                false => String::new(),
            },
            cv.excess,
            half.short()
        ),
        (Some(half), Some(cv)) if cv.limited && matches!(r.resolution_0143, ReportedResolution::NoCorrelation) => format!(
            "{} (FSC 0.143), {} (0.5): the cross-validated estimate (each Gaussian half map against the backprojection of the other half's images) is below FSC 0.143 from the first shell on{}; the half maps alone claim {}, which no independent image confirms: an error both Gaussian halves share, or detail no independent image can check, is not resolution",
            r.resolution_0143.short(),
            r.resolution_05.short(),
            match cv.range_0143 {
                Some(range) if range.finer != Some(ReportedResolution::NoCorrelation) => format!(" (one standard error higher it would cross {})", range.finer.map_or(format!("beyond {:.2} Å, the last shell estimated", cv.last_shell_a), |f| f.short())),
                _ => ", even one standard error higher".to_string(),
            },
            half.short()
        ),
        (Some(half), Some(cv)) if cv.limited => format!(
            "{} (FSC 0.143), {} (0.5), limited by the cross-validated estimate ({}the half maps alone claim {}, more than the other half's images confirm: an error both Gaussian halves share, or detail no independent image can check, is not resolution)",
            r.resolution_0143.short(),
            r.resolution_05.short(),
            cv.range_0143.map_or(String::new(), |range| format!("within one standard error {}; ", range.words(cv.last_shell_a))),
            half.short()
        ),
        (Some(_), Some(cv)) => format!(
            "{} (FSC 0.143), {} (0.5), the half-map FSC's; the cross-validated estimate {}",
            r.resolution_0143.short(),
            r.resolution_05.short(),
            match cv.limit_0143 {
                Some(l) => format!("reads {}", l.short()),
                None => format!("holds to its last shell ({:.2} Å)", cv.last_shell_a),
            }
        ),
        _ => format!("{} (FSC 0.143), {} (0.5), the half-map FSC's", r.resolution_0143.short(), r.resolution_05.short()),
    }
}

/// The reported resolution from the half-map FSC's `half_map` and what the cross-validated
/// estimate reads at the same threshold ([`crossval::CrossValidated::reading`]: its limit where
/// it crosses within the shells estimated, else the half maps' curve lowered by the excess it
/// measured): the coarser of the two ([`crossval::limited`]); `None` sets no limit. On the
/// simulations of BENCHMARKS.md ("Beyond the reliable estimate: the half maps lowered by their
/// excess") the reading beyond the estimate's shells was within 4% of the truth where the bound
/// at its last shell had been up to 10% coarser. A reading that is a bound at the estimate's
/// last shell ([`crossval::Reading::bound`]) stays a bound where it sets the figure.
pub fn reported_with_limit(half_map: Resolution, reading: Option<crossval::Reading>, apix: f64) -> ReportedResolution {
    match reading {
        Some(r) if crossval::limited(half_map, Some(r.resolution)) != half_map => reported_reading(r, apix),
        _ => ReportedResolution::new(half_map, apix),
    }
}

/// A reading of the cross-validated estimate as reported: [`ReportedResolution::AtLeast`] where
/// it is a bound at the estimate's last shell.
pub fn reported_reading(r: crossval::Reading, apix: f64) -> ReportedResolution {
    match r.resolution {
        Resolution::Angstrom(angstrom) if r.bound => ReportedResolution::AtLeast { angstrom },
        resolution => ReportedResolution::new(resolution, apix),
    }
}

/// The cross-validated limit of the final resolution ([`cryosplat_core::crossval`]): the
/// Gaussian half maps against the backprojections of the other half's images, which share no
/// error with them, so that an error both Gaussian halves share cannot pass for resolution.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CrossValidatedSummary {
    /// The last shell with an estimate (the backprojection's edge shells carry none) and its
    /// resolution in Å.
    pub last_shell: usize,
    pub last_shell_a: f64,
    /// Per shell from 0: the estimated FSC of the full Gaussian map against the truth.
    pub full_vs_truth: Vec<f64>,
    /// Per shell: its standard error.
    pub standard_error: Vec<f64>,
    /// Per shell: the half-map FSC equivalent to the estimate lowered by half its standard error
    /// ([`cryosplat_core::crossval::LIMIT_MARGIN_SE`]), read at 0.143 and 0.5.
    pub half_map_equivalent: Vec<f64>,
    /// Where that curve crosses 0.143 and 0.5 within the shells estimated; `None` where it
    /// stays above the threshold up to `last_shell` (then the estimate reads the curve beyond,
    /// `beyond_0143`, `beyond_05`: [`reported_with_limit`]).
    pub limit_0143: Option<ReportedResolution>,
    pub limit_05: Option<ReportedResolution>,
    /// The last shell where the estimate's standard error is within
    /// [`cryosplat_core::crossval::RELIABLE_SE_FRACTION`] of it, and its resolution in Å; the
    /// largest excess of the half maps' claim over the estimate up to it (in the full map's
    /// correlation with the truth); the curve read beyond the estimate (the half-map equivalent
    /// up to that shell, the half maps' FSC lowered by the excess after it); and where that curve
    /// crosses 0.143 and 0.5 when the estimate itself does not (`None` otherwise, or where it
    /// stays above to Nyquist). Absent in files written before it was recorded.
    #[serde(default)]
    pub reliable_shell: usize,
    #[serde(default)]
    pub reliable_shell_a: f64,
    #[serde(default)]
    pub excess: f64,
    #[serde(default)]
    pub extrapolated: Vec<f64>,
    #[serde(default)]
    pub beyond_0143: Option<ReportedResolution>,
    #[serde(default)]
    pub beyond_05: Option<ReportedResolution>,
    /// Whether what the estimate reads made the reported 0.143 resolution coarser than the
    /// half-map FSC's.
    pub limited: bool,
    /// Where `limit_0143` and `limit_05` would be with the estimate one standard error higher
    /// and lower (absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_0143: Option<LimitRangeSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_05: Option<LimitRangeSummary>,
    /// How much more each Gaussian half map agrees with the backprojection of its own half's
    /// images than with the other half's, over the upper half of the shells estimated
    /// ([`crossval::Pairing`]): the share of its own images' noise the model fitted, and the
    /// check that the estimate crossed the halves (absent in files written before it was
    /// recorded, or where the sums have no power).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing: Option<PairingSummary>,
}

/// [`crossval::Pairing`] in `run.json` (and in `fsc --cross-validate --json`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairingSummary {
    pub own_minus_cross: f64,
    pub standard_error: f64,
    pub first_shell: usize,
    pub last_shell: usize,
}

impl From<crossval::Pairing> for PairingSummary {
    fn from(p: crossval::Pairing) -> Self {
        PairingSummary {
            own_minus_cross: p.own_minus_cross,
            standard_error: p.standard_error,
            first_shell: p.first_shell,
            last_shell: p.last_shell,
        }
    }
}

/// How far a cross-validated crossing moves within one standard error of the estimate
/// ([`crossval::LimitRange`]): where the estimate plus one standard error crosses (`finer`) and
/// where the estimate minus one does (`coarser`); `None` where that curve stays above the
/// threshold up to the last shell estimated. On the simulations of BENCHMARKS.md ("The
/// cross-validated limit") the truth's crossing fell inside it on most sets.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LimitRangeSummary {
    pub finer: Option<ReportedResolution>,
    pub coarser: Option<ReportedResolution>,
}

impl LimitRangeSummary {
    /// From the crossings of [`crossval::CrossValidated::range`], for pixel size `apix`.
    pub fn new(r: crossval::LimitRange, apix: f64) -> Self {
        LimitRangeSummary {
            finer: r.finer.map(|r| ReportedResolution::new(r, apix)),
            coarser: r.coarser.map(|r| ReportedResolution::new(r, apix)),
        }
    }

    /// "from 5.30 Å to 7.02 Å", with "beyond X Å (the last shell estimated)" for an end that
    /// does not cross, and only that when neither does; "none" when even the estimate one
    /// standard error higher is below the threshold from the first shell on.
    pub fn words(&self, last_shell_a: f64) -> String {
        let beyond = format!("beyond {last_shell_a:.2} Å (the last shell estimated)");
        match (self.finer, self.coarser) {
            (None, None) => format!("{beyond} at both ends"),
            (Some(ReportedResolution::NoCorrelation), _) => {
                "none (below the threshold from the first shell on, even one standard error higher)".to_string()
            }
            (f, c) => {
                let end = |r: Option<ReportedResolution>| r.map_or(beyond.clone(), |r| r.short());
                format!("from {} to {}", end(f), end(c))
            }
        }
    }
}

/// Everything an epoch produced, for the caller's plots and report.
pub struct EpochResult<'a> {
    pub record: &'a EpochRecord,
    /// Every epoch so far, this one included.
    pub history: &'a [EpochRecord],
    pub fsc: &'a FscReport,
    /// The full map (average of the half maps; at the last epoch completed by the
    /// backprojection unless that is off, see [`completion`]), in the input images' units.
    pub map: &'a [f32],
    /// The half maps.
    pub half_maps: [&'a [f32]; 2],
    /// The half models (the unit's copies with a symmetry).
    pub models: [&'a GaussianModel; 2],
    /// After the last pass with `--average-tail`, the fraction of the steps whose averaged
    /// models make `map`, `half_maps` and `models`; 0 otherwise.
    pub averaged_tail: f64,
    /// Where the half models started, and why.
    pub start: &'a InitChoice,
    /// The point group's expansion, when the models hold an asymmetric unit.
    pub symmetry: Option<&'a SymmetryExpansion>,
    /// The low-resolution check ([`check`]), at the last epoch.
    pub check: Option<&'a check::LowResolutionCheck>,
    /// What the completion did, at the last epoch ([`completion`]).
    pub completion: Option<&'a completion::CompletionSummary>,
    /// The cross-validated limit of the resolution, at the last epoch.
    pub cross_validated: Option<&'a CrossValidatedSummary>,
    /// With `--refine`, at the last epoch: how far the particles moved.
    pub refinement: Option<&'a RefinementSummary>,
    pub d: usize,
    pub apix: f64,
    /// The output folder.
    pub out_dir: &'a Path,
}

/// The end of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// Passes made over each half (`--epochs`, or planned from `--min-steps`).
    pub epochs: usize,
    /// The fraction of each half's last steps averaged into its final model (`--average-tail`,
    /// or [`auto_average_tail`] of the box).
    pub average_tail: f64,
    pub history: Vec<EpochRecord>,
    pub box_px: usize,
    pub apix: f64,
    pub particles: [usize; 2],
    /// Each half's data scale, estimated from its own images.
    pub data_scale: [f64; 2],
    /// Where the half models started, and why.
    pub start: InitChoice,
    /// Each half's estimate of the particle's total mass (box units, its normalised data); NaN
    /// on resume.
    pub initial_mass: [f64; 2],
    /// How they were estimated (None on resume).
    pub mass_estimate: Option<[MassEstimate; 2]>,
    pub seconds: f64,
    pub warnings: Vec<String>,
    /// The Gaussian map against a backprojection of the same images at low resolution
    /// ([`check`]).
    pub low_resolution_check: Option<check::LowResolutionCheck>,
    /// What the completion of the last pass's maps did ([`completion`]; `None` when off).
    pub completion: Option<completion::CompletionSummary>,
    /// The cross-validated limit of the final resolution.
    pub cross_validated: Option<CrossValidatedSummary>,
    /// With `--refine`: how far the refined values moved from the recorded ones.
    pub refinement: Option<RefinementSummary>,
    /// Every file of the output folder (in `run.json` as text; a name that is not UTF-8 is
    /// written with replacement characters).
    #[serde(serialize_with = "crate::output::paths_as_text")]
    pub outputs: Vec<PathBuf>,
}

impl Summary {
    /// The last epoch's record.
    pub fn last(&self) -> &EpochRecord {
        self.history.last().expect("a finished run has at least one epoch")
    }
}

/// How a run is driven.
pub struct Session<'a> {
    /// Continue from the output folder's `checkpoint.ckpt`.
    pub resume: bool,
    /// The caller's description of the run for `run.json`'s `settings` (command line, input
    /// files); the library adds the configuration as `settings.config`.
    pub settings: serde_json::Value,
    pub progress: &'a dyn Progress,
    /// Checked between steps (Ctrl-C): the run checkpoints and stops.
    pub stop: &'a AtomicBool,
}

/// Called after every epoch's maps, FSC and model files are written; returns the files it
/// wrote into the output folder (figures, a report), which are listed among the outputs.
pub type OnEpoch<'a> = dyn FnMut(&EpochResult) -> Result<Vec<PathBuf>, ReconstructError> + Send + 'a;

/// Run a reconstruction of `set`: train both halves, and after every epoch write the maps,
/// `fsc.csv`, the Gaussian files, `run.json` and a checkpoint into `out` and call `on_epoch`.
/// Files the caller wrote into `out` before (a log) are listed among the outputs when it
/// recorded them.
pub fn reconstruct(
    set: &ParticleSet,
    cfg: &ReconstructConfig,
    out: &mut OutputDir,
    session: &Session,
    on_epoch: &mut OnEpoch,
) -> Result<Summary, ReconstructError> {
    set.require_poses()?;
    if !cfg.no_ctf {
        set.require_ctf()?;
    }
    if cfg.gaussians == Some(0) || cfg.epochs == Some(0) || cfg.batch_size == 0 {
        return Err(ReconstructError::Config("--gaussians, --epochs and --batch-size must be positive".into()));
    }
    if !(cfg.lr > 0.0
        && cfg.lr.is_finite()
        && cfg.lr_decay > 0.0
        && cfg.lr_decay.is_finite()
        && cfg.lr_gamma > 0.0
        && cfg.lr_gamma.is_finite())
    {
        return Err(ReconstructError::Config("--lr, --lr-decay and --lr-gamma must be positive".into()));
    }
    if let Some(f) = cfg.average_tail.filter(|f| !(*f >= 0.0 && *f < 1.0)) {
        return Err(ReconstructError::Config(format!(
            "--average-tail {f}: expected a fraction of the steps from 0 up to (not including) 1"
        )));
    }
    if !(cfg.n_sigma >= 1.0 && cfg.n_sigma.is_finite()) {
        return Err(ReconstructError::Config(format!("--n-sigma {}: expected a footprint of at least 1 standard deviation", cfg.n_sigma)));
    }
    if set.len() < 2 {
        return Err(ReconstructError::Config("a gold-standard reconstruction needs at least 2 particles".into()));
    }
    cfg.symmetry()?;
    let threads = if cfg.threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { cfg.threads };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| ReconstructError::Config(e.to_string()))?;
    let d = working_box(cfg.downsample, set.box_px).map_err(ReconstructError::Config)?;
    // `auto` is resolved once, here: the run, its record and its checkpoint see the start and
    // the number of Gaussians used.
    let sizes = set.half_sizes();
    let start = cfg.resolve_init(sizes);
    tracing::info!("start: {start}");
    let cfg = &ReconstructConfig { init: start.used, gaussians: Some(cfg.gaussians_for(sizes, d)), ..cfg.clone() };
    pool.install(|| {
        let mut driver = Driver::new(set, cfg, session, d, threads, out, start)?;
        driver.run(on_epoch)
    })
}

/// The start a run of `set` with `cfg` uses ([`ReconstructConfig::resolve_init`] on the sizes
/// of the halves `set` is split into).
pub fn init_choice(set: &ParticleSet, cfg: &ReconstructConfig) -> InitChoice {
    cfg.resolve_init(set.half_sizes())
}

/// What a run of `set` with `cfg` will do, decided before it starts: its start, its passes and
/// when its model grows (what the library itself resolves, for the terminal and the log).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub start: InitChoice,
    /// Passes over each half's particles.
    pub epochs: usize,
    /// The pass (1-based) before which the model grows, if it does ([`Growth`]).
    pub grow_before: Option<usize>,
    /// Gaussians per half model at the start and at the end of the run (before density control).
    pub gaussians: [usize; 2],
    /// Why that many, in words ([`ReconstructConfig::gaussians_reason`]).
    pub gaussians_reason: String,
    /// The fraction of each half's last steps averaged into its final model.
    pub average_tail: f64,
}

/// The plan of a run of `set` with `cfg`.
pub fn plan(set: &ParticleSet, cfg: &ReconstructConfig) -> Result<Plan, ReconstructError> {
    let sizes = set.half_sizes();
    let start = cfg.resolve_init(sizes);
    let d = working_box(cfg.downsample, set.box_px).map_err(ReconstructError::Config)?;
    let epochs = ReconstructConfig { init: start.used, ..cfg.clone() }.planned_epochs(sizes, d);
    let (grow_before, first) = cfg.growth(epochs, sizes, d);
    Ok(Plan {
        start,
        epochs,
        grow_before,
        gaussians: [first, if grow_before.is_some() { 2 * first } else { first }],
        gaussians_reason: cfg.gaussians_reason(sizes, d),
        average_tail: cfg.average_tail_for(d),
    })
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} per half; ", self.epochs, if self.epochs == 1 { "pass" } else { "passes" })?;
        match self.grow_before {
            Some(e) => write!(
                f,
                "{} Gaussians per half, each split in two before pass {e} ({} from there on; {})",
                self.gaussians[0], self.gaussians[1], self.gaussians_reason
            ),
            None => write!(f, "{} Gaussians per half ({})", self.gaussians[0], self.gaussians_reason),
        }?;
        if self.average_tail > 0.0 {
            write!(f, "; the final model averaged over the last {}% of each half's steps", (self.average_tail * 100.0).round())?;
        }
        Ok(())
    }
}

/// Where the loop stands: the next step is number `pos` of `half`'s pass `epoch`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cursor {
    epoch: usize,
    half: usize,
    pos: usize,
}

/// Sums over the epoch in progress.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    loss: [f64; 2],
    images: usize,
    seconds: f64,
    density: [DensityChange; 2],
}

/// One step's images, CTFs and poses.
struct Batch {
    images: Vec<Vec<f32>>,
    ctfs: Vec<Vec<f32>>,
    /// The CTFs' derivatives in defocus (filled only while defocus is refined).
    dctfs: Vec<Vec<f32>>,
    poses: Vec<Pose>,
    /// The particles of the batch.
    ids: Vec<usize>,
    len: usize,
}

impl Batch {
    fn new(size: usize, d: usize, ctf_len: usize) -> Self {
        Batch {
            images: (0..size).map(|_| vec![0.0f32; d * d]).collect(),
            ctfs: (0..size).map(|_| vec![1.0f32; ctf_len]).collect(),
            dctfs: (0..size).map(|_| vec![0.0f32; ctf_len]).collect(),
            poses: vec![Pose::default(); size],
            ids: vec![0; size],
            len: 0,
        }
    }
}

/// A coarse box of coarse-to-fine training ([`CoarseToFine`]) and what its steps need.
struct Coarse {
    d: usize,
    apix: f64,
    /// Steps use this box until this fraction of the half's planned steps is taken.
    until: f64,
    /// The model's blur and the images' low-pass (box units).
    blur_box: f64,
    grid: CtfGrid,
    renderer: Renderer,
    batch: Batch,
    /// Every particle's image at this box, scaled ([`Images::coarse`]).
    images: Vec<f32>,
}

/// How far per-particle refinement moved each particle from its recorded values.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RefinementSummary {
    /// Angle of each particle's rotation correction (°), length of its origin correction (Å)
    /// and its defocus correction (Å), in the input's particle order (not in run.json).
    #[serde(skip)]
    pub angle_deg: Vec<f64>,
    #[serde(skip)]
    pub shift_a: Vec<f64>,
    #[serde(skip)]
    pub defocus_a: Vec<f64>,
    /// rms, median and largest magnitude of each.
    pub angle_deg_stats: ChangeStats,
    pub shift_a_stats: ChangeStats,
    pub defocus_a_stats: ChangeStats,
    /// The refined STAR file.
    #[serde(serialize_with = "crate::output::path_as_text")]
    pub star: PathBuf,
    /// The refined values in the input's own formats, beside the STAR file:
    /// `particles_refined.cs` for a cryoSPARC input, `poses_refined.pkl` and
    /// `ctf_refined.pkl` when cryoDRGN pickles gave the poses or the CTF (rows in the order of
    /// the STAR file).
    #[serde(serialize_with = "crate::output::paths_as_text")]
    pub native: Vec<PathBuf>,
    /// Each half's prior widths at the end: rotation per rotation-vector component (°), origin
    /// per axis (Å), defocus (Å) (estimated from the data with `--refine-prior estimate`).
    pub prior_widths: [[f64; 3]; 2],
}

/// Summary statistics of the magnitudes of one kind of correction.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct ChangeStats {
    pub rms: f64,
    pub median: f64,
    pub max: f64,
}

impl ChangeStats {
    fn of(v: &[f64]) -> Self {
        let mut a: Vec<f64> = v.iter().map(|x| x.abs()).collect();
        a.sort_by(f64::total_cmp);
        let n = a.len().max(1) as f64;
        ChangeStats {
            rms: (a.iter().map(|x| x * x).sum::<f64>() / n).sqrt(),
            median: a.get(a.len() / 2).copied().unwrap_or(0.0),
            max: a.last().copied().unwrap_or(0.0),
        }
    }
}

/// The state of a run between steps.
struct Driver<'a> {
    set: &'a ParticleSet,
    cfg: &'a ReconstructConfig,
    session: &'a Session<'a>,
    d: usize,
    apix: f64,
    /// Passes planned.
    epochs: usize,
    halves: [Vec<usize>; 2],
    images: Images<'a>,
    grid: CtfGrid,
    trainers: [HalfTrainer; 2],
    renderer: Renderer,
    batch: Batch,
    scratch: ReadScratch,
    tally: Tally,
    history: Vec<EpochRecord>,
    data_scale: [f64; 2],
    /// Where the halves started, and why.
    start: InitChoice,
    fingerprint: Fingerprint,
    /// The halves, as `run.json` records them.
    half_split: crate::dataset::HalfSplitRecord,
    ckpt_path: PathBuf,
    out: &'a mut OutputDir,
    at: Cursor,
    /// Steps taken by this process (for `max_steps`).
    taken: u64,
    clock: Instant,
    started: Instant,
    warnings: Vec<String>,
    mass_estimate: Option<[MassEstimate; 2]>,
    start_map_mass: [f64; 2],
    /// The low-resolution check of the last epoch's map (`None` before it).
    check: Option<check::LowResolutionCheck>,
    /// What the completion of the last epoch's maps did (`None` before it, or when off).
    completion: Option<completion::CompletionSummary>,
    /// The cross-validated limit of the last epoch's resolution (`None` before it).
    cross_validated: Option<CrossValidatedSummary>,
    /// Each half's per-particle corrections (with `--refine`), indexed by the particle's
    /// position in its half ([`Driver::slot`]).
    refine: [Option<ParticleRefinement>; 2],
    /// Each particle's position in its half's list.
    slot: Vec<usize>,
    /// With `--refine`, at the last epoch: the refined STAR's summary.
    refinement: Option<RefinementSummary>,
    /// Coarse-to-fine training's boxes, by increasing size (empty: every step at `d`).
    coarse: Vec<Coarse>,
    /// When the model grows (`--grow`), if it does.
    grow: Option<GrowAt>,
    /// Every particle's CTF on the working box's half plane (`grid.len()` values each), when
    /// the images are in memory, the CTFs fit beside them in `--cache-gib` and no refinement
    /// changes them: a step then copies its CTF instead of evaluating one sine per frequency.
    ctf_cache: Option<Vec<f32>>,
}

/// Every particle's CTF on `grid`, particle after particle ([`CtfGrid::fill_rfft`]).
fn ctf_table(set: &ParticleSet, grid: &CtfGrid) -> Vec<f32> {
    use rayon::prelude::*;
    let n = grid.len();
    let mut table = vec![0.0f32; set.len() * n];
    table.par_chunks_mut(n).zip(&set.particles).for_each(|(out, p)| grid.fill_rfft(&p.ctf, out));
    table
}

/// The sum of a map's values in f64.
fn map_mass(map: &[f32]) -> f64 {
    map.iter().map(|&v| v as f64).sum()
}

/// A map keeping less than this fraction of its start's mass has collapsed.
const COLLAPSED_MASS_FRACTION: f64 = 0.01;

/// How many steps ahead the images of a set read from disk are requested (see
/// [`Images::prefetch`]): a step at 128–256 px takes milliseconds, a read from disk a fraction
/// of one, so a few steps hide it.
const PREFETCH_STEPS: usize = 4;

/// Where a run starts: from scratch or from its checkpoint.
struct Start {
    trainers: [HalfTrainer; 2],
    data_scale: [f64; 2],
    history: Vec<EpochRecord>,
    tally: Tally,
    at: Cursor,
    mass_estimate: Option<[MassEstimate; 2]>,
    notes: Vec<String>,
    start_map_mass: [f64; 2],
    refine: Option<[RefineState; 2]>,
}

impl<'a> Driver<'a> {
    /// A fresh run, or one restored from the checkpoint with `session.resume`.
    fn new(
        set: &'a ParticleSet,
        cfg: &'a ReconstructConfig,
        session: &'a Session<'a>,
        d: usize,
        threads: usize,
        out: &'a mut OutputDir,
        start_choice: InitChoice,
    ) -> Result<Self, ReconstructError> {
        let started = Instant::now();
        let apix = set.apix * set.box_px as f64 / d as f64;
        let (idx_a, idx_b) = set.half_split(cfg.seed);
        let half_split = set.half_split_record([&idx_a, &idx_b]);
        let sizes = [idx_a.len(), idx_b.len()];
        let epochs = cfg.planned_epochs(sizes, d);
        cfg.density.validate(epochs).map_err(ReconstructError::Config)?;
        let stages = cfg.coarse_to_fine.stages(d, cfg.refine.is_some()).map_err(ReconstructError::Config)?;
        let grid = CtfGrid::new(d, apix);
        let ckpt_path = out.path("checkpoint.ckpt");
        let fingerprint = fingerprint(set, cfg, d, threads);
        if session.resume {
            // The earlier process's files stay part of the run.
            for f in crate::output::RESULT_FILES {
                if out.path(f).exists() {
                    out.record(out.path(f));
                }
            }
        }
        let mut images = Images::new(set, d);
        let mut warnings = Vec::new();
        let budget = cfg.cache_gib * (1u64 << 30) as f64;
        let ctf_bytes = (set.len() * grid.len() * 4) as f64;
        let ctf_cache = (images.bytes() + ctf_bytes < budget && cfg.refine.is_none() && !cfg.no_ctf).then(|| ctf_table(set, &grid));
        if images.bytes() < budget {
            images.fill_cache(session.progress)?;
        } else {
            let gib = images.bytes() / (1u64 << 30) as f64;
            warnings.push(format!("images ({gib:.1} GiB) are read from disk at every step (more than --cache-gib)"));
        }
        check_outliers(&images, session.progress)?;
        let (group, expansion) = cfg.symmetry()?;
        // A growing model starts with half the Gaussians (of the unit, with a point group).
        let (grow_before, start_gaussians) = cfg.growth(epochs, sizes, d);
        let start_cfg = ReconstructConfig { gaussians: Some(start_gaussians), ..cfg.clone() };
        let grow = grow_before.map(|before_epoch| GrowAt { before_epoch, start_count: start_cfg.unit_gaussians(group.order(), sizes, d) });
        let mut start = if session.resume {
            restore(&ckpt_path, &fingerprint, cfg, epochs)?
        } else if group.is_trivial() {
            start_fresh(&images, [&idx_a, &idx_b], apix, &grid, &start_cfg)?
        } else {
            // The asymmetric unit: a |G|-th of the Gaussians and of the mass, drawn as a C1
            // start is, so that the copies fill the same volume with the same total mass. (The
            // mass estimate's fallback blob fit then uses the unit's count of Gaussians too.)
            let order = group.order();
            let unit_cfg = ReconstructConfig {
                gaussians: Some(start_cfg.unit_gaussians(order, sizes, d)),
                init_mass_fraction: cfg.init_mass_fraction / order as f64,
                ..cfg.clone()
            };
            let mut s = start_fresh(&images, [&idx_a, &idx_b], apix, &grid, &unit_cfg)?;
            s.start_map_mass = [0, 1].map(|h| {
                let mut t = s.trainers[h].clone();
                t.set_symmetry(Some(expansion.clone()));
                map_mass(&voxelize_model(&t.full_model(), d))
            });
            s
        };
        if !group.is_trivial() {
            for t in start.trainers.iter_mut() {
                t.set_symmetry(Some(expansion.clone()));
            }
        }
        images.set_scales(per_particle(set.len(), [&idx_a, &idx_b], start.data_scale));
        // The coarse copies are of the scaled images: one data scale at every size.
        let mut coarse = Vec::with_capacity(stages.len());
        for st in &stages {
            let (cd, capix) = (st.box_px, apix * d as f64 / st.box_px as f64);
            let blur_box = COARSE_BLUR_PX / cd as f64;
            let grid = CtfGrid::new(cd, capix);
            coarse.push(Coarse {
                images: images.coarse(cd, blur_box, session.progress)?,
                renderer: Renderer::new(cd, RenderOptions { n_sigma: cfg.n_sigma, threads }),
                batch: Batch::new(cfg.batch_size, cd, grid.len()),
                grid,
                d: cd,
                apix: capix,
                until: st.until,
                blur_box,
            });
        }
        let mut slot = vec![0usize; set.len()];
        for idx in [&idx_a, &idx_b] {
            for (j, &i) in idx.iter().enumerate() {
                slot[i] = j;
            }
        }
        let refine: [Option<ParticleRefinement>; 2] = match (&cfg.refine, start.refine.take()) {
            (None, _) => [None, None],
            (Some(rc), None) => {
                [Some(ParticleRefinement::new(rc.clone(), idx_a.len())), Some(ParticleRefinement::new(rc.clone(), idx_b.len()))]
            }
            (Some(rc), Some([a, b])) => {
                let bad = || {
                    ReconstructError::Config(format!(
                        "{}: the checkpoint's refinement state does not fit this set; start afresh without --resume",
                        ckpt_path.display()
                    ))
                };
                [
                    Some(ParticleRefinement::restore(rc.clone(), a).ok_or_else(bad)?),
                    Some(ParticleRefinement::restore(rc.clone(), b).ok_or_else(bad)?),
                ]
            }
        };
        if let Some(rc) = &cfg.refine {
            if cfg.no_ctf {
                return Err(ReconstructError::Config(
                    "--refine needs the CTF (its steps use the CTF's curvatures); it cannot be used with --no-ctf".into(),
                ));
            }
            for (name, v) in [
                ("--refine-prior-deg", rc.prior_rot_deg),
                ("--refine-prior-shift", rc.prior_shift_a),
                ("--refine-prior-defocus", rc.prior_defocus_a),
            ] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(ReconstructError::Config(format!("{name} {v}: expected a positive number")));
                }
            }
            if rc.start_epoch >= epochs {
                return Err(ReconstructError::Config(format!(
                    "--refine-from-pass {}: the run makes only {epochs} passes, so nothing would be refined",
                    rc.start_epoch + 1
                )));
            }
        }
        warnings.extend(start.notes);
        Ok(Driver {
            set,
            cfg,
            session,
            d,
            apix,
            epochs,
            halves: [idx_a, idx_b],
            renderer: Renderer::new(d, RenderOptions { n_sigma: cfg.n_sigma, threads }),
            batch: Batch::new(cfg.batch_size, d, grid.len()),
            grid,
            trainers: start.trainers,
            scratch: images.scratch(),
            images,
            tally: start.tally,
            history: start.history,
            data_scale: start.data_scale,
            start: start_choice,
            fingerprint,
            half_split,
            ckpt_path,
            out,
            at: start.at,
            taken: 0,
            clock: Instant::now(),
            started,
            warnings,
            mass_estimate: start.mass_estimate,
            start_map_mass: start.start_map_mass,
            check: None,
            completion: None,
            cross_validated: None,
            refine,
            slot,
            refinement: None,
            coarse,
            grow,
            ctf_cache,
        })
    }

    /// Train from the cursor to the last epoch.
    fn run(&mut self, on_epoch: &mut OnEpoch) -> Result<Summary, ReconstructError> {
        while self.at.epoch < self.epochs {
            while self.at.half < 2 {
                self.train_half()?;
            }
            self.end_epoch(on_epoch)?;
        }
        self.out.record(self.ckpt_path.clone());
        let summary = Summary {
            epochs: self.epochs,
            average_tail: self.cfg.average_tail_for(self.d),
            history: self.history.clone(),
            box_px: self.d,
            apix: self.apix,
            particles: [self.halves[0].len(), self.halves[1].len()],
            data_scale: self.data_scale,
            start: self.start.clone(),
            initial_mass: self.mass_estimate.as_ref().map_or([f64::NAN; 2], |e| [e[0].total, e[1].total]),
            mass_estimate: self.mass_estimate.clone(),
            seconds: self.started.elapsed().as_secs_f64(),
            warnings: self.warnings.clone(),
            low_resolution_check: self.check.clone(),
            completion: self.completion.clone(),
            cross_validated: self.cross_validated.clone(),
            refinement: self.refinement.clone(),
            outputs: self.out.written().to_vec(),
        };
        self.write_run_json(Some(&summary))?;
        Ok(summary)
    }

    /// The rest of the current half's pass, from the cursor.
    fn train_half(&mut self) -> Result<(), ReconstructError> {
        let (cfg, Cursor { epoch, half, pos: start }) = (self.cfg, self.at);
        if start == 0 {
            if half == 0 {
                self.tally = Tally::default();
            }
            if let Some(r) = self.refine[half].as_mut() {
                r.begin_pass();
            }
            // Hooks (density control) before this half's pass, from the previous pass's statistics.
            let n_before = self.trainers[half].model.len();
            let hooks = ModelHooks { density: &cfg.density, grow: self.grow };
            let change = self.trainers[half].begin_epoch(&hooks, epoch, self.d, &mut Stream::Density { epoch, half }.rng(cfg.seed));
            if change.split + change.pruned > 0 {
                let h = ["A", "B"][half];
                tracing::info!("half {h}: split {}, pruned {}: {n_before} → {} Gaussians", change.split, change.pruned, change.after);
            }
            self.tally.density[half] = change;
        }
        let mut order = self.halves[half].clone();
        Stream::VisitOrder { epoch, half }.rng(cfg.seed).shuffle(&mut order);
        let steps = self.steps_per_epoch(half);
        let progress = self.session.progress;
        progress.start(&format!("epoch {}/{} {}", epoch + 1, self.epochs, ["A", "B"][half]), steps as u64);
        progress.inc(start as u64);
        let (mut running, mut running_n, t_half) = (0.0f64, 0usize, Instant::now());
        let keep_stats = cfg.density.wants_stats();
        let tail_from = self.tail_from(half);
        for s in start..steps {
            if self.session.stop.load(Ordering::Relaxed) || cfg.max_steps.is_some_and(|m| self.taken >= m) {
                self.at.pos = s;
                self.save_checkpoint()?;
                progress.finish();
                let steps = self.trainers[0].steps + self.trainers[1].steps;
                return Err(ReconstructError::Interrupted { steps, checkpoint: self.ckpt_path.clone() });
            }
            let indices = &order[s * cfg.batch_size..((s + 1) * cfg.batch_size).min(order.len())];
            // Images read from disk: ask for those of a later step now, so the disk works while
            // this step computes (a no-op when the images are in memory).
            let ahead = (s + PREFETCH_STEPS) * cfg.batch_size;
            for &pi in &order[ahead.min(order.len())..(ahead + cfg.batch_size).min(order.len())] {
                self.images.prefetch(pi);
            }
            let level = self.level(half, steps as u64);
            self.fill_batch(indices, half, epoch, level)?;
            let lr = cfg.lr_schedule.lr(cfg.lr, cfg.lr_decay, cfg.lr_gamma, self.trainers[half].steps, steps as u64, self.epochs);
            let loss = self.step(half, epoch, lr, keep_stats, level);
            if !loss.is_finite() {
                // The model is lost; the last checkpoint (before this step) stays as it was.
                progress.finish();
                return Err(ReconstructError::Diverged(format!(
                    "the loss became {loss} at epoch {}, half {}, step {} (particle {}, 1-based): training diverged; use a lower --lr (now {}), or check that particle's image",
                    epoch + 1,
                    ["A", "B"][half],
                    s + 1,
                    indices[0] + 1,
                    cfg.lr
                )));
            }
            if let Some(from) = tail_from {
                if self.trainers[half].steps > from {
                    self.trainers[half].add_to_tail(from);
                }
            }
            self.taken += 1;
            running += loss as f64;
            running_n += 1;
            self.tally.loss[half] += loss as f64 * indices.len() as f64;
            self.tally.images += indices.len();
            progress.inc(1);
            if running_n == 50 {
                let rate = (s + 1 - start) as f64 * cfg.batch_size as f64 / t_half.elapsed().as_secs_f64();
                progress.message(&format!("loss {:.4}  {:.0} img/s", running / running_n as f64, rate));
                (running, running_n) = (0.0, 0);
            }
            if cfg.checkpoint_every > 0 && self.trainers[half].steps.is_multiple_of(cfg.checkpoint_every as u64) {
                self.at.pos = s + 1;
                self.save_checkpoint()?;
            }
        }
        progress.finish();
        self.at = Cursor { epoch, half: half + 1, pos: 0 };
        // Checkpoint at the end of half A's pass; half B's ends the epoch, which checkpoints.
        if half == 0 {
            self.save_checkpoint()?;
        }
        Ok(())
    }

    /// The coarse box (index into `coarse`) of `half`'s next step, from the fraction of its
    /// planned steps (`steps_per_epoch` per pass) taken; `None`: the working box.
    fn level(&self, half: usize, steps_per_epoch: u64) -> Option<usize> {
        let planned = (steps_per_epoch * self.epochs as u64).max(1);
        let done = self.trainers[half].steps as f64 / planned as f64;
        self.coarse.iter().position(|c| done < c.until)
    }

    /// Read the images, CTFs and poses of particles `indices` of `half` into the batch of
    /// `level` (a coarse box, or the working box with `None`), with their refined corrections
    /// when there are any (and the CTFs' derivatives in defocus, whose path also gives every
    /// correction's curvature, while refinement is active in `epoch`; refinement is refused
    /// without a CTF, and coarse boxes with refinement).
    fn fill_batch(&mut self, indices: &[usize], half: usize, epoch: usize, level: Option<usize>) -> Result<(), ReconstructError> {
        if let Some(l) = level {
            let c = &mut self.coarse[l];
            let m = c.d * c.d;
            for (k, &pi) in indices.iter().enumerate() {
                c.batch.images[k].copy_from_slice(&c.images[pi * m..(pi + 1) * m]);
                let p = &self.set.particles[pi];
                c.batch.poses[k] = p.pose;
                c.batch.ids[k] = pi;
                if !self.cfg.no_ctf {
                    c.grid.fill_rfft(&p.ctf, &mut c.batch.ctfs[k]);
                }
            }
            c.batch.len = indices.len();
            return Ok(());
        }
        let refine = self.refine[half].as_ref();
        let with_dctf = refine.is_some_and(|r| r.active(epoch));
        for (k, &pi) in indices.iter().enumerate() {
            self.images.read(pi, &mut self.batch.images[k], &mut self.scratch)?;
            let p = &self.set.particles[pi];
            let (pose, ctf) = match refine {
                Some(r) => (r.pose(self.slot[pi], &p.pose), r.ctf(self.slot[pi], &p.ctf)),
                None => (p.pose, p.ctf),
            };
            self.batch.poses[k] = pose;
            self.batch.ids[k] = pi;
            // The table exists only without refinement, whose CTFs change per particle.
            if let Some(table) = &self.ctf_cache {
                let n = self.grid.len();
                self.batch.ctfs[k].copy_from_slice(&table[pi * n..(pi + 1) * n]);
            } else if with_dctf {
                self.grid.fill_rfft_with_ddefocus(&ctf, &mut self.batch.ctfs[k], &mut self.batch.dctfs[k]);
            } else if !self.cfg.no_ctf {
                self.grid.fill_rfft(&ctf, &mut self.batch.ctfs[k]);
            }
        }
        self.batch.len = indices.len();
        Ok(())
    }

    /// One optimiser step of `half` on the batch of `level` (see [`Driver::fill_batch`]); with
    /// refinement active in `epoch`, each image's corrections take a step too, from the same
    /// rendering.
    fn step(&mut self, half: usize, epoch: usize, lr: f64, keep_stats: bool, level: Option<usize>) -> f32 {
        let (b, renderer, apix, blur_box) = match level {
            Some(l) => {
                let c = &mut self.coarse[l];
                (&c.batch, &mut c.renderer, c.apix, c.blur_box as f32)
            }
            None => (&self.batch, &mut self.renderer, self.apix, 0.0),
        };
        let no_ctf = self.cfg.no_ctf;
        let ctf = |k: usize| if no_ctf { &[][..] } else { &b.ctfs[k][..] };
        let target = |k: usize| ImageTarget { image: &b.images[k], ctf_rfft: ctf(k), pose: &b.poses[k], apix };
        // Refinement has no coarse boxes (refused together), so an active one is at `d`.
        let active = self.refine[half].as_ref().filter(|r| r.active(epoch));
        let trainer = &mut self.trainers[half];
        trainer.set_blur(blur_box);
        // The defocus path also measures the curvatures every correction's step needs.
        let loss = match (b.len, active.is_some()) {
            // One image per step (the default) allocates nothing.
            (1, false) => trainer.step(renderer, &[target(0)], lr, keep_stats),
            (1, true) => trainer.step_with_defocus(renderer, &[target(0)], &[&b.dctfs[0][..]], lr, keep_stats),
            (n, false) => {
                let targets: Vec<ImageTarget> = (0..n).map(target).collect();
                trainer.step(renderer, &targets, lr, keep_stats)
            }
            (n, true) => {
                let targets: Vec<ImageTarget> = (0..n).map(target).collect();
                let dctfs: Vec<&[f32]> = (0..n).map(|k| &b.dctfs[k][..]).collect();
                trainer.step_with_defocus(renderer, &targets, &dctfs, lr, keep_stats)
            }
        };
        if active.is_some() {
            // The noise variance per pixel: the last pass's mean loss of this half (the model
            // then fits the signal; the data are normalised, so 1 before any pass).
            let noise_var = self.history.last().map_or(1.0, |h| h.loss[half]).max(1e-12);
            // The rotations' lever arm, from the model at the pass's first refining step (kept
            // in checkpoints, so deterministic on resume); the asymmetric unit's equals its
            // copies', so no expansion is needed.
            let (model, d) = (&self.trainers[half].model, self.d);
            let r = self.refine[half].as_mut().expect("active refinement");
            let radius2_a2 = r.lever_arm_a2(|| model.mean_square_radius_a2(d, apix));
            for (&pi, st) in b.ids[..b.len].iter().zip(renderer.last_stats()) {
                r.update(self.slot[pi], &self.set.particles[pi].pose, st, d, noise_var, radius2_a2);
            }
        }
        loss
    }

    /// Optimiser steps in one of `half`'s passes.
    fn steps_per_epoch(&self, half: usize) -> usize {
        self.halves[half].len().div_ceil(self.cfg.batch_size)
    }

    /// With `--average-tail`, the optimiser step of `half` after which its tail window starts:
    /// the last `average_tail` of its planned steps.
    fn tail_from(&self, half: usize) -> Option<u64> {
        let f = self.cfg.average_tail_for(self.d);
        (f > 0.0).then(|| {
            let total = (self.epochs * self.steps_per_epoch(half)) as u64;
            total - ((f * total as f64).round() as u64).clamp(1, total.max(1))
        })
    }

    /// Maps, FSC and outputs at the end of an epoch; the caller's hook; a checkpoint.
    fn end_epoch(&mut self, on_epoch: &mut OnEpoch) -> Result<(), ReconstructError> {
        let (d, apix, epoch) = (self.d, self.apix, self.at.epoch);
        let progress = self.session.progress;
        progress.start("maps and FSC", 1);
        let last = epoch + 1 == self.epochs;
        // With a symmetry, the maps and files are of the unit's copies. After the last pass,
        // with `--average-tail`, every map and file is of the averaged models: the half maps are
        // the halves of map.mrc. Averaging takes noise out of both halves but not the error they
        // share, so their FSC claims more than the last step's did; the cross-validated estimate
        // below, of these same halves, limits what is reported (BENCHMARKS.md, "The half maps of
        // the averaged models").
        let from = [0, 1].map(|h| if last { self.tail_from(h) } else { None });
        let trainers = &self.trainers;
        let mut averaged = [0, 1].map(|h| from[h].and_then(|f| trainers[h].tail_full_model(f)));
        let any_averaged = averaged.iter().any(Option::is_some);
        let full = [0, 1].map(|h| averaged[h].take().map_or_else(|| trainers[h].full_model(), Cow::Owned));
        let [mut map_a, mut map_b] = [0, 1].map(|h| voxelize_model(&full[h], d));
        for (h, m) in [&map_a, &map_b].into_iter().enumerate() {
            let (now, start) = (map_mass(m), self.start_map_mass[h]);
            if !(now.is_finite() && now > COLLAPSED_MASS_FRACTION * start) {
                progress.finish();
                return Err(ReconstructError::Diverged(format!(
                    "after epoch {}, half {}'s map keeps {:.2e} of its starting mass: training diverged (the Gaussians vanished or left the box); use a lower --lr (now {})",
                    epoch + 1,
                    ["A", "B"][h],
                    now / start,
                    self.cfg.lr
                )));
            }
        }
        // Maps in the input's units: each model fits its half's images multiplied by that half's
        // data scale.
        let data_scale = self.data_scale;
        let unscale = |m: &mut [f32], h: usize| {
            let u = (1.0 / data_scale[h]) as f32;
            m.iter_mut().for_each(|v| *v *= u);
        };
        unscale(&mut map_a, 0);
        unscale(&mut map_b, 1);
        let (half_a, half_b) = (&map_a, &map_b);
        let threads = match self.renderer.options().threads {
            0 => rayon::current_num_threads(),
            t => t,
        };
        let (group, _) = self.cfg.symmetry()?;
        let halves = [&self.halves[0][..], &self.halves[1][..]];
        let refined = if last { self.refined_particles() } else { None };
        let particles = check::Particles { apix, no_ctf: self.cfg.no_ctf, refined: refined.as_deref() };
        let gaussian: Vec<f32> = map_a.iter().zip(&map_b).map(|(a, b)| 0.5 * (a + b)).collect();
        let fsc = gold_standard(half_a, half_b, d, apix, MaskChoice::Auto, self.cfg.seed);
        // Degenerate half maps, or shells without power before a crossing, give no resolution.
        let no_res = |e: NoResolution| ReconstructError::NoResolution(format!("after epoch {}: {e}", epoch + 1));
        let (r0143, r05) = (fsc.try_resolution(0.143).map_err(no_res)?, fsc.try_resolution(0.5).map_err(no_res)?);
        self.tally.seconds += self.clock.elapsed().as_secs_f64();
        let t = self.tally;
        let mut record = EpochRecord {
            epoch: epoch + 1,
            loss: [t.loss[0] / self.halves[0].len() as f64, t.loss[1] / self.halves[1].len() as f64],
            resolution_0143: ReportedResolution::new(r0143, apix),
            resolution_05: ReportedResolution::new(r05, apix),
            half_map_0143: None,
            half_map_05: None,
            seconds: t.seconds,
            images_per_s: t.images as f64 / t.seconds,
            gaussians: [self.trainers[0].model.len(), self.trainers[1].model.len()],
            density: t.density,
        };
        let mut completed = None;
        if last && self.cfg.completion {
            // The last pass's map is completed by the backprojection (module `completion`),
            // after the pass's time is taken.
            progress.finish();
            progress.start("completion (backprojection of each half)", 1);
            let c = completion::complete(&self.images, halves, &particles, [&map_a, &map_b], &group, threads, check::check_box(d))?;
            self.completion = Some(c.summary.clone());
            self.out.write_map("map_gaussians.mrc", &gaussian, d, apix, &format!("{MAP_LABEL}, the Gaussian map alone"))?;
            completed = Some(c);
            progress.finish();
            progress.start("maps and FSC", 1);
        }
        // After the last pass, the resolution is limited by the cross-validated estimate, from
        // backprojections of each half at the full box (the completion's when it worked there).
        // The estimate is of the delivered Gaussian map, made from the averaged models with
        // `--average-tail`: padded 2× like the check's, on a 128 px set it read 2.90 Å against
        // the truth's 2.84 Å, where the last step's halves read 3.13 Å and a backprojection
        // padded 1× 3.02 Å (BENCHMARKS.md, "The cross-validated limit").
        let cd = check::check_box(d);
        let mut own_bp = None;
        if last {
            progress.finish();
            progress.start("cross-validated resolution (backprojection of each half)", 1);
            // At the check's box the backprojection serves the check too; above it only the half
            // maps are made.
            let larger;
            let bp: [&[f32]; 2] = match &completed {
                Some(c) if cd == d => [&c.backprojection[0], &c.backprojection[1]],
                _ if cd == d => {
                    let bp = own_bp.insert(check::backproject_halves(&self.images, halves, &particles, &group, threads, d)?);
                    [&bp[0], &bp[1]]
                }
                _ => {
                    larger = check::backproject_half_maps(&self.images, halves, &particles, &group, threads, d)?;
                    [&larger[0], &larger[1]]
                }
            };
            // The halves of the delivered Gaussian map (with `--average-tail`, the averaged
            // models'): the estimate is of that map's correlation with the truth.
            let cv = crossval::cross_validated([&map_a, &map_b], bp, d, check::last_usable_shell(d), fsc.mask.as_deref(), Some(&group));
            if let Some(warning) = cv.pairing.as_ref().and_then(|p| swapped_pairing_warning(p, d, apix)) {
                tracing::warn!("{warning}");
            }
            let (l0143, l05) = (cv.limit(0.143, d, apix), cv.limit(0.5, d, apix));
            let half_curve = fsc.final_curve();
            let [read0143, read05] = [0.143, 0.5].map(|t| cv.reading(half_curve, t, d, apix));
            let [final0143, final05] = [(r0143, read0143), (r05, read05)].map(|(r, l)| reported_with_limit(r, l, apix));
            record.half_map_0143 = Some(record.resolution_0143);
            record.half_map_05 = Some(record.resolution_05);
            record.resolution_0143 = final0143;
            record.resolution_05 = final05;
            let [range_0143, range_05] = [0.143, 0.5].map(|t| LimitRangeSummary::new(cv.range(t, d, apix), apix));
            self.cross_validated = Some(CrossValidatedSummary {
                last_shell: cv.last_shell,
                last_shell_a: cv.last_shell_a(d, apix),
                reliable_shell: cv.reliable_shell(),
                reliable_shell_a: cv.reliable_shell_a(d, apix),
                excess: cv.excess(half_curve),
                extrapolated: cv.extrapolated(half_curve),
                beyond_0143: cv.beyond(half_curve, 0.143, d, apix).map(|r| reported_reading(r, apix)),
                beyond_05: cv.beyond(half_curve, 0.5, d, apix).map(|r| reported_reading(r, apix)),
                full_vs_truth: cv.full_vs_truth,
                standard_error: cv.standard_error,
                half_map_equivalent: cv.half_map_equivalent,
                limit_0143: l0143.map(|r| ReportedResolution::new(r, apix)),
                limit_05: l05.map(|r| ReportedResolution::new(r, apix)),
                limited: final0143 != ReportedResolution::new(r0143, apix),
                range_0143: Some(range_0143),
                range_05: Some(range_05),
                pairing: cv.pairing.map(PairingSummary::from),
            });
            progress.finish();
            progress.start("maps and FSC", 1);
        }
        let map = completed.as_ref().map_or(&gaussian, |c| &c.map);
        let maps = Maps { full: map, half_a, half_b, d, apix };
        let sym = match self.trainers[0].symmetry() {
            Some(e) => format!(", symmetry {}", e.name()),
            None => String::new(),
        };
        self.out.write_maps(&maps, &format!("{MAP_LABEL}, epoch {}{sym}", epoch + 1))?;
        self.out.write_fsc(&fsc)?;
        self.out.write_gaussians([&full[0], &full[1]], d, apix)?;
        self.history.push(record.clone());
        progress.finish();
        if last {
            progress.start("low-resolution check (backprojection)", 1);
            // Judged at a box of at most `check::MAX_BOX`, the completion's: the Gaussian map
            // (whose half maps give the reported resolution) is cropped like the images.
            let own;
            let bp = match (&completed, &own_bp) {
                (Some(c), _) => &c.backprojection,
                (None, Some(full)) => full,
                (None, _) => {
                    own = check::backproject_halves(&self.images, halves, &particles, &group, threads, cd)?;
                    &own
                }
            };
            let cropped = (cd < d).then(|| resample_volume(&gaussian, d, cd));
            let c = check::judge(cropped.as_deref().unwrap_or(&gaussian), bp, cd, apix * d as f64 / cd as f64);
            if let Some(w) = c.warning(self.start.used) {
                tracing::warn!("{w}");
                self.warnings.push(w);
            }
            self.check = Some(c);
            progress.finish();
            self.refinement = write_refined(&self.refine, &self.halves, self.set, self.out)?;
        }
        let result = EpochResult {
            record: &record,
            history: &self.history,
            fsc: &fsc,
            map,
            half_maps: [half_a, half_b],
            averaged_tail: if any_averaged { self.cfg.average_tail_for(d) } else { 0.0 },
            models: [&full[0], &full[1]],
            start: &self.start,
            symmetry: self.trainers[0].symmetry(),
            check: self.check.as_ref(),
            completion: self.completion.as_ref(),
            cross_validated: self.cross_validated.as_ref(),
            refinement: self.refinement.as_ref(),
            d,
            apix,
            out_dir: self.out.dir(),
        };
        for f in on_epoch(&result)? {
            self.out.record(f);
        }
        self.write_run_json(None)?;
        self.at = Cursor { epoch: epoch + 1, half: 0, pos: 0 };
        self.tally = Tally { density: self.tally.density, ..Tally::default() };
        self.clock = Instant::now();
        self.save_checkpoint()
    }

    /// Write the checkpoint for the cursor (time spent so far is added to the tally).
    fn save_checkpoint(&mut self) -> Result<(), ReconstructError> {
        self.tally.seconds += self.clock.elapsed().as_secs_f64();
        self.clock = Instant::now();
        let meta = CheckpointMeta {
            fingerprint: self.fingerprint.clone(),
            seed: self.cfg.seed,
            epoch: self.at.epoch,
            half: self.at.half,
            pos: self.at.pos,
            steps: [self.trainers[0].steps, self.trainers[1].steps],
            history: serde_json::to_value(&self.history).expect("history serialises"),
            data_scale: self.data_scale,
            epoch_loss: self.tally.loss,
            epoch_images: self.tally.images,
            epoch_seconds: self.tally.seconds,
            density: self.tally.density,
            start_map_mass: self.start_map_mass,
            refine: match &self.refine {
                [Some(a), Some(b)] => Some([a.state(), b.state()]),
                _ => None,
            },
        };
        checkpoint::save(&self.ckpt_path, &meta, &self.trainers)?;
        Ok(())
    }

    /// With `--refine`, every particle's refined pose and CTF (indexed like the set's
    /// particles); `None` without refinement.
    fn refined_particles(&self) -> Option<Vec<(Pose, CtfParams)>> {
        let [Some(ra), Some(rb)] = &self.refine else { return None };
        let mut out: Vec<(Pose, CtfParams)> = self.set.particles.iter().map(|p| (p.pose, p.ctf)).collect();
        for (r, idx) in [(ra, &self.halves[0]), (rb, &self.halves[1])] {
            for (j, &i) in idx.iter().enumerate() {
                let p = &self.set.particles[i];
                out[i] = (r.pose(j, &p.pose), r.ctf(j, &p.ctf));
            }
        }
        Some(out)
    }

    /// `run.json`: settings, history, the last resolutions, and at the end the summary.
    fn write_run_json(&mut self, summary: Option<&Summary>) -> Result<(), ReconstructError> {
        let mut settings = self.session.settings.clone();
        if let Some(m) = settings.as_object_mut() {
            m.insert("config".into(), serde_json::to_value(self.cfg).expect("config serialises"));
            m.insert("start".into(), serde_json::to_value(&self.start).expect("start serialises"));
        }
        let last = self.history.last();
        let run = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "finished": summary.is_some(),
            "resolution_0143": last.and_then(|r| r.resolution_0143.angstrom()),
            "resolution_05": last.and_then(|r| r.resolution_05.angstrom()),
            // What the two are: a crossing, a bound (at Nyquist) or no correlation, as in
            // `fsc --json`.
            "resolution_details": last.map(|r| serde_json::json!({"resolution_0143": r.resolution_0143, "resolution_05": r.resolution_05})),
            "resolution_method": if last.is_some_and(|r| r.half_map_0143.is_some()) { LIMITED_RESOLUTION_METHOD } else { RESOLUTION_METHOD },
            "cross_validated": self.cross_validated,
            "symmetry": self.cfg.symmetry().map(|(g, _)| g.name().to_string()).unwrap_or_else(|_| self.cfg.sym.clone()),
            "low_resolution_check": self.check,
            "completion": self.completion,
            "half_split": self.half_split,
            "settings": settings,
            "history": self.history,
            "summary": summary,
        });
        self.out.write_run_json(&run)?;
        Ok(())
    }
}

/// With `--refine`: `particles_refined.star` (every particle with its refined pose, origin
/// and defocus, everything else as read), the same values in the input's own formats (see
/// [`RefinementSummary::native`]) and the size of the corrections.
fn write_refined(
    refine: &[Option<ParticleRefinement>; 2],
    halves: &[Vec<usize>; 2],
    set: &ParticleSet,
    out: &mut OutputDir,
) -> Result<Option<RefinementSummary>, ReconstructError> {
    let [Some(ra), Some(rb)] = refine else { return Ok(None) };
    let mut particles = set.particles.clone();
    let (mut angle_deg, mut shift_a, mut defocus_a) = (vec![0.0; particles.len()], vec![0.0; particles.len()], vec![0.0; particles.len()]);
    for (r, idx) in [(ra, &halves[0]), (rb, &halves[1])] {
        for (j, &i) in idx.iter().enumerate() {
            let p = &mut particles[i];
            let (w, o, z) = r.correction(j);
            angle_deg[i] = (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt().to_degrees();
            shift_a[i] = o[0].hypot(o[1]);
            defocus_a[i] = z;
            p.pose = r.pose(j, &p.pose);
            p.ctf = r.ctf(j, &p.ctf);
        }
    }
    let star = out.path("particles_refined.star");
    set.write_star_updated(&star, &particles)?;
    out.record(star.clone());
    let mut native = Vec::new();
    if set.kind == SourceKind::CryoSparc {
        let cs = out.path("particles_refined.cs");
        set.write_cs_updated(&cs, &particles)?;
        native.push(cs);
    }
    if set.pose_pickle.is_some() {
        let p = out.path("poses_refined.pkl");
        set.write_pose_pickle(&p, &particles)?;
        native.push(p);
    }
    if set.ctf_pickle.is_some() {
        let p = out.path("ctf_refined.pkl");
        set.write_ctf_pickle(&p, &particles)?;
        native.push(p);
    }
    for p in &native {
        out.record(p.clone());
    }
    Ok(Some(RefinementSummary {
        angle_deg_stats: ChangeStats::of(&angle_deg),
        shift_a_stats: ChangeStats::of(&shift_a),
        defocus_a_stats: ChangeStats::of(&defocus_a),
        angle_deg,
        shift_a,
        defocus_a,
        star,
        native,
        prior_widths: [ra.prior_widths(), rb.prior_widths()],
    }))
}

/// Refuse images far outside the others (corrupt pixels), naming them.
fn check_outliers(images: &Images, progress: &dyn Progress) -> Result<(), ReconstructError> {
    let bad = images.outliers(progress)?;
    if bad.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = bad.iter().take(10).map(|i| (i + 1).to_string()).collect();
    Err(ReconstructError::Config(format!(
        "{}: {} image(s) lie far outside the others (a standard deviation over 10 times, or a pixel over 200 times, the median image's standard deviation): particle(s) {}{} (1-based, in the input's order); such values are corrupt data and would ruin the map: remove them (--subset) or repair the stack",
        images.set.source.display(),
        bad.len(),
        list.join(", "),
        if bad.len() > 10 { ", …" } else { "" }
    )))
}

/// Particle `i`'s factor: its half's scale.
fn per_particle(n: usize, halves: [&[usize]; 2], scale: [f64; 2]) -> Vec<f32> {
    let mut s = vec![1.0f32; n];
    for (h, idx) in halves.iter().enumerate() {
        for &i in idx.iter() {
            s[i] = scale[h] as f32;
        }
    }
    s
}

/// Each half's data scale and mass from its own images `halves[h]` (read unscaled from
/// `images`), and both random starts.
fn start_fresh(
    images: &Images,
    halves: [&[usize]; 2],
    apix: f64,
    grid: &CtfGrid,
    cfg: &ReconstructConfig,
) -> Result<Start, ReconstructError> {
    let mut data_scale = [1.0; 2];
    let mut est = Vec::with_capacity(2);
    for (h, idx) in halves.iter().enumerate() {
        data_scale[h] = start::estimate_scale(images, idx, h, cfg.seed)?;
        let mut scaled = Images::new(images.set, images.d);
        scaled.set_scales(vec![data_scale[h] as f32; images.set.len()]);
        let e = start::estimate_mass(&scaled, idx, h, apix, grid, cfg)?;
        tracing::info!(
            "half {}: total mass {:.4e} from the images' integrals (±{:.1}%), {:.4e} from a least-squares blob fit; using {:.4e}",
            ["A", "B"][h],
            e.from_integrals,
            100.0 * e.integral_rel_error,
            e.from_fit,
            e.total
        );
        est.push(e);
    }
    let est: [MassEstimate; 2] = est.try_into().expect("two halves");
    let sizes = halves.map(<[usize]>::len);
    let adam = AdamConfig { lr: cfg.lr, ..Default::default() };
    // `random_init(n, t)` gives each Gaussian t/(2n): a total of t/2.
    let start_half = |half: usize| -> Result<HalfTrainer, ReconstructError> {
        let t = 2.0 * cfg.init_mass_fraction * est[half].total;
        let mut rng = Stream::InitialModel { half }.rng(cfg.seed);
        let model = match cfg.init {
            InitKind::Random => GaussianModel::random_init(cfg.gaussians_for(sizes, images.d), t, &mut rng),
            InitKind::Auto => unreachable!("--init auto is resolved before the run starts"),
            InitKind::Backprojection => {
                // With a point group, every image is inserted at each operator's view: the
                // unit's centres are drawn from the symmetric map, and their copies fill it.
                let (group, _) = cfg.symmetry()?;
                let (map, map_d) = start::half_backprojection(images, halves[half], apix, cfg.no_ctf, &group)?;
                GaussianModel::sample_from_map(&map, map_d, cfg.gaussians_for(sizes, images.d), t, INIT_SCALE, &mut rng).ok_or_else(|| {
                    ReconstructError::Config(format!(
                        "{}: half {}'s backprojection has no positive density to start from; check the contrast (--invert) or use --init random",
                        images.set.source.display(),
                        ["A", "B"][half]
                    ))
                })?
            }
        };
        Ok(HalfTrainer::new(model, adam.clone()))
    };
    // The halves start independently (each its own images and random stream), so they start
    // at once: the backprojection start's insertion runs on one thread per half.
    let (a, b) = rayon::join(|| start_half(0), || start_half(1));
    let trainers = [a?, b?];
    let start_map_mass = [0, 1].map(|h| map_mass(&voxelize_model(&trainers[h].model, images.d)));
    Ok(Start {
        trainers,
        data_scale,
        history: Vec::new(),
        tally: Tally::default(),
        at: Cursor { epoch: 0, half: 0, pos: 0 },
        notes: est.iter().enumerate().filter_map(|(h, e)| e.warning.as_ref().map(|w| format!("half {}: {w}", ["A", "B"][h]))).collect(),
        mass_estimate: Some(est),
        start_map_mass,
        refine: None,
    })
}

/// Everything from the checkpoint `path`, which must carry `fingerprint`.
fn restore(path: &Path, fingerprint: &Fingerprint, cfg: &ReconstructConfig, epochs: usize) -> Result<Start, ReconstructError> {
    if !path.exists() {
        return Err(ReconstructError::Config(format!(
            "--resume: there is no checkpoint {} (nothing to resume); start without --resume",
            path.display()
        )));
    }
    let ck = checkpoint::load(path, &AdamConfig { lr: cfg.lr, ..Default::default() })?;
    let what = fingerprint::difference(&ck.meta.fingerprint, fingerprint);
    if !what.is_empty() {
        return Err(ReconstructError::Mismatch { path: path.to_path_buf(), what });
    }
    let m = ck.meta;
    if m.epoch > epochs || (m.epoch == epochs && (m.half, m.pos) != (0, 0)) {
        return Err(ReconstructError::Config(format!(
            "{}: the run has done {} of its epochs already; resume with --epochs {} or more",
            path.display(),
            m.epoch,
            m.epoch.max(1)
        )));
    }
    let history = serde_json::from_value(m.history)
        .map_err(|e| FormatError::invalid(path, format!("the checkpoint's history cannot be read ({e}); start afresh without --resume")))?;
    let msg = format!("resumed from {} at epoch {}, half {}, step {}", path.display(), m.epoch + 1, ["A", "B"][m.half], m.pos);
    tracing::info!("{msg}");
    Ok(Start {
        trainers: ck.halves,
        data_scale: m.data_scale,
        history,
        tally: Tally { loss: m.epoch_loss, images: m.epoch_images, seconds: m.epoch_seconds, density: m.density },
        at: Cursor { epoch: m.epoch, half: m.half, pos: m.pos },
        mass_estimate: None,
        notes: vec![msg],
        start_map_mass: m.start_map_mass,
        refine: m.refine,
    })
}

/// The warning for model halves that agree with the other half's backprojection more than with
/// their own (`pairing`, on a `d` px box at `apix` Å), or `None` when they pair as they should.
/// The halves were then crossed wrongly, or the models fitted no noise and chance reads as such
/// (never seen on the simulated sets, BENCHMARKS.md "Backprojections given in the wrong order");
/// the estimate is not to be trusted.
fn swapped_pairing_warning(pairing: &crossval::Pairing, d: usize, apix: f64) -> Option<String> {
    pairing.looks_swapped().then(|| {
        format!(
            "the Gaussian half maps agree with the other half's backprojection more than with their own ({:.3} ± {:.3} in FSC beyond {:.2} Å): the cross-validated estimate may count shared noise as signal; please report this run",
            -pairing.own_minus_cross,
            pairing.standard_error,
            pairing.first_shell_a(d, apix)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_that_pair_with_the_other_backprojection_are_warned_about() {
        let pairing = |own_minus_cross| crossval::Pairing { own_minus_cross, standard_error: 0.01, first_shell: 16, last_shell: 32 };
        // As every simulated run pairs (own half's backprojection agreeing more): no warning.
        assert_eq!(swapped_pairing_warning(&pairing(0.2), 64, 2.0), None);
        // Within the noise either way: no warning.
        assert_eq!(swapped_pairing_warning(&pairing(-0.03), 64, 2.0), None);
        // Crossed by more than four standard errors: the warning, with the figures it rests on.
        let warning = swapped_pairing_warning(&pairing(-0.2), 64, 2.0).expect("crossed halves are warned about");
        assert!(warning.contains("more than with their own (0.200 ± 0.010 in FSC beyond 8.00 Å)"), "{warning}");
        assert!(warning.contains("please report this run"), "{warning}");
    }

    #[test]
    fn the_plan_reads_in_words() {
        let start = InitChoice { requested: InitKind::Random, used: InitKind::Random, reason: "asked for".into() };
        let plan = |epochs, grow_before, average_tail| Plan {
            start: start.clone(),
            epochs,
            grow_before,
            gaussians: [100, 200],
            gaussians_reason: "why".into(),
            average_tail,
        };
        assert_eq!(
            plan(1, None, 0.2).to_string(),
            "1 pass per half; 100 Gaussians per half (why); the final model averaged over the last 20% of each half's steps"
        );
        assert_eq!(
            plan(5, Some(3), 0.0).to_string(),
            "5 passes per half; 100 Gaussians per half, each split in two before pass 3 (200 from there on; why)"
        );
        let auto = ReconstructConfig::default();
        assert_eq!(auto.gaussians_reason([1_001, 1_000], 64), "auto: 2 per particle of the smaller half (1000), from 8000 to 20000");
        assert_eq!(auto.gaussians_reason([1_001, 1_000], 96), "auto: 15000 above 64 px");
        assert_eq!(
            ReconstructConfig { sym: "D2".into(), ..auto.clone() }.gaussians_reason([1_001, 1_000], 64),
            "auto: 20000 with a point group (D2)"
        );
        assert_eq!(ReconstructConfig { gaussians: Some(7), ..auto }.gaussians_reason([1_001, 1_000], 64), "--gaussians 7");
    }

    #[test]
    fn coarse_to_fine_stages_are_parsed_and_checked() {
        let st = |l: &[(usize, f64)]| l.iter().map(|&(box_px, until)| CoarseStage { box_px, until }).collect::<Vec<_>>();
        assert_eq!(CoarseToFine::parse("off"), Ok(CoarseToFine::Off));
        assert_eq!(CoarseToFine::parse("auto"), Ok(CoarseToFine::Auto));
        assert_eq!(CoarseToFine::parse("32:0.25, 64:0.5"), Ok(CoarseToFine::Stages(st(&[(32, 0.25), (64, 0.5)]))));
        for bad in ["", "32", "32:x", "x:0.5", "on"] {
            assert!(CoarseToFine::parse(bad).unwrap_err().contains("--coarse-to-fine"), "{bad}");
        }
        // auto: d/4 and d/2, even, at least 16 px; none with refinement.
        assert_eq!(CoarseToFine::Auto.stages(128, false), Ok(st(&[(32, 0.25), (64, 0.5)])));
        assert_eq!(CoarseToFine::Auto.stages(100, false), Ok(st(&[(24, 0.25), (50, 0.5)])));
        assert_eq!(CoarseToFine::Auto.stages(48, false), Ok(st(&[(24, 0.5)])));
        assert_eq!(CoarseToFine::Auto.stages(24, false), Ok(vec![]));
        assert_eq!(CoarseToFine::Auto.stages(128, true), Ok(vec![]));
        assert_eq!(CoarseToFine::Off.stages(128, false), Ok(vec![]));
        let check = |l: &[(usize, f64)], d: usize| CoarseToFine::Stages(st(l)).stages(d, false);
        assert!(check(&[(32, 0.3), (64, 0.6)], 128).is_ok());
        for (bad, why) in [
            (&[(33, 0.3)][..], "even"),
            (&[(8, 0.3)][..], "at least 16"),
            (&[(128, 0.3)][..], "below the 128 px"),
            (&[(64, 0.3), (32, 0.6)][..], "increasing"),
            (&[(32, 0.6), (64, 0.3)][..], "increasing"),
            (&[(32, 0.0)][..], "(0, 1]"),
            (&[(32, 1.5)][..], "(0, 1]"),
        ] {
            let e = check(bad, 128).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(CoarseToFine::Stages(st(&[(32, 0.3)])).stages(128, true).unwrap_err().contains("--refine"));
    }

    #[test]
    fn auto_starts_small_halves_from_the_backprojection() {
        let n = AUTO_INIT_BACKPROJECTION_BELOW;
        let auto = ReconstructConfig { init: InitKind::Auto, ..Default::default() };
        let bp = auto.resolve_init([500, 500]);
        assert_eq!(bp.requested, InitKind::Auto);
        assert_eq!(bp.used, InitKind::Backprojection);
        assert_eq!(bp.to_string(), format!("backprojection (auto: 500 particles per half, fewer than {n})"));
        // The smaller half decides, and the threshold itself starts from the blob.
        assert_eq!(auto.resolve_init([n - 1, n + 10]).used, InitKind::Backprojection);
        assert_eq!(auto.resolve_init([n + 10, n - 1]).used, InitKind::Backprojection);
        let random = auto.resolve_init([n, n]);
        assert_eq!(random.used, InitKind::Random);
        assert_eq!(random.to_string(), format!("random (auto: {n} particles per half, at least {n})"));
        // A named start is used as given, whatever the size.
        for (kind, name) in [(InitKind::Random, "random"), (InitKind::Backprojection, "backprojection")] {
            let cfg = ReconstructConfig { init: kind, ..Default::default() };
            for halves in [[10, 10], [n, n], [100 * n, 100 * n]] {
                let c = cfg.resolve_init(halves);
                assert_eq!((c.requested, c.used), (kind, kind));
                assert_eq!(c.to_string(), format!("{name} (--init {name})"));
            }
        }
        // The record: the option's names, and the choice as run.json holds it.
        assert_eq!(serde_json::to_value(InitKind::Auto).unwrap(), "auto");
        assert_eq!(
            serde_json::to_value(&bp).unwrap(),
            serde_json::json!({"requested": "auto", "used": "backprojection", "reason": format!("auto: 500 particles per half, fewer than {n}")})
        );
    }

    #[test]
    fn the_run_length_follows_the_data_unless_forced() {
        let auto = ReconstructConfig::default();
        assert_eq!(auto.planned_epochs([500, 520], 64), 40);
        assert_eq!(auto.planned_epochs([10_000, 10_000], 64), MIN_EPOCHS);
        assert_eq!(ReconstructConfig { batch_size: 4, ..auto.clone() }.planned_epochs([500, 500], 48), 160);
        assert_eq!(ReconstructConfig { epochs: Some(3), ..auto.clone() }.planned_epochs([500, 500], 64), 3);
        assert_eq!(ReconstructConfig { min_steps: Some(0), ..auto.clone() }.planned_epochs([7, 7], 64), MIN_EPOCHS);
        // Larger boxes: as many pixels per half as 20,000 steps at 64 px.
        assert_eq!([32, 64, 96, 128, 256].map(auto_min_steps), [20_000, 20_000, 8_889, 5_000, 1_250]);
        assert_eq!(auto.planned_epochs([1_000, 1_000], 128), MIN_EPOCHS);
        assert_eq!(auto.planned_epochs([400, 400], 96), 23);
        // A given count holds at any box.
        assert_eq!(ReconstructConfig { min_steps: Some(20_000), ..auto.clone() }.planned_epochs([1_000, 1_000], 128), 20);
        // Where the runs are shortened, the last fifth of the steps is averaged; a given
        // fraction holds at any box.
        assert_eq!([32, 64, 65, 96, 128, 256].map(|d| auto.average_tail_for(d)), [0.0, 0.0, 0.2, 0.2, 0.2, 0.2]);
        let given = ReconstructConfig { average_tail: Some(0.1), ..auto.clone() };
        assert_eq!([64, 128].map(|d| given.average_tail_for(d)), [0.1, 0.1]);
        assert_eq!(ReconstructConfig { average_tail: Some(0.0), ..auto.clone() }.average_tail_for(128), 0.0);
        // Where the runs are shortened the model is smaller; a given count holds at any box,
        // and a growing model or a point group starts from the count of its box.
        let many = [20_000, 20_000];
        assert_eq!([32, 64, 65, 96, 128, 256].map(|d| auto.gaussians_for(many, d)), [20_000, 20_000, 15_000, 15_000, 15_000, 15_000]);
        // Up to 64 px the count follows the smaller half: two per particle from 8,000 to 20,000.
        let per_half = [1, 500, 4_000, 4_001, 5_000, 7_500, 10_000, 300_000];
        assert_eq!(per_half.map(|n| auto.gaussians_for([n + 7, n], 64)), [8_000, 8_000, 8_000, 8_002, 10_000, 15_000, 20_000, 20_000]);
        assert_eq!(per_half.map(|n| auto.gaussians_for([n, n], 96)), [15_000; 8]);
        let given = ReconstructConfig { gaussians: Some(8_000), ..auto.clone() };
        assert_eq!([64, 128].map(|d| given.gaussians_for(many, d)), [8_000, 8_000]);
        assert_eq!(given.gaussians_for([20, 20], 64), 8_000);
        let grows = ReconstructConfig { grow: Growth::Auto, ..auto.clone() };
        assert_eq!((grows.growth(5, many, 64), grows.growth(5, many, 128)), ((Some(3), 10_000), (Some(3), 7_500)));
        assert_eq!(grows.growth(5, [3_000, 3_100], 64), (Some(3), 4_000));
        assert_eq!((auto.unit_gaussians(4, many, 64), auto.unit_gaussians(4, many, 128)), (5_000, 3_750));
        assert_eq!(auto.unit_gaussians(4, [1_000, 1_000], 64), 2_000);
        // With a point group the count stays 20,000 up to 64 px (15,000 above).
        let c4 = ReconstructConfig { sym: "C4".into(), ..auto.clone() };
        assert_eq!([500, 1_000, 20_000].map(|n| c4.gaussians_for([n, n], 64)), [20_000; 3]);
        assert_eq!((c4.unit_gaussians(4, [1_000, 1_000], 64), c4.gaussians_for([1_000, 1_000], 96)), (5_000, 15_000));
    }

    #[test]
    fn the_reported_resolution_is_the_coarser_of_the_half_maps_and_the_reading() {
        let apix = 2.0;
        let at = |a| Resolution::Angstrom(a);
        let crossing = |a| ReportedResolution::Crossing { angstrom: a };
        // No reading (the curve stays above the threshold to Nyquist): the half maps' figure.
        assert_eq!(reported_with_limit(at(4.2), None, apix), crossing(4.2));
        assert_eq!(reported_with_limit(Resolution::Nyquist, None, apix), ReportedResolution::new(Resolution::Nyquist, apix));
        assert_eq!(reported_with_limit(Resolution::NoCorrelation, None, apix), ReportedResolution::NoCorrelation);
        // A reading: the coarser of the two.
        let read = |a, bound| Some(crossval::Reading { resolution: at(a), bound });
        assert_eq!(reported_with_limit(at(4.2), read(5.0, false), apix), crossing(5.0));
        assert_eq!(reported_with_limit(at(6.0), read(5.0, false), apix), crossing(6.0));
        assert_eq!(reported_with_limit(Resolution::Nyquist, read(4.5, false), apix), crossing(4.5));
        // A reading that is a bound at the estimate's last shell stays a bound where it sets the
        // figure, and gives way to coarser half maps.
        let at_least = |a| ReportedResolution::AtLeast { angstrom: a };
        assert_eq!(reported_with_limit(at(4.2), read(5.0, true), apix), at_least(5.0));
        assert_eq!(reported_with_limit(Resolution::Nyquist, read(4.86, true), apix), at_least(4.86));
        assert_eq!(reported_with_limit(at(6.0), read(5.0, true), apix), crossing(6.0));
    }

    #[test]
    fn a_figure_read_beyond_the_estimate_says_so() {
        let record: EpochRecord = serde_json::from_value(serde_json::json!({
            "epoch": 5, "loss": [1.0, 1.0], "seconds": 1.0, "images_per_s": 1.0, "gaussians": [10, 10],
            "density": [{"split": 0, "pruned": 0, "after": 10}, {"split": 0, "pruned": 0, "after": 10}],
            "resolution_0143": {"kind": "crossing", "angstrom": 4.47},
            "resolution_05": {"kind": "crossing", "angstrom": 7.12},
            "half_map_0143": {"kind": "at_nyquist", "angstrom": 4.4},
        }))
        .unwrap();
        let summary = |reliable_shell: usize| -> CrossValidatedSummary {
            serde_json::from_value(serde_json::json!({
                "last_shell": 29, "last_shell_a": 4.86, "reliable_shell": reliable_shell,
                "reliable_shell_a": 141.0 / reliable_shell as f64, "excess": 0.097,
                "full_vs_truth": [], "standard_error": [], "half_map_equivalent": [],
                "limit_0143": null, "limit_05": null, "limited": true,
                "beyond_0143": {"kind": "crossing", "angstrom": 4.47},
            }))
            .unwrap()
        };
        let words = resolution_words(&record, Some(&summary(29)));
        assert!(words.starts_with("4.47 Å (FSC 0.143), 7.12 Å (0.5): the cross-validated estimate holds to its last shell (4.86 Å); beyond, the half-map FSC lowered by the largest excess the estimate measured over it (0.097 in correlation with the truth) reads this, where the half maps alone claim at Nyquist"), "{words}");
        let words = resolution_words(&record, Some(&summary(25)));
        assert!(words.contains("holds to its last shell (4.86 Å), reliable to 5.64 Å; beyond"), "{words}");
        // A bound at the last shell (the estimate not reliable up to it) says so.
        let bound = EpochRecord { resolution_0143: ReportedResolution::AtLeast { angstrom: 4.86 }, ..record.clone() };
        let words = resolution_words(&bound, Some(&summary(25)));
        assert!(
            words.starts_with("at least 4.86 Å (FSC 0.143), 7.12 Å (0.5): the cross-validated estimate holds to its last shell (4.86 Å) but is reliable only to 5.64 Å, so nothing is read past the last shell; the half maps alone claim at Nyquist"),
            "{words}"
        );
    }

    #[test]
    fn a_run_whose_estimate_confirms_no_shell_says_so() {
        // The half maps agree to 33.56 Å, the estimate is below 0.143 from the first shell on:
        // the figure is none, and the words say why, with no range of two "none"s.
        let record: EpochRecord = serde_json::from_value(serde_json::json!({
            "epoch": 5, "loss": [1.0, 1.0], "seconds": 1.0, "images_per_s": 1.0, "gaussians": [10, 10],
            "density": [{"split": 0, "pruned": 0, "after": 10}, {"split": 0, "pruned": 0, "after": 10}],
            "resolution_0143": {"kind": "no_correlation"},
            "resolution_05": {"kind": "no_correlation"},
            "half_map_0143": {"kind": "crossing", "angstrom": 33.56},
        }))
        .unwrap();
        let summary = |finer: serde_json::Value| -> CrossValidatedSummary {
            serde_json::from_value(serde_json::json!({
                "last_shell": 29, "last_shell_a": 4.33, "full_vs_truth": [], "standard_error": [], "half_map_equivalent": [],
                "limit_0143": {"kind": "no_correlation"}, "limit_05": {"kind": "no_correlation"}, "limited": true,
                "range_0143": {"finer": finer, "coarser": {"kind": "no_correlation"}},
            }))
            .unwrap()
        };
        let words = resolution_words(&record, Some(&summary(serde_json::json!({"kind": "no_correlation"}))));
        assert!(
            words.starts_with("none (FSC 0.143), none (0.5): the cross-validated estimate (each Gaussian half map against the backprojection of the other half's images) is below FSC 0.143 from the first shell on, even one standard error higher; the half maps alone claim 33.56 Å, which no independent image confirms"),
            "{words}"
        );
        assert!(!words.contains("from none to none"), "{words}");
        let words = resolution_words(&record, Some(&summary(serde_json::json!({"kind": "crossing", "angstrom": 61.2}))));
        assert!(
            words.contains("from the first shell on (one standard error higher it would cross 61.20 Å); the half maps alone claim 33.56 Å"),
            "{words}"
        );
    }

    #[test]
    fn the_limit_range_in_words() {
        let at = |a| Some(ReportedResolution::Crossing { angstrom: a });
        let r = |finer, coarser| LimitRangeSummary { finer, coarser };
        assert_eq!(r(at(5.3), at(7.02)).words(4.86), "from 5.30 Å to 7.02 Å");
        assert_eq!(r(None, at(6.34)).words(4.86), "from beyond 4.86 Å (the last shell estimated) to 6.34 Å");
        assert_eq!(r(None, None).words(4.86), "beyond 4.86 Å (the last shell estimated) at both ends");
        let none = Some(ReportedResolution::NoCorrelation);
        assert_eq!(r(none, none).words(4.86), "none (below the threshold from the first shell on, even one standard error higher)");
        assert_eq!(r(at(61.2), none).words(4.86), "from 61.20 Å to none");
    }

    #[test]
    fn the_model_grows_after_two_fifths_of_the_passes() {
        let at = |e| Growth::Auto.before_epoch(e);
        assert_eq!([1, 2, 3, 5, 14, 15, 40].map(at), [None, Some(2), Some(2), Some(3), Some(7), Some(7), Some(17)]);
        assert_eq!(Growth::Off.before_epoch(5), None);
    }
}
