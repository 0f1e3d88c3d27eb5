//! Symmetry expansion of a Gaussian model of the asymmetric unit, and its adjoint.
//!
//! A model with point-group symmetry keeps the raw parameters of one asymmetric unit (`N`
//! Gaussians); every image is rendered from its `|G|` copies. Copy `k` of Gaussian `i` has
//! the mean `R_k·μ_i` (box units about the box centre, the convention of
//! [`crate::symmetry`]), the same scales and amplitude, and the frame `P_k·R(q_i)`, where
//! `P_k = R_k` for a rotation and `P_k = −R_k` for an improper operator (a mirror, the
//! inversion or a rotoreflection). A Gaussian is symmetric about its mean, so its covariance
//! `R_k·Σ·R_kᵀ` under an improper `R_k` equals `P_k·Σ·P_kᵀ` with the proper rotation `P_k`:
//! a quaternion holds every copy's frame. Its raw quaternion is `p_k ⊗ q̂_i`, with `p_k` the
//! unit quaternion of `P_k`: left multiplication by a unit quaternion keeps the norm, so it
//! commutes with the normalisation in the activation (see [`crate::gaussian`]) and the copy's
//! raw parameters are linear in the unit's. The expanded model therefore draws a map with
//! `V(R_k·r) = V(r)` for every operator, proper or not.
//!
//! The expansion is linear, so the gradient of a function of the expanded model with respect
//! to the unit's raw parameters is the adjoint applied to the expanded gradient
//! ([`SymmetryExpansion::fold_grad`]): `Σ_k R_kᵀ·g_k` for the mean, `Σ_k L(p_k)ᵀ·g_k` for the
//! raw quaternion (`L(p)` the matrix of `q ↦ p ⊗ q`), and `Σ_k g_k` for scales and amplitude.
//!
//! A unit Gaussian whose raw quaternion has zero (or infinite) norm reads as the identity
//! rotation (as in the renderer); its copies get the rotations `R_k` themselves, and its
//! quaternion gets no gradient, as in the renderer.
//!
//! Layout: the expanded model is copy-major, row `k·N + i` is copy `k` of Gaussian `i`, and
//! copy 0 (the identity) is the unit itself.

use crate::gaussian::{rotation_to_quat, GaussianModel, PARAMS_PER_GAUSSIAN, P_MEAN, P_QUAT};
use crate::symmetry::PointGroup;

/// The operators of a proper point group in the form the expansion needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SymmetryExpansion {
    name: String,
    /// `R_k` in f32, the identity first.
    rot: Vec<[[f32; 3]; 3]>,
    /// The unit quaternion `(w, x, y, z)` of each frame rotation `P_k` (`R_k`, or `−R_k` for
    /// an improper operator).
    quat: Vec<[f32; 4]>,
}

/// `q ⊗ p` (Hamilton product, `(w, x, y, z)`).
fn quat_mul(q: [f32; 4], p: [f32; 4]) -> [f32; 4] {
    let [a, b, c, d] = q;
    let [w, x, y, z] = p;
    [a * w - b * x - c * y - d * z, b * w + a * x - d * y + c * z, c * w + d * x + a * y - b * z, d * w - c * x + b * y + a * z]
}

/// `L(q)ᵀ·g` with `L(q)` the matrix of `p ↦ q ⊗ p`.
fn quat_mul_adjoint(q: [f32; 4], g: [f32; 4]) -> [f32; 4] {
    let [a, b, c, d] = q;
    [
        a * g[0] + b * g[1] + c * g[2] + d * g[3],
        -b * g[0] + a * g[1] + d * g[2] - c * g[3],
        -c * g[0] - d * g[1] + a * g[2] + b * g[3],
        -d * g[0] + c * g[1] - b * g[2] + a * g[3],
    ]
}

/// Whether the renderer reads this raw quaternion as itself normalised (else as the identity).
fn quat_usable(q: [f32; 4]) -> bool {
    let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    n > 0.0 && n < f32::INFINITY
}

impl SymmetryExpansion {
    /// The expansion for `group` (any group [`PointGroup::parse`] accepts).
    pub fn new(group: &PointGroup) -> Self {
        let rot = group.operators().iter().map(|m| m.map(|row| row.map(|v| v as f32))).collect();
        let quat = group
            .operators()
            .iter()
            .map(|m| {
                let frame = if crate::symmetry::det(m) < 0.0 { m.map(|row| row.map(|v| -v)) } else { *m };
                rotation_to_quat(&frame).map(|v| v as f32)
            })
            .collect();
        SymmetryExpansion { name: group.name().into(), rot, quat }
    }

    /// The group's canonical name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of copies `|G|`.
    pub fn order(&self) -> usize {
        self.rot.len()
    }

    /// Write the `|G|·N` copies of `unit` into `out` (copy-major, see the module docs). `out`
    /// is resized to fit; it allocates only when it grows.
    pub fn expand(&self, unit: &GaussianModel, out: &mut GaussianModel) {
        let n = unit.len();
        out.params.resize(n * self.order(), [0.0; PARAMS_PER_GAUSSIAN]);
        for (k, (r, qk)) in self.rot.iter().zip(&self.quat).enumerate() {
            for (dst, src) in out.params[k * n..(k + 1) * n].iter_mut().zip(&unit.params) {
                *dst = *src;
                let m = [src[P_MEAN], src[P_MEAN + 1], src[P_MEAN + 2]];
                for (a, row) in r.iter().enumerate() {
                    dst[P_MEAN + a] = row[0] * m[0] + row[1] * m[1] + row[2] * m[2];
                }
                let q = [src[P_QUAT], src[P_QUAT + 1], src[P_QUAT + 2], src[P_QUAT + 3]];
                let qc = if quat_usable(q) { quat_mul(*qk, q) } else { *qk };
                dst[P_QUAT..P_QUAT + 4].copy_from_slice(&qc);
            }
        }
    }

    /// Add the gradient with respect to the unit's raw parameters into `unit_grad` (`N` rows),
    /// given `unit` and the gradient `expanded_grad` (`|G|·N` rows, copy-major) with respect to
    /// the expansion of `unit`. Sums run over the copies in order, so the result is
    /// reproducible.
    pub fn fold_grad(
        &self,
        unit: &GaussianModel,
        expanded_grad: &[[f32; PARAMS_PER_GAUSSIAN]],
        unit_grad: &mut [[f32; PARAMS_PER_GAUSSIAN]],
    ) {
        let n = unit.len();
        assert_eq!(unit_grad.len(), n, "unit gradient rows");
        assert_eq!(expanded_grad.len(), n * self.order(), "expanded gradient rows");
        for (k, (r, qk)) in self.rot.iter().zip(&self.quat).enumerate() {
            let rows = &expanded_grad[k * n..(k + 1) * n];
            for ((gu, ge), p) in unit_grad.iter_mut().zip(rows).zip(&unit.params) {
                for j in 0..PARAMS_PER_GAUSSIAN {
                    if !(P_MEAN..P_MEAN + 3).contains(&j) && !(P_QUAT..P_QUAT + 4).contains(&j) {
                        gu[j] += ge[j];
                    }
                }
                for a in 0..3 {
                    gu[P_MEAN + a] += r[0][a] * ge[P_MEAN] + r[1][a] * ge[P_MEAN + 1] + r[2][a] * ge[P_MEAN + 2];
                }
                if quat_usable([p[P_QUAT], p[P_QUAT + 1], p[P_QUAT + 2], p[P_QUAT + 3]]) {
                    let gq = quat_mul_adjoint(*qk, [ge[P_QUAT], ge[P_QUAT + 1], ge[P_QUAT + 2], ge[P_QUAT + 3]]);
                    for c in 0..4 {
                        gu[P_QUAT + c] += gq[c];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gaussian::quat_to_rotation;
    use crate::pose::{mat_mul, Pose};
    use crate::render::{ImageTarget, RenderOptions, Renderer};
    use crate::rng::Rng;
    use crate::rotation::random_rotation;
    use crate::voxel::voxelize_model;

    /// A small off-centre asymmetric model with random rotations and anisotropic scales.
    fn unit_model(n: usize, seed: u64) -> GaussianModel {
        unit_model_mass(n, seed, 1.0)
    }

    /// As [`unit_model`], amplitudes multiplied by `mass`.
    fn unit_model_mass(n: usize, seed: u64, mass: f32) -> GaussianModel {
        let mut rng = Rng::new(seed);
        let params = (0..n)
            .map(|_| {
                let mean = [0.12 + 0.05 * rng.normal() as f32, 0.04 + 0.05 * rng.normal() as f32, 0.06 * rng.normal() as f32];
                let scales = [0.02 + 0.01 * rng.uniform() as f32, 0.03 + 0.01 * rng.uniform() as f32, 0.015 + 0.01 * rng.uniform() as f32];
                let q: [f64; 4] = [rng.normal(), rng.normal(), rng.normal(), rng.normal()];
                // Raw quaternions need not be normalised.
                let quat = q.map(|v| (1.3 * v) as f32);
                GaussianModel::raw_from_physical(mean, scales, quat, mass * (0.5 + rng.uniform() as f32))
            })
            .collect();
        GaussianModel { params }
    }

    /// `V(R·r)` against `V(r)` on the grid about `D/2`, for `R` mapping the grid onto itself.
    fn grid_asymmetry(map: &[f32], d: usize, r: &crate::pose::Mat3) -> f32 {
        let c = (d / 2) as f64;
        let mut worst = 0.0f32;
        for k in 0..d {
            for i in 0..d {
                for j in 0..d {
                    let p = crate::pose::mat_vec(r, [j as f64 - c, i as f64 - c, k as f64 - c]);
                    let q: Vec<f64> = p.iter().map(|v| v.round() + c).collect();
                    if q.iter().all(|&v| v >= 0.0 && v < d as f64) {
                        let (x, y, z) = (q[0] as usize, q[1] as usize, q[2] as usize);
                        worst = worst.max((map[(z * d + y) * d + x] - map[(k * d + i) * d + j]).abs());
                    }
                }
            }
        }
        worst
    }

    #[test]
    fn copies_carry_the_operators() {
        let g = PointGroup::parse("D3").unwrap();
        let e = SymmetryExpansion::new(&g);
        let unit = unit_model(5, 1);
        let mut out = GaussianModel { params: Vec::new() };
        e.expand(&unit, &mut out);
        assert_eq!(out.len(), 30);
        assert_eq!(&out.params[..5], &unit.params[..], "copy 0 is the unit");
        // The copies' mass lies as far from the centre as the unit's.
        let (ru, re) = (unit.mean_square_radius_a2(32, 1.0), out.mean_square_radius_a2(32, 1.0));
        assert!((ru - re).abs() < 1e-5 * ru, "{ru} {re}");
        for (k, rk) in g.operators().iter().enumerate() {
            for i in 0..5 {
                let (mu, s, q, w) = unit.physical(i);
                let (mc, sc, qc, wc) = out.physical(k * 5 + i);
                assert_eq!((s, w), (sc, wc));
                let want = crate::pose::mat_vec(rk, mu.map(|v| v as f64));
                for a in 0..3 {
                    assert!((mc[a] as f64 - want[a]).abs() < 1e-6);
                }
                let want_r = mat_mul(rk, &quat_to_rotation(q.map(|v| v as f64)));
                let got_r = quat_to_rotation(qc.map(|v| v as f64));
                for (a, b) in want_r.iter().flatten().zip(got_r.iter().flatten()) {
                    assert!((a - b).abs() < 1e-5, "{want_r:?} {got_r:?}");
                }
            }
        }
    }

    #[test]
    fn copies_under_improper_operators_carry_the_reflected_covariance() {
        // The copy of a Gaussian under a mirror or the inversion has the mean R·μ and the
        // covariance R·Σ·Rᵀ, though its frame is a proper rotation.
        for name in ["Ci", "Cs", "C4h", "D2h", "S4", "Oh"] {
            let g = PointGroup::parse(name).unwrap();
            assert!(!g.is_proper(), "{name}");
            let e = SymmetryExpansion::new(&g);
            assert_eq!(e.order(), g.order());
            let unit = unit_model(3, 4);
            let mut out = GaussianModel { params: Vec::new() };
            e.expand(&unit, &mut out);
            let covariance = |q: [f32; 4], s: [f32; 3]| {
                let r = quat_to_rotation(q.map(|v| v as f64));
                let mut c = [[0.0f64; 3]; 3];
                for (a, row) in c.iter_mut().enumerate() {
                    for (b, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|t| r[a][t] * r[b][t] * (s[t] as f64).powi(2)).sum();
                    }
                }
                c
            };
            let mut improper = 0;
            for (k, rk) in g.operators().iter().enumerate() {
                improper += usize::from(crate::symmetry::det(rk) < 0.0);
                for i in 0..3 {
                    let (mu, s, q, _) = unit.physical(i);
                    let (mc, sc, qc, _) = out.physical(k * 3 + i);
                    let want = crate::pose::mat_vec(rk, mu.map(|v| v as f64));
                    for a in 0..3 {
                        assert!((mc[a] as f64 - want[a]).abs() < 1e-6, "{name} operator {k}");
                    }
                    let c = covariance(q, s);
                    let want_c = mat_mul(&mat_mul(rk, &c), &crate::pose::transpose(rk));
                    let got_c = covariance(qc, sc);
                    for (x, y) in want_c.iter().flatten().zip(got_c.iter().flatten()) {
                        assert!((x - y).abs() < 1e-7, "{name} operator {k}: {want_c:?} {got_c:?}");
                    }
                }
            }
            assert!(improper > 0, "{name}");
        }
        assert_eq!(SymmetryExpansion::new(&PointGroup::c1()).order(), 1);
    }

    #[test]
    fn the_voxelised_expansion_is_symmetric() {
        let d = 32;
        for name in ["C4", "D2", "O", "C2v", "D2h", "Ci"] {
            let g = PointGroup::parse(name).unwrap();
            let e = SymmetryExpansion::new(&g);
            let mut out = GaussianModel { params: Vec::new() };
            e.expand(&unit_model(6, 2), &mut out);
            let map = voxelize_model(&out, d);
            let peak = map.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(peak > 0.0);
            for r in g.operators() {
                let a = grid_asymmetry(&map, d, r);
                assert!(a <= 1e-5 * peak, "{name}: asymmetry {a} of {peak}");
            }
            // The unit alone is not symmetric: the test can fail.
            let unit_map = voxelize_model(&unit_model(6, 2), d);
            let up = unit_map.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(grid_asymmetry(&unit_map, d, &g.operators()[1]) > 0.1 * up);
        }
    }

    #[test]
    fn folding_is_the_adjoint_of_the_expansion() {
        // The expansion is linear in the raw parameters: <expand(v), g> = <v, fold(g)>.
        for name in ["I", "D3v", "Ih"] {
            let e = SymmetryExpansion::new(&PointGroup::parse(name).unwrap());
            let v = unit_model(4, 3);
            let mut rng = Rng::new(5);
            let g: Vec<[f32; PARAMS_PER_GAUSSIAN]> = (0..4 * e.order()).map(|_| std::array::from_fn(|_| rng.normal() as f32)).collect();
            let mut ev = GaussianModel { params: Vec::new() };
            e.expand(&v, &mut ev);
            let mut folded = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; 4];
            e.fold_grad(&v, &g, &mut folded);
            let lhs: f64 = ev.params.iter().flatten().zip(g.iter().flatten()).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rhs: f64 = v.params.iter().flatten().zip(folded.iter().flatten()).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!((lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0), "{name}: {lhs} {rhs}");
        }
    }

    #[test]
    fn the_folded_gradient_matches_finite_differences_of_the_loss() {
        let d = 32;
        for name in ["C3", "C2h"] {
            let e = SymmetryExpansion::new(&PointGroup::parse(name).unwrap());
            // Image values of order one, so that the f32 loss resolves the differences.
            let unit = unit_model_mass(3, 7, 0.01);
            let mut rng = Rng::new(11);
            let pose = Pose { rot: random_rotation(&mut rng), origin_a: [0.7, -0.4] };
            let observed: Vec<f32> = (0..d * d).map(|_| rng.uniform() as f32).collect();
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            let mut r = Renderer::new(d, RenderOptions { n_sigma: 6.0, threads: 1 });
            let t = ImageTarget { image: &observed, ctf_rfft: &[], pose: &pose, apix: 1.5 };
            let mut buf = GaussianModel { params: Vec::new() };
            let mut loss = |m: &GaussianModel, grad: &mut Vec<[f32; PARAMS_PER_GAUSSIAN]>| {
                e.expand(m, &mut buf);
                grad.clear();
                grad.resize(buf.len(), [0.0; PARAMS_PER_GAUSSIAN]);
                pool.install(|| r.loss_and_grad(&buf, &t, grad)) as f64
            };
            let mut eg = Vec::new();
            loss(&unit, &mut eg);
            let mut folded = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; unit.len()];
            e.fold_grad(&unit, &eg, &mut folded);
            let mut scratch = Vec::new();
            let big = folded.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs() as f64));
            for (i, row) in folded.iter().enumerate() {
                for (j, &an) in row.iter().enumerate() {
                    let h = 2e-3f32;
                    let mut up = unit.clone();
                    up.params[i][j] += h;
                    let mut dn = unit.clone();
                    dn.params[i][j] -= h;
                    let fd = (loss(&up, &mut scratch) - loss(&dn, &mut scratch)) / (2.0 * h as f64);
                    let an = an as f64;
                    assert!(
                        (fd - an).abs() <= 2e-2 * an.abs().max(fd.abs()) + 1e-3 * big,
                        "{name}: Gaussian {i} parameter {j}: finite difference {fd}, folded {an}"
                    );
                }
            }
            // The copies matter: the unit's own gradient (copy 0 only) differs from the folded one.
            let own: f64 = eg[..unit.len()].iter().flatten().zip(folded.iter().flatten()).map(|(a, b)| ((a - b) as f64).abs()).sum();
            assert!(own > 0.1 * big, "{name}: {own} {big}");
        }
    }
}
