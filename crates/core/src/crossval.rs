//! The cross-validated resolution of a model-based reconstruction.
//!
//! Two half models trained on independent halves of the images can still share an error: both
//! fit their images with the same kind of model, settle on the same approximation of the signal
//! and infer the same fine detail from the coarser structure both halves see. Their FSC counts
//! such an error as signal, so the half-map FSC of Gaussian maps can claim more than the map
//! holds against the truth (BENCHMARKS.md, "Calibration of the reported resolution" and "The
//! cross-validated limit"). A backprojection shares no such error: it is linear in its images,
//! and each half's noise is its own.
//!
//! With `G_A`, `G_B` the Gaussian half maps, `M_A`, `M_B` the backprojections of the same
//! halves' images and `T` the truth, per shell:
//!
//! * `F_M = FSC(M_A, M_B)`, and `sqrt(F_M)` is each backprojected half's correlation with `T`;
//! * `M_B`'s noise is independent of `G_A` (other images), so `X_A = FSC(G_A, M_B)` is
//!   `ρ_A·sqrt(F_M)`, `ρ_A` half map A's correlation with `T`; likewise `X_B = FSC(G_B, M_A)`;
//! * `ρ = (X_A + X_B)/(2·sqrt(F_M))`, and the full map (the halves' average) correlates with `T`
//!   as `C = ρ·sqrt(2/(1 + F_G))`, `F_G = FSC(G_A, G_B)`;
//! * independent halves whose average correlates `C` with the truth have the FSC
//!   `C²/(2 − C²)`: the half-map equivalent, read at the same thresholds as the half-map FSC
//!   (0.143 there is `C = 0.5`).
//!
//! An error both Gaussian halves share raises `F_G` but not `X_A`, `X_B`. Each shell's sums are
//! pooled with those of its [`POOL`] neighbours on either side: the ratio of sums is noisy, and
//! biased where `F_M` is small; pooling more shells lets the outer shells' noise pull the
//! estimate up. Where the pooled `F_M` is not positive the backprojection holds no evidence of
//! signal, and the estimate is 0. Shells beyond `last_shell` (the backprojection's edge, where
//! its interpolation errs alike in both halves) carry no estimate: a curve above a threshold up
//! to `last_shell` sets no limit ([`CrossValidated::limit`]).
//!
//! The estimate's standard error follows from the number of Fourier components pooled (a
//! correlation over `N` of them scatters by about `sqrt(2/N)`), and is large where `F_M` is
//! small; it is reported beside the estimate. The limit is read from the estimate itself: on
//! the simulations measured it was then never more than 3% optimistic, and up to 21%
//! pessimistic where the backprojection's halves barely agree (SNR 0.005); reading it half a
//! standard error higher took the pessimism to 8% but let one set's half maps claim 9% more
//! than the truth (BENCHMARKS.md, "The cross-validated limit"). The estimate can be no finer
//! than the backprojection's evidence. The reported resolution of `reconstruct` is the coarser
//! of the half-map FSC's and the limit ([`limited`]).

use crate::fourier::Fft3;
use crate::fsc::{resolution_at, shell_counts, Resolution, ShellSums};

/// Neighbouring shells on each side whose sums are pooled with a shell's (see the module docs).
pub const POOL: usize = 1;

/// The cross-validated curves of a pair of model half maps (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct CrossValidated {
    /// Per shell `0..=D/2`: the estimated FSC of the full map against the truth, `C`; 0 where
    /// there is no estimate (shell 0 is 1).
    pub full_vs_truth: Vec<f64>,
    /// Per shell: the standard error of `C` (0 where there is no estimate).
    pub standard_error: Vec<f64>,
    /// Per shell: the half-map FSC equivalent to `C`, `C²/(2 − C²)` with `C` clamped to
    /// `[0, 1]`: the curve read at the half-map thresholds.
    pub half_map_equivalent: Vec<f64>,
    /// The last shell with an estimate.
    pub last_shell: usize,
}

impl CrossValidated {
    /// Where the half-map equivalent first falls below `threshold` within shells
    /// `1..=last_shell` (`d` px at `apix` Å), or `None` when it does not: the estimate then sets
    /// no limit.
    pub fn limit(&self, threshold: f64, d: usize, apix: f64) -> Option<Resolution> {
        let curve = &self.half_map_equivalent[..=self.last_shell.min(self.half_map_equivalent.len() - 1)];
        match resolution_at(curve, threshold, d, apix) {
            Resolution::Nyquist => None,
            r => Some(r),
        }
    }
}

/// The coarser of a half-map resolution and a limit ([`CrossValidated::limit`]): no
/// correlation is the coarsest, Nyquist the finest.
pub fn limited(half_map: Resolution, limit: Option<Resolution>) -> Resolution {
    let rank = |r: &Resolution| match *r {
        Resolution::NoCorrelation => f64::INFINITY,
        Resolution::Angstrom(a) => a,
        Resolution::Nyquist => 0.0,
    };
    match limit {
        Some(l) if rank(&l) > rank(&half_map) => l,
        _ => half_map,
    }
}

/// The cross-validated curves of the model half maps `model` against the backprojections
/// `backprojection` of the same halves' images (`[half A, half B]` each, `d³` volumes), with
/// estimates up to `last_shell`.
pub fn cross_validated(model: [&[f32]; 2], backprojection: [&[f32]; 2], d: usize, last_shell: usize) -> CrossValidated {
    let f = Fft3::new(d);
    let n_shells = d / 2 + 1;
    let last_shell = last_shell.min(d / 2);
    let [ga, gb] = model.map(|v| f.forward(v));
    let [ma, mb] = backprojection.map(|v| f.forward(v));
    let shell = |r: f64| r.round() as usize;
    let g = ShellSums::new(&ga, &gb, d, n_shells, shell);
    let m = ShellSums::new(&ma, &mb, d, n_shells, shell);
    let xa = ShellSums::new(&ga, &mb, d, n_shells, shell);
    let xb = ShellSums::new(&gb, &ma, d, n_shells, shell);
    let pooled = |v: &[f64], n: usize| -> f64 { v[n.saturating_sub(POOL).max(1)..=(n + POOL).min(last_shell)].iter().sum() };
    let ratio = |num: f64, a: f64, b: f64| if a > 0.0 && b > 0.0 && (a * b).is_finite() { num / (a * b).sqrt() } else { 0.0 };
    let count = shell_counts(d);
    let mut full_vs_truth = vec![0.0; n_shells];
    let mut standard_error = vec![0.0; n_shells];
    full_vs_truth[0] = 1.0;
    for n in 1..=last_shell {
        let f_m = ratio(pooled(&m.num, n), pooled(&m.power_a, n), pooled(&m.power_b, n));
        if !(f_m > 0.0) {
            continue;
        }
        let x_a = ratio(pooled(&xa.num, n), pooled(&xa.power_a, n), pooled(&xa.power_b, n));
        let x_b = ratio(pooled(&xb.num, n), pooled(&xb.power_a, n), pooled(&xb.power_b, n));
        let f_g = ratio(pooled(&g.num, n), pooled(&g.power_a, n), pooled(&g.power_b, n));
        let (x, gain) = (0.5 * (x_a + x_b), (2.0 / (1.0 + f_g.max(0.0))).sqrt());
        let c = x / f_m.sqrt() * gain;
        // A correlation over `N` Fourier components scatters by about sqrt(2/N) (van Heel's σ,
        // as in `significant_fsc`); the two cross terms are independent, and the error of
        // `F_M` enters through the square root.
        let sigma = (2.0 / pooled(&count, n).max(1.0)).sqrt();
        let se = gain * ((sigma * sigma / 2.0) / f_m + (x * sigma / (2.0 * f_m.powf(1.5))).powi(2)).sqrt();
        if c.is_finite() && se.is_finite() {
            full_vs_truth[n] = c;
            standard_error[n] = se;
        }
    }
    let half_map_equivalent = full_vs_truth
        .iter()
        .map(|&c| {
            let c = c.clamp(0.0, 1.0);
            c * c / (2.0 - c * c)
        })
        .collect();
    CrossValidated { full_vs_truth, standard_error, half_map_equivalent, last_shell }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsc::fsc;
    use crate::rng::Rng;

    /// A random volume whose spectrum falls with frequency as `exp(−k²/(2σ²))`, `σ = width`
    /// shells (like a molecule's, for a small width).
    fn random_volume(d: usize, width: f64, rng: &mut Rng) -> Vec<f32> {
        let f = Fft3::new(d);
        let white: Vec<f32> = (0..d * d * d).map(|_| rng.normal() as f32).collect();
        let mut spec = f.forward(&white);
        let w = d / 2 + 1;
        for p in 0..d {
            let fz = crate::fourier::freq_index(p, d) as f64;
            for r in 0..d {
                let fy = crate::fourier::freq_index(r, d) as f64;
                for c in 0..w {
                    let k2 = fz * fz + fy * fy + (c * c) as f64;
                    let a = (-k2 / (2.0 * width * width)).exp() as f32;
                    spec[(p * d + r) * w + c] *= a;
                }
            }
        }
        f.inverse(spec)
    }

    fn add(a: &[f32], b: &[f32], s: f32) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| x + s * y).collect()
    }

    fn noise(d: usize, sigma: f32, rng: &mut Rng) -> Vec<f32> {
        (0..d * d * d).map(|_| sigma * rng.normal() as f32).collect()
    }

    const NOISE: f32 = 2.0;
    const SHARED: f32 = 0.4;

    fn rms(v: &[f32]) -> f32 {
        (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt()
    }

    #[test]
    fn a_shared_error_inflates_the_half_map_fsc_but_not_the_cross_validated_estimate() {
        let d = 32;
        let mut rng = Rng::new(11);
        let truth = random_volume(d, 6.0, &mut rng);
        let s = rms(&truth);
        // An error both model halves share, growing against the truth with frequency (detail
        // both infer alike), and each half's own noise.
        let shared = random_volume(d, 10.0, &mut rng);
        let shared = add(&vec![0.0; shared.len()], &shared, SHARED * s / rms(&shared));
        let model: Vec<Vec<f32>> = (0..2).map(|_| add(&add(&truth, &shared, 1.0), &noise(d, NOISE * s, &mut rng), 1.0)).collect();
        let bp: Vec<Vec<f32>> = (0..2).map(|_| add(&truth, &noise(d, NOISE * s, &mut rng), 1.0)).collect();
        let cv = cross_validated([&model[0], &model[1]], [&bp[0], &bp[1]], d, d / 2);
        let full: Vec<f32> = model[0].iter().zip(&model[1]).map(|(a, b)| 0.5 * (a + b)).collect();
        let truth_fsc = fsc(&full, &truth, d);
        let half = fsc(&model[0], &model[1], d);
        // Shells with signal: the half-map FSC predicts more than the truth gives, the estimate
        // does not.
        for n in 10..=12 {
            let predicted = (2.0 * half[n] / (1.0 + half[n])).sqrt();
            assert!(predicted > truth_fsc[n] + 0.05, "shell {n}: half maps predict {predicted}, truth {}", truth_fsc[n]);
        }
        // Past the shells of few components, the standard error grows as the backprojection's
        // halves agree less, and it covers the estimate's error.
        assert!(cv.standard_error[14] > 2.0 * cv.standard_error[8], "{:?}", cv.standard_error);
        for (n, ((&c, &se), &t)) in cv.full_vs_truth.iter().zip(&cv.standard_error).zip(&truth_fsc).enumerate().take(13).skip(1) {
            assert!((c - t).abs() < 3.0 * se + 0.01, "shell {n}: estimate {c} ± {se} against the truth's {t}");
            assert!((c - t).abs() < 0.05, "shell {n}: estimate {c} against the truth's {t}");
        }
        // So the estimate limits the resolution read at 0.143, to within a shell of the truth's 0.5.
        let apix = 1.0;
        let claimed = resolution_at(&half, 0.143, d, apix);
        let limit = cv.limit(0.143, d, apix).expect("the estimate crosses 0.143");
        let reported = limited(claimed, Some(limit));
        assert_eq!(reported, limit);
        let (Resolution::Angstrom(r), Resolution::Angstrom(t), Resolution::Angstrom(c)) =
            (reported, resolution_at(&truth_fsc, 0.5, d, apix), claimed)
        else {
            panic!("crossings expected: {reported:?}, {claimed:?}")
        };
        assert!(c < 0.93 * t, "the half maps claim {c} Å for a map at {t} Å: not optimistic enough to test");
        assert!((r - t).abs() / t < 0.05, "reported {r} Å against the truth's {t} Å");
    }

    #[test]
    fn independent_halves_are_not_limited_and_no_estimate_beyond_the_last_shell() {
        let d = 32;
        let mut rng = Rng::new(5);
        let truth = random_volume(d, 6.0, &mut rng);
        let s = rms(&truth);
        let model: Vec<Vec<f32>> = (0..2).map(|_| add(&truth, &noise(d, NOISE * s, &mut rng), 1.0)).collect();
        let bp: Vec<Vec<f32>> = (0..2).map(|_| add(&truth, &noise(d, NOISE * s, &mut rng), 1.0)).collect();
        let cv = cross_validated([&model[0], &model[1]], [&bp[0], &bp[1]], d, 14);
        let half = fsc(&model[0], &model[1], d);
        let apix = 1.0;
        let claimed = resolution_at(&half, 0.143, d, apix);
        let (Resolution::Angstrom(c), Some(Resolution::Angstrom(l))) = (claimed, cv.limit(0.143, d, apix)) else {
            panic!("crossings expected: {claimed:?}, {:?}", cv.limit(0.143, d, apix))
        };
        // Independent halves: the estimate agrees with the half maps (within its noise).
        assert!((l - c).abs() / c < 0.05, "limit {l} Å against the half maps' {c} Å");
        assert!(cv.full_vs_truth[15..].iter().all(|&v| v == 0.0));
        assert_eq!(cv.last_shell, 14);
        // A curve above the threshold up to the last shell sets no limit.
        let flat = CrossValidated {
            full_vs_truth: vec![1.0; 17],
            standard_error: vec![0.0; 17],
            half_map_equivalent: vec![1.0; 17],
            last_shell: 12,
        };
        assert_eq!(flat.limit(0.143, d, apix), None);
        assert_eq!(limited(Resolution::Nyquist, None), Resolution::Nyquist);
        assert_eq!(limited(Resolution::Angstrom(3.0), Some(Resolution::Angstrom(2.5))), Resolution::Angstrom(3.0));
        assert_eq!(limited(Resolution::Nyquist, Some(Resolution::Angstrom(2.5))), Resolution::Angstrom(2.5));
        assert_eq!(limited(Resolution::Angstrom(3.0), Some(Resolution::NoCorrelation)), Resolution::NoCorrelation);
    }
}
