//! `cryosplat reconstruct`: Gaussian-splatting reconstruction with gold-standard half maps.
//!
//! The library does the work and writes the maps, FSC table, Gaussian files, run.json and
//! checkpoint; this file shows the progress bar, turns Ctrl-C into a checkpoint, writes the
//! figures and report after every epoch (`report::write_epoch_outputs`) and keeps `run.log`, a
//! copy of what the run said (rewritten atomically after every event).

use crate::input::ParticleArgs;
use crate::progress::Bar;
use crate::report;
use anyhow::Result;
use cryosplat_train::adam::LrSchedule;
use cryosplat_train::output::{Existing, OutputDir};
use cryosplat_train::reconstruct::density::DensityConfig;
use cryosplat_train::reconstruct::{
    plan, reconstruct, resolution_words, CoarseToFine, EpochResult, Growth, InitKind, ReconstructConfig, ReconstructError, RefineConfig,
    Session, Summary,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: ParticleArgs,
    /// Output folder.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Gaussians per half model (with --sym, in all the copies together: the asymmetric unit
    /// has this many divided by the group's order, rounded up) [default: up to 64 px two per
    /// particle of the smaller half, at least 8000 and at most 20000 (20000 with --sym); 15000
    /// above]
    #[arg(long)]
    pub gaussians: Option<usize>,
    /// Point group of the particle (RELION's names: C1, Cn, Ci, Cs, Cnv, Cnh, Sn, Dn, Dnv, Dnh,
    /// T, Td, Th, O, Oh, I, I1–I4 and their h variants): each half model holds the asymmetric unit and
    /// is rendered, and its maps drawn, as the unit's copies under the group's operators.
    #[arg(long, default_value_t = ReconstructConfig::default().sym)]
    pub sym: String,
    /// Refine each particle's corrections during training, jointly with its own half's model
    /// (the halves stay independent): a comma-separated subset of pose, shift, defocus.
    /// Writes particles_refined.star (every other column as read), and for a cryoSPARC input
    /// particles_refined.cs, for cryoDRGN pickles poses_refined.pkl and ctf_refined.pkl (rows
    /// in the order of the STAR file). Experimental: on simulations origins come much closer
    /// to the truth, rotations and defoci somewhat, when the prior widths match the errors
    /// (BENCHMARKS.md, "Per-particle refinement").
    #[arg(long, value_parser = parse_refine)]
    pub refine: Option<[bool; 3]>,
    /// With --refine: the first pass (1-based) whose steps refine the particles; before it the
    /// model forms from the recorded values.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub refine_from_pass: u64,
    /// With --refine: widths of the Gaussian prior toward the recorded values (rotation in
    /// degrees per component of the rotation vector, so about 0.58 × the rms angle expected;
    /// origin per axis in Å; defocus in Å). With --refine-prior estimate (the default) the
    /// origin's and the defocus's are the first refining pass's widths, and each later pass
    /// takes them from the half's own corrections; the rotation's is always used as given.
    #[arg(long, default_value_t = REFINE_PRIORS[0])]
    pub refine_prior_deg: f64,
    #[arg(long, default_value_t = REFINE_PRIORS[1])]
    pub refine_prior_shift: f64,
    #[arg(long, default_value_t = REFINE_PRIORS[2])]
    pub refine_prior_defocus: f64,
    /// With --refine: estimate the origin's and the defocus's prior widths from each half's
    /// corrections after every refining pass (estimate), or keep the given ones (fixed).
    #[arg(long, value_enum, default_value_t = PriorWidths::Estimate)]
    pub refine_prior: PriorWidths,
    /// Where each half's Gaussians start: random (the method's blob around the box centre),
    /// backprojection (centres drawn from the half's own backprojection, regularised from that
    /// half alone), or auto (the backprojection start when the smaller half has fewer than 4,500
    /// particles, where it measured at least as fine, the random start otherwise; the choice and
    /// its reason are printed and recorded in run.json as settings.start).
    #[arg(long, value_enum, default_value_t = Init::from(ReconstructConfig::default().init))]
    pub init: Init,
    /// Passes over each half's particles (raise it with --resume to extend a finished run).
    /// Without it: enough passes for --min-steps optimiser steps per half, at least 5.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Optimiser steps per half at least, when --epochs is not given. Without it: 20,000 for
    /// images of up to 64 px, and as many pixels per half beyond (20,000·(64/box)²: 5,000 at
    /// 128 px).
    #[arg(long)]
    pub min_steps: Option<u64>,
    /// Average each half's parameters over this fraction of its steps at the end of the run and
    /// write map.mrc, the half maps and the Gaussians of the averaged models (0: the last step's
    /// models). Without it: 0 for images of up to 64 px, 0.2 beyond (where the runs are
    /// shorter; BENCHMARKS.md).
    #[arg(long)]
    pub average_tail: Option<f64>,
    /// Adam learning rate (box units), for every parameter type.
    #[arg(long, default_value_t = ReconstructConfig::default().lr)]
    pub lr: f64,
    /// Learning-rate schedule: exponential (continuous, a total decay of --lr-decay over the
    /// run) or step (the method's: ×--lr-gamma at each epoch boundary).
    #[arg(long, value_enum, default_value_t = Schedule::from(ReconstructConfig::default().lr_schedule))]
    pub lr_schedule: Schedule,
    /// Total decay of the learning rate over the run (exponential schedule).
    #[arg(long, default_value_t = ReconstructConfig::default().lr_decay)]
    pub lr_decay: f64,
    /// Factor of the learning rate at each epoch boundary (step schedule).
    #[arg(long, default_value_t = ReconstructConfig::default().lr_gamma)]
    pub lr_gamma: f64,
    /// Images per optimiser step.
    #[arg(long, default_value_t = ReconstructConfig::default().batch_size)]
    pub batch_size: usize,
    /// Worker threads (default: all cores). The maps depend on the thread count (sums split
    /// over threads round differently), so --resume needs the same count; the same count gives
    /// the same maps on every run.
    #[arg(long, default_value_t = ReconstructConfig::default().threads)]
    pub threads: usize,
    /// Train on images Fourier-cropped to this box size.
    #[arg(long)]
    pub downsample: Option<usize>,
    /// Coarse-to-fine training: the early steps of each half on Fourier-cropped images (the
    /// model is in box units and carries over; maps and FSC stay at the full box). `auto`:
    /// the training box /4 until a quarter of the planned steps, then /2 until half of them
    /// (sizes below 16 px are skipped; off with --refine); `off`: every step at the full box;
    /// or a list SIZE:FRACTION,... such as 32:0.25,64:0.5 (train at 32 px until 25% of the
    /// steps, then at 64 px until 50%, then at the full box). Experimental: on the simulated
    /// sets measured it was slower and no finer than training at the full box throughout
    /// (BENCHMARKS.md, "Coarse-to-fine training").
    #[arg(long, default_value = "off", value_parser = CoarseToFine::parse)]
    pub coarse_to_fine: CoarseToFine,
    /// Leave the last pass's Gaussian maps as they are. By default each half's Gaussian map
    /// is completed by its own backprojection wherever that half's images show what the
    /// Gaussians miss (negative density, low frequencies not yet formed), measured by the FSC
    /// of two sub-halves' residuals; map_gaussians.mrc keeps the Gaussian map alone.
    #[arg(long)]
    pub no_completion: bool,
    /// Random seed (half split, initialisation, visiting order).
    #[arg(long, default_value_t = ReconstructConfig::default().seed)]
    pub seed: u64,
    /// Continue the run in the output folder from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Replace the results of an earlier run in the output folder (without it, a folder that
    /// holds results is refused).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Do not post-process the half maps at the end (map_sharp.mrc, see `cryosplat postprocess`).
    #[arg(long)]
    pub no_postprocess: bool,
    /// Also checkpoint every this many steps (0: once per half-epoch).
    #[arg(long, default_value_t = ReconstructConfig::default().checkpoint_every)]
    pub checkpoint_every: usize,
    /// Splat footprint in standard deviations.
    #[arg(long, default_value_t = ReconstructConfig::default().n_sigma)]
    pub n_sigma: f32,
    /// Keep images in memory when they take less than this many GiB (and their CTFs too when
    /// both fit).
    #[arg(long, default_value_t = ReconstructConfig::default().cache_gib)]
    pub cache_gib: f64,
    /// Train without a CTF (data that have none).
    #[arg(long)]
    pub no_ctf: bool,
    /// Stop (with a checkpoint) after this many optimiser steps.
    #[arg(long, hide = true)]
    pub max_steps: Option<u64>,
    /// The initial model and density control (the field keeps its first name, `density`).
    #[command(flatten)]
    pub density: ModelArgs,
}

/// `--init`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    Random,
    Backprojection,
    Auto,
}

impl From<InitKind> for Init {
    fn from(s: InitKind) -> Self {
        match s {
            InitKind::Random => Init::Random,
            InitKind::Backprojection => Init::Backprojection,
            InitKind::Auto => Init::Auto,
        }
    }
}

impl From<Init> for InitKind {
    fn from(s: Init) -> Self {
        match s {
            Init::Random => InitKind::Random,
            Init::Backprojection => InitKind::Backprojection,
            Init::Auto => InitKind::Auto,
        }
    }
}

/// `--grow`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grow {
    Auto,
    Off,
}

impl From<Growth> for Grow {
    fn from(g: Growth) -> Self {
        match g {
            Growth::Auto => Grow::Auto,
            Growth::Off => Grow::Off,
        }
    }
}

impl From<Grow> for Growth {
    fn from(g: Grow) -> Self {
        match g {
            Grow::Auto => Growth::Auto,
            Grow::Off => Growth::Off,
        }
    }
}

/// `--lr-schedule`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    Exponential,
    Step,
}

impl From<LrSchedule> for Schedule {
    fn from(s: LrSchedule) -> Self {
        match s {
            LrSchedule::Exponential => Schedule::Exponential,
            LrSchedule::Step => Schedule::Step,
        }
    }
}

impl From<Schedule> for LrSchedule {
    fn from(s: Schedule) -> Self {
        match s {
            Schedule::Exponential => LrSchedule::Exponential,
            Schedule::Step => LrSchedule::Step,
        }
    }
}

/// The initial model's mass, and density control between epochs (off by default).
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Initial total mass as a fraction of the mass estimated from the images (0.5: the
    /// method's recipe of total/(2N) per Gaussian).
    #[arg(long, default_value_t = ReconstructConfig::default().init_mass_fraction)]
    pub init_mass_fraction: f64,
    /// Split Gaussians before these epochs (1-based, comma-separated), e.g. 2,3.
    #[arg(long, value_delimiter = ',')]
    pub densify_epochs: Vec<usize>,
    /// Fraction of the Gaussians (largest mean position gradient over the previous epoch) split each time.
    #[arg(long, default_value_t = DensityConfig::default().split_fraction)]
    pub densify_fraction: f64,
    /// Also split Gaussians larger than this many pixels (largest standard deviation; 0: off).
    #[arg(long, default_value_t = DensityConfig::default().split_large_px)]
    pub densify_large_px: f64,
    /// Grow the model during the run: auto (each half starts with half of --gaussians and
    /// splits every Gaussian in two after the first 40% of the passes: about 20% faster, up to
    /// 3% finer against the ground truth on the large simulated sets, but up to 6% coarser on
    /// low-SNR sets of 3,000–5,000 particles per half) or off (--gaussians from the first step,
    /// the method's; the default).
    #[arg(long, value_enum, default_value_t = Grow::from(ReconstructConfig::default().grow))]
    pub grow: Grow,
    /// Prune vanished Gaussians before these epochs (1-based, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub prune_epochs: Vec<usize>,
    /// Prune Gaussians with an amplitude below this fraction of the mean amplitude.
    #[arg(long, default_value_t = DensityConfig::default().prune_fraction)]
    pub prune_fraction: f64,
}

impl ModelArgs {
    pub fn config(&self) -> DensityConfig {
        DensityConfig {
            densify_epochs: self.densify_epochs.clone(),
            split_fraction: self.densify_fraction,
            split_large_px: self.densify_large_px,
            prune_epochs: self.prune_epochs.clone(),
            prune_fraction: self.prune_fraction,
        }
    }
}

/// `run.log`: timestamped lines, rewritten atomically after each one (a log of a few hundred
/// lines; the whole file is always complete).
struct RunLog {
    path: PathBuf,
    text: String,
    started: Instant,
}

impl RunLog {
    fn new(dir: &Path) -> Self {
        RunLog { path: dir.join("run.log"), text: String::new(), started: Instant::now() }
    }

    /// Continue the log of an earlier run (on --resume).
    fn resume(dir: &Path) -> Self {
        let mut l = Self::new(dir);
        l.text = std::fs::read_to_string(&l.path).unwrap_or_default();
        l
    }

    fn line(&mut self, msg: &str) {
        let t = self.started.elapsed().as_secs_f64();
        for (k, l) in msg.lines().enumerate() {
            if k == 0 {
                self.text.push_str(&format!("[{t:9.1} s] {l}\n"));
            } else {
                self.text.push_str(&format!("            {l}\n"));
            }
        }
        if let Err(e) = cryosplat_formats::atomic::write_bytes_atomic(&self.path, self.text.as_bytes()) {
            tracing::warn!("cannot write {}: {e}", self.path.display());
        }
    }
}

impl Args {
    /// The arguments that give `cfg` (for the demo, which runs a reconstruction itself).
    pub fn with_config(input: ParticleArgs, out: PathBuf, cfg: &ReconstructConfig) -> Self {
        Args {
            input,
            out,
            gaussians: cfg.gaussians,
            sym: cfg.sym.clone(),
            refine: cfg.refine.as_ref().map(|r| [r.pose, r.shift, r.defocus]),
            refine_from_pass: cfg.refine.as_ref().map_or(2, |r| r.start_epoch as u64 + 1),
            refine_prior_deg: cfg.refine.as_ref().map_or(REFINE_PRIORS[0], |r| r.prior_rot_deg),
            refine_prior_shift: cfg.refine.as_ref().map_or(REFINE_PRIORS[1], |r| r.prior_shift_a),
            refine_prior_defocus: cfg.refine.as_ref().map_or(REFINE_PRIORS[2], |r| r.prior_defocus_a),
            refine_prior: if cfg.refine.as_ref().is_some_and(|r| !r.estimate_prior) { PriorWidths::Fixed } else { PriorWidths::Estimate },
            epochs: cfg.epochs,
            min_steps: cfg.min_steps,
            average_tail: cfg.average_tail,
            lr: cfg.lr,
            lr_schedule: cfg.lr_schedule.into(),
            init: cfg.init.into(),
            lr_decay: cfg.lr_decay,
            lr_gamma: cfg.lr_gamma,
            batch_size: cfg.batch_size,
            threads: cfg.threads,
            downsample: cfg.downsample,
            coarse_to_fine: cfg.coarse_to_fine.clone(),
            no_completion: !cfg.completion,
            seed: cfg.seed,
            resume: false,
            overwrite: false,
            no_postprocess: false,
            checkpoint_every: cfg.checkpoint_every,
            n_sigma: cfg.n_sigma,
            cache_gib: cfg.cache_gib,
            no_ctf: cfg.no_ctf,
            max_steps: cfg.max_steps,
            density: ModelArgs {
                init_mass_fraction: cfg.init_mass_fraction,
                densify_epochs: cfg.density.densify_epochs.clone(),
                densify_fraction: cfg.density.split_fraction,
                densify_large_px: cfg.density.split_large_px,
                prune_epochs: cfg.density.prune_epochs.clone(),
                prune_fraction: cfg.density.prune_fraction,
                grow: cfg.grow.into(),
            },
        }
    }

    pub fn config(&self) -> ReconstructConfig {
        ReconstructConfig {
            gaussians: self.gaussians,
            epochs: self.epochs,
            min_steps: self.min_steps,
            average_tail: self.average_tail,
            lr: self.lr,
            lr_schedule: self.lr_schedule.into(),
            init: self.init.into(),
            lr_decay: self.lr_decay,
            lr_gamma: self.lr_gamma,
            batch_size: self.batch_size,
            threads: self.threads,
            seed: self.seed,
            n_sigma: self.n_sigma,
            downsample: self.downsample,
            checkpoint_every: self.checkpoint_every,
            cache_gib: self.cache_gib,
            max_steps: self.max_steps,
            no_ctf: self.no_ctf,
            init_mass_fraction: self.density.init_mass_fraction,
            density: self.density.config(),
            grow: self.density.grow.into(),
            sym: self.sym.clone(),
            coarse_to_fine: self.coarse_to_fine.clone(),
            completion: !self.no_completion,
            refine: self.refine.map(|[pose, shift, defocus]| RefineConfig {
                pose,
                shift,
                defocus,
                prior_rot_deg: self.refine_prior_deg,
                prior_shift_a: self.refine_prior_shift,
                prior_defocus_a: self.refine_prior_defocus,
                start_epoch: self.refine_from_pass as usize - 1,
                estimate_prior: self.refine_prior == PriorWidths::Estimate,
            }),
        }
    }
}

/// The default prior widths of `--refine`: rotation per rotation-vector component (°), origin
/// per axis (Å), defocus (Å) (chosen in BENCHMARKS.md, "Per-particle refinement").
pub(crate) const REFINE_PRIORS: [f64; 3] = [1.0, 3.0, 1000.0];

/// `--refine-prior`: where the prior widths of per-particle refinement come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PriorWidths {
    /// The origin's and the defocus's from each half's corrections, after every refining pass.
    Estimate,
    /// As given by --refine-prior-deg, --refine-prior-shift, --refine-prior-defocus.
    Fixed,
}

/// `--refine`: a comma-separated subset of pose, shift, defocus.
pub(crate) fn parse_refine(s: &str) -> Result<[bool; 3], String> {
    let mut what = [false; 3];
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "pose" => what[0] = true,
            "shift" => what[1] = true,
            "defocus" => what[2] = true,
            other => return Err(format!("{other:?} is not one of pose, shift, defocus")),
        }
    }
    if what == [false; 3] {
        return Err("name at least one of pose, shift, defocus".into());
    }
    Ok(what)
}

/// Run and write every output; returns the run summary.
pub fn execute(a: &Args, title: &str) -> Result<Summary> {
    let cfg = a.config();
    let existing = Existing::from_flags(a.resume, a.overwrite);
    let mut out = OutputDir::open(&a.out, existing, "reconstruct")?;
    out.record(a.out.join("run.log"));
    let mut log = if a.resume { RunLog::resume(&a.out) } else { RunLog::new(&a.out) };
    let argv: Vec<String> = std::env::args_os().map(|s| s.to_string_lossy().into_owned()).collect();
    log.line(&format!("cryosplat {}{}", env!("CARGO_PKG_VERSION"), if a.resume { " (resuming)" } else { "" }));
    log.line(&format!("command: {}", argv.join(" ")));
    let set = match a.input.load() {
        Ok(s) => s,
        Err(e) => {
            log.line(&format!("error: {}", crate::error_text(&e)));
            return Err(e);
        }
    };
    for w in &set.warnings {
        log.line(&format!("warning: {w}"));
    }
    log.line(&format!("{} particles, box {} px, {:.4} Å/px, source {}", set.len(), set.box_px, set.apix, set.source.display()));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let s = stop.clone();
        // A second Ctrl-C while the checkpoint is written kills the process as usual.
        let _ = ctrlc::set_handler(move || {
            if s.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: finishing the current step and writing a checkpoint…");
        });
    }
    let bar = Bar::new();
    let settings = serde_json::json!({
        "command": argv,
        "particles": a.input.particles.display().to_string(),
        "poses": a.input.poses.as_ref().map(|p| p.display().to_string()),
        "ctf": a.input.ctf.as_ref().map(|p| p.display().to_string()),
        "invert": set.invert,
        "first": a.input.first,
        "subset": a.input.subset.as_ref().map(|p| p.display().to_string()),
        "count": set.len(),
        "particles_box_px": set.box_px,
        "particles_apix": set.apix,
        "config": cfg,
    });
    log.line(&format!("settings: {}", serde_json::to_string(&cfg)?));
    // The library resolves `--init auto` the same way (once, before the run).
    let plan = plan(&set, &cfg)?;
    say!("start: {}", plan.start);
    say!("plan: {plan}");
    log.line(&format!("start: {}", plan.start));
    log.line(&format!("plan: {plan}"));
    // A symmetric particle is also a view at each symmetry-related pose; an unknown --sym is
    // reported by the run itself.
    let group = cryosplat_core::symmetry::PointGroup::parse(&cfg.sym).ok();
    let ops = group.as_ref().map_or(&[cryosplat_core::pose::IDENTITY][..], |g| g.operators());
    let views = report::Views::of_poses(set.particles.iter().map(|p| &p.pose.rot), ops);
    say!("views: {}", views.text());
    log.line(&format!("views: {}", views.text()));
    if let Some(w) = views.warning() {
        tracing::warn!("{w}");
        log.line(&format!("warning: {w}"));
    }
    let log = std::sync::Mutex::new(log);
    let mut on_epoch = |r: &EpochResult| -> Result<Vec<PathBuf>, ReconstructError> {
        let rec = r.record;
        let msg = format!(
            "epoch {}: loss A {:.5} B {:.5}; resolution {}; {} + {} Gaussians; {:.1} s, {:.0} images/s",
            rec.epoch,
            rec.loss[0],
            rec.loss[1],
            resolution_words(rec, r.cross_validated),
            rec.gaussians[0],
            rec.gaussians[1],
            rec.seconds,
            rec.images_per_s
        );
        tracing::info!("{msg}");
        log.lock().expect("log lock").line(&msg);
        // Figures and the report.
        report::write_epoch_outputs(r.out_dir, title, r, &settings, Some(&views)).map_err(|e| ReconstructError::Config(format!("{e:#}")))
    };
    let session = Session { resume: a.resume, settings: settings.clone(), progress: &bar, stop: &stop };
    let result = reconstruct(&set, &cfg, &mut out, &session, &mut on_epoch);
    let mut log = log.into_inner().expect("log lock");
    let summary = match result {
        Ok(s) => s,
        Err(e @ ReconstructError::Interrupted { .. }) => {
            log.line(&format!("stopped: {e}"));
            return Err(e.into());
        }
        Err(e) => {
            log.line(&format!("error: {e}"));
            return Err(anyhow::Error::new(e).context("reconstruction failed"));
        }
    };
    for w in &summary.warnings {
        log.line(&format!("note: {w}"));
    }
    let last = summary.last();
    log.line(&format!(
        "finished in {:.0} s: resolution {}; outputs: {}",
        summary.seconds,
        resolution_words(last, summary.cross_validated.as_ref()),
        summary.outputs.iter().filter_map(|p| p.file_name()).map(|f| f.to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ")
    ));
    Ok(summary)
}

pub fn run(a: Args) -> Result<()> {
    let s = execute(&a, "cryosplat reconstruction")?;
    let last = s.last();
    say!(
        "resolution: {}; {} + {} particles, {:.0} s",
        resolution_words(last, s.cross_validated.as_ref()),
        s.particles[0],
        s.particles[1],
        s.seconds
    );
    if let Some(c) = &s.completion {
        say!("map.mrc: {}", crate::report::completion_text(c, s.box_px, s.apix));
    }
    if let Some(r) = &s.refinement {
        say!(
            "refined particles: rms change {:.2}° (rotation), {:.2} Å (origin), {:.0} Å (defocus); {}",
            r.angle_deg_stats.rms,
            r.shift_a_stats.rms,
            r.defocus_a_stats.rms,
            r.star.display()
        );
        let [a, b] = r.prior_widths;
        say!(
            "prior widths at the end (half A / B): {:.2}° / {:.2}° per rotation component, {:.2} / {:.2} Å per origin axis, {:.0} / {:.0} Å defocus",
            a[0], b[0], a[1], b[1], a[2], b[2]
        );
        for p in &r.native {
            say!("refined values in the input's own format: {}", p.display());
        }
    }
    crate::cmd::postprocess::finish_run(&a.out, "reconstruct", !a.no_postprocess);
    Ok(())
}
