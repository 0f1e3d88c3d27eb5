//! `cryosplat demo`: simulate a particle set from a bundled real atomic model, reconstruct it
//! by Gaussian splatting and by backprojection, and compare both with the ground truth.
//!
//! The model is PDB entry 7DDO (human ACE2 bound to a coronavirus receptor-binding domain,
//! 6,468 atoms), compiled into the binary so that the demo needs no input.

use crate::input::ParticleArgs;
use crate::report::{write_report, Section};
use anyhow::Result;
use cryosplat_core::fsc::{gold_standard, MaskChoice};
use cryosplat_formats::mrc::MrcFile;
use cryosplat_train::output::{Existing, OutputDir, ReportedResolution};
use cryosplat_train::progress::Progress;
use cryosplat_train::reconstruct::ReconstructConfig;
use cryosplat_train::simulate::{simulate, SimulateConfig, Source};
use std::path::PathBuf;

const MODEL_NAME: &str = "7DDO.pdb";
const MODEL: &str = include_str!("../../../../tests/data/models/7DDO.pdb");

#[derive(clap::Args)]
pub struct Args {
    /// Output folder.
    #[arg(short, long, default_value = "cryosplat-demo")]
    pub out: PathBuf,
    /// Number of simulated particles.
    #[arg(long, default_value_t = 4000)]
    pub particles: usize,
    /// Box size of the simulated images in pixels.
    #[arg(long = "box", default_value_t = 64)]
    pub box_px: usize,
    /// Pixel size in Å.
    #[arg(long, default_value_t = 2.2)]
    pub apix: f64,
    /// Signal-to-noise ratio of the simulated images.
    #[arg(long, default_value_t = 0.05)]
    pub snr: f64,
    /// Gaussians per half model.
    #[arg(long, default_value_t = 8000)]
    pub gaussians: usize,
    /// Training epochs.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Adam learning rate (the method's default). This small set (2,000 images per half, 5
    /// epochs) starts from the backprojection (`--init auto`), from which it reaches Nyquist
    /// against the truth at 1e-3 but only 5.1 Å at 3e-3 (BENCHMARKS.md, "`--init auto`").
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Worker threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Replace the results of an earlier demo in the output folder.
    #[arg(long)]
    pub overwrite: bool,
}

/// A resolution for the demo's table.
fn res(r: cryosplat_core::fsc::Resolution, apix: f64) -> ReportedResolution {
    ReportedResolution::new(r, apix)
}

pub fn run(a: Args) -> Result<()> {
    let t0 = std::time::Instant::now();
    // The folder and its three subfolders hold one demo's results, never a mix of two.
    let existing = Existing::from_flags(false, a.overwrite);
    let _held = OutputDir::open(&a.out, existing, "demo")?;
    for sub in ["particles", "gaussian", "backproject"] {
        drop(OutputDir::open(&a.out.join(sub), existing, "demo")?);
    }
    let bar = crate::progress::Bar::new();
    // 1. The model, written beside the outputs, and the simulated particles.
    let model_path = a.out.join(MODEL_NAME);
    cryosplat_formats::atomic::write_bytes_atomic(&model_path, MODEL.as_bytes())?;
    let atoms = crate::cmd::simulate::read_model(&model_path)?;
    let sim_dir = a.out.join("particles");
    let cfg = SimulateConfig {
        box_px: a.box_px,
        apix: a.apix,
        count: a.particles,
        snr: a.snr,
        defocus_min_um: 0.8,
        defocus_max_um: 2.5,
        max_shift_px: 2.0,
        seed: a.seed,
        ..Default::default()
    };
    say!(
        "simulating {} particles of {} ({} atoms) at {} px, {} Å/px, SNR {}…",
        a.particles,
        MODEL_NAME,
        atoms.len(),
        a.box_px,
        a.apix,
        a.snr
    );
    let t_sim = std::time::Instant::now();
    let sim = simulate(&Source::Atoms { atoms, label: MODEL_NAME.into() }, &cfg, &sim_dir, &bar)?;
    for w in &sim.warnings {
        tracing::warn!("{w}");
    }
    let sim_s = t_sim.elapsed().as_secs_f64();
    let star = sim_dir.join("particles.star");
    let gt = MrcFile::open(sim_dir.join("gt.mrc"))?.read_all()?;
    let input =
        ParticleArgs { particles: star, poses: None, ctf: None, datadir: None, apix: None, invert: false, first: None, subset: None };

    // 2. Gaussian splatting.
    say!("reconstructing by Gaussian splatting ({} Gaussians per half, {} epochs)…", a.gaussians, a.epochs);
    let rec_cfg = ReconstructConfig {
        gaussians: Some(a.gaussians),
        epochs: Some(a.epochs),
        lr: a.lr,
        threads: a.threads,
        seed: a.seed,
        checkpoint_every: 0,
        ..Default::default()
    };
    let rec_args = crate::cmd::reconstruct::Args::with_config(input.clone(), a.out.join("gaussian"), &rec_cfg);
    let rec = crate::cmd::reconstruct::execute(&rec_args, "cryosplat demo: Gaussian splatting")?;
    // 3. Backprojection of the same particles with the same half split.
    say!("reconstructing by backprojection…");
    let bp_args = crate::cmd::backproject::Args {
        input,
        out: a.out.join("backproject"),
        pad: 2,
        wiener: None,
        threads: a.threads,
        seed: a.seed,
        downsample: None,
        no_ctf: false,
        sym: "C1".into(),
        overwrite: false,
        no_postprocess: true,
    };
    let (bp, _) = crate::cmd::backproject::execute(&bp_args)?;

    // 4. Both against the ground truth.
    bar.start("comparing", 1);
    let d = a.box_px;
    let gmap = MrcFile::open(a.out.join("gaussian/map.mrc"))?.read_all()?;
    let g_gt = gold_standard(&gmap, &gt, d, a.apix, MaskChoice::None, a.seed);
    let b_gt = gold_standard(&bp.map, &gt, d, a.apix, MaskChoice::None, a.seed);
    let g_half = MrcFile::open(a.out.join("gaussian/half_map_a.mrc"))?.read_all()?;
    let g_half_b = MrcFile::open(a.out.join("gaussian/half_map_b.mrc"))?.read_all()?;
    let g_gs = gold_standard(&g_half, &g_half_b, d, a.apix, MaskChoice::Auto, a.seed);
    bar.finish();
    let pts = |c: &[f64]| -> Vec<(f64, f64)> { c.iter().enumerate().map(|(n, &v)| (n as f64 / (d as f64 * a.apix), v)).collect() };
    let xmax = (d / 2) as f64 / (d as f64 * a.apix);
    let cmp_png = a.out.join("fsc_vs_ground_truth.png");
    crate::figures::line_plot(
        &cmp_png,
        "FSC against the ground truth",
        &crate::figures::Axes::frequency("FSC"),
        &[("Gaussian splatting", pts(&g_gt.unmasked)), ("backprojection", pts(&b_gt.unmasked)), ("0.5", vec![(0.0, 0.5), (xmax, 0.5)])],
    )?;
    let total_s = t0.elapsed().as_secs_f64();
    let rec_s = rec.seconds;
    let rows = [
        (
            "resolution against the ground truth (FSC 0.5)",
            res(g_gt.resolution_unmasked(0.5), a.apix).short(),
            res(b_gt.resolution_unmasked(0.5), a.apix).short(),
        ),
        ("reported resolution (FSC 0.143)", rec.last().resolution_0143.short(), res(bp.fsc.resolution(0.143), a.apix).short()),
        (
            "half-map FSC alone (0.143, corrected)",
            res(g_gs.resolution(0.143), a.apix).short(),
            res(bp.fsc.resolution(0.143), a.apix).short(),
        ),
        ("half-map FSC alone (0.5, corrected)", res(g_gs.resolution(0.5), a.apix).short(), res(bp.fsc.resolution(0.5), a.apix).short()),
        ("wall time", format!("{rec_s:.1} s"), format!("{:.1} s", bp.seconds)),
    ];
    say!("\n{:<48} {:>20} {:>20}", "", "Gaussian splatting", "backprojection");
    for (k, g, b) in &rows {
        say!("{k:<48} {g:>20} {b:>20}");
    }
    // A figure read beyond the estimate's reliable shells needs its reason beside the table.
    let bound = match (&rec.cross_validated, rec.last().half_map_0143) {
        (Some(cv), Some(half)) if cv.limited && cv.limit_0143.is_none() => Some(format!(
            "The Gaussian resolution is read beyond the shells the cross-validated estimate measures reliably (to {:.2} Å): the half maps claim {}, and their FSC is lowered there by the largest excess of that claim over the estimate ({:.3} in correlation with the truth).",
            cv.reliable_shell_a,
            half.short(),
            cv.excess
        )),
        _ => None,
    };
    if let Some(b) = &bound {
        say!("\n{b}");
    }
    say!("\nsimulation {sim_s:.1} s; whole demo {total_s:.1} s. Open {} in a browser.", a.out.join("report.html").display());
    let mut summary = Section::new("Results")
        .text(format!(
            "{} particles simulated from {MODEL_NAME} ({} px, {} Å/px, SNR {}, defocus 0.8–2.5 µm), reconstructed with the same half split by Gaussian splatting and by direct Fourier inversion.",
            a.particles, a.box_px, a.apix, a.snr
        ));
    if let Some(b) = &bound {
        summary = summary.text(b.clone());
    }
    for (k, g, b) in &rows {
        summary = summary.row(k.to_string(), format!("Gaussian splatting: {g}; backprojection: {b}"));
    }
    crate::figures::map_views(&bp.map, d, &a.out.join("backproject/slices.png"), &a.out.join("backproject/projections.png"))?;
    crate::figures::map_views(&gt, d, &a.out.join("particles/gt_slices.png"), &a.out.join("particles/gt_projections.png"))?;
    let sections = vec![
        summary.row("simulation time", format!("{sim_s:.1} s")).row("whole demo", format!("{total_s:.1} s")),
        Section::new("Against the ground truth").figure("FSC of each map against gt.mrc (unmasked)", &cmp_png),
        Section::new("Gaussian splatting")
            .text("Full report: gaussian/report.html. Outputs: gaussian/map.mrc, half maps, gaussians.ply, gaussians.cif.")
            .figure("Half-map FSC", a.out.join("gaussian/fsc.png"))
            .figure("Central slices", a.out.join("gaussian/slices.png"))
            .figure("Orthogonal projections", a.out.join("gaussian/projections.png"))
            .figure("Loss per epoch", a.out.join("gaussian/loss.png")),
        Section::new("Backprojection")
            .text("Outputs: backproject/map.mrc and half maps.")
            .figure("Half-map FSC", a.out.join("backproject/fsc.png"))
            .figure("Central slices", a.out.join("backproject/slices.png"))
            .figure("Orthogonal projections", a.out.join("backproject/projections.png")),
        Section::new("Ground truth")
            .figure("Central slices of gt.mrc", a.out.join("particles/gt_slices.png"))
            .figure("Orthogonal projections of gt.mrc", a.out.join("particles/gt_projections.png")),
    ];
    write_report(&a.out.join("report.html"), "cryosplat demo", &sections)?;
    let demo_json = serde_json::json!({
        "particles": a.particles, "box": a.box_px, "apix": a.apix, "snr": a.snr,
        "gaussian": {"fsc05_vs_gt": res(g_gt.resolution_unmasked(0.5), a.apix), "halfmap_0143": res(g_gs.resolution(0.143), a.apix), "reported_0143": rec.last().resolution_0143, "seconds": rec_s},
        "backproject": {"fsc05_vs_gt": res(b_gt.resolution_unmasked(0.5), a.apix), "halfmap_0143": res(bp.fsc.resolution(0.143), a.apix), "seconds": bp.seconds},
        "simulation_seconds": sim_s, "total_seconds": total_s,
    });
    cryosplat_formats::atomic::write_bytes_atomic(&a.out.join("demo.json"), serde_json::to_string_pretty(&demo_json)?.as_bytes())?;
    Ok(())
}
