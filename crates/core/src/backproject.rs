//! Direct Fourier inversion (backprojection): the baseline reconstruction.
//!
//! # Parallel work
//!
//! One unit of parallel work is a contiguous run of particles with its own accumulator (a
//! padded 3D half spectrum of data and weights): each image is transformed, corrected for its
//! origin shift, multiplied by its CTF and inserted as a central slice; accumulators are summed
//! at the end in a fixed order. No atomics, and the result does not depend on scheduling.
//!
//! # Method
//!
//! * Each `D×D` image is zero-padded to `P = pad·D` (centred), transformed
//!   ([`crate::fourier::Fft2`]), and its origin shift undone in Fourier space (the image is the
//!   projection moved by `−o`, so its spectrum is multiplied by `exp(−2πi k·o)`).
//! * By the central-slice theorem the 2D spectrum at `(kx, ky)` is the 3D spectrum at
//!   `Aᵀ·(kx, ky, 0)`. Each sample is spread to its 8 neighbours with trilinear weights `w`:
//!   `data += w·CTF·X`, `weight += w·CTF²` (without a CTF, `CTF = 1`). Only the half spectrum
//!   `kx ≥ 0` is stored; samples with `kx < 0` go in as their conjugate mirror, and the `kx = 0`
//!   plane receives both a sample and its mirror.
//! * [`Accumulator::finish`]: `F = data / (weight + λ)` with `λ = wiener · mean(weight)` over
//!   the sphere inside Nyquist (a Tikhonov/Wiener-style constant that keeps CTF zeros and
//!   unsampled voxels from blowing up), inverse 3D transform, crop to `D³`, and gridding
//!   correction: division by `sinc²(x/P)` per axis, the transform of the trilinear kernel.
//!
//! The map scale follows the crate convention (a column sum along z is the image value): the
//! 2D transform of a projection equals the 3D transform on the `kz = 0` plane.

use crate::ctf::{CtfGrid, CtfParams};
use crate::fourier::{freq_index, shift_spectrum_2d, Complex32, Fft2, Fft3};
use crate::pose::Pose;

/// Padded 3D accumulators for one map.
#[derive(Clone)]
pub struct Accumulator {
    d: usize,
    p: usize,
    data: Vec<Complex32>,
    weight: Vec<f32>,
    /// Images inserted.
    pub count: usize,
}

/// Per-thread buffers for inserting images (made once, reused for every image).
pub struct InsertScratch {
    fft: Fft2,
    padded: Vec<f32>,
    spec: Vec<Complex32>,
    ctf: Vec<f32>,
    grid: CtfGrid,
}

impl InsertScratch {
    /// Buffers for `d×d` images with pixel size `apix`, padded by `pad`.
    pub fn new(d: usize, pad: usize, apix: f64) -> Self {
        let p = d * pad;
        let fft = Fft2::new(p);
        let n = fft.spectrum_len();
        InsertScratch { fft, padded: vec![0.0; p * p], spec: vec![Complex32::new(0.0, 0.0); n], ctf: vec![1.0; n], grid: CtfGrid::new(p, apix) }
    }
}

impl Accumulator {
    /// Empty accumulators for `d³` maps padded by `pad` (≥ 1).
    pub fn new(d: usize, pad: usize) -> Self {
        let p = d * pad.max(1);
        let n = p * p * (p / 2 + 1);
        Accumulator { d, p, data: vec![Complex32::new(0.0, 0.0); n], weight: vec![0.0; n], count: 0 }
    }

    /// Insert one `d×d` centred image with its pose (origin in Å), pixel size and CTF.
    pub fn insert(&mut self, image: &[f32], pose: &Pose, apix: f64, ctf: Option<&CtfParams>, s: &mut InsertScratch) {
        let (d, p) = (self.d, self.p);
        assert_eq!(image.len(), d * d);
        let off = p / 2 - d / 2;
        s.padded.iter_mut().for_each(|v| *v = 0.0);
        for y in 0..d {
            s.padded[(y + off) * p + off..(y + off) * p + off + d].copy_from_slice(&image[y * d..(y + 1) * d]);
        }
        s.fft.forward(&s.padded, &mut s.spec);
        shift_spectrum_2d(&mut s.spec, p, apix, pose.origin_a[0], pose.origin_a[1]);
        match ctf {
            Some(c) => s.grid.fill_rfft(c, &mut s.ctf),
            None => s.ctf.iter_mut().for_each(|v| *v = 1.0),
        }
        let a = pose.rot;
        let w = p / 2 + 1;
        let lim2 = ((p / 2) as f64 - 1.0).powi(2);
        for r in 0..p {
            let ky = freq_index(r, p) as f64;
            for c in 0..w {
                let kx = c as f64;
                if kx * kx + ky * ky > lim2 {
                    continue;
                }
                // Columns 1..P/2−1 stand for two samples: (kx, ky) and its Hermitian partner
                // (−kx, −ky), which lands on −q with the conjugate value, i.e. on the same
                // stored voxels. Columns 0 and P/2 hold both partners as separate rows.
                let m = if c > 0 && c < w - 1 { 2.0 } else { 1.0 };
                let ctf = s.ctf[r * w + c];
                let val = s.spec[r * w + c] * (ctf * m);
                let wt = ctf * ctf * m;
                // q = Aᵀ·(kx, ky, 0).
                let q = [a[0][0] * kx + a[1][0] * ky, a[0][1] * kx + a[1][1] * ky, a[0][2] * kx + a[1][2] * ky];
                self.splat(q, val, wt);
            }
        }
        self.count += 1;
    }

    #[inline]
    fn splat(&mut self, q: [f64; 3], val: Complex32, wt: f32) {
        // Keep kx ≥ 0 by Hermitian symmetry.
        let (q, val) = if q[0] < 0.0 { ([-q[0], -q[1], -q[2]], val.conj()) } else { (q, val) };
        let p = self.p as i64;
        let w = p / 2 + 1;
        let x0 = q[0].floor();
        let y0 = q[1].floor();
        let z0 = q[2].floor();
        let (fx, fy, fz) = ((q[0] - x0) as f32, (q[1] - y0) as f32, (q[2] - z0) as f32);
        let (x0, y0, z0) = (x0 as i64, y0 as i64, z0 as i64);
        for dz in 0..2 {
            let wz = if dz == 0 { 1.0 - fz } else { fz };
            for dy in 0..2 {
                let wy = if dy == 0 { 1.0 - fy } else { fy };
                for dx in 0..2 {
                    let wx = if dx == 0 { 1.0 - fx } else { fx };
                    let ww = wx * wy * wz;
                    if ww == 0.0 {
                        continue;
                    }
                    let (x, y, z) = (x0 + dx, y0 + dy, z0 + dz);
                    if x >= w || y.abs() > p / 2 || z.abs() > p / 2 {
                        continue;
                    }
                    let idx = ((z.rem_euclid(p) * p + y.rem_euclid(p)) * w + x) as usize;
                    self.data[idx] += val * ww;
                    self.weight[idx] += wt * ww;
                    if x == 0 {
                        // The kx = 0 plane stores both (0, y, z) and (0, −y, −z).
                        let m = (((-z).rem_euclid(p) * p + (-y).rem_euclid(p)) * w) as usize;
                        if m != idx {
                            self.data[m] += val.conj() * ww;
                            self.weight[m] += wt * ww;
                        }
                    }
                }
            }
        }
    }

    /// Add another accumulator (same size).
    pub fn add(&mut self, o: &Accumulator) {
        assert_eq!(self.data.len(), o.data.len());
        for (a, b) in self.data.iter_mut().zip(&o.data) {
            *a += b;
        }
        for (a, b) in self.weight.iter_mut().zip(&o.weight) {
            *a += b;
        }
        self.count += o.count;
    }

    /// The `d³` map (see the module docs); `wiener` is the regularisation fraction.
    pub fn finish(&self, wiener: f64) -> Vec<f32> {
        let (d, p) = (self.d, self.p);
        let w = p / 2 + 1;
        let lim2 = ((p / 2) as f64 - 1.0).powi(2);
        let (mut sum, mut n) = (0.0f64, 0usize);
        for pz in 0..p {
            let fz = freq_index(pz, p) as f64;
            for r in 0..p {
                let fy = freq_index(r, p) as f64;
                for c in 0..w {
                    if fz * fz + fy * fy + (c * c) as f64 <= lim2 {
                        sum += self.weight[(pz * p + r) * w + c] as f64;
                        n += 1;
                    }
                }
            }
        }
        let lambda = (wiener * sum / n.max(1) as f64).max(1e-30) as f32;
        let mut spec = vec![Complex32::new(0.0, 0.0); self.data.len()];
        for pz in 0..p {
            let fz = freq_index(pz, p) as f64;
            for r in 0..p {
                let fy = freq_index(r, p) as f64;
                for c in 0..w {
                    let i = (pz * p + r) * w + c;
                    if fz * fz + fy * fy + (c * c) as f64 <= lim2 {
                        spec[i] = self.data[i] / (self.weight[i] + lambda);
                    }
                }
            }
        }
        let vol = Fft3::new(p).inverse(spec);
        let off = p / 2 - d / 2;
        let sinc2 = |i: usize| -> f64 {
            let x = (i as f64 - (d / 2) as f64) / p as f64;
            if x == 0.0 {
                1.0
            } else {
                let t = std::f64::consts::PI * x;
                (t.sin() / t).powi(2)
            }
        };
        let corr: Vec<f64> = (0..d).map(sinc2).collect();
        let mut out = vec![0.0f32; d * d * d];
        for z in 0..d {
            for y in 0..d {
                for x in 0..d {
                    let v = vol[((z + off) * p + y + off) * p + x + off] as f64;
                    out[(z * d + y) * d + x] = (v / (corr[x] * corr[y] * corr[z])) as f32;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projector::project_volume;
    use crate::rng::Rng;
    use crate::rotation::random_rotation;

    fn blob(d: usize) -> Vec<f32> {
        let c = (d / 2) as f64;
        (0..d * d * d)
            .map(|k| {
                let (x, y, z) = ((k % d) as f64 - c, ((k / d) % d) as f64 - c, (k / (d * d)) as f64 - c);
                ((-((x - 2.0).powi(2) / 6.0 + y * y / 10.0 + (z + 1.0).powi(2) / 4.0)).exp()
                    + 0.5 * (-((x + 3.0).powi(2) + (y - 3.0).powi(2) + z * z) / 3.0).exp()) as f32
            })
            .collect()
    }

    fn corr(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().map(|&v| v as f64).sum::<f64>() / n, b.iter().map(|&v| v as f64).sum::<f64>() / n);
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (x as f64 - ma, y as f64 - mb);
            sab += x * y;
            saa += x * x;
            sbb += y * y;
        }
        sab / (saa * sbb).sqrt()
    }

    #[test]
    fn noiseless_projections_give_back_the_volume() {
        let d = 24;
        let vol = blob(d);
        let mut r = Rng::new(4);
        let mut acc = Accumulator::new(d, 2);
        let mut s = InsertScratch::new(d, 2, 1.0);
        let mut img = vec![0.0f32; d * d];
        for _ in 0..600 {
            let pose = Pose { rot: random_rotation(&mut r), origin_a: [0.0, 0.0] };
            project_volume(&vol, d, &pose.rot, [0.0, 0.0], 2, &mut img);
            acc.insert(&img, &pose, 1.0, None, &mut s);
        }
        let map = acc.finish(1e-3);
        let c = corr(&map, &vol);
        assert!(c > 0.99, "correlation {c}");
        // Scale: the map's column sums equal the projections (to a few %).
        let (sm, sv): (f64, f64) = (map.iter().map(|&v| v as f64).sum(), vol.iter().map(|&v| v as f64).sum());
        assert!((sm / sv - 1.0).abs() < 0.05, "total {sm} vs {sv}");
    }
}
