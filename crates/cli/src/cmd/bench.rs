//! `cryosplat bench`: full training steps per second on a fixed workload.

use anyhow::Result;
use cryosplat_train::bench::{run as run_bench, BenchConfig};
use cryosplat_train::reconstruct::RefineConfig;

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
    /// Timed optimiser steps per repeat.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Timed repeats (the best is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Footprint half-width in standard deviations.
    #[arg(long, default_value_t = cryosplat_core::render::DEFAULT_N_SIGMA)]
    n_sigma: f32,
    /// Point group (RELION's names): the model is its asymmetric unit of gaussians/|G|
    /// Gaussians, expanded at every step as `reconstruct --sym` does.
    #[arg(long, default_value = "C1")]
    sym: String,
    /// Per-particle refinement in every step, as `reconstruct --refine` does once it is active:
    /// a comma-separated subset of pose, shift, defocus (the priors are reconstruct's defaults).
    #[arg(long, value_parser = crate::cmd::reconstruct::parse_refine)]
    refine: Option<[bool; 3]>,
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
        steps: a.steps,
        warmup: (a.steps / 10).clamp(1, 20),
        repeats: a.repeats,
        n_sigma: a.n_sigma,
        sym: a.sym.clone(),
        refine: a.refine.map(|[pose, shift, defocus]| RefineConfig {
            pose,
            shift,
            defocus,
            prior_rot_deg: 5.0,
            prior_shift_a: 3.0,
            prior_defocus_a: 1000.0,
            start_epoch: 0,
            estimate_prior: false,
        }),
        ..Default::default()
    };
    let r = run_bench(&cfg).map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{:.1} images/s ({:.1} steps/s; box {} px, {} Gaussians, {} threads, batch {}, best of {} × {} steps: {:.3} s, footprint {} σ)",
            r.images_per_s,
            r.steps_per_s,
            r.box_px,
            r.gaussians,
            r.threads,
            r.batch,
            r.repeat_seconds.len(),
            r.steps,
            r.seconds,
            r.n_sigma
        );
        if r.unit_gaussians != r.gaussians {
            println!("symmetry {}: an asymmetric unit of {} Gaussians, expanded at every step", r.sym, r.unit_gaussians);
        }
        if let Some(rc) = &r.refine {
            let what: Vec<&str> = [(rc.pose, "pose"), (rc.shift, "shift"), (rc.defocus, "defocus")]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect();
            println!("every step refines each image's {} (CTF and its defocus derivative filled per image)", what.join(", "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cmd::reconstruct::parse_refine;

    #[test]
    fn refine_names_a_subset_and_refuses_anything_else() {
        assert_eq!(parse_refine("pose,shift,defocus"), Ok([true, true, true]));
        assert_eq!(parse_refine("defocus, pose"), Ok([true, false, true]));
        assert!(parse_refine("pose,angles").unwrap_err().contains("angles"));
        assert!(parse_refine("").is_err());
    }
}
