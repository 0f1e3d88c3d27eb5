//! The fixed benchmark workload of `cryosplat bench`: full training steps per second — forward
//! splat, CTF by real FFT, loss, adjoint, backward to every raw parameter, Adam update — with
//! the renderer of [`cryosplat_core::render`].
//!
//! Workload (everything seeded, so runs are comparable): the model and images of
//! [`cryosplat_core::render::workload`], `gaussians` Gaussians and a cycle of 16 (or `batch`,
//! if larger) images. One step renders `batch` images (1: the method's batch of one,
//! Gaussians split across threads; more: images split across threads), then applies Adam.
//! The timing is repeated `repeats` times after a warm-up and the best run is reported, since
//! other work on the machine can only slow a run down.
//!
//! # A trained model (`model`)
//!
//! Instead of the random model, a model written by `reconstruct` (its `gaussians_a.ply`,
//! `gaussians_b.ply` or `gaussians.ply`, see [`cryosplat_formats::ply`]) is used as it is:
//! positions, anisotropic scales, rotations and amplitudes. A PLY holds Å about the map's
//! origin, not the box, so the box and pixel size come from the `map.mrc` that `reconstruct`
//! writes beside its models at the same epoch; a stated box or pixel size that map contradicts
//! is refused, and without such a map both must be stated ([`load_model`]). Positions become
//! box units about the box centre `D/2·apix`, scales are divided by `D·apix` (and clamped to
//! the model's range), and the amplitude is the box-unit amplitude the writer stored. Note
//! that `gaussians.ply` holds both half models (a step renders one): the result says so.
//!
//! The images of a trained model are its own projections under the cycle's poses and CTFs
//! (at the model's pixel size), plus white noise of unit variance: `reconstruct` trains on
//! images normalised to unit variance, nearly all of it noise at the signal-to-noise ratios
//! of cryo-EM, so the residuals and gradients are those of a real step on a converged model
//! (with white noise alone, the gradients would pull the model towards nothing and move it
//! during the timed steps). The rendering cost does not depend on the image values. The
//! images are rendered with one thread, so they do not depend on the thread count.
//!
//! With a point group, the model of a PLY is the expansion `reconstruct --sym` writes: the
//! `|G|` copies of the asymmetric unit, copy-major with the unit first
//! ([`cryosplat_core::render::expand`]). The benchmark takes the first `N/|G|` Gaussians as the
//! unit and refuses a file that is not their expansion under the group. Without `sym`, the
//! same file is rendered as a C1 model of `N` Gaussians (the same rendering, without the
//! expansion and the fold of the gradient).
//!
//! # Symmetry and refinement
//!
//! With a point group (`sym` other than C1), the random model is the asymmetric unit of
//! `gaussians / |G|` Gaussians (rounded up) and every step goes through the reconstruction's
//! [`HalfTrainer::step`]: expand the unit into its `|G|` copies, render them, fold the gradient
//! back, Adam on the unit. The rendered total is then about `gaussians`, so the figure compares
//! with a C1 run of the same total size.
//!
//! With per-particle refinement (`refine`), every step is the one `reconstruct --refine` takes
//! once refinement is active: each image of the cycle is a particle with its own corrections
//! ([`ParticleRefinement`]); the step fills each image's CTF and its derivative in defocus
//! from the corrected parameters (a plain reconstruction fills the CTF alone; the plain
//! benchmark's CTFs are filled once), renders the corrected poses by
//! [`HalfTrainer::step_with_defocus`] and takes each image's Newton step
//! ([`ParticleRefinement::update`]). The rotations' lever arm (the model's mean square radius)
//! is read once, as a reconstruction reads it once per pass of thousands of images. The images' CTFs are the workload's
//! kind (300 kV, astigmatic, 0.8–2.5 µm) drawn from a stream of their own.
//!
//! # Where a step spends its time (`phases`)
//!
//! With `phases` (batch of one only), the parts of a step are timed each on its own, by calling
//! the renderer's public pieces in turn over the same cycle of images on the model as loaded
//! (before the full steps move it): each part runs `steps` times per repeat after the warm-up,
//! the parts alternate within each repeat, and the best repeat of each is reported
//! ([`PhaseTimes`], milliseconds per image):
//!
//! * `project`: [`Renderer::project`], the activation and projection of every Gaussian
//!   (projected covariance, footprint bounds);
//! * `forward`: [`Renderer::render`] without a CTF: projection, splatting into the threads'
//!   images and their sum (so `splat` = `forward − project`);
//! * `loss`: [`Renderer::image_loss_and_adjoint`]: the transforms of the prediction and of the
//!   observed image, the CTF, the loss and the inverse transform of the image-space gradient;
//! * `backward`: [`Renderer::backward_image`]: projection again and the gather of every
//!   Gaussian's gradient (so `gather` = `backward − project`);
//! * `adam`: [`Adam::step`] with the step's gradient (the step's own update also zeroes the
//!   gradient in the same pass);
//! * with a point group, `expand` and `fold` ([`SymmetryExpansion`]);
//! * `ctf_eval`: filling one image's CTF from its parameters ([`CtfGrid::fill_rfft`], with
//!   `refine` [`CtfGrid::fill_rfft_with_ddefocus`]): `reconstruct` does this for every image
//!   of every step, the plain benchmark's step does not (its CTFs are filled once), the
//!   refining one does.
//!
//! The parts run in the same thread pool as the step, each with the parallelism it has there;
//! `forward`, `loss` and `backward` give the step's loss and gradient bitwise (test
//! `the_parts_are_the_step`). Their sum against the full step shows what the parts do not
//! capture (the overlap of the two transforms with the sum of the thread images, caches).
//!
//! [`FootprintStats`] describes the model's footprints under the cycle's poses (what the
//! splatting and gathering cost follows), computed in f64 from the renderer's formulas.

use crate::adam::{Adam, AdamConfig};
use crate::reconstruct::trainer::{HalfTrainer, ParticleRefinement, RefineConfig};
use cryosplat_core::ctf::{CtfGrid, CtfParams};
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_core::pose::Pose;
use cryosplat_core::render::expand::SymmetryExpansion;
use cryosplat_core::render::workload;
use cryosplat_core::render::{ImageTarget, RenderOptions, Renderer, DEFAULT_N_SIGMA, LANES};
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::random_rotation;
use cryosplat_core::symmetry::PointGroup;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Box size of the random workload when none is given, in pixels.
pub const DEFAULT_BOX_PX: usize = 128;

/// Benchmark settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchConfig {
    /// Box size in pixels: the random workload's ([`DEFAULT_BOX_PX`] if `None`); with `model`,
    /// `None` takes the model's box and another value is refused.
    pub box_px: Option<usize>,
    /// Number of Gaussians of the random model (unused with `model`).
    pub gaussians: usize,
    pub threads: usize,
    /// Images per optimiser step (1 = the method's batch of one, parallel over Gaussians).
    pub batch: usize,
    /// Timed optimiser steps per repeat.
    pub steps: usize,
    /// Untimed steps before the first repeat.
    pub warmup: usize,
    /// Timed repeats; the best is reported.
    pub repeats: usize,
    pub n_sigma: f32,
    pub seed: u64,
    /// Point group of the model (RELION's names; C1: no symmetry).
    pub sym: String,
    /// Per-particle refinement in every step (`None`: the plain step).
    pub refine: Option<RefineConfig>,
    /// A model written by `reconstruct` (PLY) instead of the random one (see the module docs).
    pub model: Option<PathBuf>,
    /// The model's pixel size in Å, needed only when no `map.mrc` lies beside it (with one,
    /// another value is refused).
    pub apix: Option<f64>,
    /// Also time the parts of a step (batch of one; see the module docs).
    pub phases: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            box_px: None,
            gaussians: 10_000,
            threads: 2,
            batch: 1,
            steps: 300,
            warmup: 20,
            repeats: 3,
            n_sigma: DEFAULT_N_SIGMA,
            seed: 7,
            sym: "C1".into(),
            refine: None,
            model: None,
            apix: None,
            phases: false,
        }
    }
}

/// Benchmark result (the best repeat).
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    pub images_per_s: f64,
    pub steps_per_s: f64,
    #[serde(rename = "box")]
    pub box_px: usize,
    /// Pixel size of the workload in Å (1 for the random workload, the model's otherwise).
    pub apix: f64,
    /// Gaussians of the model: the random model's requested total (with a point group the
    /// unit's copies number `|G|·unit_gaussians`, see `footprints.gaussians`), or the file's.
    pub gaussians: usize,
    pub threads: usize,
    pub batch: usize,
    pub steps: usize,
    /// Seconds of the best repeat, and of every repeat in order.
    pub seconds: f64,
    pub repeat_seconds: Vec<f64>,
    pub n_sigma: f32,
    /// The point group and the Gaussians of its asymmetric unit (`gaussians` with C1).
    pub sym: String,
    pub unit_gaussians: usize,
    /// What each step refined (`None`: the plain step).
    pub refine: Option<RefineConfig>,
    /// The trained model, if one was benchmarked.
    pub model: Option<ModelInfo>,
    /// What the target images are: "white noise", or "model projections + unit white noise".
    pub images: String,
    /// The footprints of the rendered model under the cycle's poses.
    pub footprints: FootprintStats,
    /// The parts of a step, if asked for.
    pub phases: Option<PhaseTimes>,
    /// Things the reader of the figures should know (for example that a file holds both
    /// half models).
    pub notes: Vec<String>,
}

/// Where a benchmarked model came from.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// Gaussians in the file.
    pub gaussians_in_file: usize,
    #[serde(rename = "box")]
    pub box_px: usize,
    pub apix: f64,
    /// Where the box and pixel size came from: the map beside the model, or the caller.
    pub box_from: String,
    /// Gaussians whose centre lies outside the box.
    pub outside_box: usize,
}

/// A trained model read for the benchmark: the Gaussians of the file in box units, and where
/// they came from.
#[derive(Clone, Debug)]
pub struct TrainedModel {
    pub model: GaussianModel,
    pub info: ModelInfo,
    pub notes: Vec<String>,
}

/// The footprints of the rendered model over the cycle's poses, per Gaussian and image (see
/// the module docs). A footprint is the ellipse `dᵀC⁻¹d ≤ n_sigma²` of the projected
/// covariance `C` (px²); the kernels walk its bounding rows, clipped to the image, in columns
/// of [`LANES`] pixels.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct FootprintStats {
    /// Gaussians rendered per image.
    pub gaussians: usize,
    /// Poses averaged over.
    pub poses: usize,
    /// Mean area of the footprint ellipse, px² (`π·n_sigma²·√|C|`, before clipping).
    pub mean_area_px2: f64,
    /// Fraction of footprints above 100 px².
    pub frac_above_100_px2: f64,
    /// Mean geometric σ of the projection, `|C|^¼`, px.
    pub mean_sigma_px: f64,
    /// Pixels the kernels visit per image, summed over the Gaussians (rows × chunks × LANES).
    pub walked_px_per_image: f64,
    /// Share of those pixels in footprints above 100 px².
    pub walked_share_above_100_px2: f64,
    /// Fraction of footprints taller than the separable path's 32 rows: one exponential per
    /// pixel instead of per row and column.
    pub frac_per_pixel_path: f64,
    /// Fraction of footprints that miss the image.
    pub frac_off_image: f64,
}

/// The parts of a batch-of-one step, milliseconds per image, each the best of `repeats` runs
/// (see the module docs for what each part is and how it is timed).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PhaseTimes {
    pub project_ms: f64,
    pub forward_ms: f64,
    pub loss_ms: f64,
    pub backward_ms: f64,
    pub adam_ms: f64,
    /// With a point group only.
    pub expand_ms: Option<f64>,
    pub fold_ms: Option<f64>,
    pub ctf_eval_ms: f64,
    /// `forward − project` and `backward − project`.
    pub splat_ms: f64,
    pub gather_ms: f64,
    /// The parts of one step, the projection counted once: `forward + loss + gather + adam`
    /// (and `expand + fold`).
    pub parts_sum_ms: f64,
    /// The full step of the same run (its best repeat), per image.
    pub step_ms: f64,
}

/// Read a model written by `reconstruct` (a PLY, see the module docs) for a box of `box_px`
/// pixels of `apix` Å, or of the `map.mrc` beside it. Every error names the file.
pub fn load_model(path: &Path, box_px: Option<usize>, apix: Option<f64>) -> Result<TrainedModel, String> {
    let gs = cryosplat_formats::ply::read_gaussians(path).map_err(|e| e.to_string())?;
    let p = path.display();
    if gs.is_empty() {
        return Err(format!("{p}: the model holds no Gaussians"));
    }
    if let Some(i) =
        gs.iter().position(|g| g.pos_a.iter().chain(&g.scale_a).chain(&g.quat).chain(std::iter::once(&g.amplitude)).any(|v| !v.is_finite()))
    {
        return Err(format!("{p}: Gaussian {i} (0-based) holds a NaN or infinite value"));
    }
    let map = path.parent().unwrap_or(Path::new(".")).join("map.mrc");
    let (d, apix, box_from) = if map.exists() {
        let h = cryosplat_formats::mrc::read_header(&map).map_err(|e| e.to_string())?;
        let m = map.display();
        if h.nx != h.ny || h.ny != h.nz {
            return Err(format!("{m}: a {}×{}×{} map, not a cube: it gives no box for the model {p}", h.nx, h.ny, h.nz));
        }
        let map_apix = h.apix.or(apix).ok_or_else(|| format!("{m}: the header gives no pixel size for the model {p}; pass --apix"))?;
        if let Some(b) = box_px.filter(|&b| b != h.nx) {
            return Err(format!(
                "--box {b}: the model {p} lives in a box of {} px (from {m}, written beside it); leave --box out or pass {}",
                h.nx, h.nx
            ));
        }
        if let Some(a) = apix.filter(|&a| (a - map_apix).abs() > 1e-4 * map_apix) {
            return Err(format!("--apix {a}: the model {p} has {map_apix} Å/px (from {m}, written beside it); leave --apix out"));
        }
        (h.nx, map_apix, m.to_string())
    } else {
        match (box_px, apix) {
            (Some(b), Some(a)) => (b, a, "--box and --apix".to_string()),
            _ => {
                return Err(format!(
                    "{p}: no map.mrc beside the model gives its box and pixel size ({} does not exist); pass both --box and --apix",
                    map.display()
                ))
            }
        }
    };
    if d < 8 {
        return Err(format!("{p}: a box of {d} px: expected at least 8"));
    }
    if !(apix > 0.0 && apix.is_finite()) {
        return Err(format!("{p}: a pixel size of {apix} Å: expected a positive number"));
    }
    let l = d as f64 * apix;
    let c = (d / 2) as f64 * apix;
    let params: Vec<_> = gs
        .iter()
        .map(|g| {
            GaussianModel::raw_from_physical(
                g.pos_a.map(|v| ((v as f64 - c) / l) as f32),
                g.scale_a.map(|v| (v as f64 / l) as f32),
                g.quat,
                g.amplitude,
            )
        })
        .collect();
    let model = GaussianModel { params };
    let outside_box = model.params.iter().filter(|q| q[..3].iter().any(|v| v.abs() > 0.5)).count();
    if outside_box == model.len() {
        return Err(format!(
            "{p}: none of its {} Gaussians lies inside a box of {d} px of {apix} Å (from {box_from}): is that the model's box?",
            model.len()
        ));
    }
    let mut notes = Vec::new();
    if path.file_name() == Some(std::ffi::OsStr::new("gaussians.ply")) && path.with_file_name("gaussians_a.ply").exists() {
        notes.push(format!(
            "{p} holds both half models of a reconstruction ({} Gaussians, amplitudes halved): a training step renders one half, as in {}",
            model.len(),
            path.with_file_name("gaussians_a.ply").display()
        ));
    }
    let info = ModelInfo { path: path.to_path_buf(), gaussians_in_file: model.len(), box_px: d, apix, box_from, outside_box };
    Ok(TrainedModel { model, info, notes })
}

/// The asymmetric unit of a model that is its expansion under `e` (copy-major, the unit
/// first, as `reconstruct --sym` writes it); `path` names the file in errors.
fn unit_of(model: &GaussianModel, e: &SymmetryExpansion, path: &Path) -> Result<GaussianModel, String> {
    let (n, k) = (model.len(), e.order());
    let p = path.display();
    if n % k != 0 {
        return Err(format!(
            "{p}: {n} Gaussians are not a multiple of the {k} copies of {}: not a model written by reconstruct --sym {}",
            e.name(),
            e.name()
        ));
    }
    let unit = GaussianModel { params: model.params[..n / k].to_vec() };
    let mut copies = GaussianModel { params: Vec::new() };
    e.expand(&unit, &mut copies);
    // Positions within f32 rounding of a round trip through Å; scales and amplitudes equal.
    for (j, (a, b)) in copies.params.iter().zip(&model.params).enumerate() {
        let same =
            (0..3).all(|i| (a[i] - b[i]).abs() <= 1e-5) && (3..6).chain(10..11).all(|i| (a[i] - b[i]).abs() <= 1e-5 * a[i].abs().max(1.0));
        if !same {
            return Err(format!(
                "{p}: Gaussian {j} (0-based) is not copy {} of Gaussian {} under {}: the file is not the expansion of its first {} Gaussians, which reconstruct --sym writes (or pass the model's own point group)",
                j / unit.len(),
                j % unit.len(),
                e.name(),
                unit.len()
            ));
        }
    }
    Ok(unit)
}

/// Poses, CTF parameters, half-plane CTFs and target images of a trained model's workload
/// (see the module docs): `n` random poses with origin shifts up to 3 px, the workload's CTFs
/// at `apix`, and the model's projections plus unit white noise, rendered with one thread.
#[allow(clippy::type_complexity)]
fn model_images(
    model: &GaussianModel,
    n: usize,
    d: usize,
    apix: f64,
    n_sigma: f32,
    rng: &mut Rng,
) -> (Vec<Pose>, Vec<CtfParams>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let grid = CtfGrid::new(d, apix);
    let poses: Vec<Pose> = (0..n)
        .map(|_| Pose { rot: random_rotation(rng), origin_a: [rng.uniform_range(-3.0, 3.0) * apix, rng.uniform_range(-3.0, 3.0) * apix] })
        .collect();
    let params: Vec<CtfParams> = (0..n).map(|_| workload::ctf_params(rng)).collect();
    let ctfs: Vec<Vec<f32>> = params
        .iter()
        .map(|p| {
            let mut out = vec![0.0f32; grid.len()];
            grid.fill_rfft(p, &mut out);
            out
        })
        .collect();
    let mut renderer = Renderer::new(d, RenderOptions { n_sigma, threads: 1 });
    let images = poses
        .iter()
        .zip(&ctfs)
        .map(|(pose, ctf)| {
            let mut img = vec![0.0f32; d * d];
            renderer.render(model, pose, apix, Some(ctf), &mut img);
            img.iter_mut().for_each(|v| *v += rng.normal() as f32);
            img
        })
        .collect();
    (poses, params, ctfs, images)
}

/// Largest footprint height, in rows, of the renderer's separable evaluation (its kernels'
/// `FAST_ROWS`); taller footprints take one exponential per pixel.
const SEPARABLE_ROWS: f64 = 32.0;

/// The footprints of `model` under `poses` (see [`FootprintStats`]), from the renderer's
/// projection formulas in f64.
pub fn footprint_stats(model: &GaussianModel, poses: &[Pose], d: usize, apix: f64, n_sigma: f32) -> FootprintStats {
    let n2 = (n_sigma as f64).powi(2);
    let (df, h, last) = (d as f64, (d / 2) as f64, (d - 1) as f64);
    let phys: Vec<_> = (0..model.len()).map(|i| model.physical_f64(i)).map(|g| (g.mean, g.covariance())).collect();
    let (mut area, mut big, mut sigma, mut walked, mut walked_big, mut tall, mut off) = (0.0, 0usize, 0.0, 0.0, 0.0, 0usize, 0usize);
    for pose in poses {
        let a = &pose.rot;
        for (mu, s) in &phys {
            // C = the top-left 2×2 of A·Σ·Aᵀ, in px².
            let cov = |r: usize, q: usize| -> f64 {
                (0..3).map(|i| (0..3).map(|j| a[r][i] * s[i][j] * a[q][j]).sum::<f64>()).sum::<f64>() * df * df
            };
            let (c00, c01, c11) = (cov(0, 0), cov(0, 1), cov(1, 1));
            let det = (c00 * c11 - c01 * c01).max(0.0);
            let ar = std::f64::consts::PI * n2 * det.sqrt();
            area += ar;
            sigma += det.sqrt().sqrt();
            let proj = |r: usize| df * (a[r][0] * mu[0] + a[r][1] * mu[1] + a[r][2] * mu[2]) + h - pose.origin_a[r] / apix;
            let (mx, my) = (proj(0), proj(1));
            let (half_h, half_w) = ((n2 * c11).sqrt(), (n2 * c00).sqrt());
            let (y0, y1) = ((my - half_h).ceil().max(0.0), (my + half_h).floor().min(last));
            let (xl, xr) = ((mx - half_w).ceil().max(0.0), (mx + half_w).floor().min(last));
            let w = if y0 <= y1 && xl <= xr {
                let rows = y1 - y0 + 1.0;
                if rows > SEPARABLE_ROWS {
                    tall += 1;
                }
                rows * (((xr - xl) / LANES as f64).floor() + 1.0) * LANES as f64
            } else {
                off += 1;
                0.0
            };
            walked += w;
            if ar > 100.0 {
                big += 1;
                walked_big += w;
            }
        }
    }
    let count = (model.len() * poses.len()).max(1) as f64;
    FootprintStats {
        gaussians: model.len(),
        poses: poses.len(),
        mean_area_px2: area / count,
        frac_above_100_px2: big as f64 / count,
        mean_sigma_px: sigma / count,
        walked_px_per_image: walked / poses.len().max(1) as f64,
        walked_share_above_100_px2: if walked > 0.0 { walked_big / walked } else { 0.0 },
        frac_per_pixel_path: tall as f64 / count,
        frac_off_image: off as f64 / count,
    }
}

/// Run the benchmark in a rayon pool of `config.threads` threads.
pub fn run(config: &BenchConfig) -> Result<BenchResult, String> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(config.threads.max(1)).build().map_err(|e| e.to_string())?;
    pool.install(|| run_in_pool(config))
}

/// The workload of one run: the unit model (the whole model with C1), its expansion, the
/// images and their parameters.
struct Workload {
    unit: GaussianModel,
    expansion: Option<SymmetryExpansion>,
    d: usize,
    apix: f64,
    poses: Vec<Pose>,
    ctf_params: Vec<CtfParams>,
    ctfs: Vec<Vec<f32>>,
    images: Vec<Vec<f32>>,
    model: Option<ModelInfo>,
    notes: Vec<String>,
}

fn workload(c: &BenchConfig, rng: &mut Rng) -> Result<Workload, String> {
    if c.batch == 0 || c.steps == 0 || c.repeats == 0 || c.threads == 0 || (c.model.is_none() && c.gaussians == 0) {
        return Err("gaussians, threads, batch, steps and repeats must be positive".into());
    }
    if !(c.n_sigma > 0.0 && c.n_sigma.is_finite()) {
        return Err(format!("footprint of {} σ: expected a positive number", c.n_sigma));
    }
    if c.phases && c.batch != 1 {
        return Err(format!("--phases times the parts of a batch-of-one step; it needs --batch 1 (not {})", c.batch));
    }
    let group = PointGroup::parse(&c.sym).map_err(|e| format!("--sym: {e}"))?;
    let expansion = if group.is_trivial() { None } else { Some(SymmetryExpansion::new(&group)) };
    let cycle = 16.max(c.batch);
    let Some(path) = &c.model else {
        if c.apix.is_some() {
            return Err("--apix is the pixel size of a model: it needs --model".into());
        }
        let d = c.box_px.unwrap_or(DEFAULT_BOX_PX);
        if d < 8 {
            return Err(format!("box {d} px: expected at least 8"));
        }
        let unit = expansion.as_ref().map_or(c.gaussians, |e| c.gaussians.div_ceil(e.order()));
        let unit = workload::model(unit, d, rng);
        let (poses, ctfs, images) = workload::images(cycle, d, rng);
        // The CTF parameters of the workload's kind, for timing their evaluation only.
        let mut own = Rng::new(c.seed.wrapping_add(1));
        let ctf_params = (0..cycle).map(|_| workload::ctf_params(&mut own)).collect();
        let notes = Vec::new();
        return Ok(Workload { unit, expansion, d, apix: 1.0, poses, ctf_params, ctfs, images, model: None, notes });
    };
    let t = load_model(path, c.box_px, c.apix)?;
    let (d, apix) = (t.info.box_px, t.info.apix);
    let unit = match &expansion {
        Some(e) => unit_of(&t.model, e, path)?,
        None => t.model.clone(),
    };
    let (poses, ctf_params, ctfs, images) = model_images(&t.model, cycle, d, apix, c.n_sigma, rng);
    Ok(Workload { unit, expansion, d, apix, poses, ctf_params, ctfs, images, model: Some(t.info), notes: t.notes })
}

fn run_in_pool(c: &BenchConfig) -> Result<BenchResult, String> {
    let mut rng = Rng::new(c.seed);
    let w = workload(c, &mut rng)?;
    let (d, apix, cycle) = (w.d, w.apix, w.images.len());
    let rendered = match &w.expansion {
        Some(e) => {
            let mut m = GaussianModel { params: Vec::new() };
            e.expand(&w.unit, &mut m);
            m
        }
        None => w.unit.clone(),
    };
    let footprints = footprint_stats(&rendered, &w.poses, d, apix, c.n_sigma);
    let targets: Vec<ImageTarget> =
        (0..cycle).map(|i| ImageTarget { image: &w.images[i], ctf_rfft: &w.ctfs[i], pose: &w.poses[i], apix }).collect();
    let mut renderer = Renderer::new(d, RenderOptions { n_sigma: c.n_sigma, threads: c.threads });
    let mut phases = if c.phases { Some(time_phases(c, &w, &rendered, &targets, &mut renderer)) } else { None };
    let mut model = w.unit.clone();
    let secs = if let Some(rc) = &c.refine {
        let mut trainer = HalfTrainer::new(model, AdamConfig::default());
        trainer.set_symmetry(w.expansion.clone());
        time_refining_steps(c, rc, d, apix, &mut trainer, &mut renderer, &w.poses, &w.images, &mut rng).0
    } else if let Some(e) = &w.expansion {
        let mut trainer = HalfTrainer::new(model, AdamConfig::default());
        trainer.set_symmetry(Some(e.clone()));
        let mut k = 0usize;
        let mut batch: Vec<ImageTarget> = Vec::with_capacity(c.batch);
        time_steps(c, || {
            batch.clear();
            batch.extend((0..c.batch).map(|j| targets[(k + j) % cycle]));
            trainer.step(&mut renderer, &batch, 1e-4, false);
            k += c.batch;
        })
    } else {
        let mut adam = Adam::new(AdamConfig::default(), model.len());
        let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
        let mut batch: Vec<ImageTarget> = Vec::with_capacity(c.batch);
        let mut k = 0usize;
        let mut step = |model: &mut GaussianModel, adam: &mut Adam| {
            if c.batch == 1 {
                renderer.loss_and_grad(model, &targets[k % cycle], &mut grad);
            } else {
                batch.clear();
                batch.extend((0..c.batch).map(|j| targets[(k + j) % cycle]));
                renderer.loss_and_grad_batch(model, &batch, &mut grad);
            }
            k += c.batch;
            // Clears the gradient for the next step in the same pass.
            adam.step_and_clear(model, &mut grad, 1e-4);
        };
        time_steps(c, || step(&mut model, &mut adam))
    };
    let best = secs.iter().copied().fold(f64::INFINITY, f64::min);
    if let Some(p) = &mut phases {
        p.step_ms = 1e3 * best / c.steps as f64;
    }
    Ok(BenchResult {
        images_per_s: (c.steps * c.batch) as f64 / best,
        steps_per_s: c.steps as f64 / best,
        box_px: d,
        apix,
        gaussians: if w.model.is_some() { rendered.len() } else { c.gaussians },
        threads: c.threads,
        batch: c.batch,
        steps: c.steps,
        seconds: best,
        repeat_seconds: secs,
        n_sigma: c.n_sigma,
        sym: c.sym.clone(),
        unit_gaussians: w.unit.len(),
        refine: c.refine.clone(),
        images: if w.model.is_some() { "model projections + unit white noise" } else { "white noise" }.into(),
        model: w.model,
        footprints,
        phases,
        notes: w.notes,
    })
}

/// The parts of a batch-of-one step, each timed on its own (see the module docs); `step_ms`
/// is left for the caller.
fn time_phases(c: &BenchConfig, w: &Workload, rendered: &GaussianModel, targets: &[ImageTarget], renderer: &mut Renderer) -> PhaseTimes {
    let (d, apix, cycle) = (w.d, w.apix, targets.len());
    // The inputs of each part, from the model as loaded.
    let mut proj = vec![vec![0.0f32; d * d]; cycle];
    let mut dl = vec![vec![0.0f32; d * d]; cycle];
    let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; rendered.len()];
    for (i, t) in targets.iter().enumerate() {
        renderer.render(rendered, t.pose, apix, None, &mut proj[i]);
        renderer.image_loss_and_adjoint(&proj[i], t, &mut dl[i]);
    }
    renderer.backward_image(rendered, targets[0].pose, apix, &dl[0], &mut grad);
    let mut unit_grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; w.unit.len()];
    match &w.expansion {
        Some(e) => e.fold_grad(&w.unit, &grad, &mut unit_grad),
        None => unit_grad.copy_from_slice(&grad),
    }
    let mut adam_model = w.unit.clone();
    let mut adam = Adam::new(AdamConfig::default(), adam_model.len());
    let mut expanded = GaussianModel { params: Vec::new() };
    let mut fold_out = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; w.unit.len()];
    let grid = CtfGrid::new(d, apix);
    let (mut ctf, mut dctf) = (vec![0.0f32; grid.len()], vec![0.0f32; grid.len()]);
    let mut out = vec![0.0f32; d * d];
    let mut k = 0usize;
    let mut next = || {
        k += 1;
        (k - 1) % cycle
    };
    const PARTS: usize = 8;
    let mut best = [f64::INFINITY; PARTS];
    for repeat in 0..c.repeats {
        for (part, b) in best.iter_mut().enumerate() {
            let sym_part = part == 5 || part == 6;
            if sym_part && w.expansion.is_none() {
                continue;
            }
            let mut one = |i: usize| match part {
                0 => renderer.project(rendered, targets[i].pose, apix),
                1 => renderer.render(rendered, targets[i].pose, apix, None, &mut out),
                2 => {
                    renderer.image_loss_and_adjoint(&proj[i], &targets[i], &mut out);
                }
                3 => renderer.backward_image(rendered, targets[i].pose, apix, &dl[i], &mut grad),
                4 => adam.step(&mut adam_model, &unit_grad, 1e-4),
                5 => w.expansion.as_ref().expect("a point group").expand(&w.unit, &mut expanded),
                6 => w.expansion.as_ref().expect("a point group").fold_grad(&w.unit, &grad, &mut fold_out),
                _ => match c.refine {
                    Some(_) => grid.fill_rfft_with_ddefocus(&w.ctf_params[i], &mut ctf, &mut dctf),
                    None => grid.fill_rfft(&w.ctf_params[i], &mut ctf),
                },
            };
            if repeat == 0 {
                for _ in 0..c.warmup {
                    one(next());
                }
            }
            let t0 = Instant::now();
            for _ in 0..c.steps {
                one(next());
            }
            *b = b.min(t0.elapsed().as_secs_f64() * 1e3 / c.steps as f64);
        }
    }
    let sym = |v: f64| w.expansion.as_ref().map(|_| v);
    let [project_ms, forward_ms, loss_ms, backward_ms, adam_ms, expand_ms, fold_ms, ctf_eval_ms] = best;
    let (expand_ms, fold_ms) = (sym(expand_ms), sym(fold_ms));
    let (splat_ms, gather_ms) = (forward_ms - project_ms, backward_ms - project_ms);
    PhaseTimes {
        project_ms,
        forward_ms,
        loss_ms,
        backward_ms,
        adam_ms,
        expand_ms,
        fold_ms,
        ctf_eval_ms,
        splat_ms,
        gather_ms,
        parts_sum_ms: forward_ms + loss_ms + gather_ms + adam_ms + expand_ms.unwrap_or(0.0) + fold_ms.unwrap_or(0.0),
        step_ms: f64::NAN,
    }
}

/// The timed runs of the refining step (see the module docs): image `i` of the cycle is
/// particle `i`, whose corrections persist across steps. Returns the seconds of each run and
/// the corrections at the end.
#[allow(clippy::too_many_arguments)]
fn time_refining_steps(
    c: &BenchConfig,
    rc: &RefineConfig,
    d: usize,
    apix: f64,
    trainer: &mut HalfTrainer,
    renderer: &mut Renderer,
    poses: &[Pose],
    images: &[Vec<f32>],
    rng: &mut Rng,
) -> (Vec<f64>, ParticleRefinement) {
    let cycle = poses.len();
    // The recorded CTFs: the workload's kind.
    let recorded_ctfs: Vec<CtfParams> = (0..cycle).map(|_| workload::ctf_params(rng)).collect();
    let grid = CtfGrid::new(d, apix);
    let mut refine = ParticleRefinement::new(RefineConfig { start_epoch: 0, ..rc.clone() }, cycle);
    let (mut ctfs, mut dctfs) = (vec![vec![0.0f32; grid.len()]; c.batch], vec![vec![0.0f32; grid.len()]; c.batch]);
    let mut batch_poses = vec![Pose::default(); c.batch];
    let mut ids = vec![0usize; c.batch];
    let mut k = 0usize;
    let secs = time_steps(c, || {
        for j in 0..c.batch {
            let i = (k + j) % cycle;
            ids[j] = i;
            batch_poses[j] = refine.pose(i, &poses[i]);
            grid.fill_rfft_with_ddefocus(&refine.ctf(i, &recorded_ctfs[i]), &mut ctfs[j], &mut dctfs[j]);
        }
        k += c.batch;
        let targets: Vec<ImageTarget> =
            (0..c.batch).map(|j| ImageTarget { image: &images[ids[j]], ctf_rfft: &ctfs[j], pose: &batch_poses[j], apix }).collect();
        let dctf: Vec<&[f32]> = dctfs.iter().map(|v| &v[..]).collect();
        trainer.step_with_defocus(renderer, &targets, &dctf, 1e-4, false);
        // The images' noise is white of unit variance (the random workload's images are that
        // noise alone).
        let model = &trainer.model;
        let radius2_a2 = refine.lever_arm_a2(|| model.mean_square_radius_a2(d, apix));
        for (&i, st) in ids.iter().zip(renderer.last_stats()) {
            refine.update(i, &poses[i], st, d, 1.0, radius2_a2);
        }
    });
    (secs, refine)
}

/// The warm-up, then `repeats` timed runs of `steps` steps: the seconds of each run.
fn time_steps(c: &BenchConfig, mut step: impl FnMut()) -> Vec<f64> {
    for _ in 0..c.warmup {
        step();
    }
    let mut secs = Vec::with_capacity(c.repeats);
    for _ in 0..c.repeats {
        let t0 = Instant::now();
        for _ in 0..c.steps {
            step();
        }
        secs.push(t0.elapsed().as_secs_f64());
    }
    secs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::ply_gaussians;
    use cryosplat_formats::ply::write_gaussians;

    #[test]
    fn runs_and_reports() {
        let cfg = BenchConfig { box_px: Some(32), gaussians: 50, threads: 2, steps: 4, warmup: 1, repeats: 2, ..Default::default() };
        let r = run(&cfg).unwrap();
        assert_eq!((r.steps, r.batch, r.repeat_seconds.len(), r.box_px, r.apix), (4, 1, 2, 32, 1.0));
        assert!(r.images_per_s > 0.0 && r.seconds == r.repeat_seconds.iter().copied().fold(f64::INFINITY, f64::min));
        assert_eq!((r.footprints.gaussians, r.footprints.poses, r.images.as_str()), (50, 16, "white noise"));
        assert!(r.phases.is_none() && r.model.is_none() && r.notes.is_empty());
        let r = run(&BenchConfig { batch: 3, threads: 1, ..cfg.clone() }).unwrap();
        assert!((r.images_per_s / r.steps_per_s - 3.0).abs() < 1e-9);
        assert_eq!(run(&BenchConfig { box_px: None, steps: 1, repeats: 1, ..cfg.clone() }).unwrap().box_px, DEFAULT_BOX_PX);
        assert!(run(&BenchConfig { box_px: Some(4), ..cfg.clone() }).is_err());
        assert!(run(&BenchConfig { steps: 0, ..cfg.clone() }).is_err());
        let r = run(&BenchConfig { sym: "C4".into(), gaussians: 50, ..cfg.clone() }).unwrap();
        assert_eq!((r.sym.as_str(), r.unit_gaussians, r.gaussians, r.footprints.gaussians), ("C4", 13, 50, 52));
        assert_eq!(run(&cfg).unwrap().unit_gaussians, 50);
        // Groups with mirrors are expanded too (12 copies of D3h).
        let r = run(&BenchConfig { sym: "D3h".into(), gaussians: 48, ..cfg.clone() }).unwrap();
        assert_eq!((r.sym.as_str(), r.unit_gaussians), ("D3h", 4));
        let e = run(&BenchConfig { sym: "X9".into(), ..cfg.clone() }).unwrap_err();
        assert!(e.contains("--sym"), "{e}");
        let e = run(&BenchConfig { phases: true, batch: 2, ..cfg.clone() }).unwrap_err();
        assert!(e.contains("--batch 1"), "{e}");
        assert!(run(&BenchConfig { apix: Some(1.0), ..cfg.clone() }).unwrap_err().contains("--model"));
        // With refinement, with and without a symmetry, one image per step and a minibatch.
        for (sym, batch) in [("C1", 1), ("C1", 3), ("C4", 2)] {
            let refine = RefineConfig {
                pose: true,
                shift: false,
                defocus: true,
                prior_rot_deg: 5.0,
                prior_shift_a: 3.0,
                prior_defocus_a: 1000.0,
                start_epoch: 1,
                estimate_prior: false,
            };
            let r = run(&BenchConfig { sym: sym.into(), batch, refine: Some(refine.clone()), ..cfg.clone() }).unwrap();
            assert_eq!((r.refine.as_ref(), r.batch, r.repeat_seconds.len()), (Some(&refine), batch, 2), "{sym}");
            assert!(r.images_per_s > 0.0);
        }
    }

    /// The parts the phases time are the step: a projection without CTF, the loss of that
    /// projection and the backward pass from its image-space gradient give the loss and the
    /// gradient of `loss_and_grad` bitwise, with and without a CTF, on one and two threads.
    #[test]
    fn the_parts_are_the_step() {
        let d = 32;
        let mut rng = Rng::new(3);
        let model = workload::model(300, d, &mut rng);
        let (poses, ctfs, images) = workload::images(2, d, &mut rng);
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut r = Renderer::new(d, RenderOptions { n_sigma: DEFAULT_N_SIGMA, threads });
                for (i, ctf) in [&ctfs[0][..], &[][..], &ctfs[1][..]].into_iter().enumerate() {
                    let t = ImageTarget { image: &images[i % 2], ctf_rfft: ctf, pose: &poses[i % 2], apix: 1.0 };
                    let mut want = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
                    let loss = r.loss_and_grad(&model, &t, &mut want);
                    let (mut proj, mut dl) = (vec![0.0f32; d * d], vec![0.0f32; d * d]);
                    r.render(&model, t.pose, 1.0, None, &mut proj);
                    let l = r.image_loss_and_adjoint(&proj, &t, &mut dl);
                    let mut got = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; model.len()];
                    r.backward_image(&model, t.pose, 1.0, &dl, &mut got);
                    assert_eq!(l.to_bits(), loss.to_bits(), "{threads} threads, image {i}");
                    assert!(
                        got.iter().flatten().zip(want.iter().flatten()).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{threads} threads, image {i}"
                    );
                    assert!(want.iter().flatten().any(|v| *v != 0.0));
                    r.project(&model, t.pose, 1.0);
                    assert_eq!(r.last_stats()[0].skipped, 0);
                }
            });
        }
    }

    /// A model written as `reconstruct` writes it, with its map beside it, in a folder of
    /// the temporary directory; returns the PLY's path.
    fn write_model(dir: &Path, name: &str, model: &GaussianModel, d: usize, apix: f64, map: bool) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        write_gaussians(&p, &ply_gaussians(model, d, apix, 1.0)).unwrap();
        if map {
            let opts = cryosplat_formats::mrc::WriteOptions::default();
            cryosplat_formats::mrc::write_volume(&dir.join("map.mrc"), &vec![0.0f32; d * d * d], [d, d, d], apix, &opts).unwrap();
        }
        p
    }

    #[test]
    fn a_model_is_read_in_its_own_box() {
        let tmp = tempfile::tempdir().unwrap();
        let (d, apix) = (24, 2.5);
        let model = workload::model(40, d, &mut Rng::new(5));
        let p = write_model(&tmp.path().join("rec"), "gaussians_a.ply", &model, d, apix, true);
        let t = load_model(&p, None, None).unwrap();
        assert_eq!((t.info.box_px, t.info.apix, t.info.gaussians_in_file, t.info.outside_box), (d, apix, 40, 0));
        assert!(t.info.box_from.ends_with("map.mrc") && t.notes.is_empty());
        for (a, b) in t.model.params.iter().zip(&model.params) {
            for k in 0..PARAMS_PER_GAUSSIAN {
                assert!((a[k] - b[k]).abs() <= 2e-5 * b[k].abs().max(1.0), "{a:?} {b:?}");
            }
        }
        // The box and pixel size the map gives, stated again, are accepted; others are refused.
        assert!(load_model(&p, Some(d), Some(apix)).is_ok());
        let e = load_model(&p, Some(32), None).unwrap_err();
        assert!(e.contains("--box 32") && e.contains("gaussians_a.ply") && e.contains("map.mrc") && e.contains("24 px"), "{e}");
        let e = load_model(&p, None, Some(1.0)).unwrap_err();
        assert!(e.contains("--apix 1") && e.contains("gaussians_a.ply"), "{e}");
        // Without a map, both must be given.
        let q = write_model(&tmp.path().join("loose"), "m.ply", &model, d, apix, false);
        for (b, a) in [(None, None), (Some(d), None), (None, Some(apix))] {
            let e = load_model(&q, b, a).unwrap_err();
            assert!(e.contains("m.ply") && e.contains("--box and --apix"), "{e}");
        }
        let t = load_model(&q, Some(d), Some(apix)).unwrap();
        assert_eq!((t.info.box_px, t.info.box_from.as_str()), (d, "--box and --apix"));
        // A box far too small for the model leaves no Gaussian inside it.
        let e = load_model(&q, Some(8), Some(0.1)).unwrap_err();
        assert!(e.contains("m.ply") && e.contains("none of its 40 Gaussians"), "{e}");
        // The file that holds both halves is named for what it is.
        let both = write_model(&tmp.path().join("rec"), "gaussians.ply", &model, d, apix, false);
        let t = load_model(&both, None, None).unwrap();
        assert!(t.notes.len() == 1 && t.notes[0].contains("both half models"), "{:?}", t.notes);
        // Missing and malformed files are named.
        let e = load_model(&tmp.path().join("absent.ply"), Some(d), Some(apix)).unwrap_err();
        assert!(e.contains("absent.ply"), "{e}");
        let bad = tmp.path().join("rec").join("bad.ply");
        std::fs::write(&bad, b"ply\nformat ascii 1.0\nend_header\n").unwrap();
        let e = load_model(&bad, None, None).unwrap_err();
        assert!(e.contains("bad.ply") && e.contains("binary PLY only"), "{e}");
        let empty = write_model(&tmp.path().join("rec"), "empty.ply", &GaussianModel { params: Vec::new() }, d, apix, false);
        assert!(load_model(&empty, None, None).unwrap_err().contains("no Gaussians"));
    }

    #[test]
    fn a_trained_model_runs_with_phases_and_symmetry() {
        let tmp = tempfile::tempdir().unwrap();
        let (d, apix) = (24, 2.0);
        let unit = workload::model(10, d, &mut Rng::new(6));
        let c3 = SymmetryExpansion::new(&PointGroup::parse("C3").unwrap());
        let mut copies = GaussianModel { params: Vec::new() };
        c3.expand(&unit, &mut copies);
        let p = write_model(&tmp.path().join("rec"), "gaussians_a.ply", &copies, d, apix, true);
        let cfg = BenchConfig { model: Some(p.clone()), threads: 2, steps: 2, warmup: 1, repeats: 2, phases: true, ..Default::default() };
        let r = run(&cfg).unwrap();
        assert_eq!((r.box_px, r.apix, r.gaussians, r.unit_gaussians), (d, apix, 30, 30));
        assert_eq!(r.images, "model projections + unit white noise");
        assert_eq!(r.model.as_ref().unwrap().gaussians_in_file, 30);
        let ph = r.phases.unwrap();
        assert!([ph.project_ms, ph.forward_ms, ph.loss_ms, ph.backward_ms, ph.adam_ms, ph.ctf_eval_ms, ph.step_ms]
            .iter()
            .all(|v| *v > 0.0));
        assert!(ph.expand_ms.is_none() && ph.fold_ms.is_none());
        assert_eq!(ph.parts_sum_ms, ph.forward_ms + ph.loss_ms + ph.gather_ms + ph.adam_ms);
        let f = &r.footprints;
        assert!(f.gaussians == 30 && f.mean_area_px2 > 0.0 && f.walked_px_per_image > 0.0, "{f:?}");
        // The same file as the expansion of its first 10 Gaussians under C3.
        let r = run(&BenchConfig { sym: "C3".into(), ..cfg.clone() }).unwrap();
        assert_eq!((r.gaussians, r.unit_gaussians, r.footprints.gaussians), (30, 10, 30));
        let ph = r.phases.unwrap();
        assert!(ph.expand_ms.unwrap() > 0.0 && ph.fold_ms.unwrap() > 0.0);
        // Not an expansion under C5 (30 Gaussians, 6 per unit), nor under C2 (the copies differ).
        for g in ["C5", "C2"] {
            let e = run(&BenchConfig { sym: g.into(), ..cfg.clone() }).unwrap_err();
            assert!(e.contains("gaussians_a.ply") && e.contains("not the expansion"), "{g}: {e}");
        }
        let e = run(&BenchConfig { sym: "C4".into(), ..cfg.clone() }).unwrap_err();
        assert!(e.contains("gaussians_a.ply") && e.contains("not a multiple"), "{e}");
        // Refinement on a trained model, at its pixel size.
        let refine = RefineConfig {
            pose: true,
            shift: true,
            defocus: true,
            prior_rot_deg: 5.0,
            prior_shift_a: 3.0,
            prior_defocus_a: 1000.0,
            start_epoch: 0,
            estimate_prior: true,
        };
        let r = run(&BenchConfig { refine: Some(refine), sym: "C3".into(), ..cfg.clone() }).unwrap();
        assert!(r.images_per_s > 0.0 && r.phases.unwrap().ctf_eval_ms > 0.0);
        let e = run(&BenchConfig { box_px: Some(32), ..cfg }).unwrap_err();
        assert!(e.contains("--box 32") && e.contains("gaussians_a.ply"), "{e}");
    }

    /// The footprint statistics of isotropic Gaussians of a known size at the box centre.
    #[test]
    fn footprints_of_known_gaussians() {
        let d = 64;
        let px = 1.0 / d as f32;
        let g = |s: f32| GaussianModel::raw_from_physical([0.0; 3], [s * px; 3], [1.0, 0.0, 0.0, 0.0], 1.0);
        // σ = 1 px: area π·3.5² ≈ 38.5 px²; σ = 4 px: 616 px², 29 rows (separable); σ = 5 px: 35 rows.
        let model = GaussianModel { params: vec![g(1.0), g(4.0), g(5.0)] };
        let f = footprint_stats(&model, &[Pose::default()], d, 1.0, 3.5);
        let area = |s: f64| std::f64::consts::PI * 3.5 * 3.5 * s * s;
        assert!((f.mean_area_px2 - (area(1.0) + area(4.0) + area(5.0)) / 3.0).abs() < 1e-3, "{f:?}");
        assert!((f.mean_sigma_px - 10.0 / 3.0).abs() < 1e-4, "{f:?}");
        assert!((f.frac_above_100_px2 - 2.0 / 3.0).abs() < 1e-12 && (f.frac_per_pixel_path - 1.0 / 3.0).abs() < 1e-12, "{f:?}");
        assert_eq!(f.frac_off_image, 0.0);
        // σ = 1: rows 29..=35 (7), columns 29..=35 in one chunk: 7·16 pixels.
        let small = footprint_stats(&GaussianModel { params: vec![g(1.0)] }, &[Pose::default()], d, 1.0, 3.5);
        assert_eq!(small.walked_px_per_image, 7.0 * 16.0);
        // Moved out of the image by the origin offset.
        let away = Pose { origin_a: [200.0, 0.0], ..Pose::default() };
        assert_eq!(footprint_stats(&model, &[away], d, 1.0, 3.5).frac_off_image, 1.0);
    }

    /// The refining step moves the refined corrections of every image it visited and leaves
    /// the others (and every unrefined correction) at zero.
    #[test]
    fn the_refining_step_refines() {
        let c =
            BenchConfig { box_px: Some(24), gaussians: 40, threads: 1, batch: 2, steps: 3, warmup: 1, repeats: 1, ..Default::default() };
        let rc = RefineConfig {
            pose: true,
            shift: true,
            defocus: false,
            prior_rot_deg: 5.0,
            prior_shift_a: 3.0,
            prior_defocus_a: 1000.0,
            start_epoch: 4,
            estimate_prior: false,
        };
        let mut rng = Rng::new(c.seed);
        let mut trainer = HalfTrainer::new(workload::model(c.gaussians, c.box_px.unwrap(), &mut rng), AdamConfig::default());
        let (poses, _, images) = workload::images(16, c.box_px.unwrap(), &mut rng);
        let mut renderer = Renderer::new(c.box_px.unwrap(), RenderOptions { n_sigma: c.n_sigma, threads: 1 });
        let (secs, refine) = time_refining_steps(&c, &rc, c.box_px.unwrap(), 1.0, &mut trainer, &mut renderer, &poses, &images, &mut rng);
        assert_eq!(secs.len(), 1);
        // Four steps of two images: particles 0–7.
        for i in 0..16 {
            let (w, o, dz) = refine.correction(i);
            assert_eq!(dz, 0.0);
            assert_eq!(i < 8, w.iter().all(|v| *v != 0.0) && o.iter().all(|v| *v != 0.0), "particle {i}: {w:?} {o:?}");
        }
        assert_eq!(trainer.steps, 4);
    }
}
