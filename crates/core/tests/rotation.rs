//! Rotations against RELION's and scipy's values in tests/data/reference/rotations.json.

mod common;

use common::{mat3, reference_json};
use cryosplat_core::pose::Mat3;
use cryosplat_core::rotation::*;
use serde_json::Value;

fn load() -> Value {
    reference_json("rotations.json")
}

fn max_diff(a: &Mat3, b: &Mat3) -> f64 {
    let mut d: f64 = 0.0;
    for i in 0..3 {
        for j in 0..3 {
            d = d.max((a[i][j] - b[i][j]).abs());
        }
    }
    d
}

fn angle_diff(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

#[test]
fn euler_to_matrix_and_back_match_relion() {
    let r = load();
    let cases = r["euler_to_matrix"].as_array().unwrap();
    assert_eq!(cases.len(), 20);
    for c in cases {
        let (rot, tilt, psi) = (c["rot"].as_f64().unwrap(), c["tilt"].as_f64().unwrap(), c["psi"].as_f64().unwrap());
        let a = euler_to_matrix(rot, tilt, psi);
        assert!(max_diff(&a, &mat3(&c["A"])) < 1e-12);
        let (r2, t2, p2) = matrix_to_euler(&a);
        let e = &c["matrix_to_euler"];
        assert!(angle_diff(r2, e[0].as_f64().unwrap()) < 1e-9, "{c}");
        assert!(angle_diff(t2, e[1].as_f64().unwrap()) < 1e-9, "{c}");
        assert!(angle_diff(p2, e[2].as_f64().unwrap()) < 1e-9, "{c}");
    }
}

#[test]
fn cryosparc_rotation_vectors_match_scipy_and_relion_angles() {
    let r = load();
    for c in r["cryosparc_rotvec"].as_array().unwrap() {
        let v = &c["pose_rotvec_rad"];
        let v = [v[0].as_f64().unwrap(), v[1].as_f64().unwrap(), v[2].as_f64().unwrap()];
        let a = cryosparc_rotvec_to_matrix(v);
        assert!(max_diff(&a, &mat3(&c["A"])) < 1e-12, "{c}");
        let (rot, tilt, psi) = matrix_to_euler(&a);
        assert!(angle_diff(rot, c["rot"].as_f64().unwrap()) < 1e-9);
        assert!(angle_diff(tilt, c["tilt"].as_f64().unwrap()) < 1e-9);
        assert!(angle_diff(psi, c["psi"].as_f64().unwrap()) < 1e-9);
        let back = matrix_to_cryosparc_rotvec(&a);
        assert!(max_diff(&cryosparc_rotvec_to_matrix(back), &a) < 1e-12);
    }
}

#[test]
fn gimbal_lock_and_edge_cases() {
    let r = load();
    let cases = r["edge_cases"].as_array().unwrap();
    assert!(cases.len() >= 9);
    for c in cases {
        let a = if let Some(e) = c.get("input_euler_deg") {
            let a = euler_to_matrix(e[0].as_f64().unwrap(), e[1].as_f64().unwrap(), e[2].as_f64().unwrap());
            assert!(max_diff(&a, &mat3(&c["A"])) < 1e-12, "{}", c["note"]);
            a
        } else {
            let v = &c["pose_rotvec_rad"];
            let a = cryosparc_rotvec_to_matrix([v[0].as_f64().unwrap(), v[1].as_f64().unwrap(), v[2].as_f64().unwrap()]);
            assert!(max_diff(&a, &mat3(&c["A"])) < 1e-12, "{}", c["note"]);
            a
        };
        let (rot, tilt, psi) = matrix_to_euler(&a);
        assert!(angle_diff(rot, c["rot"].as_f64().unwrap()) < 1e-9, "{}: rot {rot}", c["note"]);
        assert!(angle_diff(tilt, c["tilt"].as_f64().unwrap()) < 1e-9, "{}: tilt {tilt}", c["note"]);
        assert!(angle_diff(psi, c["psi"].as_f64().unwrap()) < 1e-9, "{}: psi {psi}", c["note"]);
    }
}
