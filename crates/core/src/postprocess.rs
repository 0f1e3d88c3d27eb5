//! Post-processing of a pair of half maps: FSC weighting, automatic sharpening and a low-pass
//! at the resolution (the recipe of Rosenthal & Henderson 2003, as RELION's post-processing
//! describes it).
//!
//! # Recipe
//!
//! 1. The masked FSC of the half maps, corrected by phase randomisation
//!    ([`crate::fsc::gold_standard`] with the given mask), and the resolution where it crosses
//!    0.143.
//! 2. The average of the half maps is weighted per shell by `sqrt(2F/(1+F))`
//!    ([`fsc_weights`]): the expected correlation of the full map with the truth
//!    (Rosenthal & Henderson), 0 where `F ≤ 0`.
//! 3. The Guinier plot: `ln` of the mean Fourier amplitude per shell of the weighted average
//!    against `s² = 1/d²` (Å⁻²) ([`guinier`]). Amplitudes are divided by the number of voxels,
//!    so that shell 0 holds the map's mean. By default the average is taken inside the mask
//!    ([`GuinierMap::Masked`]), the map whose noise the masked FSC's weights describe;
//!    RELION's post-processing takes the unmasked average ([`GuinierMap::Unmasked`]: its
//!    reference outputs in `tests/data/reference/postprocess/` match that). Outside the mask
//!    the unmasked average holds solvent noise that the weights do not remove; that noise is
//!    flat in `s`, so it levels the line and the B found is too small in magnitude, the more so
//!    the stronger the envelope (BENCHMARKS.md, "Envelope recovery").
//! 4. The B-factor: a straight line through the Guinier points with `d` between the fit's
//!    low- and high-resolution limits (by default 10 Å and the FSC resolution; RELION 5's own
//!    default runs to Nyquist, see BENCHMARKS.md) gives
//!    `B = 4·slope` ([`fit_bfactor`]); a map whose amplitudes fall with `s` has a negative slope,
//!    so B is negative, and multiplying by `exp(−B s²/4)` ([`sharpening_factor`]) flattens the
//!    curve. This is RELION's sign: B < 0 sharpens.
//! 5. A raised-cosine low-pass centred at the resolution ([`LOWPASS_EDGE_SHELLS`] wide), so that
//!    the amplified shells beyond the resolution, which hold noise, are cut.
//!
//! # The guard
//!
//! A fit over a range that holds fewer than [`MIN_FIT_SHELLS`] shells, one whose points do not
//! lie on a line (|r| below [`MIN_FIT_CORRELATION`]), one whose slope is not negative (the
//! amplitudes do not fall: there is nothing to restore), or one whose B would amplify the shell
//! at the resolution by more than [`MAX_GAIN_AT_RESOLUTION`] is refused ([`FitRefused`]); the
//! map is then not sharpened (B = 0), and the reason is recorded. An absurd B amplifies noise by
//! orders of magnitude and is worse than none.

use crate::fourier::{low_pass_weight, Complex32, Fft3};
use crate::fsc::{for_each_component, gold_standard, implied_correlation, FscReport, MaskChoice, NoResolution, Resolution};

/// The fewest shells a B-factor fit may use.
pub const MIN_FIT_SHELLS: usize = 4;
/// The smallest |Pearson r| of the Guinier points in the fit range for the fit to be used.
pub const MIN_FIT_CORRELATION: f64 = 0.5;
/// The largest factor `exp(−B s²/4)` the fitted B may apply at the resolution.
pub const MAX_GAIN_AT_RESOLUTION: f64 = 1000.0;
/// Width (in shells) of the raised-cosine edge of the low-pass, centred on the cutoff.
pub const LOWPASS_EDGE_SHELLS: f64 = 2.0;
/// Default low-resolution limit of the B-factor fit (Å).
pub const DEFAULT_AUTOB_LOWRES_A: f64 = 10.0;

/// FSC weights `sqrt(2F/(1+F))` per shell, 0 where `F ≤ 0` or not finite, 1 where `F ≥ 1`.
pub fn fsc_weights(curve: &[f64]) -> Vec<f64> {
    curve.iter().map(|&f| implied_correlation(f)).collect()
}

/// The factor `exp(−B s²/4)` at `s` (1/Å) for a B-factor `bfactor_a2` (Å²).
#[inline]
pub fn sharpening_factor(bfactor_a2: f64, s_inv_a: f64) -> f64 {
    (-bfactor_a2 * s_inv_a * s_inv_a / 4.0).exp()
}

/// Mean Fourier amplitude per shell `n = round(r)`, `0..=D/2`, of a half spectrum of a `D³`
/// volume, divided by `D³` (so shell 0 is the volume's mean). 0 in an empty shell.
pub fn shell_amplitudes(spec: &[Complex32], d: usize) -> Vec<f64> {
    let n_shells = d / 2 + 1;
    let mut sum = vec![0.0f64; n_shells];
    let mut count = vec![0.0f64; n_shells];
    for_each_component(d, |i, r, w| {
        let n = r.round() as usize;
        if n < n_shells {
            sum[n] += w * spec[i].norm() as f64;
            count[n] += w;
        }
    });
    let voxels = (d * d * d) as f64;
    sum.iter().zip(&count).map(|(s, c)| if *c > 0.0 { s / c / voxels } else { 0.0 }).collect()
}

/// One point of the Guinier plot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuinierPoint {
    pub shell: usize,
    /// `s² = (n/(D·apix))²` in Å⁻².
    pub s2_inv_a2: f64,
    /// `ln` of the mean amplitude of the map, before weighting.
    pub ln_amp_original: f64,
    /// The same after FSC weighting.
    pub ln_amp_weighted: f64,
    /// The same after FSC weighting and sharpening with the B applied (no low-pass).
    pub ln_amp_sharpened: f64,
}

/// The Guinier plot of a map (shells 1..=D/2 with a positive amplitude and weight): original,
/// FSC-weighted (`weights` per shell) and sharpened with `bfactor_a2`.
pub fn guinier(map: &[f32], d: usize, apix: f64, weights: &[f64], bfactor_a2: f64) -> Vec<GuinierPoint> {
    let amp = shell_amplitudes(&Fft3::new(d).forward(map), d);
    (1..amp.len())
        .filter(|&n| amp[n] > 0.0 && weights[n] > 0.0)
        .map(|n| {
            let s = n as f64 / (d as f64 * apix);
            let weighted = (amp[n] * weights[n]).ln();
            GuinierPoint {
                shell: n,
                s2_inv_a2: s * s,
                ln_amp_original: amp[n].ln(),
                ln_amp_weighted: weighted,
                ln_amp_sharpened: weighted + sharpening_factor(bfactor_a2, s).ln(),
            }
        })
        .collect()
}

/// A least-squares straight line `y = slope·x + intercept` and the Pearson r of its points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LineFit {
    pub slope: f64,
    pub intercept: f64,
    pub correlation: f64,
    pub points: usize,
}

/// The least-squares line through `(x, y)`; `None` for fewer than 2 points or equal x.
pub fn fit_line(pts: &[(f64, f64)]) -> Option<LineFit> {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return None;
    }
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for &(x, y) in pts {
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
        sxy += (x - mx) * (y - my);
    }
    if !(sxx > 0.0) {
        return None;
    }
    let slope = sxy / sxx;
    let correlation = if syy > 0.0 { sxy / (sxx * syy).sqrt() } else { 0.0 };
    Some(LineFit { slope, intercept: my - slope * mx, correlation, points: pts.len() })
}

/// A B-factor from a Guinier fit.
#[derive(Clone, Debug, PartialEq)]
pub struct BFactorFit {
    /// `4·slope` (Å²); negative for a map whose amplitudes fall.
    pub bfactor_a2: f64,
    pub line: LineFit,
    /// The requested limits of the fit (Å).
    pub low_res_a: f64,
    pub high_res_a: f64,
    /// The first and last shell used.
    pub shells: (usize, usize),
}

/// Why a B-factor fit was refused (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub enum FitRefused {
    /// The range holds fewer than [`MIN_FIT_SHELLS`] shells.
    TooFewShells { shells: usize, low_res_a: f64, high_res_a: f64 },
    /// The points do not lie on a line.
    PoorFit { correlation: f64 },
    /// The amplitudes do not fall over the range.
    NotFalling { bfactor_a2: f64 },
    /// The B would amplify the shell at the resolution by more than [`MAX_GAIN_AT_RESOLUTION`].
    Absurd { bfactor_a2: f64, gain: f64 },
}

impl std::fmt::Display for FitRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FitRefused::TooFewShells { shells, low_res_a, high_res_a } => write!(
                f,
                "the B-factor fit range {low_res_a:.2}–{high_res_a:.2} Å holds {shells} shell(s), fewer than the {MIN_FIT_SHELLS} a line fit needs"
            ),
            FitRefused::PoorFit { correlation } => write!(
                f,
                "the Guinier points do not lie on a line (|r| = {:.3}, below {MIN_FIT_CORRELATION})",
                correlation.abs()
            ),
            FitRefused::NotFalling { bfactor_a2 } => {
                write!(f, "the amplitudes do not fall over the fit range (fitted B = {bfactor_a2:.1} Å²): nothing to sharpen")
            }
            FitRefused::Absurd { bfactor_a2, gain } => write!(
                f,
                "the fitted B = {bfactor_a2:.1} Å² would amplify the resolution shell {gain:.3e}-fold (more than {MAX_GAIN_AT_RESOLUTION})"
            ),
        }
    }
}

impl std::error::Error for FitRefused {}

/// Fit `B = 4·slope` through the weighted Guinier points with `high_res_a ≤ d ≤ low_res_a`,
/// refusing (see the module docs) a fit that must not be applied. `resolution_a` is the map's
/// resolution, at which the gain of the fitted B is checked.
pub fn fit_bfactor(points: &[GuinierPoint], low_res_a: f64, high_res_a: f64, resolution_a: f64) -> Result<BFactorFit, FitRefused> {
    let (s2_lo, s2_hi) = (1.0 / (low_res_a * low_res_a), 1.0 / (high_res_a * high_res_a));
    // A relative tolerance, so that a limit that falls on a shell includes it.
    let used: Vec<&GuinierPoint> = points
        .iter()
        .filter(|p| p.s2_inv_a2 >= s2_lo * (1.0 - 1e-9) && p.s2_inv_a2 <= s2_hi * (1.0 + 1e-9) && p.ln_amp_weighted.is_finite())
        .collect();
    if used.len() < MIN_FIT_SHELLS {
        return Err(FitRefused::TooFewShells { shells: used.len(), low_res_a, high_res_a });
    }
    let xy: Vec<(f64, f64)> = used.iter().map(|p| (p.s2_inv_a2, p.ln_amp_weighted)).collect();
    let line = fit_line(&xy).ok_or(FitRefused::TooFewShells { shells: used.len(), low_res_a, high_res_a })?;
    if !(line.correlation.abs() >= MIN_FIT_CORRELATION) {
        return Err(FitRefused::PoorFit { correlation: line.correlation });
    }
    let bfactor_a2 = 4.0 * line.slope;
    if !(bfactor_a2 < 0.0) {
        return Err(FitRefused::NotFalling { bfactor_a2 });
    }
    let gain = sharpening_factor(bfactor_a2, 1.0 / resolution_a);
    if !(gain <= MAX_GAIN_AT_RESOLUTION) {
        return Err(FitRefused::Absurd { bfactor_a2, gain });
    }
    Ok(BFactorFit { bfactor_a2, line, low_res_a, high_res_a, shells: (used[0].shell, used[used.len() - 1].shell) })
}

/// Multiply a `D³` half spectrum (pixel size `apix`) by the per-shell `weights` (shell
/// `round(r)`, none beyond the last), `exp(−B s²/4)` at each component's own `s`, and, with
/// `lowpass_a`, a raised cosine [`LOWPASS_EDGE_SHELLS`] wide centred on that resolution.
pub fn filter_spectrum(spec: &mut [Complex32], d: usize, apix: f64, weights: Option<&[f64]>, bfactor_a2: f64, lowpass_a: Option<f64>) {
    let box_a = d as f64 * apix;
    let cutoff = lowpass_a.map(|r| box_a / r);
    for_each_component(d, |i, r, _| {
        let mut g = sharpening_factor(bfactor_a2, r / box_a);
        if let Some(w) = weights {
            g *= w.get(r.round() as usize).copied().unwrap_or(0.0);
        }
        if let Some(c) = cutoff {
            g *= low_pass_weight(r, c, LOWPASS_EDGE_SHELLS);
        }
        spec[i] *= g as f32;
    });
}

/// Which average of the half maps the Guinier plot is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuinierMap {
    /// The average times the mask (the default).
    Masked,
    /// The average over the whole box, as RELION's post-processing does.
    Unmasked,
}

/// How the B-factor is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BFactorChoice {
    /// Fitted ([`fit_bfactor`]); refused fits fall back to 0.
    Auto,
    /// This B (Å²), applied as given.
    Given(f64),
}

/// Options of [`postprocess`].
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub bfactor: BFactorChoice,
    /// Low-resolution limit of the fit (Å).
    pub autob_lowres_a: f64,
    /// High-resolution limit of the fit (Å); `None` is the FSC resolution.
    pub autob_highres_a: Option<f64>,
    /// Low-pass resolution (Å); `None` is the FSC resolution.
    pub lowpass_a: Option<f64>,
    /// A resolution (Å) the result may not be finer than, from another estimate (`reconstruct`'s
    /// cross-validated limit): when it is coarser than the FSC's, the resolution reported, the
    /// end of the B-factor fit and the low-pass (unless given) are at it; the fit's gain is
    /// still judged at the FSC's resolution, and the FSC and its weights are the half maps'.
    pub resolution_limit_a: Option<f64>,
    /// Seed of the phase randomisation.
    pub seed: u64,
    /// The map of the Guinier plot.
    pub guinier_map: GuinierMap,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bfactor: BFactorChoice::Auto,
            autob_lowres_a: DEFAULT_AUTOB_LOWRES_A,
            autob_highres_a: None,
            lowpass_a: None,
            resolution_limit_a: None,
            seed: 0,
            guinier_map: GuinierMap::Masked,
        }
    }
}

/// The result of [`postprocess`].
#[derive(Clone, Debug)]
pub struct Postprocessed {
    /// The average of the half maps, FSC-weighted, sharpened and low-passed (unmasked).
    pub map: Vec<f32>,
    /// `map` times the mask.
    pub masked: Vec<f32>,
    pub fsc: FscReport,
    /// Resolution at FSC 0.143 of the corrected masked curve (Å; Nyquist when never crossed),
    /// or [`Options::resolution_limit_a`] when that is coarser (`fsc` then gives the curve's own).
    pub resolution_a: f64,
    pub resolution: Resolution,
    /// The B applied (Å²); 0 when the fit was refused.
    pub bfactor_a2: f64,
    /// The fit, when one was made and accepted.
    pub fit: Option<BFactorFit>,
    /// Why the fit was refused (the map was then not sharpened).
    pub fallback: Option<FitRefused>,
    /// The Guinier plot of the average (masked or not, [`Options::guinier_map`]) with the B
    /// applied.
    pub guinier: Vec<GuinierPoint>,
    /// The low-pass applied (Å).
    pub lowpass_a: f64,
    /// The FSC weights per shell.
    pub weights: Vec<f64>,
}

/// Why a pair of half maps cannot be post-processed.
#[derive(Clone, Debug, PartialEq)]
pub enum PostprocessError {
    /// No resolution can be read from the masked FSC (degenerate maps or mask, or a curve
    /// undefined before it crosses 0.143).
    NoResolution(NoResolution),
    /// The corrected FSC is below 0.143 from the first shell on: the half maps do not agree.
    NoCorrelation,
}

impl std::fmt::Display for PostprocessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostprocessError::NoResolution(e) => write!(f, "no resolution: {e}"),
            PostprocessError::NoCorrelation => write!(f, "the masked, corrected FSC is below 0.143 from the first shell on: the half maps do not agree, so there is no resolution to filter at"),
        }
    }
}

impl std::error::Error for PostprocessError {}

impl From<NoResolution> for PostprocessError {
    fn from(e: NoResolution) -> Self {
        PostprocessError::NoResolution(e)
    }
}

/// Post-process half maps `a` and `b` (`D³`, pixel size `apix`) with `mask` (see the module
/// docs). An error when no resolution can be read from the masked FSC.
pub fn postprocess(a: &[f32], b: &[f32], d: usize, apix: f64, mask: &[f32], opts: &Options) -> Result<Postprocessed, PostprocessError> {
    let avg: Vec<f32> = a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect();
    postprocess_map(a, b, &avg, d, apix, mask, opts)
}

/// [`postprocess`] with the FSC, its weights and resolution from the half maps `a` and `b`, applied
/// to `full`, another map of the same particles in place of their average (`reconstruct`'s
/// completed map, which equals the average wherever the images show nothing the Gaussians
/// miss).
pub fn postprocess_map(
    a: &[f32],
    b: &[f32],
    full: &[f32],
    d: usize,
    apix: f64,
    mask: &[f32],
    opts: &Options,
) -> Result<Postprocessed, PostprocessError> {
    assert_eq!(full.len(), a.len(), "postprocess_map: the map and the half maps differ in size");
    let fsc = gold_standard(a, b, d, apix, MaskChoice::Given(mask), opts.seed);
    let fsc_resolution = fsc.try_resolution(0.143)?;
    let fsc_resolution_a = match fsc_resolution.angstrom_or_nyquist(apix) {
        Some(r) => r,
        None => return Err(PostprocessError::NoCorrelation),
    };
    let (resolution, resolution_a) = match opts.resolution_limit_a {
        Some(l) if l > fsc_resolution_a => (Resolution::Angstrom(l), l),
        _ => (fsc_resolution, fsc_resolution_a),
    };
    let weights = fsc_weights(fsc.final_curve());
    let avg = full;
    let plotted: Vec<f32> = match opts.guinier_map {
        GuinierMap::Masked => avg.iter().zip(mask).map(|(v, m)| v * m).collect(),
        GuinierMap::Unmasked => avg.to_vec(),
    };
    let points = guinier(&plotted, d, apix, &weights, 0.0);
    let (bfactor_a2, fit, fallback) = match opts.bfactor {
        BFactorChoice::Given(bf) => (bf, None, None),
        BFactorChoice::Auto => {
            match fit_bfactor(&points, opts.autob_lowres_a, opts.autob_highres_a.unwrap_or(resolution_a), fsc_resolution_a) {
                Ok(fit) => (fit.bfactor_a2, Some(fit), None),
                Err(why) => (0.0, None, Some(why)),
            }
        }
    };
    let lowpass_a = opts.lowpass_a.unwrap_or(resolution_a);
    let f = Fft3::new(d);
    let mut spec = f.forward(avg);
    filter_spectrum(&mut spec, d, apix, Some(&weights), bfactor_a2, Some(lowpass_a));
    let map = f.inverse(spec);
    let masked = map.iter().zip(mask).map(|(v, m)| v * m).collect();
    let guinier = guinier(&plotted, d, apix, &weights, bfactor_a2);
    Ok(Postprocessed { map, masked, fsc, resolution_a, resolution, bfactor_a2, fit, fallback, guinier, lowpass_a, weights })
}
