//! Local resolution from windowed half-map FSC (blocres's approach, written for this project).
//!
//! Around each sample point (a grid of `step_px` spacing, inside the mask), a cube of
//! `W = 2·⌈radius + edge⌉` voxels is cut from both half maps (periodically, like the maps'
//! Fourier transform), multiplied by a soft sphere (1 within `radius_px`, a raised cosine
//! `edge_px` wide beyond it, [`crate::mask::spherical`]), and the FSC of the two windowed cubes
//! is read at `threshold` ([`crate::fsc::resolution_at`]; shells of the `W` box, resolution
//! `W·apix/n`). A curve that never crosses gives Nyquist (`2·apix`); one below the threshold
//! from the first shell gives the window's size (`W·apix`), the coarsest resolution it can
//! measure. Every voxel takes the value of its nearest sample point; voxels outside the mask
//! are 0.

use crate::fourier::Fft3;
use crate::fsc::{fsc_from_spectra, resolution_at, Resolution};
use crate::mask;
use rayon::prelude::*;

/// Settings of [`local_resolution`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocresParams {
    /// Radius of the flat part of the window (voxels).
    pub radius_px: f64,
    /// Width of the window's raised-cosine edge (voxels).
    pub edge_px: f64,
    /// Spacing of the sample points (voxels, ≥ 1).
    pub step_px: usize,
    /// FSC threshold (0.143 for half maps).
    pub threshold: f64,
}

/// A local-resolution map and its sample points.
#[derive(Clone, Debug)]
pub struct LocalResolution {
    /// `D³`, Å; 0 outside the mask.
    pub map_a: Vec<f32>,
    /// The resolution (Å) at each sample point (x, y, z voxel indices).
    pub samples: Vec<([usize; 3], f64)>,
    /// The window's box (voxels).
    pub window_px: usize,
}

/// The local resolution of half maps `a`, `b` (`D³`, `apix` Å/px) inside `mask` (a voxel is
/// inside where the mask exceeds 0.5; `None`: everywhere). See the module docs.
pub fn local_resolution(a: &[f32], b: &[f32], d: usize, apix: f64, mask_values: Option<&[f32]>, p: &LocresParams) -> LocalResolution {
    let w = (2.0 * (p.radius_px + p.edge_px).ceil()).max(4.0) as usize;
    let window = mask::spherical(w, p.radius_px, p.edge_px);
    let fft = Fft3::new(w);
    let step = p.step_px.max(1);
    let inside = |i: usize| mask_values.is_none_or(|m| m[i] > 0.5);
    let mut points: Vec<[usize; 3]> = Vec::new();
    for z in (step / 2..d).step_by(step) {
        for y in (step / 2..d).step_by(step) {
            for x in (step / 2..d).step_by(step) {
                if inside((z * d + y) * d + x) {
                    points.push([x, y, z]);
                }
            }
        }
    }
    let coarsest = w as f64 * apix;
    let samples: Vec<([usize; 3], f64)> = points
        .par_iter()
        .map(|&[x, y, z]| {
            let cut = |v: &[f32]| -> Vec<f32> {
                let mut out = vec![0.0f32; w * w * w];
                for k in 0..w {
                    let zz = (z + d + k - w / 2) % d;
                    for j in 0..w {
                        let yy = (y + d + j - w / 2) % d;
                        for i in 0..w {
                            let xx = (x + d + i - w / 2) % d;
                            let o = (k * w + j) * w + i;
                            out[o] = v[(zz * d + yy) * d + xx] * window[o];
                        }
                    }
                }
                out
            };
            let curve = fsc_from_spectra(&fft.forward(&cut(a)), &fft.forward(&cut(b)), w);
            let r = match resolution_at(&curve, p.threshold, w, apix) {
                Resolution::Angstrom(r) => r.min(coarsest),
                Resolution::Nyquist => 2.0 * apix,
                Resolution::NoCorrelation => coarsest,
            };
            ([x, y, z], r)
        })
        .collect();
    // Nearest sample point: the grid index of a voxel along an axis is round((i − step/2)/step).
    let n_axis = (d - step / 2).div_ceil(step);
    let mut grid = vec![0.0f32; n_axis * n_axis * n_axis];
    for &([x, y, z], r) in &samples {
        grid[((z / step) * n_axis + y / step) * n_axis + x / step] = r as f32;
    }
    let g = |i: usize| (((i as f64 - (step / 2) as f64) / step as f64).round().max(0.0) as usize).min(n_axis - 1);
    let mut map_a = vec![0.0f32; d * d * d];
    for z in 0..d {
        for y in 0..d {
            for x in 0..d {
                let i = (z * d + y) * d + x;
                if inside(i) {
                    map_a[i] = grid[(g(z) * n_axis + g(y)) * n_axis + g(x)];
                }
            }
        }
    }
    // A voxel inside the mask whose nearest sample point lies outside it takes the median.
    let mut sorted: Vec<f64> = samples.iter().map(|s| s.1).collect();
    sorted.sort_by(f64::total_cmp);
    if let Some(&median) = sorted.get(sorted.len() / 2) {
        for (i, v) in map_a.iter_mut().enumerate() {
            if *v == 0.0 && inside(i) {
                *v = median as f32;
            }
        }
    }
    LocalResolution { map_a, samples, window_px: w }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn the_cleaner_half_of_the_box_is_finer() {
        let (d, apix) = (32, 1.0);
        let mut rng = Rng::new(1);
        let signal: Vec<f32> = (0..d * d * d).map(|_| rng.normal() as f32).collect();
        // Noise 0.1 in x < 16, 3.0 in x ≥ 16.
        let noisy = |seed: u64| -> Vec<f32> {
            let mut r = Rng::new(seed);
            signal.iter().enumerate().map(|(i, &s)| s + (if i % d < 16 { 0.1 } else { 3.0 } * r.normal()) as f32).collect()
        };
        let (a, b) = (noisy(2), noisy(3));
        let p = LocresParams { radius_px: 4.0, edge_px: 2.0, step_px: 4, threshold: 0.143 };
        let lr = local_resolution(&a, &b, d, apix, None, &p);
        assert_eq!(lr.window_px, 12);
        assert_eq!(lr.samples.len(), 8 * 8 * 8);
        // Clean side: white signal at SNR 100 correlates to Nyquist.
        let at = |x: usize| lr.map_a[(16 * d + 16) * d + x];
        assert_eq!(at(6), 2.0);
        assert!(at(26) > 2.5, "{}", at(26));
        assert!(lr.map_a.iter().all(|&v| (2.0..=12.0).contains(&v)));
        // A mask: zero outside.
        let m: Vec<f32> = (0..d * d * d).map(|i| if (i / (d * d)) < 8 { 1.0 } else { 0.0 }).collect();
        let lr = local_resolution(&a, &b, d, apix, Some(&m), &p);
        assert!(lr.map_a[(20 * d + 16) * d + 6] == 0.0 && lr.map_a[(4 * d + 16) * d + 6] == 2.0);
        assert_eq!(lr.samples.len(), 2 * 8 * 8);
    }
}
