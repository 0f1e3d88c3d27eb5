//! The atomic potential against independent physics: the exact scattering factor of hydrogen,
//! the Mott–Bethe formula applied to the X-ray form factors of International Tables Vol. C
//! Table 6.1.1.4 (Cromer–Mann coefficients, a different fit of different calculations), and
//! the Fourier transform of the voxelised potential.

use cryosplat_core::potential::{atomic_potential, element_fit, Atom, Centering, PotentialOptions, ELEMENT_FITS, POTENTIAL_PREFACTOR_V_A2};
use cryosplat_core::voxel::{voxelize_a, DEFAULT_CUTOFF_SIGMA};
use std::f64::consts::PI;

/// Bohr radius in Å (CODATA 2018).
const A0: f64 = 0.529_177_210_903;

#[test]
fn hydrogen_matches_its_exact_scattering_factor() {
    // For the 1s orbital f_x(s) = (1 + (2π a0 s)²)⁻², and Mott–Bethe gives
    // f_e(s) = (1 − f_x(s))/(8π² a0 s²), with f_e(0) = a0.
    let h = element_fit("H").unwrap();
    for k in 0..=200 {
        let s = 0.01 * k as f64;
        let exact = if s == 0.0 {
            A0
        } else {
            let u = 2.0 * PI * A0 * s;
            (1.0 - 1.0 / ((1.0 + u * u) * (1.0 + u * u))) / (8.0 * PI * PI * A0 * s * s)
        };
        assert!((h.eval(s) - exact).abs() < 0.004 * A0, "s = {s}: fit {} vs exact {exact}", h.eval(s));
    }
}

#[test]
fn fits_agree_with_mott_bethe_on_x_ray_form_factors() {
    // Cromer–Mann: f_x(s) = Σ₄ aᵢ exp(−bᵢ s²) + c, as (a1, b1, …, a4, b4, c).
    let cromer_mann: &[(&str, f64, [f64; 9])] = &[
        ("C", 6.0, [2.31, 20.8439, 1.02, 10.2075, 1.5886, 0.5687, 0.865, 51.6512, 0.2156]),
        ("N", 7.0, [12.2126, 0.0057, 3.1322, 9.8933, 2.0125, 28.9975, 1.1663, 0.5826, -11.529]),
        ("O", 8.0, [3.0485, 13.2771, 2.2868, 5.7011, 1.5463, 0.3239, 0.867, 32.9089, 0.2508]),
        ("P", 15.0, [6.4345, 1.9067, 4.1791, 27.157, 1.78, 0.526, 1.4908, 68.1645, 1.1149]),
        ("S", 16.0, [6.9053, 1.4679, 5.2034, 22.2151, 1.4379, 0.2536, 1.5863, 56.172, 0.8669]),
        ("Na", 11.0, [4.7626, 3.285, 3.1736, 8.8422, 1.2674, 0.3136, 1.1128, 129.424, 0.676]),
        ("Mg", 12.0, [5.4204, 2.8275, 2.1735, 79.2611, 1.2269, 0.3808, 2.3073, 7.1937, 0.8584]),
        ("Cl", 17.0, [11.4604, 0.0104, 7.1964, 1.1662, 6.2556, 18.5194, 1.6455, 47.7784, -9.5574]),
        ("K", 19.0, [8.2186, 12.7949, 7.4398, 0.7748, 1.0519, 213.187, 0.8659, 41.6841, 1.4228]),
        ("Ca", 20.0, [8.6266, 10.4421, 7.3873, 0.6599, 1.5899, 85.7484, 1.0211, 178.437, 1.3751]),
        ("Fe", 26.0, [11.7695, 4.7611, 7.3573, 0.3072, 3.5222, 15.3535, 2.3045, 76.8805, 1.0369]),
        ("Zn", 30.0, [14.0743, 3.2655, 7.0318, 0.2333, 5.1652, 10.3163, 2.41, 58.7097, 1.3041]),
    ];
    for (sym, z, p) in cromer_mann {
        let fit = element_fit(sym).unwrap();
        assert_eq!(fit.z as f64, *z);
        let f0 = fit.eval(0.0);
        // Below s ≈ 0.1 Å⁻¹ Mott–Bethe divides the small difference Z − f_x by s², which
        // amplifies the X-ray fit's error, so the comparison starts there.
        for k in 20..=400 {
            let s = 0.005 * k as f64;
            let fx: f64 = (0..4).map(|i| p[2 * i] * (-p[2 * i + 1] * s * s).exp()).sum::<f64>() + p[8];
            let mott_bethe = (z - fx) / (8.0 * PI * PI * A0 * s * s);
            let diff = (fit.eval(s) - mott_bethe).abs();
            assert!(diff < 0.008 * f0, "{sym} at s = {s}: {} vs Mott–Bethe {mott_bethe}", fit.eval(s));
        }
    }
}

#[test]
fn table_is_consistent() {
    // Atomic numbers increase, symbols are unique, and f_e(0) grows roughly with Z within rows.
    for w in ELEMENT_FITS.windows(2) {
        assert!(w[0].z < w[1].z, "{} before {}", w[0].symbol, w[1].symbol);
    }
    for e in ELEMENT_FITS {
        assert!(e.a.iter().all(|&a| a != 0.0) && e.b.iter().all(|&b| b > 0.0), "{}", e.symbol);
        assert!(e.b.windows(2).all(|w| w[0] < w[1]), "{}: b not increasing", e.symbol);
        assert_eq!(element_fit(e.symbol).unwrap().z, e.z);
    }
    assert_eq!(element_fit(" FE ").unwrap().symbol, "Fe");
    assert_eq!(element_fit("Zn2+").unwrap().symbol, "Zn");
    assert_eq!(element_fit("CL-").unwrap().symbol, "Cl");
    assert!(element_fit("Xx").is_none() && element_fit("").is_none() && element_fit("CA1X").is_none());
}

fn atom(el: &str, pos: [f64; 3], b: f64, occ: f64) -> Atom {
    Atom { element: el.to_string(), pos_a: pos, b_factor_a2: b, occupancy: occ }
}

#[test]
fn gaussians_have_the_documented_weights_and_widths() {
    let atoms = [atom("C", [1.0, 2.0, 3.0], 20.0, 1.0), atom("O", [-1.0, 0.0, 5.0], 30.0, 0.5)];
    let opts = PotentialOptions { extra_b_a2: 10.0, set_b_a2: None, centering: Centering::None };
    let p = atomic_potential(&atoms, &opts).unwrap();
    assert_eq!(p.gaussians.len(), 10);
    assert_eq!(p.centre_a, [0.0; 3]);
    let (c, o) = (element_fit("C").unwrap(), element_fit("O").unwrap());
    for i in 0..5 {
        let g = &p.gaussians[i];
        assert_eq!(g.mean_a, [1.0, 2.0, 3.0]);
        assert!((g.mass - POTENTIAL_PREFACTOR_V_A2 * c.a[i]).abs() < 1e-12);
        assert!((g.cov_a2[0][0] - (c.b[i] + 30.0) / (8.0 * PI * PI)).abs() < 1e-12);
        assert_eq!(g.cov_a2[0][1], 0.0);
        let g = &p.gaussians[5 + i];
        assert!((g.mass - POTENTIAL_PREFACTOR_V_A2 * o.a[i] * 0.5).abs() < 1e-12);
        assert!((g.cov_a2[2][2] - (o.b[i] + 40.0) / (8.0 * PI * PI)).abs() < 1e-12);
    }
    assert!((p.radius_a - 26f64.sqrt()).abs() < 1e-12);
}

#[test]
fn centring_and_unknown_elements() {
    let atoms = [
        atom("C", [0.0, 0.0, 0.0], 20.0, 1.0),
        atom("C", [10.0, 0.0, 0.0], 20.0, 1.0),
        atom("Q", [4.0, 6.0, 0.0], 20.0, 1.0),
        atom("Q", [0.0, 0.0, 2.0], 20.0, 1.0),
        atom("N", [0.0, 0.0, 50.0], 20.0, 0.0),
    ];
    let bb = atomic_potential(&atoms, &PotentialOptions { centering: Centering::BoundingBox, ..Default::default() }).unwrap();
    // The unoccupied atom is ignored, for the bounding box as for the Gaussians.
    assert_eq!(bb.centre_a, [5.0, 3.0, 1.0]);
    assert_eq!(bb.gaussians.len(), 20);
    assert_eq!(bb.unknown_elements, vec![("Q".to_string(), 2)]);
    let com = atomic_potential(&atoms, &PotentialOptions::default()).unwrap();
    // Unknown atoms weigh as carbon: the centroid of four equal atoms.
    for k in 0..3 {
        assert!((com.centre_a[k] - [3.5, 1.5, 0.5][k]).abs() < 1e-12);
    }
    let m: f64 = com.gaussians.iter().map(|g| g.mass).sum();
    let mut first = [0.0; 3];
    for g in &com.gaussians {
        for (f, x) in first.iter_mut().zip(g.mean_a) {
            *f += g.mass * x / m;
        }
    }
    assert!(first.iter().all(|v| v.abs() < 1e-12), "{first:?}");
    let err = atomic_potential(&[atom("C", [f64::NAN, 0.0, 0.0], 20.0, 1.0)], &PotentialOptions::default()).unwrap_err();
    assert!(err.to_string().contains("atom 1 (C)"), "{err}");
    assert!(atomic_potential(&[atom("C", [0.0; 3], -5.0, 1.0)], &PotentialOptions::default()).is_err());
    let set = PotentialOptions { set_b_a2: Some(0.0), extra_b_a2: 5.0, centering: Centering::None };
    let p = atomic_potential(&[atom("C", [0.0; 3], -5.0, 1.0)], &set).unwrap();
    let c = element_fit("C").unwrap();
    assert!((p.gaussians[0].cov_a2[1][1] - (c.b[0] + 5.0) / (8.0 * PI * PI)).abs() < 1e-12);
}

#[test]
fn voxelised_potential_has_the_scattering_factor_as_fourier_transform() {
    // One carbon atom, B = 50 Å², voxelised at 0.5 Å: Σ map·apix²·e^(−2πi k·r) approximates
    // ∫ V e^(−2πi k·r) dr = K·f_e(|k|/2)·exp(−B|k|²/4).
    let b = 50.0;
    let (d, apix) = (64usize, 0.5);
    let pot =
        atomic_potential(&[atom("C", [0.3, -0.2, 0.1], b, 1.0)], &PotentialOptions { centering: Centering::None, ..Default::default() })
            .unwrap();
    let map = voxelize_a(&pot.gaussians, d, apix, DEFAULT_CUTOFF_SIGMA);
    let c = element_fit("C").unwrap();
    let k0 = POTENTIAL_PREFACTOR_V_A2 * c.eval(0.0);
    for kv in [[0.0, 0.0, 0.0], [0.25, 0.0, 0.0], [0.1, 0.3, -0.2], [0.0, -0.5, 0.4], [0.6, 0.2, 0.3]] {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for z in 0..d {
            for y in 0..d {
                for x in 0..d {
                    let r = [(x as f64 - 32.0) * apix, (y as f64 - 32.0) * apix, (z as f64 - 32.0) * apix];
                    // Phase relative to the atom so that the expected value is real.
                    let ph = -2.0 * PI * (kv[0] * (r[0] - 0.3) + kv[1] * (r[1] + 0.2) + kv[2] * (r[2] - 0.1));
                    let v = map[(z * d + y) * d + x] as f64 * apix * apix;
                    re += v * ph.cos();
                    im += v * ph.sin();
                }
            }
        }
        let k2: f64 = kv.iter().map(|v| v * v).sum();
        let s = k2.sqrt() / 2.0;
        let want = POTENTIAL_PREFACTOR_V_A2 * c.eval(s) * (-b * s * s).exp();
        assert!((re - want).abs() < 5e-4 * k0 && im.abs() < 5e-4 * k0, "k = {kv:?}: {re} + {im}i vs {want}");
    }
}
