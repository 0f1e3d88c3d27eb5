//! The model's size between epochs: its growth ([`grow`], `--grow auto`, off by default: every
//! Gaussian split in two once, keeping the map), and optional density control, splitting
//! Gaussians that the data pull at hardest (or that have grown large) and pruning those whose
//! amplitude has vanished.
//!
//! Density control is off by default; BENCHMARKS.md has the measurement that decided this.
//!
//! * **Statistics.** Over an epoch, every step adds the norm of each Gaussian's mean gradient
//!   (box units) to that Gaussian's sum and counts the steps in which its gradient was not
//!   zero (it reached the image). The mean over those steps measures how hard the data pull
//!   the Gaussian; the statistics are part of the checkpoint so a resumed run sees the same
//!   numbers.
//! * **Split.** The Gaussians whose mean gradient norm is in the top `split_fraction` (among
//!   those that were seen), and those whose largest standard deviation exceeds
//!   `split_large_px` pixels, are each replaced by two: both centres drawn from the parent's
//!   own distribution, scales divided by 1.6, the parent's rotation, and half its amplitude
//!   each, so the pair carries the parent's mass. The children start with fresh Adam moments.
//! * **Prune.** Gaussians whose amplitude is below `prune_fraction` of the model's mean
//!   amplitude are dropped with their Adam moments (at least one Gaussian always remains).
//!
//! The draws come from a stream of the run's seed, the epoch and the half, so the result is
//! the same on every machine and on resume.

use crate::adam::Adam;
use cryosplat_core::gaussian::{covariance, GaussianModel, PhysicalGaussian, PARAMS_PER_GAUSSIAN, P_MEAN};
use cryosplat_core::rng::Rng;

/// Per-Gaussian gradient statistics over an epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GradStats {
    /// Sum over steps of the mean-gradient norm.
    pub sum: Vec<f32>,
    /// Steps in which the Gaussian had a non-zero gradient.
    pub count: Vec<f32>,
}

impl GradStats {
    pub fn new(n: usize) -> Self {
        GradStats { sum: vec![0.0; n], count: vec![0.0; n] }
    }

    pub fn reset(&mut self, n: usize) {
        self.sum.clear();
        self.sum.resize(n, 0.0);
        self.count.clear();
        self.count.resize(n, 0.0);
    }

    /// Add one step's gradient.
    pub fn add(&mut self, grad: &[[f32; PARAMS_PER_GAUSSIAN]]) {
        for ((s, c), g) in self.sum.iter_mut().zip(self.count.iter_mut()).zip(grad) {
            let m = &g[P_MEAN..P_MEAN + 3];
            let n2 = m[0] * m[0] + m[1] * m[1] + m[2] * m[2];
            if n2 > 0.0 && n2.is_finite() {
                *s += n2.sqrt();
                *c += 1.0;
            }
        }
    }

    /// Mean gradient norm of Gaussian `i` over the steps that saw it (0 if none did).
    pub fn mean(&self, i: usize) -> f32 {
        if self.count[i] > 0.0 {
            self.sum[i] / self.count[i]
        } else {
            0.0
        }
    }
}

/// Density-control settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DensityConfig {
    /// Epochs (1-based) before which Gaussians are split, using the previous epoch's statistics.
    pub densify_epochs: Vec<usize>,
    /// Fraction of the seen Gaussians (largest mean gradient norm) split each time.
    pub split_fraction: f64,
    /// Also split every Gaussian whose largest standard deviation exceeds this many pixels
    /// (0: no size criterion).
    pub split_large_px: f64,
    /// Epochs (1-based) before which vanished Gaussians are pruned.
    pub prune_epochs: Vec<usize>,
    /// Prune Gaussians with an amplitude below this fraction of the mean amplitude.
    pub prune_fraction: f64,
}

impl Default for DensityConfig {
    fn default() -> Self {
        DensityConfig {
            densify_epochs: Vec::new(),
            split_fraction: 0.1,
            split_large_px: 0.0,
            prune_epochs: Vec::new(),
            prune_fraction: 0.01,
        }
    }
}

impl DensityConfig {
    pub fn is_active(&self) -> bool {
        !self.densify_epochs.is_empty() || !self.prune_epochs.is_empty()
    }

    /// Check the settings for a run of `epochs` passes: fractions within their range, and
    /// no split or prune planned before an epoch the run will not reach (1-based; epoch 1 has
    /// no statistics to act on).
    pub fn validate(&self, epochs: usize) -> Result<(), String> {
        if !(self.split_fraction > 0.0 && self.split_fraction <= 1.0) {
            return Err(format!("--densify-fraction {}: expected a fraction in (0, 1]", self.split_fraction));
        }
        if !(self.prune_fraction >= 0.0 && self.prune_fraction < 1.0) {
            return Err(format!("--prune-fraction {}: expected a fraction in [0, 1)", self.prune_fraction));
        }
        if !(self.split_large_px >= 0.0 && self.split_large_px.is_finite()) {
            return Err(format!("--densify-large-px {}: expected 0 (off) or a size in pixels", self.split_large_px));
        }
        for (name, list) in [("--densify-epochs", &self.densify_epochs), ("--prune-epochs", &self.prune_epochs)] {
            if let Some(&e) = list.iter().find(|&&e| e < 2 || e > epochs) {
                return Err(format!("{name} {e}: the run has epochs 1 to {epochs}, and density control acts before epochs 2 to {epochs}"));
            }
        }
        Ok(())
    }
}

/// The hooks between a half's passes: density control, and the model's growth (splitting every
/// Gaussian in two once, before pass `grow_before`, 1-based, when the model still holds no more
/// than `start_count` Gaussians, so that a run resumed with another `--epochs` never grows twice).
#[derive(Clone, Copy, Debug)]
pub struct ModelHooks<'a> {
    pub density: &'a DensityConfig,
    pub grow: Option<GrowAt>,
}

/// When the model grows: before pass `before_epoch` (1-based), if it holds at most `start_count`
/// Gaussians (its size at the start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrowAt {
    pub before_epoch: usize,
    pub start_count: usize,
}

/// What one density-control pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DensityChange {
    pub split: usize,
    pub pruned: usize,
    pub after: usize,
}

/// Apply density control to one half before its (1-based) epoch `epoch1`, remapping the Adam
/// state the same way. `d` is the box size (for the pixel criterion).
pub fn control(
    cfg: &DensityConfig,
    epoch1: usize,
    model: &mut GaussianModel,
    adam: &mut Adam,
    stats: &GradStats,
    d: usize,
    rng: &mut Rng,
) -> DensityChange {
    let n = model.len();
    let mut change = DensityChange { after: n, ..Default::default() };
    let do_split = cfg.densify_epochs.contains(&epoch1);
    let do_prune = cfg.prune_epochs.contains(&epoch1);
    if !(do_split || do_prune) || n == 0 {
        return change;
    }
    let phys: Vec<PhysicalGaussian> = (0..n).map(|i| model.physical_f64(i)).collect();
    let mut remove = vec![false; n];
    if do_prune {
        let mean_amp = phys.iter().map(|g| g.amp).sum::<f64>() / n as f64;
        let floor = cfg.prune_fraction * mean_amp;
        for (r, g) in remove.iter_mut().zip(&phys) {
            *r = g.amp < floor;
        }
        if remove.iter().all(|&r| r) {
            // Keep the heaviest one so that the model never becomes empty.
            let best = (0..n).max_by(|&a, &b| phys[a].amp.total_cmp(&phys[b].amp)).expect("n > 0");
            remove[best] = false;
        }
    }
    let mut split = vec![false; n];
    if do_split {
        let mut seen: Vec<usize> = (0..n).filter(|&i| !remove[i] && stats.count.get(i).copied().unwrap_or(0.0) > 0.0).collect();
        // Largest mean gradient first; ties by index so the choice is deterministic.
        seen.sort_by(|&a, &b| stats.mean(b).total_cmp(&stats.mean(a)).then(a.cmp(&b)));
        let k = ((seen.len() as f64) * cfg.split_fraction.clamp(0.0, 1.0)).round() as usize;
        for &i in &seen[..k] {
            split[i] = true;
        }
        if cfg.split_large_px > 0.0 {
            let lim = cfg.split_large_px / d as f64;
            for i in 0..n {
                if !remove[i] && phys[i].scales.iter().cloned().fold(0.0, f64::max) > lim {
                    split[i] = true;
                }
            }
        }
    }
    let mut keep = Vec::with_capacity(n);
    let mut children = Vec::new();
    for i in 0..n {
        if remove[i] {
            change.pruned += 1;
            continue;
        }
        if !split[i] {
            keep.push(i);
            continue;
        }
        change.split += 1;
        children.extend(split_in_two(&phys[i], rng));
    }
    let mut params: Vec<[f32; PARAMS_PER_GAUSSIAN]> = keep.iter().map(|&i| model.params[i]).collect();
    params.extend_from_slice(&children);
    adam.remap(&keep, children.len());
    model.params = params;
    change.after = model.len();
    change
}

/// Split every Gaussian of `model` in two, each pair keeping its parent's mass, centre and
/// covariance (`split_keeping_moments`), so the map barely changes; both children inherit
/// the parent's Adam moments, so the optimiser continues where it was instead of restarting
/// (fresh moments make the next steps several times the learning rate). The model's growth of
/// [`super::Growth::Auto`]. Gaussian `i` of the grown model and Gaussian `i + n` are the
/// children of Gaussian `i` of the old one.
pub fn grow(model: &mut GaussianModel, adam: &mut Adam, rng: &mut Rng) -> DensityChange {
    let n = model.len();
    let mut second = Vec::with_capacity(n);
    for i in 0..n {
        let [a, b] = split_keeping_moments(&model.physical_f64(i), rng);
        model.params[i] = a;
        second.push(b);
    }
    model.params.extend_from_slice(&second);
    let both: Vec<usize> = (0..n).chain(0..n).collect();
    adam.remap(&both, 0);
    DensityChange { split: n, pruned: 0, after: model.len() }
}

/// How far a growth split moves each child from the parent's centre, in the parent's standard
/// deviations along the split axis.
const GROW_OFFSET_SD: f64 = 0.5;

/// The two children of a growth split: along one of the parent's principal axes (drawn with
/// probability proportional to its variance), at ±[`GROW_OFFSET_SD`] standard deviations
/// from its centre, that axis's scale shrunk by `√(1 − GROW_OFFSET_SD²)` and half the amplitude
/// each; rotation and the other scales kept. The pair has the parent's mass, centre and
/// covariance.
fn split_keeping_moments(g: &PhysicalGaussian, rng: &mut Rng) -> [[f32; PARAMS_PER_GAUSSIAN]; 2] {
    let var = g.scales.map(|s| s * s);
    let u = rng.uniform() * (var[0] + var[1] + var[2]);
    let k = if u < var[0] {
        0
    } else if u < var[0] + var[1] {
        1
    } else {
        2
    };
    let r = g.rotation();
    let step = GROW_OFFSET_SD * g.scales[k];
    let mut scales = g.scales;
    scales[k] *= (1.0 - GROW_OFFSET_SD * GROW_OFFSET_SD).sqrt();
    [1.0, -1.0].map(|sign: f64| {
        let mean = [0, 1, 2].map(|a| g.mean[a] + sign * step * r[a][k]);
        PhysicalGaussian { mean, scales, quat: g.quat, amp: 0.5 * g.amp }.to_raw()
    })
}

/// The two children of a split: centres drawn from the parent's own distribution, scales
/// divided by 1.6, the parent's rotation and half its amplitude each.
fn split_in_two(g: &PhysicalGaussian, rng: &mut Rng) -> [[f32; PARAMS_PER_GAUSSIAN]; 2] {
    let l = cholesky3(&covariance(g.scales, g.quat));
    [(); 2].map(|_| {
        let z = [rng.normal(), rng.normal(), rng.normal()];
        let mut mean = g.mean;
        for (r, m) in mean.iter_mut().enumerate() {
            *m += l[r][0] * z[0] + l[r][1] * z[1] + l[r][2] * z[2];
        }
        PhysicalGaussian { mean, scales: g.scales.map(|s| s / 1.6), quat: g.quat, amp: 0.5 * g.amp }.to_raw()
    })
}

/// Lower-triangular Cholesky factor of a symmetric positive semi-definite 3×3 matrix
/// (non-positive pivots read as zero).
fn cholesky3(a: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut l = [[0.0f64; 3]; 3];
    for i in 0..3 {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                l[i][j] = (a[i][i] - s).max(0.0).sqrt();
            } else {
                l[i][j] = if l[j][j] > 0.0 { (a[i][j] - s) / l[j][j] } else { 0.0 };
            }
        }
    }
    l
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_outside_the_run_are_refused() {
        let ok = DensityConfig { densify_epochs: vec![2, 3], prune_epochs: vec![3], ..Default::default() };
        assert_eq!(ok.validate(3), Ok(()));
        assert!(ok.validate(2).unwrap_err().contains("--densify-epochs 3"));
        let first = DensityConfig { densify_epochs: vec![1], ..Default::default() };
        assert!(first.validate(5).unwrap_err().contains("before epochs 2 to 5"));
        let frac = DensityConfig { split_fraction: 1.5, ..Default::default() };
        assert!(frac.validate(5).unwrap_err().contains("--densify-fraction 1.5"));
        let prune = DensityConfig { prune_fraction: f64::NAN, ..Default::default() };
        assert!(prune.validate(5).unwrap_err().contains("--prune-fraction"));
    }

    use super::*;
    use crate::adam::AdamConfig;

    fn model(amps: &[f32], scales: &[f32]) -> GaussianModel {
        GaussianModel {
            params: amps
                .iter()
                .zip(scales)
                .enumerate()
                .map(|(i, (&a, &s))| GaussianModel::raw_from_physical([i as f32 * 0.1, 0.0, 0.0], [s, s * 0.5, s], [1.0, 0.0, 0.0, 0.0], a))
                .collect(),
        }
    }

    #[test]
    fn split_keeps_mass_and_shrinks() {
        let mut m = model(&[1.0, 2.0, 3.0, 4.0], &[0.01; 4]);
        let mut adam = Adam::new(AdamConfig::default(), 4);
        adam.m[3][0] = 7.0;
        let mut st = GradStats::new(4);
        let mut g = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; 4];
        g[1][0] = 5.0;
        g[3][1] = 1.0;
        g[0][2] = 0.5;
        st.add(&g);
        let cfg = DensityConfig { densify_epochs: vec![2], split_fraction: 0.34, ..Default::default() };
        let ch = control(&cfg, 2, &mut m, &mut adam, &st, 64, &mut Rng::new(1));
        // Three Gaussians were seen; the top third (one: index 1) is split.
        assert_eq!(ch, DensityChange { split: 1, pruned: 0, after: 5 });
        assert_eq!(adam.len(), 5);
        assert_eq!(adam.m[2][0], 7.0);
        assert_eq!(adam.m[3], [0.0; PARAMS_PER_GAUSSIAN]);
        let total: f64 = (0..m.len()).map(|i| m.physical_f64(i).amp).sum();
        assert!((total - 10.0).abs() < 1e-4, "{total}");
        let c = m.physical_f64(3);
        assert!((c.amp - 1.0).abs() < 1e-5);
        assert!((c.scales[0] - 0.01 / 1.6).abs() < 1e-6 && (c.scales[1] - 0.005 / 1.6).abs() < 1e-6);
        // Children lie within a few parent standard deviations of the parent.
        assert!((c.mean[0] - 0.1).abs() < 0.05 && c.mean[1].abs() < 0.03);
        // Not an epoch listed: nothing changes.
        let before = m.clone();
        let ch = control(&cfg, 3, &mut m, &mut adam, &st, 64, &mut Rng::new(1));
        assert_eq!(ch.after, 5);
        assert_eq!(m, before);
    }

    #[test]
    fn growth_splits_every_gaussian_in_place() {
        let mut m = model(&[1.0, 2.0, 3.0], &[0.01, 0.02, 0.03]);
        let parents = m.clone();
        let mut adam = Adam::new(AdamConfig::default(), 3);
        adam.m[1][0] = 7.0;
        let ch = grow(&mut m, &mut adam, &mut Rng::new(4));
        assert_eq!(ch, DensityChange { split: 3, pruned: 0, after: 6 });
        // Both children carry on with the parent's moments.
        assert_eq!((adam.len(), adam.m[1][0], adam.m[4][0]), (6, 7.0, 7.0));
        for i in 0..3 {
            let p = parents.physical_f64(i);
            let (a, b) = (m.physical_f64(i), m.physical_f64(i + 3));
            // The pair keeps the parent's mass, centre and covariance.
            assert!((a.amp + b.amp - p.amp).abs() < 1e-5 * p.amp, "{} + {} of {}", a.amp, b.amp, p.amp);
            let (ca, cb, cp) = (a.covariance(), b.covariance(), p.covariance());
            for r in 0..3 {
                assert!((0.5 * (a.mean[r] + b.mean[r]) - p.mean[r]).abs() < 1e-6);
                for c in 0..3 {
                    let spread = 0.25 * (a.mean[r] - b.mean[r]) * (a.mean[c] - b.mean[c]);
                    let pair = 0.5 * (ca[r][c] + cb[r][c]) + spread;
                    assert!((pair - cp[r][c]).abs() < 1e-3 * cp[0][0].max(cp[1][1]).max(cp[2][2]), "{r}{c}: {pair} against {}", cp[r][c]);
                }
            }
            let gap = (0..3).map(|k| (a.mean[k] - b.mean[k]).powi(2)).sum::<f64>().sqrt();
            // One standard deviation apart along one of the parent's axes.
            assert!(p.scales.iter().any(|s| (gap - 2.0 * GROW_OFFSET_SD * s).abs() < 1e-6 * s), "children {gap} apart (σ {:?})", p.scales);
        }
    }

    #[test]
    fn prune_drops_vanished_and_large_ones_split() {
        let mut m = model(&[1.0, 1e-5, 1.0, 1e-6], &[0.01, 0.01, 0.1, 0.01]);
        let mut adam = Adam::new(AdamConfig::default(), 4);
        adam.v[2][0] = 3.0;
        let st = GradStats::new(4);
        let cfg = DensityConfig { densify_epochs: vec![2], prune_epochs: vec![2], split_large_px: 4.0, ..Default::default() };
        // 0.1 box at 64 px is 6.4 px > 4: Gaussian 2 is split; 1 and 3 are pruned.
        let ch = control(&cfg, 2, &mut m, &mut adam, &st, 64, &mut Rng::new(2));
        assert_eq!(ch, DensityChange { split: 1, pruned: 2, after: 3 });
        assert!((m.physical_f64(0).amp - 1.0).abs() < 1e-6);
        assert_eq!(adam.v[0][0], 0.0);
        assert!((m.physical_f64(1).amp - 0.5).abs() < 1e-6 && (m.physical_f64(2).amp - 0.5).abs() < 1e-6);
        // Everything vanished: the heaviest stays.
        let mut m = model(&[1e-9, 2e-9], &[0.01, 0.01]);
        let mut adam = Adam::new(AdamConfig::default(), 2);
        let cfg = DensityConfig { prune_epochs: vec![1], prune_fraction: 10.0, ..Default::default() };
        let ch = control(&cfg, 1, &mut m, &mut adam, &GradStats::new(2), 64, &mut Rng::new(3));
        assert_eq!(ch.after, 1);
        assert!(m.physical_f64(0).amp > 1.5e-9);
    }

    #[test]
    fn cholesky_reproduces_the_covariance() {
        let c = covariance([0.03, 0.02, 0.01], [0.9, 0.1, -0.3, 0.2].map(|v: f64| v / (0.95f64).sqrt()));
        let l = cholesky3(&c);
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| l[i][k] * l[j][k]).sum();
                assert!((v - c[i][j]).abs() < 1e-12);
            }
        }
    }
}
