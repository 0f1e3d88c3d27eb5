//! The images a pipeline works on: read from the particle set (inverted if the set says so),
//! Fourier-cropped to the working box, multiplied by a scale, and kept in memory when the
//! caller asks. `reconstruct` caches them; `backproject` streams them once.
//!
//! One unit of parallel work while filling the cache is a block of 64 consecutive images read,
//! resampled and scaled by one worker with its own [`ReadScratch`].
//!
//! # Coarse copies
//!
//! Coarse-to-fine training (`reconstruct --coarse-to-fine`) trains its early steps on smaller
//! copies of the images: [`Images::coarse`] makes one of every image at a box `d' < d`
//! ([`FourierCrop`]), once per size. A copy keeps the frequencies `|kx|, |ky| < d'/2` of the
//! image (the Nyquist row and column of the small box are zero, so the copy is exactly
//! band-limited and real), multiplied by a Gaussian low-pass `exp(−2π²·σ²·|k|²)` with `σ` in box
//! units and `k` in cycles per box; pixel values are kept (a constant image stays that
//! constant), on the FFT-aligned grid with the centre at `d'/2` (the same physical point as
//! `d/2` of the full box), so origins in Å and poses are unchanged and the pixel is
//! `apix·d/d'`.

use crate::dataset::{DatasetError, ParticleSet};
use crate::progress::Progress;
use cryosplat_core::fourier::{freq_index, Complex32, Fft2, Resampler};

/// The working box for `--downsample` of `full` px images: the same rules for every pipeline
/// (an even box of at least 16 px, not larger than the images; without `--downsample` the
/// images' own box, which must be even).
pub fn working_box(downsample: Option<usize>, full: usize) -> Result<usize, String> {
    let d = match downsample {
        Some(nd) if nd < full => {
            if nd % 2 != 0 || nd < 16 {
                return Err(format!("--downsample {nd}: expected an even box of at least 16 px"));
            }
            nd
        }
        Some(nd) if nd > full => return Err(format!("--downsample {nd} is larger than the {full} px images")),
        _ => full,
    };
    if d % 2 != 0 {
        return Err(format!("the box is {d} px; an even box size is needed (use --downsample)"));
    }
    Ok(d)
}

/// A particle set's images at box `d`: in memory or read on demand.
pub struct Images<'a> {
    pub set: &'a ParticleSet,
    /// Working box (px).
    pub d: usize,
    /// Factor applied to every pixel of particle `i` after resampling (empty: 1 for all;
    /// [`Images::set_scales`]).
    scales: Vec<f32>,
    cache: Option<Vec<f32>>,
}

/// Per-thread scratch for reading an image.
pub struct ReadScratch {
    raw: Vec<f32>,
    resampler: Option<Resampler>,
}

impl<'a> Images<'a> {
    /// The images of `set` at box `d`, unscaled and not yet cached.
    pub fn new(set: &'a ParticleSet, d: usize) -> Self {
        Images { set, d, scales: Vec::new(), cache: None }
    }

    /// The factor [`Images::read`] multiplies particle `i`'s image by (1 when none was set).
    pub fn scale_of(&self, i: usize) -> f32 {
        self.scales.get(i).copied().unwrap_or(1.0)
    }

    /// Multiply particle `i`'s image by `scales[i]` from now on (the cache too). Set once: a
    /// second call is a bug.
    pub fn set_scales(&mut self, scales: Vec<f32>) {
        assert!(self.scales.is_empty(), "the image scales are set once");
        assert_eq!(scales.len(), self.set.len(), "one scale per particle");
        if let Some(c) = &mut self.cache {
            let m = self.d * self.d;
            for (img, &s) in c.chunks_exact_mut(m).zip(&scales) {
                img.iter_mut().for_each(|v| *v *= s);
            }
        }
        self.scales = scales;
    }

    /// Scratch for [`Images::read`] (one per thread).
    pub fn scratch(&self) -> ReadScratch {
        let full = self.set.box_px;
        ReadScratch { raw: vec![0.0; full * full], resampler: (full != self.d).then(|| Resampler::new(full, self.d)) }
    }

    /// Bytes the training images take in memory.
    pub fn bytes(&self) -> f64 {
        self.set.len() as f64 * (self.d * self.d * 4) as f64
    }

    /// Read, resample and scale every image into memory (with the current scale).
    pub fn fill_cache(&mut self, progress: &dyn Progress) -> Result<(), DatasetError> {
        use rayon::prelude::*;
        progress.start("loading", self.set.len() as u64);
        let mut buf = vec![0.0f32; self.set.len() * self.d * self.d];
        let chunk = self.d * self.d;
        let this = &*self;
        buf.par_chunks_mut(chunk * 64).enumerate().try_for_each_init(
            || this.scratch(),
            |s, (b, block)| {
                for (k, img) in block.chunks_mut(chunk).enumerate() {
                    this.read_uncached(b * 64 + k, img, s)?;
                }
                progress.inc((block.len() / chunk) as u64);
                Ok::<(), DatasetError>(())
            },
        )?;
        progress.finish();
        self.cache = Some(buf);
        Ok(())
    }

    /// Particles whose image is far outside the others (a corrupted pixel or image): the
    /// standard deviation above `STD_FACTOR` times the median over all images, or one pixel
    /// further than `PEAK_FACTOR` times that median from the image's mean. Such values make
    /// the loss and the map meaningless; genuine images, noise-dominated, stay within a few
    /// times the median. Reads every image once when they are not in memory.
    pub fn outliers(&self, progress: &dyn Progress) -> Result<Vec<usize>, DatasetError> {
        use rayon::prelude::*;
        const STD_FACTOR: f64 = 10.0;
        const PEAK_FACTOR: f64 = 200.0;
        let spread = |img: &[f32]| {
            let n = img.len() as f64;
            let mean = img.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = img.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let peak = img.iter().map(|&v| (v as f64 - mean).abs()).fold(0.0, f64::max);
            (var.sqrt(), peak)
        };
        let m = self.d * self.d;
        let stats: Vec<(f64, f64)> = match &self.cache {
            Some(c) => c.par_chunks(m).map(spread).collect(),
            None => {
                progress.start("checking images", self.set.len() as u64);
                let r = (0..self.set.len())
                    .into_par_iter()
                    .map_init(
                        || (self.scratch(), vec![0.0f32; m]),
                        |(s, img), i| {
                            self.read_uncached(i, img, s)?;
                            progress.inc(1);
                            Ok(spread(img))
                        },
                    )
                    .collect::<Result<Vec<_>, DatasetError>>();
                progress.finish();
                r?
            }
        };
        let mut sds: Vec<f64> = stats.iter().map(|s| s.0).filter(|s| s.is_finite()).collect();
        if sds.is_empty() {
            return Ok((0..stats.len()).collect());
        }
        sds.sort_by(|a, b| a.total_cmp(b));
        let median = sds[sds.len() / 2];
        Ok(stats
            .iter()
            .enumerate()
            .filter(|(_, &(sd, peak))| !(sd <= STD_FACTOR * median && peak <= PEAK_FACTOR * median))
            .map(|(i, _)| i)
            .collect())
    }

    /// When the images are read from disk at every use, start reading particle `i`'s now so
    /// that its [`Images::read`] a few steps later need not wait for the disk.
    pub fn prefetch(&self, i: usize) {
        if self.cache.is_none() {
            self.set.prefetch_image(i);
        }
    }

    /// Image `i` (particle index in the set), normalised, into `out` (`d×d`).
    pub fn read(&self, i: usize, out: &mut [f32], s: &mut ReadScratch) -> Result<(), DatasetError> {
        if let Some(c) = &self.cache {
            out.copy_from_slice(&c[i * self.d * self.d..(i + 1) * self.d * self.d]);
            return Ok(());
        }
        self.read_uncached(i, out, s)
    }

    /// Image `i` from the particle set, bypassing the cache.
    pub fn read_uncached(&self, i: usize, out: &mut [f32], s: &mut ReadScratch) -> Result<(), DatasetError> {
        self.set.read_image(i, &mut s.raw)?;
        match &mut s.resampler {
            Some(r) => r.apply(&s.raw, out),
            None => out.copy_from_slice(&s.raw),
        }
        let scale = self.scales.get(i).copied().unwrap_or(1.0);
        for v in out.iter_mut() {
            *v *= scale;
        }
        Ok(())
    }
}

/// A Fourier crop from `d×d` to `d'×d'` images with a Gaussian low-pass (see
/// [Coarse copies](self#coarse-copies)); its buffers are made once.
pub struct FourierCrop {
    from: Fft2,
    to: Fft2,
    spec_in: Vec<Complex32>,
    spec_out: Vec<Complex32>,
    /// For each kept entry of the small spectrum: (index in the large spectrum, index in the
    /// small one, factor).
    kept: Vec<(usize, usize, f32)>,
}

impl FourierCrop {
    /// A crop from `d` to `to_d` px (both even, `to_d ≤ d`) with a low-pass of standard
    /// deviation `blur_box` (box units; 0: none).
    pub fn new(d: usize, to_d: usize, blur_box: f64) -> Self {
        assert!(d.is_multiple_of(2) && to_d.is_multiple_of(2) && to_d <= d && to_d > 0, "crop {d} → {to_d} px");
        let (from, to) = (Fft2::new(d), Fft2::new(to_d));
        let (w, nw) = (d / 2 + 1, to_d / 2 + 1);
        let lim = (to_d / 2) as i64;
        // Forward unnormalised at d, inverse divides by d'²: d'²/d² keeps pixel values.
        let norm = (to_d * to_d) as f64 / (d * d) as f64;
        let mut kept = Vec::new();
        for r in 0..to_d {
            let ky = freq_index(r, to_d);
            if ky.abs() >= lim {
                continue;
            }
            let big_r = if ky >= 0 { ky as usize } else { (d as i64 + ky) as usize };
            for c in 0..nw - 1 {
                let k2 = (ky * ky + (c * c) as i64) as f64;
                let g = (-2.0 * std::f64::consts::PI.powi(2) * blur_box * blur_box * k2).exp();
                kept.push((big_r * w + c, r * nw + c, (norm * g) as f32));
            }
        }
        FourierCrop {
            spec_in: vec![Complex32::new(0.0, 0.0); from.spectrum_len()],
            spec_out: vec![Complex32::new(0.0, 0.0); to.spectrum_len()],
            from,
            to,
            kept,
        }
    }

    /// Crop `image` (`d×d`, centred) into `out` (`d'×d'`, centred).
    pub fn apply(&mut self, image: &[f32], out: &mut [f32]) {
        self.from.forward(image, &mut self.spec_in);
        for &(i, o, f) in &self.kept {
            self.spec_out[o] = self.spec_in[i] * f;
        }
        self.to.inverse(&self.spec_out, out);
    }
}

/// Images of `d` px Fourier-cropped to `to_d` px ([`FourierCrop`], no low-pass), or passed
/// through as they are when `to_d` is not smaller; the crop and its output are made once.
pub struct CropTo {
    crop: Option<(FourierCrop, Vec<f32>)>,
}

impl CropTo {
    pub fn new(d: usize, to_d: usize) -> Self {
        CropTo { crop: (to_d < d).then(|| (FourierCrop::new(d, to_d, 0.0), vec![0.0f32; to_d * to_d])) }
    }

    /// `image` cropped (in the crop's own buffer), or `image` itself.
    pub fn apply<'a>(&'a mut self, image: &'a [f32]) -> &'a [f32] {
        match &mut self.crop {
            Some((c, small)) => {
                c.apply(image, small);
                small
            }
            None => image,
        }
    }
}

impl Images<'_> {
    /// Every image (as [`Images::read`] gives it, scaled) cropped to `to_d` px with a low-pass
    /// of `blur_box` ([`FourierCrop`]), particle `i` at `i·to_d²`.
    pub fn coarse(&self, to_d: usize, blur_box: f64, progress: &dyn Progress) -> Result<Vec<f32>, DatasetError> {
        use rayon::prelude::*;
        progress.start(&format!("cropping to {to_d} px"), self.set.len() as u64);
        let m = to_d * to_d;
        let mut buf = vec![0.0f32; self.set.len() * m];
        buf.par_chunks_mut(m * 64).enumerate().try_for_each_init(
            || (self.scratch(), vec![0.0f32; self.d * self.d], FourierCrop::new(self.d, to_d, blur_box)),
            |(s, img, crop), (b, block)| {
                for (k, out) in block.chunks_mut(m).enumerate() {
                    self.read(b * 64 + k, img, s)?;
                    crop.apply(img, out);
                }
                progress.inc((block.len() / m) as u64);
                Ok::<(), DatasetError>(())
            },
        )?;
        progress.finish();
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::{working_box, FourierCrop};
    use cryosplat_core::rng::Rng;

    /// The crop by explicit sums: the centred DFT of the `d×d` image at every frequency
    /// `|kx|, |ky| < d'/2`, times the low-pass, summed back onto the centred `d'` grid and
    /// divided by `d²` (f64).
    fn slow_crop(image: &[f32], d: usize, to_d: usize, blur_box: f64) -> Vec<f64> {
        use std::f64::consts::PI;
        let lim = (to_d / 2) as i64;
        let mut out = vec![0.0f64; to_d * to_d];
        for ky in 1 - lim..lim {
            for kx in 1 - lim..lim {
                let (mut re, mut im) = (0.0, 0.0);
                for i in 0..d {
                    for j in 0..d {
                        let ph =
                            -2.0 * PI * ((kx * (j as i64 - (d / 2) as i64)) as f64 + (ky * (i as i64 - (d / 2) as i64)) as f64) / d as f64;
                        let v = image[i * d + j] as f64;
                        re += v * ph.cos();
                        im += v * ph.sin();
                    }
                }
                let g = (-2.0 * PI * PI * blur_box * blur_box * (kx * kx + ky * ky) as f64).exp() / (d * d) as f64;
                for i in 0..to_d {
                    for j in 0..to_d {
                        let ph = 2.0 * PI * ((kx * (j as i64 - lim)) as f64 + (ky * (i as i64 - lim)) as f64) / to_d as f64;
                        out[i * to_d + j] += g * (re * ph.cos() - im * ph.sin());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_crop_matches_explicit_sums() {
        let mut rng = Rng::new(5);
        for (d, to_d, blur) in [(16usize, 8usize, 0.0), (20, 12, 0.02), (16, 16, 0.0), (24, 10, 0.05)] {
            let image: Vec<f32> = (0..d * d).map(|_| rng.normal() as f32).collect();
            let mut out = vec![0.0f32; to_d * to_d];
            FourierCrop::new(d, to_d, blur).apply(&image, &mut out);
            let slow = slow_crop(&image, d, to_d, blur);
            let err = out.iter().zip(&slow).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
            let peak = slow.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(err < 1e-5 * peak.max(1.0), "{d} → {to_d}, blur {blur}: error {err}");
        }
        // A constant keeps its value; a point at the centre stays centred (symmetric about d'/2).
        let (d, to_d) = (32, 16);
        let mut out = vec![0.0f32; to_d * to_d];
        FourierCrop::new(d, to_d, 0.01).apply(&vec![3.0; d * d], &mut out);
        assert!(out.iter().all(|&v| (v - 3.0).abs() < 1e-5), "{:?}", &out[..4]);
        let mut point = vec![0.0f32; d * d];
        point[(d / 2) * d + d / 2] = 1.0;
        FourierCrop::new(d, to_d, 0.01).apply(&point, &mut out);
        let c = to_d / 2;
        let peak = out.iter().cloned().fold(f32::MIN, f32::max);
        assert_eq!(out[c * to_d + c], peak);
        for k in 1..c {
            let (a, b) = (out[c * to_d + c - k], out[c * to_d + c + k]);
            assert!((a - b).abs() < 1e-6, "row: {a} against {b}");
            let (a, b) = (out[(c - k) * to_d + c], out[(c + k) * to_d + c]);
            assert!((a - b).abs() < 1e-6, "column: {a} against {b}");
        }
    }

    #[test]
    fn one_set_of_box_rules() {
        assert_eq!(working_box(None, 64), Ok(64));
        assert_eq!(working_box(Some(64), 64), Ok(64));
        assert_eq!(working_box(Some(32), 64), Ok(32));
        for bad in [0, 1, 15, 17, 33] {
            assert!(working_box(Some(bad), 64).unwrap_err().contains("at least 16"), "{bad}");
        }
        assert!(working_box(Some(96), 64).unwrap_err().contains("larger than"));
        assert!(working_box(None, 65).unwrap_err().contains("even box"));
        assert_eq!(working_box(Some(32), 65), Ok(32));
    }
}
