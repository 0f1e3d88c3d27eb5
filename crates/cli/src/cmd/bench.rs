//! `cryosplat bench`: full training steps per second on a fixed workload, or on a trained
//! model (`--model`), with the parts of a step timed on their own (`--phases`); see
//! `cryosplat_train::bench`.

use crate::cmd::reconstruct::REFINE_PRIORS;
use anyhow::Result;
use cryosplat_train::bench::{run as run_bench, BenchConfig, BenchResult};
use cryosplat_train::reconstruct::RefineConfig;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Box size in pixels [default: 128, or the model's box, read from the map.mrc beside it;
    /// another value is refused].
    #[arg(long = "box")]
    box_px: Option<usize>,
    /// Number of Gaussians of the random model.
    #[arg(long, default_value_t = 10_000, conflicts_with = "model")]
    gaussians: usize,
    /// A model written by `reconstruct` (gaussians_a.ply; gaussians.ply holds both halves)
    /// instead of the random one: used as it is, in its own box, on its own noisy projections.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The model's pixel size in Å, needed only when no map.mrc lies beside it (then --box too).
    #[arg(long, requires = "model")]
    apix: Option<f64>,
    /// Also time the parts of a step on their own (projection, splat, CTF/FFT/loss, gather,
    /// Adam, CTF evaluation; batch of one only).
    #[arg(long)]
    phases: bool,
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
    /// Gaussians, expanded at every step as `reconstruct --sym` does (with --model: the
    /// file's first N/|G| Gaussians, of which the file must be the expansion).
    #[arg(long, default_value = "C1")]
    sym: String,
    /// Per-particle refinement in every step, as `reconstruct --refine` does once it is active:
    /// a comma-separated subset of pose, shift, defocus (the priors are reconstruct's defaults; a pass's prior estimate costs nothing per step).
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
            prior_rot_deg: REFINE_PRIORS[0],
            prior_shift_a: REFINE_PRIORS[1],
            prior_defocus_a: REFINE_PRIORS[2],
            start_epoch: 0,
            estimate_prior: true,
        }),
        model: a.model.clone(),
        apix: a.apix,
        phases: a.phases,
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
        print_model(&r);
    }
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    Ok(())
}

/// The model, its footprints and the parts of a step, in words.
fn print_model(r: &BenchResult) {
    if let Some(m) = &r.model {
        println!(
            "model {}: {} Gaussians ({} outside the box), box {} px of {:.4} Å (from {}); images: its projections + unit white noise",
            m.path.display(),
            m.gaussians_in_file,
            m.outside_box,
            m.box_px,
            m.apix,
            m.box_from
        );
    }
    let f = &r.footprints;
    println!(
        "footprints ({} Gaussians, {} poses, {} σ): mean {:.1} px² (σ {:.2} px), {:.1}% above 100 px² ({:.1}% of the {:.0} pixels walked per image), {:.2}% on the per-pixel path, {:.1}% off the image",
        f.gaussians,
        f.poses,
        r.n_sigma,
        f.mean_area_px2,
        f.mean_sigma_px,
        100.0 * f.frac_above_100_px2,
        100.0 * f.walked_share_above_100_px2,
        f.walked_px_per_image,
        100.0 * f.frac_per_pixel_path,
        100.0 * f.frac_off_image
    );
    if let Some(p) = &r.phases {
        println!("parts of a step, ms per image (each timed on its own, best of {}):", r.repeat_seconds.len());
        let mut rows = vec![
            ("project (activation, projection, footprint bounds)", p.project_ms),
            ("splat (forward − project)", p.splat_ms),
            ("CTF, FFTs and loss", p.loss_ms),
            ("gather (backward − project)", p.gather_ms),
            ("Adam", p.adam_ms),
        ];
        if let (Some(e), Some(f)) = (p.expand_ms, p.fold_ms) {
            rows.push(("symmetry expansion", e));
            rows.push(("symmetry fold of the gradient", f));
        }
        for (name, v) in rows {
            println!("  {name:<52} {v:8.4}  {:5.1}%", 100.0 * v / p.parts_sum_ms);
        }
        println!("  {:<52} {:8.4}", "sum of the parts", p.parts_sum_ms);
        println!("  {:<52} {:8.4}", "full step", p.step_ms);
        if r.refine.is_some() {
            println!("  {:<52} {:8.4}  (in the refining step, one per image)", "CTF and its defocus derivative", p.ctf_eval_ms);
        } else {
            println!(
                "  {:<52} {:8.4}  (reconstruct fills one per image per step)",
                "CTF evaluation (not in the benchmark's step)", p.ctf_eval_ms
            );
        }
    }
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
