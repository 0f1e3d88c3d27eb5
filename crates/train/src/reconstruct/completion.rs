//! Completion: the Gaussian map completed by the backprojection of what it misses.
//!
//! A mixture of positive Gaussians cannot hold every map the images support: negative density
//! (the halo and neighbours of a crowded sub-tomogram, a CTF-corrected map's ripples), low
//! frequencies that a short run has not formed, or anything the model's few thousand blobs
//! cannot shape. A backprojection of the same images holds all of it, with its noise. At the
//! end of a run the map of both halves is made as a Wiener (MAP) reconstruction of all images
//! whose prior is centred on the Gaussian map `G` (the average of the half maps) instead of on
//! zero (`cryosplat_core::backproject`, "Completion"):
//!
//! `H = (data + λ_n·G)/(W + λ_n)`, `λ_n = mean_n(W)/SSNR_n`,
//!
//! where `SSNR_n` is the spectral SNR, in shell `n`, of the truth's departure from `G`. Each
//! half's images are backprojected with the constant term ([`BASE_WIENER`]) and their residuals
//! `M_A − G_A` and `M_B − G_B` (each half against its own Gaussian map) are compared by FSC:
//! what both halves' images hold and their models miss correlates, the noise does not. Shells
//! where that FSC is within [`SIGMAS`] standard deviations of chance
//! (`cryosplat_core::fsc::significant_fsc`) count as no departure; the rest give the SSNR of
//! both halves, `2F/(1 − F)` (F at most 0.999). Where the Gaussians already explain the images
//! `H` is `G`; where the images clearly hold more it approaches their backprojection, voxel by
//! voxel according to its weight. The DC term stays `G`'s (one sample: no FSC can weigh it,
//! and the images rarely carry a usable one), and so do the Nyquist shell and the two below it
//! (`super::check::EDGE_SHELLS`), where the backprojection's samples end and its interpolation
//! is biased alike in both halves' residuals (its sphere ends half a sample inside the Nyquist
//! shell; a Fourier-cropped image has no Nyquist row or column). On a 120,000-particle set at
//! 256 px, completing the last two shells of the 64 px crop pulled the map's FSC against the
//! truth at 9.1 Å from 0.999 to 0.985. With a point group the correction `H − G` is
//! averaged over the group (`cryosplat_core::symmetry::symmetrize_map`): the Gaussian map is
//! exactly symmetric, the symmetric backprojection only to its interpolation.
//!
//! Only `map.mrc` is completed (and `map_sharp.mrc`, post-processed from it): the half maps,
//! their FSC and the reported resolution remain the Gaussian ones (`map_gaussians.mrc` is
//! their average). The completion adds data only in shells
//! where both halves show the same departure from their models, so it moves the map towards
//! what the images hold there; the half-map FSC of completed half maps was no better a guide:
//! with an automatic mask, the strong low-resolution density a completed map carries outside
//! the particle (a sub-tomogram's neighbours) spills through the mask's edge into weak outer
//! shells and raised the masked FSC well beyond both the Gaussian and the backprojected half
//! maps' (BENCHMARKS.md, "Completion"). `run.json` records the residual FSC and the data's share
//! per shell ([`CompletionSummary`]). The same backprojections serve the low-resolution check
//! ([`super::check`]).
//!
//! # Box
//!
//! Boxes larger than [`super::check::MAX_BOX`] are completed at that box, the low-resolution
//! check's: the images are Fourier-cropped as for the check, the Gaussian maps cropped alike
//! (and scaled by `d/d'`, since a Fourier crop keeps voxel values while column sums over fewer
//! voxels must still give the cropped images' values), and the correction `H − G` is
//! Fourier-padded back to the full box. Beyond the crop's Nyquist (4.4 Å on a 128 px box at
//! 1.1 Å/px) the map is the Gaussian map. The completion then costs what the check alone cost
//! before: a full-box backprojection made 10,000 particles at 128 px 8% slower (BENCHMARKS.md,
//! "Completion").
//!
//! # Parallel work
//!
//! One unit of parallel work reads a contiguous run of one half's particles and inserts them
//! into its own accumulator ([`super::check::accumulate`]); accumulators are summed in a fixed
//! order, so the result does not depend on scheduling.

use super::check::{accumulate, last_usable_shell, Particles};
use super::ReconstructError;
use crate::images::Images;
use cryosplat_core::backproject::BASE_WIENER;
use cryosplat_core::fourier::resample_volume;
use cryosplat_core::fsc::{fsc, significant_fsc, ssnr_from_fsc};
use cryosplat_core::symmetry::{symmetrize_map, PointGroup};

/// Standard deviations above chance a residual FSC needs to count as a departure from the
/// Gaussian map. At 2σ a shell of pure noise passes about once in 40, and then adds a little of
/// its noise, weighted by its small FSC; 3σ discarded the real ribosome's lowest shells, where a
/// shell holds a few dozen components (BENCHMARKS.md, "Completion").
pub const SIGMAS: f64 = 2.0;

/// What the completion did, for `run.json` and the report.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompletionSummary {
    /// Per shell from 0: the FSC of the halves' residuals after the significance cut (0 where
    /// the data show no departure from the Gaussian maps).
    pub residual_fsc: Vec<f64>,
    /// Per shell: the share of the data in the completed map at the shell's mean weight,
    /// `SSNR/(1 + SSNR)` (0: the Gaussian map, 1: the backprojection).
    pub data_share: Vec<f64>,
}

/// The completed map, the backprojections `[half A, half B, both]` at the completion's box (the
/// halves with the constant term, both halves regularised from their FSC, as `cryosplat
/// backproject` makes them) for the check, and the summary (per shell of the completion's box,
/// which are the first shells of the map's: the same frequencies).
pub struct Completed {
    pub map: Vec<f32>,
    pub backprojection: [Vec<f32>; 3],
    pub summary: CompletionSummary,
}

/// The SSNR of both halves' departure from the Gaussian maps, from the halves' residual FSC
/// (already cut for significance): `2F/(1 − F)`, F at most 0.999; 0 where F is 0.
fn departure_ssnr(residual_fsc: &[f64]) -> Vec<f64> {
    residual_fsc.iter().map(|&f| if f > 0.0 { 2.0 * f.min(0.999) / (1.0 - f.min(0.999)) } else { 0.0 }).collect()
}

/// Complete the average of the Gaussian half maps `gaussian` (in the images' units, `d³`) with
/// the images of `halves` (backprojected with `group`'s operators, the particles' poses and
/// CTFs from `particles`), using up to `threads` workers, at a box of `to_d` px (see the module
/// docs): the returned backprojections are at that box, the map at `d`.
pub fn complete(
    images: &Images,
    halves: [&[usize]; 2],
    particles: &Particles,
    gaussian: [&[f32]; 2],
    group: &PointGroup,
    threads: usize,
    to_d: usize,
) -> Result<Completed, ReconstructError> {
    let d = images.d;
    let cd = to_d.min(d);
    // The Gaussian maps at the completion's box, in the units of a backprojection there: a
    // Fourier crop keeps voxel values, and a map whose column sums are the (value-kept)
    // cropped images holds `d/cd` times the values.
    let units = (d as f64 / cd as f64) as f32;
    let at_box = |g: &[f32]| -> Vec<f32> {
        if cd == d {
            g.to_vec()
        } else {
            resample_volume(g, d, cd).iter().map(|v| v * units).collect()
        }
    };
    let g = [at_box(gaussian[0]), at_box(gaussian[1])];
    let mut both = accumulate(images, halves[0], particles, group, threads, cd)?;
    let bp_a = both.finish(BASE_WIENER);
    let acc_b = accumulate(images, halves[1], particles, group, threads, cd)?;
    let bp_b = acc_b.finish(BASE_WIENER);
    both.add(&acc_b);
    drop(acc_b);
    let residual = |m: &[f32], g: &[f32]| m.iter().zip(g).map(|(a, b)| a - b).collect::<Vec<f32>>();
    let mut residual_fsc = significant_fsc(&fsc(&residual(&bp_a, &g[0]), &residual(&bp_b, &g[1]), cd), cd, SIGMAS);
    // The last shells keep the Gaussian map: there the backprojection's samples end, and its
    // interpolation's bias at that edge is alike in both halves' residuals (`check::EDGE_SHELLS`).
    residual_fsc.iter_mut().skip(last_usable_shell(cd) + 1).for_each(|f| *f = 0.0);
    let ssnr = departure_ssnr(&residual_fsc);
    let plain = both.finish(BASE_WIENER);
    let mean_g: Vec<f32> = g[0].iter().zip(&g[1]).map(|(a, b)| 0.5 * (a + b)).collect();
    let completed = both.complete(&plain, BASE_WIENER, &mean_g, &ssnr);
    // The correction, back at `d` and in the Gaussian maps' units.
    let mut correction: Vec<f32> = completed.iter().zip(&mean_g).map(|(h, g)| h - g).collect();
    if cd < d {
        correction = resample_volume(&correction, cd, d).iter().map(|v| v / units).collect();
    }
    if !group.is_trivial() {
        // The Gaussian map is symmetric exactly (the model's copies), the backprojection to
        // its interpolation: the correction is averaged over the group.
        correction = symmetrize_map(&correction, d, group);
    }
    let map = gaussian[0].iter().zip(gaussian[1]).zip(&correction).map(|((a, b), c)| 0.5 * (a + b) + c).collect();
    let bp_both = both.ssnr_filter(&plain, BASE_WIENER, &ssnr_from_fsc(&fsc(&bp_a, &bp_b, cd), true));
    let data_share = ssnr.iter().map(|&s| s / (1.0 + s)).collect();
    Ok(Completed { map, backprojection: [bp_a, bp_b, bp_both], summary: CompletionSummary { residual_fsc, data_share } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_departure_ssnr_is_that_of_both_halves_and_keeps_zero() {
        let s = departure_ssnr(&[0.0, 0.5, 1.0, 0.2]);
        assert_eq!(s[0], 0.0);
        assert!((s[1] - 2.0).abs() < 1e-12 && (s[2] - 2.0 * 999.0).abs() < 1e-6 && (s[3] - 0.5).abs() < 1e-12, "{s:?}");
    }
}
