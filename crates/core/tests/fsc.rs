//! FSC against cryoDRGN's values (tests/data/reference/fsc_case) and behaviour checks.

use cryosplat_core::fsc::*;
use cryosplat_core::rng::Rng;
use cryosplat_formats::mrc::MrcFile;

fn vol(name: &str) -> Vec<f32> {
    let p = format!("{}/../../tests/data/reference/fsc_case/{name}", env!("CARGO_MANIFEST_DIR"));
    MrcFile::open(p).unwrap().read_all().unwrap()
}

fn reference() -> serde_json::Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/reference/fsc_case/fsc.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn cryodrgn_shell_definition_matches_cryodrgn() {
    let (a, b) = (vol("vol_a.mrc"), vol("vol_b.mrc"));
    let r = reference();
    let ours = fsc_cryodrgn(&a, &b, 32);
    let theirs = r["fsc_cryodrgn"].as_array().unwrap();
    let f64ref = r["fsc_float64_reimplementation"].as_array().unwrap();
    let pixres = r["pixres"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (i, (px, v)) in ours.iter().enumerate() {
        assert!((px - pixres[i].as_f64().unwrap()).abs() < 1e-15);
        // Our transform is float32 like cryoDRGN's; the sums are float64.
        assert!((v - theirs[i].as_f64().unwrap()).abs() < 1e-5, "shell {i}: {v} vs {}", theirs[i]);
        assert!((v - f64ref[i].as_f64().unwrap()).abs() < 1e-5, "shell {i}: {v} vs {}", f64ref[i]);
    }
}

#[test]
fn relion_shells_and_resolutions() {
    let (a, b) = (vol("vol_a.mrc"), vol("vol_b.mrc"));
    let c = fsc(&a, &b, 32);
    assert_eq!(c.len(), 17);
    assert!((c[0] - 1.0).abs() < 1e-6);
    // The same data as the cryoDRGN case: its 0.5 threshold is crossed between 4 and 7 Å.
    match resolution_at(&c, 0.5, 32, 1.0) {
        Resolution::Angstrom(r) => assert!(r > 3.5 && r < 7.0, "{r}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_map_against_itself_is_at_nyquist() {
    let a = vol("vol_a.mrc");
    let c = fsc(&a, &a, 32);
    assert!(c.iter().all(|&v| (v - 1.0).abs() < 1e-6));
    assert_eq!(resolution_at(&c, 0.143, 32, 1.0), Resolution::Nyquist);
    let rep = gold_standard(&a, &a, 32, 1.0, MaskChoice::Auto, 1);
    assert_eq!(rep.resolution(0.143), Resolution::Nyquist);
}

#[test]
fn independent_noise_gives_no_resolution() {
    let d = 32;
    let mut r = Rng::new(11);
    let a: Vec<f32> = (0..d * d * d).map(|_| r.normal() as f32).collect();
    let b: Vec<f32> = (0..d * d * d).map(|_| r.normal() as f32).collect();
    let c = fsc(&a, &b, d);
    // Shell 0 is a single component (always ±1); every shell from 2 on is near 0.
    for v in &c[2..] {
        assert!(v.abs() < 0.2, "{v}");
    }
    let res = resolution_at(&c, 0.143, d, 1.0);
    assert!(matches!(res, Resolution::NoCorrelation) || matches!(res, Resolution::Angstrom(x) if x > 16.0), "{res:?}");
}

#[test]
fn mask_raises_and_correction_lowers_the_curve() {
    // Signal: a blob; independent noise in each half. A mask around the blob removes noise
    // from the comparison (masked ≥ unmasked); below the randomisation shell the corrected
    // curve is the masked one, beyond it the correction removes only mask-induced correlation.
    let d = 32;
    let mut r = Rng::new(5);
    let blob: Vec<f32> = (0..d * d * d)
        .map(|k| {
            let (x, y, z) = ((k % d) as f64 - 16.0, ((k / d) % d) as f64 - 16.0, (k / (d * d)) as f64 - 16.0);
            (-(x * x / 8.0 + y * y / 18.0 + z * z / 12.0)).exp() as f32 * 4.0
        })
        .collect();
    let a: Vec<f32> = blob.iter().map(|v| v + 0.3 * r.normal() as f32).collect();
    let b: Vec<f32> = blob.iter().map(|v| v + 0.3 * r.normal() as f32).collect();
    let rep = gold_standard(&a, &b, d, 2.0, MaskChoice::Auto, 3);
    let masked = rep.masked.as_ref().unwrap();
    let corrected = rep.corrected.as_ref().unwrap();
    let n0 = rep.randomized_from_shell.expect("noise makes the unmasked FSC fall below 0.8");
    let mid = n0 + 1;
    assert!(masked[mid] > rep.unmasked[mid], "masked {} unmasked {}", masked[mid], rep.unmasked[mid]);
    for n in 0..(n0 + cryosplat_core::fsc::GUARD_SHELLS).min(masked.len()) {
        assert_eq!(corrected[n], masked[n]);
    }
    // Beyond n0 the random-phase FSC scatters around 0, so the correction is small on average.
    let k = (corrected.len() - n0) as f64;
    let mean_shift: f64 = (n0..corrected.len()).map(|n| corrected[n] - masked[n]).sum::<f64>() / k;
    assert!(mean_shift.abs() < 0.1, "mean correction {mean_shift}");
    assert!(corrected.iter().all(|v| *v <= 1.0 + 1e-9));
    let m = rep.mask.as_ref().unwrap();
    assert_eq!(m[(16 * d + 16) * d + 16], 1.0);
    assert_eq!(m[0], 0.0);
}

#[test]
fn no_false_dip_at_the_randomisation_shell() {
    // Two noise-free maps of the same object, one with its atoms slightly displaced (a map
    // against its ground truth): the curves fall smoothly through 0.8 and 0.5, and the corrected curve
    // must not fall below the masked one by more than a little anywhere, in particular not
    // right at the randomisation shell.
    let d = 48;
    let mut r = Rng::new(9);
    let centres: Vec<[f64; 3]> = (0..300).map(|_| [r.normal() * 5.0, r.normal() * 4.0, r.normal() * 4.5]).collect();
    // The "reconstruction" has every atom displaced by about half a pixel: its FSC against the
    // truth decays smoothly with frequency.
    let moved: Vec<[f64; 3]> =
        centres.iter().map(|c| [c[0] + 0.5 * r.normal(), c[1] + 0.5 * r.normal(), c[2] + 0.5 * r.normal()]).collect();
    let render = |atoms: &[[f64; 3]]| -> Vec<f32> {
        (0..d * d * d)
            .map(|k| {
                let p = [(k % d) as f64 - 24.0, ((k / d) % d) as f64 - 24.0, (k / (d * d)) as f64 - 24.0];
                atoms
                    .iter()
                    .map(|c| {
                        let q = (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2);
                        (-q / 1.6).exp()
                    })
                    .sum::<f64>() as f32
            })
            .collect()
    };
    let truth = render(&centres);
    let blurred = render(&moved);
    let rep = gold_standard(&blurred, &truth, d, 1.5, MaskChoice::Auto, 4);
    let n0 = rep.randomized_from_shell.expect("the displacements make the FSC fall below 0.8");
    let masked = rep.masked.as_ref().unwrap();
    let corrected = rep.corrected.as_ref().unwrap();
    for n in 1..masked.len() {
        assert!(corrected[n] >= masked[n] - 0.1, "shell {n} (randomised from {n0}): corrected {} masked {}", corrected[n], masked[n]);
    }
    let (Resolution::Angstrom(rc), Resolution::Angstrom(rm)) = (rep.resolution(0.5), resolution_at(masked, 0.5, d, 1.5)) else {
        panic!("both curves cross 0.5");
    };
    assert!((rc / rm - 1.0).abs() < 0.02, "corrected {rc} Å, masked {rm} Å");
}
