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
        let scales = [
            scale_activation(p[P_SCALE]).0,
            scale_activation(p[P_SCALE + 1]).0,
            scale_activation(p[P_SCALE + 2]).0,
        ];
        let q = [p[P_QUAT], p[P_QUAT + 1], p[P_QUAT + 2], p[P_QUAT + 3]];
        let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).sqrt();
        let quat = if n > 0.0 && n.is_finite() { [q[0] / n, q[1] / n, q[2] / n, q[3] / n] } else { [1.0, 0.0, 0.0, 0.0] };
        (mean, scales, quat, softplus(p[P_AMP]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
