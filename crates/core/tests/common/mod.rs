//! What the core integration tests share: the paths of the reference data, readers for its
//! JSON and MRC files, and error measures. Each test binary uses a subset of these.

// Each test file compiles this module on its own and uses only some of the helpers.
#![allow(dead_code)]

use cryosplat_core::ctf::CtfParams;
use cryosplat_core::gaussian::GaussianA;
use cryosplat_core::pose::{Mat3, Pose};
use serde_json::Value;

/// `tests/data/reference/` of the repository (independent reference values; see its README).
pub const REFERENCE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/reference/");

/// `tests/data/cryodrgn-toy/` of the repository (cryoDRGN's toy projections; see its README).
pub const TOY_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/cryodrgn-toy/");

/// A JSON file of `tests/data/reference/`, parsed.
pub fn reference_json(name: &str) -> Value {
    let path = format!("{REFERENCE_DIR}{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `gmm_projections.json`: Gaussian scenes in Å with their analytic projections and CTFs.
pub fn gmm_projections() -> Value {
    reference_json("gmm_projections.json")
}

/// A JSON number.
pub fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A 3×3 matrix stored as nested arrays (row by row).
pub fn mat3(v: &Value) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = num(&v[i][j]);
        }
    }
    m
}

/// A 2D array of numbers (nested arrays), flattened row by row.
pub fn grid(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array of rows").iter().flat_map(|row| row.as_array().expect("a row").iter().map(num)).collect()
}

/// The Gaussians of one scene of `gmm_projections.json`.
pub fn scene_gaussians(scene: &Value) -> Vec<GaussianA> {
    scene["gaussians"]
        .as_array()
        .expect("gaussians")
        .iter()
        .map(|g| GaussianA {
            mean_a: [num(&g["mean_A"][0]), num(&g["mean_A"][1]), num(&g["mean_A"][2])],
            cov_a2: mat3(&g["cov_A2"]),
            mass: num(&g["mass"]),
        })
        .collect()
}

/// One pose of a scene of `gmm_projections.json`.
pub fn pose_of(p: &Value) -> Pose {
    Pose { rot: mat3(&p["A"]), origin_a: [num(&p["origin_x_A"]), num(&p["origin_y_A"])] }
}

/// The CTF parameters of one case of `ctf_cases.json`.
pub fn ctf_params(c: &Value) -> CtfParams {
    let f = |k: &str| num(&c[k]);
    CtfParams {
        voltage_kv: f("voltage_kv"),
        cs_mm: f("cs_mm"),
        amp_contrast: f("amplitude_contrast"),
        defocus_u_a: f("defocus_u_A"),
        defocus_v_a: f("defocus_v_A"),
        defocus_angle_deg: f("defocus_angle_deg"),
        phase_shift_deg: f("phase_shift_deg"),
        bfactor_a2: f("bfactor_A2"),
        scale: f("scale"),
    }
}

/// A float32 MRC file read with the formats crate's reader: (nx, ny, nz, data).
pub fn read_mrc_f32(path: &str) -> (usize, usize, usize, Vec<f32>) {
    let f = cryosplat_formats::mrc::MrcFile::open(path).unwrap_or_else(|e| panic!("{e}"));
    let h = f.header();
    assert_eq!(h.mode.number(), 2, "{path}: float32 expected");
    let (nx, ny, nz) = (h.nx, h.ny, h.nz);
    (nx, ny, nz, f.read_all().unwrap_or_else(|e| panic!("{e}")))
}

/// The largest magnitude.
pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// `max |a − b| / max |b|`.
pub fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "arrays of different lengths");
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / max_abs(b)
}
