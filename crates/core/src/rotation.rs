//! Rotations in the conventions of RELION, cryoSPARC and cryoDRGN.
//!
//! * **RELION Euler angles** (degrees at the file boundary) `rot` (φ), `tilt` (θ), `psi` (ψ),
//!   ZYZ: `A = Rz(ψ)·Ry(θ)·Rz(φ)` with
//!   `Rz(a) = [[cos a, sin a, 0], [−sin a, cos a, 0], [0, 0, 1]]` and
//!   `Ry(b) = [[cos b, 0, −sin b], [0, 1, 0], [sin b, 0, cos b]]`.
//!   A volume point `r` lands at `A·r` before projection along z.
//! * **Matrix → Euler** follows RELION's `Euler_matrix2angles`: tilt in [0°, 180°], rot and
//!   psi in [−180°, 180°]; at gimbal lock (`sqrt(A02² + A12²) ≤ 16·f32::EPSILON`) rot is set to 0
//!   and only psi carries the in-plane angle.
//! * **cryoSPARC** `alignments3D/pose` is a rotation vector (axis·angle, radians) `v`, and
//!   `A = R(v)ᵀ` where `R(v)` is the Rodrigues matrix.
//! * **cryoDRGN** pose pickles hold `A` itself.
//! * **Quaternions** are `(w, x, y, z)`, unit norm, with the usual active-rotation matrix.
//! * **Pose corrections** (refinement): a rotation vector `w` (radians) turns a recorded
//!   rotation `A₀` into `A = R(w)·A₀` ([`rotate_by_rotvec`]): the correction acts in the image
//!   frame, `w_z` turning the image in plane and `w_x`, `w_y` tilting the view.
//!   [`rotvec_gradient`] maps `∂L/∂A` to `∂L/∂w` at `w = 0` (about the current `A`), and
//!   [`rotvec_left_jacobian`] carries it to any `w`.

use crate::pose::{mat_mul, transpose, Mat3};
use crate::rng::Rng;

/// RELION's `A = Rz(psi)·Ry(tilt)·Rz(rot)` from angles in degrees.
pub fn euler_to_matrix(rot_deg: f64, tilt_deg: f64, psi_deg: f64) -> Mat3 {
    let (sa, ca) = rot_deg.to_radians().sin_cos();
    let (sb, cb) = tilt_deg.to_radians().sin_cos();
    let (sg, cg) = psi_deg.to_radians().sin_cos();
    let cc = cb * ca;
    let cs = cb * sa;
    let sc = sb * ca;
    let ss = sb * sa;
    [[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], [sc, ss, cb]]
}

/// RELION's `Euler_matrix2angles`: `(rot, tilt, psi)` in degrees for a rotation matrix `A`.
pub fn matrix_to_euler(a: &Mat3) -> (f64, f64, f64) {
    let abs_sb = (a[0][2] * a[0][2] + a[1][2] * a[1][2]).sqrt();
    if abs_sb > 16.0 * f32::EPSILON as f64 {
        let psi = a[1][2].atan2(-a[0][2]);
        let rot = a[2][1].atan2(a[2][0]);
        let tilt = abs_sb.atan2(a[2][2]);
        (rot.to_degrees(), tilt.to_degrees(), psi.to_degrees())
    } else if a[2][2] >= 0.0 {
        (0.0, 0.0, (-a[1][0]).atan2(a[0][0]).to_degrees())
    } else {
        (0.0, 180.0, a[1][0].atan2(-a[0][0]).to_degrees())
    }
}

/// The Rodrigues matrix of a rotation vector `v` (axis × angle in radians).
pub fn rotvec_to_rodrigues(v: [f64; 3]) -> Mat3 {
    let theta = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    // sin(θ)/θ and (1 − cos θ)/θ² with series near 0.
    let (a, b) = if theta < 1e-6 {
        let t2 = theta * theta;
        (1.0 - t2 / 6.0, 0.5 - t2 / 24.0)
    } else {
        (theta.sin() / theta, (1.0 - theta.cos()) / (theta * theta))
    };
    let [x, y, z] = v;
    [
        [1.0 - b * (y * y + z * z), b * x * y - a * z, b * x * z + a * y],
        [b * x * y + a * z, 1.0 - b * (x * x + z * z), b * y * z - a * x],
        [b * x * z - a * y, b * y * z + a * x, 1.0 - b * (x * x + y * y)],
    ]
}

/// cryoSPARC pose → RELION `A`: `A = R(v)ᵀ`.
pub fn cryosparc_rotvec_to_matrix(v: [f64; 3]) -> Mat3 {
    transpose(&rotvec_to_rodrigues(v))
}

/// The rotation vector whose Rodrigues matrix is `r` (angle in [0, π]).
pub fn rodrigues_to_rotvec(r: &Mat3) -> [f64; 3] {
    let q = matrix_to_quaternion(r);
    let (w, x, y, z) = (q[0], q[1], q[2], q[3]);
    let s = (x * x + y * y + z * z).sqrt();
    if s < 1e-12 {
        return [2.0 * x, 2.0 * y, 2.0 * z];
    }
    let angle = 2.0 * s.atan2(w);
    [x / s * angle, y / s * angle, z / s * angle]
}

/// RELION `A` → cryoSPARC pose.
pub fn matrix_to_cryosparc_rotvec(a: &Mat3) -> [f64; 3] {
    rodrigues_to_rotvec(&transpose(a))
}

/// The rotation matrix of a quaternion `(w, x, y, z)` (normalised first; zero → identity).
pub fn quaternion_to_matrix(q: [f64; 4]) -> Mat3 {
    let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    let [w, x, y, z] = if n > 0.0 && n.is_finite() { [q[0] / n, q[1] / n, q[2] / n, q[3] / n] } else { [1.0, 0.0, 0.0, 0.0] };
    [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
    ]
}

/// A unit quaternion `(w, x, y, z)` with `w ≥ 0` for a rotation matrix (Shepperd's method).
pub fn matrix_to_quaternion(m: &Mat3) -> [f64; 4] {
    let tr = m[0][0] + m[1][1] + m[2][2];
    let q = if tr > 0.0 {
        let s = (tr + 1.0).sqrt() * 2.0;
        [0.25 * s, (m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s]
    } else if m[0][0] > m[1][1] && m[0][0] > m[2][2] {
        let s = (1.0 + m[0][0] - m[1][1] - m[2][2]).sqrt() * 2.0;
        [(m[2][1] - m[1][2]) / s, 0.25 * s, (m[0][1] + m[1][0]) / s, (m[0][2] + m[2][0]) / s]
    } else if m[1][1] > m[2][2] {
        let s = (1.0 + m[1][1] - m[0][0] - m[2][2]).sqrt() * 2.0;
        [(m[0][2] - m[2][0]) / s, (m[0][1] + m[1][0]) / s, 0.25 * s, (m[1][2] + m[2][1]) / s]
    } else {
        let s = (1.0 + m[2][2] - m[0][0] - m[1][1]).sqrt() * 2.0;
        [(m[1][0] - m[0][1]) / s, (m[0][2] + m[2][0]) / s, (m[1][2] + m[2][1]) / s, 0.25 * s]
    };
    let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    let sign = if q[0] < 0.0 { -1.0 } else { 1.0 };
    [sign * q[0] / n, sign * q[1] / n, sign * q[2] / n, sign * q[3] / n]
}

/// A rotation drawn uniformly over SO(3).
pub fn random_rotation(rng: &mut Rng) -> Mat3 {
    quaternion_to_matrix(rng.unit_quaternion())
}

/// The angle in degrees of the rotation `aᵀ·b` (the geodesic distance between two rotations).
pub fn angle_between_deg(a: &Mat3, b: &Mat3) -> f64 {
    let mut tr = 0.0;
    for i in 0..3 {
        for k in 0..3 {
            tr += a[k][i] * b[k][i];
        }
    }
    ((tr - 1.0) / 2.0).clamp(-1.0, 1.0).acos().to_degrees()
}

/// `R(w)·a`: the rotation `a` corrected by the rotation vector `w` (radians) in the image frame
/// (see the module docs).
pub fn rotate_by_rotvec(w: [f64; 3], a: &Mat3) -> Mat3 {
    mat_mul(&rotvec_to_rodrigues(w), a)
}

/// `∂L/∂w` at `w = 0` for `L(R(w)·a)`, from `grad_a = ∂L/∂A` at `A = a` (entries treated as
/// independent; the renderer's `ImageStats::grad_rot` gives the first two rows, the third being
/// zero since it does not enter a projection). With `∂A/∂w_k = [e_k]×·a`, the gradient is
/// `Σ_c a_c × g_c` over the columns `a_c` of `a` and `g_c` of `grad_a`.
pub fn rotvec_gradient(a: &Mat3, grad_a: &Mat3) -> [f64; 3] {
    let mut g = [0.0; 3];
    for c in 0..3 {
        let (x, y) = ([a[0][c], a[1][c], a[2][c]], [grad_a[0][c], grad_a[1][c], grad_a[2][c]]);
        g[0] += x[1] * y[2] - x[2] * y[1];
        g[1] += x[2] * y[0] - x[0] * y[2];
        g[2] += x[0] * y[1] - x[1] * y[0];
    }
    g
}

/// The left Jacobian `J(w)` of SO(3): `R(w + δ) = R(J(w)·δ)·R(w)` to first order in `δ`, so
/// that the gradient of `L(R(w)·a₀)` with respect to `w` is
/// `J(w)ᵀ·`[`rotvec_gradient`]`(R(w)·a₀, ∂L/∂A)`. `J(w) = I + (1 − cos θ)/θ²·[w]× +
/// (θ − sin θ)/θ³·[w]×²` with `θ = |w|` (series near 0).
pub fn rotvec_left_jacobian(w: [f64; 3]) -> Mat3 {
    let t2 = w[0] * w[0] + w[1] * w[1] + w[2] * w[2];
    let t = t2.sqrt();
    let (b, c) = if t < 1e-4 { (0.5 - t2 / 24.0, 1.0 / 6.0 - t2 / 120.0) } else { ((1.0 - t.cos()) / t2, (t - t.sin()) / (t2 * t)) };
    let k = [[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]];
    let k2 = mat_mul(&k, &k);
    let mut j = [[0.0; 3]; 3];
    for r in 0..3 {
        for q in 0..3 {
            j[r][q] = if r == q { 1.0 } else { 0.0 } + b * k[r][q] + c * k2[r][q];
        }
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quaternion_round_trip_and_orthogonality() {
        let mut rng = Rng::new(5);
        for _ in 0..100 {
            let r = random_rotation(&mut rng);
            let q = matrix_to_quaternion(&r);
            let r2 = quaternion_to_matrix(q);
            let rt = mat_mul(&r, &transpose(&r));
            for i in 0..3 {
                for j in 0..3 {
                    assert!((r[i][j] - r2[i][j]).abs() < 1e-12);
                    assert!((rt[i][j] - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
                }
            }
            let v = rodrigues_to_rotvec(&r);
            let r3 = rotvec_to_rodrigues(v);
            for i in 0..3 {
                for j in 0..3 {
                    assert!((r[i][j] - r3[i][j]).abs() < 1e-10);
                }
            }
        }
    }

    /// A smooth function of the first two rows of a matrix and its gradient (third row zero,
    /// as the renderer's).
    fn loss_and_grad(a: &Mat3) -> (f64, Mat3) {
        let c = [[0.3, -1.2, 0.7], [2.1, 0.4, -0.9]];
        let mut l = 0.0;
        let mut g = [[0.0; 3]; 3];
        for r in 0..2 {
            for k in 0..3 {
                l += c[r][k] * a[r][k] + 0.5 * (r + k + 1) as f64 * a[r][k] * a[r][k] * a[r][k];
                g[r][k] = c[r][k] + 1.5 * (r + k + 1) as f64 * a[r][k] * a[r][k];
            }
        }
        (l, g)
    }

    #[test]
    fn rotvec_gradient_matches_central_differences_at_zero_and_away_from_it() {
        // ∂/∂w of L(R(w)·a₀) by central differences (step 1e-6, f64) against
        // J(w)ᵀ·rotvec_gradient(R(w)·a₀, ∂L/∂A), at w = 0 (where J = I) and at w of a few
        // degrees to a radian, within 1e-7 of the gradient's norm.
        let mut rng = Rng::new(8);
        for case in 0..20 {
            let a0 = random_rotation(&mut rng);
            let size = [0.0, 0.05, 1.0][case % 3];
            let w: [f64; 3] = std::array::from_fn(|_| size * rng.normal());
            let a = rotate_by_rotvec(w, &a0);
            let (_, g) = loss_and_grad(&a);
            let j = rotvec_left_jacobian(w);
            let g0 = rotvec_gradient(&a, &g);
            let got: [f64; 3] = std::array::from_fn(|k| j[0][k] * g0[0] + j[1][k] * g0[1] + j[2][k] * g0[2]);
            let h = 1e-6;
            let want: [f64; 3] = std::array::from_fn(|k| {
                let (mut p, mut m) = (w, w);
                p[k] += h;
                m[k] -= h;
                (loss_and_grad(&rotate_by_rotvec(p, &a0)).0 - loss_and_grad(&rotate_by_rotvec(m, &a0)).0) / (2.0 * h)
            });
            let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!(norm > 0.1, "case {case}: degenerate");
            for k in 0..3 {
                assert!((got[k] - want[k]).abs() < 1e-7 * norm, "case {case}, w = {w:?}, component {k}: {} vs {}", got[k], want[k]);
            }
        }
    }
}
