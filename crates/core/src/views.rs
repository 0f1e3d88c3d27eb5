//! Viewing directions: where the particles' projections look along, binned on the sphere.
//!
//! A particle of pose `A` is the projection of the map along the image's z axis, which in the
//! map's frame is `Aᵀ·e_z`, the third row of `A` (the pose convention of [`crate::pose`]). For
//! RELION's angles that is `(cos rot·sin tilt, sin rot·sin tilt, cos tilt)`: `rot` is its
//! azimuth and `tilt` its angle from the z axis.
//!
//! Directions are counted in cells of equal area ([`ViewDistribution`]): equal steps of the
//! azimuth and of `z` (the cosine of the tilt; Archimedes: a band of the sphere between two
//! planes has an area proportional to its height), so a uniform set of views fills every cell
//! alike. A view and its opposite image the same central section of the map's transform (one
//! is the mirror of the other), so the summary ([`ViewDistribution::summary`]) counts them as one
//! direction.
//!
//! What the map's transform gets from the views is another matter: a view samples the central
//! section perpendicular to it, so a Fourier direction `k` is measured by the views within a
//! band about the great circle perpendicular to `k`. Views gathered about one axis leave the
//! transform along that axis barely measured, while views spread along a great circle (side
//! views only, say) measure every direction even though most directions hold no view.
//! [`ViewDistribution::least_sampled`] finds the direction of the transform the fewest views
//! measure.

use crate::pose::Mat3;
use std::f64::consts::PI;

/// The direction a particle of pose `a` is seen along, in the map's frame (a unit vector).
pub fn viewing_direction(a: &Mat3) -> [f64; 3] {
    let d = a[2];
    let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
    if n > 0.0 {
        [d[0] / n, d[1] / n, d[2] / n]
    } else {
        [0.0, 0.0, 1.0]
    }
}

/// The counts of viewing directions in equal-area cells of the sphere: `azimuth_cells` equal
/// steps of the azimuth from −180° and `z_cells` equal steps of `z` from −1 (see the module
/// docs).
#[derive(Clone, Debug, PartialEq)]
pub struct ViewDistribution {
    pub azimuth_cells: usize,
    pub z_cells: usize,
    /// Per cell, `z` row by row from `z = −1`, azimuth from −180° within a row.
    pub counts: Vec<u64>,
}

/// What a [`ViewDistribution`] says about the coverage of directions, a view and its opposite
/// counted as one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewSummary {
    /// Views counted.
    pub views: u64,
    /// Directions (pairs of opposite cells) the summary counts in.
    pub directions: usize,
    /// The share of those directions that no view falls in.
    pub empty_fraction: f64,
    /// The most populated direction's count over the mean count per direction (1 for views
    /// spread perfectly evenly).
    pub max_over_mean: f64,
}

/// Half-width in degrees of the band about a view's central section within which it counts as
/// measuring a Fourier direction ([`ViewDistribution::least_sampled`]).
pub const SECTION_BAND_DEG: f64 = 10.0;

/// The Fourier direction the views measure least ([`ViewDistribution::least_sampled`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeastSampled {
    /// The direction (a unit vector with `z ≥ 0`) and the same as RELION's `(rot, tilt)` in
    /// degrees.
    pub direction: [f64; 3],
    pub rot_tilt_deg: [f64; 2],
    /// The share of views whose central section passes within [`SECTION_BAND_DEG`] of it.
    pub share: f64,
    /// The same share for views spread uniformly: `sin(SECTION_BAND_DEG)`.
    pub uniform_share: f64,
}

impl ViewDistribution {
    /// Cells of about 10° × 10° at the equator for the summary: 36 azimuth steps and 18 of z
    /// (648 cells of 63.7 deg² each, 324 directions).
    pub const SUMMARY_CELLS: (usize, usize) = (36, 18);

    /// Empty counts on `azimuth_cells × z_cells` cells (both at least 1; an even azimuth count
    /// pairs each cell with its opposite).
    pub fn new(azimuth_cells: usize, z_cells: usize) -> Self {
        assert!(azimuth_cells >= 1 && z_cells >= 1, "a view distribution needs at least one cell");
        ViewDistribution { azimuth_cells, z_cells, counts: vec![0; azimuth_cells * z_cells] }
    }

    /// The distribution of the directions of `poses` on `azimuth_cells × z_cells` cells.
    pub fn of_poses<'a>(poses: impl IntoIterator<Item = &'a Mat3>, azimuth_cells: usize, z_cells: usize) -> Self {
        let mut v = ViewDistribution::new(azimuth_cells, z_cells);
        for a in poses {
            v.add(viewing_direction(a));
        }
        v
    }

    /// The cell `(azimuth index, z index)` of the unit vector `d`.
    pub fn cell_of(&self, d: [f64; 3]) -> (usize, usize) {
        let az = d[1].atan2(d[0]); // [−π, π]
        let i = (((az + PI) / (2.0 * PI)) * self.azimuth_cells as f64).floor() as isize;
        let j = (((d[2].clamp(-1.0, 1.0) + 1.0) / 2.0) * self.z_cells as f64).floor() as isize;
        (i.clamp(0, self.azimuth_cells as isize - 1) as usize, j.clamp(0, self.z_cells as isize - 1) as usize)
    }

    /// Count the unit vector `d`.
    pub fn add(&mut self, d: [f64; 3]) {
        let (i, j) = self.cell_of(d);
        self.counts[j * self.azimuth_cells + i] += 1;
    }

    /// The count of cell `(i, j)` (azimuth index, z index).
    pub fn count(&self, i: usize, j: usize) -> u64 {
        self.counts[j * self.azimuth_cells + i]
    }

    /// The azimuth edges of cell column `i` in degrees, from −180.
    pub fn azimuth_edges_deg(&self, i: usize) -> (f64, f64) {
        let step = 360.0 / self.azimuth_cells as f64;
        (-180.0 + i as f64 * step, -180.0 + (i + 1) as f64 * step)
    }

    /// The elevation edges (90° minus the tilt) of cell row `j` in degrees, from −90.
    pub fn elevation_edges_deg(&self, j: usize) -> (f64, f64) {
        let z = |k: usize| -1.0 + 2.0 * k as f64 / self.z_cells as f64;
        (z(j).clamp(-1.0, 1.0).asin().to_degrees(), z(j + 1).clamp(-1.0, 1.0).asin().to_degrees())
    }

    /// Views counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The coverage of directions, a cell and its opposite (the azimuth half a turn on, `z`
    /// mirrored) counted as one: `None` for an odd azimuth count, which pairs no cell with its
    /// opposite.
    pub fn summary(&self) -> Option<ViewSummary> {
        if !self.azimuth_cells.is_multiple_of(2) {
            return None;
        }
        let (na, nz) = (self.azimuth_cells, self.z_cells);
        // The count of each pair of opposite cells, taken once (an odd z count has a middle row
        // whose cells pair within it).
        let mut pairs: Vec<u64> = Vec::with_capacity(na * nz / 2);
        for j in 0..nz {
            for i in 0..na {
                let (oi, oj) = ((i + na / 2) % na, nz - 1 - j);
                if j > oj || (j == oj && i < oi) {
                    pairs.push(self.count(i, j) + self.count(oi, oj));
                }
            }
        }
        let views = self.total();
        let mean = views as f64 / pairs.len() as f64;
        let max = pairs.iter().copied().max().unwrap_or(0);
        Some(ViewSummary {
            views,
            directions: pairs.len(),
            empty_fraction: pairs.iter().filter(|&&c| c == 0).count() as f64 / pairs.len() as f64,
            max_over_mean: if mean > 0.0 { max as f64 / mean } else { 0.0 },
        })
    }

    /// The centre of cell `(i, j)` as a unit vector.
    pub fn cell_centre(&self, i: usize, j: usize) -> [f64; 3] {
        let az = (-180.0 + (i as f64 + 0.5) * 360.0 / self.azimuth_cells as f64).to_radians();
        let z = -1.0 + 2.0 * (j as f64 + 0.5) / self.z_cells as f64;
        let r = (1.0 - z * z).max(0.0).sqrt();
        [r * az.cos(), r * az.sin(), z]
    }

    /// The Fourier direction the views measure least (see the module docs): over
    /// [`LEAST_SAMPLED_CANDIDATES`] directions spread evenly on a half sphere, the one with the
    /// smallest share of views (each cell's count at its centre) within [`SECTION_BAND_DEG`] of
    /// the great circle perpendicular to it, and among equals the one farthest from every
    /// view's section. `None` without views.
    pub fn least_sampled(&self) -> Option<LeastSampled> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let cells: Vec<([f64; 3], f64)> = (0..self.z_cells)
            .flat_map(|j| (0..self.azimuth_cells).map(move |i| (i, j)))
            .filter(|&(i, j)| self.count(i, j) > 0)
            .map(|(i, j)| (self.cell_centre(i, j), self.count(i, j) as f64))
            .collect();
        let band = SECTION_BAND_DEG.to_radians().sin();
        // (direction, views within the band, |sin| of its angle to the nearest section): the
        // fewest views, and among equals (a whole cap about the axis views gather about holds
        // none) the farthest from every section.
        let mut best: Option<([f64; 3], f64, f64)> = None;
        for k in half_sphere(LEAST_SAMPLED_CANDIDATES) {
            let (mut n, mut nearest) = (0.0, f64::INFINITY);
            for (d, c) in &cells {
                let s = (d[0] * k[0] + d[1] * k[1] + d[2] * k[2]).abs();
                nearest = nearest.min(s);
                if s <= band {
                    n += c;
                }
            }
            if best.is_none_or(|b| n < b.1 || (n == b.1 && nearest > b.2)) {
                best = Some((k, n, nearest));
            }
        }
        let (k, n, _) = best.expect("candidates");
        Some(LeastSampled {
            direction: k,
            // atan2(0, 0) is 0: the pole reads rot 0°.
            rot_tilt_deg: [k[1].atan2(k[0]).to_degrees(), k[2].clamp(-1.0, 1.0).acos().to_degrees()],
            share: n / total as f64,
            uniform_share: band,
        })
    }
}

/// Candidate directions of [`ViewDistribution::least_sampled`]: about 4° apart.
pub const LEAST_SAMPLED_CANDIDATES: usize = 1500;

/// `n` directions spread evenly over the half sphere `z ≥ 0` (a Fibonacci spiral), the pole
/// first.
fn half_sphere(n: usize) -> impl Iterator<Item = [f64; 3]> {
    let golden = PI * (3.0 - 5f64.sqrt());
    (0..n).map(move |m| {
        let z = 1.0 - m as f64 / n as f64;
        let r = (1.0 - z * z).max(0.0).sqrt();
        let a = golden * m as f64;
        [r * a.cos(), r * a.sin(), z]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::rotation::{euler_to_matrix, random_rotation};

    #[test]
    fn the_direction_of_relion_angles_is_rot_as_azimuth_and_tilt_from_z() {
        for &(rot, tilt, psi) in &[(0.0, 0.0, 0.0), (30.0, 60.0, 10.0), (-120.0, 150.0, 200.0), (90.0, 90.0, -45.0)] {
            let d = viewing_direction(&euler_to_matrix(rot, tilt, psi));
            let (r, t) = (f64::to_radians(rot), f64::to_radians(tilt));
            let want = [r.cos() * t.sin(), r.sin() * t.sin(), t.cos()];
            for k in 0..3 {
                assert!((d[k] - want[k]).abs() < 1e-12, "{rot} {tilt} {psi}: {d:?} against {want:?}");
            }
        }
    }

    #[test]
    fn the_direction_is_the_axis_the_projection_integrates_along() {
        // A point on the viewing direction lands on the image's centre (x = y = 0 after A).
        let mut rng = Rng::new(3);
        for _ in 0..20 {
            let a = random_rotation(&mut rng);
            let d = viewing_direction(&a);
            let p = crate::pose::mat_vec(&a, [2.0 * d[0], 2.0 * d[1], 2.0 * d[2]]);
            assert!(p[0].abs() < 1e-12 && p[1].abs() < 1e-12 && (p[2] - 2.0).abs() < 1e-12, "{p:?}");
        }
    }

    #[test]
    fn uniform_views_fill_equal_area_cells_alike() {
        let mut rng = Rng::new(11);
        let n = 64_800;
        let rots: Vec<Mat3> = (0..n).map(|_| random_rotation(&mut rng)).collect();
        let (na, nz) = ViewDistribution::SUMMARY_CELLS;
        let v = ViewDistribution::of_poses(&rots, na, nz);
        assert_eq!(v.total(), n as u64);
        // 100 per cell on average; a Poisson count stays within 5 sigma of it.
        let mean = n as f64 / (na * nz) as f64;
        for (k, &c) in v.counts.iter().enumerate() {
            assert!((c as f64 - mean).abs() < 5.0 * mean.sqrt(), "cell {k}: {c} views, mean {mean}");
        }
        let s = v.summary().unwrap();
        assert_eq!((s.views, s.directions), (n as u64, na * nz / 2));
        assert_eq!(s.empty_fraction, 0.0);
        assert!(s.max_over_mean < 1.5, "{s:?}");
    }

    #[test]
    fn views_about_one_axis_leave_most_directions_empty() {
        // Tilts within 10° of the z axis, either way up (top and bottom views): one direction.
        let mut rng = Rng::new(5);
        let rots: Vec<Mat3> = (0..2_000)
            .map(|k| {
                let tilt = rng.uniform() * 10.0 + if k % 2 == 0 { 0.0 } else { 170.0 };
                euler_to_matrix(rng.uniform() * 360.0 - 180.0, tilt, rng.uniform() * 360.0)
            })
            .collect();
        let v = ViewDistribution::of_poses(&rots, 36, 18);
        let s = v.summary().unwrap();
        // The top band of z (cos 10° = 0.985 > 1 − 2/18) holds every view, paired with the
        // bottom band: 36 of 324 directions.
        assert!((s.empty_fraction - (1.0 - 36.0 / 324.0)).abs() < 0.02, "{s:?}");
        assert!(s.max_over_mean > 5.0, "{s:?}");
        // The transform along z is what such views leave unmeasured.
        let l = v.least_sampled().unwrap();
        assert!(l.rot_tilt_deg[1] < 5.0 && l.share < 0.01, "{l:?}");
        // Opposite views count as one direction: all top views or all bottom views alike.
        let top: Vec<Mat3> = rots.iter().map(|a| euler_to_matrix(matrix_rot(a), 5.0, 0.0)).collect();
        let bottom: Vec<Mat3> = rots.iter().map(|a| euler_to_matrix(matrix_rot(a) + 180.0, 175.0, 0.0)).collect();
        let (st, sb) =
            (ViewDistribution::of_poses(&top, 36, 18).summary().unwrap(), ViewDistribution::of_poses(&bottom, 36, 18).summary().unwrap());
        assert_eq!(st, sb);
    }

    fn matrix_rot(a: &Mat3) -> f64 {
        crate::rotation::matrix_to_euler(a).0
    }

    #[test]
    fn the_least_sampled_direction_is_the_axis_views_gather_about_not_a_gap_between_side_views() {
        let mut rng = Rng::new(9);
        // Views within 15° of (rot 100°, tilt 60°) or of the opposite direction: the transform
        // along that axis is on no view's central section.
        let gathered: Vec<Mat3> = (0..3_000)
            .map(|k| {
                let (rot, tilt) = (100.0 + rng.uniform_range(-15.0, 15.0), 60.0 + rng.uniform_range(-15.0, 15.0));
                let (rot, tilt) = if k % 3 == 0 { (rot - 180.0, 180.0 - tilt) } else { (rot, tilt) };
                euler_to_matrix(rot, tilt, rng.uniform() * 360.0)
            })
            .collect();
        let l = ViewDistribution::of_poses(&gathered, 72, 36).least_sampled().unwrap();
        let axis = viewing_direction(&euler_to_matrix(100.0, 60.0, 0.0));
        let cos = (l.direction[0] * axis[0] + l.direction[1] * axis[1] + l.direction[2] * axis[2]).abs();
        assert!(cos > f64::to_radians(15.0).cos() && l.share < 0.01, "{l:?}");
        assert!((l.uniform_share - f64::to_radians(10.0).sin()).abs() < 1e-12);
        // Side views only (tilt 90°): most directions hold no view, but every direction of the
        // transform is on some views' sections; the least measured on about 40° of the 360° of
        // the views' circle (11%).
        let side: Vec<Mat3> = (0..3_000).map(|_| euler_to_matrix(rng.uniform() * 360.0, 90.0, rng.uniform() * 360.0)).collect();
        let v = ViewDistribution::of_poses(&side, 72, 36);
        assert!(v.summary().unwrap().empty_fraction > 0.9);
        let l = v.least_sampled().unwrap();
        assert!(l.share > 0.08, "{l:?}");
        // Uniform views: every direction on about sin 10° = 17% of the sections.
        let uniform: Vec<Mat3> = (0..20_000).map(|_| random_rotation(&mut rng)).collect();
        let l = ViewDistribution::of_poses(&uniform, 72, 36).least_sampled().unwrap();
        assert!(l.share > 0.14 && l.share <= l.uniform_share, "{l:?}");
    }

    #[test]
    fn cells_cover_the_sphere_and_an_odd_azimuth_count_has_no_summary() {
        let v = ViewDistribution::new(4, 2);
        assert_eq!(v.cell_of([0.0, 0.0, 1.0]).1, 1);
        assert_eq!(v.cell_of([0.0, 0.0, -1.0]).1, 0);
        assert_eq!(v.cell_of([-1.0, -1e-12, 0.0]).0, 0);
        assert_eq!(v.cell_of([-1.0, 0.0, 0.0]).0, 3); // azimuth +180° is the last column
        assert_eq!(v.azimuth_edges_deg(0), (-180.0, -90.0));
        assert_eq!(v.elevation_edges_deg(1), (0.0, 90.0));
        assert!(ViewDistribution::new(3, 2).summary().is_none());
    }
}
