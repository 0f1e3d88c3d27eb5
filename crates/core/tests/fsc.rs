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
fn a_map_against_itself_correlates_at_one_but_gives_no_resolution() {
    let a = vol("vol_a.mrc");
    let c = fsc(&a, &a, 32);
    assert!(c.iter().all(|&v| (v - 1.0).abs() < 1e-6));
    assert_eq!(resolution_at(&c, 0.143, 32, 1.0), Resolution::Nyquist);
    // As half maps, one map given twice is a mistake, not a map at Nyquist.
    let identical = NoResolution::Identical { maps: ["first map".into(), "second map".into()] };
    assert_eq!(check_maps(&a, &a), Err(identical.clone()));
    assert_no_resolution(&a, &a, MaskChoice::Auto, &identical);
    assert_no_resolution(&a, &a, MaskChoice::None, &identical);
    // A copy scaled by any factor, or differing in one value, is a pair of maps.
    let mut other = a.clone();
    other[5] += 1.0;
    assert_eq!(check_maps(&a, &other), Ok(()));
    let doubled: Vec<f32> = a.iter().map(|x| 2.0 * x).collect();
    assert_eq!(gold_standard(&a, &doubled, 32, 1.0, MaskChoice::Auto, 1).try_resolution(0.143), Ok(Resolution::Nyquist));
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

/// Two half maps of `d³`: the blob `amp·exp(−x²/v₀ − y²/v₁ − z²/v₂)` about the box centre
/// (`v` = `two_var`, twice the variances in voxels²), each with its own white noise of standard
/// deviation `noise` (seeded).
fn noisy_blob_halves(d: usize, two_var: [f64; 3], amp: f32, noise: f32, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut r = Rng::new(seed);
    let c = (d / 2) as f64;
    let blob: Vec<f32> = (0..d * d * d)
        .map(|k| {
            let (x, y, z) = ((k % d) as f64 - c, ((k / d) % d) as f64 - c, (k / (d * d)) as f64 - c);
            (-(x * x / two_var[0] + y * y / two_var[1] + z * z / two_var[2])).exp() as f32 * amp
        })
        .collect();
    let a: Vec<f32> = blob.iter().map(|v| v + noise * r.normal() as f32).collect();
    let b: Vec<f32> = blob.iter().map(|v| v + noise * r.normal() as f32).collect();
    (a, b)
}

#[test]
fn mask_raises_and_correction_lowers_the_curve() {
    // Signal: a blob; independent noise in each half. A mask around the blob removes noise
    // from the comparison (masked ≥ unmasked); below the randomisation shell the corrected
    // curve is the masked one, beyond it the correction removes only mask-induced correlation.
    let d = 32;
    let (a, b) = noisy_blob_halves(d, [8.0, 18.0, 12.0], 4.0, 0.3, 5);
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

/// The corrected curve is the masked FSC of the maps less the masked FSC of each map with its
/// phases randomised from the randomisation shell on (`randomize_phases`, each map from its own
/// seed), as RELION's post-processing defines it; the report computes the randomised maps from
/// the spectra it already has, and must get the same numbers.
#[test]
fn the_correction_is_that_of_the_phase_randomised_maps() {
    let d = 24;
    let (a, b) = noisy_blob_halves(d, [6.0, 10.0, 8.0], 3.0, 0.4, 8);
    let seed = 11;
    let rep = gold_standard(&a, &b, d, 2.0, MaskChoice::Auto, seed);
    let n0 = rep.randomized_from_shell.expect("noise makes the unmasked FSC fall below 0.8");
    let m = rep.mask.as_ref().unwrap();
    let apply = |v: &[f32]| -> Vec<f32> { v.iter().zip(m).map(|(x, w)| x * w).collect() };
    let (ra, rb) = (randomize_phases(&a, d, n0, seed), randomize_phases(&b, d, n0, seed ^ 0x5EED_F5C0));
    let rand = fsc(&apply(&ra), &apply(&rb), d);
    let masked = rep.masked.as_ref().unwrap();
    let corrected = rep.corrected.as_ref().unwrap();
    let mut changed = 0;
    for n in n0 + GUARD_SHELLS..corrected.len() {
        let want = if rand[n] > masked[n] || rand[n] >= 1.0 { 0.0 } else { (masked[n] - rand[n]) / (1.0 - rand[n]) };
        assert_eq!(corrected[n], want, "shell {n}");
        changed += usize::from(corrected[n] != masked[n]);
    }
    assert!(changed > 0, "the correction changed no shell");
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

/// The gold-standard report of a pair that must give no resolution, with `reason`.
fn assert_no_resolution(a: &[f32], b: &[f32], mask: MaskChoice<'_>, reason: &NoResolution) {
    let rep = gold_standard(a, b, 32, 1.0, mask, 1);
    assert_eq!(rep.degenerate.as_ref(), Some(reason));
    for t in [0.143, 0.5] {
        assert_eq!(rep.try_resolution(t).as_ref(), Err(reason));
        assert_eq!(rep.try_resolution_unmasked(t).as_ref(), Err(reason));
        // Never a figure, never "at Nyquist".
        assert_eq!(rep.resolution(t), Resolution::NoCorrelation);
        assert_eq!(rep.resolution_unmasked(t), Resolution::NoCorrelation);
    }
    assert!(rep.unmasked.iter().all(|v| v.is_finite() && v.abs() <= 1.0 + 1e-6), "{:?}", rep.unmasked);
}

#[test]
fn degenerate_maps_give_no_resolution_with_the_reason() {
    let a = vol("vol_a.mrc");
    let zero = vec![0.0f32; a.len()];
    let empty = |map: &str| NoResolution::Empty { map: map.into() };
    // One map empty, either one; both empty (formerly "at Nyquist").
    assert_eq!(check_maps(&a, &zero), Err(empty("second map")));
    assert_eq!(check_maps(&zero, &a), Err(empty("first map")));
    for mask in [MaskChoice::None, MaskChoice::Auto] {
        assert_no_resolution(&a, &zero, mask, &empty("second map"));
        assert_no_resolution(&zero, &zero, mask, &empty("first map"));
    }
    // A constant map (zero variance), however large its mean.
    let flat = vec![2.5f32; a.len()];
    let constant = NoResolution::Constant { map: "first map".into(), value: 2.5 };
    assert_eq!(check_maps(&flat, &a), Err(constant.clone()));
    assert_no_resolution(&flat, &a, MaskChoice::Auto, &constant);
    assert_no_resolution(&flat, &flat, MaskChoice::None, &constant);
    // NaN and infinite values: where the first is and how many.
    let mut bad = a.clone();
    bad[17] = f32::NAN;
    bad[99] = f32::INFINITY;
    let non_finite = NoResolution::NonFinite { map: "second map".into(), index: 17, count: 2 };
    assert_eq!(check_maps(&a, &bad), Err(non_finite.clone()));
    assert_no_resolution(&a, &bad, MaskChoice::Auto, &non_finite);
    // A given mask that is all zero, or of the wrong size.
    let b = vol("vol_b.mrc");
    assert_no_resolution(&a, &b, MaskChoice::Given(&zero), &empty("the mask"));
    let short = NoResolution::DifferentSizes { maps: ["each map".into(), "the mask".into()], lens: [a.len(), 5] };
    assert_no_resolution(&a, &b, MaskChoice::Given(&zero[..5]), &short);
    // A constant non-zero mask is a valid mask.
    let ones = vec![1.0f32; a.len()];
    assert!(gold_standard(&a, &b, 32, 1.0, MaskChoice::Given(&ones), 1).try_resolution(0.143).is_ok());
    // Maps of different sizes.
    let e = check_maps(&a, &a[..10]).unwrap_err();
    assert_eq!(e, NoResolution::DifferentSizes { maps: ["first map".into(), "second map".into()], lens: [a.len(), 10] });
    assert_no_resolution(&a, &a[..10], MaskChoice::Auto, &e);
}

#[test]
fn reasons_name_the_map_in_words() {
    let a = vol("vol_a.mrc");
    let zero = vec![0.0f32; a.len()];
    let e = check_maps_labelled(&a, &zero, ["half map A", "half map B"]).unwrap_err().to_string();
    assert_eq!(e, "half map B is all zero: it holds no signal, so its FSC is undefined");
    let e = check_maps_labelled(&vec![-1.0; a.len()], &a, ["half map A", "half map B"]).unwrap_err().to_string();
    assert!(e.starts_with("half map A is constant (-1 everywhere)"), "{e}");
    let mut bad = a.clone();
    bad[5] = f32::NEG_INFINITY;
    let e = check_map(&bad, "map.mrc").unwrap_err().to_string();
    assert!(e.starts_with("map.mrc holds 1 NaN or infinite values (the first at index 5)"), "{e}");
    let e = NoResolution::NoPower { shells: vec![3, 7, 8, 9, 12] }.to_string();
    assert!(e.starts_with("the FSC is undefined in shells 3, 7–9, 12 (one or both maps have no power there)"), "{e}");
    assert!(NoResolution::NoPower { shells: vec![4] }.to_string().contains("in shell 4 ("));
}

#[test]
fn shells_without_power_are_zero_and_listed() {
    let d = 32;
    let a = vol("vol_a.mrc");
    // Against an all-zero map every shell is undefined: 0 there, never 1 or NaN.
    let c = fsc_curve(&a, &vec![0.0; a.len()], d);
    assert!(c.fsc.iter().all(|&v| v == 0.0), "{:?}", c.fsc);
    assert_eq!(c.no_power, (1..=16).collect::<Vec<_>>());
    assert_eq!(fsc(&a, &vec![0.0; a.len()], d), c.fsc);
    let drgn = fsc_cryodrgn(&a, &vec![0.0; a.len()], d);
    assert!(drgn[0].1 == 1.0 && drgn[1..].iter().all(|&(_, v)| v == 0.0), "{drgn:?}");
    // A spectrum with nothing beyond shell 6 against the full one: the curve is 1 up to shell 6
    // and undefined beyond. Read naively, it "crosses" at the cut; read with the undefined
    // shells, there is no resolution.
    let f = cryosplat_core::fourier::Fft3::new(d);
    let fa = f.forward(&a);
    let mut cut = fa.clone();
    let w = d / 2 + 1;
    let freq = |i: usize| if i <= d / 2 { i as f64 } else { i as f64 - d as f64 };
    for p in 0..d {
        for r in 0..d {
            for col in 0..w {
                if (freq(p).powi(2) + freq(r).powi(2) + (col * col) as f64).sqrt().round() > 6.0 {
                    cut[(p * d + r) * w + col] = Default::default();
                }
            }
        }
    }
    let c = fsc_curve_from_spectra(&fa, &cut, d);
    assert!(c.fsc[..=6].iter().all(|&v| (v - 1.0).abs() < 1e-6) && c.fsc[7..].iter().all(|&v| v == 0.0), "{:?}", c.fsc);
    assert_eq!(c.no_power, (7..=16).collect::<Vec<_>>());
    assert!(matches!(resolution_at(&c.fsc, 0.143, d, 1.0), Resolution::Angstrom(_)));
    let e = resolution_checked(&c.fsc, &c.no_power, 0.143, d, 1.0).unwrap_err();
    assert_eq!(e, NoResolution::NoPower { shells: (7..=16).collect() });
}

#[test]
fn a_crossing_before_the_undefined_shells_is_read() {
    let (d, apix) = (10, 2.0);
    let curve = [1.0, 0.9, 0.5, 0.1, 0.0, 0.0];
    let expected = resolution_at(&curve, 0.143, d, apix);
    assert!(matches!(expected, Resolution::Angstrom(_)));
    assert_eq!(resolution_checked(&curve, &[4, 5], 0.143, d, apix), Ok(expected));
    // The crossing shell itself undefined, or one before it.
    assert_eq!(resolution_checked(&curve, &[3, 5], 0.143, d, apix), Err(NoResolution::NoPower { shells: vec![3, 5] }));
    assert_eq!(resolution_checked(&curve, &[1], 0.143, d, apix), Err(NoResolution::NoPower { shells: vec![1] }));
    // A non-finite value counts as undefined.
    let nan = [1.0, 0.9, f64::NAN, 0.1, 0.0, 0.0];
    assert_eq!(resolution_checked(&nan, &[], 0.143, d, apix), Err(NoResolution::NoPower { shells: vec![2] }));
    // Shell 0 (the mean) is never read.
    assert_eq!(resolution_checked(&curve, &[0], 0.143, d, apix), Ok(expected));
}

#[test]
fn a_normal_pair_is_not_degenerate() {
    let (a, b) = (vol("vol_a.mrc"), vol("vol_b.mrc"));
    assert_eq!(check_maps(&a, &b), Ok(()));
    for mask in [MaskChoice::None, MaskChoice::Auto] {
        let rep = gold_standard(&a, &b, 32, 1.0, mask, 2);
        assert!(rep.degenerate.is_none() && rep.unmasked_no_power.is_empty() && rep.masked_no_power.is_empty());
        for t in [0.143, 0.5] {
            assert_eq!(rep.try_resolution(t), Ok(rep.resolution(t)));
            assert_eq!(rep.try_resolution_unmasked(t), Ok(resolution_at(&rep.unmasked, t, 32, 1.0)));
            assert_eq!(rep.resolution(t), resolution_at(rep.final_curve(), t, 32, 1.0));
        }
    }
}
