//! `cryosplat reconstruct`: Gaussian-splatting reconstruction with gold-standard half maps.

use crate::input::ParticleArgs;
use crate::progress::Bar;
use crate::report;
use anyhow::{Context, Result};
use cryosplat_train::reconstruct::{reconstruct, ReconstructConfig, ReconstructError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: ParticleArgs,
    /// Output folder.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Gaussians per half model.
    #[arg(long, default_value_t = ReconstructConfig::default().gaussians)]
    pub gaussians: usize,
    /// Passes over each half's particles.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Adam learning rate (box units), for every parameter type.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Total exponential decay of the learning rate over the run.
    #[arg(long, default_value_t = 0.1)]
    pub lr_decay: f64,
    /// Images per optimiser step.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Worker threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Train on images Fourier-cropped to this box size.
    #[arg(long)]
    pub downsample: Option<usize>,
    /// Random seed (half split, initialisation, visiting order).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue the run in the output folder from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Also checkpoint every this many steps (0: once per half-epoch).
    #[arg(long, default_value_t = 2000)]
    pub checkpoint_every: usize,
    /// Splat footprint in standard deviations.
    #[arg(long, default_value_t = cryosplat_core::splat::DEFAULT_N_SIGMA)]
    pub n_sigma: f32,
    /// Keep images in memory when they take less than this many GiB.
    #[arg(long, default_value_t = 8.0)]
    pub cache_gib: f64,
    /// Train without a CTF (data that have none).
    #[arg(long)]
    pub no_ctf: bool,
    /// Stop (with a checkpoint) after this many optimiser steps.
    #[arg(long, hide = true)]
    pub max_steps: Option<u64>,
}

impl Args {
    pub fn config(&self) -> ReconstructConfig {
        ReconstructConfig {
            gaussians: self.gaussians,
            epochs: self.epochs,
            lr: self.lr,
            lr_decay: self.lr_decay,
            batch_size: self.batch_size,
            threads: self.threads,
            seed: self.seed,
            n_sigma: self.n_sigma,
            downsample: self.downsample,
            checkpoint_every: self.checkpoint_every,
            cache_gib: self.cache_gib,
            max_steps: self.max_steps,
            no_ctf: self.no_ctf,
        }
    }
}

/// Run and write every output; returns the run summary.
pub fn execute(a: &Args, title: &str) -> Result<cryosplat_train::reconstruct::Summary> {
    let set = a.input.load()?;
    let cfg = a.config();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating the output folder {}", a.out.display()))?;
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
    let out = a.out.clone();
    let settings = serde_json::json!({
        "particles": a.input.particles.display().to_string(),
        "count": set.len(),
        "box_px": set.box_px,
        "apix": set.apix,
        "config": cfg,
    });
    let mut on_epoch = |r: &cryosplat_train::reconstruct::EpochResult| -> Result<(), ReconstructError> {
        tracing::info!(
            "epoch {}: loss A {:.5} B {:.5}; half-map resolution {} Å (0.143), {} Å (0.5)",
            r.record.epoch, r.record.loss[0], r.record.loss[1], r.record.resolution_0143, r.record.resolution_05
        );
        report::write_epoch_outputs(&out, title, r, &settings).map_err(|e| ReconstructError::Config(format!("{e:#}")))
    };
    let summary = match reconstruct(&set, &cfg, &a.out, a.resume, &bar, &stop, &mut on_epoch) {
        Ok(s) => s,
        Err(e @ ReconstructError::Interrupted { .. }) => return Err(e.into()),
        Err(e) => return Err(anyhow::Error::new(e).context("reconstruction failed")),
    };
    report::write_final_outputs(&a.out, &summary, &settings)?;
    Ok(summary)
}

pub fn run(a: Args) -> Result<()> {
    let s = execute(&a, "cryosplat reconstruction")?;
    let last = s.history.last().expect("at least one epoch");
    println!(
        "half-map resolution (FSC 0.143, corrected): {} Å; 0.5: {} Å; {} + {} particles, {:.0} s",
        last.resolution_0143, last.resolution_05, s.particles[0], s.particles[1], s.seconds
    );
    println!("outputs in {}", a.out.display());
    Ok(())
}
