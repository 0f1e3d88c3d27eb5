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
//! `FSC(n) = Re Σ F₁·conj(F₂) / sqrt(Σ|F₁|² · Σ|F₂|²)` over the shell (1 when a denominator is 0).
//!
//! # Resolution
//!
//! The resolution at a threshold (0.143 for half maps, 0.5 against a reference) is the first
//! crossing from low frequency, linearly interpolated between shells (see [`Resolution`]):
//! a curve that never falls below the threshold up to Nyquist is [`Resolution::Nyquist`],
//! never a number that looks like a resolution; one already below it at shell 1 is
//! [`Resolution::NoCorrelation`].
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
//! reconstruction against its ground truth: a 0.5 crossing at 3.74 Å where the masked and
//! unmasked curves cross at 3.17 Å).

use crate::fourier::{freq_index, low_pass_volume, Complex32, Fft3};

/// Shells past the randomisation shell that keep the masked FSC uncorrected (see the module
/// docs).
pub const GUARD_SHELLS: usize = 2;
use crate::mask;
use crate::rng::Rng;

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
fn column_weight(c: usize, d: usize) -> f64 {
    if c == 0 || (d % 2 == 0 && c == d / 2) {
        1.0
    } else {
        2.0
    }
}

/// FSC between two half spectra of `D³` volumes (layout of [`Fft3`]), shells 0..=D/2.
pub fn fsc_from_spectra(fa: &[Complex32], fb: &[Complex32], d: usize) -> Vec<f64> {
    let w = d / 2 + 1;
    let n_shells = d / 2 + 1;
    let mut num = vec![0.0f64; n_shells];
    let mut da = vec![0.0f64; n_shells];
    let mut db = vec![0.0f64; n_shells];
    for p in 0..d {
        let fz = freq_index(p, d) as f64;
        for r in 0..d {
            let fy = freq_index(r, d) as f64;
            let base = (p * d + r) * w;
            for c in 0..w {
                let rad = (fz * fz + fy * fy + (c * c) as f64).sqrt();
                let n = rad.round() as usize;
                if n >= n_shells {
                    continue;
                }
                let wt = column_weight(c, d);
                let a = fa[base + c];
                let b = fb[base + c];
                num[n] += wt * (a.re as f64 * b.re as f64 + a.im as f64 * b.im as f64);
                da[n] += wt * a.norm_sqr() as f64;
                db[n] += wt * b.norm_sqr() as f64;
            }
        }
    }
    (0..n_shells).map(|n| if da[n] > 0.0 && db[n] > 0.0 { num[n] / (da[n] * db[n]).sqrt() } else { 1.0 }).collect()
}

/// FSC between two `D³` volumes (shells 0..=D/2, see the module docs).
pub fn fsc(a: &[f32], b: &[f32], d: usize) -> Vec<f64> {
    let f = Fft3::new(d);
    fsc_from_spectra(&f.forward(a), &f.forward(b), d)
}

/// cryoDRGN's FSC: `D/2` entries, entry `i ≥ 1` over `i−1 ≤ |k| < i`, entry 0 = 1, labelled
/// at `i/D` cycles per pixel (returned as `(pixres, fsc)` pairs).
pub fn fsc_cryodrgn(a: &[f32], b: &[f32], d: usize) -> Vec<(f64, f64)> {
    let f = Fft3::new(d);
    let (fa, fb) = (f.forward(a), f.forward(b));
    let w = d / 2 + 1;
    let n = d / 2;
    let mut num = vec![0.0f64; n];
    let mut da = vec![0.0f64; n];
    let mut db = vec![0.0f64; n];
    for p in 0..d {
        let fz = freq_index(p, d) as f64;
        for r in 0..d {
            let fy = freq_index(r, d) as f64;
            for c in 0..w {
                let rad = (fz * fz + fy * fy + (c * c) as f64).sqrt();
                let i = rad.floor() as usize + 1; // i − 1 ≤ rad < i
                if i >= n {
                    continue;
                }
                let wt = column_weight(c, d);
                let (x, y) = (fa[(p * d + r) * w + c], fb[(p * d + r) * w + c]);
                num[i] += wt * (x.re as f64 * y.re as f64 + x.im as f64 * y.im as f64);
                da[i] += wt * x.norm_sqr() as f64;
                db[i] += wt * y.norm_sqr() as f64;
            }
        }
    }
    (0..n)
        .map(|i| {
            let v = if i == 0 || !(da[i] > 0.0 && db[i] > 0.0) { 1.0 } else { num[i] / (da[i] * db[i]).sqrt() };
            (i as f64 / d as f64, v)
        })
        .collect()
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
    f.inverse(spec)
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
}

impl FscReport {
    /// The curve resolutions are read from: corrected if a mask was used, else unmasked.
    pub fn final_curve(&self) -> &[f64] {
        self.corrected.as_deref().unwrap_or(&self.unmasked)
    }
    pub fn resolution(&self, threshold: f64) -> Resolution {
        resolution_at(self.final_curve(), threshold, self.d, self.apix)
    }
    pub fn resolution_unmasked(&self, threshold: f64) -> Resolution {
        resolution_at(&self.unmasked, threshold, self.d, self.apix)
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
pub fn gold_standard(a: &[f32], b: &[f32], d: usize, apix: f64, mask: MaskChoice<'_>, seed: u64) -> FscReport {
    let f = Fft3::new(d);
    let unmasked = fsc_from_spectra(&f.forward(a), &f.forward(b), d);
    let m: Option<Vec<f32>> = match mask {
        MaskChoice::None => None,
        MaskChoice::Auto => Some(auto_mask(a, b, d, apix)),
        MaskChoice::Given(m) => Some(m.to_vec()),
    };
    let Some(m) = m else {
        return FscReport { d, apix, unmasked, masked: None, corrected: None, randomized_from_shell: None, mask: None };
    };
    let apply = |v: &[f32]| -> Vec<f32> { v.iter().zip(&m).map(|(x, w)| x * w).collect() };
    let masked = fsc_from_spectra(&f.forward(&apply(a)), &f.forward(&apply(b)), d);
    let from = (1..unmasked.len()).find(|&n| unmasked[n] < 0.8);
    let corrected = match from {
        None => masked.clone(),
        Some(n0) => {
            let ra = randomize_phases(a, d, n0, seed);
            let rb = randomize_phases(b, d, n0, seed ^ 0x5EED_F5C0);
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
    FscReport { d, apix, unmasked, masked: Some(masked), corrected: Some(corrected), randomized_from_shell: from, mask: Some(m) }
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
