//! Soft masks on the FFT-aligned `D³` grid (values in `[0, 1]`, x fastest, centre at `D/2`).
//!
//! Soft edges are raised cosines: `1` inside, falling to `0` over `edge_px` voxels.

use crate::fourier::centred_index;

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
}
