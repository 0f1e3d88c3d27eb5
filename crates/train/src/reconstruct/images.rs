//! The training images of a reconstruction: read from the particle set, Fourier-cropped to the
//! training box, multiplied by the data scale, and kept in memory when they fit.
//!
//! One unit of parallel work while filling the cache is a block of 64 consecutive images read,
//! resampled and scaled by one worker with its own [`ReadScratch`]; during training images are
//! read one at a time by the driver.

use super::ReconstructError;
use crate::dataset::ParticleSet;
use crate::progress::Progress;
use cryosplat_core::fourier::Resampler;

/// Images for training: in memory or read per step, resampled to the training box.
pub struct Images<'a> {
    pub set: &'a ParticleSet,
    /// Training box (px).
    pub d: usize,
    /// Factor applied to every pixel after resampling.
    pub scale: f32,
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
        Images { set, d, scale: 1.0, cache: None }
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
    pub fn fill_cache(&mut self, progress: &dyn Progress) -> Result<(), ReconstructError> {
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
                Ok::<(), ReconstructError>(())
            },
        )?;
        progress.finish();
        self.cache = Some(buf);
        Ok(())
    }

    /// Image `i` (particle index in the set), normalised, into `out` (`d×d`).
    pub fn read(&self, i: usize, out: &mut [f32], s: &mut ReadScratch) -> Result<(), ReconstructError> {
        if let Some(c) = &self.cache {
            out.copy_from_slice(&c[i * self.d * self.d..(i + 1) * self.d * self.d]);
            return Ok(());
        }
        self.read_uncached(i, out, s)
    }

    /// Image `i` from the particle set, bypassing the cache.
    pub fn read_uncached(&self, i: usize, out: &mut [f32], s: &mut ReadScratch) -> Result<(), ReconstructError> {
        self.set.read_image(i, &mut s.raw)?;
        match &mut s.resampler {
            Some(r) => r.apply(&s.raw, out),
            None => out.copy_from_slice(&s.raw),
        }
        for v in out.iter_mut() {
            *v *= self.scale;
        }
        Ok(())
    }
}
