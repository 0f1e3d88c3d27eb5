//! What train's integration tests share: test data paths, small MRC and JSON reading, CTF
//! cases from JSON, rotation comparison, toy atomic models and their true model, a quiet
//! reconstruction, and a Gaussian low-pass of maps. Each test file includes it
//! with `mod common;` and uses a part of it.
#![allow(dead_code)]

use cryosplat_core::ctf::CtfParams;
use cryosplat_core::gaussian::GaussianModel;
use cryosplat_core::pose::Mat3;
use cryosplat_core::potential::{atomic_potential, Atom, Centering, PotentialOptions};
use cryosplat_core::rng::Rng;
use cryosplat_formats::mrc::MrcFile;
use cryosplat_train::dataset::ParticleSet;
use cryosplat_train::output::{Existing, OutputDir};
use cryosplat_train::progress::NoProgress;
use cryosplat_train::reconstruct::{reconstruct, ReconstructConfig, ReconstructError, Session, Summary};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// A file of the repository's `tests/data`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(rel)
}

/// A JSON file.
pub fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The CTF of a case of `tests/data/reference/ctf_cases.json` (keys in the reference's units
/// and spelling).
pub fn ctf_from_json(case: &Value) -> CtfParams {
    let keys = [
        "voltage_kv",
        "cs_mm",
        "amplitude_contrast",
        "defocus_u_A",
        "defocus_v_A",
        "defocus_angle_deg",
        "phase_shift_deg",
        "bfactor_A2",
        "scale",
    ];
    let [voltage_kv, cs_mm, amp_contrast, defocus_u_a, defocus_v_a, defocus_angle_deg, phase_shift_deg, bfactor_a2, scale] =
        keys.map(|k| case[k].as_f64().unwrap_or_else(|| panic!("CTF case without a number for {k}")));
    CtfParams { voltage_kv, cs_mm, amp_contrast, defocus_u_a, defocus_v_a, defocus_angle_deg, phase_shift_deg, bfactor_a2, scale }
}

/// An MRC file read with the project's reader, checking the MRC2014 marks (version, no header
/// warnings, pixel size = cell / grid): `(nx, ny, nz, ispg, data)`.
pub fn read_mrc(path: &Path) -> (usize, usize, usize, i32, Vec<f32>) {
    let f = MrcFile::open(path).unwrap_or_else(|e| panic!("{e}"));
    let h = f.header();
    assert_eq!(h.nversion, 20140, "{}", path.display());
    assert!(h.warnings.is_empty(), "{}: {:?}", path.display(), h.warnings);
    assert!((h.apix.unwrap() - (h.cella[0] as f64 / h.mxyz[0] as f64)).abs() < 1e-6, "{}", path.display());
    (h.nx, h.ny, h.nz, h.ispg, f.read_all().unwrap())
}

/// Whether two matrices agree to `tol` in every element.
pub fn close(a: &Mat3, b: &Mat3, tol: f64) -> bool {
    (0..3).all(|i| (0..3).all(|j| (a[i][j] - b[i][j]).abs() < tol))
}

/// A map's values.
pub fn read_map(p: &Path) -> Vec<f32> {
    MrcFile::open(p).unwrap().read_all().unwrap()
}

/// A reconstruction of `set` into `out` (resumed from its checkpoint with `resume`) without
/// progress display or a caller's hook.
pub fn rec(set: &ParticleSet, cfg: &ReconstructConfig, out: &Path, resume: bool) -> Result<Summary, ReconstructError> {
    let stop = AtomicBool::new(false);
    let session = Session { resume, settings: serde_json::json!({}), progress: &NoProgress, stop: &stop };
    let existing = Existing::from_flags(resume, false);
    reconstruct(set, cfg, &mut OutputDir::open(out, existing, "reconstruct")?, &session, &mut |_| Ok(vec![]))
}

/// `n` carbon atoms (B `b_factor_a2`) drawn from a normal distribution around the origin with
/// standard deviations `spread_a` (Å) along x, y and z.
pub fn carbon_blob(n: usize, spread_a: [f64; 3], b_factor_a2: f64, seed: u64) -> Vec<Atom> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| {
            let p = [r.normal() * spread_a[0], r.normal() * spread_a[1], r.normal() * spread_a[2]];
            Atom { element: "C".into(), pos_a: p, b_factor_a2, occupancy: 1.0 }
        })
        .collect()
}

/// A compact random atomic model of `n` atoms around the origin (C, N, O, S; B 20–60 Å²).
pub fn toy_atoms(n: usize, seed: u64) -> Vec<Atom> {
    let mut rng = Rng::new(seed);
    let els = ["C", "N", "O", "S", "C", "C"];
    (0..n)
        .map(|i| Atom {
            element: els[i % els.len()].to_string(),
            pos_a: [rng.normal() * 6.0, rng.normal() * 6.0, rng.normal() * 6.0],
            b_factor_a2: rng.uniform_range(20.0, 60.0),
            occupancy: 1.0,
        })
        .collect()
}

/// The model `simulate` images `atoms` with: their potential's Gaussians (no B added or set,
/// placed by `centering`) widened by an anti-aliasing Gaussian of `antialias_sigma_px`, for a
/// box of `d` pixels of `apix` Å.
pub fn true_model(atoms: &[Atom], centering: Centering, antialias_sigma_px: f64, d: usize, apix: f64) -> GaussianModel {
    let opts = PotentialOptions { extra_b_a2: 0.0, set_b_a2: None, centering };
    let mut gaussians = atomic_potential(atoms, &opts).unwrap().gaussians;
    let aa = (antialias_sigma_px * apix).powi(2);
    for g in gaussians.iter_mut() {
        for k in 0..3 {
            g.cov_a2[k][k] += aa;
        }
    }
    GaussianModel::from_angstrom(&gaussians, d, apix)
}

/// Gaussian low-pass of standard deviation `sigma_px` (pixels), applied in Fourier space:
/// factor `exp(−2π²σ²|k|²)`, `k` in cycles per pixel (the same filter as the reference script's).
pub fn gauss_lowpass(v: &[f32], d: usize, sigma_px: f64) -> Vec<f32> {
    let f = cryosplat_core::fourier::Fft3::new(d);
    let mut spec = f.forward(v);
    let w = d / 2 + 1;
    let c = -2.0 * (std::f64::consts::PI * sigma_px / d as f64).powi(2);
    for p in 0..d {
        let kz = cryosplat_core::fourier::freq_index(p, d) as f64;
        for r in 0..d {
            let ky = cryosplat_core::fourier::freq_index(r, d) as f64;
            for x in 0..w {
                spec[(p * d + r) * w + x] *= (c * (kz * kz + ky * ky + (x * x) as f64)).exp() as f32;
            }
        }
    }
    f.inverse(spec)
}
