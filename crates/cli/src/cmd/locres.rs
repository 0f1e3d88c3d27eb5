//! `cryosplat locres`: local resolution from windowed half-map FSC
//! ([`cryosplat_core::locres`]). Writes into the output folder `locres.mrc` (Å; 0 outside the
//! mask), `locres_map.mrc` (the average of the half maps), `locres.png` (a histogram of the
//! sample points), `slices.png` (the central slices of the average coloured by local
//! resolution, [`crate::figures::locres_slices`]), `report.html` (a summary, the histogram and
//! the slices), `locres.json` and `locres.cxc`, a ChimeraX command file that opens the
//! average and colours its surface by local resolution with the same palette and range as the
//! slices. Earlier results in the folder are refused unless `--overwrite` is given.

use crate::cmd::mask::{self as maskcmd, parse_positive};
use anyhow::{bail, Context, Result};
use cryosplat_core::fsc::check_maps_labelled;
use cryosplat_core::locres::{local_resolution, LocresParams};
use cryosplat_formats::mrc::{self, MrcFile, WriteOptions};
use cryosplat_train::output::{Existing, OutputDir};
use std::path::PathBuf;

/// The files `locres` writes into its folder; all are among the folder's result
/// files (`cryosplat_train::output::RESULT_FILES`), which refuses or clears them (tested).
#[cfg(test)]
pub const FILES: &[&str] = &["locres.mrc", "locres_map.mrc", "locres.png", "locres.json", "locres.cxc", "slices.png", "report.html"];

#[derive(clap::Args)]
pub struct Args {
    /// Half map A.
    pub half_a: PathBuf,
    /// Half map B.
    pub half_b: PathBuf,
    /// Output folder.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Mask (MRC): local resolution is measured where it exceeds 0.5. Without one, everywhere.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Radius of the flat part of the spherical window (Å) [default: 6 px or 12 Å, whichever is larger].
    #[arg(long, value_parser = parse_positive)]
    pub radius: Option<f64>,
    /// Spacing of the sample points in voxels.
    #[arg(long, default_value_t = 2)]
    pub step: usize,
    /// FSC threshold.
    #[arg(long, default_value_t = 0.143)]
    pub threshold: f64,
    /// Pixel size in Å (when the headers give none, or to override them).
    #[arg(long, value_parser = parse_positive)]
    pub apix: Option<f64>,
    /// Replace the results of an earlier run in the folder.
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(a: Args) -> Result<()> {
    let mut out = OutputDir::open(&a.out, Existing::from_flags(false, a.overwrite), "locres")?;
    if a.step == 0 {
        bail!("--step 0: the sample spacing must be at least 1 voxel");
    }
    let (va, d, apix) = maskcmd::read_cubic(&a.half_a, a.apix)?;
    let (vb, db, _) = maskcmd::read_cubic(&a.half_b, Some(apix))?;
    if db != d {
        bail!("{} is {db}³ but {} is {d}³: the half maps must have the same box", a.half_b.display(), a.half_a.display());
    }
    let labels = [format!("{} (half map A)", a.half_a.display()), format!("{} (half map B)", a.half_b.display())];
    check_maps_labelled(&va, &vb, [&labels[0], &labels[1]]).map_err(|e| anyhow::anyhow!("no local resolution: {e}"))?;
    let gaussian = crate::gaussian_halves::detect(&a.half_a, &a.half_b);
    if let Some(g) = &gaussian {
        tracing::warn!("{}", g.warning("the local resolution"));
    }
    let mask = match &a.mask {
        Some(p) => {
            let m = MrcFile::open(p).with_context(|| format!("reading the mask {}", p.display()))?;
            let h = m.header();
            if [h.nx, h.ny, h.nz] != [d, d, d] {
                bail!("{}: the mask is {}×{}×{}, the maps {d}³", p.display(), h.nx, h.ny, h.nz);
            }
            let v = m.read_all()?;
            if !v.iter().any(|&x| x > 0.5) {
                bail!("{}: no voxel of the mask exceeds 0.5; nothing to measure", p.display());
            }
            Some(v)
        }
        None => None,
    };
    let radius_px = a.radius.map_or((12.0 / apix).max(6.0), |r| r / apix);
    let params = LocresParams { radius_px, edge_px: (radius_px / 2.0).max(2.0), step_px: a.step, threshold: a.threshold };
    let lr = local_resolution(&va, &vb, d, apix, mask.as_deref(), &params);
    let avg: Vec<f32> = va.iter().zip(&vb).map(|(x, y)| 0.5 * (x + y)).collect();
    let label = |what: &str| WriteOptions { label: format!("cryosplat locres: {what}"), ..Default::default() };
    for (name, values, what) in [("locres.mrc", &lr.map_a, "local resolution (A)"), ("locres_map.mrc", &avg, "average of the half maps")] {
        let p = out.path(name);
        mrc::write_volume(&p, values, [d, d, d], apix, &label(what))?;
        out.record(p);
    }
    let mut vals: Vec<f64> = lr.samples.iter().map(|s| s.1).collect();
    vals.sort_by(f64::total_cmp);
    let (lo, med, hi) = (vals[0], vals[vals.len() / 2], vals[vals.len() - 1]);
    // Nyquist is the finest value a window can give (a curve that never crosses the threshold).
    let nyquist_a = 2.0 * apix;
    let at_nyquist = vals.iter().filter(|&&v| v <= nyquist_a * (1.0 + 1e-9)).count() as f64 / vals.len() as f64;
    let p = out.path("locres.png");
    crate::figures::histogram(&p, "local resolution at the sample points", "resolution (Å)", &vals, 30)?;
    out.record(p);
    let level = cryosplat_core::mask::auto_threshold(&avg).map_or(0.0, |t| t.threshold);
    let cxc = format!(
        "# ChimeraX: the average of the half maps coloured by local resolution (Å).\n{}\
         open locres_map.mrc\nopen locres.mrc\nvolume #1 level {level} style surface\nvolume #2 hide\n\
         color sample #1 map #2 palette rainbow range {lo:.2},{hi:.2}\nkey rainbow :{lo:.1} :{hi:.1}\n",
        crate::cmd::postprocess::CXC_PATHS_NOTE
    );
    let p = out.path("locres.cxc");
    cryosplat_formats::atomic::write_bytes_atomic(&p, cxc.as_bytes())?;
    out.record(p);
    let p = out.path("slices.png");
    crate::figures::locres_slices(&p, &avg, &lr.map_a, d, (lo, hi))?;
    out.record(p);
    let mask_text = match &a.mask {
        Some(m) => format!("{} (local resolution measured where it exceeds 0.5)", m.display()),
        None => "none: measured over the whole box".to_string(),
    };
    let section = crate::report::Section::new("Local resolution")
        .text(format!(
            "The FSC of the two half maps inside a soft spherical window around each sample point, read at {}; every voxel takes the value of its nearest sample point (locres.mrc, Å). Nyquist ({nyquist_a:.2} Å) is the finest value a window can give: a point there may be finer. locres.cxc colours the surface of locres_map.mrc (the average of the half maps) in ChimeraX with the palette of the slices below.",
            params.threshold
        ))
        .row("half maps", format!("{}, {}", a.half_a.display(), a.half_b.display()))
        .row("box / pixel size", format!("{d} px / {apix:.4} Å"))
        .row("mask", mask_text)
        .row(
            "window",
            format!("flat radius {:.1} px, cosine edge {:.1} px, a {} px box; sample points every {} px", params.radius_px, params.edge_px, lr.window_px, params.step_px),
        )
        .row("sample points", format!("{}", vals.len()))
        .row("median", format!("{med:.2} Å"))
        .row("range", format!("{lo:.2}–{hi:.2} Å"))
        .row("at Nyquist", format!("{:.1}% of the points", 100.0 * at_nyquist));
    let section = match &gaussian {
        Some(g) => section.row("Gaussian half maps", g.warning("the local resolution")),
        None => section,
    };
    let section = section.figure("Local resolution at the sample points", out.path("locres.png")).figure(
        format!("Central slices of the average coloured by local resolution ({lo:.2} Å red to {hi:.2} Å blue; grey outside the mask)"),
        out.path("slices.png"),
    );
    let p = out.path("report.html");
    crate::report::write_report(&p, "cryosplat locres", &[section])?;
    out.record(p);
    let json = serde_json::json!({
        "half_maps": [a.half_a.to_string_lossy(), a.half_b.to_string_lossy()],
        "box": d,
        "apix": apix,
        "mask": a.mask.as_ref().map(|p| p.to_string_lossy().into_owned()),
        "window_px": lr.window_px,
        "radius_px": params.radius_px,
        "edge_px": params.edge_px,
        "step_px": params.step_px,
        "threshold": params.threshold,
        "samples": lr.samples.len(),
        "min_a": lo,
        "median_a": med,
        "max_a": hi,
        "fraction_at_nyquist": at_nyquist,
        // Half maps `reconstruct` wrote: what their run reports (crate::gaussian_halves).
        "gaussian_half_maps": gaussian.as_ref().map(|g| g.json()),
    });
    let p = out.path("locres.json");
    cryosplat_formats::atomic::write_bytes_atomic(&p, serde_json::to_string_pretty(&json)?.as_bytes())?;
    out.record(p);
    say!(
        "local resolution at {} points (window {} px, FSC {}): {lo:.2}–{hi:.2} Å, median {med:.2} Å, {:.1}% at Nyquist; wrote {}",
        lr.samples.len(),
        lr.window_px,
        params.threshold,
        100.0 * at_nyquist,
        out.dir().display()
    );
    Ok(())
}
