//! `cryosplat mask`: a soft mask from a map by `relion_mask_create`'s recipe (optional low-pass,
//! binarisation at a threshold, extension, raised-cosine soft edge; see
//! [`cryosplat_core::mask::create`]). `--threshold auto` picks the threshold from the map's
//! histogram ([`cryosplat_core::mask::auto_threshold`]) and says which it chose.

use anyhow::{bail, Result};
use cryosplat_core::mask::{self, AutoThreshold};
use cryosplat_formats::mrc::{self, MrcFile, WriteOptions};
use std::path::{Path, PathBuf};

/// The threshold of a mask: a value, or chosen from the histogram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    Auto,
    Value(f32),
}

/// `--threshold`: "auto" or a finite number.
pub fn parse_threshold(s: &str) -> Result<Threshold, String> {
    if s.trim() == "auto" {
        return Ok(Threshold::Auto);
    }
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(Threshold::Value(v)),
        _ => Err(format!("{s:?} is neither \"auto\" nor a finite number")),
    }
}

/// A length in voxels or Å: a finite number ≥ 0.
pub fn parse_non_negative(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a finite number ≥ 0")),
    }
}

/// A resolution or pixel size in Å: a finite number > 0.
pub fn parse_positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive, finite number")),
    }
}

/// `--lowpass` of `mask`: a resolution in Å, or none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lowpass(pub Option<f64>);

/// `--lowpass`: a resolution in Å, or "none".
pub fn parse_lowpass(s: &str) -> Result<Lowpass, String> {
    if s.trim() == "none" {
        Ok(Lowpass(None))
    } else {
        parse_positive(s).map(|r| Lowpass(Some(r)))
    }
}

/// How to make a mask (the options shared by `mask` and `postprocess --mask auto`).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub threshold: Threshold,
    pub extend_px: f64,
    pub soft_edge_px: f64,
    pub lowpass_a: Option<f64>,
}

impl Settings {
    /// The defaults of `cryosplat mask` (also `postprocess --mask auto`).
    pub const DEFAULT: Settings = Settings { threshold: Threshold::Auto, extend_px: 3.0, soft_edge_px: 6.0, lowpass_a: Some(15.0) };
}

/// A mask made from `map`, the threshold used and, for `auto`, how it was chosen.
pub struct Made {
    pub mask: Vec<f32>,
    pub threshold: f32,
    pub auto: Option<AutoThreshold>,
}

/// Make a mask from a `D³` map; `what` names the map in errors.
pub fn make(map: &[f32], d: usize, apix: f64, s: &Settings, what: &str) -> Result<Made> {
    let prepared = mask::prepared(map, d, apix, s.lowpass_a);
    let (threshold, auto) = match s.threshold {
        Threshold::Value(v) => (v, None),
        Threshold::Auto => match mask::auto_threshold(&prepared) {
            Some(a) => (a.threshold, Some(a)),
            None => bail!("{what}: no finite values to choose a threshold from"),
        },
    };
    let m = mask::threshold(&prepared, d, threshold, s.extend_px, s.soft_edge_px);
    if !m.iter().any(|&v| v > 0.0) {
        let max = prepared.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        bail!("{what}: no voxel is above the threshold {threshold} (the largest value is {max}): the mask would be empty; choose a lower --threshold");
    }
    Ok(Made { mask: m, threshold, auto })
}

/// One line for people: the threshold and where it came from.
pub fn describe(made: &Made) -> String {
    match &made.auto {
        Some(a) => format!(
            "threshold {:.4} (auto: median {:.4} + max(5 × solvent σ {:.4}, 5% of the way to the maximum {:.4}); {:.1}% of the box above it)",
            made.threshold,
            a.median,
            a.noise_sigma,
            a.max,
            100.0 * a.fraction_above
        ),
        None => format!("threshold {} (given)", made.threshold),
    }
}

/// Read a cubic map and its pixel size (`apix` overrides the header).
pub fn read_cubic(path: &Path, apix: Option<f64>) -> Result<(Vec<f32>, usize, f64)> {
    let f = MrcFile::open(path)?;
    let h = f.header();
    let d = h.nx;
    if [h.nx, h.ny, h.nz] != [d, d, d] {
        bail!("{}: the map is {}×{}×{}; a cubic map is needed", path.display(), h.nx, h.ny, h.nz);
    }
    let apix = match (apix, h.apix) {
        (Some(x), _) | (None, Some(x)) => x,
        (None, None) => bail!("{}: the header gives no pixel size; give one with --apix", path.display()),
    };
    Ok((f.read_all()?, d, apix))
}

#[derive(clap::Args)]
pub struct Args {
    /// The map to mask (e.g. the average of two half maps).
    pub map: PathBuf,
    /// The mask file to write (MRC).
    #[arg(short, long)]
    pub out: PathBuf,
    /// Binarisation threshold: a value, or "auto" (from the histogram: the median plus five
    /// standard deviations of the solvent noise, and at least 5% of the way to the maximum).
    #[arg(long, default_value = "auto", value_parser = parse_threshold, allow_hyphen_values = true)]
    pub threshold: Threshold,
    /// Extend the binary mask by this many voxels.
    #[arg(long, default_value_t = 3.0, value_parser = parse_non_negative)]
    pub extend: f64,
    /// Width of the raised-cosine soft edge in voxels.
    #[arg(long, default_value_t = 6.0, value_parser = parse_non_negative)]
    pub soft_edge: f64,
    /// Low-pass the map at this resolution (Å) before binarising, or "none".
    #[arg(long, default_value = "15", value_parser = parse_lowpass)]
    pub lowpass: Lowpass,
    /// Pixel size in Å (when the header gives none, or to override it).
    #[arg(long, value_parser = parse_positive)]
    pub apix: Option<f64>,
    /// Replace the file if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.out.exists() && !a.overwrite {
        bail!("{} exists; mask does not overwrite it: choose another name, or use --overwrite", a.out.display());
    }
    let (map, d, apix) = read_cubic(&a.map, a.apix)?;
    let s = Settings { threshold: a.threshold, extend_px: a.extend, soft_edge_px: a.soft_edge, lowpass_a: a.lowpass.0 };
    let made = make(&map, d, apix, &s, &a.map.display().to_string())?;
    let opts = WriteOptions { label: "cryosplat mask".to_string(), ..Default::default() };
    mrc::write_volume(&a.out, &made.mask, [d, d, d], apix, &opts)?;
    let inside = made.mask.iter().filter(|&&v| v > 0.5).count() as f64 / made.mask.len() as f64;
    say!("{}", describe(&made));
    say!(
        "wrote {} ({d}³, {apix:.3} Å/px): extended by {} px, soft edge {} px, low-pass {}; {:.1}% of the box above 0.5",
        a.out.display(),
        a.extend,
        a.soft_edge,
        a.lowpass.0.map_or("none".to_string(), |r| format!("{r} Å")),
        100.0 * inside
    );
    Ok(())
}
