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
//! Both pairs must be crossed: `M_B` must come from the other half's images than `G_A`. Each
//! model half fitted its own images and carries some of their noise, so it agrees with the
//! backprojection of those images more than with the other half's; given in the wrong order,
//! the estimate would count that shared noise as signal. [`Pairing`] measures the difference
//! (on 99 noise realisations of 17 simulated sets at 48–128 px, C1 to I: 0.045–0.41 in FSC,
//! 10–112 standard errors, in the right order; as far the other way in the wrong one), and
//! `fsc --cross-validate` refuses backprojections that read as swapped.
//!
//! # The mask
//!
//! All four maps are multiplied by the mask of the half-map FSC the estimate limits (the run's
//! automatic mask), so the estimate predicts the masked FSC against the truth. Most of a box is
//! solvent, where a backprojection holds only noise: masked, its halves agree about three times
//! more in the shells that decide a noise-limited set (`F_M` 0.04 → 0.10 at shell 23 of a
//! 10,000-particle set at SNR 0.005), and the estimate's noise falls accordingly. Unmasked, that
//! noise had read the limit 9–21% coarser than the truth on such sets (a noisy curve first
//! dips below a threshold early). The correlation the mask itself brings in from the shells
//! below a pair's 0.8 crossing (which the phase-randomisation correction of
//! [`crate::fsc::gold_standard`] removes) is not subtracted: its expectation (the masked
//! correlation of the pairs' low-passed maps), subtracted from each pair beyond the guard
//! shells, moved no limit of the simulation matrix's 80 runs by more than 0.2%, and one
//! random-phase realisation of it adds noise as large as the backprojection halves' agreement
//! in the shells that decide a noise-limited set (the limit moved by up to 19% between two
//! seeds).
//!
//! # Standard error and the limit
//!
//! The estimate's standard error is a delete-one-group jackknife over angular wedges of each
//! shell's components ([`cross_validated`]). A mask makes neighbouring Fourier components
//! correlated; groups of interleaved components then shared their noise, and the jackknife read
//! a quarter to a half of the estimate's scatter over noise realisations, where wedges read
//! about all of it (tests below). [`CrossValidated::range`] reads where a crossing would be
//! with the estimate one standard error higher or lower. The limit is read from the estimate
//! lowered by [`LIMIT_MARGIN_SE`] of its standard error: over 73 distinct runs of the simulation
//! matrix with a truth crossing (48–128 px, SNR 0.005–0.1, four Gaussian counts), read from the
//! estimate itself it was more than 3% optimistic on eight (up to 6%); lowered by one error it
//! was never more than 3% optimistic but more than 3% pessimistic on 56; lowered by half an
//! error it is more than 3% optimistic on three runs at Gaussian counts other than the default
//! (up to 5.5%), on none of the 27 at the default count, and within 5% of the truth on 62
//! (BENCHMARKS.md, "The cross-validated estimate, masked"). The estimate can be no finer than
//! the backprojection's evidence. The reported resolution of `reconstruct` is the coarser of the
//! half-map FSC's and what the estimate reads ([`limited`], [`CrossValidated::reading`]).
//!
//! # Beyond the shells estimated
//!
//! Where the estimate holds to its last shell, the truth's crossing may lie beyond it (the
//! backprojection's edge shells carry no estimate), and near that shell the estimate is least
//! sure: `F_M` approaches its noise, and the ratio, divided by a small noisy number, is biased
//! up (on an 8zpm set it read 0.66–0.70 at the last two shells against the truth's 0.47–0.52,
//! with standard errors of 0.07–0.13). So the estimate is trusted up to its reliable shell
//! ([`CrossValidated::reliable_shell`]: the last before its standard error first exceeds
//! [`RELIABLE_SE_FRACTION`] of it), and beyond, the half maps' own FSC is read lowered by the
//! largest excess of their claim over the estimate (lowered by [`LIMIT_MARGIN_SE`] of its
//! error) in the reliable shells, in the map's correlation with the truth
//! ([`CrossValidated::extrapolated`]). On the simulation matrix the half maps' true excess grew
//! with frequency up to the shells where it settled, so the largest one measured stands for the
//! shells the estimate cannot reach; where it kept growing beyond, the reading is optimistic by
//! what it grew (tests below). Before, such runs reported a bound at the last shell, up to 10%
//! coarser than the truth (BENCHMARKS.md, "Beyond the reliable estimate: the half maps lowered by
//! their excess").
//!
//! That curve is read past the last shell only where the estimate is reliable up to it. Where
//! its last shells are not, the reading stops at the last shell, a bound
//! ([`Reading::bound`]): over noise realisations of a set with the point group
//! O, the estimate's last two shells read 0.05–0.12 above the truth on average, and the half
//! maps lowered by the excess measured before them claimed Nyquist for maps 6–13% coarser
//! (BENCHMARKS.md, "Noise realisations of one set").

use std::f64::consts::PI;

use crate::fourier::{freq_index, Complex32, Fft3};
use crate::fsc::{for_each_component, implied_correlation, resolution_at, Resolution};
use crate::pose::{mat_vec, Mat3};
use crate::symmetry::{unit, PointGroup};

/// Neighbouring shells on each side whose sums are pooled with a shell's (see the module docs).
pub const POOL: usize = 1;

/// The limit is read from the estimate lowered by this many of its standard errors (see the
/// module docs).
pub const LIMIT_MARGIN_SE: f64 = 0.5;

/// The estimate counts as reliable up to the shell before its standard error first exceeds this
/// fraction of it ([`CrossValidated::reliable_shell`], see the module docs).
pub const RELIABLE_SE_FRACTION: f64 = 0.1;

/// The cross-validated curves of a pair of model half maps (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct CrossValidated {
    /// Per shell `0..=D/2`: the estimated FSC of the full map against the truth, `C`; 0 where
    /// there is no estimate (shell 0 is 1).
    pub full_vs_truth: Vec<f64>,
    /// Per shell: the standard error of `C` (0 where there is no estimate).
    pub standard_error: Vec<f64>,
    /// Per shell: the half-map FSC equivalent to `C` lowered by [`LIMIT_MARGIN_SE`] of its
    /// standard error, `c²/(2 − c²)` with `c` clamped to `[0, 1]`: the curve the limit is read
    /// from, at the half-map thresholds.
    pub half_map_equivalent: Vec<f64>,
    /// The last shell with an estimate.
    pub last_shell: usize,
    /// Whether the backprojections were given in the order of the model halves ([`Pairing`]);
    /// `None` when the sums have no power.
    pub pairing: Option<Pairing>,
}

impl CrossValidated {
    /// Where the half-map equivalent first falls below `threshold` within shells
    /// `1..=last_shell` (`d` px at `apix` Å), or `None` when it does not: the estimate then sets
    /// no limit.
    pub fn limit(&self, threshold: f64, d: usize, apix: f64) -> Option<Resolution> {
        crossing(&self.half_map_equivalent[..=self.last()], threshold, d, apix)
    }

    /// The crossings of `threshold` by the half-map equivalents of the estimate plus and minus
    /// one standard error, within shells `1..=last_shell` ([`LimitRange`]): how far the limit
    /// ([`CrossValidated::limit`]) can move within the estimate's noise.
    pub fn range(&self, threshold: f64, d: usize, apix: f64) -> LimitRange {
        let read = |sign: f64| {
            let curve = shifted_equivalents(&self.full_vs_truth, &self.standard_error, sign);
            crossing(&curve[..curve.len().min(self.last() + 1)], threshold, d, apix)
        };
        LimitRange { finer: read(1.0), coarser: read(-1.0) }
    }

    /// The resolution of `last_shell` in Å, on a `d` px box at `apix` Å: the finest the
    /// estimate can confirm.
    pub fn last_shell_a(&self, d: usize, apix: f64) -> f64 {
        d as f64 * apix / self.last_shell.max(1) as f64
    }

    /// The last shell up to which the estimate's standard error stays within
    /// [`RELIABLE_SE_FRACTION`] of the estimate (from shell 1; at most `last_shell`, 0 when
    /// shell 1 already exceeds it).
    pub fn reliable_shell(&self) -> usize {
        let last = self.last();
        (1..=last)
            .find(|&n| {
                let (c, se) = (self.full_vs_truth[n], self.standard_error[n]);
                c <= 0.0 || se > RELIABLE_SE_FRACTION * c
            })
            .map_or(last, |n| n - 1)
    }

    /// The resolution of `reliable_shell` in Å, on a `d` px box at `apix` Å.
    pub fn reliable_shell_a(&self, d: usize, apix: f64) -> f64 {
        d as f64 * apix / self.reliable_shell().max(1) as f64
    }

    /// The largest amount by which the half maps' FSC `half_map` (shells from 0) claims more
    /// than the estimate lowered by [`LIMIT_MARGIN_SE`] of its error, within shells
    /// `1..=reliable_shell`, in the full map's correlation with the truth (the correlation a
    /// half-map FSC `F` implies is `sqrt(2F/(1 + F))`); 0 where they never claim more.
    pub fn excess(&self, half_map: &[f64]) -> f64 {
        (1..=self.reliable_shell().min(half_map.len().saturating_sub(1)))
            .map(|n| implied_correlation(half_map[n]) - implied_correlation(self.half_map_equivalent[n]))
            .fold(0.0, f64::max)
    }

    /// The curve read beyond the reliable estimate, shells `0..half_map.len()`: the half-map
    /// equivalent up to `reliable_shell`, and beyond it the half maps' FSC `half_map` with the
    /// correlation it implies lowered by [`CrossValidated::excess`] (as a half-map FSC again).
    /// The excess an error both Gaussian halves share adds to their FSC has grown with frequency
    /// on every simulated set, so the largest one the estimate measured is taken to hold in the
    /// shells it cannot measure (see the module docs).
    pub fn extrapolated(&self, half_map: &[f64]) -> Vec<f64> {
        let (reliable, excess) = (self.reliable_shell(), self.excess(half_map));
        half_map
            .iter()
            .enumerate()
            .map(|(n, &f)| match self.half_map_equivalent.get(n) {
                Some(&e) if n <= reliable => e,
                _ if f.is_finite() => half_map_equivalent(implied_correlation(f) - excess),
                _ => 0.0,
            })
            .collect()
    }

    /// What the estimate reads at `threshold` given the half maps' FSC `half_map`: its limit
    /// ([`CrossValidated::limit`]) where it crosses within the shells estimated, else what it
    /// reads past them ([`CrossValidated::beyond`]); `None` when the curve read there stays
    /// above the threshold to its end (the half maps' own curve then does too).
    pub fn reading(&self, half_map: &[f64], threshold: f64, d: usize, apix: f64) -> Option<Reading> {
        match self.limit(threshold, d, apix) {
            Some(resolution) => Some(Reading { resolution, bound: false }),
            None => self.beyond(half_map, threshold, d, apix),
        }
    }

    /// The crossing of [`CrossValidated::extrapolated`] where the estimate itself does not cross
    /// `threshold` within its shells (`None` where it does, or where that curve stays above the
    /// threshold to its end): the part of [`CrossValidated::reading`] read beyond the estimate.
    ///
    /// Past `last_shell` the curve is read only where the estimate is reliable up to it
    /// ([`CrossValidated::reliable_shell`] is `last_shell`). Otherwise a crossing finer than
    /// `last_shell`, or none, reads as that shell, a bound ([`Reading::bound`]): the estimate's
    /// last shells are its noisiest (on simulated sets with a point group they read above the
    /// truth), and the excess measured in the reliable shells cannot stand for the shells past
    /// the last: half maps of an O set of 1,000 particles, lowered by it, read Nyquist for maps
    /// 6–13% coarser (BENCHMARKS.md, "Noise realisations of one set").
    pub fn beyond(&self, half_map: &[f64], threshold: f64, d: usize, apix: f64) -> Option<Reading> {
        if self.limit(threshold, d, apix).is_some() {
            return None;
        }
        let read = crossing(&self.extrapolated(half_map), threshold, d, apix);
        let crossing = |resolution| Reading { resolution, bound: false };
        if self.reliable_shell() >= self.last() {
            return read.map(crossing);
        }
        let last_a = self.last_shell_a(d, apix);
        match read {
            None => Some(Reading { resolution: Resolution::Angstrom(last_a), bound: true }),
            Some(Resolution::Angstrom(a)) if a < last_a => Some(Reading { resolution: Resolution::Angstrom(last_a), bound: true }),
            r => r.map(crossing),
        }
    }

    /// `last_shell`, within the curves.
    fn last(&self) -> usize {
        self.last_shell.min(self.full_vs_truth.len() - 1)
    }
}

/// What the cross-validated estimate reads at a threshold ([`CrossValidated::reading`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub resolution: Resolution,
    /// The resolution is a bound at the estimate's last shell, not a crossing: the estimate
    /// holds above the threshold to that shell without being reliable up to it, and nothing is
    /// read past it ([`CrossValidated::beyond`]).
    pub bound: bool,
}

/// Where `curve` (shells up to the last estimated) first falls below `threshold`; `None` when
/// it stays above it to its end.
fn crossing(curve: &[f64], threshold: f64, d: usize, apix: f64) -> Option<Resolution> {
    match resolution_at(curve, threshold, d, apix) {
        Resolution::Nyquist => None,
        r => Some(r),
    }
}

/// The half-map FSC of independent halves whose average correlates `c` with the truth,
/// `c²/(2 − c²)`, with `c` clamped to `[0, 1]` (the inverse of
/// [`crate::fsc::implied_correlation`]).
fn half_map_equivalent(c: f64) -> f64 {
    let c = c.clamp(0.0, 1.0);
    c * c / (2.0 - c * c)
}

/// Per shell, the half-map equivalent of the estimate `full_vs_truth` moved by `shift` of its
/// `standard_error` (shell 0 is 1).
fn shifted_equivalents(full_vs_truth: &[f64], standard_error: &[f64], shift: f64) -> Vec<f64> {
    full_vs_truth
        .iter()
        .zip(standard_error)
        .enumerate()
        .map(|(n, (&c, &se))| if n == 0 { 1.0 } else { half_map_equivalent(c + shift * se) })
        .collect()
}

/// Where the cross-validated estimate places a crossing within its standard error
/// ([`CrossValidated::range`]): the crossing of the estimate plus one standard error (the
/// finest the truth's is likely to be) and of the estimate minus one (the coarsest). `None`
/// where that curve stays above the threshold up to the last shell estimated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitRange {
    pub finer: Option<Resolution>,
    pub coarser: Option<Resolution>,
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

/// Groups the Fourier components of each shell are dealt into for the estimate's standard
/// error (a delete-one-group jackknife, see [`cross_validated`]).
pub const JACKKNIFE_GROUPS: usize = 16;

/// Per component of a `d³` half spectrum (layout of [`Fft3`]), its jackknife group. Without a
/// point group: the angular wedge about the x axis its frequencies `(z, y)` fall in, by the
/// angle `atan2(fy, fz)`, [`JACKKNIFE_GROUPS`] equal wedges. With one: every component is
/// replaced by its orbit's representative (the member of `{±R·k}` farthest along a fixed
/// generic direction `u`, so that neighbouring orbits have neighbouring representatives, all in
/// one cone about `u`), and each shell's components are split into [`JACKKNIFE_GROUPS`] groups
/// of equal size by the representative's angle about `u` (wedges of the cone; wedges of equal
/// angle would hold very unequal numbers).
fn jackknife_labels(d: usize, group: Option<&PointGroup>) -> Vec<u8> {
    const K: usize = JACKKNIFE_GROUPS;
    let w = d / 2 + 1;
    let freqs = |i: usize| [(i % w) as f64, freq_index((i / w) % d, d) as f64, freq_index(i / (d * w), d) as f64];
    let Some(group) = group else {
        let mut labels = vec![0u8; d * d * w];
        for (i, l) in labels.iter_mut().enumerate() {
            let [_, fy, fz] = freqs(i);
            *l = (((fy.atan2(fz) + PI) / (2.0 * PI) * K as f64) as usize % K) as u8;
        }
        return labels;
    };
    // Rows: two directions across `u`, and `u` itself.
    let u = unit([0.2113, 0.5774, 0.7887]);
    let e1 = unit([u[1], -u[0], 0.0]);
    let e2 = [u[1] * e1[2] - u[2] * e1[1], u[2] * e1[0] - u[0] * e1[2], u[0] * e1[1] - u[1] * e1[0]];
    let basis: Mat3 = [e1, e2, u];
    let n_shells = d / 2 + 1;
    let mut angle = vec![0.0f64; d * d * w];
    let mut shell = vec![usize::MAX; d * d * w];
    let mut per_shell: Vec<Vec<f64>> = vec![Vec::new(); n_shells];
    for_each_component(d, |i, radius, _| {
        let n = radius.round() as usize;
        if n >= n_shells {
            return;
        }
        let k = freqs(i);
        let mut best = [0.0, 0.0, f64::NEG_INFINITY];
        for r in group.operators() {
            let p = mat_vec(&basis, mat_vec(r, k));
            let p = if p[2] >= 0.0 { p } else { p.map(|c| -c) };
            if p[2] > best[2] + 1e-9 {
                best = p;
            }
        }
        let a = best[1].atan2(best[0]);
        angle[i] = a;
        shell[i] = n;
        per_shell[n].push(a);
    });
    // Each shell's K − 1 cut angles at its quantiles; a component's group is the number of cuts
    // at or below its representative's angle (symmetry mates share the angle, so the group).
    let cuts: Vec<Vec<f64>> = per_shell
        .iter_mut()
        .map(|a| {
            a.sort_by(f64::total_cmp);
            (1..K).filter_map(|j| a.get(j * a.len() / K).copied()).collect()
        })
        .collect();
    angle
        .iter()
        .zip(&shell)
        .map(|(&a, &n)| match cuts.get(n) {
            Some(c) => c.partition_point(|&cut| cut <= a).min(K - 1) as u8,
            None => 0,
        })
        .collect()
}

/// The sums one shell (or one group of its components) contributes to the estimate: for the
/// Gaussian halves `G_A`, `G_B` and the backprojections `M_A`, `M_B`, `Re Σ X·conj(Y)` of the
/// pairs the estimate needs.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    ga_gb: f64,
    ga_ga: f64,
    gb_gb: f64,
    ma_mb: f64,
    ma_ma: f64,
    mb_mb: f64,
    ga_mb: f64,
    gb_ma: f64,
    ga_ma: f64,
    gb_mb: f64,
}

impl Sums {
    fn add(&mut self, o: &Sums, sign: f64) {
        self.ga_gb += sign * o.ga_gb;
        self.ga_ga += sign * o.ga_ga;
        self.gb_gb += sign * o.gb_gb;
        self.ma_mb += sign * o.ma_mb;
        self.ma_ma += sign * o.ma_ma;
        self.mb_mb += sign * o.mb_mb;
        self.ga_mb += sign * o.ga_mb;
        self.gb_ma += sign * o.gb_ma;
        self.ga_ma += sign * o.ga_ma;
        self.gb_mb += sign * o.gb_mb;
    }

    /// `C` from these sums (module docs), or `None` where `F_M` is not positive (no evidence of
    /// signal in the backprojection) or a sum has no power.
    fn estimate(&self) -> Option<f64> {
        let f_m = correlation(self.ma_mb, self.ma_ma, self.mb_mb).filter(|&f| f > 0.0)?;
        let x_a = correlation(self.ga_mb, self.ga_ga, self.mb_mb)?;
        let x_b = correlation(self.gb_ma, self.gb_gb, self.ma_ma)?;
        let f_g = correlation(self.ga_gb, self.ga_ga, self.gb_gb)?;
        let c = 0.5 * (x_a + x_b) / f_m.sqrt() * (2.0 / (1.0 + f_g.max(0.0))).sqrt();
        c.is_finite().then_some(c)
    }

    /// The model halves' mean correlation with their own halves' backprojections less their
    /// mean correlation with the other halves' ([`Pairing`]), or `None` where a sum has no power.
    fn own_minus_cross(&self) -> Option<f64> {
        let own = correlation(self.ga_ma, self.ga_ga, self.ma_ma)? + correlation(self.gb_mb, self.gb_gb, self.mb_mb)?;
        let cross = correlation(self.ga_mb, self.ga_ga, self.mb_mb)? + correlation(self.gb_ma, self.gb_gb, self.ma_ma)?;
        let v = 0.5 * (own - cross);
        v.is_finite().then_some(v)
    }
}

/// `Re Σ X·conj(Y) / sqrt(Σ|X|² · Σ|Y|²)` from its three sums, or `None` where either map has
/// no power.
fn correlation(num: f64, xx: f64, yy: f64) -> Option<f64> {
    (xx > 0.0 && yy > 0.0 && (xx * yy).is_finite()).then(|| num / (xx * yy).sqrt())
}

/// Per shell `0..=d/2`, the sums of each jackknife group ([`jackknife_labels`]) over the
/// components of the model halves and the backprojections, each map multiplied by `mask` first
/// when one is given.
fn shell_groups(
    model: [&[f32]; 2],
    backprojection: [&[f32]; 2],
    d: usize,
    mask: Option<&[f32]>,
    group: Option<&PointGroup>,
) -> Vec<[Sums; JACKKNIFE_GROUPS]> {
    let f = Fft3::new(d);
    let n_shells = d / 2 + 1;
    let spectrum = |v: &[f32]| match mask {
        Some(m) => f.forward(&v.iter().zip(m).map(|(x, w)| x * w).collect::<Vec<f32>>()),
        None => f.forward(v),
    };
    let [ga, gb] = model.map(spectrum);
    let [ma, mb] = backprojection.map(spectrum);
    let dot = |x: Complex32, y: Complex32| x.re as f64 * y.re as f64 + x.im as f64 * y.im as f64;
    let mut groups = vec![[Sums::default(); JACKKNIFE_GROUPS]; n_shells];
    let labels = jackknife_labels(d, group.filter(|g| !g.is_trivial()));
    for_each_component(d, |i, radius, wt| {
        let n = radius.round() as usize;
        if n >= n_shells {
            return;
        }
        let (a, b, x, y) = (ga[i], gb[i], ma[i], mb[i]);
        let sums = Sums {
            ga_gb: dot(a, b),
            ga_ga: dot(a, a),
            gb_gb: dot(b, b),
            ma_mb: dot(x, y),
            ma_ma: dot(x, x),
            mb_mb: dot(y, y),
            ga_mb: dot(a, y),
            gb_ma: dot(b, x),
            ga_ma: dot(a, x),
            gb_mb: dot(b, y),
        };
        groups[n][labels[i] as usize].add(&sums, wt);
    });
    groups
}

/// The shells' groups summed group by group (the same group of each shell).
fn pool(shells: &[[Sums; JACKKNIFE_GROUPS]]) -> [Sums; JACKKNIFE_GROUPS] {
    let mut pooled = [Sums::default(); JACKKNIFE_GROUPS];
    for shell in shells {
        for (p, g) in pooled.iter_mut().zip(shell) {
            p.add(g, 1.0);
        }
    }
    pooled
}

/// A statistic of pooled jackknife groups and its delete-one-group standard error: `None`
/// where the statistic of all groups is undefined.
fn jackknife(pooled: &[Sums; JACKKNIFE_GROUPS], statistic: impl Fn(&Sums) -> Option<f64>) -> Option<(f64, f64)> {
    const K: usize = JACKKNIFE_GROUPS;
    let mut total = Sums::default();
    for g in pooled {
        total.add(g, 1.0);
    }
    let value = statistic(&total)?;
    let without: Vec<f64> = pooled
        .iter()
        .map(|g| {
            let mut t = total;
            t.add(g, -1.0);
            statistic(&t).unwrap_or(0.0)
        })
        .collect();
    let mean = without.iter().sum::<f64>() / K as f64;
    let se = ((K - 1) as f64 / K as f64 * without.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>()).sqrt();
    se.is_finite().then_some((value, se))
}

/// The cross-validated curves of the model half maps `model` against the backprojections
/// `backprojection` of the same halves' images (`[half A, half B]` each, `d³` volumes), with
/// estimates up to `last_shell`, every map multiplied by `mask` first when one is given (the
/// mask of the half-map FSC the estimate limits; see the module docs).
///
/// The standard error is a delete-one-group jackknife: each shell's components are dealt into
/// [`JACKKNIFE_GROUPS`] wedges by their angle about the x axis, the estimate is made again
/// without each wedge in turn, and the spread of those estimates gives the error. It carries the
/// correlations between the ratio's sums (both cross terms and `F_M` share the backprojections'
/// noise) that a formula from the number of components alone misses, and, as the wedges are
/// contiguous, most of the correlation a mask brings between neighbouring components; on noise
/// realisations of a known volume it matched the estimate's scatter with and without a mask
/// (tests below), where that formula was up to four times it.
///
/// With a point group (`group`, maps symmetric under it), components related by its operators
/// (or by Friedel symmetry) hold the same information, and wedges that split them would share
/// their noise: the error read a fifth to two fifths of the scatter (C4, D2, O; tests below).
/// Each component then goes to the group of its orbit's representative (`jackknife_labels`),
/// and the error reads 0.7–0.9 of the scatter.
pub fn cross_validated(
    model: [&[f32]; 2],
    backprojection: [&[f32]; 2],
    d: usize,
    last_shell: usize,
    mask: Option<&[f32]>,
    group: Option<&PointGroup>,
) -> CrossValidated {
    let n_shells = d / 2 + 1;
    let last_shell = last_shell.min(d / 2);
    let groups = shell_groups(model, backprojection, d, mask, group);
    let mut full_vs_truth = vec![0.0; n_shells];
    let mut standard_error = vec![0.0; n_shells];
    full_vs_truth[0] = 1.0;
    for n in 1..=last_shell {
        // This shell's groups pooled with its neighbours' (the same group of each shell).
        let pooled = pool(&groups[n.saturating_sub(POOL).max(1)..=(n + POOL).min(last_shell)]);
        if let Some((c, se)) = jackknife(&pooled, Sums::estimate) {
            full_vs_truth[n] = c;
            standard_error[n] = se;
        }
    }
    let half_map_equivalent = shifted_equivalents(&full_vs_truth, &standard_error, -LIMIT_MARGIN_SE);
    let pairing = Pairing::of(&groups, last_shell);
    CrossValidated { full_vs_truth, standard_error, half_map_equivalent, last_shell, pairing }
}

/// A pairing of model halves with backprojections that reads as swapped: the model halves agree
/// with the backprojections given as the other halves' more than with those given as their
/// own, by more than this many standard errors ([`Pairing::looks_swapped`]).
pub const SWAPPED_SE: f64 = 4.0;

/// How much more each model half agrees with the backprojection of its own half's images than
/// with the other half's, over the upper half of the shells estimated
/// ([`CrossValidated::pairing`]).
///
/// It tells whether the backprojections were given in the order of the model halves: each model
/// half fitted its own images, so it carries some of their noise and agrees with the
/// backprojection of those images more than with that of the other half's, the more so where
/// the signal is weak. Given in the wrong order, each model half would be compared with the
/// backprojection of its own images, whose noise it shares, and the estimate would count that
/// noise as signal. Over the upper half of the shells estimated (`last_shell/2..=last_shell`,
/// pooled), the difference is positive in the right order (see the module docs) and as far
/// negative in the other; a model that fits no noise gives about 0 either way, and its order
/// cannot be told (nor does it matter much).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pairing {
    /// The model halves' mean FSC with their own halves' backprojections less their mean FSC
    /// with the other halves', over shells `first_shell..=last_shell` pooled.
    pub own_minus_cross: f64,
    /// Its delete-one-group jackknife standard error (the groups of [`cross_validated`]).
    pub standard_error: f64,
    pub first_shell: usize,
    pub last_shell: usize,
}

impl Pairing {
    /// The backprojections agree with the model halves as if given in the other order: each
    /// model half agrees more with the backprojection given for the other half than with the
    /// one given for its own, by more than [`SWAPPED_SE`] standard errors.
    pub fn looks_swapped(&self) -> bool {
        self.own_minus_cross < -SWAPPED_SE * self.standard_error
    }

    /// The resolution of `first_shell` in Å, on a `d` px box at `apix` Å.
    pub fn first_shell_a(&self, d: usize, apix: f64) -> f64 {
        d as f64 * apix / self.first_shell as f64
    }

    /// From the jackknife groups of every shell ([`shell_groups`]), up to `last_shell`; `None`
    /// when the sums have no power.
    fn of(groups: &[[Sums; JACKKNIFE_GROUPS]], last_shell: usize) -> Option<Pairing> {
        let first_shell = (last_shell / 2).max(1);
        if last_shell < first_shell {
            return None;
        }
        let (own_minus_cross, standard_error) = jackknife(&pool(&groups[first_shell..=last_shell]), Sums::own_minus_cross)?;
        Some(Pairing { own_minus_cross, standard_error, first_shell, last_shell })
    }
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

    /// Two copies of `base` (`d³`), each with its own noise of standard deviation `sigma`.
    fn noisy_halves(base: &[f32], d: usize, sigma: f32, rng: &mut Rng) -> Vec<Vec<f32>> {
        (0..2).map(|_| add(base, &noise(d, sigma, rng), 1.0)).collect()
    }

    const NOISE: f32 = 2.0;
    const SHARED: f32 = 0.4;

    fn rms(v: &[f32]) -> f32 {
        (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt()
    }

    #[test]
    fn a_model_fitted_to_its_own_images_pairs_with_their_backprojection() {
        // Each half's images carry their own noise; the backprojection of a half holds all of
        // it, a model fitted to the same images a fraction (`fitted`), plus an error of its own
        // that no image holds.
        let d = 32;
        let mut rng = Rng::new(41);
        let truth = random_volume(d, 5.0, &mut rng);
        let s = rms(&truth);
        let image_noise: Vec<Vec<f32>> = (0..2).map(|_| noise(d, NOISE * s, &mut rng)).collect();
        let bp: Vec<Vec<f32>> = image_noise.iter().map(|n| add(&truth, n, 1.0)).collect();
        for (fitted, expect_pairing) in [(0.3f32, true), (0.0, false)] {
            let model: Vec<Vec<f32>> =
                image_noise.iter().map(|n| add(&add(&truth, n, fitted), &noise(d, 0.5 * s, &mut rng), 1.0)).collect();
            let read = |b: [&[f32]; 2]| cross_validated([&model[0], &model[1]], b, d, 13, None, None).pairing.expect("sums with power");
            let (right, swapped) = (read([&bp[0], &bp[1]]), read([&bp[1], &bp[0]]));
            // The same statistic with its sign changed, and the same groups.
            assert!((right.own_minus_cross + swapped.own_minus_cross).abs() < 1e-9, "{right:?} {swapped:?}");
            assert!((right.standard_error - swapped.standard_error).abs() < 1e-9);
            assert_eq!((right.first_shell, right.last_shell), (6, 13));
            assert!(!right.looks_swapped(), "fitted {fitted}: {right:?}");
            if expect_pairing {
                assert!(right.own_minus_cross > 10.0 * right.standard_error, "fitted {fitted}: {right:?}");
                assert!(swapped.looks_swapped(), "fitted {fitted}: {swapped:?}");
            } else {
                // Nothing fitted: no order can be told, and none is called swapped.
                assert!(right.own_minus_cross.abs() < 3.0 * right.standard_error, "{right:?}");
                assert!(!swapped.looks_swapped(), "{swapped:?}");
            }
        }
    }

    /// A 32 px truth, model halves sharing an error that grows against it with frequency
    /// (detail both infer alike) besides each half's own noise, and backprojection halves with
    /// only their own noise.
    struct SharedErrorCase {
        model: Vec<Vec<f32>>,
        bp: Vec<Vec<f32>>,
        /// The full model's FSC with the truth, and the model halves' FSC.
        truth_fsc: Vec<f64>,
        half: Vec<f64>,
    }

    fn shared_error_case() -> SharedErrorCase {
        let d = 32;
        let mut rng = Rng::new(11);
        let truth = random_volume(d, 6.0, &mut rng);
        let s = rms(&truth);
        let shared = random_volume(d, 10.0, &mut rng);
        let shared = add(&vec![0.0; shared.len()], &shared, SHARED * s / rms(&shared));
        let model = noisy_halves(&add(&truth, &shared, 1.0), d, NOISE * s, &mut rng);
        let bp = noisy_halves(&truth, d, NOISE * s, &mut rng);
        let full: Vec<f32> = model[0].iter().zip(&model[1]).map(|(a, b)| 0.5 * (a + b)).collect();
        let (truth_fsc, half) = (fsc(&full, &truth, d), fsc(&model[0], &model[1], d));
        SharedErrorCase { model, bp, truth_fsc, half }
    }

    #[test]
    fn a_shared_error_inflates_the_half_map_fsc_but_not_the_cross_validated_estimate() {
        let d = 32;
        let SharedErrorCase { model, bp, truth_fsc, half } = shared_error_case();
        let cv = cross_validated([&model[0], &model[1]], [&bp[0], &bp[1]], d, d / 2, None, None);
        // Shells with signal: the half-map FSC predicts more than the truth gives, the estimate
        // does not.
        for n in 10..=12 {
            let predicted = implied_correlation(half[n]);
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
        assert_eq!(cv.beyond(&half, 0.143, d, apix), None, "nothing is read beyond an estimate that crosses");
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
    fn beyond_the_shells_estimated_the_half_maps_are_lowered_by_the_excess_measured() {
        // The shared error of the first test; the estimate ends before the truth's crossing.
        let d = 32;
        let SharedErrorCase { model, bp, truth_fsc, half } = shared_error_case();
        let apix = 1.0;
        let (Resolution::Angstrom(t), Resolution::Angstrom(c)) =
            (resolution_at(&truth_fsc, 0.5, d, apix), resolution_at(&half, 0.143, d, apix))
        else {
            panic!("crossings expected")
        };
        assert!(c < 0.93 * t, "the half maps claim {c} Å for a map at {t} Å: not optimistic enough to test");
        for last in 8..=11 {
            let cv = cross_validated([&model[0], &model[1]], [&bp[0], &bp[1]], d, last, None, None);
            assert_eq!(cv.limit(0.143, d, apix), None, "the estimate holds to shell {last}");
            assert_eq!(cv.reliable_shell(), last);
            let Some(Reading { resolution: Resolution::Angstrom(r), bound: false }) = cv.reading(&half, 0.143, d, apix) else {
                panic!("a reading beyond shell {last}")
            };
            // The excess grows fast here: three shells short of the truth's crossing (shell
            // 11.3) the one measured is smaller than the one beyond, and the reading 5% finer.
            assert!((r - t).abs() / t < 0.05, "estimate to shell {last}: read {r} Å, truth {t} Å (half maps {c} Å)");
            assert!(r > c, "estimate to shell {last}: read {r} Å, no coarser than the half maps' {c} Å");
        }
    }

    #[test]
    fn the_excess_is_measured_only_where_the_estimate_is_reliable() {
        let n = 16;
        // An estimate of 0.9 whose standard error passes 10% of it at shell 9 (and is wild after).
        let c: Vec<f64> = (0..=n).map(|i| if i == 0 { 1.0 } else { 0.9 }).collect();
        let se: Vec<f64> = (0..=n).map(|i| if i < 9 { 0.02 } else { 0.3 }).collect();
        let cv = CrossValidated {
            half_map_equivalent: shifted_equivalents(&c, &se, -LIMIT_MARGIN_SE),
            full_vs_truth: c,
            standard_error: se,
            last_shell: 13,
            pairing: None,
        };
        assert_eq!(cv.reliable_shell(), 8);
        // Half maps claiming a correlation of 0.95 up to shell 8 and 0.99 after: the excess is
        // counted over the lowered estimate (0.89) at shells 1–8 only.
        let claim = |r: f64| r * r / (2.0 - r * r);
        let half: Vec<f64> = (0..=n).map(|i| claim(if i <= 8 { 0.95 } else { 0.99 })).collect();
        assert!((cv.excess(&half) - 0.06).abs() < 1e-9, "{}", cv.excess(&half));
        let curve = cv.extrapolated(&half);
        assert_eq!(curve[..=8], cv.half_map_equivalent[..=8]);
        for &v in &curve[9..] {
            assert!((v - claim(0.93)).abs() < 1e-9, "{curve:?}");
        }
        // No excess where the half maps claim less than the estimate. Their curve crosses past
        // the last shell (13), but the estimate is reliable only to shell 8: the reading is a
        // bound at the last shell, not the crossing past it.
        let mut falling: Vec<f64> = (0..=n).map(|i| if i <= 14 { claim(0.8) } else { 0.05 }).collect();
        falling[0] = 1.0;
        assert_eq!(cv.excess(&falling), 0.0);
        assert_eq!(cv.limit(0.143, 32, 1.0), None);
        let bound = Some(Reading { resolution: Resolution::Angstrom(32.0 / 13.0), bound: true });
        assert_eq!(cv.reading(&falling, 0.143, 32, 1.0), bound);
        assert_eq!(cv.beyond(&falling, 0.143, 32, 1.0), cv.reading(&falling, 0.143, 32, 1.0));
        // Half maps claiming 0.99 to Nyquist read the same bound, not Nyquist.
        assert_eq!(cv.reading(&half, 0.143, 32, 1.0), bound);
        // A crossing between the reliable and the last shell is read as it is.
        let mut early = falling.clone();
        early[11..].iter_mut().for_each(|v| *v = 0.05);
        let (Some(Reading { resolution: Resolution::Angstrom(r), bound: false }), Resolution::Angstrom(e)) =
            (cv.reading(&early, 0.143, 32, 1.0), resolution_at(&early, 0.143, 32, 1.0))
        else {
            panic!("crossings expected")
        };
        assert!((r - e).abs() < 1e-9 && r > 32.0 / 11.0, "read {r} Å, the half maps cross at {e} Å");
        // Reliable to the last shell, the crossing past it is read from the half maps' curve.
        let se = vec![0.02; n + 1];
        let reliable = CrossValidated {
            half_map_equivalent: shifted_equivalents(&cv.full_vs_truth, &se, -LIMIT_MARGIN_SE),
            standard_error: se,
            ..cv.clone()
        };
        assert_eq!(reliable.reliable_shell(), 13);
        let (Some(Reading { resolution: Resolution::Angstrom(r), bound: false }), Resolution::Angstrom(e)) =
            (reliable.reading(&falling, 0.143, 32, 1.0), resolution_at(&falling, 0.143, 32, 1.0))
        else {
            panic!("crossings expected")
        };
        assert!((r - e).abs() < 1e-9 && r < 32.0 / 13.0, "read {r} Å, the half maps cross at {e} Å");
    }

    #[test]
    fn the_standard_error_is_the_scatter_of_the_estimate_over_noise_realisations() {
        let d = 32;
        let mut rng = Rng::new(21);
        let truth = random_volume(d, 6.0, &mut rng);
        let s = rms(&truth);
        let ratio = error_over_scatter(d, 40, || {
            let model = noisy_halves(&truth, d, NOISE * s, &mut rng);
            let bp = noisy_halves(&truth, d, 2.0 * NOISE * s, &mut rng);
            cross_validated([&model[0], &model[1]], [&bp[0], &bp[1]], d, d / 2 - 1, None, None)
        });
        // Over the shells together (each shell's scatter from 40 runs is itself uncertain by
        // about 11%), the reported error matches the estimate's scatter within 15% (a formula
        // from the number of components alone gave 1.5 to 4 times it here).
        assert!((0.85..1.15).contains(&ratio), "reported standard error / scatter = {ratio}");
    }

    /// Over `runs` estimates (each from new noise, made by `estimate`) on a `d` px box: the
    /// root-mean-square reported standard error over the estimates' scatter, over shells 4–11
    /// together.
    fn error_over_scatter(d: usize, runs: usize, mut estimate: impl FnMut() -> CrossValidated) -> f64 {
        let shells = 4..=11;
        let (mut sum, mut sum2, mut se) = (vec![0.0; d / 2 + 1], vec![0.0; d / 2 + 1], vec![0.0; d / 2 + 1]);
        for _ in 0..runs {
            let cv = estimate();
            for n in shells.clone() {
                sum[n] += cv.full_vs_truth[n];
                sum2[n] += cv.full_vs_truth[n] * cv.full_vs_truth[n];
                se[n] += cv.standard_error[n] / runs as f64;
            }
        }
        let (mut scatter2, mut reported2) = (0.0, 0.0);
        for n in shells {
            let mean = sum[n] / runs as f64;
            scatter2 += (sum2[n] / runs as f64 - mean * mean) * runs as f64 / (runs - 1) as f64;
            reported2 += se[n] * se[n];
        }
        (reported2 / scatter2).sqrt()
    }

    /// A compact molecule in a box of solvent: a random volume inside a soft sphere of a fifth
    /// of the box's radius, and the mask around it.
    fn molecule(d: usize, rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
        let inside = crate::mask::spherical(d, d as f64 / 5.0, 3.0);
        (times(&random_volume(d, 6.0, rng), &inside), crate::mask::spherical(d, d as f64 / 5.0 + 3.0, 4.0))
    }

    fn times(a: &[f32], m: &[f32]) -> Vec<f32> {
        a.iter().zip(m).map(|(x, w)| x * w).collect()
    }

    #[test]
    fn masked_the_estimate_follows_the_masked_truth_with_less_noise() {
        let d = 32;
        let mut rng = Rng::new(31);
        let (truth, mask) = molecule(d, &mut rng);
        let s = rms(&truth);
        // Model halves: the truth, an error both share and each half's own, inside the molecule;
        // backprojections: the truth with noise over the whole box (solvent included).
        let shared = times(&random_volume(d, 10.0, &mut rng), &mask);
        let shared = add(&vec![0.0; shared.len()], &shared, SHARED * s / rms(&shared));
        let model: Vec<Vec<f32>> =
            (0..2).map(|_| add(&add(&truth, &shared, 1.0), &times(&noise(d, NOISE * s, &mut rng), &mask), 1.0)).collect();
        let bp = noisy_halves(&truth, d, 3.0 * NOISE * s, &mut rng);
        let masked = cross_validated([&model[0], &model[1]], [&bp[0], &bp[1]], d, d / 2, Some(&mask), None);
        let unmasked = cross_validated([&model[0], &model[1]], [&bp[0], &bp[1]], d, d / 2, None, None);
        let full: Vec<f32> = model[0].iter().zip(&model[1]).map(|(a, b)| 0.5 * (a + b)).collect();
        let truth_fsc = fsc(&times(&full, &mask), &times(&truth, &mask), d);
        let half = fsc(&times(&model[0], &mask), &times(&model[1], &mask), d);
        for (n, &t) in truth_fsc.iter().enumerate().take(11).skip(3) {
            let (c, se) = (masked.full_vs_truth[n], masked.standard_error[n]);
            assert!((c - t).abs() < 3.0 * se + 0.02, "shell {n}: masked estimate {c} ± {se} against the masked truth's {t}");
            // The solvent's noise is left out: the masked estimate is the more precise.
            assert!(se < 0.7 * unmasked.standard_error[n], "shell {n}: masked {se}, unmasked {}", unmasked.standard_error[n]);
        }
        // And the shared error still inflates the half-map FSC, not the estimate.
        for n in 9..=12 {
            let predicted = implied_correlation(half[n]);
            assert!(predicted > truth_fsc[n] + 0.05, "shell {n}: half maps predict {predicted}, truth {}", truth_fsc[n]);
        }
    }

    #[test]
    fn masked_the_standard_error_is_still_the_scatter_of_the_estimate() {
        // A mask makes neighbouring components correlated; interleaved jackknife groups then read
        // about half of the scatter here, the wedges about all of it.
        let d = 32;
        let mut rng = Rng::new(41);
        let (truth, mask) = molecule(d, &mut rng);
        let s = rms(&truth);
        let ratio = error_over_scatter(d, 40, || {
            let model: Vec<Vec<f32>> = (0..2).map(|_| add(&truth, &times(&noise(d, NOISE * s, &mut rng), &mask), 1.0)).collect();
            let bp = noisy_halves(&truth, d, 3.0 * NOISE * s, &mut rng);
            cross_validated([&model[0], &model[1]], [&bp[0], &bp[1]], d, d / 2 - 1, Some(&mask), None)
        });
        assert!((0.75..1.3).contains(&ratio), "reported standard error / scatter = {ratio}");
    }

    #[test]
    fn with_a_point_group_the_standard_error_is_still_the_scatter_of_the_estimate() {
        // Symmetric maps: the wedges of C1 split each orbit of equal components and read a fifth
        // (O) to two fifths (C4, D2) of the scatter; grouped by orbit, most of it.
        use crate::symmetry::{symmetrize_map, PointGroup};
        let d = 32;
        for name in ["C4", "D2", "O"] {
            let g = PointGroup::parse(name).unwrap();
            let mut rng = Rng::new(41);
            let (truth, mask) = molecule(d, &mut rng);
            let (truth, mask) = (symmetrize_map(&truth, d, &g), symmetrize_map(&mask, d, &g));
            let s = rms(&truth);
            let sym_noise = |sigma: f32, rng: &mut Rng| symmetrize_map(&noise(d, sigma, rng), d, &g);
            let mut ratios = [0.0; 2];
            for (ratio, with) in ratios.iter_mut().zip([None, Some(&g)]) {
                *ratio = error_over_scatter(d, 40, || {
                    let model: Vec<Vec<f32>> = (0..2).map(|_| add(&truth, &times(&sym_noise(NOISE * s, &mut rng), &mask), 1.0)).collect();
                    let bp: Vec<Vec<f32>> = (0..2).map(|_| add(&truth, &sym_noise(3.0 * NOISE * s, &mut rng), 1.0)).collect();
                    cross_validated([&model[0], &model[1]], [&bp[0], &bp[1]], d, d / 2 - 1, Some(&mask), with)
                });
            }
            eprintln!("{name}: reported standard error / scatter {:.3} without the group, {:.3} with it", ratios[0], ratios[1]);
            assert!(ratios[0] < 0.5, "{name}: without the group {}", ratios[0]);
            // Grouped by orbit, 0.75 (C4), 0.87 (D2) and 0.70 (O): the groups of a small group's
            // orbits are thin slices of a small cone, and the mask still correlates neighbours
            // across their edges (at these shells an O group holds one or two orbits).
            assert!((0.65..1.3).contains(&ratios[1]) && ratios[1] > 1.7 * ratios[0], "{name}: with the group {}", ratios[1]);
        }
    }

    #[test]
    fn independent_halves_are_not_limited_and_no_estimate_beyond_the_last_shell() {
        let d = 32;
        let mut rng = Rng::new(5);
        let truth = random_volume(d, 6.0, &mut rng);
        let s = rms(&truth);
        let model = noisy_halves(&truth, d, NOISE * s, &mut rng);
        let bp = noisy_halves(&truth, d, NOISE * s, &mut rng);
        let cv = cross_validated([&model[0], &model[1]], [&bp[0], &bp[1]], d, 14, None, None);
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
            pairing: None,
        };
        assert_eq!(flat.limit(0.143, d, apix), None);
        assert_eq!(limited(Resolution::Nyquist, None), Resolution::Nyquist);
        assert_eq!(limited(Resolution::Angstrom(3.0), Some(Resolution::Angstrom(2.5))), Resolution::Angstrom(3.0));
        assert_eq!(limited(Resolution::Nyquist, Some(Resolution::Angstrom(2.5))), Resolution::Angstrom(2.5));
        assert_eq!(limited(Resolution::Angstrom(3.0), Some(Resolution::NoCorrelation)), Resolution::NoCorrelation);
    }
}
