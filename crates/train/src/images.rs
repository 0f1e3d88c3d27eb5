//! The images a pipeline works on: read from the particle set (inverted if the set says so),
//! Fourier-cropped to the working box, multiplied by a scale, and kept in memory when the
//! caller asks. `reconstruct` caches them; `backproject` streams them once.
//!
//! One unit of parallel work while filling the cache is a block of 64 consecutive images read,
//! resampled and scaled by one worker with its own [`ReadScratch`].

use crate::dataset::{DatasetError, ParticleSet};
use crate::progress::Progress;
use cryosplat_core::fourier::Resampler;

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

#[cfg(test)]
mod tests {
    use super::working_box;

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
