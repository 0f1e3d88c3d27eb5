//! Point groups against RELION's operators (tests/data/reference/symmetry/), group axioms for
//! every supported name, and map symmetrisation about the box centre.

mod common;

use common::{mat3, reference_json};
use cryosplat_core::pose::{mat_mul, mat_vec, transpose, Mat3, IDENTITY};
use cryosplat_core::rng::Rng;
use cryosplat_core::symmetry::{axis_angle, det, mirror, symmetrize_map, PointGroup, INVERSION};

fn max_diff(a: &Mat3, b: &Mat3) -> f64 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn contains(ops: &[Mat3], m: &Mat3, tol: f64) -> bool {
    ops.iter().any(|o| max_diff(o, m) < tol)
}

/// Closed under products and inverses, orthogonal, no duplicates, identity first.
fn assert_group(g: &PointGroup) {
    let ops = g.operators();
    assert_eq!(ops[0], IDENTITY, "{}: identity first", g.name());
    for (i, a) in ops.iter().enumerate() {
        assert!(max_diff(&mat_mul(a, &transpose(a)), &IDENTITY) < 1e-12, "{}: operator {i} not orthogonal", g.name());
        assert!(contains(ops, &transpose(a), 1e-9), "{}: inverse of operator {i} missing", g.name());
        for (j, b) in ops.iter().enumerate() {
            if i != j {
                assert!(max_diff(a, b) > 1e-3, "{}: operators {i} and {j} coincide", g.name());
            }
            assert!(contains(ops, &mat_mul(a, b), 1e-9), "{}: product of {i} and {j} missing", g.name());
        }
    }
}

fn group(name: &str) -> PointGroup {
    PointGroup::parse(name).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn rotation_groups_equal_relions_operators() {
    let json = reference_json("symmetry/relion_point_groups.json");
    let groups = json["groups"].as_object().unwrap();
    assert_eq!(groups.len(), 21);
    for (name, entry) in groups {
        let g = group(name);
        let reference: Vec<Mat3> = entry["matrices"].as_array().unwrap().iter().map(mat3).collect();
        assert_eq!(g.order(), entry["order"].as_u64().unwrap() as usize, "{name}: order");
        assert_eq!(g.order(), reference.len(), "{name}");
        // Equal as sets, both ways (the orders are equal and there are no duplicates).
        for (k, r) in reference.iter().enumerate() {
            assert!(contains(g.operators(), r, 1e-5), "{name}: RELION operator {k} missing: {r:?}");
        }
        for (k, m) in g.operators().iter().enumerate() {
            assert!(contains(&reference, m, 1e-5), "{name}: operator {k} is not RELION's: {m:?}");
        }
        assert!(g.is_proper(), "{name}");
    }
}

#[test]
fn every_supported_name_is_a_group_of_the_right_order() {
    let mut cases: Vec<(String, usize)> = vec![
        ("C1".into(), 1),
        ("Ci".into(), 2),
        ("Cs".into(), 2),
        ("T".into(), 12),
        ("Td".into(), 24),
        ("Th".into(), 24),
        ("O".into(), 24),
        ("Oh".into(), 48),
        ("I".into(), 60),
        ("Ih".into(), 120),
    ];
    for s in 1..=4 {
        cases.push((format!("I{s}"), 60));
        cases.push((format!("I{s}h"), 120));
    }
    for n in [1, 2, 3, 4, 5, 6, 7, 8, 12, 17] {
        cases.push((format!("C{n}"), n));
        cases.push((format!("C{n}v"), 2 * n));
        cases.push((format!("C{n}h"), 2 * n));
        cases.push((format!("D{n}"), 2 * n));
        cases.push((format!("D{n}v"), 4 * n));
        cases.push((format!("D{n}h"), 4 * n));
    }
    for n in [2, 4, 6, 8, 10] {
        cases.push((format!("S{n}"), n));
    }
    for (name, order) in cases {
        let g = group(&name);
        assert_eq!(g.order(), order, "{name}");
        assert_group(&g);
        let improper = g.operators().iter().filter(|m| det(m) < 0.0).count();
        let mirrors = name.len() > 1 && (name.ends_with(['v', 'h', 'i', 's', 'd']) || name.starts_with('S'));
        assert_eq!(improper, if mirrors && order > 1 { order / 2 } else { 0 }, "{name}: improper operators");
        for m in g.operators() {
            assert!((det(m).abs() - 1.0).abs() < 1e-12, "{name}");
        }
    }
}

#[test]
fn names_are_case_insensitive_and_canonical() {
    assert_eq!(group("c4").name(), "C4");
    assert_eq!(group("d7H").name(), "D7h");
    assert_eq!(group("ci").name(), "Ci");
    assert_eq!(group("i3").operators(), group("I3").operators());
    assert_eq!(group("I").operators(), group("I2").operators());
    assert_eq!(group("Ih").operators(), group("I2h").operators());
    assert!(group("C1").is_trivial());
    assert_eq!(PointGroup::c1(), group("c1"));
}

#[test]
fn unknown_and_unsupported_names_are_refused_with_a_reason() {
    for (name, needle) in [
        ("I5", "not supported"),
        ("i5h", "not supported"),
        ("S3", "must be even"),
        ("C0", "expected 1 to 99"),
        ("C100", "expected 1 to 99"),
        ("C04", "expected 1 to 99"),
        ("X2", "unknown point group"),
        ("C", "unknown point group"),
        ("D2x", "unknown point group"),
        ("S4v", "no v or h variant"),
        ("", "empty name"),
    ] {
        let e = PointGroup::parse(name).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains(&format!("'{name}'")), "{name}: {e}");
    }
}

#[test]
fn orientations_follow_relions_generators() {
    let pi = std::f64::consts::PI;
    let (x, y, z) = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]);
    let has = |name: &str, m: Mat3| assert!(contains(group(name).operators(), &m, 1e-9), "{name}: missing {m:?}");
    has("C5", axis_angle(z, 2.0 * pi / 5.0));
    has("D3", axis_angle(x, pi));
    assert!(!contains(group("D3").operators(), &axis_angle(y, pi), 1e-6), "D3's two-folds: x and its images");
    has("Cs", mirror(z));
    has("Ci", INVERSION);
    has("C3v", mirror(y));
    has("C3h", mirror(z));
    has("S6", INVERSION);
    has("S6", axis_angle(z, 2.0 * pi / 3.0));
    has("D3v", mirror(x));
    has("D3h", mirror(z));
    has("Td", mirror([0.5, 3f64.sqrt() / 2.0, 0.0]));
    has("Th", INVERSION);
    has("Oh", mirror([0.0, 1.0, 1.0]));
    has("O", axis_angle(x, pi / 2.0));
    has("T", axis_angle(z, 2.0 * pi / 3.0));
    let t = (1.0 + 5f64.sqrt()) / 2.0;
    has("I3", axis_angle(z, 2.0 * pi / 5.0));
    has("I4", axis_angle(z, 2.0 * pi / 5.0));
    has("I1", axis_angle(x, pi));
    has("I2", axis_angle(z, pi));
    has("I2h", mirror(x));
    has("I1h", mirror(z));
    has("I3h", mirror([t, 0.0, 1.0]));
    has("I4h", mirror([t, 0.0, -1.0]));
    // Each h variant is its rotation group with the inversion (all icosahedral mirrors are).
    for s in ["I1", "I2", "I3", "I4"] {
        let h = group(&format!("{s}h"));
        for m in group(s).operators() {
            has(&format!("{s}h"), *m);
            let inv = mat_mul(&INVERSION, m);
            assert!(contains(h.operators(), &inv, 1e-9), "{s}h");
        }
    }
}

/// A random map whose `−D/2` faces are zero, so that every voxel has its partner under the
/// grid-preserving operators.
fn random_map(d: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut v = vec![0.0f32; d * d * d];
    for k in 1..d {
        for i in 1..d {
            for j in 1..d {
                v[(k * d + i) * d + j] = rng.normal() as f32;
            }
        }
    }
    v
}

/// `V(R·r)` sampled at every voxel `r` about `D/2` for an `R` that maps the grid onto itself.
fn rotate_on_grid(map: &[f32], d: usize, r: &Mat3) -> Vec<f32> {
    let c = (d / 2) as i64;
    let mut out = vec![0.0f32; d * d * d];
    for k in 0..d {
        for i in 0..d {
            for j in 0..d {
                let p = mat_vec(r, [j as f64 - c as f64, i as f64 - c as f64, k as f64 - c as f64]);
                let q: Vec<i64> = p.iter().map(|v| v.round() as i64 + c).collect();
                assert!(p.iter().all(|v| (v - v.round()).abs() < 1e-12));
                if q.iter().all(|&v| (0..d as i64).contains(&v)) {
                    out[(k * d + i) * d + j] = map[((q[2] as usize) * d + q[1] as usize) * d + q[0] as usize];
                }
            }
        }
    }
    out
}

#[test]
fn a_symmetrised_map_is_invariant_under_its_operators() {
    let d = 12;
    for name in ["C4", "D2", "D4h", "O", "Oh"] {
        let g = group(name);
        let map = random_map(d, 5);
        let s = symmetrize_map(&map, d, &g);
        let scale = s.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for (k, r) in g.operators().iter().enumerate() {
            let rotated = rotate_on_grid(&s, d, r);
            // Voxels on the +D/2−1 faces may have their partner beyond the box; compare inside.
            let mut worst = 0.0f32;
            for kz in 1..d {
                for i in 1..d {
                    for j in 1..d {
                        let idx = (kz * d + i) * d + j;
                        worst = worst.max((rotated[idx] - s[idx]).abs());
                    }
                }
            }
            assert!(worst <= 1e-6 * scale, "{name} operator {k}: {worst} (scale {scale})");
        }
        // Averaging is a projection: symmetrising twice changes nothing.
        let twice = symmetrize_map(&s, d, &g);
        let diff = s.iter().zip(&twice).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff <= 1e-6 * scale, "{name}: {diff}");
    }
    let map = random_map(d, 6);
    assert_eq!(symmetrize_map(&map, d, &PointGroup::c1()), map);
}

#[test]
fn symmetrising_keeps_a_smooth_symmetric_map_off_the_grid_axes() {
    // Gaussian blobs placed by the operators of C5 and I3 are symmetric; symmetrising them
    // changes them only by the interpolation error.
    let d = 32;
    let c = (d / 2) as f64;
    for name in ["C5", "I3", "D3v"] {
        let g = group(name);
        let seed = [6.0, 2.5, 3.0];
        let centres: Vec<[f64; 3]> = g.operators().iter().map(|m| mat_vec(m, seed)).collect();
        let sigma2 = 2.0f64 * 2.0;
        let mut map = vec![0.0f32; d * d * d];
        for k in 0..d {
            for i in 0..d {
                for j in 0..d {
                    let r = [j as f64 - c, i as f64 - c, k as f64 - c];
                    let v: f64 = centres
                        .iter()
                        .map(|m| (-((r[0] - m[0]).powi(2) + (r[1] - m[1]).powi(2) + (r[2] - m[2]).powi(2)) / (2.0 * sigma2)).exp())
                        .sum();
                    map[(k * d + i) * d + j] = v as f32;
                }
            }
        }
        let s = symmetrize_map(&map, d, &g);
        let scale = map.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let diff = s.iter().zip(&map).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 0.05 * scale, "{name}: {diff} of {scale}");
        // An asymmetric map is changed much more.
        let lone: Vec<f32> = (0..d * d * d)
            .map(|idx| {
                let (k, i, j) = (idx / (d * d), (idx / d) % d, idx % d);
                let r = [j as f64 - c - seed[0], i as f64 - c - seed[1], k as f64 - c - seed[2]];
                (-(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]) / (2.0 * sigma2)).exp() as f32
            })
            .collect();
        let sl = symmetrize_map(&lone, d, &g);
        let change = sl.iter().zip(&lone).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(change > 0.5, "{name}: {change}");
    }
}

#[test]
fn symmetric_insertion_equals_inserting_at_every_expanded_pose() {
    use cryosplat_core::backproject::{Accumulator, InsertScratch};
    use cryosplat_core::ctf::CtfParams;
    use cryosplat_core::pose::Pose;
    use cryosplat_core::rotation::random_rotation;
    let (d, pad, apix) = (16, 2, 1.5);
    let mut rng = Rng::new(11);
    let images: Vec<(Vec<f32>, Pose)> = (0..3)
        .map(|_| {
            let img: Vec<f32> = (0..d * d).map(|_| rng.normal() as f32).collect();
            let pose = Pose { rot: random_rotation(&mut rng), origin_a: [rng.uniform_range(-2.0, 2.0), rng.uniform_range(-2.0, 2.0)] };
            (img, pose)
        })
        .collect();
    let ctf = CtfParams {
        voltage_kv: 300.0,
        cs_mm: 2.7,
        amp_contrast: 0.1,
        defocus_u_a: 15000.0,
        defocus_v_a: 14000.0,
        defocus_angle_deg: 30.0,
        phase_shift_deg: 0.0,
        bfactor_a2: 0.0,
        scale: 1.0,
    };
    let mut s = InsertScratch::new(d, pad, apix);
    // The identity alone is the plain insertion, bit for bit.
    let (mut plain, mut one) = (Accumulator::new(d, pad), Accumulator::new(d, pad));
    for (img, pose) in &images {
        plain.insert(img, pose, apix, Some(&ctf), &mut s);
        one.insert_symmetric(img, pose, apix, Some(&ctf), &[IDENTITY], &mut s);
    }
    assert_eq!(plain.finish(0.01), one.finish(0.01));
    // A group (with a mirror) equals each image inserted at every pose A·R_k.
    let g = group("D3h");
    let (mut sym, mut expanded) = (Accumulator::new(d, pad), Accumulator::new(d, pad));
    for (img, pose) in &images {
        sym.insert_symmetric(img, pose, apix, Some(&ctf), g.operators(), &mut s);
        for r in g.operators() {
            expanded.insert(img, &Pose { rot: mat_mul(&pose.rot, r), origin_a: pose.origin_a }, apix, Some(&ctf), &mut s);
        }
    }
    assert_eq!(sym.count, 3);
    assert_eq!(expanded.count, 3 * g.order());
    let (a, b) = (sym.finish(0.01), expanded.finish(0.01));
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(diff <= 1e-5 * scale, "{diff} of {scale}");
    // The expanded map differs from the plain one (the operators did something).
    let p = plain.finish(0.01);
    let change = a.iter().zip(&p).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(change > 0.1 * scale, "{change}");
}
