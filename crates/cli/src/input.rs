//! Input options shared by the commands that read particles.

use anyhow::{Context, Result};
use cryosplat_train::dataset::{LoadOptions, ParticleSet};
use std::path::PathBuf;

/// Where the particles come from and how to read them.
#[derive(clap::Args, Clone, Debug)]
pub struct ParticleArgs {
    /// Particles: a RELION .star, a cryoSPARC .cs, or an .mrcs stack (with --poses and --ctf).
    pub particles: PathBuf,
    /// cryoDRGN pose pickle (rotations and translations).
    #[arg(long)]
    pub poses: Option<PathBuf>,
    /// cryoDRGN CTF pickle.
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Folder that image paths in the metadata are relative to (default: the metadata's folder).
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Pixel size in Å (overrides the metadata).
    #[arg(long)]
    pub apix: Option<f64>,
    /// Invert the contrast of the images (for dark, raw-polarity particles).
    #[arg(long)]
    pub invert: bool,
    /// Use only the first N particles.
    #[arg(long)]
    pub first: Option<usize>,
    /// Use only the particles listed in this file (one 0-based index per line).
    #[arg(long)]
    pub subset: Option<PathBuf>,
}

impl ParticleArgs {
    /// Load the particle set, apply the subset options, and log what the loader noticed.
    pub fn load(&self) -> Result<ParticleSet> {
        let opts = LoadOptions {
            datadir: self.datadir.clone(),
            poses: self.poses.clone(),
            ctf: self.ctf.clone(),
            apix: self.apix,
            invert: self.invert,
        };
        let mut set =
            ParticleSet::load(&self.particles, &opts).with_context(|| format!("reading particles from {}", self.particles.display()))?;
        if let Some(f) = &self.subset {
            let idx = ParticleSet::read_index_file(f)?;
            set.retain_indices(&idx)?;
        }
        if let Some(n) = self.first {
            let n = n.min(set.len());
            set.retain_indices(&(0..n).collect::<Vec<_>>())?;
        }
        for w in &set.warnings {
            tracing::warn!("{w}");
        }
        tracing::info!("{} particles, box {} px, {:.4} Å/px", set.len(), set.box_px, set.apix);
        Ok(set)
    }
}
