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
//! * With a point group ([`Accumulator::insert_symmetric`], [`crate::symmetry`]) the same
//!   transformed image is inserted once per operator `R_k` at the rotation `A·R_k`: the
//!   slices of a symmetric map seen from all the symmetry-related directions.
//! * Finishing: `F = data / (weight + λ)` inside the Nyquist sphere (zero outside), inverse 3D
//!   transform, crop to `D³`, and gridding correction: division by `sinc²(x/P)` per axis, the
//!   transform of the trilinear kernel. The term `λ` keeps CTF zeros and unsampled voxels from
//!   blowing up; two choices (see [Regularisation](#regularisation)).
//!
//! # Regularisation
//!
//! * **Constant** ([`Accumulator::finish`]): `λ = wiener · mean(weight)`, the mean over the
//!   padded voxels inside the Nyquist sphere, the same for every voxel.
//! * **From the SSNR** ([`Accumulator::finish_ssnr`], [`Accumulator::ssnr_filter`]): RELION's
//!   regularisation of a reconstruction whose signal spectrum is estimated from the
//!   gold-standard FSC. With `W` the accumulated `CTF²` weight, the unregularised estimate
//!   `data/W` has, per voxel, noise power `σ²/W` (`σ²` the images' noise power at that
//!   frequency); the Wiener (MAP) estimate for a signal power `τ²` per voxel is
//!   `data / (W + σ²/τ²)`. Per shell `n` of the `D` grid (padded voxels at radius `r` belong to
//!   shell `round(r/pad)`), the half-map FSC gives the spectral SNR `SSNR_n = FSC_n/(1 − FSC_n)`
//!   ([`crate::fsc::ssnr_from_fsc`]); approximating the shell's noise power by
//!   `σ²/mean_n(W)`, as RELION's reconstruction does on its padded grid, gives
//!   `τ²_n = σ² · SSNR_n / mean_n(W)` and
//!
//!   `λ_n = σ²/τ²_n = mean_n(W) / SSNR_n`,
//!
//!   so `σ²` cancels and the images need no noise model. The FSC is clamped to
//!   `[0.001, 0.999]` first, so a shell without signal gets `λ ≈ 1000 · mean_n(W)` (damped about
//!   a thousandfold) and a perfect one `λ ≈ mean_n(W)/999`. For the map of both halves the FSC
//!   of the full set, `2F/(1 + F)`, replaces `F` (twice the particles: `SSNR_full =
//!   2·SSNR_half`).
//!
//!   Where the term is applied differs from RELION: the map is first finished with the
//!   constant term `λ₀` of [`BASE_WIENER`] (crop and gridding correction included), and then
//!   each component `k` of its `D`-grid spectrum is multiplied by `(W + λ₀)/(W + λ_n)`, with `W`
//!   the weight at the coinciding padded voxel `pad·k`; the result is `data/(W + λ_n)` there.
//!   Applied on the padded grid before the crop (RELION's order), the steep damping of shells
//!   without signal let the crop and the gridding correction leak the much stronger
//!   low-frequency shells into them: on a 64 px simulation the FSC against the ground truth
//!   then crossed 0.143 at 5.1 Å instead of 4.5 Å, with the same real-space error.
//!
//! The map scale follows the crate convention (a column sum along z is the image value): the
//! 2D transform of a projection equals the 3D transform on the `kz = 0` plane.

use crate::ctf::{CtfGrid, CtfParams};
use crate::fourier::{centred_index, freq_index, freq_position, shift_spectrum_2d, Complex32, Fft2, Fft3};
use crate::pose::{mat_mul, Mat3, Pose, IDENTITY};

/// The constant term [`Accumulator::finish_ssnr`] starts from (a fraction of the mean weight).
pub const BASE_WIENER: f64 = 0.01;

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
        InsertScratch {
            fft,
            padded: vec![0.0; p * p],
            spec: vec![Complex32::new(0.0, 0.0); n],
            ctf: vec![1.0; n],
            grid: CtfGrid::new(p, apix),
        }
    }
}

/// The maps of [`Accumulator::finish_halves`].
pub struct FinishedHalves {
    pub half_a: Vec<f32>,
    pub half_b: Vec<f32>,
    /// The map of both halves.
    pub full: Vec<f32>,
    /// The full-set SSNR per shell it was regularised with.
    pub ssnr_full: Vec<f64>,
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
        self.insert_symmetric(image, pose, apix, ctf, &[IDENTITY], s);
    }

    /// Insert one image once for every operator `R_k` of a point group, with the poses `A·R_k`
    /// (RELION's symmetry expansion; [`crate::symmetry`]): for a map with `V(R_k·r) = V(r)`
    /// the image is a central slice at each of these poses. The image is transformed once; each
    /// operator adds its slice to the data and the weights, so both grow `|G|`-fold and a
    /// regularisation proportional to the mean weight keeps its meaning. `count` grows by one.
    /// With `ops = [IDENTITY]` this is [`Accumulator::insert`].
    pub fn insert_symmetric(
        &mut self,
        image: &[f32],
        pose: &Pose,
        apix: f64,
        ctf: Option<&CtfParams>,
        ops: &[Mat3],
        s: &mut InsertScratch,
    ) {
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
        for op in ops {
            let a = if *op == IDENTITY { pose.rot } else { mat_mul(&pose.rot, op) };
            self.insert_slice(&a, s);
        }
        self.count += 1;
    }

    /// Splat the transformed, CTF-weighted image in `s` as the central slice of rotation `a`.
    fn insert_slice(&mut self, a: &Mat3, s: &InsertScratch) {
        let p = self.p;
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
                    let idx = (freq_position(z, self.p) * self.p + freq_position(y, self.p)) * w as usize + x as usize;
                    self.data[idx] += val * ww;
                    self.weight[idx] += wt * ww;
                    if x == 0 {
                        // The kx = 0 plane stores both (0, y, z) and (0, −y, −z).
                        let m = (freq_position(-z, self.p) * self.p + freq_position(-y, self.p)) * w as usize;
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

    /// Shell of the `D` grid that a padded voxel at squared radius `r2` (in padded-grid
    /// samples) belongs to: `round(r/pad)`.
    #[inline]
    fn shell_of(&self, r2: f64) -> usize {
        (r2.sqrt() * self.d as f64 / self.p as f64).round() as usize
    }

    /// Calls `f(index, r2)` for every stored padded voxel inside the Nyquist sphere.
    fn for_each_inside(&self, mut f: impl FnMut(usize, f64)) {
        let (p, w) = (self.p, self.p / 2 + 1);
        let lim2 = ((p / 2) as f64 - 1.0).powi(2);
        for pz in 0..p {
            let fz = freq_index(pz, p) as f64;
            for r in 0..p {
                let fy = freq_index(r, p) as f64;
                for c in 0..w {
                    let r2 = fz * fz + fy * fy + (c * c) as f64;
                    if r2 <= lim2 {
                        f((pz * p + r) * w + c, r2);
                    }
                }
            }
        }
    }

    /// The constant term `wiener · mean(weight)` (mean over the Nyquist sphere), at least 1e-30.
    fn constant_lambda(&self, wiener: f64) -> f64 {
        let (mut sum, mut n) = (0.0f64, 0usize);
        self.for_each_inside(|i, _| {
            sum += self.weight[i] as f64;
            n += 1;
        });
        (wiener * sum / n.max(1) as f64).max(1e-30)
    }

    /// Mean accumulated weight per shell `0..=D/2` of the `D` grid, over the padded voxels
    /// inside the Nyquist sphere (see [`Accumulator::ssnr_filter`]).
    pub fn shell_mean_weight(&self) -> Vec<f64> {
        let n_shells = self.d / 2 + 1;
        let (mut sum, mut count) = (vec![0.0f64; n_shells], vec![0usize; n_shells]);
        self.for_each_inside(|i, r2| {
            let n = self.shell_of(r2).min(n_shells - 1);
            sum[n] += self.weight[i] as f64;
            count[n] += 1;
        });
        sum.iter().zip(&count).map(|(&s, &c)| if c > 0 { s / c as f64 } else { 0.0 }).collect()
    }

    /// The `d³` map with a constant regularisation: `λ = wiener · mean(weight)` (module docs).
    pub fn finish(&self, wiener: f64) -> Vec<f32> {
        let lambda = self.constant_lambda(wiener) as f32;
        let mut spec = vec![Complex32::new(0.0, 0.0); self.data.len()];
        self.for_each_inside(|i, _| spec[i] = self.data[i] / (self.weight[i] + lambda));
        let (d, p) = (self.d, self.p);
        let vol = Fft3::new(p).inverse(spec);
        let off = p / 2 - d / 2;
        let sinc2 = |i: usize| -> f64 {
            let x = centred_index(i, d) as f64 / p as f64;
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

    /// The `d³` map regularised from the spectral SNR per shell `0..=D/2` (module docs):
    /// [`Accumulator::finish`] with [`BASE_WIENER`], then [`Accumulator::ssnr_filter`].
    pub fn finish_ssnr(&self, ssnr: &[f64]) -> Vec<f32> {
        self.ssnr_filter(&self.finish(BASE_WIENER), BASE_WIENER, ssnr)
    }

    /// The gold-standard finish of two half accumulators, `self` (half A) and `other` (half
    /// B): each half map with the constant term [`BASE_WIENER`], and the map of both halves
    /// ([`Accumulator::add`]) regularised from the full-set SSNR of their FSC
    /// ([`crate::fsc::ssnr_from_fsc`], [`Accumulator::finish_ssnr`]).
    pub fn finish_halves(mut self, other: &Accumulator) -> FinishedHalves {
        let (half_a, half_b) = (self.finish(BASE_WIENER), other.finish(BASE_WIENER));
        let ssnr_full = crate::fsc::ssnr_from_fsc(&crate::fsc::fsc(&half_a, &half_b, self.d), true);
        self.add(other);
        let full = self.finish_ssnr(&ssnr_full);
        FinishedHalves { half_a, half_b, full, ssnr_full }
    }

    /// Turn `map`, this accumulator's [`Accumulator::finish`]`(wiener)`, into the
    /// SSNR-regularised map (module docs): every component `k` of its `D`-grid spectrum is
    /// multiplied by `(W + λ₀)/(W + λ_n)`, with `W` the weight at the padded voxel `pad·k`,
    /// `λ₀ = wiener · mean(W)` the term `map` was made with, `n = round(|k|)` and
    /// `λ_n = mean_n(W)/ssnr[n]` ([`Accumulator::shell_mean_weight`]). Shells beyond the
    /// slice use its last value.
    pub fn ssnr_filter(&self, map: &[f32], wiener: f64, ssnr: &[f64]) -> Vec<f32> {
        assert!(!ssnr.is_empty(), "an SSNR per shell is needed");
        let (d, p) = (self.d, self.p);
        assert_eq!(map.len(), d * d * d);
        let (pad, wp, wd) = ((p / d) as i64, p / 2 + 1, d / 2 + 1);
        let lambda0 = self.constant_lambda(wiener);
        let lambda: Vec<f64> =
            self.shell_mean_weight().iter().enumerate().map(|(n, &m)| (m / ssnr[n.min(ssnr.len() - 1)].max(1e-12)).max(1e-30)).collect();
        let f = Fft3::new(d);
        let mut spec = f.forward(map);
        for z in 0..d {
            let fz = freq_index(z, d);
            let pz = freq_position(fz * pad, p);
            for y in 0..d {
                let fy = freq_index(y, d);
                let py = freq_position(fy * pad, p);
                for x in 0..wd {
                    let px = x * pad as usize;
                    let wt = if px < wp { self.weight[(pz * p + py) * wp + px] as f64 } else { 0.0 };
                    let n = (((fz * fz + fy * fy) as f64 + (x * x) as f64).sqrt().round() as usize).min(lambda.len() - 1);
                    spec[(z * d + y) * wd + x] *= ((wt + lambda0) / (wt + lambda[n])) as f32;
                }
            }
        }
        f.inverse(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsc::{correlation as corr, fsc, ssnr_from_fsc};
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

    /// Two half accumulators of `n` random views of `images(pose, img)`, alternating.
    fn halves(d: usize, n: usize, seed: u64, mut image: impl FnMut(&Pose, &mut Rng, &mut [f32])) -> (Accumulator, Accumulator) {
        let mut r = Rng::new(seed);
        let (mut a, mut b) = (Accumulator::new(d, 2), Accumulator::new(d, 2));
        let mut s = InsertScratch::new(d, 2, 1.0);
        let mut img = vec![0.0f32; d * d];
        for i in 0..n {
            let pose = Pose { rot: random_rotation(&mut r), origin_a: [0.0, 0.0] };
            image(&pose, &mut r, &mut img);
            let t = if i % 2 == 0 { &mut a } else { &mut b };
            t.insert(&img, &pose, 1.0, None, &mut s);
        }
        (a, b)
    }

    fn rms(v: &[f32]) -> f64 {
        (v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    }

    #[test]
    fn ssnr_regularisation_leaves_noiseless_data_alone() {
        // Noiseless halves agree (FSC ≈ 1, clamped to 0.999) wherever the blob has power: SSNR
        // ≈ 999 there, so λ ≈ mean(W)/999 and the map is close to the lightly regularised one.
        // (The smooth blob has almost no power in the outer shells, where interpolation
        // errors dominate and the FSC falls; damping them changes little.)
        let d = 24;
        let vol = blob(d);
        let (a, b) = halves(d, 600, 4, |pose, _, img| project_volume(&vol, d, &pose.rot, [0.0, 0.0], 2, img));
        let curve = fsc(&a.finish(0.01), &b.finish(0.01), d);
        assert!(curve[..=8].iter().all(|&f| f > 0.99), "{curve:?}");
        let ssnr = ssnr_from_fsc(&curve, true);
        assert!(ssnr[..=7].iter().all(|&s| s > 900.0), "{ssnr:?}");
        let mut ab = a.clone();
        ab.add(&b);
        let (reg, light) = (ab.finish_ssnr(&ssnr), ab.finish(1e-3));
        // Measured: correlation 0.999, rms difference 0.1% of the map's rms.
        assert!(corr(&reg, &vol) > 0.99, "correlation {}", corr(&reg, &vol));
        let diff: Vec<f32> = reg.iter().zip(&light).map(|(x, y)| x - y).collect();
        eprintln!("correlation {:.5}, rms difference / rms {:.5}", corr(&reg, &vol), rms(&diff) / rms(&light));
        assert!(rms(&diff) < 0.01 * rms(&light), "rms difference {} of {}", rms(&diff), rms(&light));
    }

    #[test]
    fn ssnr_regularisation_damps_pure_noise() {
        // Images of white noise only: the halves do not correlate (FSC ≈ 0, clamped to 0.001),
        // SSNR ≈ 0.001, λ ≈ 1000 · mean(W): the map is damped by orders of magnitude.
        let d = 24;
        let (a, b) = halves(d, 600, 9, |_, r, img| img.iter_mut().for_each(|v| *v = r.normal() as f32));
        let curve = fsc(&a.finish(0.01), &b.finish(0.01), d);
        let ssnr = ssnr_from_fsc(&curve, false);
        // Beyond the first few shells (a handful of voxels each) the FSC is at chance level.
        assert!(ssnr[4..].iter().all(|&s| s < 0.2), "{ssnr:?}");
        let (reg, plain) = (a.finish_ssnr(&ssnr), a.finish(0.01));
        let ratio = rms(&reg) / rms(&plain);
        eprintln!("SSNR {:?}; damped to {ratio:.4}", ssnr.iter().map(|s| (s * 1e4).round() / 1e4).collect::<Vec<_>>());
        // Measured 0.019 (the DC term and a few chance correlations in small shells remain).
        assert!(ratio < 0.05, "noise map damped only to {ratio} of its constant-regularised rms");
        // Without signal at any shell, SSNR = 0.001 everywhere: damping ≈ mean(W)/λ ≈ 1/1000.
        let floor = vec![ssnr_from_fsc(&[0.0], false)[0]; d / 2 + 1];
        let ratio_floor = rms(&a.finish_ssnr(&floor)) / rms(&plain);
        eprintln!("with SSNR 0.001 everywhere: damped to {ratio_floor:.5}");
        assert!(ratio_floor < 3e-3, "{ratio_floor}"); // measured 0.00100
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
