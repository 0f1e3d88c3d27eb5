//! `cryosplat backproject`: direct Fourier inversion, the baseline reconstruction.

use crate::input::ParticleArgs;
use crate::progress::Bar;
use anyhow::{Context, Result};
use cryosplat_formats::mrc::{write_volume, WriteOptions};
use cryosplat_train::backproject::{backproject, BackprojectConfig, Backprojection};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: ParticleArgs,
    /// Output folder.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Padding factor of the Fourier grid.
    #[arg(long, default_value_t = 2)]
    pub pad: usize,
    /// Constant regularisation of every map: add this fraction of the mean Fourier weight to
    /// every weight (0.01 was the former default). Without it, the half maps use 0.01 and the
    /// full map follows their FSC: RELION's SSNR-based Wiener term, mean shell weight / SSNR.
    #[arg(long)]
    pub wiener: Option<f64>,
    /// Worker threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Random seed of the half split (the same as reconstruct's for the same seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fourier-crop the images to this box size first.
    #[arg(long)]
    pub downsample: Option<usize>,
    /// Ignore the CTF (data that have none).
    #[arg(long)]
    pub no_ctf: bool,
}

/// Write map.mrc, half maps, fsc.csv and fsc.png.
pub fn write_outputs(dir: &Path, r: &Backprojection) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the output folder {}", dir.display()))?;
    let opts = WriteOptions { label: "cryosplat backproject".into(), ..Default::default() };
    for (name, m) in [("map.mrc", &r.map), ("half_map_a.mrc", &r.half_a), ("half_map_b.mrc", &r.half_b)] {
        write_volume(&dir.join(name), m, [r.d, r.d, r.d], r.apix, &opts)?;
    }
    cryosplat_train::reconstruct::write_fsc_csv(&dir.join("fsc.csv"), &r.fsc)?;
    crate::figures::fsc_plot(&dir.join("fsc.png"), "backprojection half-map FSC", &r.fsc)?;
    Ok(())
}

pub fn execute(a: &Args) -> Result<Backprojection> {
    let set = a.input.load()?;
    let cfg =
        BackprojectConfig { pad: a.pad, wiener: a.wiener, threads: a.threads, seed: a.seed, downsample: a.downsample, no_ctf: a.no_ctf };
    let r = backproject(&set, &cfg, &Bar::new())?;
    write_outputs(&a.out, &r)?;
    Ok(r)
}

pub fn run(a: Args) -> Result<()> {
    let r = execute(&a)?;
    match &r.ssnr {
        Some(_) => println!(
            "regularisation: map.mrc from the half-map FSC (SSNR per shell); half maps constant, {} × the mean Fourier weight",
            cryosplat_core::backproject::BASE_WIENER
        ),
        None => {
            println!("regularisation: constant, {} × the mean Fourier weight", a.wiener.unwrap_or(cryosplat_core::backproject::BASE_WIENER))
        }
    }
    println!(
        "half-map resolution (FSC 0.143, corrected): {}; 0.5: {}; {:.1} s",
        r.fsc.resolution(0.143).describe(r.apix),
        r.fsc.resolution(0.5).describe(r.apix),
        r.seconds
    );
    println!("outputs in {}", a.out.display());
    Ok(())
}
