//! Soft masks on the FFT-aligned `D³` grid (values in `[0, 1]`, x fastest, centre at `D/2`).
//!
//! Soft edges are raised cosines: `1` inside, falling to `0` over `edge_px` voxels.
//!
//! [`create`] makes a mask from a map by `relion_mask_create`'s recipe: an optional low-pass,
//! binarisation at a threshold, extension of the binary mask by a number of voxels, and a
//! raised-cosine soft edge beyond that. [`auto_threshold`] picks a threshold from the map's
//! histogram.

use crate::fourier::{centred_index, low_pass_volume};

/// A sphere of radius `radius_px` around the box centre with a cosine edge `edge_px` wide
/// outside it.
pub fn spherical(d: usize, radius_px: f64, edge_px: f64) -> Vec<f32> {
    let c = |i: usize| centred_index(i, d) as f64;
    let mut m = vec![0.0f32; d * d * d];
    for z in 0..d {
        for y in 0..d {
            for x in 0..d {
                let r = (c(x).powi(2) + c(y).powi(2) + c(z).powi(2)).sqrt();
                m[(z * d + y) * d + x] = soft_edge(r - radius_px, edge_px) as f32;
            }
        }
    }
    m
}

/// Weight at distance `t` beyond a mask's hard boundary (`t ≤ 0` inside).
#[inline]
pub fn soft_edge(t: f64, edge: f64) -> f64 {
    if t <= 0.0 {
        1.0
    } else if t >= edge {
        0.0
    } else {
        0.5 * (1.0 + (std::f64::consts::PI * t / edge).cos())
    }
}

/// Threshold mask: voxels of `map` above `threshold`, dilated by `dilate_px`, with a cosine
/// edge `edge_px` wide. Distances are exact Euclidean distances (separable distance transform).
pub fn threshold(map: &[f32], d: usize, threshold: f32, dilate_px: f64, edge_px: f64) -> Vec<f32> {
    let inside: Vec<bool> = map.iter().map(|&v| v > threshold).collect();
    let dist2 = distance_transform_sq(&inside, d);
    dist2.iter().map(|&s| soft_edge(s.sqrt() - dilate_px, edge_px) as f32).collect()
}

/// Squared Euclidean distance from every voxel to the nearest `true` voxel (`f64::INFINITY`
/// where there is none), by the separable lower-envelope algorithm, one axis at a time.
pub fn distance_transform_sq(inside: &[bool], d: usize) -> Vec<f64> {
    let big = 1e20;
    let mut f: Vec<f64> = inside.iter().map(|&b| if b { 0.0 } else { big }).collect();
    let mut line = vec![0.0f64; d];
    let mut out = vec![0.0f64; d];
    let mut v = vec![0usize; d];
    let mut zk = vec![0.0f64; d + 1];
    for axis in 0..3 {
        let stride = [1, d, d * d][axis];
        for a in 0..d {
            for b in 0..d {
                let base = match axis {
                    0 => (a * d + b) * d,
                    1 => a * d * d + b,
                    _ => a * d + b,
                };
                for i in 0..d {
                    line[i] = f[base + i * stride];
                }
                edt_1d(&line, &mut out, &mut v, &mut zk);
                for i in 0..d {
                    f[base + i * stride] = out[i];
                }
            }
        }
    }
    f.into_iter().map(|x| if x >= big * 0.5 { f64::INFINITY } else { x }).collect()
}

/// One-dimensional squared distance transform of sampled function `f` (lower envelope of
/// parabolas).
fn edt_1d(f: &[f64], out: &mut [f64], v: &mut [usize], z: &mut [f64]) {
    let n = f.len();
    let mut k = 0usize;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        loop {
            let p = v[k];
            let s = ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * (q as f64 - p as f64));
            if s <= z[k] && k > 0 {
                k -= 1;
                continue;
            }
            if s <= z[k] {
                // k == 0: replace the first parabola.
                v[0] = q;
                z[0] = f64::NEG_INFINITY;
                z[1] = f64::INFINITY;
                break;
            }
            k += 1;
            v[k] = q;
            z[k] = s;
            z[k + 1] = f64::INFINITY;
            break;
        }
    }
    k = 0;
    for (q, o) in out.iter_mut().enumerate().take(n) {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        *o = (q as f64 - p as f64).powi(2) + f[p];
    }
}

/// How [`create`] makes a mask.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskParams {
    /// Binarise at this value (voxels strictly above it are inside).
    pub threshold: f32,
    /// Extend the binary mask by this many voxels (Euclidean).
    pub extend_px: f64,
    /// Width of the raised-cosine edge beyond the extended mask (voxels).
    pub soft_edge_px: f64,
    /// Low-pass the map at this resolution (Å) before binarising.
    pub lowpass_a: Option<f64>,
}

/// Width (frequency samples) of the raised-cosine edge of [`create`]'s low-pass.
pub const LOWPASS_EDGE_PX: f64 = 2.0;

/// The map [`create`] thresholds: `map`, low-passed at `lowpass_a` Å if given.
pub fn prepared(map: &[f32], d: usize, apix: f64, lowpass_a: Option<f64>) -> Vec<f32> {
    match lowpass_a {
        Some(r) => low_pass_volume(map, d, apix, r, LOWPASS_EDGE_PX),
        None => map.to_vec(),
    }
}

/// A soft mask from a `D³` map (pixel size `apix`) by `relion_mask_create`'s recipe (module
/// docs).
pub fn create(map: &[f32], d: usize, apix: f64, p: &MaskParams) -> Vec<f32> {
    threshold(&prepared(map, d, apix, p.lowpass_a), d, p.threshold, p.extend_px, p.soft_edge_px)
}

/// A threshold chosen by [`auto_threshold`] and the statistics it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AutoThreshold {
    pub threshold: f32,
    /// The median of the map (the solvent level: solvent fills most of a box).
    pub median: f64,
    /// The solvent's noise, `1.4826 × median absolute deviation` (the standard deviation of
    /// normal noise).
    pub noise_sigma: f64,
    /// The largest value.
    pub max: f64,
    /// The fraction of voxels above the threshold.
    pub fraction_above: f64,
}

/// Standard deviations of solvent noise above the median at which [`auto_threshold`] cuts.
pub const AUTO_NOISE_SIGMAS: f64 = 5.0;
/// Fraction of the way from the median to the maximum below which [`auto_threshold`] never cuts.
pub const AUTO_MIN_FRACTION_OF_MAX: f64 = 0.05;

/// A threshold from the map's histogram: the solvent, which fills most of a box, is the peak of
/// the histogram around the median; its width is measured by the median absolute deviation
/// (`σ = 1.4826·MAD`, robust against the protein's tail). The threshold is
/// `median + max(AUTO_NOISE_SIGMAS·σ, AUTO_MIN_FRACTION_OF_MAX·(max − median))`: five noise
/// standard deviations above the solvent, and, for a map without noise (where σ is about 0),
/// at least 5% of the way to the maximum. `None` for a map without finite values.
pub fn auto_threshold(map: &[f32]) -> Option<AutoThreshold> {
    let mut v: Vec<f64> = map.iter().filter(|x| x.is_finite()).map(|&x| x as f64).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    let max = v[v.len() - 1];
    let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let noise_sigma = 1.4826 * dev[dev.len() / 2];
    let t = median + (AUTO_NOISE_SIGMAS * noise_sigma).max(AUTO_MIN_FRACTION_OF_MAX * (max - median));
    let threshold = t as f32;
    let fraction_above = v.iter().filter(|&&x| x > threshold as f64).count() as f64 / v.len() as f64;
    Some(AutoThreshold { threshold, median, noise_sigma, max, fraction_above })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sphere_values() {
        let d = 16;
        let m = spherical(d, 4.0, 2.0);
        assert_eq!(m[(8 * d + 8) * d + 8], 1.0);
        assert_eq!(m[(8 * d + 8) * d + 12], 1.0);
        assert!((m[(8 * d + 8) * d + 13] - 0.5).abs() < 1e-6);
        assert_eq!(m[(8 * d + 8) * d + 14], 0.0);
    }

    #[test]
    fn distance_transform_matches_brute_force() {
        let d = 9;
        let mut inside = vec![false; d * d * d];
        for &(x, y, z) in &[(1usize, 2usize, 3usize), (7, 7, 1), (4, 4, 4)] {
            inside[(z * d + y) * d + x] = true;
        }
        let dt = distance_transform_sq(&inside, d);
        for z in 0..d {
            for y in 0..d {
                for x in 0..d {
                    let want = [(1.0, 2.0, 3.0), (7.0, 7.0, 1.0), (4.0, 4.0, 4.0)]
                        .iter()
                        .map(|&(a, b, c): &(f64, f64, f64)| (x as f64 - a).powi(2) + (y as f64 - b).powi(2) + (z as f64 - c).powi(2))
                        .fold(f64::INFINITY, f64::min);
                    assert_eq!(dt[(z * d + y) * d + x], want, "{x} {y} {z}");
                }
            }
        }
    }

    #[test]
    fn threshold_mask_dilates_and_softens() {
        let d = 16;
        let mut map = vec![0.0f32; d * d * d];
        map[(8 * d + 8) * d + 8] = 1.0;
        let m = threshold(&map, d, 0.5, 2.0, 2.0);
        assert_eq!(m[(8 * d + 8) * d + 10], 1.0);
        assert!((m[(8 * d + 8) * d + 11] - 0.5).abs() < 1e-6);
        assert_eq!(m[(8 * d + 8) * d + 12], 0.0);
    }

    #[test]
    fn create_extends_and_softens_a_low_passed_map() {
        let d = 24;
        let mut map = vec![0.0f32; d * d * d];
        for z in 10..14 {
            for y in 10..14 {
                for x in 10..14 {
                    map[(z * d + y) * d + x] = 1.0;
                }
            }
        }
        let p = MaskParams { threshold: 0.5, extend_px: 2.0, soft_edge_px: 3.0, lowpass_a: None };
        let m = create(&map, d, 1.0, &p);
        assert_eq!(m, threshold(&map, d, 0.5, 2.0, 3.0));
        // The cube's face at x = 13: 1 up to x = 15, half at 16.5, 0 from 18.
        let at = |x: usize| m[(12 * d + 12) * d + x];
        assert_eq!(at(15), 1.0);
        assert!((at(16) - soft_edge(1.0, 3.0) as f32).abs() < 1e-6 && at(16) < 1.0);
        assert_eq!(at(18), 0.0);
        assert!(m.iter().all(|&v| (0.0..=1.0).contains(&v)));
        // With a low-pass, the thresholded map is the low-passed one.
        let lp = MaskParams { lowpass_a: Some(6.0), ..p };
        assert_eq!(create(&map, d, 1.0, &lp), threshold(&low_pass_volume(&map, d, 1.0, 6.0, LOWPASS_EDGE_PX), d, 0.5, 2.0, 3.0));
    }

    #[test]
    fn auto_threshold_sits_above_the_solvent_noise() {
        let d = 24;
        let mut rng = crate::rng::Rng::new(3);
        let mut map: Vec<f32> = (0..d * d * d).map(|_| (0.1 * rng.normal()) as f32).collect();
        for z in 8..16 {
            for y in 8..16 {
                for x in 8..16 {
                    map[(z * d + y) * d + x] += 3.0;
                }
            }
        }
        let t = auto_threshold(&map).unwrap();
        assert!((t.noise_sigma - 0.1).abs() < 0.01, "{t:?}");
        assert!((t.threshold - 0.5).abs() < 0.06, "{t:?}");
        // Exactly the 8³ block is above it.
        assert!((t.fraction_above - 512.0 / (d * d * d) as f64).abs() < 1e-9, "{t:?}");
        // Without noise, 5% of the way to the maximum.
        let clean: Vec<f32> = map.iter().map(|&v| if v > 1.0 { 2.0 } else { 0.0 }).collect();
        let c = auto_threshold(&clean).unwrap();
        assert_eq!((c.noise_sigma, c.threshold), (0.0, 0.1));
        assert!(auto_threshold(&[f32::NAN]).is_none());
    }
}
