//! Point-group symmetry: RELION's group names, their operators, and symmetrising a map.
//!
//! # Convention
//!
//! A group is a finite set of orthogonal 3×3 matrices `R_k` (the identity first) acting on
//! **map coordinates about the box centre** (voxel `D/2` along each axis, the crate's grid
//! origin): a map with the symmetry obeys `V(R_k·r) = V(r)` for every `k`, an atomic model's
//! copies sit at `R_k·r`, and a particle of pose `A` is seen equally well under the poses
//! `A·R_k` (RELION's symmetry expansion). Because the operators of a group are closed under
//! inversion, the same set also describes the transposes: `{R_k} = {R_kᵀ}`.
//!
//! The groups and their orientation relative to the map are RELION's (`src/symmetries.cpp`),
//! written here from the group definitions as generators (axes, mirror normals, inversion)
//! and completed by closure under multiplication:
//!
//! | name | generators | order |
//! |---|---|---|
//! | `C1` | — | 1 |
//! | `Cn` | `n`-fold about z | n |
//! | `Ci` | inversion | 2 |
//! | `Cs` | mirror z → −z | 2 |
//! | `Cnv` | `n`-fold about z, mirror y → −y | 2n |
//! | `Cnh` | `n`-fold about z, mirror z → −z | 2n |
//! | `Sn` (n even) | `n/2`-fold about z, inversion | n |
//! | `Dn` | `n`-fold about z, two-fold about x | 2n |
//! | `Dnv` | `Dn`, mirror x → −x | 4n |
//! | `Dnh` | `Dn`, mirror z → −z | 4n |
//! | `T` | three-fold about z, two-fold about `(0, √(2/3), √(1/3))` | 12 |
//! | `Td` | `T`, mirror with normal `(1/2, √3/2, 0)` | 24 |
//! | `Th` | `T`, inversion | 24 |
//! | `O` | four-fold about z, three-fold about `(1, 1, 1)` | 24 |
//! | `Oh` | `O`, mirror with normal `(0, 1, 1)` | 48 |
//! | `I`, `I2` | two-folds on x, y, z; five-fold about `(1, 0, τ)` | 60 |
//! | `I1` | `I2` turned 90° about z: five-fold about `(τ, 0, −1)` | 60 |
//! | `I3` | five-fold about z, two-fold about `(−1, 0, τ)` | 60 |
//! | `I4` | five-fold about z, two-fold about `(1, 0, τ)` | 60 |
//! | `Ih`, `I2h` | `I2`, mirror x → −x | 120 |
//! | `I1h` | `I1`, mirror z → −z | 120 |
//! | `I3h` | `I3`, mirror with normal `(τ, 0, 1)` | 120 |
//! | `I4h` | `I4`, mirror with normal `(τ, 0, −1)` | 120 |
//!
//! (`τ` is the golden ratio; axes need not be unit length here.) Names are case-insensitive
//! and `n` runs from 1 to 99, as in RELION. Two of RELION's definitions are kept as RELION has
//! them although they differ from the textbook groups for some `n`: `Sn` is `C(n/2)` with the
//! inversion, which is the rotoreflection group `S_n` only when `n/2` is odd (for `n/2` even
//! it is `C(n/2)h`); and the mirror of `Dnv` contains a two-fold axis when `n` is even, so
//! there it gives `Dnh` in another orientation. RELION defines no operators for `I5` and
//! `I5h`; they are refused with an error.

use crate::pose::{mat_mul, mat_vec, Mat3, IDENTITY};
use crate::projector::trilinear;
use rayon::prelude::*;

/// A point group: its canonical name and its operators (the identity first).
#[derive(Clone, Debug, PartialEq)]
pub struct PointGroup {
    name: String,
    ops: Vec<Mat3>,
}

/// A symmetry name that is not a known point group, or one without operators.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("symmetry '{name}': {problem}")]
pub struct SymmetryError {
    pub name: String,
    pub problem: String,
}

/// Matrix entries are compared with this tolerance when the group is closed.
const CLOSURE_TOL: f64 = 1e-6;

/// The golden ratio.
fn tau() -> f64 {
    (1.0 + 5f64.sqrt()) / 2.0
}

/// `v` scaled to length 1.
pub(crate) fn unit(v: [f64; 3]) -> [f64; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [v[0] / n, v[1] / n, v[2] / n]
}

/// The rotation by `angle` radians about `axis` (right-handed, active: it moves points).
pub fn axis_angle(axis: [f64; 3], angle: f64) -> Mat3 {
    let [x, y, z] = unit(axis);
    let (s, c) = angle.sin_cos();
    let t = 1.0 - c;
    [
        [c + t * x * x, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, c + t * y * y, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, c + t * z * z],
    ]
}

/// The reflection through the plane (through the origin) with normal `normal`.
pub fn mirror(normal: [f64; 3]) -> Mat3 {
    let n = unit(normal);
    let mut m = IDENTITY;
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v -= 2.0 * n[i] * n[j];
        }
    }
    m
}

/// The inversion `r → −r`.
pub const INVERSION: Mat3 = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]];

/// All powers of the `fold`-fold rotation about `axis` (each from its own angle, so that no
/// rounding accumulates).
fn cyclic(fold: usize, axis: [f64; 3]) -> Vec<Mat3> {
    (1..fold).map(|k| axis_angle(axis, 2.0 * std::f64::consts::PI * k as f64 / fold as f64)).collect()
}

/// Entries within rounding of 0, ±1/2 or ±1 are set to that value exactly, so that operators
/// that map the grid onto itself do so without rounding.
fn snap(m: Mat3) -> Mat3 {
    let mut m = m;
    for v in m.iter_mut().flatten() {
        let r = (*v * 2.0).round() / 2.0;
        if (*v - r).abs() < 1e-12 {
            *v = r;
        }
    }
    m
}

fn close(a: &Mat3, b: &Mat3) -> bool {
    a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| (x - y).abs() < CLOSURE_TOL)
}

/// The group generated by `gens`: the identity, the generators, and every product, in the
/// order they are found.
fn closure(gens: Vec<Mat3>) -> Vec<Mat3> {
    let mut ops = vec![IDENTITY];
    for g in gens.into_iter().map(snap) {
        if !ops.iter().any(|o| close(o, &g)) {
            ops.push(g);
        }
    }
    let mut done = 0;
    while done < ops.len() {
        // Multiply the newest elements by all others, both ways, until nothing new appears.
        let end = ops.len();
        for i in done..end {
            for j in 0..end {
                for p in [mat_mul(&ops[i], &ops[j]), mat_mul(&ops[j], &ops[i])] {
                    let p = snap(p);
                    if !ops.iter().any(|o| close(o, &p)) {
                        ops.push(p);
                    }
                }
            }
        }
        done = end;
    }
    ops
}

/// The generators of RELION's icosahedral settings 1–4 (see the module table).
fn icosahedral(setting: u32) -> Vec<Mat3> {
    let t = tau();
    let five = 2.0 * std::f64::consts::PI / 5.0;
    let half = std::f64::consts::PI;
    match setting {
        1 => vec![axis_angle([1.0, 0.0, 0.0], half), axis_angle([0.0, 1.0, 0.0], half), axis_angle([t, 0.0, -1.0], five)],
        2 => vec![axis_angle([0.0, 0.0, 1.0], half), axis_angle([1.0, 0.0, 0.0], half), axis_angle([1.0, 0.0, t], five)],
        3 => vec![axis_angle([0.0, 0.0, 1.0], five), axis_angle([-1.0, 0.0, t], half)],
        4 => vec![axis_angle([0.0, 0.0, 1.0], five), axis_angle([1.0, 0.0, t], half)],
        _ => unreachable!("icosahedral settings are 1 to 4"),
    }
}

impl PointGroup {
    /// The group of a RELION symmetry name (case-insensitive), e.g. `C4`, `D2`, `C3v`, `I3`.
    pub fn parse(name: &str) -> Result<PointGroup, SymmetryError> {
        let err = |problem: String| SymmetryError { name: name.to_string(), problem };
        let upper = name.trim().to_ascii_uppercase();
        if upper.is_empty() {
            return Err(err(
                "empty name; expected C1, Cn, Ci, Cs, Cnv, Cnh, Sn, Dn, Dnv, Dnh, T, Td, Th, O, Oh, I, I1–I4 or their h variants".into(),
            ));
        }
        let z = [0.0, 0.0, 1.0];
        let x = [1.0, 0.0, 0.0];
        let t = tau();
        let (canonical, gens): (String, Vec<Mat3>) = match upper.as_str() {
            "CI" => ("Ci".into(), vec![INVERSION]),
            "CS" => ("Cs".into(), vec![mirror(z)]),
            "T" => ("T".into(), tetrahedral()),
            "TD" => ("Td".into(), [tetrahedral(), vec![mirror([0.5, 3f64.sqrt() / 2.0, 0.0])]].concat()),
            "TH" => ("Th".into(), [tetrahedral(), vec![INVERSION]].concat()),
            "O" => ("O".into(), octahedral()),
            "OH" => ("Oh".into(), [octahedral(), vec![mirror([0.0, 1.0, 1.0])]].concat()),
            "I" => ("I".into(), icosahedral(2)),
            "I1" => ("I1".into(), icosahedral(1)),
            "I2" => ("I2".into(), icosahedral(2)),
            "I3" => ("I3".into(), icosahedral(3)),
            "I4" => ("I4".into(), icosahedral(4)),
            "IH" => ("Ih".into(), [icosahedral(2), vec![mirror(x)]].concat()),
            "I1H" => ("I1h".into(), [icosahedral(1), vec![mirror(z)]].concat()),
            "I2H" => ("I2h".into(), [icosahedral(2), vec![mirror(x)]].concat()),
            "I3H" => ("I3h".into(), [icosahedral(3), vec![mirror([t, 0.0, 1.0])]].concat()),
            "I4H" => ("I4h".into(), [icosahedral(4), vec![mirror([t, 0.0, -1.0])]].concat()),
            "I5" | "I5H" => {
                return Err(err(
                    "not supported: RELION defines no operators for the icosahedral setting 5; use I1, I2 (= I), I3 or I4".into()
                ))
            }
            _ => {
                let family = upper.chars().next().expect("non-empty");
                let rest = &upper[1..];
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                let suffix = &rest[digits.len()..];
                if !matches!(family, 'C' | 'D' | 'S') || digits.is_empty() || !matches!(suffix, "" | "V" | "H") {
                    return Err(err(
                        "unknown point group; expected C1, Cn, Ci, Cs, Cnv, Cnh, Sn, Dn, Dnv, Dnh, T, Td, Th, O, Oh, I, I1–I4 or their h variants".into(),
                    ));
                }
                let n: usize = match digits.parse() {
                    Ok(n) if (1..=99).contains(&n) && !digits.starts_with('0') => n,
                    _ => return Err(err(format!("order {digits}: expected 1 to 99"))),
                };
                let canonical = format!("{family}{n}{}", suffix.to_ascii_lowercase());
                let gens = match (family, suffix) {
                    ('C', "") => cyclic(n, z),
                    ('C', "V") => [cyclic(n, z), vec![mirror([0.0, 1.0, 0.0])]].concat(),
                    ('C', "H") => [cyclic(n, z), vec![mirror(z)]].concat(),
                    ('S', "") => {
                        if !n.is_multiple_of(2) {
                            return Err(err(format!("S{n}: the order of Sn must be even")));
                        }
                        [cyclic(n / 2, z), vec![INVERSION]].concat()
                    }
                    ('D', "") => [cyclic(n, z), vec![axis_angle(x, std::f64::consts::PI)]].concat(),
                    ('D', "V") => [cyclic(n, z), vec![axis_angle(x, std::f64::consts::PI), mirror(x)]].concat(),
                    ('D', "H") => [cyclic(n, z), vec![axis_angle(x, std::f64::consts::PI), mirror(z)]].concat(),
                    _ => return Err(err("unknown point group; Sn has no v or h variant".into())),
                };
                (canonical, gens)
            }
        };
        Ok(PointGroup { name: canonical, ops: closure(gens) })
    }

    /// The trivial group `C1`.
    pub fn c1() -> PointGroup {
        PointGroup { name: "C1".into(), ops: vec![IDENTITY] }
    }

    /// The canonical name (`C4`, `D2h`, `I3`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of operators `|G|`.
    pub fn order(&self) -> usize {
        self.ops.len()
    }

    /// The operators, the identity first (see the module docs for the convention).
    pub fn operators(&self) -> &[Mat3] {
        &self.ops
    }

    /// Whether this is `C1` (no symmetry).
    pub fn is_trivial(&self) -> bool {
        self.ops.len() == 1
    }

    /// Whether every operator is a proper rotation (determinant +1).
    pub fn is_proper(&self) -> bool {
        self.ops.iter().all(|m| det(m) > 0.0)
    }
}

/// RELION's `T`: three-fold about z, two-fold in the yz-plane.
fn tetrahedral() -> Vec<Mat3> {
    let third = 2.0 * std::f64::consts::PI / 3.0;
    vec![axis_angle([0.0, 0.0, 1.0], third), axis_angle([0.0, (2.0f64 / 3.0).sqrt(), (1.0f64 / 3.0).sqrt()], std::f64::consts::PI)]
}

/// RELION's `O`: four-folds on the axes, three-folds on the cube diagonals.
fn octahedral() -> Vec<Mat3> {
    vec![axis_angle([0.0, 0.0, 1.0], std::f64::consts::FRAC_PI_2), axis_angle([1.0, 1.0, 1.0], 2.0 * std::f64::consts::PI / 3.0)]
}

/// The determinant of a 3×3 matrix.
pub fn det(m: &Mat3) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// The map averaged over the group about the box centre: `S(r) = (1/|G|)·Σ_k V(R_k·r)`, with
/// `V` sampled by trilinear interpolation (zero outside the box) and `r` measured from voxel
/// `D/2`. The result obeys `S(R_k·r) = S(r)` wherever `R_k·r` stays on the grid inside the
/// box; for operators that map the grid onto itself (multiples of 90° about the axes, as in
/// `C2`, `C4`, `D2`, `D4`, `O`) this holds to float rounding, otherwise to interpolation
/// accuracy. `map` is `d³`, x fastest.
pub fn symmetrize_map(map: &[f32], d: usize, group: &PointGroup) -> Vec<f32> {
    assert_eq!(map.len(), d * d * d, "symmetrize_map: a {d}³ map");
    if group.is_trivial() {
        return map.to_vec();
    }
    let c = (d / 2) as f64;
    let inv = 1.0 / group.order() as f64;
    let mut out = vec![0.0f32; d * d * d];
    out.par_chunks_mut(d * d).enumerate().for_each(|(k, plane)| {
        let z = k as f64 - c;
        for i in 0..d {
            let y = i as f64 - c;
            for j in 0..d {
                let r = [j as f64 - c, y, z];
                let mut sum = 0.0;
                for g in group.operators() {
                    let q = mat_vec(g, r);
                    sum += trilinear(map, d, q[0] + c, q[1] + c, q[2] + c);
                }
                plane[i * d + j] = (sum * inv) as f32;
            }
        }
    });
    out
}
