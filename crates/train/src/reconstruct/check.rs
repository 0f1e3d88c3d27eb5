//! The low-resolution check: the Gaussian map against a backprojection of the same images.
//!
//! Both half models start from the same kind of start (a blob at the box centre, or each
//! half's own backprojection), so an error both keep at low resolution, such as a blob that
//! never spread to a hollow or box-filling molecule, makes the half maps agree with each other
//! and is invisible to their FSC. A backprojection has no start: at low resolution, where its
//! own half maps agree, it is a faithful picture of the data. So, at the end of a run, each
//! half's own images are backprojected (with the run's symmetry) and the Gaussian map `G` is
//! compared with the backprojection `B` of all images, shell by shell:
//!
//! * `F_B` is the FSC of the backprojection's half maps; the full backprojection's FSC against
//!   the truth is then `C_B = sqrt(2F_B/(1 + F_B))`;
//! * when `G` and `B` err independently, `FSC(G, B) = FSC(G, truth)·C_B`, so
//!   `E = FSC(G, B)/C_B` estimates the Gaussian map's FSC against the truth.
//!
//! The check looks at the shells from the first up to where `C_B` first falls below
//! [`RELIABLE`] (the backprojection's view is then sharp enough to judge by), and fails when
//! `E` falls below [`REQUIRED`] in any of them: the Gaussian map misses signal the data
//! clearly hold, and the half-map resolution is not to be trusted. Unmasked curves: the
//! lowest shells are dominated by the particle.
//!
//! The last [`EDGE_SHELLS`] shells of the check's box (its Nyquist shell and the two below it)
//! are never judged: there the backprojection's samples end (its sphere stops half a sample
//! inside the Nyquist shell, and a Fourier-cropped image holds no samples on its own Nyquist
//! row and column), so its interpolation and weights are biased alike in both halves. With
//! clean data that bias stands above the noise: on a 120,000-particle set at 256 px the 64 px
//! check read 0.29 at its Nyquist shell for a Gaussian map that matched the truth at 0.999
//! there, and warned (BENCHMARKS.md, "Streaming a set larger than memory"; test
//! `a_clean_set_passes_the_check_and_keeps_its_map_at_every_box`).
//!
//! Boxes larger than [`MAX_BOX`] are judged at that box: the images are Fourier-cropped to it
//! before they are backprojected and the Gaussian map is cropped alike ([`check_box`]), so the
//! check sees the shells below `MAX_BOX/2` (the same frequencies in 1/Å as at the full box) and
//! costs a fraction of a training pass instead of as much as one (at 256 px a full-size
//! backprojection took as long as a pass over the images; BENCHMARKS.md, "Streaming a set
//! larger than memory"). 64 px keeps every judged shell of the 128 px sets measured (their
//! backprojections stop being judged at 6–8 Å, where the 64 px crop reaches 4.4 Å) and takes
//! a quarter of the samples a 128 px check inserts (BENCHMARKS.md, "Narrow footprints").
//!
//! When the run completes its map ([`super::completion`], the default), the completion's
//! backprojections, made at the same box, are the ones judged against.
//!
//! # Parallel work
//!
//! One unit of parallel work reads (and crops) a contiguous run of one half's particles and
//! inserts them into its own accumulator; accumulators are summed in a fixed order, so the
//! result does not depend on scheduling.

use super::{InitKind, ReconstructError};
use crate::images::{CropTo, Images};
use cryosplat_core::backproject::{Accumulator, InsertScratch, BASE_WIENER};
use cryosplat_core::ctf::CtfParams;
use cryosplat_core::fsc::{fsc, implied_correlation};
use cryosplat_core::pose::Pose;
use cryosplat_core::symmetry::PointGroup;
use rayon::prelude::*;

/// `C_B` at or above which the backprojection judges a shell.
pub const RELIABLE: f64 = 0.9;
/// The least estimated FSC against the truth a judged shell may have.
pub const REQUIRED: f64 = 0.8;

/// The shells at the end of a backprojection's box that neither the check nor the completion
/// uses (its Nyquist shell and the two below; see the module docs): at a box of `d` px, the
/// shells above `d/2 − EDGE_SHELLS`.
pub const EDGE_SHELLS: usize = 3;

/// The last shell of a `d` px backprojection that the check and the completion use.
pub fn last_usable_shell(d: usize) -> usize {
    (d / 2).saturating_sub(EDGE_SHELLS)
}

/// The largest box the check backprojects at (see the module docs).
pub const MAX_BOX: usize = 64;

/// The box the check of a `d` px run works at: `d`, or [`MAX_BOX`] when `d` is larger.
pub fn check_box(d: usize) -> usize {
    d.min(MAX_BOX)
}

/// The outcome of the check (see the module docs).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LowResolutionCheck {
    /// Shells judged: `1..=last_shell` (0 when the backprojection judges none).
    pub last_shell: usize,
    /// Resolution of `last_shell` in Å.
    pub last_shell_a: Option<f64>,
    /// Per shell from 0 (shell `n` is `n/(d·apix)` 1/Å at the run's box `d`; the curves end at
    /// the check's box, [`check_box`]): the backprojection's `C_B` and the estimate `E`.
    pub backprojection_vs_truth: Vec<f64>,
    pub estimate: Vec<f64>,
    /// The judged shell with the smallest estimate, its resolution (Å) and estimate.
    pub worst_shell: usize,
    pub worst_shell_a: Option<f64>,
    pub worst_estimate: f64,
    pub passed: bool,
}

impl LowResolutionCheck {
    /// A sentence for the terminal, the report and run.json's warnings when the check fails;
    /// its advice depends on where the half models started (`start`, the start used).
    pub fn warning(&self, start: InitKind) -> Option<String> {
        if self.passed {
            return None;
        }
        let at = self.worst_shell_a.map_or_else(|| format!("shell {}", self.worst_shell), |a| format!("{a:.1} Å"));
        let advice = match start {
            InitKind::Backprojection => "the models started from the backprojection and drifted from it in training: try fewer passes (--epochs), or, for a symmetric particle, --sym; at low resolution the backprojection (cryosplat backproject) is the more faithful map",
            _ => "run again with --init backprojection (or, for a symmetric particle, --sym)",
        };
        Some(format!(
            "the Gaussian map disagrees with the backprojection of the same images at low resolution: at {at} its estimated FSC against the truth is {:.2} (at least {REQUIRED} is expected where the backprojection's half maps agree); both half models share this error, so their FSC cannot see it and the reported resolution is not to be trusted; {advice}",
            self.worst_estimate
        ))
    }
}

/// Where backprojections of a run's images take the particles from: pixel size `apix` (Å),
/// whether to leave the CTF out, and, with `--refine`, each particle's refined pose and CTF
/// (indexed like the set's particles) in place of the recorded ones.
pub struct Particles<'a> {
    pub apix: f64,
    pub no_ctf: bool,
    pub refined: Option<&'a [(Pose, CtfParams)]>,
}

/// Backproject the images `idx` (in the input's units, undoing [`Images::read`]'s
/// normalisation, and Fourier-cropped to `to_d` px when that is smaller than the images' box;
/// the pixel size then grows by the same factor) with `group`'s operators into one
/// accumulator at `to_d` px, using up to `threads` workers.
pub fn accumulate(
    images: &Images,
    idx: &[usize],
    particles: &Particles,
    group: &PointGroup,
    threads: usize,
    to_d: usize,
) -> Result<Accumulator, ReconstructError> {
    const PAD: usize = 2;
    let d = images.d;
    let to_d = to_d.min(d);
    let apix_c = particles.apix * d as f64 / to_d as f64;
    let blocks = threads.max(1);
    let parts: Result<Vec<Accumulator>, ReconstructError> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let mut acc = Accumulator::new(to_d, PAD);
            let mut scratch = InsertScratch::new(to_d, PAD, apix_c);
            let mut s = images.scratch();
            let mut img = vec![0.0f32; d * d];
            let mut crop = CropTo::new(d, to_d);
            for &i in &idx[b * idx.len() / blocks..(b + 1) * idx.len() / blocks] {
                images.read(i, &mut img, &mut s)?;
                // Back in the input's units, those of the Gaussian maps.
                let unscale = 1.0 / images.scale_of(i);
                if unscale != 1.0 {
                    img.iter_mut().for_each(|v| *v *= unscale);
                }
                let img = crop.apply(&img);
                let (pose, ctf) = match particles.refined {
                    Some(r) => (&r[i].0, &r[i].1),
                    None => (&images.set.particles[i].pose, &images.set.particles[i].ctf),
                };
                acc.insert_symmetric(img, pose, apix_c, (!particles.no_ctf).then_some(ctf), group.operators(), &mut scratch);
            }
            Ok(acc)
        })
        .collect();
    let mut it = parts?.into_iter();
    let mut acc = it.next().expect("at least one block");
    for x in it {
        acc.add(&x);
    }
    Ok(acc)
}

/// Backproject each half's own images (`halves`) with [`accumulate`] at `to_d` px; returns the
/// two half maps and the map of both (SSNR-regularised), at `to_d` px.
pub fn backproject_halves(
    images: &Images,
    halves: [&[usize]; 2],
    particles: &Particles,
    group: &PointGroup,
    threads: usize,
    to_d: usize,
) -> Result<[Vec<f32>; 3], ReconstructError> {
    let half = |idx: &[usize]| accumulate(images, idx, particles, group, threads, to_d);
    let h = half(halves[0])?.finish_halves(&half(halves[1])?);
    Ok([h.half_a, h.half_b, h.full])
}

/// Backproject each half's own images (`halves`) with [`accumulate`] at `to_d` px and finish
/// each half map alone (the constant term [`BASE_WIENER`], as in [`backproject_halves`]), one
/// half's accumulator in memory at a time: the two half maps, without the map of both.
pub fn backproject_half_maps(
    images: &Images,
    halves: [&[usize]; 2],
    particles: &Particles,
    group: &PointGroup,
    threads: usize,
    to_d: usize,
) -> Result<[Vec<f32>; 2], ReconstructError> {
    let half = |idx: &[usize]| accumulate(images, idx, particles, group, threads, to_d).map(|acc| acc.finish(BASE_WIENER));
    Ok([half(halves[0])?, half(halves[1])?])
}

/// Judge the Gaussian map `gaussian` against the backprojection (`bp = [half A, half B, full]`)
/// of the same images; `d` the box, `apix` its pixel size.
pub fn judge(gaussian: &[f32], bp: &[Vec<f32>; 3], d: usize, apix: f64) -> LowResolutionCheck {
    let f_b = fsc(&bp[0], &bp[1], d);
    let c_b: Vec<f64> = f_b.iter().map(|&f| implied_correlation(f)).collect();
    let f_gb = fsc(gaussian, &bp[2], d);
    let estimate: Vec<f64> = f_gb.iter().zip(&c_b).map(|(&g, &c)| if c > 0.0 { g / c } else { 0.0 }).collect();
    let last_shell = (1..c_b.len().min(last_usable_shell(d) + 1)).take_while(|&n| c_b[n] >= RELIABLE).last().unwrap_or(0);
    let shell_a = |n: usize| (n > 0).then(|| d as f64 * apix / n as f64);
    let (worst_shell, worst_estimate) =
        (1..=last_shell).map(|n| (n, estimate[n])).fold((0, f64::INFINITY), |w, s| if s.1 < w.1 { s } else { w });
    LowResolutionCheck {
        last_shell,
        last_shell_a: shell_a(last_shell),
        backprojection_vs_truth: c_b,
        estimate,
        worst_shell,
        worst_shell_a: shell_a(worst_shell),
        worst_estimate: if last_shell == 0 { f64::NAN } else { worst_estimate },
        passed: last_shell == 0 || worst_estimate >= REQUIRED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryosplat_core::fourier::low_pass_volume;
    use cryosplat_core::rng::Rng;

    /// A smooth random "particle" in a 32³ box.
    fn particle(seed: u64) -> Vec<f32> {
        let d = 32;
        let mut rng = Rng::new(seed);
        let mut v = vec![0.0f32; d * d * d];
        for _ in 0..40 {
            let c: Vec<f64> = (0..3).map(|_| 16.0 + 6.0 * rng.normal()).collect();
            for z in 0..d {
                for y in 0..d {
                    for x in 0..d {
                        let r2 = (x as f64 - c[0]).powi(2) + (y as f64 - c[1]).powi(2) + (z as f64 - c[2]).powi(2);
                        v[(z * d + y) * d + x] += (-r2 / 4.0).exp() as f32;
                    }
                }
            }
        }
        v
    }

    fn noisy(v: &[f32], sigma: f64, rng: &mut Rng) -> Vec<f32> {
        v.iter().map(|&x| x + (sigma * rng.normal()) as f32).collect()
    }

    #[test]
    fn a_faithful_map_passes_and_one_without_its_low_frequencies_fails() {
        let d = 32;
        let truth = particle(1);
        let peak = truth.iter().fold(0.0f32, |m, &v| m.max(v)) as f64;
        let mut rng = Rng::new(2);
        let (a, b) = (noisy(&truth, 0.3 * peak, &mut rng), noisy(&truth, 0.3 * peak, &mut rng));
        let full: Vec<f32> = a.iter().zip(&b).map(|(x, y)| 0.5 * (x + y)).collect();
        let bp = [a, b, full];
        let good = judge(&truth, &bp, d, 2.0);
        assert!(good.passed && good.last_shell >= 2, "{good:?}");
        assert!(good.worst_estimate > 0.9 && good.warning(InitKind::Random).is_none(), "{good:?}");
        // The same map with its lowest shells replaced by a centred blob's.
        let low = low_pass_volume(&truth, d, 2.0, 16.0, 1.0);
        let blob = {
            let mut v = vec![0.0f32; d * d * d];
            for z in 0..d {
                for y in 0..d {
                    for x in 0..d {
                        let r2 = ((x as f64 - 16.0).powi(2) + (y as f64 - 16.0).powi(2) + (z as f64 - 16.0).powi(2)) / 10.0;
                        v[(z * d + y) * d + x] = (-r2).exp() as f32;
                    }
                }
            }
            low_pass_volume(&v, d, 2.0, 16.0, 1.0)
        };
        let (sl, sb) = (low.iter().map(|&v| v as f64).sum::<f64>(), blob.iter().map(|&v| v as f64).sum::<f64>());
        let wrong: Vec<f32> = truth.iter().zip(&low).zip(&blob).map(|((t, l), b)| t - l + b * (sl / sb) as f32).collect();
        let bad = judge(&wrong, &bp, d, 2.0);
        assert!(!bad.passed && bad.worst_estimate < REQUIRED, "{bad:?}");
        let w = bad.warning(InitKind::Random).unwrap();
        assert!(w.contains("not to be trusted") && w.contains("--init backprojection"), "{w}");
        // From the backprojection start, the advice is not to start from it again.
        let w = bad.warning(InitKind::Backprojection).unwrap();
        assert!(w.contains("not to be trusted") && !w.contains("--init backprojection") && w.contains("--epochs"), "{w}");
        // Pure noise in the backprojection judges nothing, and so fails nothing.
        let mut rng = Rng::new(3);
        let zero = vec![0.0f32; d * d * d];
        let (na, nb) = (noisy(&zero, 1.0, &mut rng), noisy(&zero, 1.0, &mut rng));
        let none = judge(&wrong, &[na.clone(), nb, na], d, 2.0);
        assert!(none.passed && none.last_shell == 0 && none.warning(InitKind::Random).is_none(), "{none:?}");
    }
}
