//! The random start's two numbers, estimated for each half from its own images only (so that
//! nothing of one half's data reaches the other's model): the data scale that normalises the
//! images, and the particle's total mass (see "Initial mass" in the module docs of [`super`]).

use super::{ReconstructConfig, ReconstructError};
use crate::images::{CropTo, Images};
use crate::streams::Stream;
use cryosplat_core::backproject::{Accumulator, InsertScratch};
use cryosplat_core::ctf::CtfGrid;
use cryosplat_core::fsc::auto_mask;
use cryosplat_core::gaussian::GaussianModel;
use cryosplat_core::render::{RenderOptions, Renderer};
use cryosplat_core::symmetry::PointGroup;

/// `1/std` of the pixel values over up to 256 images of `half` (`idx`).
pub fn estimate_scale(images: &Images, idx: &[usize], half: usize, seed: u64) -> Result<f64, ReconstructError> {
    let mut pick = idx.to_vec();
    Stream::ScaleSample { half }.rng(seed).shuffle(&mut pick);
    pick.truncate(256);
    let mut s = images.scratch();
    let mut buf = vec![0.0f32; images.d * images.d];
    let (mut sum, mut sum2, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for &i in &pick {
        images.read_uncached(i, &mut buf, &mut s)?;
        for &v in &buf {
            sum += v as f64;
            sum2 += (v as f64) * (v as f64);
            n += 1.0;
        }
    }
    let var = sum2 / n - (sum / n).powi(2);
    if !(var > 0.0) {
        return Err(ReconstructError::Config(format!("{}: the images are constant; nothing to reconstruct", images.set.source.display())));
    }
    Ok(1.0 / var.sqrt())
}

/// The particle's total mass (box units, normalised data), estimated two ways.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MassEstimate {
    /// `Σ image integrals / Σ CTF(0)` over up to 1000 images of the half: the projection of a
    /// mass `m` integrates to `m·D²` pixel units in every view, and the CTF scales the zero
    /// frequency by `CTF(0)` (`Q0` without a phase plate).
    pub from_integrals: f64,
    /// Standard error of `from_integrals`, relative.
    pub integral_rel_error: f64,
    /// Least-squares scale of the initial blob rendered at 128 particles' poses with their
    /// CTFs. Biased low when the molecule is larger than the blob (BENCHMARKS.md), so it is
    /// only the fallback.
    pub from_fit: f64,
    /// The value used.
    pub total: f64,
    pub images: usize,
    pub warning: Option<String>,
}

/// Estimate the total mass from the images `idx` of `half`: from the images' integrals when
/// that is precise to 25%, else from the least-squares fit (with a warning). The fit also
/// detects inverted contrast.
pub fn estimate_mass(
    images: &Images,
    idx: &[usize],
    half: usize,
    apix: f64,
    grid: &CtfGrid,
    cfg: &ReconstructConfig,
) -> Result<MassEstimate, ReconstructError> {
    let (set, d) = (images.set, images.d);
    let fit = fit_initial_mass(images, idx, half, apix, grid, cfg)?;
    let from_fit = fit.mass;
    let mut pick = idx.to_vec();
    Stream::MassIntegralSample { half }.rng(cfg.seed).shuffle(&mut pick);
    pick.truncate(1000);
    let mut s = images.scratch();
    let mut img = vec![0.0f32; d * d];
    let mut ctf = vec![1.0f32; grid.len()];
    let (mut sum_i, mut sum_i2, mut sum_c) = (0.0f64, 0.0f64, 0.0f64);
    for &i in &pick {
        images.read_uncached(i, &mut img, &mut s)?;
        let integral: f64 = img.iter().map(|&v| v as f64).sum();
        if !cfg.no_ctf {
            grid.fill_rfft(&set.particles[i].ctf, &mut ctf);
        }
        sum_i += integral;
        sum_i2 += integral * integral;
        sum_c += ctf[0] as f64;
    }
    let n = pick.len() as f64;
    let area = (d * d) as f64;
    let from_integrals = sum_i / sum_c / area;
    let sd = (sum_i2 / n - (sum_i / n).powi(2)).max(0.0).sqrt();
    let rel = (sd / n.sqrt()) / (sum_i / n).abs().max(f64::MIN_POSITIVE);
    check_contrast(images, &fit, from_integrals, rel, sum_c)?;
    let (total, warning) = if from_integrals > 0.0 && sum_c > 0.0 && rel < 0.25 {
        (from_integrals, None)
    } else if !(from_fit > 0.0 && from_fit.is_finite()) {
        return Err(ReconstructError::Config(format!(
            "{}: the particle's mass cannot be estimated: the images' integrals are too noisy ({from_integrals:.3e} ± {:.0}%) and they do not correlate with a blob at the particles' poses (z = {:.1}); check the poses, the CTF and the pixel size",
            set.source.display(),
            100.0 * rel,
            fit.z
        )));
    } else {
        (
            from_fit,
            Some(format!(
                "the images' integrals do not give the particle's mass (estimate {from_integrals:.3e} ± {:.0}% over {} images): \
                 the initial amplitudes come from a least-squares fit of a blob, which tends to underestimate it",
                100.0 * rel,
                pick.len()
            )),
        )
    };
    Ok(MassEstimate { from_integrals, integral_rel_error: rel, from_fit, total, images: pick.len(), warning })
}

/// Refuse images whose contrast looks inverted (protein dark). The images' integrals measure
/// it directly, since protein adds positive mass in every view: when they are precise (a
/// standard error below 25%), their sign decides. Otherwise the blob fit decides, and only when
/// its anti-correlation is significant: the projection of a blob at the particles' poses
/// against pure noise gives |z| < 3 but for one time in 370. The integrals come first because
/// the blob test is wrong for hollow particles (a cage or a capsid projects less mass through
/// its centre than through its walls, and a blob at the centre then anti-correlates with the
/// CTF-filtered images; BENCHMARKS.md, the symmetric Gaussian runs).
fn check_contrast(images: &Images, fit: &BlobFit, from_integrals: f64, rel: f64, sum_ctf0: f64) -> Result<(), ReconstructError> {
    let set = images.set;
    let precise = rel < 0.25 && sum_ctf0 > 0.0 && from_integrals.is_finite();
    let (inverted, evidence) = if precise {
        (from_integrals < 0.0, format!("the images' integrals give a negative mass ({from_integrals:.3e} ± {:.0}%)", 100.0 * rel))
    } else {
        (fit.z < -3.0, format!("the images anti-correlate with a positive blob at the particles' poses (z = {:.1})", fit.z))
    };
    if !inverted {
        return Ok(());
    }
    let advice = if set.invert {
        "after inverting them (--invert, or the input's own sign): the contrast is likely right without the inversion"
    } else {
        "the contrast looks inverted (protein dark): use --invert"
    };
    Err(ReconstructError::Config(format!("{}: {evidence}; {advice}", set.source.display())))
}

/// The least-squares fit of the initial blob to a sample of images.
struct BlobFit {
    /// Total mass (box units, normalised data); not positive when the images do not correlate.
    mass: f64,
    /// The correlation's significance: `Σ p·o / sqrt(Σ p² · var(o))`, about N(0, 1) when the
    /// images hold no signal.
    z: f64,
}

/// Gaussians of the blob whose least-squares scale is the fallback mass estimate, at most.
const MASS_FIT_BLOB_GAUSSIANS: usize = 2000;

/// Least-squares total mass of the initial blob against a sample of the images `idx`.
fn fit_initial_mass(
    images: &Images,
    idx: &[usize],
    half: usize,
    apix: f64,
    grid: &CtfGrid,
    cfg: &ReconstructConfig,
) -> Result<BlobFit, ReconstructError> {
    let (set, d) = (images.set, images.d);
    // The model's own count when it is smaller (a given `--gaussians`, or a point group's unit);
    // the automatic counts are all larger.
    let blob = cfg.gaussians.map_or(MASS_FIT_BLOB_GAUSSIANS, |n| n.min(MASS_FIT_BLOB_GAUSSIANS));
    let unit = GaussianModel::random_init(blob, 1.0, &mut Stream::MassFitBlob.rng(cfg.seed));
    let mut sp = Renderer::new(d, RenderOptions { n_sigma: cfg.n_sigma, threads: 1 });
    let mut pick = idx.to_vec();
    Stream::MassFitSample { half }.rng(cfg.seed).shuffle(&mut pick);
    pick.truncate(128);
    let mut s = images.scratch();
    let mut obs = vec![0.0f32; d * d];
    let mut pred = vec![0.0f32; d * d];
    let mut ctf = vec![0.0f32; grid.len()];
    let (mut num, mut den, mut oo, mut n) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for &i in &pick {
        images.read_uncached(i, &mut obs, &mut s)?;
        let p = &set.particles[i];
        if !cfg.no_ctf {
            grid.fill_rfft(&p.ctf, &mut ctf);
        }
        sp.render(&unit, &p.pose, apix, (!cfg.no_ctf).then_some(&ctf[..]), &mut pred);
        for (a, b) in pred.iter().zip(&obs) {
            num += *a as f64 * *b as f64;
            den += (*a as f64) * (*a as f64);
            oo += (*b as f64) * (*b as f64);
            n += 1.0;
        }
    }
    if !(den > 0.0 && den.is_finite()) {
        return Err(ReconstructError::Config(format!(
            "the initial model renders nothing at the particles' poses (footprint --n-sigma {}); nothing can be fitted",
            cfg.n_sigma
        )));
    }
    // `unit` carries a total mass of 1/2 (see `random_init`).
    Ok(BlobFit { mass: 0.5 * num / den, z: num / (den * oo / n).sqrt() })
}

/// The backprojection of the images `idx` of one half, regularised from that half's own
/// signal: the images are inserted alternately into two accumulators, the FSC of their maps
/// gives the half's spectral SNR per shell, and the two accumulators together are finished with
/// it (as `backproject` finishes its full map from the two halves). Only this half's images enter
/// it. The map is then multiplied by the soft mask the FSC uses
/// ([`cryosplat_core::fsc::auto_mask`] of this map alone), so that the positive noise of the
/// background draws no Gaussians: on a low-SNR set (BENCHMARKS.md, "Backprojection start")
/// Gaussians drawn there kept their share of the mass for most of the run and cost resolution.
/// Images are read as [`Images::read`] gives them (the training box, unscaled values), and
/// Fourier-cropped to [`start_box`] when the box is larger: the start needs where the density
/// is, not its finest detail, and a 128 px start map cost a tenth of a 5-pass run
/// (BENCHMARKS.md, "The run length at larger boxes"). Returns the map and its box.
pub fn half_backprojection(
    images: &Images,
    idx: &[usize],
    apix: f64,
    no_ctf: bool,
    group: &PointGroup,
) -> Result<(Vec<f32>, usize), ReconstructError> {
    const PAD: usize = 2;
    let d = images.d;
    let to_d = start_box(d);
    let apix_c = if to_d == d { apix } else { apix * d as f64 / to_d as f64 };
    let mut acc = [Accumulator::new(to_d, PAD), Accumulator::new(to_d, PAD)];
    let mut scratch = InsertScratch::new(to_d, PAD, apix_c);
    let mut s = images.scratch();
    let mut img = vec![0.0f32; d * d];
    let mut crop = CropTo::new(d, to_d);
    for (k, &i) in idx.iter().enumerate() {
        images.read(i, &mut img, &mut s)?;
        let img = crop.apply(&img);
        let p = &images.set.particles[i];
        acc[k % 2].insert_symmetric(img, &p.pose, apix_c, (!no_ctf).then_some(&p.ctf), group.operators(), &mut scratch);
    }
    let [a, b] = acc;
    let mut map = a.finish_halves(&b).full;
    let mask = auto_mask(&map, &map, to_d, apix_c);
    map.iter_mut().zip(&mask).for_each(|(v, m)| *v *= m);
    Ok((map, to_d))
}

/// The largest box the backprojection start is made at.
pub const START_MAX_BOX: usize = 64;

/// The box the backprojection start of a `d` px run is made at: `d`, or [`START_MAX_BOX`]
/// when `d` is larger.
pub fn start_box(d: usize) -> usize {
    d.min(START_MAX_BOX)
}
