//! The CTF against RELION's values in tests/data/reference/ctf_cases.json (25 cases, 16×16).

mod common;

use common::ctf_params;
use cryosplat_core::ctf::{wavelength_a, CtfGrid};
use cryosplat_core::fourier::{centred_index, centred_position, freq_index};
use serde_json::Value;

fn cases() -> Vec<Value> {
    common::reference_json("ctf_cases.json")["cases"].as_array().expect("cases").clone()
}

#[test]
fn f64_eval_matches_relion_to_1e12() {
    let cs = cases();
    assert_eq!(cs.len(), 25);
    for c in &cs {
        let p = ctf_params(c);
        p.validate().unwrap();
        assert!((wavelength_a(p.voltage_kv) - c["wavelength_A"].as_f64().unwrap()).abs() < 1e-15);
        let d = c["D"].as_u64().unwrap() as usize;
        let apix = c["apix"].as_f64().unwrap();
        for i in 0..d {
            for j in 0..d {
                let kx = centred_index(j, d) as f64 / (d as f64 * apix);
                let ky = centred_index(i, d) as f64 / (d as f64 * apix);
                let want = c["ctf"][i][j].as_f64().unwrap();
                let got = p.eval(kx, ky);
                assert!((got - want).abs() < 1e-12, "case {} [{i}][{j}]: {got} vs {want}", c["id"]);
            }
        }
    }
}

#[test]
fn f32_grids_match_relion_to_1e6() {
    for c in &cases() {
        let p = ctf_params(c);
        let d = c["D"].as_u64().unwrap() as usize;
        let apix = c["apix"].as_f64().unwrap();
        let mut full = vec![0.0f32; d * d];
        p.fill_centered(d, apix, &mut full);
        let grid = CtfGrid::new(d, apix);
        let mut half = vec![0.0f32; grid.len()];
        grid.fill_rfft(&p, &mut half);
        for i in 0..d {
            for j in 0..d {
                let want = c["ctf"][i][j].as_f64().unwrap();
                assert!((full[i * d + j] as f64 - want).abs() < 1e-6, "case {} [{i}][{j}]", c["id"]);
            }
        }
        // Half plane: row r ↔ ky index freq_index(r), column c ↔ kx index c.
        for r in 0..d {
            let i = centred_position(freq_index(r, d), d);
            for col in 0..d / 2 {
                let want = c["ctf"][i][centred_position(col as i64, d)].as_f64().unwrap();
                assert!((half[r * (d / 2 + 1) + col] as f64 - want).abs() < 1e-6, "case {} r{r} c{col}", c["id"]);
            }
        }
    }
}

#[test]
fn astigmatism_axes_cases_1_and_2() {
    // Cases 1 and 2 differ only by the defocus angle (0° vs 90°): the arrays are transposes.
    let cs = cases();
    let (a, b) = (&cs[1]["ctf"], &cs[2]["ctf"]);
    for i in 1..16 {
        for j in 1..16 {
            assert!((a[i][j].as_f64().unwrap() - b[j][i].as_f64().unwrap()).abs() < 1e-12);
        }
    }
}
