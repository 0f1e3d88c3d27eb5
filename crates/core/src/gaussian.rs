//! The Gaussian mixture model of a map, in box units.
//!
//! # Units and parameterisation
//!
//! The model lives in **box units**: the box spans `[-0.5, 0.5]` on each axis, so one pixel
//! is `1/D` and a position in Å is `x_box · D · apix`. The default learning rates of the
//! method assume these units.
//!
//! Each Gaussian has [`PARAMS_PER_GAUSSIAN`] = 11 raw (unconstrained) parameters, stored
//! contiguously in this order:
//!
//! | index | name | activation |
//! |---|---|---|
//! | 0..3 | mean `μ = (x, y, z)` | none (box units) |
//! | 3..6 | raw scales `ŝ` | `s = clamp(softplus(ŝ), SCALE_MIN, SCALE_MAX)` (standard deviations along the principal axes, box units) |
//! | 6..10 | raw quaternion `q̂ = (w, x, y, z)` | `q = q̂/|q̂|` (a zero quaternion is read as the identity) |
//! | 10 | raw amplitude `â` | `w = softplus(â)` (integrated mass, ≥ 0) |
//!
//! The density is `V(r) = Σ w · N(r; μ, Σ)` with `Σ = R S Sᵀ Rᵀ`, `R` the rotation of `q` and
//! `S = diag(s)`; `N` is the normalised 3D Gaussian, so `w` is the Gaussian's integral in
//! (image value)·box² units: its projection integrates to `w` in every view.
//!
//! # Box units and Å
//!
//! [`PhysicalGaussian`] holds one Gaussian's activated parameters (box units, f64) and
//! [`GaussianA`] the same Gaussian in Å (mean, covariance, mass). The conversion is
//!
//! * position: `μ_Å = μ_box · D·apix`;
//! * scales: `s_Å = s_box · D·apix`, so `Σ_Å = Σ_box · (D·apix)²`;
//! * amplitude: `mass = w · (D·apix)²`.
//!
//! The amplitude factor is chosen so that **image values do not depend on the unit system**:
//! a projection pixel is `Σ w·N₂(p_box; m_box, C_box) = Σ mass·N₂(p_Å; m_Å, C_Å)`, because a 2D
//! normalised Gaussian scales as `1/(D·apix)²`. The 3D densities then relate as
//! `V_Å(r_Å) = V_box(r_box)/(D·apix)` (mass per Å³ against `w` per box³), and both integrate
//! along a ray to the same image value.

use crate::pose::Mat3;
use crate::rng::Rng;

/// Number of raw parameters per Gaussian.
pub const PARAMS_PER_GAUSSIAN: usize = 11;
/// Smallest standard deviation a Gaussian may have, in box units.
pub const SCALE_MIN: f32 = 1e-4;
/// Largest standard deviation a Gaussian may have, in box units.
pub const SCALE_MAX: f32 = 0.5;

/// Index of the first mean parameter.
pub const P_MEAN: usize = 0;
/// Index of the first raw scale parameter.
pub const P_SCALE: usize = 3;
/// Index of the first raw quaternion parameter (w, x, y, z).
pub const P_QUAT: usize = 6;
/// Index of the raw amplitude parameter.
pub const P_AMP: usize = 10;

/// `softplus(x) = ln(1 + eˣ)`, computed without overflow.
#[inline]
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else if x < -20.0 {
        x.exp()
    } else {
        x.exp().ln_1p()
    }
}

/// Derivative of [`softplus`]: the logistic function.
#[inline]
pub fn softplus_grad(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Inverse of [`softplus`] for `y > 0`.
#[inline]
pub fn softplus_inv(y: f32) -> f32 {
    if y > 20.0 {
        y
    } else {
        y.exp_m1().max(f32::MIN_POSITIVE).ln()
    }
}

/// Activated scale from a raw scale, and its derivative (zero where the clamp is active).
#[inline]
pub fn scale_activation(raw: f32) -> (f32, f32) {
    let s = softplus(raw);
    if s < SCALE_MIN {
        (SCALE_MIN, 0.0)
    } else if s > SCALE_MAX {
        (SCALE_MAX, 0.0)
    } else {
        (s, softplus_grad(raw))
    }
}

/// A mixture of anisotropic 3D Gaussians, as raw parameters (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianModel {
    /// `PARAMS_PER_GAUSSIAN` raw parameters per Gaussian.
    pub params: Vec<[f32; PARAMS_PER_GAUSSIAN]>,
}

impl GaussianModel {
    /// Number of Gaussians.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// A Gaussian's raw parameters from physical ones (box units): mean, standard
    /// deviations, rotation quaternion `(w, x, y, z)` and amplitude (mass).
    pub fn raw_from_physical(mean: [f32; 3], scales: [f32; 3], quat: [f32; 4], amp: f32) -> [f32; PARAMS_PER_GAUSSIAN] {
        let mut p = [0.0f32; PARAMS_PER_GAUSSIAN];
        p[P_MEAN..P_MEAN + 3].copy_from_slice(&mean);
        for k in 0..3 {
            p[P_SCALE + k] = softplus_inv(scales[k].clamp(SCALE_MIN, SCALE_MAX));
        }
        p[P_QUAT..P_QUAT + 4].copy_from_slice(&quat);
        p[P_AMP] = softplus_inv(amp.max(1e-30));
        p
    }

    /// Activated parameters of Gaussian `i`: (mean, scales, unit quaternion, amplitude).
    pub fn physical(&self, i: usize) -> ([f32; 3], [f32; 3], [f32; 4], f32) {
        let p = &self.params[i];
        let mean = [p[0], p[1], p[2]];
        let scales = [scale_activation(p[P_SCALE]).0, scale_activation(p[P_SCALE + 1]).0, scale_activation(p[P_SCALE + 2]).0];
        let q = [p[P_QUAT], p[P_QUAT + 1], p[P_QUAT + 2], p[P_QUAT + 3]];
        let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
        let quat = if n > 0.0 && n.is_finite() { [q[0] / n, q[1] / n, q[2] / n, q[3] / n] } else { [1.0, 0.0, 0.0, 0.0] };
        (mean, scales, quat, softplus(p[P_AMP]))
    }
}

/// Standard deviation of the initial positions around the box centre, in box units
/// (random initialisation of the method's paper).
pub const INIT_POSITION_SIGMA: f64 = 0.075;
/// Initial isotropic standard deviation of every Gaussian, in box units.
pub const INIT_SCALE: f64 = 0.0075;

/// [`softplus`] in f64, for reference computations on the same raw parameters.
#[inline]
pub fn softplus_f64(x: f64) -> f64 {
    if x > 35.0 {
        x
    } else if x < -35.0 {
        x.exp()
    } else {
        x.exp().ln_1p()
    }
}

/// [`softplus_grad`] in f64.
#[inline]
pub fn softplus_grad_f64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// [`scale_activation`] in f64 (same clamp bounds): the activated scale and its derivative.
#[inline]
pub fn scale_activation_f64(raw: f64) -> (f64, f64) {
    let s = softplus_f64(raw);
    if s < SCALE_MIN as f64 {
        (SCALE_MIN as f64, 0.0)
    } else if s > SCALE_MAX as f64 {
        (SCALE_MAX as f64, 0.0)
    } else {
        (s, softplus_grad_f64(raw))
    }
}

/// The rotation matrix of a unit quaternion `(w, x, y, z)`: a vector `v` in the Gaussian's
/// principal frame is `R·v` in the map frame.
pub fn quat_to_rotation(q: [f64; 4]) -> Mat3 {
    let [w, x, y, z] = q;
    [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
    ]
}

/// A unit quaternion `(w, x, y, z)` with `w ≥ 0` whose rotation is `r` (a proper rotation).
pub fn rotation_to_quat(r: &Mat3) -> [f64; 4] {
    let tr = r[0][0] + r[1][1] + r[2][2];
    let q = if tr > 0.0 {
        let s = 2.0 * (1.0 + tr).sqrt();
        [0.25 * s, (r[2][1] - r[1][2]) / s, (r[0][2] - r[2][0]) / s, (r[1][0] - r[0][1]) / s]
    } else if r[0][0] > r[1][1] && r[0][0] > r[2][2] {
        let s = 2.0 * (1.0 + r[0][0] - r[1][1] - r[2][2]).sqrt();
        [(r[2][1] - r[1][2]) / s, 0.25 * s, (r[0][1] + r[1][0]) / s, (r[0][2] + r[2][0]) / s]
    } else if r[1][1] > r[2][2] {
        let s = 2.0 * (1.0 + r[1][1] - r[0][0] - r[2][2]).sqrt();
        [(r[0][2] - r[2][0]) / s, (r[0][1] + r[1][0]) / s, 0.25 * s, (r[1][2] + r[2][1]) / s]
    } else {
        let s = 2.0 * (1.0 + r[2][2] - r[0][0] - r[1][1]).sqrt();
        [(r[1][0] - r[0][1]) / s, (r[0][2] + r[2][0]) / s, (r[1][2] + r[2][1]) / s, 0.25 * s]
    };
    let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
    let sign = if q[0] < 0.0 { -1.0 } else { 1.0 };
    [sign * q[0] / n, sign * q[1] / n, sign * q[2] / n, sign * q[3] / n]
}

/// The covariance `Σ = R S Sᵀ Rᵀ` of standard deviations `scales` along the principal axes
/// rotated by the unit quaternion `quat`. Same units as `scales`, squared.
pub fn covariance(scales: [f64; 3], quat: [f64; 4]) -> Mat3 {
    let r = quat_to_rotation(quat);
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| r[i][k] * scales[k] * scales[k] * r[j][k]).sum();
        }
    }
    c
}

/// Eigen-decomposition of a symmetric 3×3 matrix by cyclic Jacobi rotations: returns the
/// eigenvalues and a rotation matrix whose **columns** are the matching unit eigenvectors
/// (`m = V·diag(λ)·Vᵀ`, `det V = +1`). Eigenvalues are sorted in decreasing order.
#[allow(clippy::needless_range_loop)]
pub fn symmetric_eigen(m: &Mat3) -> ([f64; 3], Mat3) {
    let mut a = *m;
    let mut v = crate::pose::IDENTITY;
    for _sweep in 0..64 {
        let off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
        let diag = a[0][0] * a[0][0] + a[1][1] * a[1][1] + a[2][2] * a[2][2];
        if off <= 1e-32 * diag || off == 0.0 {
            break;
        }
        for (p, q) in [(0usize, 1usize), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            // Rotation in the (p, q) plane that zeroes a[p][q].
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            for k in 0..3 {
                let akp = a[k][p];
                let akq = a[k][q];
                a[k][p] = c * akp - s * akq;
                a[k][q] = s * akp + c * akq;
            }
            for k in 0..3 {
                let apk = a[p][k];
                let aqk = a[q][k];
                a[p][k] = c * apk - s * aqk;
                a[q][k] = s * apk + c * aqk;
            }
            for row in v.iter_mut() {
                let vp = row[p];
                let vq = row[q];
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    let mut idx = [0usize, 1, 2];
    idx.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let vals = [a[idx[0]][idx[0]], a[idx[1]][idx[1]], a[idx[2]][idx[2]]];
    let mut vecs = [[0.0; 3]; 3];
    for (col, &k) in idx.iter().enumerate() {
        for row in 0..3 {
            vecs[row][col] = v[row][k];
        }
    }
    let det = vecs[0][0] * (vecs[1][1] * vecs[2][2] - vecs[1][2] * vecs[2][1])
        - vecs[0][1] * (vecs[1][0] * vecs[2][2] - vecs[1][2] * vecs[2][0])
        + vecs[0][2] * (vecs[1][0] * vecs[2][1] - vecs[1][1] * vecs[2][0]);
    if det < 0.0 {
        for row in vecs.iter_mut() {
            row[2] = -row[2];
        }
    }
    (vals, vecs)
}

/// One Gaussian with activated parameters in box units (f64): mean, standard deviations along
/// the principal axes, unit rotation quaternion `(w, x, y, z)` and amplitude (integrated mass).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhysicalGaussian {
    pub mean: [f64; 3],
    pub scales: [f64; 3],
    pub quat: [f64; 4],
    pub amp: f64,
}

/// One Gaussian in Å: mean (Å), covariance (Å², symmetric positive definite) and mass, the
/// integral of its density (see the module docs for the mass unit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaussianA {
    pub mean_a: [f64; 3],
    pub cov_a2: Mat3,
    pub mass: f64,
}

impl PhysicalGaussian {
    /// Activated parameters from raw parameters held in f64 (same activations and clamps as
    /// [`GaussianModel::physical`]; a zero or non-finite quaternion reads as the identity).
    pub fn from_raw_f64(p: &[f64; PARAMS_PER_GAUSSIAN]) -> Self {
        let q = [p[P_QUAT], p[P_QUAT + 1], p[P_QUAT + 2], p[P_QUAT + 3]];
        let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
        let quat = if n > 0.0 && n.is_finite() { [q[0] / n, q[1] / n, q[2] / n, q[3] / n] } else { [1.0, 0.0, 0.0, 0.0] };
        PhysicalGaussian {
            mean: [p[P_MEAN], p[P_MEAN + 1], p[P_MEAN + 2]],
            scales: [scale_activation_f64(p[P_SCALE]).0, scale_activation_f64(p[P_SCALE + 1]).0, scale_activation_f64(p[P_SCALE + 2]).0],
            quat,
            amp: softplus_f64(p[P_AMP]),
        }
    }

    /// Rotation matrix of the quaternion.
    pub fn rotation(&self) -> Mat3 {
        quat_to_rotation(self.quat)
    }

    /// Covariance `Σ = R S Sᵀ Rᵀ` in box units².
    pub fn covariance(&self) -> Mat3 {
        covariance(self.scales, self.quat)
    }

    /// The same Gaussian in Å for a box of `d` pixels of `apix` Å.
    pub fn to_angstrom(&self, d: usize, apix: f64) -> GaussianA {
        let l = d as f64 * apix;
        let mut cov = self.covariance();
        for row in cov.iter_mut() {
            for c in row.iter_mut() {
                *c *= l * l;
            }
        }
        GaussianA { mean_a: [self.mean[0] * l, self.mean[1] * l, self.mean[2] * l], cov_a2: cov, mass: self.amp * l * l }
    }

    /// The same Gaussian as raw parameters (f32, see [`GaussianModel::raw_from_physical`]).
    pub fn to_raw(&self) -> [f32; PARAMS_PER_GAUSSIAN] {
        let f = |a: [f64; 3]| [a[0] as f32, a[1] as f32, a[2] as f32];
        let q = self.quat;
        GaussianModel::raw_from_physical(
            f(self.mean),
            f(self.scales),
            [q[0] as f32, q[1] as f32, q[2] as f32, q[3] as f32],
            self.amp as f32,
        )
    }
}

impl GaussianA {
    /// The same Gaussian in box units for a box of `d` pixels of `apix` Å. The covariance is
    /// diagonalised (principal axes sorted by decreasing spread); the scales are not clamped.
    pub fn to_box(&self, d: usize, apix: f64) -> PhysicalGaussian {
        let l = d as f64 * apix;
        let (vals, vecs) = symmetric_eigen(&self.cov_a2);
        PhysicalGaussian {
            mean: [self.mean_a[0] / l, self.mean_a[1] / l, self.mean_a[2] / l],
            scales: [vals[0].max(0.0).sqrt() / l, vals[1].max(0.0).sqrt() / l, vals[2].max(0.0).sqrt() / l],
            quat: rotation_to_quat(&vecs),
            amp: self.mass / (l * l),
        }
    }

    /// An isotropic Gaussian with standard deviation `sigma_a` (Å) per axis.
    pub fn isotropic(mean_a: [f64; 3], sigma_a: f64, mass: f64) -> Self {
        let v = sigma_a * sigma_a;
        GaussianA { mean_a, cov_a2: [[v, 0.0, 0.0], [0.0, v, 0.0], [0.0, 0.0, v]], mass }
    }
}

impl GaussianModel {
    /// Activated parameters of Gaussian `i`, computed in f64 from the f32 raw parameters
    /// (the same activations as [`GaussianModel::physical`], without f32 rounding).
    pub fn physical_f64(&self, i: usize) -> PhysicalGaussian {
        let p = &self.params[i];
        let mut raw = [0.0f64; PARAMS_PER_GAUSSIAN];
        for (r, &v) in raw.iter_mut().zip(p.iter()) {
            *r = v as f64;
        }
        PhysicalGaussian::from_raw_f64(&raw)
    }

    /// The mean square distance of the model's mass from the box centre, in Å for a box of
    /// `d` pixels of `apix` Å: each Gaussian's `|μ|² + Σ s²` weighted by its mass's magnitude
    /// (0 for a model without mass). Unchanged by any operator about the centre, so a
    /// symmetric model's asymmetric unit gives that of its copies.
    pub fn mean_square_radius_a2(&self, d: usize, apix: f64) -> f64 {
        let l = d as f64 * apix;
        let (mut sw, mut s) = (0.0f64, 0.0f64);
        for i in 0..self.len() {
            let g = self.physical_f64(i);
            let w = g.amp.abs();
            let r2: f64 = g.mean.iter().map(|m| m * m).sum::<f64>() + g.scales.iter().map(|v| v * v).sum::<f64>();
            sw += w;
            s += w * r2 * l * l;
        }
        if sw > 0.0 {
            s / sw
        } else {
            0.0
        }
    }

    /// Every Gaussian in Å for a box of `d` pixels of `apix` Å (see the module docs).
    pub fn to_angstrom(&self, d: usize, apix: f64) -> Vec<GaussianA> {
        (0..self.len()).map(|i| self.physical_f64(i).to_angstrom(d, apix)).collect()
    }

    /// A model from Gaussians in Å for a box of `d` pixels of `apix` Å. Scales outside
    /// `[SCALE_MIN, SCALE_MAX]` box units are clamped.
    pub fn from_angstrom(gaussians: &[GaussianA], d: usize, apix: f64) -> Self {
        GaussianModel { params: gaussians.iter().map(|g| g.to_box(d, apix).to_raw()).collect() }
    }

    /// The random initialisation of the method's paper: `n` Gaussians with positions drawn
    /// from an isotropic normal of standard deviation [`INIT_POSITION_SIGMA`] around the box
    /// centre, isotropic scales [`INIT_SCALE`], identity rotations and equal amplitudes
    /// `total_mass / (2n)` (half the expected total, so that the start under-shoots the data).
    /// Draws `3n` normals from `rng`, in Gaussian order.
    pub fn random_init(n: usize, total_mass: f64, rng: &mut Rng) -> Self {
        let amp = if n > 0 { (total_mass / (2.0 * n as f64)) as f32 } else { 0.0 };
        let s = INIT_SCALE as f32;
        let params = (0..n)
            .map(|_| {
                let mean = [
                    (rng.normal() * INIT_POSITION_SIGMA) as f32,
                    (rng.normal() * INIT_POSITION_SIGMA) as f32,
                    (rng.normal() * INIT_POSITION_SIGMA) as f32,
                ];
                Self::raw_from_physical(mean, [s, s, s], [1.0, 0.0, 0.0, 0.0], amp)
            })
            .collect();
        GaussianModel { params }
    }

    /// A start drawn from a map on the FFT-aligned `d³` grid (x fastest): `n` Gaussians whose
    /// centres fall in voxel `i` with probability proportional to the map's positive part there,
    /// spread uniformly over that voxel (voxel index `i` is box coordinate `(i − D/2)/D`),
    /// isotropic scales of half the mean spacing `(V/n)^{1/3}`, where `V = (Σw)²/Σw²` voxels is
    /// the volume the positive part effectively fills (its participation ratio), and at least
    /// `min_scale` box units, identity rotations and equal amplitudes `total_mass / (2n)` (as
    /// [`GaussianModel::random_init`]). `None` when the map has no positive value. Draws `4n`
    /// uniforms from `rng`, in Gaussian order.
    pub fn sample_from_map(map: &[f32], d: usize, n: usize, total_mass: f64, min_scale: f64, rng: &mut Rng) -> Option<Self> {
        assert_eq!(map.len(), d * d * d, "a d³ map");
        let mut cdf = Vec::with_capacity(map.len());
        let (mut sum, mut sum2) = (0.0f64, 0.0f64);
        for &v in map {
            let w = if v.is_finite() { (v as f64).max(0.0) } else { 0.0 };
            sum += w;
            sum2 += w * w;
            cdf.push(sum);
        }
        if !(sum > 0.0) || n == 0 {
            return None;
        }
        let volume_vox = sum * sum / sum2;
        let scale = (0.5 * (volume_vox / n as f64).cbrt() / d as f64).max(min_scale) as f32;
        let amp = (total_mass / (2.0 * n as f64)) as f32;
        let centre = (d / 2) as f64;
        let params = (0..n)
            .map(|_| {
                let u = rng.uniform() * sum;
                let i = cdf.partition_point(|&c| c <= u).min(map.len() - 1);
                let voxel = [i % d, (i / d) % d, i / (d * d)];
                let mean = voxel.map(|k| ((k as f64 + rng.uniform() - 0.5 - centre) / d as f64) as f32);
                Self::raw_from_physical(mean, [scale; 3], [1.0, 0.0, 0.0, 0.0], amp)
            })
            .collect();
        Some(GaussianModel { params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_square_radius_is_mass_weighted_in_angstrom() {
        let (d, apix) = (40usize, 1.5);
        let l = d as f64 * apix;
        // Mass 1 at 0.1 box along x, mass 3 at the centre; scales 0.02 box in every direction.
        let model = GaussianModel {
            params: vec![
                GaussianModel::raw_from_physical([0.1, 0.0, 0.0], [0.02; 3], [1.0, 0.0, 0.0, 0.0], 1.0),
                GaussianModel::raw_from_physical([0.0; 3], [0.02; 3], [1.0, 0.0, 0.0, 0.0], 3.0),
            ],
        };
        let want = (0.25 * 0.1f64 * 0.1 + 3.0 * 0.02f64 * 0.02) * l * l;
        let got = model.mean_square_radius_a2(d, apix);
        assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
        assert_eq!(GaussianModel { params: Vec::new() }.mean_square_radius_a2(d, apix), 0.0);
    }

    #[test]
    fn softplus_inverse_round_trip() {
        for &y in &[1e-6f32, 1e-3, 0.0075, 0.5, 1.0, 7.0, 30.0] {
            let x = softplus_inv(y);
            assert!((softplus(x) - y).abs() <= 1e-5 * y.max(1.0), "{y} -> {x} -> {}", softplus(x));
        }
    }

    #[test]
    fn physical_round_trip() {
        let p = GaussianModel::raw_from_physical([0.1, -0.2, 0.3], [0.01, 0.02, 0.03], [1.0, 0.0, 0.0, 0.0], 0.25);
        let m = GaussianModel { params: vec![p] };
        let (mean, s, q, a) = m.physical(0);
        assert_eq!(mean, [0.1, -0.2, 0.3]);
        for k in 0..3 {
            assert!((s[k] - [0.01, 0.02, 0.03][k]).abs() < 1e-6);
        }
        assert_eq!(q, [1.0, 0.0, 0.0, 0.0]);
        assert!((a - 0.25).abs() < 1e-6);
    }

    fn max_abs_diff(a: &Mat3, b: &Mat3) -> f64 {
        let mut m = 0.0f64;
        for i in 0..3 {
            for j in 0..3 {
                m = m.max((a[i][j] - b[i][j]).abs());
            }
        }
        m
    }

    #[test]
    fn quaternion_rotation_is_orthonormal_and_round_trips() {
        let mut rng = Rng::new(11);
        for _ in 0..200 {
            let q = rng.unit_quaternion();
            let r = quat_to_rotation(q);
            let rtr = crate::pose::mat_mul(&crate::pose::transpose(&r), &r);
            assert!(max_abs_diff(&rtr, &crate::pose::IDENTITY) < 1e-14);
            let q2 = rotation_to_quat(&r);
            let sign = if q[0] < 0.0 { -1.0 } else { 1.0 };
            for k in 0..4 {
                assert!((q2[k] - sign * q[k]).abs() < 1e-12, "{q:?} {q2:?}");
            }
        }
        // A 90° turn about z takes x to y.
        let h = std::f64::consts::FRAC_1_SQRT_2;
        let r = quat_to_rotation([h, 0.0, 0.0, h]);
        let v = crate::pose::mat_vec(&r, [1.0, 0.0, 0.0]);
        assert!((v[0]).abs() < 1e-15 && (v[1] - 1.0).abs() < 1e-15 && v[2].abs() < 1e-15);
    }

    #[test]
    fn covariance_has_principal_axes_of_the_rotation() {
        let q = Rng::new(5).unit_quaternion();
        let s = [0.03, 0.01, 0.02];
        let c = covariance(s, q);
        let r = quat_to_rotation(q);
        for k in 0..3 {
            let axis = [r[0][k], r[1][k], r[2][k]];
            let cv = crate::pose::mat_vec(&c, axis);
            for i in 0..3 {
                assert!((cv[i] - s[k] * s[k] * axis[i]).abs() < 1e-16);
            }
        }
        let (vals, vecs) = symmetric_eigen(&c);
        assert!((vals[0] - 9e-4).abs() < 1e-16 && (vals[1] - 4e-4).abs() < 1e-16 && (vals[2] - 1e-4).abs() < 1e-16);
        let back = covariance([vals[0].sqrt(), vals[1].sqrt(), vals[2].sqrt()], rotation_to_quat(&vecs));
        assert!(max_abs_diff(&back, &c) < 1e-17);
    }

    #[test]
    fn angstrom_conversion_round_trips_and_scales() {
        let q = Rng::new(9).unit_quaternion();
        let g = PhysicalGaussian { mean: [0.1, -0.05, 0.2], scales: [0.02, 0.01, 0.015], quat: q, amp: 0.3 };
        let (d, apix) = (64usize, 1.5);
        let a = g.to_angstrom(d, apix);
        let l = 96.0;
        assert!((a.mean_a[0] - 9.6).abs() < 1e-12 && (a.mass - 0.3 * l * l).abs() < 1e-9);
        let det_box = {
            let c = g.covariance();
            c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1]) - c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0])
                + c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0])
        };
        let c = a.cov_a2;
        let det_a = c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1]) - c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0])
            + c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0]);
        assert!((det_a / det_box - l.powi(6)).abs() < 1e-6 * l.powi(6));
        let b = a.to_box(d, apix);
        assert!(max_abs_diff(&b.covariance(), &g.covariance()) < 1e-16);
        for k in 0..3 {
            assert!((b.mean[k] - g.mean[k]).abs() < 1e-15);
        }
        assert!((b.amp - g.amp).abs() < 1e-15);
        // The model round trip goes through f32 raw parameters.
        let m = GaussianModel::from_angstrom(&[a], d, apix);
        let a2 = m.to_angstrom(d, apix)[0];
        for i in 0..3 {
            assert!((a2.mean_a[i] - a.mean_a[i]).abs() < 1e-5);
            for j in 0..3 {
                assert!((a2.cov_a2[i][j] - a.cov_a2[i][j]).abs() < 1e-5 * 3.7, "{:?} {:?}", a2.cov_a2, a.cov_a2);
            }
        }
        assert!((a2.mass / a.mass - 1.0).abs() < 1e-5);
    }

    #[test]
    fn f64_activations_match_f32_ones() {
        for &x in &[-30.0f32, -5.0, -1.0, 0.0, 0.3, 4.0, 25.0] {
            assert!((softplus_f64(x as f64) - softplus(x) as f64).abs() <= 1e-6 * softplus(x).max(1e-6) as f64);
            assert!((softplus_grad_f64(x as f64) - softplus_grad(x) as f64).abs() < 1e-6);
        }
        for &x in &[-12.0f32, -4.7, 0.0, 3.0] {
            let (a, da) = scale_activation(x);
            let (b, db) = scale_activation_f64(x as f64);
            assert!((a as f64 - b).abs() < 1e-6 * b && (da as f64 - db).abs() < 1e-6);
        }
    }

    #[test]
    fn sampling_from_a_map_follows_its_positive_part() {
        // Mass in two voxels, 3:1, and negative values elsewhere.
        let d = 16;
        let mut map = vec![-0.5f32; d * d * d];
        let (i1, i2) = ((4 * d + 5) * d + 6, (10 * d + 11) * d + 12);
        map[i1] = 3.0;
        map[i2] = 1.0;
        let n = 4000;
        let m = GaussianModel::sample_from_map(&map, d, n, 8.0, 0.01, &mut Rng::new(7)).unwrap();
        assert_eq!(m.len(), n);
        let (mut near1, mut near2) = (0, 0);
        for i in 0..n {
            let g = m.physical_f64(i);
            let idx = g.mean.map(|x| x * d as f64 + (d / 2) as f64);
            let inside = |v: [f64; 3]| (0..3).all(|k| (idx[k] - v[k]).abs() <= 0.5 + 1e-6);
            near1 += inside([6.0, 5.0, 4.0]) as usize;
            near2 += inside([12.0, 11.0, 10.0]) as usize;
            assert!((g.amp - 1.0e-3).abs() < 1e-8, "amplitude {}", g.amp);
            // Two voxels fill V = (3+1)²/(9+1) = 1.6 voxels: half the spacing, 0.0023 box, is
            // below the floor.
            assert!(g.scales.iter().all(|&s| (s - 0.01).abs() < 1e-6), "{:?}", g.scales);
        }
        assert_eq!(near1 + near2, n, "every centre lies in a voxel with positive density");
        let frac = near1 as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.03, "fraction in the heavier voxel {frac}");
        // A uniform positive map fills the box: the scale is half the spacing.
        let flat = vec![1.0f32; d * d * d];
        let m = GaussianModel::sample_from_map(&flat, d, 512, 1.0, 0.0, &mut Rng::new(1)).unwrap();
        let want = 0.5 * ((d * d * d) as f64 / 512.0).cbrt() / d as f64;
        assert!((m.physical_f64(0).scales[0] - want).abs() < 1e-6);
        assert!(GaussianModel::sample_from_map(&vec![-1.0; d * d * d], d, 10, 1.0, 0.0, &mut Rng::new(1)).is_none());
    }

    #[test]
    fn random_init_follows_the_recipe() {
        let n = 20_000;
        let m = GaussianModel::random_init(n, 5.0, &mut Rng::new(42));
        assert_eq!(m.len(), n);
        let (mut s1, mut s2) = ([0.0f64; 3], [0.0f64; 3]);
        let mut total = 0.0;
        for i in 0..n {
            let g = m.physical_f64(i);
            for k in 0..3 {
                s1[k] += g.mean[k];
                s2[k] += g.mean[k] * g.mean[k];
                assert!((g.scales[k] - INIT_SCALE).abs() < 1e-6);
            }
            assert_eq!(g.quat, [1.0, 0.0, 0.0, 0.0]);
            total += g.amp;
        }
        assert!((total - 2.5).abs() < 1e-4, "{total}");
        for k in 0..3 {
            let mean = s1[k] / n as f64;
            let sd = (s2[k] / n as f64 - mean * mean).sqrt();
            assert!(mean.abs() < 0.003 && (sd / INIT_POSITION_SIGMA - 1.0).abs() < 0.03, "{mean} {sd}");
        }
        assert_eq!(m, GaussianModel::random_init(n, 5.0, &mut Rng::new(42)));
        assert_ne!(m, GaussianModel::random_init(n, 5.0, &mut Rng::new(43)));
    }
}
