//! `cryosplat backproject`: direct Fourier inversion, the baseline reconstruction.

use crate::input::ParticleArgs;
use crate::progress::Bar;
use anyhow::Result;
use cryosplat_train::backproject::{backproject, BackprojectConfig, Backprojection};
use cryosplat_train::output::{Existing, OutputDir};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: ParticleArgs,
    /// Output folder.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Padding factor of the Fourier grid.
    #[arg(long, default_value_t = BackprojectConfig::default().pad)]
    pub pad: usize,
    /// Constant regularisation of every map: add this fraction of the mean Fourier weight to
    /// every weight (0.01 was the former default). Without it, the half maps use 0.01 and the
    /// full map follows their FSC: RELION's SSNR-based Wiener term, mean shell weight / SSNR.
    #[arg(long)]
    pub wiener: Option<f64>,
    /// Worker threads (default: all cores).
    #[arg(long, default_value_t = BackprojectConfig::default().threads)]
    pub threads: usize,
    /// Random seed of the half split (the same as reconstruct's for the same seed).
    #[arg(long, default_value_t = BackprojectConfig::default().seed)]
    pub seed: u64,
    /// Fourier-crop the images to this box size first.
    #[arg(long)]
    pub downsample: Option<usize>,
    /// Ignore the CTF (data that have none).
    #[arg(long)]
    pub no_ctf: bool,
    /// Point group of the particle, RELION's names (C1, C4, D2, T, O, I1–I4, C3v, D7h, …):
    /// every image is also inserted at its symmetry-related poses.
    #[arg(long, default_value = "C1")]
    pub sym: String,
    /// Replace the results of an earlier run in the output folder (without it, a folder that
    /// holds results is refused).
    #[arg(long)]
    pub overwrite: bool,
    /// Do not post-process the half maps at the end (map_sharp.mrc, see `cryosplat postprocess`).
    #[arg(long)]
    pub no_postprocess: bool,
}

impl Args {
    /// The configuration these arguments give.
    pub fn config(&self) -> BackprojectConfig {
        BackprojectConfig {
            pad: self.pad,
            wiener: self.wiener,
            threads: self.threads,
            seed: self.seed,
            downsample: self.downsample,
            no_ctf: self.no_ctf,
            sym: self.sym.clone(),
            // The weight correction and the insertion keep their defaults: flags for them would
            // need `demo`'s literal `Args` to name them too.
            ..BackprojectConfig::default()
        }
    }
}

/// Backproject and write map.mrc, the half maps, fsc.csv, run.json, fsc.png and views.png;
/// returns the backprojection and the particles' viewing directions.
pub fn execute(a: &Args) -> Result<(Backprojection, crate::report::Views)> {
    let existing = Existing::from_flags(false, a.overwrite);
    let mut out = OutputDir::open(&a.out, existing, "backproject")?;
    let set = a.input.load()?;
    let cfg = a.config();
    let r = backproject(&set, &cfg, &Bar::new())?;
    let fsc_png = out.path("fsc.png");
    crate::figures::fsc_plot(&fsc_png, "backprojection half-map FSC", &r.fsc)?;
    out.record(fsc_png);
    // The point group parsed for the backprojection above.
    let group = cryosplat_core::symmetry::PointGroup::parse(&a.sym)?;
    let views = crate::report::Views::of_poses(set.particles.iter().map(|p| &p.pose.rot), group.operators());
    out.record(views.write_png(&a.out)?);
    let argv: Vec<String> = std::env::args_os().map(|s| s.to_string_lossy().into_owned()).collect();
    let settings = serde_json::json!({
        "command": argv,
        "particles": a.input.particles.display().to_string(),
        "count": set.len(),
        "particles_box_px": set.box_px,
        "particles_apix": set.apix,
    });
    r.write_outputs(&mut out, &cfg, &settings)?;
    Ok((r, views))
}

pub fn run(a: Args) -> Result<()> {
    let (r, views) = execute(&a)?;
    say!("views: {}", views.text());
    if let Some(w) = views.warning() {
        tracing::warn!("{w}");
    }
    match &r.ssnr {
        Some(_) => say!(
            "regularisation: map.mrc from the half-map FSC (SSNR per shell); half maps constant, {} × the mean Fourier weight",
            cryosplat_core::backproject::BASE_WIENER
        ),
        None => {
            say!("regularisation: constant, {} × the mean Fourier weight", a.wiener.unwrap_or(cryosplat_core::backproject::BASE_WIENER))
        }
    }
    if r.symmetry_order > 1 {
        say!("symmetry: {} ({} operators)", r.symmetry, r.symmetry_order);
    }
    say!("half-map resolution (FSC 0.143, corrected): {}; 0.5: {}; {:.1} s", r.resolution(0.143), r.resolution(0.5), r.seconds);
    crate::cmd::postprocess::finish_run(&a.out, "backproject", !a.no_postprocess);
    Ok(())
}
