//! `cryosplat postprocess`: FSC weighting, automatic sharpening and a low-pass at the
//! resolution of a pair of half maps ([`cryosplat_core::postprocess`]).
//!
//! Writes into the output folder `postprocess.mrc` (the sharpened average, unmasked),
//! `postprocess_masked.mrc` (times the mask), `mask.mrc` (the mask used), `postprocess.json`
//! (resolution, B-factor, the fit's range and quality, whether the guard refused the fit, and
//! the curves), `fsc.png`, `guinier.png` and `view.cxc` (a ChimeraX command file that opens
//! the masked map as a surface at the threshold [`cryosplat_core::mask::auto_threshold`] picks
//! on the unmasked one), `slices.png` (central slices of the sharpened map) and `report.html`
//! (the results, the plots and the slices). A folder holding results of an earlier run is
//! refused unless `--overwrite` is given, as for `cryosplat fsc -o` (`FILES` are among the
//! folder's result files).

use crate::cmd::mask::{self as maskcmd, parse_positive};
use anyhow::{bail, Context, Result};
use cryosplat_core::fsc::{check_maps_labelled, Resolution};
use cryosplat_core::postprocess::{
    postprocess, postprocess_map, BFactorChoice, BFactorFit, GuinierMap, Options, Postprocessed, DEFAULT_AUTOB_LOWRES_A,
};
use cryosplat_formats::mrc::{self, MrcFile, WriteOptions};
use cryosplat_train::output::{insert_reported_json, insert_resolution_json, Existing, OutputDir, ReportedResolution};
use std::path::{Path, PathBuf};

/// The files `postprocess` writes into its folder; all are among the folder's result
/// files (`cryosplat_train::output::RESULT_FILES`), which refuses or clears them (tested).
#[cfg(test)]
pub const FILES: &[&str] = &[
    "postprocess.mrc",
    "postprocess_masked.mrc",
    "mask.mrc",
    "postprocess.json",
    "fsc.png",
    "guinier.png",
    "view.cxc",
    "slices.png",
    "report.html",
];

/// `--bfactor`: "auto" or a B in Å² (negative sharpens).
fn parse_bfactor(s: &str) -> Result<BFactorChoice, String> {
    if s.trim() == "auto" {
        return Ok(BFactorChoice::Auto);
    }
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(BFactorChoice::Given(v)),
        _ => Err(format!("{s:?} is neither \"auto\" nor a finite B-factor in Å²")),
    }
}

fn parse_guinier_map(s: &str) -> Result<GuinierMap, String> {
    match s.trim() {
        "masked" => Ok(GuinierMap::Masked),
        "unmasked" => Ok(GuinierMap::Unmasked),
        _ => Err(format!("{s:?} is neither \"masked\" nor \"unmasked\"")),
    }
}

/// The option's spelling of a [`GuinierMap`].
fn guinier_map_name(g: GuinierMap) -> &'static str {
    match g {
        GuinierMap::Masked => "masked",
        GuinierMap::Unmasked => "unmasked",
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Half map A.
    pub half_a: PathBuf,
    /// Half map B.
    pub half_b: PathBuf,
    /// Output folder.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Mask: an MRC file, or "auto" (made from the average of the half maps as `cryosplat mask`
    /// does with its defaults).
    #[arg(long, default_value = "auto")]
    pub mask: String,
    /// B-factor in Å² (negative sharpens), or "auto" (fitted to the Guinier plot).
    #[arg(long, default_value = "auto", value_parser = parse_bfactor, allow_hyphen_values = true)]
    pub bfactor: BFactorChoice,
    /// Low-resolution limit of the B-factor fit (Å).
    #[arg(long, default_value_t = DEFAULT_AUTOB_LOWRES_A, value_parser = parse_positive)]
    pub autob_lowres: f64,
    /// High-resolution limit of the B-factor fit (Å); the FSC resolution when not given.
    /// RELION 5's default fit runs to Nyquist: give twice the pixel size to do the same.
    #[arg(long, value_parser = parse_positive)]
    pub autob_highres: Option<f64>,
    /// Low-pass resolution (Å); the FSC resolution when not given.
    #[arg(long, value_parser = parse_positive)]
    pub lowpass: Option<f64>,
    /// The average of the half maps the Guinier plot is made from: "masked" (inside the mask,
    /// the default) or "unmasked" (the whole box, as RELION's post-processing does; its solvent
    /// noise makes the B found smaller in magnitude).
    #[arg(long, default_value = "masked", value_parser = parse_guinier_map)]
    pub guinier_map: GuinierMap,
    /// Pixel size in Å (when the headers give none, or to override them).
    #[arg(long, value_parser = parse_positive)]
    pub apix: Option<f64>,
    /// Replace the results of an earlier run in the folder.
    #[arg(long)]
    pub overwrite: bool,
    /// Seed of the phase randomisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The note at the top of every ChimeraX command file we write (`view.cxc`, `locres.cxc`).
///
/// The files name the maps beside them by bare relative names (`open map.mrc`). ChimeraX
/// resolves those against the script's own folder however the script is opened: the ChimeraX
/// Programming Manual, page "scripting: support reading and executing scripts"
/// (`open_command_script`, which opens `.cxc` files), says the current directory is changed to
/// the file's directory before its commands are executed and restored afterwards. So no `cd`
/// and no absolute paths (which would break when the folder is moved or copied) are needed.
/// Tests resolve every `open` of the files written by that rule and check that the file exists.
pub const CXC_PATHS_NOTE: &str =
    "# ChimeraX runs this file in its own folder, so open it from anywhere (File > Open, or `open /path/to/this.cxc`)\n";

pub fn run(a: Args) -> Result<()> {
    // The output folder is taken first, so that a refused folder costs no work.
    // Its files are among the folder's result files (FILES ⊂ RESULT_FILES, tested), so the
    // folder refuses or clears them with the rest.
    let mut out = OutputDir::open(&a.out, Existing::from_flags(false, a.overwrite), "postprocess")?;
    let (va, d, apix_a) = maskcmd::read_cubic(&a.half_a, a.apix)?;
    let (vb, db, apix_b) = maskcmd::read_cubic(&a.half_b, a.apix)?;
    if db != d {
        bail!("{} is {db}³ but {} is {d}³: the half maps must have the same box", a.half_b.display(), a.half_a.display());
    }
    if (apix_a - apix_b).abs() > 1e-3 * apix_a {
        bail!(
            "{} has {apix_a} Å/px but {} has {apix_b} Å/px; resample one, or give --apix to override",
            a.half_a.display(),
            a.half_b.display()
        );
    }
    let apix = apix_a;
    let labels = [format!("{} (half map A)", a.half_a.display()), format!("{} (half map B)", a.half_b.display())];
    check_maps_labelled(&va, &vb, [&labels[0], &labels[1]]).map_err(|e| anyhow::anyhow!("no resolution: {e}"))?;
    // Gaussian half maps: their run's limit applies, as to the run's own post-processing.
    let from_run = crate::gaussian_halves::detect(&a.half_a, &a.half_b).map(FromRun::of).transpose()?;
    let (mask, mask_json, mask_text) = if a.mask == "auto" {
        let avg: Vec<f32> = va.iter().zip(&vb).map(|(x, y)| 0.5 * (x + y)).collect();
        let made = maskcmd::make(&avg, d, apix, &maskcmd::Settings::DEFAULT, "the average of the half maps")?;
        let text = format!("auto, from the average of the half maps: {}", maskcmd::describe(&made));
        say!("mask: {text}");
        let s = maskcmd::Settings::DEFAULT;
        let j = serde_json::json!({ "source": "auto", "threshold": made.threshold, "extend_px": s.extend_px, "soft_edge_px": s.soft_edge_px, "lowpass_a": s.lowpass_a });
        let text = format!(
            "{text}; extended {} px, soft edge {} px, made on the map low-passed at {}",
            s.extend_px,
            s.soft_edge_px,
            s.lowpass_a.map_or("no low-pass".to_string(), |l| format!("{l} Å"))
        );
        (made.mask, j, text)
    } else {
        let m = MrcFile::open(&a.mask).with_context(|| format!("reading the mask {}", a.mask))?;
        let h = m.header();
        if [h.nx, h.ny, h.nz] != [d, d, d] {
            bail!("{}: the mask is {}×{}×{}, the maps {d}³", a.mask, h.nx, h.ny, h.nz);
        }
        let v = m.read_all()?;
        if let Some(bad) = v.iter().find(|x| !(x.is_finite() && (-1e-3..=1.0 + 1e-3).contains(*x))) {
            bail!("{}: a mask holds values in [0, 1], this one holds {bad}", a.mask);
        }
        (v, serde_json::json!({ "source": a.mask }), format!("{} (given)", a.mask))
    };
    let opts = Options {
        bfactor: a.bfactor,
        autob_lowres_a: a.autob_lowres,
        autob_highres_a: a.autob_highres,
        lowpass_a: a.lowpass,
        resolution_limit_a: from_run.as_ref().and_then(|f| f.limit_a),
        seed: a.seed,
        guinier_map: a.guinier_map,
    };
    let p = postprocess(&va, &vb, d, apix, &mask, &opts)?;
    if let Some(f) = &from_run {
        tracing::warn!("{}", f.words(&p, apix));
    }
    write_outputs(&mut out, &p, (&mask, &mask_json), d, apix, &a, from_run.as_ref())?;
    write_report(&mut out, &p, &mask_text, d, apix, &a, from_run.as_ref())?;
    print_summary(&p, apix, &out, from_run.as_ref());
    Ok(())
}

/// The FSC's own resolution where a run's limit replaced it ([`run_limit`]).
fn own_resolution(p: &Postprocessed) -> Option<Resolution> {
    Some(p.fsc.resolution(0.143)).filter(|&r| r != p.resolution)
}

/// The resolution stated: a bound where a run's bound (`bound`) set it.
fn stated_resolution(p: &Postprocessed, bound: bool, apix: f64) -> ReportedResolution {
    match (own_resolution(p), p.resolution) {
        (Some(_), Resolution::Angstrom(a)) if bound => ReportedResolution::AtLeast { angstrom: a },
        _ => ReportedResolution::new(p.resolution, apix),
    }
}

/// Gaussian half maps given to `postprocess` ([`crate::gaussian_halves`]) and the limit the
/// run's `run.json` beside them sets ([`run_limit`]; none where there is no run.json).
struct FromRun {
    halves: crate::gaussian_halves::GaussianHalves,
    limit_a: Option<f64>,
    /// The limit is the run's bound at the last shell its estimate reaches.
    bound: bool,
}

impl FromRun {
    fn of(halves: crate::gaussian_halves::GaussianHalves) -> Result<Self> {
        let (limit_a, bound) = match &halves.run {
            Some(r) => run_limit(&r.json).map_err(|e| anyhow::anyhow!("{} (the half maps' run): {e}", r.path.display()))?,
            None => (None, false),
        };
        Ok(FromRun { halves, limit_a, bound })
    }

    fn stated(&self, p: &Postprocessed, apix: f64) -> ReportedResolution {
        stated_resolution(p, self.bound, apix)
    }

    /// The warning, and whether the run's figure set the resolution here.
    fn words(&self, p: &Postprocessed, apix: f64) -> String {
        let applied = match own_resolution(p) {
            Some(own) => format!(
                ". Here the run's figure applies: the resolution, the end of the B-factor fit and the low-pass (unless given) are at {} (this FSC alone: {})",
                self.stated(p, apix).short(),
                own.describe(apix)
            ),
            None => String::new(),
        };
        format!("{}{applied}", self.halves.warning("the resolution read here, and the low-pass at it,"))
    }

    fn json(&self, p: &Postprocessed, apix: f64) -> serde_json::Value {
        let mut j = self.halves.json();
        j["run_limit_applied"] = serde_json::json!(own_resolution(p).is_some());
        j["half_map_0143"] =
            serde_json::to_value(own_resolution(p).map(|r| ReportedResolution::new(r, apix))).expect("a resolution serialises");
        j
    }
}

fn write_outputs(
    out: &mut OutputDir,
    p: &Postprocessed,
    (mask, mask_json): (&[f32], &serde_json::Value),
    d: usize,
    apix: f64,
    a: &Args,
    from_run: Option<&FromRun>,
) -> Result<()> {
    let label = |what: &str| WriteOptions { label: format!("cryosplat postprocess: {what}"), ..Default::default() };
    for (name, values, what) in [
        ("postprocess.mrc", &p.map, "sharpened"),
        ("postprocess_masked.mrc", &p.masked, "sharpened, masked"),
        ("mask.mrc", &mask.to_vec(), "mask"),
    ] {
        let path = out.path(name);
        mrc::write_volume(&path, values, [d, d, d], apix, &label(what))?;
        out.record(path);
    }
    let fit = p.fit.as_ref().map(fit_json);
    let curve: Vec<serde_json::Value> = (0..p.fsc.unmasked.len())
        .map(|n| {
            serde_json::json!({
                "shell": n,
                "frequency_inv_a": p.fsc.frequency(n),
                "fsc_unmasked": p.fsc.unmasked[n],
                "fsc_masked": p.fsc.masked.as_ref().map(|c| c[n]),
                "fsc_corrected": p.fsc.final_curve()[n],
                "weight": p.weights[n],
            })
        })
        .collect();
    let guinier: Vec<serde_json::Value> = p
        .guinier
        .iter()
        .map(|g| {
            serde_json::json!({
                "shell": g.shell,
                "s2_inv_a2": g.s2_inv_a2,
                "ln_amp_original": g.ln_amp_original,
                "ln_amp_weighted": g.ln_amp_weighted,
                "ln_amp_sharpened": g.ln_amp_sharpened,
            })
        })
        .collect();
    let mut json = serde_json::json!({
        "half_maps": [a.half_a.to_string_lossy(), a.half_b.to_string_lossy()],
        "box": d,
        "apix": apix,
        "mask": mask_json,
        "randomised_from_shell": p.fsc.randomized_from_shell,
        "bfactor": p.bfactor_a2,
        "bfactor_mode": match a.bfactor { BFactorChoice::Auto => "auto", BFactorChoice::Given(_) => "given" },
        "guinier_map": guinier_map_name(a.guinier_map),
        "fit": fit,
        "fit_refused": p.fallback.as_ref().map(|f| f.to_string()),
        "lowpass_a": p.lowpass_a,
        "curve": curve,
        "guinier": guinier,
        // Half maps `reconstruct` wrote: what their run reports (crate::gaussian_halves), and
        // whether its limit set the resolution here.
        "gaussian_half_maps": from_run.map(|f| f.json(p, apix)),
    });
    insert_reported_json(
        &mut json,
        "resolution_0143",
        Ok(from_run.map_or(ReportedResolution::new(p.resolution, apix), |f| f.stated(p, apix))),
    );
    insert_resolution_json(&mut json, "resolution_0143_unmasked", Ok(p.fsc.resolution_unmasked(0.143)), apix);
    let path = out.path("postprocess.json");
    cryosplat_formats::atomic::write_bytes_atomic(&path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    out.record(path);
    let mask_label = if a.mask == "auto" { "auto mask".to_string() } else { a.mask.clone() };
    let path = out.path("fsc.png");
    crate::figures::postprocess_fsc_plot(&path, p, &mask_label)?;
    out.record(path);
    let path = out.path("guinier.png");
    crate::figures::guinier_plot(&path, p)?;
    out.record(path);
    let level = cryosplat_core::mask::auto_threshold(&p.map).map_or(0.0, |t| t.threshold);
    let cxc = format!(
        "# ChimeraX: the post-processed map (B = {:.1} A^2, low-pass {:.2} A).\n{CXC_PATHS_NOTE}\
         open postprocess_masked.mrc\nvolume #1 level {level} style surface color #b0c4de\nview\n",
        p.bfactor_a2, p.lowpass_a
    );
    let path = out.path("view.cxc");
    cryosplat_formats::atomic::write_bytes_atomic(&path, cxc.as_bytes())?;
    out.record(path);
    Ok(())
}

/// `slices.png` (central slices of the sharpened map, unmasked) and `report.html`: the results
/// (resolution, B and how it was found, low-pass, mask), the FSC and Guinier plots and the
/// slices.
fn write_report(
    out: &mut OutputDir,
    p: &Postprocessed,
    mask_text: &str,
    d: usize,
    apix: f64,
    a: &Args,
    from_run: Option<&FromRun>,
) -> Result<()> {
    let path = out.path("slices.png");
    crate::figures::slices(&path, &p.map, d)?;
    out.record(path);
    let bfactor_row = match a.bfactor {
        BFactorChoice::Auto if p.fit.is_some() => format!("{:.1} Å² (automatic)", p.bfactor_a2),
        BFactorChoice::Auto => format!("{:.1} Å² (automatic fit refused: not sharpened)", p.bfactor_a2),
        BFactorChoice::Given(_) => format!("{:.1} Å² (given)", p.bfactor_a2),
    };
    let section = crate::report::Section::new("Post-processing")
        .text("postprocess.mrc: the average of the half maps, weighted per shell by sqrt(2·FSC/(1+FSC)) of the masked, corrected FSC, multiplied by exp(−B s²/4) and low-passed at the resolution; postprocess_masked.mrc is the same times the mask (mask.mrc).")
        .row("half maps", format!("{}, {}", a.half_a.display(), a.half_b.display()))
        .row("box / pixel size", format!("{d} px / {apix:.4} Å"))
        .row(
            "resolution (FSC 0.143, masked, corrected by phase randomisation)",
            from_run.map_or(p.resolution.describe(apix), |f| f.stated(p, apix).to_string()),
        )
        .row("resolution (FSC 0.143, unmasked)", p.fsc.resolution_unmasked(0.143).describe(apix))
        .row("B-factor", bfactor_row)
        .row("B-factor fit", fit_text(p))
        .row("low-pass", format!("{:.2} Å", p.lowpass_a))
        .row("mask", mask_text);
    let section = match from_run {
        Some(f) => section.row("Gaussian half maps", f.words(p, apix)),
        None => section,
    };
    let section = section
        .figure("FSC: unmasked, masked, corrected, and the FSC weights", out.path("fsc.png"))
        .figure("Guinier plot: ln(amplitude) against 1/d², with the fitted line", out.path("guinier.png"))
        .figure("Central slices of postprocess.mrc", out.path("slices.png"));
    let path = out.path("report.html");
    crate::report::write_report(&path, "cryosplat postprocess", &[section])?;
    out.record(path);
    Ok(())
}

/// The fit's range and quality, or why it was refused, for people.
fn fit_text(p: &Postprocessed) -> String {
    match (&p.fit, &p.fallback) {
        (Some(f), _) => format!(
            "{:.2}–{:.2} Å (shells {}–{}, {} points), r = {:.3} (r² = {:.3})",
            f.low_res_a,
            f.high_res_a,
            f.shells.0,
            f.shells.1,
            f.line.points,
            f.line.correlation,
            f.line.correlation.powi(2)
        ),
        (None, Some(why)) => format!("refused: {why}"),
        (None, None) => "none (B given)".to_string(),
    }
}

fn print_summary(p: &Postprocessed, apix: f64, out: &OutputDir, from_run: Option<&FromRun>) {
    match from_run.and_then(|f| own_resolution(p).map(|own| (f.stated(p, apix), own))) {
        Some((stated, own)) => say!(
            "resolution (masked, corrected FSC at 0.143): {}, the run's figure (this FSC alone: {})",
            stated.short(),
            own.describe(apix)
        ),
        None => say!("resolution (masked, corrected FSC at 0.143): {}", p.resolution.describe(apix)),
    }
    match (&p.fit, &p.fallback) {
        (Some(f), _) => say!(
            "B-factor: {:.1} Å² (Guinier fit over {:.2}–{:.2} Å, shells {}–{}, r = {:.3})",
            p.bfactor_a2,
            f.low_res_a,
            f.high_res_a,
            f.shells.0,
            f.shells.1,
            f.line.correlation
        ),
        (None, Some(why)) => say!("B-factor: not sharpened (B = 0): {why}"),
        (None, None) => say!("B-factor: {:.1} Å² (given)", p.bfactor_a2),
    }
    say!("low-pass at {:.2} Å; wrote {}", p.lowpass_a, out.dir().display());
}

/// The limit a run's `run.json` sets on a resolution read from its half maps: `(Some(Å), bound)`
/// where its cross-validated estimate reads a figure, `(None, false)` where it sets none (a
/// backprojection, or a figure that is the half maps' own); an error where the run reports no
/// resolution.
///
/// A run that reports no resolution (its cross-validated estimate confirms no shell, while the
/// half maps alone may still agree) has none to filter at: a sharpened map with a resolution of
/// its own would claim what the run does not. The run's cross-validated limit
/// (`cross_validated.limit_0143`): when it is coarser than the half maps' FSC, the map is
/// low-passed, its B-factor fitted and its resolution reported there. Where the estimate held to
/// its last shell, what it read beyond (`beyond_0143`, the half maps' curve lowered by their
/// excess over it): the same. Where the estimate was not reliable up to its last shell (and runs
/// of earlier versions, wherever it held to it), the run reports a bound at that shell
/// (`resolution_details.resolution_0143`, "at_least"), stated as a bound (`true`) here too.
fn run_limit(run: &serde_json::Value) -> Result<(Option<f64>, bool)> {
    if run["resolution_details"]["resolution_0143"]["kind"] == "no_correlation" {
        bail!("the run reports no resolution at FSC 0.143 (run.json's resolution_0143 is null; resolution_method names the curve), so there is none to low-pass and sharpen at");
    }
    let cv = &run["cross_validated"];
    let (limit, beyond, reported) = (&cv["limit_0143"], &cv["beyond_0143"], &run["resolution_details"]["resolution_0143"]);
    let found = match (limit["kind"].as_str(), beyond["kind"].as_str(), reported["kind"].as_str()) {
        (Some("crossing"), _, _) => limit["angstrom"].as_f64().map(|a| (Some(a), false)),
        (_, Some("crossing"), _) => beyond["angstrom"].as_f64().map(|a| (Some(a), false)),
        (_, _, Some("at_least")) => reported["angstrom"].as_f64().map(|a| (Some(a), true)),
        _ => None,
    };
    Ok(found.unwrap_or((None, false)))
}

/// Post-processing at the end of `reconstruct` and `backproject` (unless `--no-postprocess`):
/// the run's half maps (`half_map_a.mrc`, `half_map_b.mrc` in `dir`) with the automatic mask
/// of `cryosplat mask` and the automatic B of `cryosplat postprocess`, with their defaults.
/// Writes `map_sharp.mrc` (FSC-weighted, sharpened, low-passed at the resolution; unmasked) and
/// `map_sharp_mask.mrc` (the mask), adds a `postprocess` object to `run.json` (B-factor, the
/// masked corrected resolution, the fit or why it was refused), adds a "Post-processing" section
/// with its FSC and Guinier plots (`postprocess_fsc.png`, `guinier.png`) to `report.html` when
/// the run wrote one, and prints one line. The files it writes are among the folder's result
/// files (`cryosplat_train::output::RESULT_FILES`), so a later run
/// refuses or clears them with the rest.
pub fn after_run(dir: &Path, what: &str) -> Result<Postprocessed> {
    let (va, d, apix) = maskcmd::read_cubic(&dir.join("half_map_a.mrc"), None)?;
    let (vb, _, _) = maskcmd::read_cubic(&dir.join("half_map_b.mrc"), Some(apix))?;
    let avg: Vec<f32> = va.iter().zip(&vb).map(|(x, y)| 0.5 * (x + y)).collect();
    let made = maskcmd::make(&avg, d, apix, &maskcmd::Settings::DEFAULT, "the average of the half maps")?;
    // A completed reconstruction (run.json's `completion`) sharpens its map.mrc, which holds
    // what the images show beyond the Gaussians; the half maps give the FSC.
    let run = crate::gaussian_halves::run_json_in(dir).map(|(_, json)| json);
    let completed = run.as_ref().is_some_and(|run| !run["completion"].is_null());
    // The run's limit ([`run_limit`]), so that map_sharp.mrc does not claim what the run does not.
    let (limit_a, bound) = match &run {
        Some(run) => run_limit(run)?,
        None => (None, false),
    };
    let opts = Options { resolution_limit_a: limit_a, ..Options::default() };
    let p = if completed {
        let (full, _, _) = maskcmd::read_cubic(&dir.join("map.mrc"), Some(apix))?;
        postprocess_map(&va, &vb, &full, d, apix, &made.mask, &opts)?
    } else {
        postprocess(&va, &vb, d, apix, &made.mask, &opts)?
    };
    // The FSC's own resolution, where the limit replaced it; and the resolution stated, a bound
    // where the limit is the run's bound.
    let (own, stated) = (own_resolution(&p), stated_resolution(&p, bound, apix));
    let source = if completed { "map.mrc (completed)" } else { "the average of the half maps" };
    let label = |x: &str| WriteOptions { label: format!("cryosplat {what}: {x}"), ..Default::default() };
    mrc::write_volume(&dir.join("map_sharp.mrc"), &p.map, [d, d, d], apix, &label("post-processed (FSC-weighted, sharpened, low-passed)"))?;
    mrc::write_volume(&dir.join("map_sharp_mask.mrc"), &made.mask, [d, d, d], apix, &label("post-processing mask"))?;
    let report = dir.join("report.html");
    let mut written = vec!["map_sharp.mrc", "map_sharp_mask.mrc"];
    if report.exists() {
        written.extend(["postprocess_fsc.png", "guinier.png"]);
    }
    update_run_json(dir, &written, |run| {
        let Some(o) = run.as_object_mut() else { return };
        o.insert(
            "postprocess".into(),
            serde_json::json!({
                "map": "map_sharp.mrc",
                "from": source,
                "mask": { "file": "map_sharp_mask.mrc", "threshold": made.threshold },
                "resolution_0143": stated.angstrom(),
                "resolution_details": { "resolution_0143": stated },
                "resolution_method": match (own, bound) {
                    (Some(_), false) => "the run's cross-validated limit, coarser than the masked half-map FSC (post-processing mask, corrected by phase randomisation)",
                    (Some(_), true) => "the run's bound at the last shell its cross-validated estimate reaches, coarser than the masked half-map FSC (post-processing mask, corrected by phase randomisation)",
                    (None, _) => "masked half-map FSC (post-processing mask), corrected by phase randomisation",
                },
                "half_map_0143": own.map(|r| ReportedResolution::new(r, apix)),
                "bfactor": p.bfactor_a2,
                "guinier_map": guinier_map_name(Options::default().guinier_map),
                "fit": p.fit.as_ref().map(fit_json),
                "fit_refused": p.fallback.as_ref().map(|f| f.to_string()),
                "lowpass_a": p.lowpass_a,
            }),
        );
    })?;
    if report.exists() {
        crate::figures::postprocess_fsc_plot(&dir.join("postprocess_fsc.png"), &p, "automatic post-processing mask")?;
        crate::figures::guinier_plot(&dir.join("guinier.png"), &p)?;
        let section = crate::report::Section::new("Post-processing")
            .text(format!("map_sharp.mrc: {source}, weighted per shell by sqrt(2·FSC/(1+FSC)) of the half maps, sharpened by the automatic B-factor and low-passed at the resolution; the FSC here is read with the post-processing mask (map_sharp_mask.mrc), so it can differ from the result above, which uses the FSC's own automatic mask."))
            .row(
                "resolution (FSC 0.143, post-processing mask, corrected)",
                match own {
                    Some(own) if bound => format!(
                        "{}: the last shell the run's cross-validated estimate reaches (this FSC alone: {}); the map is low-passed there",
                        stated.short(),
                        own.describe(apix)
                    ),
                    Some(own) => format!(
                        "{}: the run's cross-validated limit (this FSC alone: {}); the map is low-passed there",
                        p.resolution.describe(apix),
                        own.describe(apix)
                    ),
                    None => p.resolution.describe(apix),
                },
            )
            .row("B-factor", format!("{:.1} Å²", p.bfactor_a2))
            .row("B-factor fit", fit_text(&p))
            .row("low-pass", format!("{:.2} Å", p.lowpass_a))
            .figure("FSC with the post-processing mask", dir.join("postprocess_fsc.png"))
            .figure("Guinier plot", dir.join("guinier.png"));
        crate::report::append_sections(&report, &[section])?;
    }
    match (&p.fit, &p.fallback) {
        (Some(f), _) => say!(
            "post-processed: {} at FSC 0.143 (post-processing mask), B-factor {:.1} Å² (Guinier fit {:.2}–{:.2} Å, r = {:.3}): map_sharp.mrc",
            p.resolution.describe(apix),
            p.bfactor_a2,
            f.low_res_a,
            f.high_res_a,
            f.line.correlation
        ),
        (_, why) => say!(
            "post-processed: {} at FSC 0.143 (post-processing mask), not sharpened ({}): map_sharp.mrc",
            p.resolution.describe(apix),
            why.as_ref().map_or("B given".to_string(), |w| w.to_string())
        ),
    }
    Ok(p)
}

/// The end of a finished `reconstruct` or `backproject` (`what`) run in `dir`: its maps
/// post-processed ([`after_run`]) when `postprocess` is set, `view.cxc` ([`write_view`]) and the
/// line naming the folder. The maps are complete by then, so what fails here is a warning, not
/// an error.
pub fn finish_run(dir: &Path, what: &str, postprocess: bool) {
    if postprocess {
        if let Err(e) = after_run(dir, what) {
            tracing::warn!("post-processing skipped: {e:#} (the maps above are complete; see `cryosplat postprocess`)");
        }
    }
    if let Err(e) = write_view(dir) {
        tracing::warn!("view.cxc not written: {e:#}");
    }
    say!("outputs in {}", dir.display());
}

/// `view.cxc` beside a run's maps: a ChimeraX command file (run in its own folder, see
/// [`CXC_PATHS_NOTE`]) that shows
/// `map.mrc` as a surface at the level [`cryosplat_core::mask::auto_threshold`] picks, the
/// post-processed `map_sharp.mrc` (hidden, at its own level) when there is one, and the Gaussians
/// as pseudo-atoms (`gaussians.cif`) when the run wrote them. Returns the file's path.
pub fn write_view(dir: &Path) -> Result<PathBuf> {
    let level = |name: &str| -> Result<Option<f32>> {
        let path = dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        let v = MrcFile::open(&path)?.read_all()?;
        Ok(cryosplat_core::mask::auto_threshold(&v).map(|t| t.threshold))
    };
    let mut cxc = format!("# ChimeraX: the run's maps and Gaussians.\n{CXC_PATHS_NOTE}");
    let mut model = 0;
    if let Some(l) = level("map.mrc")? {
        model += 1;
        cxc.push_str(&format!("open map.mrc\nvolume #{model} level {l} style surface color #b0c4de\n"));
    }
    if let Some(l) = level("map_sharp.mrc")? {
        model += 1;
        cxc.push_str(&format!("open map_sharp.mrc\nvolume #{model} level {l} style surface color #d8b0de\nhide #{model} models\n"));
    }
    if dir.join("gaussians.cif").exists() {
        model += 1;
        cxc.push_str(&format!("open gaussians.cif\nstyle #{model} sphere\nhide #{model} models\n"));
    }
    cxc.push_str("view\n");
    let path = dir.join("view.cxc");
    cryosplat_formats::atomic::write_bytes_atomic(&path, cxc.as_bytes())?;
    if dir.join("run.json").exists() {
        update_run_json(dir, &["view.cxc"], |_| {})?;
    }
    Ok(path)
}

/// Rewrite the run's `run.json` in `dir` (atomically): `edit` it, and add `names` (files in
/// `dir`) to its list of outputs (`summary.outputs`), once each.
fn update_run_json(dir: &Path, names: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> Result<()> {
    let path = dir.join("run.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: reading", path.display()))?;
    let mut run: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    edit(&mut run);
    if let Some(list) = run.pointer_mut("/summary/outputs").and_then(|v| v.as_array_mut()) {
        for name in names {
            let p = serde_json::Value::from(dir.join(name).to_string_lossy().into_owned());
            if !list.contains(&p) {
                list.push(p);
            }
        }
    }
    cryosplat_formats::atomic::write_bytes_atomic(&path, serde_json::to_string_pretty(&run)?.as_bytes())?;
    Ok(())
}

/// The Guinier fit as JSON (`postprocess.json` and `run.json`'s `postprocess`).
fn fit_json(f: &BFactorFit) -> serde_json::Value {
    serde_json::json!({
        "low_res_a": f.low_res_a,
        "high_res_a": f.high_res_a,
        "first_shell": f.shells.0,
        "last_shell": f.shells.1,
        "points": f.line.points,
        "slope": f.line.slope,
        "intercept": f.line.intercept,
        "correlation": f.line.correlation,
        "r_squared": f.line.correlation.powi(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryosplat_core::fsc::Resolution;

    /// A run's limit of its resolution in run.json: a crossing of the cross-validated estimate,
    /// what it read beyond its reliable shells, or (runs of earlier versions) the bound at its
    /// last shell when the half maps claimed more.
    #[derive(Clone, Copy)]
    enum Limit {
        Crossing(f64),
        Beyond(f64),
        AtLeast(f64),
    }

    /// Half maps of a blob molecule with independent noise, and a run.json holding `limit` as
    /// the run's cross-validated limit, written into `dir`; then [`after_run`].
    fn post_process_run(dir: &Path, limit: Option<Limit>) -> (Postprocessed, serde_json::Value) {
        use cryosplat_core::rng::Rng;
        let (d, apix) = (32usize, 2.0f64);
        let mut rng = Rng::new(3);
        let centres: Vec<[f64; 3]> = (0..40).map(|_| [0; 3].map(|_| 16.0 + 4.0 * rng.normal())).collect();
        let truth: Vec<f32> = (0..d * d * d)
            .map(|i| {
                let p = [(i / (d * d)) as f64, ((i / d) % d) as f64, (i % d) as f64];
                centres.iter().map(|c| (-(0..3).map(|k| (p[k] - c[k]).powi(2)).sum::<f64>() / 2.0).exp()).sum::<f64>() as f32
            })
            .collect();
        for name in ["half_map_a.mrc", "half_map_b.mrc"] {
            let half: Vec<f32> = truth.iter().map(|&t| t + 0.3 * rng.normal() as f32).collect();
            mrc::write_volume(&dir.join(name), &half, [d, d, d], apix, &WriteOptions::default()).unwrap();
        }
        let run = match limit {
            Some(Limit::Crossing(l)) => serde_json::json!({ "cross_validated": { "limit_0143": { "kind": "crossing", "angstrom": l } } }),
            Some(Limit::Beyond(l)) => serde_json::json!({
                "cross_validated": { "limit_0143": null, "beyond_0143": { "kind": "crossing", "angstrom": l } }
            }),
            Some(Limit::AtLeast(l)) => serde_json::json!({
                "cross_validated": { "limit_0143": null },
                "resolution_details": { "resolution_0143": { "kind": "at_least", "angstrom": l } }
            }),
            None => serde_json::json!({}),
        };
        std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
        let p = after_run(dir, "test").unwrap();
        let run: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
        (p, run)
    }

    #[test]
    fn post_processing_after_a_run_keeps_to_its_cross_validated_limit() {
        let dirs = [(); 5].map(|_| tempfile::tempdir().unwrap());
        let (own, run) = post_process_run(dirs[0].path(), None);
        let own_a = own.resolution_a;
        assert!(run["postprocess"]["half_map_0143"].is_null(), "{run}");
        // A limit coarser than the FSC's own resolution, a crossing, a reading beyond the
        // estimate or the bound at its last shell: the map is low-passed, and the resolution
        // stated, at the limit.
        let limit = 1.5 * own_a;
        for (dir, kind) in [(&dirs[1], Limit::Crossing(limit)), (&dirs[3], Limit::AtLeast(limit)), (&dirs[4], Limit::Beyond(limit))] {
            let (p, run) = post_process_run(dir.path(), Some(kind));
            assert_eq!(p.resolution, Resolution::Angstrom(limit));
            let stated = &run["postprocess"]["resolution_details"]["resolution_0143"];
            match kind {
                Limit::Crossing(_) | Limit::Beyond(_) => assert_eq!(run["postprocess"]["resolution_0143"].as_f64(), Some(limit), "{run}"),
                // A bound is stated as one, not as a number that looks like a resolution.
                Limit::AtLeast(_) => assert!(run["postprocess"]["resolution_0143"].is_null() && stated["kind"] == "at_least", "{run}"),
            }
            assert_eq!(stated["angstrom"].as_f64(), Some(limit), "{run}");
            assert_eq!(run["postprocess"]["half_map_0143"]["angstrom"].as_f64(), Some(own_a), "{run}");
            assert!((p.lowpass_a - limit).abs() < 1e-9 && (own.lowpass_a - own_a).abs() < 1e-9, "{} {}", p.lowpass_a, own.lowpass_a);
        }
        // A finer limit changes nothing.
        let (finer, run) = post_process_run(dirs[2].path(), Some(Limit::Crossing(0.8 * own_a)));
        assert_eq!(finer.resolution, own.resolution);
        assert!(run["postprocess"]["half_map_0143"].is_null(), "{run}");
        assert_eq!(finer.map, own.map);
    }

    #[test]
    fn post_processing_after_a_run_without_a_resolution_is_refused() {
        // Half maps that agree (the FSC alone would give a resolution), in a run whose
        // cross-validated estimate confirms no shell: the run reports none, and so must the
        // post-processing, which writes nothing.
        let dir = tempfile::tempdir().unwrap();
        let (own, _) = post_process_run(dir.path(), None);
        assert!(matches!(own.resolution, Resolution::Angstrom(_)), "{:?}", own.resolution);
        for f in ["map_sharp.mrc", "map_sharp_mask.mrc"] {
            std::fs::remove_file(dir.path().join(f)).unwrap();
        }
        let run = serde_json::json!({
            "resolution_0143": null,
            "resolution_method": "the coarser of the half-map FSC and its cross-validated limit",
            "resolution_details": { "resolution_0143": { "kind": "no_correlation" } },
            "cross_validated": { "limit_0143": { "kind": "no_correlation" } }
        });
        std::fs::write(dir.path().join("run.json"), run.to_string()).unwrap();
        let e = after_run(dir.path(), "test").unwrap_err().to_string();
        assert!(e.contains("no resolution at FSC 0.143"), "{e}");
        assert!(!dir.path().join("map_sharp.mrc").exists() && !dir.path().join("map_sharp_mask.mrc").exists());
        let after: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("run.json")).unwrap()).unwrap();
        assert!(after["postprocess"].is_null(), "{after}");
    }

    #[test]
    fn the_folder_knows_every_file() {
        for f in super::FILES.iter().chain(crate::cmd::locres::FILES) {
            assert!(cryosplat_train::output::RESULT_FILES.contains(f), "{f} is not a result file: the folder would not refuse or clear it");
        }
    }
}
