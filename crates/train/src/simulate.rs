//! Synthetic particle sets: from an atomic model or a map, write noisy CTF-modulated particle
//! images with known poses, their RELION 3.1 metadata and the ground-truth map.
//!
//! **One unit of parallel work is one particle.** A particle's pose, origin and defocus are
//! drawn from its own random stream `Rng::stream(seed, index)` and its noise from another,
//! so every particle is computed independently (projection, CTF, noise) into its own slot of
//! a chunk buffer with per-thread scratch (FFT plans made once), and the result is
//! bit-identical whatever the number of threads. Chunks of particles are written in order,
//! so memory stays bounded for any particle count.
//!
//! # Image formation
//!
//! 1. **Clean projection.** Atomic models become their electron potential as isotropic
//!    Gaussians ([`cryosplat_core::potential`], Peng et al. 1996 scattering factors, each atom's
//!    B-factor plus `bfactor_a2`), and every image is their *exact* analytic projection under
//!    the pose, sampled at the pixel points with the particle's origin offset already applied
//!    ([`splat_isotropic`]): a volume point `r` lands at `A·r − o`, so the particle centre is at
//!    pixel `D/2 − o/apix`. Maps are projected by real-space ray sums with trilinear
//!    interpolation ([`project_volume`], origin offset applied to the rays). Each Gaussian of
//!    an atomic model is first widened by an anti-aliasing Gaussian of `antialias_sigma_px`
//!    pixels (default 0.5, an extra B-factor of `8π²(0.5·apix)²`), so that the point-sampled
//!    images and map hold little power beyond Nyquist: without it, atoms narrower than a
//!    pixel alias, and the ground-truth map's projections match the images less well (the
//!    measurement that chose 0.5 px is in BENCHMARKS.md, "Simulation").
//! 2. **CTF.** `real(IFFT(CTF·FFT(image)))` on the centred grid with the CTF of
//!    [`cryosplat_core::ctf`], the one reconstruction uses (RELION's formula and sign,
//!    `CTF(0) = +Q0`, particles white), defocus `ΔfU, ΔfV` at angle `φA` per particle
//!    ([`CtfFilter`]). With `envelope_bfactor_a2` (`simulate --envelope B`), the images are also
//!    multiplied by the fall-off `exp(−B s²/4)` in the same step (added to the CTF's own
//!    B-factor for the filter only): as on real data, this envelope is *not* recorded in
//!    `particles.star` (whose `rlnCtfBfactor` stays `ctf_bfactor_a2`), and `gt.mrc` stays
//!    unblurred; `meta.json` records it.
//! 3. **Noise.** White Gaussian noise of standard deviation `σ_n`, chosen for the requested SNR:
//!
//!    `SNR = mean over particles of Var_box(clean CTF-modulated image) / σ_n²`,
//!
//!    where `Var_box` is the variance of the image's `D²` pixels about their mean. The mean
//!    signal variance is measured on the clean images of this very set: a first pass makes
//!    every clean image for its variance, the second makes it again and adds the noise. The
//!    clean images are never kept on disk for the second pass (a set needs only its own size
//!    in free space, which matters for sets of tens of GB); making them twice costs time
//!    instead, and gives the same bits as keeping them would.
//!
//! # Symmetric particles
//!
//! With a point group ([`SimulateConfig::sym`], RELION's names and operators `R_k`,
//! [`cryosplat_core::symmetry`]) an atomic model is the asymmetric unit: after centring it is
//! shifted by [`SimulateConfig::sym_offset_a`] and copied to `R_k·r` about the box centre for
//! every operator, and the copies together are the particle (images and `gt.mrc`). A map input
//! is averaged over the group instead ([`symmetrize_map`]), after any resampling. Copies
//! that overlap are not merged: place the unit off the symmetry axes with the offset.
//!
//! # Recorded errors
//!
//! With [`SimulateConfig::pose_error_deg`], [`SimulateConfig::shift_error_px`] or
//! [`SimulateConfig::defocus_error_a`] (`simulate --pose-error DEG --shift-error PX
//! --defocus-error Å`) the images are still made with the true parameters (the same images as
//! without the options, for the same seed), but `particles.star` records perturbed ones and
//! `particles_true.star` the true ones, so that refinement can be tested against a known
//! answer. Particle `i`'s errors come from their own stream `Rng::stream(seed ^ ERROR_SALT, i)`,
//! six normal deviates `n₀…n₅` always drawn in this order (so one error's draws do not depend on
//! whether another is set), by [`record_errors`]:
//!
//! * **rotation**: `A_rec = R(e)·A` where `R(e)` is the Rodrigues matrix of the rotation vector
//!   `e = (σ/√3)·(n₀, n₁, n₂)` (radians, `σ = pose_error_deg` in radians). The angle between
//!   the recorded and the true rotation is `|e|`, whose mean square is `σ²`: **`σ` is the rms
//!   angle** (the angle follows `σ/√3` times a χ with 3 degrees of freedom; its mean is
//!   `σ·√(8/(3π))` ≈ 0.92σ). The error acts in the image frame (left of `A`): `e_z` turns the
//!   image in plane, `e_x` and `e_y` tilt the view. The recorded pose is brought back to the
//!   truth by `R(−e)`: a correction `A = R(w)·A_rec`
//!   ([`cryosplat_core::rotation::rotate_by_rotvec`]) should find `w = −e`. The recorded Euler angles are RELION's
//!   angles of `A_rec`, rounded to the STAR file's six decimals like every other value.
//! * **origin**: `o_rec = o + shift_error_px·apix·(n₃, n₄)` Å: the rms error **per axis** is
//!   `shift_error_px` pixels (the rms length of the 2D error is √2 times that).
//! * **defocus**: one offset `defocus_error_a·n₅` Å added to both `ΔfU` and `ΔfV` (astigmatism
//!   and its angle are recorded exactly).
//!
//! With all three at 0 (the default) nothing is drawn, `particles_true.star` is not written and
//! every file but `meta.json` is byte for byte what it was before these options existed.
//! `meta.json` records the settings and the rms errors actually drawn (`recorded_errors`).
//!
//! # Outputs (in the output folder; each written atomically)
//!
//! * `particles.mrcs`: the noisy stack (MRC2014, `cella = (D·apix, D·apix, apix)`), float32
//!   (mode 2), or float16 (mode 12) with [`SimulateConfig::float16`]: half the size, with a
//!   relative rounding error of at most 2⁻¹¹ per pixel, far below the noise of any set;
//! * `particles.star`: RELION 3.1 (`data_optics`, `data_particles`) with poses, origins in Å,
//!   CTF parameters and a random half-set label `rlnRandomSubset` (the recorded values, which
//!   differ from the true ones only with [recorded errors](self#recorded-errors));
//! * `particles_true.star` (only with recorded errors): the same with the true values;
//! * `gt.mrc`: the noise-free map at the same sampling, scaled so that summing voxels along z
//!   gives the clean projection (for atoms: the potential voxelised with
//!   [`voxelize_a`], values in V·Å; for maps: the input map, resampled if needed);
//! * `meta.json`: every setting, the seed, the SNR definition, the signal variance and
//!   `σ_n`, counts and the program version;
//! * `clean.mrcs` (with `write_clean`): the CTF-modulated images before noise, in the mode of
//!   `particles.mrcs`.

use crate::dataset::{write_relion31, StarDecimals, StarLayout, StarOptics, StarParticle};
use crate::progress::Progress;
use cryosplat_core::ctf::{CtfGrid, CtfParams};
use cryosplat_core::gaussian::GaussianA;
use cryosplat_core::pose::{mat_mul, mat_vec, transpose, Mat3};
use cryosplat_core::potential::{atomic_potential, Atom, Centering, PotentialError, PotentialOptions};
use cryosplat_core::projector::{project_volume, splat_isotropic, trilinear, FilterScratch, HalfPlaneFilter, IsoGaussian, SplatScratch};
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::{angle_between_deg, euler_to_matrix, matrix_to_euler, rotvec_to_rodrigues};
use cryosplat_core::symmetry::{symmetrize_map, PointGroup};
use cryosplat_core::voxel::{voxelize_a, DEFAULT_CUTOFF_SIGMA};
use cryosplat_formats::atomic::write_atomic;
use cryosplat_formats::mrc::{write_volume, StackWriter, Stats, WriteMode, WriteOptions};
use cryosplat_formats::FormatError;
use rayon::prelude::*;
use serde::Serialize;
use std::f64::consts::PI;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `meta.json` says of the source.
type JsonMap = serde_json::Map<String, serde_json::Value>;

/// What to simulate from.
#[derive(Clone, Debug)]
pub enum Source {
    /// An atomic model; `label` names it in `meta.json` (e.g. the file path).
    Atoms { atoms: Vec<Atom>, label: String },
    /// A cubic map (`d³`, x fastest) of `apix` Å per voxel, in the crate's map scale (summing
    /// voxels along z gives the projection).
    Map { data: Vec<f32>, d: usize, apix: f64, label: String },
}

/// A non-uniform view distribution: viewing directions drawn from a von Mises–Fisher
/// distribution on the sphere around `direction` with concentration `kappa` (0 is uniform;
/// 10 keeps about 90% of the views within 37° of `direction`), in-plane angles uniform.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PreferredOrientation {
    /// The favoured viewing direction in the map frame (need not be unit length). The viewing
    /// direction of a pose `A` is `Aᵀ·ẑ`, the map direction that is projected onto the image
    /// centre.
    pub direction: [f64; 3],
    pub kappa: f64,
}

/// Settings of a simulation (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimulateConfig {
    /// Box size in pixels.
    pub box_px: usize,
    /// Pixel size in Å.
    pub apix: f64,
    /// Number of particles.
    pub count: usize,
    /// Signal-to-noise ratio as defined in the module docs; `f64::INFINITY` for no noise.
    pub snr: f64,
    /// Defocus range in µm (uniform; positive is underfocus).
    pub defocus_min_um: f64,
    pub defocus_max_um: f64,
    /// Largest astigmatism `ΔfU − ΔfV` in Å (uniform in `[0, max]`), at a uniform angle.
    pub astigmatism_max_a: f64,
    /// Largest origin offset in pixels (uniform over the disc).
    pub max_shift_px: f64,
    pub seed: u64,
    pub voltage_kv: f64,
    pub cs_mm: f64,
    pub amp_contrast: f64,
    /// CTF envelope B-factor written as `rlnCtfBfactor` and applied to the images (Å²).
    pub ctf_bfactor_a2: f64,
    /// Envelope B-factor (Å²) multiplied into every image as `exp(−B s²/4)` and recorded
    /// nowhere but `meta.json` (see the module docs).
    pub envelope_bfactor_a2: f64,
    /// Added to every atom's B-factor (Å²). Atomic models only.
    pub bfactor_a2: f64,
    /// Replaces every atom's B-factor before `bfactor_a2` is added (Å²). Atomic models only.
    pub set_bfactor_a2: Option<f64>,
    /// Standard deviation of the anti-aliasing Gaussian every atom is widened by, in pixels
    /// (0 disables). Atomic models only.
    pub antialias_sigma_px: f64,
    /// Origin of the atomic model in the box.
    #[serde(serialize_with = "centering_name")]
    pub centering: Centering,
    pub preferred_orientation: Option<PreferredOrientation>,
    /// Also write `clean.mrcs`.
    pub write_clean: bool,
    /// Write the stacks as float16 (MRC mode 12) instead of float32 (mode 2).
    pub float16: bool,
    /// Samples per voxel along the ray for map projection.
    pub oversample: usize,
    /// Point group of the particle (RELION's name, [`cryosplat_core::symmetry`]); see
    /// [Symmetric particles](self#symmetric-particles).
    pub sym: String,
    /// Shift in Å of the centred atomic model before its symmetry copies are placed (the
    /// asymmetric unit's offset from the symmetry axes). Atomic models only.
    pub sym_offset_a: [f64; 3],
    /// RMS angle in degrees of the rotation error recorded in `particles.star` (see
    /// [Recorded errors](self#recorded-errors)); 0 records the true rotations.
    pub pose_error_deg: f64,
    /// RMS per axis in pixels of the origin error recorded in `particles.star`.
    pub shift_error_px: f64,
    /// RMS in Å of the defocus error (one offset added to U and V) recorded in
    /// `particles.star`.
    pub defocus_error_a: f64,
}

fn centering_name<S: serde::Serializer>(c: &Centering, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match c {
        Centering::CentreOfMass => "centre-of-mass",
        Centering::BoundingBox => "bounding-box",
        Centering::None => "none",
    })
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            box_px: 128,
            apix: 1.5,
            count: 1000,
            snr: 0.1,
            defocus_min_um: 1.0,
            defocus_max_um: 2.5,
            astigmatism_max_a: 300.0,
            max_shift_px: 0.0,
            seed: 0,
            voltage_kv: 300.0,
            cs_mm: 2.7,
            amp_contrast: 0.1,
            ctf_bfactor_a2: 0.0,
            envelope_bfactor_a2: 0.0,
            bfactor_a2: 0.0,
            set_bfactor_a2: None,
            antialias_sigma_px: 0.5,
            centering: Centering::CentreOfMass,
            preferred_orientation: None,
            write_clean: false,
            float16: false,
            oversample: 1,
            sym: "C1".into(),
            sym_offset_a: [0.0; 3],
            pose_error_deg: 0.0,
            shift_error_px: 0.0,
            defocus_error_a: 0.0,
        }
    }
}

/// Something wrong with a simulation's settings, input or output.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("atomic model: {0}")]
    Atoms(#[from] PotentialError),
    #[error(transparent)]
    Format(#[from] FormatError),
}

fn io_err(path: &Path, e: std::io::Error) -> SimulateError {
    SimulateError::Format(FormatError::io(path, e))
}

/// One particle's drawn parameters, rounded to the precision written to the STAR file so that
/// the images are exactly those the metadata describe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParticleParams {
    pub rot_deg: f64,
    pub tilt_deg: f64,
    pub psi_deg: f64,
    /// RELION's `A` for these angles.
    pub rot: Mat3,
    /// Origin offset in Å (`rlnOriginXAngst`, `rlnOriginYAngst`).
    pub origin_a: [f64; 2],
    pub ctf: CtfParams,
    /// Half set, 1 or 2.
    pub subset: u8,
}

/// Round to the 6 decimals written to the STAR file.
fn r6(x: f64) -> f64 {
    let r = (x * 1e6).round() / 1e6;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// A viewing direction (unit vector) drawn from the von Mises–Fisher distribution around
/// the unit vector `mu` with concentration `kappa` (uniform for `kappa = 0`).
fn von_mises_fisher(mu: [f64; 3], kappa: f64, rng: &mut Rng) -> [f64; 3] {
    let u = 1.0 - rng.uniform(); // (0, 1]
    let w = if kappa > 1e-9 { 1.0 + (u + (1.0 - u) * (-2.0 * kappa).exp()).ln() / kappa } else { 2.0 * u - 1.0 };
    let w = w.clamp(-1.0, 1.0);
    let phi = 2.0 * PI * rng.uniform();
    let r = (1.0 - w * w).sqrt();
    // An orthonormal frame (e1, e2, mu).
    let helper = if mu[0].abs() < 0.9 { [1.0, 0.0, 0.0] } else { [0.0, 1.0, 0.0] };
    let dot = helper[0] * mu[0] + helper[1] * mu[1] + helper[2] * mu[2];
    let mut e1 = [helper[0] - dot * mu[0], helper[1] - dot * mu[1], helper[2] - dot * mu[2]];
    let n = (e1[0] * e1[0] + e1[1] * e1[1] + e1[2] * e1[2]).sqrt();
    e1 = [e1[0] / n, e1[1] / n, e1[2] / n];
    let e2 = [mu[1] * e1[2] - mu[2] * e1[1], mu[2] * e1[0] - mu[0] * e1[2], mu[0] * e1[1] - mu[1] * e1[0]];
    let (sp, cp) = phi.sin_cos();
    [0, 1, 2].map(|k| r * cp * e1[k] + r * sp * e2[k] + w * mu[k])
}

/// Draw particle `index`'s parameters from `Rng::stream(seed, index)`: a pose uniform over
/// SO(3) (or around the preferred direction), an origin uniform over the disc of radius
/// `max_shift_px`, a defocus uniform in the range, an astigmatism uniform in
/// `[0, astigmatism_max_a]` at a uniform angle, and a random half set.
pub fn draw_particle(cfg: &SimulateConfig, index: u64) -> ParticleParams {
    let mut rng = Rng::stream(cfg.seed, index);
    let (rot_deg, tilt_deg) = match &cfg.preferred_orientation {
        None => {
            let rot = rng.uniform_range(-180.0, 180.0);
            let tilt = (2.0 * rng.uniform() - 1.0).clamp(-1.0, 1.0).acos().to_degrees();
            (rot, tilt)
        }
        Some(p) => {
            let n = p.direction.iter().map(|v| v * v).sum::<f64>().sqrt();
            let mu = [p.direction[0] / n, p.direction[1] / n, p.direction[2] / n];
            let v = von_mises_fisher(mu, p.kappa, &mut rng);
            (v[1].atan2(v[0]).to_degrees(), v[2].clamp(-1.0, 1.0).acos().to_degrees())
        }
    };
    let psi_deg = rng.uniform_range(-180.0, 180.0);
    let (rot_deg, tilt_deg, psi_deg) = (r6(rot_deg), r6(tilt_deg), r6(psi_deg));
    let radius = cfg.max_shift_px * rng.uniform().sqrt();
    let angle = 2.0 * PI * rng.uniform();
    let origin_a = [r6(radius * angle.cos() * cfg.apix), r6(radius * angle.sin() * cfg.apix)];
    let defocus = rng.uniform_range(cfg.defocus_min_um, cfg.defocus_max_um) * 1e4;
    let astig = rng.uniform() * cfg.astigmatism_max_a;
    let astig_angle = rng.uniform_range(-180.0, 180.0);
    let subset = 1 + rng.below(2) as u8;
    ParticleParams {
        rot_deg,
        tilt_deg,
        psi_deg,
        rot: euler_to_matrix(rot_deg, tilt_deg, psi_deg),
        origin_a,
        ctf: CtfParams {
            voltage_kv: cfg.voltage_kv,
            cs_mm: cfg.cs_mm,
            amp_contrast: cfg.amp_contrast,
            defocus_u_a: r6(defocus + 0.5 * astig),
            defocus_v_a: r6(defocus - 0.5 * astig),
            defocus_angle_deg: r6(astig_angle),
            phase_shift_deg: 0.0,
            bfactor_a2: cfg.ctf_bfactor_a2,
            scale: 1.0,
        },
        subset,
    }
}

/// Salt of the seed of the recorded errors' streams (see [Recorded errors](self#recorded-errors)).
const ERROR_SALT: u64 = 0x7265_636F_7264_6564;

/// Whether `cfg` asks for recorded errors.
pub fn has_recorded_errors(cfg: &SimulateConfig) -> bool {
    cfg.pose_error_deg != 0.0 || cfg.shift_error_px != 0.0 || cfg.defocus_error_a != 0.0
}

/// What `particles.star` records for particle `index` whose true parameters are `truth`:
/// `truth` itself without recorded errors, perturbed values otherwise (see
/// [Recorded errors](self#recorded-errors)). Every recorded number is rounded to the STAR
/// file's six decimals, and `rot` is the matrix of the recorded (rounded) angles.
pub fn record_errors(cfg: &SimulateConfig, truth: &ParticleParams, index: u64) -> ParticleParams {
    if !has_recorded_errors(cfg) {
        return *truth;
    }
    let mut rng = Rng::stream(cfg.seed ^ ERROR_SALT, index);
    let n: [f64; 6] = std::array::from_fn(|_| rng.normal());
    let mut p = *truth;
    if cfg.pose_error_deg != 0.0 {
        let s = cfg.pose_error_deg.to_radians() / 3f64.sqrt();
        let e = [s * n[0], s * n[1], s * n[2]];
        let (rot, tilt, psi) = matrix_to_euler(&mat_mul(&rotvec_to_rodrigues(e), &truth.rot));
        (p.rot_deg, p.tilt_deg, p.psi_deg) = (r6(rot), r6(tilt), r6(psi));
        p.rot = euler_to_matrix(p.rot_deg, p.tilt_deg, p.psi_deg);
    }
    if cfg.shift_error_px != 0.0 {
        let s = cfg.shift_error_px * cfg.apix;
        p.origin_a = [r6(truth.origin_a[0] + s * n[3]), r6(truth.origin_a[1] + s * n[4])];
    }
    if cfg.defocus_error_a != 0.0 {
        let dz = cfg.defocus_error_a * n[5];
        p.ctf.defocus_u_a = r6(truth.ctf.defocus_u_a + dz);
        p.ctf.defocus_v_a = r6(truth.ctf.defocus_v_a + dz);
    }
    p
}

/// The rms differences between recorded and true parameters: rotation angle (°), origin per
/// axis (px) and mean defocus (Å).
fn rms_errors(truth: &[ParticleParams], recorded: &[ParticleParams], apix: f64) -> (f64, f64, f64) {
    let n = truth.len().max(1) as f64;
    let (mut a2, mut o2, mut z2) = (0.0, 0.0, 0.0);
    for (t, r) in truth.iter().zip(recorded) {
        a2 += angle_between_deg(&t.rot, &r.rot).powi(2);
        o2 += ((r.origin_a[0] - t.origin_a[0]).powi(2) + (r.origin_a[1] - t.origin_a[1]).powi(2)) / (apix * apix);
        let dz = 0.5 * ((r.ctf.defocus_u_a - t.ctf.defocus_u_a) + (r.ctf.defocus_v_a - t.ctf.defocus_v_a));
        z2 += dz * dz;
    }
    ((a2 / n).sqrt(), (o2 / (2.0 * n)).sqrt(), (z2 / n).sqrt())
}

/// The CTF step of image formation for one box and pixel size: `real(IFFT(CTF·FFT(image)))`
/// with the CTF of [`cryosplat_core::ctf`] (the one reconstruction uses), filled per particle on
/// a [`CtfGrid`] and applied by a [`HalfPlaneFilter`]. The CTF values are those of
/// [`CtfGrid::fill_rfft`] (f32); the few frequencies the half-plane layout does not hold (the
/// corner `(+D/2, +D/2)` for even boxes, the row `ky = +D/2` for odd ones) are evaluated
/// directly and rounded the same way.
pub struct CtfFilter {
    grid: CtfGrid,
    filter: HalfPlaneFilter,
}

/// Per-thread buffers for [`CtfFilter::apply`].
pub struct CtfScratch {
    filter: FilterScratch,
    values: Vec<f32>,
}

impl CtfFilter {
    /// The filter for `d×d` images of `apix` Å.
    pub fn new(d: usize, apix: f64) -> Self {
        CtfFilter { grid: CtfGrid::new(d, apix), filter: HalfPlaneFilter::new(d) }
    }

    /// Scratch buffers for this filter (make one per thread).
    pub fn scratch(&self) -> CtfScratch {
        CtfScratch { filter: self.filter.scratch(), values: vec![0.0; self.grid.len()] }
    }

    /// Apply `ctf` to the centred `d×d` image `img` (f64, in place).
    pub fn apply(&self, img: &mut [f64], ctf: &CtfParams, s: &mut CtfScratch) {
        self.grid.fill_rfft(ctf, &mut s.values);
        let d = self.grid.d() as i64;
        let half = d / 2;
        let w = half + 1;
        let step = 1.0 / (d as f64 * self.grid.apix());
        let values = &s.values;
        let h = |kx: i64, ky: i64| {
            // The CTF is even: look up (kx, ky) or (−kx, −ky), whichever has kx ≥ 0. Grid row
            // r holds ky = r for r < D/2 and r − D otherwise.
            let (kx, ky) = if kx < 0 { (-kx, -ky) } else { (kx, ky) };
            if kx <= half && (half - d..half).contains(&ky) {
                let r = if ky >= 0 { ky } else { ky + d };
                values[(r * w + kx) as usize] as f64
            } else {
                ctf.eval(kx as f64 * step, ky as f64 * step) as f32 as f64
            }
        };
        self.filter.apply_even(img, h, &mut s.filter);
    }
}

/// What a run produced.
#[derive(Clone, Debug, Serialize)]
pub struct SimulateSummary {
    pub count: usize,
    /// Mean over particles of the clean images' pixel variance.
    pub signal_variance: f64,
    /// Standard deviation of the added noise.
    pub noise_sigma: f64,
    /// Conditions worth a warning (unknown elements, a model larger than the box, …).
    pub warnings: Vec<String>,
    pub outputs: Vec<PathBuf>,
}

/// The prepared scene: either Gaussians (atoms) or a map, on the output grid.
enum Scene {
    Gaussians(Vec<IsoGaussian>),
    Map(Vec<f32>),
}

fn validate(cfg: &SimulateConfig) -> Result<(), SimulateError> {
    let bad = |m: String| Err(SimulateError::Config(m));
    if cfg.box_px < 8 || cfg.box_px > 2048 {
        return bad(format!("box of {} px: expected 8 to 2048", cfg.box_px));
    }
    if !(cfg.apix.is_finite() && cfg.apix > 0.0) {
        return bad(format!("pixel size {} Å: expected a positive number", cfg.apix));
    }
    if cfg.count == 0 {
        return bad("particle count is 0".into());
    }
    if cfg.snr.is_nan() || cfg.snr <= 0.0 {
        return bad(format!("SNR {}: expected a positive number (inf for no noise)", cfg.snr));
    }
    if !(cfg.defocus_min_um.is_finite() && cfg.defocus_max_um.is_finite() && cfg.defocus_min_um <= cfg.defocus_max_um) {
        return bad(format!("defocus range {}–{} µm: expected MIN ≤ MAX", cfg.defocus_min_um, cfg.defocus_max_um));
    }
    for (name, v) in [
        ("astigmatism", cfg.astigmatism_max_a),
        ("max shift", cfg.max_shift_px),
        ("voltage", cfg.voltage_kv),
        ("Cs", cfg.cs_mm),
        ("anti-aliasing sigma", cfg.antialias_sigma_px),
        ("pose error", cfg.pose_error_deg),
        ("shift error", cfg.shift_error_px),
        ("defocus error", cfg.defocus_error_a),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return bad(format!("{name} {v}: expected a finite number ≥ 0"));
        }
    }
    if cfg.voltage_kv <= 0.0 {
        return bad("voltage must be positive".into());
    }
    if !(0.0..1.0).contains(&cfg.amp_contrast) {
        return bad(format!("amplitude contrast {}: expected 0 ≤ Q0 < 1", cfg.amp_contrast));
    }
    if !cfg.ctf_bfactor_a2.is_finite() || !cfg.bfactor_a2.is_finite() {
        return bad("B-factors must be finite".into());
    }
    if !(cfg.envelope_bfactor_a2.is_finite() && cfg.envelope_bfactor_a2 >= 0.0) {
        return bad(format!("envelope B-factor {} Å²: expected a finite number ≥ 0 (a fall-off)", cfg.envelope_bfactor_a2));
    }
    let sample = CtfParams {
        voltage_kv: cfg.voltage_kv,
        cs_mm: cfg.cs_mm,
        amp_contrast: cfg.amp_contrast,
        defocus_u_a: cfg.defocus_max_um * 1e4,
        defocus_v_a: cfg.defocus_min_um * 1e4,
        defocus_angle_deg: 0.0,
        phase_shift_deg: 0.0,
        bfactor_a2: cfg.ctf_bfactor_a2,
        scale: 1.0,
    };
    if let Err(e) = sample.validate() {
        return bad(e.to_string());
    }
    if let Err(e) = PointGroup::parse(&cfg.sym) {
        return bad(format!("--sym: {e}"));
    }
    if !cfg.sym_offset_a.iter().all(|v| v.is_finite()) {
        return bad(format!("symmetry offset {:?} Å: expected finite numbers", cfg.sym_offset_a));
    }
    if cfg.oversample == 0 || cfg.oversample > 16 {
        return bad(format!("oversampling {}: expected 1 to 16", cfg.oversample));
    }
    if cfg.max_shift_px > cfg.box_px as f64 / 4.0 {
        return bad(format!("max shift {} px exceeds a quarter of the box", cfg.max_shift_px));
    }
    if let Some(p) = &cfg.preferred_orientation {
        let n = p.direction.iter().map(|v| v * v).sum::<f64>();
        if !(n.is_finite() && n > 0.0 && p.kappa.is_finite() && p.kappa >= 0.0) {
            return bad("preferred orientation needs a non-zero direction and a finite κ ≥ 0".into());
        }
    }
    Ok(())
}

/// Resample a cubic map (`d_in³`, `apix_in`) onto the `d³` grid of `apix` Å by trilinear
/// interpolation about the grids' common origin, keeping the map scale (values × `apix/apix_in`,
/// so that column sums stay projection values).
pub fn resample_map(data: &[f32], d_in: usize, apix_in: f64, d: usize, apix: f64) -> Vec<f32> {
    let c_in = (d_in / 2) as f64;
    let c = (d / 2) as f64;
    let ratio = apix / apix_in;
    let mut out = vec![0.0f32; d * d * d];
    out.par_chunks_mut(d * d).enumerate().for_each(|(k, plane)| {
        let z = (k as f64 - c) * ratio + c_in;
        for i in 0..d {
            let y = (i as f64 - c) * ratio + c_in;
            for j in 0..d {
                let x = (j as f64 - c) * ratio + c_in;
                plane[i * d + j] = (trilinear(data, d_in, x, y, z) * ratio) as f32;
            }
        }
    });
    out
}

/// A prepared source: the scene, the ground-truth map, the warnings so far and what
/// `meta.json` says of the source.
struct Prepared {
    scene: Scene,
    gt: Vec<f32>,
    warnings: Vec<String>,
    meta: JsonMap,
}

/// Particles per chunk: the unit of writing; each chunk is computed in parallel.
const CHUNK: usize = 128;

/// The assembly: the unit's Gaussians shifted by `offset_a` and copied by every operator
/// `R_k` about the box centre (means `R_k·(μ + offset)`, covariances `R_k·Σ·R_kᵀ`), copy by
/// copy in the group's operator order.
fn symmetry_copies(unit: &[GaussianA], group: &PointGroup, offset_a: [f64; 3]) -> Vec<GaussianA> {
    let mut out = Vec::with_capacity(unit.len() * group.order());
    for r in group.operators() {
        for g in unit {
            let m = [g.mean_a[0] + offset_a[0], g.mean_a[1] + offset_a[1], g.mean_a[2] + offset_a[2]];
            let mut c = *g;
            c.mean_a = mat_vec(r, m);
            c.cov_a2 = mat_mul(&mat_mul(r, &g.cov_a2), &transpose(r));
            out.push(c);
        }
    }
    out
}

/// The scene and ground-truth map of an atomic model (see the module docs).
fn prepare_atoms(atoms: &[Atom], label: &str, cfg: &SimulateConfig) -> Result<Prepared, SimulateError> {
    let (d, apix) = (cfg.box_px, cfg.apix);
    let (mut warnings, mut meta) = (Vec::new(), JsonMap::new());
    let opts = PotentialOptions { extra_b_a2: cfg.bfactor_a2, set_b_a2: cfg.set_bfactor_a2, centering: cfg.centering };
    let pot = atomic_potential(atoms, &opts)?;
    for (el, n) in &pot.unknown_elements {
        warnings.push(format!("{n} atoms of unknown element '{el}' modelled as carbon"));
    }
    let aa_var = (cfg.antialias_sigma_px * apix).powi(2);
    let unit: Vec<GaussianA> = pot
        .gaussians
        .iter()
        .map(|g| {
            let mut g = *g;
            for k in 0..3 {
                g.cov_a2[k][k] += aa_var;
            }
            g
        })
        .collect();
    let group = PointGroup::parse(&cfg.sym).map_err(|e| SimulateError::Config(format!("--sym: {e}")))?;
    let gaussians =
        if group.is_trivial() && cfg.sym_offset_a == [0.0; 3] { unit } else { symmetry_copies(&unit, &group, cfg.sym_offset_a) };
    // The assembly's reach from the box centre (the model's own without symmetry or offset).
    let radius_a = if group.is_trivial() && cfg.sym_offset_a == [0.0; 3] {
        pot.radius_a
    } else {
        gaussians.iter().map(|g| g.mean_a.iter().map(|v| v * v).sum::<f64>().sqrt()).fold(0.0, f64::max)
    };
    let half_box_a = (d / 2) as f64 * apix;
    if radius_a > half_box_a {
        warnings.push(format!(
            "the model reaches {radius_a:.1} Å from its centre but the box half-width is {half_box_a:.1} Å: atoms outside the box are cut"
        ));
    }
    let iso: Vec<IsoGaussian> =
        gaussians.iter().map(|g| IsoGaussian::from_gaussian_a(g).expect("atomic Gaussians are isotropic")).collect();
    let gt = voxelize_a(&gaussians, d, apix, DEFAULT_CUTOFF_SIGMA);
    meta.insert("kind".into(), "atomic model".into());
    meta.insert("path".into(), label.into());
    meta.insert("atoms".into(), atoms.len().into());
    meta.insert("gaussians".into(), iso.len().into());
    meta.insert("model_centre_a".into(), serde_json::json!(pot.centre_a));
    meta.insert("model_radius_a".into(), pot.radius_a.into());
    meta.insert("symmetry".into(), group.name().into());
    meta.insert("symmetry_order".into(), group.order().into());
    meta.insert("symmetry_offset_a".into(), serde_json::json!(cfg.sym_offset_a));
    meta.insert(
        "unknown_elements".into(),
        serde_json::json!(pot.unknown_elements.iter().map(|(e, n)| serde_json::json!({"element": e, "count": n})).collect::<Vec<_>>()),
    );
    meta.insert(
        "units".into(),
        "images and map in V·Å (projected electrostatic potential, 47.88 V·Å² × Peng et al. 1996 scattering factors)".into(),
    );
    Ok(Prepared { scene: Scene::Gaussians(iso), gt, warnings, meta })
}

/// The scene and ground-truth map of a map input: the map itself, resampled to the output
/// grid if needed.
fn prepare_map(data: &[f32], d_in: usize, apix_in: f64, label: &str, cfg: &SimulateConfig) -> Result<Prepared, SimulateError> {
    let (d, apix) = (cfg.box_px, cfg.apix);
    let (mut warnings, mut meta) = (Vec::new(), JsonMap::new());
    if data.len() != d_in * d_in * d_in {
        return Err(SimulateError::Config(format!("map {label}: {} values for a {d_in}³ grid", data.len())));
    }
    if let Some(p) = data.iter().position(|v| !v.is_finite()) {
        return Err(SimulateError::Config(format!("map {label}: non-finite value at voxel {p}")));
    }
    if !(apix_in.is_finite() && apix_in > 0.0) {
        return Err(SimulateError::Config(format!("map {label}: pixel size {apix_in} Å")));
    }
    if cfg.bfactor_a2 != 0.0 || cfg.set_bfactor_a2.is_some() {
        return Err(SimulateError::Config("B-factors for atoms cannot be applied to a map input".into()));
    }
    if cfg.sym_offset_a != [0.0; 3] {
        return Err(SimulateError::Config("a symmetry offset applies to atomic models, not to a map input".into()));
    }
    let group = PointGroup::parse(&cfg.sym).map_err(|e| SimulateError::Config(format!("--sym: {e}")))?;
    let map = if d_in == d && (apix_in - apix).abs() <= 1e-6 * apix {
        data.to_vec()
    } else {
        warnings.push(format!("map resampled from {d_in}³ at {apix_in} Å to {d}³ at {apix} Å (trilinear)"));
        resample_map(data, d_in, apix_in, d, apix)
    };
    let map = if group.is_trivial() { map } else { symmetrize_map(&map, d, &group) };
    meta.insert("kind".into(), "map".into());
    meta.insert("path".into(), label.into());
    meta.insert("map_box_px".into(), d_in.into());
    meta.insert("map_apix".into(), apix_in.into());
    meta.insert("symmetry".into(), group.name().into());
    meta.insert("symmetry_order".into(), group.order().into());
    meta.insert("units".into(), "images in map units × voxels (column sums of the map)".into());
    Ok(Prepared { scene: Scene::Map(map.clone()), gt: map, warnings, meta })
}

/// Per-thread scratch of [`render_clean`].
struct RenderScratch {
    splat: SplatScratch,
    ctf: CtfScratch,
    img: Vec<f64>,
    proj: Vec<f32>,
}

impl RenderScratch {
    fn new(ctf_filter: &CtfFilter, npix: usize) -> Self {
        RenderScratch { splat: SplatScratch::default(), ctf: ctf_filter.scratch(), img: vec![0.0; npix], proj: vec![0.0; npix] }
    }
}

/// Particle `p`'s clean CTF-modulated image into `out` (`D×D`); returns its pixel variance.
/// Deterministic: the same particle gives the same bits on every call and thread.
fn render_clean(
    scene: &Scene,
    p: &ParticleParams,
    cfg: &SimulateConfig,
    ctf_filter: &CtfFilter,
    s: &mut RenderScratch,
    out: &mut [f32],
) -> f64 {
    let (d, apix) = (cfg.box_px, cfg.apix);
    let npix = d * d;
    let img = &mut s.img;
    match scene {
        Scene::Gaussians(gs) => {
            img.iter_mut().for_each(|v| *v = 0.0);
            splat_isotropic(gs, &p.rot, p.origin_a, d, apix, DEFAULT_CUTOFF_SIGMA, &mut s.splat, img);
        }
        Scene::Map(map) => {
            project_volume(map, d, &p.rot, [p.origin_a[0] / apix, p.origin_a[1] / apix], cfg.oversample, &mut s.proj);
            for (a, &b) in img.iter_mut().zip(s.proj.iter()) {
                *a = b as f64;
            }
        }
    }
    // The envelope joins the CTF's B-factor for imaging only; the STAR keeps p.ctf.
    let imaged = CtfParams { bfactor_a2: p.ctf.bfactor_a2 + cfg.envelope_bfactor_a2, ..p.ctf };
    ctf_filter.apply(img, &imaged, &mut s.ctf);
    let mean = img.iter().sum::<f64>() / npix as f64;
    for (o, &v) in out.iter_mut().zip(img.iter()) {
        *o = v as f32;
    }
    img.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / npix as f64
}

/// The stacks' data mode.
fn stack_options(cfg: &SimulateConfig, label: &str) -> WriteOptions {
    WriteOptions { mode: if cfg.float16 { WriteMode::Float16 } else { WriteMode::Float32 }, ..write_options(label) }
}

/// Pass 1: every image's clean pixel variance (the SNR's denominator needs all of them before
/// any noise is drawn); the clean images are written to `clean_path` if one is given.
fn clean_pass(
    scene: &Scene,
    params: &[ParticleParams],
    cfg: &SimulateConfig,
    clean_path: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Vec<f64>, SimulateError> {
    let (d, apix) = (cfg.box_px, cfg.apix);
    let npix = d * d;
    let ctf_filter = CtfFilter::new(d, apix);
    let mut variances = vec![0.0f64; cfg.count];
    progress.start("projecting", cfg.count as u64);
    let mut writer = match clean_path {
        Some(path) => Some(StackWriter::create(path, d, d, apix, stack_options(cfg, "clean CTF-modulated images"))?),
        None => None,
    };
    let mut chunk = vec![0.0f32; CHUNK * npix];
    for start in (0..cfg.count).step_by(CHUNK) {
        let n = CHUNK.min(cfg.count - start);
        chunk[..n * npix].par_chunks_mut(npix).zip(variances[start..start + n].par_iter_mut()).enumerate().for_each_init(
            || RenderScratch::new(&ctf_filter, npix),
            |s, (k, (out, var))| *var = render_clean(scene, &params[start + k], cfg, &ctf_filter, s, out),
        );
        if let Some(w) = writer.as_mut() {
            for img in chunk[..n * npix].chunks_exact(npix) {
                w.push(img)?;
            }
        }
        progress.inc(n as u64);
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    progress.finish();
    Ok(variances)
}

/// Pass 2: each clean image made again (no copy of the clean stack on disk, so a set needs
/// only its own size in free space) plus white Gaussian noise of `noise_sigma`, written to
/// `particles_path` (progress counted in particles); returns the statistics of the noisy
/// images as stored.
fn noise_pass(
    scene: &Scene,
    params: &[ParticleParams],
    cfg: &SimulateConfig,
    noise_sigma: f64,
    particles_path: &Path,
    progress: &dyn Progress,
) -> Result<Stats, SimulateError> {
    let (d, apix) = (cfg.box_px, cfg.apix);
    let npix = d * d;
    let ctf_filter = CtfFilter::new(d, apix);
    let noise_seed = Rng::new(cfg.seed ^ 0x6E6F_6973_655F_7365).next_u64();
    let mut chunk = vec![0.0f32; CHUNK * npix];
    let mut writer = StackWriter::create(particles_path, d, d, apix, stack_options(cfg, "particles"))?;
    for start in (0..cfg.count).step_by(CHUNK) {
        let n = CHUNK.min(cfg.count - start);
        chunk[..n * npix].par_chunks_mut(npix).enumerate().for_each_init(
            || RenderScratch::new(&ctf_filter, npix),
            |s, (k, out)| {
                render_clean(scene, &params[start + k], cfg, &ctf_filter, s, out);
                if noise_sigma > 0.0 {
                    let mut rng = Rng::stream(noise_seed, (start + k) as u64);
                    for o in out.iter_mut() {
                        *o = (*o as f64 + noise_sigma * rng.normal()) as f32;
                    }
                }
            },
        );
        for img in chunk[..n * npix].chunks_exact(npix) {
            writer.push(img)?;
        }
        progress.inc(n as u64);
    }
    Ok(writer.finish()?)
}

/// Run a simulation into `out_dir` (created if missing). See the module docs.
pub fn simulate(source: &Source, cfg: &SimulateConfig, out_dir: &Path, progress: &dyn Progress) -> Result<SimulateSummary, SimulateError> {
    validate(cfg)?;
    std::fs::create_dir_all(out_dir).map_err(|e| io_err(out_dir, e))?;
    let started = std::time::Instant::now();
    let d = cfg.box_px;
    let apix = cfg.apix;

    // The scene and the ground-truth map.
    progress.start("preparing", 1);
    let Prepared { scene, gt, mut warnings, meta: source_meta } = match source {
        Source::Atoms { atoms, label } => prepare_atoms(atoms, label, cfg)?,
        Source::Map { data, d: d_in, apix: apix_in, label } => prepare_map(data, *d_in, *apix_in, label, cfg)?,
    };
    progress.inc(1);
    progress.finish();

    let params: Vec<ParticleParams> = (0..cfg.count as u64).into_par_iter().map(|i| draw_particle(cfg, i)).collect();
    let clean_path = out_dir.join("clean.mrcs");
    let variances = clean_pass(&scene, &params, cfg, cfg.write_clean.then_some(clean_path.as_path()), progress)?;
    let signal_variance = variances.iter().sum::<f64>() / cfg.count as f64;
    let noise_sigma = if cfg.snr.is_infinite() { 0.0 } else { (signal_variance / cfg.snr).sqrt() };
    if signal_variance.is_nan() || signal_variance <= 0.0 {
        warnings.push("the clean images are constant (empty scene?): the SNR is undefined".into());
    }
    let particles_path = out_dir.join("particles.mrcs");
    progress.start("adding noise", cfg.count as u64);
    let stats = noise_pass(&scene, &params, cfg, noise_sigma, &particles_path, progress)?;
    progress.finish();

    let gt_path = out_dir.join("gt.mrc");
    write_volume(&gt_path, &gt, [d, d, d], apix, &write_options("ground truth"))?;
    let star_path = out_dir.join("particles.star");
    let recorded: Vec<ParticleParams> = params.iter().enumerate().map(|(i, p)| record_errors(cfg, p, i as u64)).collect();
    write_star(&star_path, cfg, &recorded, "particles.mrcs")?;
    let mut outputs = vec![particles_path, star_path, gt_path];
    // Without errors the records are the truth (the angle between a matrix and itself would
    // show only rounding).
    let (rms_angle_deg, rms_shift_px, rms_defocus_a) =
        if has_recorded_errors(cfg) { rms_errors(&params, &recorded, apix) } else { (0.0, 0.0, 0.0) };
    if has_recorded_errors(cfg) {
        let true_path = out_dir.join("particles_true.star");
        write_star(&true_path, cfg, &params, "particles.mrcs")?;
        outputs.push(true_path);
    }
    if cfg.write_clean {
        outputs.push(clean_path);
    }
    let meta_path = out_dir.join("meta.json");
    outputs.push(meta_path.clone());
    let meta = serde_json::json!({
        "program": "cryosplat simulate",
        "version": env!("CARGO_PKG_VERSION"),
        "seed": cfg.seed,
        "settings": cfg,
        "source": source_meta,
        "count": cfg.count,
        "box_px": d,
        "apix": apix,
        "snr": if cfg.snr.is_finite() { serde_json::json!(cfg.snr) } else { serde_json::json!("inf") },
        "snr_definition": "SNR = mean over particles of the variance of the clean CTF-modulated image over the D×D box (about its mean), divided by the variance of the added white Gaussian noise",
        "signal_variance": signal_variance,
        "noise_sigma": noise_sigma,
        "envelope_bfactor_a2": cfg.envelope_bfactor_a2,
        "envelope": "exp(-B s^2/4) with B = envelope_bfactor_a2, multiplied into every image with the CTF; not recorded in particles.star (rlnCtfBfactor is the CTF's own B-factor); gt.mrc is not blurred",
        "image_formation": "exact analytic projection of the potential's Gaussians (atomic model) or trilinear ray sums of the map, sampled at pixel points with the origin offset applied (image moved by -origin), then real(IFFT(CTF·FFT)) with RELION's CTF (CTF(0) = +Q0, white particles), then noise",
        "gt_map_scale": "summing gt.mrc along z gives the clean projection before CTF (map value = density × apix)",
        "defocus_convention": "rlnDefocusU = defocus + astigmatism/2, rlnDefocusV = defocus - astigmatism/2; defocus uniform in the range, astigmatism uniform in [0, max], angle uniform in [-180, 180)",
        "recorded_errors": {
            "pose_error_deg": cfg.pose_error_deg,
            "shift_error_px": cfg.shift_error_px,
            "defocus_error_a": cfg.defocus_error_a,
            "definition": "particles.star records A_rec = R(e)·A with e a rotation vector of three independent N(0, (pose_error_deg/√3)²) components (rms angle pose_error_deg), origins plus N(0, (shift_error_px·apix)²) Å per axis, and one N(0, defocus_error_a²) Å offset added to defocus U and V; the images use the true values, written to particles_true.star",
            "rms_angle_deg": rms_angle_deg,
            "rms_shift_px_per_axis": rms_shift_px,
            "rms_defocus_a": rms_defocus_a,
            "truth": if has_recorded_errors(cfg) { serde_json::json!("particles_true.star") } else { serde_json::Value::Null },
        },
        "particles_mean": stats.mean,
        "particles_std": stats.std,
        "warnings": warnings,
        "seconds": started.elapsed().as_secs_f64(),
        "outputs": outputs.iter().map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&meta).expect("meta is serialisable");
    write_atomic(&meta_path, |w| w.write_all(text.as_bytes()))?;
    Ok(SimulateSummary { count: cfg.count, signal_variance, noise_sigma, warnings, outputs })
}

/// Header options of the written MRC files.
fn write_options(label: &str) -> WriteOptions {
    WriteOptions { label: format!("cryosplat simulate: {label}"), ..Default::default() }
}

/// Write the RELION 3.1 STAR file of a simulated set (`data_optics`, `data_particles`) with
/// the dataset module's writer: every number with six decimals, the angles as drawn.
fn write_star(path: &Path, cfg: &SimulateConfig, params: &[ParticleParams], stack_name: &str) -> Result<(), SimulateError> {
    let layout = StarLayout {
        apix: cfg.apix,
        box_px: cfg.box_px,
        poses: true,
        ctf: true,
        premultiplied_column: true,
        decimals: StarDecimals::Fixed,
    };
    let optics = StarOptics { name: "opticsGroup1".into(), voltage_kv: cfg.voltage_kv, cs_mm: cfg.cs_mm, amp_contrast: cfg.amp_contrast };
    let digits = params.len().to_string().len().max(6);
    let rows: Vec<StarParticle> = params
        .iter()
        .enumerate()
        .map(|(i, p)| StarParticle {
            image_name: format!("{:0digits$}@{stack_name}", i + 1),
            angles_deg: [p.rot_deg, p.tilt_deg, p.psi_deg],
            origin_a: p.origin_a,
            ctf: p.ctf,
            optics_group: 1,
            random_subset: Some(p.subset),
        })
        .collect();
    write_relion31(path, &layout, &[optics], &rows)?;
    Ok(())
}
