//! `cryosplat bench`: full training steps per second on a fixed workload.

use anyhow::Result;
use cryosplat_train::bench::{run as run_bench, BenchConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Box size in pixels.
    #[arg(long = "box", default_value_t = 128)]
    box_px: usize,
    /// Number of Gaussians.
    #[arg(long, default_value_t = 10_000)]
    gaussians: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Images per optimiser step (1: one image per step, Gaussians split across threads).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Images to time (after a warm-up).
    #[arg(long, default_value_t = 400)]
    images: usize,
    /// Footprint half-width in standard deviations.
    #[arg(long, default_value_t = cryosplat_core::splat::DEFAULT_N_SIGMA)]
    n_sigma: f32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let cfg = BenchConfig {
        box_px: a.box_px,
        gaussians: a.gaussians,
        threads,
        batch: a.batch,
        images: a.images,
        warmup: (a.images / 10).max(a.batch),
        n_sigma: a.n_sigma,
        ..Default::default()
    };
    let r = run_bench(&cfg).map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{:.1} images/s  (box {} px, {} Gaussians, {} threads, batch {}, {} images in {:.2} s, footprint {} σ)",
            r.images_per_s, r.box_px, r.gaussians, r.threads, r.batch, r.images, r.seconds, r.n_sigma
        );
    }
    Ok(())
}
