//! The voxeliser: a Gaussian mixture sampled on the FFT-aligned `D³` grid.
//!
//! **One unit of parallel work is one z-plane of the output map.** The plane owns its `D×D`
//! slice of the volume exclusively, so threads never write the same voxel: no atomics, no
//! per-thread copies of the volume and no reduction at the end. Each plane visits only the
//! Gaussians whose truncated footprint crosses it, taken from a plane → Gaussian list (CSR)
//! built once, in Gaussian order, so the sum at every voxel is taken in the same order
//! whatever the number of threads (bit-identical maps). Planes are many more than cores and
//! rayon balances them by work stealing.
//!
//! # Scale
//!
//! Voxel `(k, i, j)` (z, y, x) holds a point sample at `r = ((j − D/2)·apix, (i − D/2)·apix,
//! (k − D/2)·apix)`, scaled so that **summing the voxels of a column along z gives the
//! projection image's pixel value** (the crate's map-scale convention):
//!
//! `map[k][i][j] = V_Å(r) · apix`, with `V_Å` the density in mass/Å³ of Gaussians in Å
//! ([`GaussianA`], masses as the image formation model uses them). For a box-unit
//! [`GaussianModel`] this is `V_box(r_box)/D` (one voxel is `1/D` box units long). A column sum
//! `Σ_k V_Å(x, y, z_k)·apix` is the Riemann sum of `∫ V_Å dz`, which is the projection; it is
//! exact up to sampling error when every Gaussian is wider than about one voxel (the error
//! is about `2·exp(−2π²σ²/apix²)` of the Gaussian's contribution).
//!
//! # Truncation
//!
//! Each Gaussian is evaluated only inside the ellipsoid `(r−μ)ᵀΣ⁻¹(r−μ) ≤ c²`, `c` standard
//! deviations ([`DEFAULT_CUTOFF_SIGMA`] = 4.5 unless a caller asks otherwise; pass
//! `f64::INFINITY` for no truncation). A Gaussian's value on the boundary is `e^(−c²/2)` of its
//! peak (4.0e-5 at 4.5σ) and the mass outside the ellipsoid is the χ²₃ tail
//! `erfc(c/√2) + √(2/π)·c·e^(−c²/2)` (1.4e-4 at 4.5σ, 1.1e-3 at 4σ, 1.5e-5 at 5σ); the work
//! grows as `c³`. 4.5σ was chosen after measuring the gap to the untruncated map on the
//! reference scene (tests/voxel.rs) against the cost.

#![allow(clippy::needless_range_loop)] // index loops mirror the matrix algebra

use crate::gaussian::{GaussianA, GaussianModel};
use rayon::prelude::*;

/// Truncation radius used by [`voxelize_model`] and recommended for [`voxelize_a`], in
/// standard deviations (Mahalanobis radius).
pub const DEFAULT_CUTOFF_SIGMA: f64 = 4.5;

/// One Gaussian prepared for sampling, in voxel index units.
struct Prepared {
    /// Centre in index coordinates (x, y, z).
    c: [f64; 3],
    /// Inverse covariance (voxel units), symmetric.
    p: [[f64; 3]; 3],
    /// Peak value in map units.
    peak: f64,
    /// Inclusive index bounds of the truncated footprint, per axis (x, y, z); empty if lo > hi.
    lo: [i64; 3],
    hi: [i64; 3],
    /// `e^(−p_xx)`: the factor by which the ratio of neighbouring samples along a row changes
    /// from one step to the next (the same on every row).
    per_step: f64,
}

fn inverse3(m: &[[f64; 3]; 3]) -> Option<([[f64; 3]; 3], f64)> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if !det.is_finite() || det <= 0.0 {
        return None;
    }
    let inv = [
        [
            (m[1][1] * m[2][2] - m[1][2] * m[2][1]) / det,
            (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / det,
            (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / det,
        ],
        [
            (m[1][2] * m[2][0] - m[1][0] * m[2][2]) / det,
            (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / det,
            (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / det,
        ],
        [
            (m[1][0] * m[2][1] - m[1][1] * m[2][0]) / det,
            (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / det,
            (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det,
        ],
    ];
    Some((inv, det))
}

fn prepare(g: &GaussianA, d: usize, apix: f64, cutoff: f64) -> Prepared {
    let h = (d / 2) as f64;
    let c = [g.mean_a[0] / apix + h, g.mean_a[1] / apix + h, g.mean_a[2] / apix + h];
    let mut cov = [[0.0; 3]; 3];
    for a in 0..3 {
        for b in 0..3 {
            cov[a][b] = 0.5 * (g.cov_a2[a][b] + g.cov_a2[b][a]) / (apix * apix);
        }
    }
    let (p, det) = inverse3(&cov).unwrap_or_else(|| panic!("Gaussian covariance is not positive definite: {:?}", g.cov_a2));
    // V_Å(r)·apix = mass (2π)^-3/2 |Σ_Å|^-1/2 e^(..) · apix, and |Σ_Å|^1/2 = apix³ |Σ_vox|^1/2.
    let peak = g.mass / (apix * apix) / ((2.0 * std::f64::consts::PI).powf(1.5) * det.sqrt());
    let mut lo = [0i64; 3];
    let mut hi = [d as i64 - 1; 3];
    if cutoff.is_finite() {
        for a in 0..3 {
            let r = cutoff * cov[a][a].sqrt();
            lo[a] = ((c[a] - r).ceil() as i64).max(0);
            hi[a] = ((c[a] + r).floor() as i64).min(d as i64 - 1);
        }
    }
    Prepared { c, p, peak, lo, hi, per_step: (-p[0][0]).exp() }
}

/// Sample Gaussians given in Å on the `d³` grid of `apix` Å, each truncated at `cutoff_sigma`
/// standard deviations (`f64::INFINITY`: none), in the map scale of the module docs
/// (`V_Å·apix`). Returns `d³` values indexed `[(k*d + i)*d + j]` (x fastest).
///
/// Panics if a covariance is not symmetric positive definite or `cutoff_sigma` is not positive.
pub fn voxelize_a(gaussians: &[GaussianA], d: usize, apix: f64, cutoff_sigma: f64) -> Vec<f32> {
    assert!(cutoff_sigma > 0.0, "cutoff must be positive");
    assert!(apix > 0.0 && d > 0, "empty grid");
    let prepared: Vec<Prepared> = gaussians.par_iter().map(|g| prepare(g, d, apix, cutoff_sigma)).collect();
    // Plane → Gaussians, in Gaussian order (CSR).
    let mut start = vec![0usize; d + 1];
    for g in &prepared {
        if g.lo[2] <= g.hi[2] && g.lo[0] <= g.hi[0] && g.lo[1] <= g.hi[1] {
            for k in g.lo[2]..=g.hi[2] {
                start[k as usize + 1] += 1;
            }
        }
    }
    for k in 0..d {
        start[k + 1] += start[k];
    }
    let mut fill = start.clone();
    let mut members = vec![0u32; start[d]];
    for (gi, g) in prepared.iter().enumerate() {
        if g.lo[2] <= g.hi[2] && g.lo[0] <= g.hi[0] && g.lo[1] <= g.hi[1] {
            for k in g.lo[2]..=g.hi[2] {
                members[fill[k as usize]] = gi as u32;
                fill[k as usize] += 1;
            }
        }
    }
    let c2 = cutoff_sigma * cutoff_sigma;
    let mut map = vec![0.0f32; d * d * d];
    map.par_chunks_mut(d * d).enumerate().for_each_init(
        || vec![0.0f64; d * d],
        |acc, (k, plane)| {
            acc.iter_mut().for_each(|v| *v = 0.0);
            for &gi in &members[start[k]..start[k + 1]] {
                splat_plane(&prepared[gi as usize], k, d, c2, acc);
            }
            for (o, &v) in plane.iter_mut().zip(acc.iter()) {
                *o = v as f32;
            }
        },
    );
    map
}

/// Add one Gaussian's samples on plane `k` into `acc` (`d×d`, f64).
fn splat_plane(g: &Prepared, k: usize, d: usize, c2: f64, acc: &mut [f64]) {
    let p = &g.p;
    let dz = k as f64 - g.c[2];
    let (lo_y, hi_y) = if c2.is_finite() {
        // The rows the plane's cross-section of the ellipsoid crosses: minimised over dx,
        // q = A·dy² + 2·B·dy + C (the Schur complement of p_xx), and A·dy² + 2·B·dy + C ≤ c².
        // A hair wider than exact, so that every row the test below keeps is visited.
        let a = p[0][0];
        let (qa, qb, qc) =
            (p[1][1] - p[0][1] * p[0][1] / a, (p[1][2] - p[0][1] * p[0][2] / a) * dz, (p[2][2] - p[0][2] * p[0][2] / a) * dz * dz);
        let disc = qb * qb - qa * (qc - c2);
        if disc < 0.0 || qa <= 0.0 {
            (g.lo[1], g.hi[1])
        } else {
            let s = disc.sqrt();
            let slack = 1e-9 * (1.0 + s / qa);
            (
                ((g.c[1] + (-qb - s) / qa - slack).ceil() as i64).max(g.lo[1]),
                ((g.c[1] + (-qb + s) / qa + slack).floor() as i64).min(g.hi[1]),
            )
        }
    } else {
        (g.lo[1], g.hi[1])
    };
    for i in lo_y..=hi_y {
        let (a, b, c0) = row_quadratic(p, i as f64 - g.c[1], dz);
        let (x0, x1) = if c2.is_finite() {
            // Solve a·t² + 2·b·t + c0 ≤ c² for t = dx.
            let disc = b * b - a * (c0 - c2);
            if disc < 0.0 {
                continue;
            }
            let s = disc.sqrt();
            let t0 = (-b - s) / a;
            let t1 = (-b + s) / a;
            (((g.c[0] + t0).ceil() as i64).max(g.lo[0]), ((g.c[0] + t1).floor() as i64).min(g.hi[0]))
        } else {
            (g.lo[0], g.hi[0])
        };
        if x0 > x1 {
            continue;
        }
        let row = &mut acc[i as usize * d..(i as usize + 1) * d];
        // Along the row the sample is peak·e^(−q/2) with q quadratic in dx, so each step
        // multiplies it by a ratio that itself changes by the constant factor e^(−a): two
        // exponentials per row (the row's largest sample and one ratio) instead of one per
        // voxel. The walk starts at the row's largest sample and goes outwards both ways, so
        // the values only fall (and an underflow only rounds a sample that is negligible anyway).
        let top = (g.c[0] - b / a).round().clamp(x0 as f64, x1 as f64) as i64;
        let dx = top as f64 - g.c[0];
        let at_top = g.peak * (-0.5 * (a * dx * dx + 2.0 * b * dx + c0)).exp();
        let per_step = g.per_step;
        // Ratio of the sample at dx + 1 to the one at dx: e^(−(a·(2dx+1) + 2b)/2).
        let right = (-0.5 * (a * (2.0 * dx + 1.0) + 2.0 * b)).exp();
        let (mut v, mut r) = (at_top, right);
        for j in top..=x1 {
            row[j as usize] += v;
            v *= r;
            r *= per_step;
        }
        // Leftwards: the sample at dx − 1 over the one at dx is e^(−(a·(1−2dx) − 2b)/2); the
        // two ratios multiply to e^(−a), which saves an exponential unless `right` underflowed.
        let left = if right >= f64::MIN_POSITIVE { per_step / right } else { (-0.5 * (a * (1.0 - 2.0 * dx) - 2.0 * b)).exp() };
        let (mut v, mut r) = (at_top, left);
        for j in (x0..top).rev() {
            v *= r;
            r *= per_step;
            row[j as usize] += v;
        }
    }
}

/// The Mahalanobis distance along the row at offsets `dy`, `dz` from the centre (voxels), as
/// `q(dx) = a·dx² + 2·b·dx + c0` for inverse covariance `p`: `(a, b, c0)`.
#[inline]
fn row_quadratic(p: &[[f64; 3]; 3], dy: f64, dz: f64) -> (f64, f64, f64) {
    (p[0][0], p[0][1] * dy + p[0][2] * dz, p[1][1] * dy * dy + 2.0 * p[1][2] * dy * dz + p[2][2] * dz * dz)
}

/// [`splat_plane`] with one exponential per voxel: the slow reference of the row recurrence.
#[cfg(test)]
fn splat_plane_exact(g: &Prepared, k: usize, d: usize, c2: f64, acc: &mut [f64]) {
    let dz = k as f64 - g.c[2];
    for i in g.lo[1]..=g.hi[1] {
        let (a, b, c0) = row_quadratic(&g.p, i as f64 - g.c[1], dz);
        for j in g.lo[0]..=g.hi[0] {
            let dx = j as f64 - g.c[0];
            let q = a * dx * dx + 2.0 * b * dx + c0;
            if q <= c2 {
                acc[i as usize * d + j as usize] += g.peak * (-0.5 * q).exp();
            }
        }
    }
}

/// Voxelise a box-unit model on a `d³` grid at [`DEFAULT_CUTOFF_SIGMA`]: map values are
/// `V_box(r_box)/D`, so column sums along z are the model's projection values (independent
/// of the pixel size).
pub fn voxelize_model(model: &GaussianModel, d: usize) -> Vec<f32> {
    voxelize_a(&model.to_angstrom(d, 1.0), d, 1.0, DEFAULT_CUTOFF_SIGMA)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The row recurrence of [`splat_plane`] against one exponential per voxel, on rotated,
    /// anisotropic Gaussians of every size from a fifth of a voxel to a third of the box, cut
    /// at 4.5σ and not cut at all.
    #[test]
    fn the_row_recurrence_matches_one_exponential_per_voxel() {
        let (d, apix) = (24usize, 1.3);
        let mut r = Rng::new(7);
        for n in 0..200 {
            let s = 0.2 * apix * 40f64.powf(n as f64 / 199.0);
            let m = [[r.normal(), r.normal(), r.normal()], [r.normal(), r.normal(), r.normal()], [r.normal(), r.normal(), r.normal()]];
            // Σ = s²(M Mᵀ/3 + I/4): positive definite, anisotropic and rotated.
            let mut cov = [[0.0f64; 3]; 3];
            for i in 0..3 {
                for j in 0..3 {
                    cov[i][j] = s * s * ((0..3).map(|k| m[i][k] * m[j][k]).sum::<f64>() / 3.0 + if i == j { 0.25 } else { 0.0 });
                }
            }
            let mean_a = [0, 1, 2].map(|_| (r.uniform() - 0.5) * 0.8 * d as f64 * apix);
            let g = GaussianA { mean_a, cov_a2: cov, mass: 1.0 + r.uniform() };
            for cutoff in [DEFAULT_CUTOFF_SIGMA, f64::INFINITY] {
                let p = prepare(&g, d, apix, cutoff);
                if p.lo[2] > p.hi[2] {
                    continue;
                }
                let c2 = cutoff * cutoff;
                for k in p.lo[2]..=p.hi[2] {
                    let (mut fast, mut exact) = (vec![0.0f64; d * d], vec![0.0f64; d * d]);
                    splat_plane(&p, k as usize, d, c2, &mut fast);
                    splat_plane_exact(&p, k as usize, d, c2, &mut exact);
                    for (v, (f, e)) in fast.iter().zip(&exact).enumerate() {
                        assert!(
                            (f - e).abs() <= 1e-12 * p.peak,
                            "Gaussian {n}, cut {cutoff}, plane {k}, voxel {v}: {f} against {e} (peak {})",
                            p.peak
                        );
                    }
                }
            }
        }
    }
}
