//! Fourier shell correlation and resolution.
//!
//! # Shells
//!
//! Shell `n` holds the Fourier components whose radius in samples rounds to `n`:
//! `n = round(|k|·D·apix)`, from 0 (the DC term) to `D/2` (Nyquist); components beyond
//! Nyquist (the corners of the cube) are not used. Shell `n` is at spatial frequency
//! `n/(D·apix)` 1/Å, i.e. resolution `D·apix/n` Å. This is RELION's convention.
//! cryoDRGN labels shells differently ([`fsc_cryodrgn`]: shell `i` is `i−1 ≤ |k| < i`,
//! reported at `i/D`, without a Nyquist entry); it is provided to compare with its numbers.
//!
//! `FSC(n) = Re Σ F₁·conj(F₂) / sqrt(Σ|F₁|² · Σ|F₂|²)` over the shell. In a shell where either
//! map has no power (a sum of squares that is 0, or not finite) the FSC is undefined: the curve
//! holds 0 there (never 1, never NaN), and [`FscCurve::no_power`] lists such shells so that no
//! resolution is read across them.
//!
//! # Degenerate maps
//!
//! A map that is all zero, constant or holds NaN or infinite values has no FSC to read a
//! resolution from, and neither has a map paired with itself (the same values twice: the FSC is
//! 1 in every shell by construction); [`check_maps`] says which map and why ([`NoResolution`]). [`gold_standard`]
//! runs that check (and checks a given mask) and records the reason in the report;
//! [`FscReport::try_resolution`] then returns it, and [`FscReport::resolution`] never returns a
//! figure for such a pair.
//!
//! # Resolution
//!
//! The resolution at a threshold (0.143 for half maps, 0.5 against a reference) is the first
//! crossing from low frequency, linearly interpolated between shells (see [`Resolution`]):
//! a curve that never falls below the threshold up to Nyquist is [`Resolution::Nyquist`],
//! never a number that looks like a resolution; one already below it at shell 1 is
//! [`Resolution::NoCorrelation`]. [`resolution_checked`] refuses (with
//! [`NoResolution::NoPower`]) when a shell without power is reached before the crossing: the
//! curve is 0 there because nothing was measured, not because the maps disagree.
//!
//! # Masking and the phase-randomisation correction
//!
//! [`gold_standard`] computes the unmasked curve, a masked curve (an automatic soft mask, or
//! one given), and the masked curve corrected for the correlation the mask itself introduces:
//! beyond the shell where the unmasked FSC first falls below 0.8, the phases of both half maps
//! are randomised, the randomised maps are masked the same way, and
//! `FSC_true = (FSC_masked − FSC_random)/(1 − FSC_random)` there, or 0 where the random-phase
//! curve is the higher, as RELION's post-processing does. Up to [`GUARD_SHELLS`] shells past the
//! randomisation shell the masked curve is kept, as RELION also does: the mask's own spectrum
//! carries the still-correlated shells just inside the randomisation shell into the first
//! randomised ones, so there `FSC_random` measures that spill rather than mask-induced
//! correlation, and subtracting it puts a false dip right at the randomisation shell (seen on a
//! reconstruction against its ground truth, where the corrected curve then crossed 0.5 well
//! before the masked and unmasked curves did; the test `no_false_dip_at_the_randomisation_shell`
//! guards against it).

use crate::fourier::{freq_index, low_pass_volume, Complex32, Fft3};
use crate::mask;
use crate::rng::Rng;

/// Shells past the randomisation shell that keep the masked FSC uncorrected (see the module
/// docs).
pub const GUARD_SHELLS: usize = 2;

/// A resolution read from an FSC curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resolution {
    /// The curve crosses the threshold at this resolution (Å).
    Angstrom(f64),
    /// The curve stays above the threshold up to Nyquist: the data support at least the
    /// Nyquist resolution, and no finer figure can be read.
    Nyquist,
    /// The curve is below the threshold from the first shell on: no resolution.
    NoCorrelation,
}

impl Resolution {
    /// The value in Å (`Nyquist` → `2·apix`), or `None` for no correlation.
    pub fn angstrom_or_nyquist(&self, apix: f64) -> Option<f64> {
        match *self {
            Resolution::Angstrom(a) => Some(a),
            Resolution::Nyquist => Some(2.0 * apix),
            Resolution::NoCorrelation => None,
        }
    }

    /// Text for people: "3.42 Å", "at Nyquist (2.80 Å)" or "none".
    pub fn describe(&self, apix: f64) -> String {
        match *self {
            Resolution::Angstrom(a) => format!("{a:.2} Å"),
            Resolution::Nyquist => format!("at Nyquist ({:.2} Å); the true resolution may be finer", 2.0 * apix),
            Resolution::NoCorrelation => "none (no correlation beyond the lowest shell)".to_string(),
        }
    }
}

/// Weight of a half-spectrum column in sums over the full spectrum of a real signal.
#[inline]
pub(crate) fn column_weight(c: usize, d: usize) -> f64 {
    if c == 0 || 2 * c == d {
        1.0
    } else {
        2.0
    }
}

/// Why no resolution can be read from a pair of maps or from an FSC curve.
#[derive(Clone, Debug, PartialEq)]
pub enum NoResolution {
    /// The two maps have different numbers of values.
    DifferentSizes { maps: [String; 2], lens: [usize; 2] },
    /// `map` holds `count` NaN or infinite values, the first at `index`.
    NonFinite { map: String, index: usize, count: usize },
    /// `map` is zero everywhere.
    Empty { map: String },
    /// `map` has the same (non-zero) value everywhere.
    Constant { map: String, value: f32 },
    /// The curve is undefined in these shells (one or both maps have no power there), and at
    /// least one of them comes before the threshold is crossed.
    NoPower { shells: Vec<usize> },
    /// The two maps hold the same values (one map given twice): their FSC is 1 in every shell
    /// by construction.
    Identical { maps: [String; 2] },
}

impl std::fmt::Display for NoResolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoResolution::DifferentSizes { maps, lens } => {
                write!(f, "{} has {} values but {} has {}: the maps must have the same box", maps[0], lens[0], maps[1], lens[1])
            }
            NoResolution::NonFinite { map, index, count } => {
                write!(f, "{map} holds {count} NaN or infinite values (the first at index {index}): no FSC can be computed")
            }
            NoResolution::Empty { map } => write!(f, "{map} is all zero: it holds no signal, so its FSC is undefined"),
            NoResolution::Constant { map, value } => {
                write!(f, "{map} is constant ({value} everywhere): it holds no signal beyond its mean, so its FSC is undefined")
            }
            NoResolution::NoPower { shells } => write!(
                f,
                "the FSC is undefined in {} {} (one or both maps have no power there) before it crosses the threshold",
                if shells.len() == 1 { "shell" } else { "shells" },
                shell_ranges(shells)
            ),
            NoResolution::Identical { maps } => write!(
                f,
                "{} and {} hold the same values (one map given twice?): their FSC is 1 in every shell whatever the map holds, so it measures no resolution; give two maps made from independent halves of the images",
                maps[0], maps[1]
            ),
        }
    }
}

impl std::error::Error for NoResolution {}

/// "3, 5–9, 12" for ascending shells.
fn shell_ranges(shells: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < shells.len() {
        let mut j = i;
        while j + 1 < shells.len() && shells[j + 1] == shells[j] + 1 {
            j += 1;
        }
        parts.push(if j > i { format!("{}–{}", shells[i], shells[j]) } else { shells[i].to_string() });
        i = j + 1;
    }
    parts.join(", ")
}

/// Check one map: [`NoResolution::NonFinite`], [`NoResolution::Empty`] or
/// [`NoResolution::Constant`] (in that order of precedence), `label` naming the map.
pub fn check_map(v: &[f32], label: &str) -> Result<(), NoResolution> {
    if let Some(index) = v.iter().position(|x| !x.is_finite()) {
        let count = v[index..].iter().filter(|x| !x.is_finite()).count();
        return Err(NoResolution::NonFinite { map: label.to_string(), index, count });
    }
    let Some(&first) = v.first() else { return Err(NoResolution::Empty { map: label.to_string() }) };
    if v.iter().all(|&x| x == first) {
        let map = label.to_string();
        return Err(if first == 0.0 { NoResolution::Empty { map } } else { NoResolution::Constant { map, value: first } });
    }
    Ok(())
}

/// Check a pair of maps before an FSC: same size, finite, neither all zero nor constant, and not
/// the same values twice ([`NoResolution::Identical`]). The maps are called "first map" and
/// "second map" in the reason.
pub fn check_maps(a: &[f32], b: &[f32]) -> Result<(), NoResolution> {
    check_maps_labelled(a, b, ["first map", "second map"])
}

/// [`check_maps`] with the names the reason gives the maps (e.g. "half map A", or a file name).
pub fn check_maps_labelled(a: &[f32], b: &[f32], labels: [&str; 2]) -> Result<(), NoResolution> {
    if a.len() != b.len() {
        return Err(NoResolution::DifferentSizes { maps: labels.map(str::to_string), lens: [a.len(), b.len()] });
    }
    check_map(a, labels[0])?;
    check_map(b, labels[1])?;
    if a == b {
        return Err(NoResolution::Identical { maps: labels.map(str::to_string) });
    }
    Ok(())
}

/// Check a mask for [`gold_standard`] over maps of `len` values: as long as the maps, finite and
/// not all zero (a constant non-zero mask is a valid, if pointless, mask).
fn check_mask(m: &[f32], len: usize) -> Result<(), NoResolution> {
    if m.len() != len {
        return Err(NoResolution::DifferentSizes { maps: ["each map".to_string(), "the mask".to_string()], lens: [len, m.len()] });
    }
    match check_map(m, "the mask") {
        Err(NoResolution::Constant { .. }) => Ok(()),
        other => other,
    }
}

/// An FSC curve and the shells (≥ 1) in which it is undefined.
#[derive(Clone, Debug, PartialEq)]
pub struct FscCurve {
    /// Shell `n` (0..=D/2, see the module docs); 0 in a shell listed in `no_power`.
    pub fsc: Vec<f64>,
    /// Ascending shells `n ≥ 1` where one or both maps have no power (shell 0, the mean, is
    /// never read for a resolution and is not listed).
    pub no_power: Vec<usize>,
}

/// Calls `f(index, radius_in_samples, column_weight)` for every element of a `D³` half spectrum
/// (layout of [`Fft3`]).
pub(crate) fn for_each_component(d: usize, mut f: impl FnMut(usize, f64, f64)) {
    let w = d / 2 + 1;
    for p in 0..d {
        let fz = freq_index(p, d) as f64;
        for r in 0..d {
            let fy = freq_index(r, d) as f64;
            let base = (p * d + r) * w;
            for c in 0..w {
                f(base + c, (fz * fz + fy * fy + (c * c) as f64).sqrt(), column_weight(c, d));
            }
        }
    }
}

/// Per-shell sums over two half spectra of `D³` volumes (layout of [`Fft3`]):
/// `Re Σ F₁·conj(F₂)`, `Σ|F₁|²`, `Σ|F₂|²` over the components whose radius `r` (in samples)
/// `shell_of(r)` maps below `n_shells`; the others are skipped.
struct ShellSums {
    num: Vec<f64>,
    power_a: Vec<f64>,
    power_b: Vec<f64>,
}

impl ShellSums {
    fn new(fa: &[Complex32], fb: &[Complex32], d: usize, n_shells: usize, shell_of: impl Fn(f64) -> usize) -> ShellSums {
        let mut s = ShellSums { num: vec![0.0; n_shells], power_a: vec![0.0; n_shells], power_b: vec![0.0; n_shells] };
        for_each_component(d, |i, radius, wt| {
            let n = shell_of(radius);
            if n < n_shells {
                let (a, b) = (fa[i], fb[i]);
                s.num[n] += wt * (a.re as f64 * b.re as f64 + a.im as f64 * b.im as f64);
                s.power_a[n] += wt * a.norm_sqr() as f64;
                s.power_b[n] += wt * b.norm_sqr() as f64;
            }
        });
        s
    }

    /// Whether both maps have (finite, positive) power in shell `n`.
    fn has_power(&self, n: usize) -> bool {
        self.power_a[n] > 0.0 && self.power_b[n] > 0.0 && self.power_a[n].is_finite() && self.power_b[n].is_finite()
    }

    /// The normalised correlation in shell `n`, 0 where [`ShellSums::has_power`] is false.
    fn fsc(&self, n: usize) -> f64 {
        if self.has_power(n) {
            self.num[n] / (self.power_a[n] * self.power_b[n]).sqrt()
        } else {
            0.0
        }
    }

    fn curve(&self) -> FscCurve {
        let n_shells = self.num.len();
        FscCurve { fsc: (0..n_shells).map(|n| self.fsc(n)).collect(), no_power: (1..n_shells).filter(|&n| !self.has_power(n)).collect() }
    }
}

/// FSC between two half spectra of `D³` volumes (layout of [`Fft3`]), shells 0..=D/2, with
/// the shells where it is undefined.
pub fn fsc_curve_from_spectra(fa: &[Complex32], fb: &[Complex32], d: usize) -> FscCurve {
    ShellSums::new(fa, fb, d, d / 2 + 1, |rad| rad.round() as usize).curve()
}

/// FSC between two half spectra of `D³` volumes (layout of [`Fft3`]), shells 0..=D/2; 0 in a
/// shell where either map has no power ([`fsc_curve_from_spectra`] also lists those shells).
pub fn fsc_from_spectra(fa: &[Complex32], fb: &[Complex32], d: usize) -> Vec<f64> {
    fsc_curve_from_spectra(fa, fb, d).fsc
}

/// FSC between two `D³` volumes (shells 0..=D/2, see the module docs), with the shells where it
/// is undefined.
pub fn fsc_curve(a: &[f32], b: &[f32], d: usize) -> FscCurve {
    let f = Fft3::new(d);
    fsc_curve_from_spectra(&f.forward(a), &f.forward(b), d)
}

/// FSC between two `D³` volumes (shells 0..=D/2, see the module docs; 0 in a shell where either
/// map has no power).
pub fn fsc(a: &[f32], b: &[f32], d: usize) -> Vec<f64> {
    fsc_curve(a, b, d).fsc
}

/// cryoDRGN's FSC: `D/2` entries, entry `i ≥ 1` over `i−1 ≤ |k| < i`, entry 0 = 1, labelled
/// at `i/D` cycles per pixel (returned as `(pixres, fsc)` pairs). An entry `i ≥ 1` where either
/// map has no power is 0.
pub fn fsc_cryodrgn(a: &[f32], b: &[f32], d: usize) -> Vec<(f64, f64)> {
    let f = Fft3::new(d);
    let n = d / 2;
    // i − 1 ≤ rad < i
    let sums = ShellSums::new(&f.forward(a), &f.forward(b), d, n, |rad| rad.floor() as usize + 1);
    (0..n).map(|i| (i as f64 / d as f64, if i == 0 { 1.0 } else { sums.fsc(i) })).collect()
}

/// Resolution at `threshold`: first crossing from low frequency, interpolated (module docs).
pub fn resolution_at(curve: &[f64], threshold: f64, d: usize, apix: f64) -> Resolution {
    for n in 1..curve.len() {
        if curve[n] < threshold {
            if n == 1 {
                return Resolution::NoCorrelation;
            }
            let (a, b) = (curve[n - 1], curve[n]);
            let t = if a > b { (a - threshold) / (a - b) } else { 0.0 };
            let shell = (n - 1) as f64 + t.clamp(0.0, 1.0);
            return Resolution::Angstrom(d as f64 * apix / shell);
        }
    }
    Resolution::Nyquist
}

/// [`resolution_at`] for a curve that is undefined in the shells `no_power` (as in
/// [`FscCurve`]): an error when one of them, or a shell whose value is not finite, comes
/// before the first crossing (then no resolution can be read; the error lists every such
/// shell).
pub fn resolution_checked(curve: &[f64], no_power: &[usize], threshold: f64, d: usize, apix: f64) -> Result<Resolution, NoResolution> {
    let undefined = |n: usize| no_power.contains(&n) || !curve[n].is_finite();
    for n in 1..curve.len() {
        if undefined(n) {
            return Err(NoResolution::NoPower { shells: (1..curve.len()).filter(|&k| undefined(k)).collect() });
        }
        if curve[n] < threshold {
            break;
        }
    }
    Ok(resolution_at(curve, threshold, d, apix))
}

/// The number of Fourier components of a real `D³` volume in each shell `0..=D/2` (the full
/// spectrum: a half-spectrum component off the `kx = 0` and Nyquist planes counts with its
/// Hermitian partner).
pub fn shell_counts(d: usize) -> Vec<f64> {
    let (n_shells, w) = (d / 2 + 1, d / 2 + 1);
    let mut count = vec![0.0f64; n_shells];
    for p in 0..d {
        let fz = freq_index(p, d) as f64;
        for r in 0..d {
            let fy = freq_index(r, d) as f64;
            for c in 0..w {
                let n = (fz * fz + fy * fy + (c * c) as f64).sqrt().round() as usize;
                if n < n_shells {
                    count[n] += column_weight(c, d);
                }
            }
        }
    }
    count
}

/// An FSC curve with the shells where it could be chance set to 0: between two maps of
/// independent noise the FSC of a shell of `N` components ([`shell_counts`]) scatters about 0
/// with standard deviation `sqrt(2/N)` (van Heel's σ: `N/2` independent complex values), so a
/// value at or below `sigmas·sqrt(2/N)` is not evidence of a shared signal. Shell 0, one value,
/// is always 0; values above 1 are kept (the caller clamps).
pub fn significant_fsc(curve: &[f64], d: usize, sigmas: f64) -> Vec<f64> {
    let count = shell_counts(d);
    curve
        .iter()
        .enumerate()
        .map(|(n, &f)| {
            let floor = sigmas * (2.0 / count.get(n).copied().unwrap_or(0.0).max(1.0)).sqrt();
            if n > 0 && f.is_finite() && f > floor {
                f
            } else {
                0.0
            }
        })
        .collect()
}

/// The correlation with the truth that a half-map FSC `f` implies for the average of two
/// halves with independent errors, `sqrt(2f/(1 + f))` (RELION's FSC weight in
/// post-processing): 0 where `f ≤ 0` or not finite, 1 where `f ≥ 1`.
pub fn implied_correlation(f: f64) -> f64 {
    if !f.is_finite() || f <= 0.0 {
        0.0
    } else if f >= 1.0 {
        1.0
    } else {
        (2.0 * f / (1.0 + f)).sqrt()
    }
}

/// Spectral signal-to-noise ratio per shell from a half-map FSC curve, as RELION turns an FSC
/// into its signal-spectrum prior: each value is clamped to `[0.001, 0.999]` (the lower bound
/// stands in for shells without signal), and `SSNR = F/(1 − F)`. With `whole`, the SSNR is the
/// one of the map of both halves: `F` is first replaced by the FSC expected between two sets
/// twice as large, `2F/(1 + F)` (so the SSNR doubles), then clamped to 0.999 again.
pub fn ssnr_from_fsc(curve: &[f64], whole: bool) -> Vec<f64> {
    curve
        .iter()
        .map(|&f| {
            let mut f = if f.is_finite() { f.max(0.001) } else { 0.001 };
            if whole {
                f = 2.0 * f / (1.0 + f);
            }
            let f = f.min(0.999);
            f / (1.0 - f)
        })
        .collect()
}

/// Which mask [`gold_standard`] uses for the masked curve.
#[derive(Clone, Copy, Debug)]
pub enum MaskChoice<'a> {
    None,
    Auto,
    Given(&'a [f32]),
}

/// An automatic soft mask from two half maps: their average, low-passed to 15 Å (or 4 pixels,
/// whichever is coarser), thresholded at 10% of its maximum, dilated by `max(2 px, 6 Å)` and
/// given a cosine edge of `max(3 px, 6 Å)`.
pub fn auto_mask(a: &[f32], b: &[f32], d: usize, apix: f64) -> Vec<f32> {
    let avg: Vec<f32> = a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect();
    let lp = low_pass_volume(&avg, d, apix, (15.0f64).max(4.0 * apix), 2.0);
    let max = lp.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let dilate = (6.0 / apix).max(2.0);
    let edge = (6.0 / apix).max(3.0);
    mask::threshold(&lp, d, 0.1 * max, dilate, edge)
}

/// A copy of `vol` whose Fourier phases are replaced by uniform random phases in every shell
/// `≥ from_shell` (amplitudes kept). Seeded and deterministic.
pub fn randomize_phases(vol: &[f32], d: usize, from_shell: usize, seed: u64) -> Vec<f32> {
    let f = Fft3::new(d);
    let mut spec = f.forward(vol);
    randomize_spectrum_phases(&mut spec, d, from_shell, seed);
    f.inverse(spec)
}

/// [`randomize_phases`] on the half spectrum `spec` of a `d³` volume (as [`Fft3::forward`]
/// gives it), in place.
pub fn randomize_spectrum_phases(spec: &mut [Complex32], d: usize, from_shell: usize, seed: u64) {
    let w = d / 2 + 1;
    let mut rng = Rng::new(seed);
    for p in 0..d {
        let fz = freq_index(p, d) as f64;
        for r in 0..d {
            let fy = freq_index(r, d) as f64;
            for c in 0..w {
                let rad = (fz * fz + fy * fy + (c * c) as f64).sqrt();
                let phase = rng.uniform() * 2.0 * std::f64::consts::PI;
                if rad.round() as usize >= from_shell {
                    let v = &mut spec[(p * d + r) * w + c];
                    let amp = v.norm();
                    *v = Complex32::new((amp as f64 * phase.cos()) as f32, (amp as f64 * phase.sin()) as f32);
                }
            }
        }
    }
}

/// Every curve and resolution of a gold-standard half-map comparison.
#[derive(Clone, Debug)]
pub struct FscReport {
    pub d: usize,
    pub apix: f64,
    /// Shell `n` ↔ frequency `n/(D·apix)`.
    pub unmasked: Vec<f64>,
    pub masked: Option<Vec<f64>>,
    pub corrected: Option<Vec<f64>>,
    /// First shell whose phases were randomised (None if the unmasked FSC never fell below 0.8).
    pub randomized_from_shell: Option<usize>,
    pub mask: Option<Vec<f32>>,
    /// Shells (≥ 1) where the unmasked curve is undefined (see [`FscCurve::no_power`]).
    pub unmasked_no_power: Vec<usize>,
    /// Shells (≥ 1) where the masked curve, and so the corrected one, is undefined.
    pub masked_no_power: Vec<usize>,
    /// Why no resolution can be read from this pair at all (degenerate maps or mask); the
    /// curves are then the unmasked one only.
    pub degenerate: Option<NoResolution>,
}

impl FscReport {
    /// The curve resolutions are read from: corrected if a mask was used, else unmasked.
    pub fn final_curve(&self) -> &[f64] {
        self.corrected.as_deref().unwrap_or(&self.unmasked)
    }
    /// The resolution at `threshold` from [`FscReport::final_curve`], or why there is none.
    pub fn try_resolution(&self, threshold: f64) -> Result<Resolution, NoResolution> {
        let no_power = if self.corrected.is_some() { &self.masked_no_power } else { &self.unmasked_no_power };
        self.read(self.final_curve(), no_power, threshold)
    }
    /// The resolution at `threshold` from the unmasked curve, or why there is none.
    pub fn try_resolution_unmasked(&self, threshold: f64) -> Result<Resolution, NoResolution> {
        self.read(&self.unmasked, &self.unmasked_no_power, threshold)
    }
    fn read(&self, curve: &[f64], no_power: &[usize], threshold: f64) -> Result<Resolution, NoResolution> {
        match &self.degenerate {
            Some(reason) => Err(reason.clone()),
            None => resolution_checked(curve, no_power, threshold, self.d, self.apix),
        }
    }
    /// [`FscReport::try_resolution`], with [`Resolution::NoCorrelation`] standing for every
    /// reason there is none (so that no figure is ever read from a degenerate pair).
    pub fn resolution(&self, threshold: f64) -> Resolution {
        self.try_resolution(threshold).unwrap_or(Resolution::NoCorrelation)
    }
    /// [`FscReport::try_resolution_unmasked`], with [`Resolution::NoCorrelation`] standing for
    /// every reason there is none.
    pub fn resolution_unmasked(&self, threshold: f64) -> Resolution {
        self.try_resolution_unmasked(threshold).unwrap_or(Resolution::NoCorrelation)
    }
    /// Frequency of shell `n` in 1/Å.
    pub fn frequency(&self, n: usize) -> f64 {
        n as f64 / (self.d as f64 * self.apix)
    }
}

/// Real-space (Pearson) correlation of two maps or images of the same length, accumulated in
/// f64 about each one's mean. NaN when either is constant.
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "maps of different sizes");
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().map(|&v| v as f64).sum::<f64>() / n, b.iter().map(|&v| v as f64).sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    sab / (saa * sbb).sqrt()
}

/// Unmasked, masked and phase-randomisation-corrected FSC of two half maps.
///
/// Degenerate input ([`check_maps`] on the maps, or a given mask that is all zero or not finite)
/// is recorded in [`FscReport::degenerate`]; then only the unmasked curve is computed (all 0
/// when the maps differ in size), and no resolution is read from the report.
pub fn gold_standard(a: &[f32], b: &[f32], d: usize, apix: f64, mask: MaskChoice<'_>, seed: u64) -> FscReport {
    let f = Fft3::new(d);
    let unmasked_report = |unmasked: FscCurve, degenerate: Option<NoResolution>| FscReport {
        d,
        apix,
        unmasked: unmasked.fsc,
        masked: None,
        corrected: None,
        randomized_from_shell: None,
        mask: None,
        unmasked_no_power: unmasked.no_power,
        masked_no_power: Vec::new(),
        degenerate,
    };
    let checked = match mask {
        MaskChoice::Given(m) => check_maps(a, b).and_then(|_| check_mask(m, a.len())),
        _ => check_maps(a, b),
    };
    if let Err(reason) = checked {
        let unmasked = if a.len() == d * d * d && b.len() == a.len() {
            fsc_curve_from_spectra(&f.forward(a), &f.forward(b), d)
        } else {
            FscCurve { fsc: vec![0.0; d / 2 + 1], no_power: (1..=d / 2).collect() }
        };
        return unmasked_report(unmasked, Some(reason));
    }
    let (spec_a, spec_b) = (f.forward(a), f.forward(b));
    let unmasked = fsc_curve_from_spectra(&spec_a, &spec_b, d);
    let m: Option<Vec<f32>> = match mask {
        MaskChoice::None => None,
        MaskChoice::Auto => Some(auto_mask(a, b, d, apix)),
        MaskChoice::Given(m) => Some(m.to_vec()),
    };
    let Some(m) = m else {
        return unmasked_report(unmasked, None);
    };
    let FscCurve { fsc: unmasked, no_power: unmasked_no_power } = unmasked;
    let apply = |v: &[f32]| -> Vec<f32> { v.iter().zip(&m).map(|(x, w)| x * w).collect() };
    let FscCurve { fsc: masked, no_power: masked_no_power } = fsc_curve_from_spectra(&f.forward(&apply(a)), &f.forward(&apply(b)), d);
    let from = (1..unmasked.len()).find(|&n| unmasked[n] < 0.8);
    let corrected = match from {
        None => masked.clone(),
        Some(n0) => {
            // As `randomize_phases` of each map, from the spectra above, the two at once (each
            // draws its phases in order from its own seed).
            let randomized = |mut spec: Vec<Complex32>, seed: u64| {
                randomize_spectrum_phases(&mut spec, d, n0, seed);
                f.inverse(spec)
            };
            let (ra, rb) = rayon::join(|| randomized(spec_a, seed), || randomized(spec_b, seed ^ 0x5EED_F5C0));
            let rand = fsc_from_spectra(&f.forward(&apply(&ra)), &f.forward(&apply(&rb)), d);
            masked
                .iter()
                .zip(&rand)
                .enumerate()
                .map(|(n, (&fm, &fr))| {
                    if n < n0 + GUARD_SHELLS {
                        fm
                    } else if fr > fm || fr >= 1.0 {
                        0.0
                    } else {
                        (fm - fr) / (1.0 - fr)
                    }
                })
                .collect()
        }
    };
    FscReport {
        d,
        apix,
        unmasked,
        masked: Some(masked),
        corrected: Some(corrected),
        randomized_from_shell: from,
        mask: Some(m),
        unmasked_no_power,
        masked_no_power,
        degenerate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssnr_from_fsc_clamps_and_doubles_for_the_full_set() {
        let s = ssnr_from_fsc(&[1.0, 0.5, 0.0, -0.3, f64::NAN], false);
        assert!((s[0] - 999.0).abs() < 1e-9, "{s:?}");
        assert!((s[1] - 1.0).abs() < 1e-12);
        let floor = 0.001 / 0.999;
        assert!((s[2] - floor).abs() < 1e-15 && (s[3] - floor).abs() < 1e-15 && (s[4] - floor).abs() < 1e-15);
        // Full set: F → 2F/(1 + F), i.e. twice the half-set SSNR (below the clamp).
        let w = ssnr_from_fsc(&[0.5, 0.2, 0.0, 1.0], true);
        assert!((w[0] - 2.0).abs() < 1e-12 && (w[1] - 0.5).abs() < 1e-12, "{w:?}");
        assert!((w[2] - 2.0 * 0.001 / 0.999).abs() < 1e-12 && (w[3] - 999.0).abs() < 1e-9);
    }

    #[test]
    fn shell_counts_follow_the_sphere_and_noise_is_rarely_significant() {
        let d = 32;
        let count = shell_counts(d);
        assert_eq!(count[0], 1.0);
        // Shell n is a spherical shell of unit thickness: about 4πn² components (the lattice
        // adds up to 12% at shell 5).
        for (n, &c) in count.iter().enumerate().take(16).skip(4) {
            let sphere = 4.0 * std::f64::consts::PI * (n * n) as f64;
            assert!((c / sphere - 1.0).abs() < 0.15, "shell {n}: {c} against {sphere}");
        }
        // Two volumes of independent noise: at 3σ no more than one of the 16 shells passes
        // (expected 0.02), and the scatter of the raw curve matches σ = sqrt(2/N).
        let mut rng = Rng::new(5);
        let mut noise = || (0..d * d * d).map(|_| rng.normal() as f32).collect::<Vec<f32>>();
        let (a, b) = (noise(), noise());
        let raw = fsc(&a, &b, d);
        let z: Vec<f64> = (1..=16).map(|n| raw[n] / (2.0 / count[n]).sqrt()).collect();
        let rms = (z.iter().map(|v| v * v).sum::<f64>() / z.len() as f64).sqrt();
        assert!((0.5..1.6).contains(&rms), "normalised scatter {rms}: {z:?}");
        let kept = significant_fsc(&raw, d, 3.0).iter().filter(|&&f| f > 0.0).count();
        assert!(kept <= 1, "{kept} noise shells kept");
        // A shared signal (FSC about 0.8) is kept wherever a shell has enough components to
        // tell (from shell 3, 3σ ≈ 0.4), shell 0 never.
        let c = noise();
        let with = |x: &[f32]| x.iter().zip(&c).map(|(x, s)| x + 2.0 * s).collect::<Vec<f32>>();
        let kept = significant_fsc(&fsc(&with(&a), &with(&b), d), d, 3.0);
        assert_eq!(kept[0], 0.0);
        assert!(kept[3..].iter().all(|&f| f > 0.6), "{kept:?}");
    }

    #[test]
    fn resolution_reading() {
        let d = 32;
        let apix = 2.0;
        let flat = vec![1.0; 17];
        assert_eq!(resolution_at(&flat, 0.143, d, apix), Resolution::Nyquist);
        let mut c = vec![1.0; 17];
        for (n, v) in c.iter_mut().enumerate().skip(8) {
            *v = 0.0 + 0.01 * n as f64;
        }
        c[7] = 0.5;
        // Crossing of 0.143 between shell 7 (0.5) and 8 (0.08): 7 + (0.5−0.143)/(0.5−0.08).
        let shell = 7.0 + (0.5 - 0.143) / (0.5 - 0.08);
        assert_eq!(resolution_at(&c, 0.143, d, apix), Resolution::Angstrom(64.0 / shell));
        let mut low = vec![0.0; 17];
        low[0] = 1.0;
        assert_eq!(resolution_at(&low, 0.143, d, apix), Resolution::NoCorrelation);
    }
}
