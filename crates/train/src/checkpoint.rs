//! Checkpoints of a reconstruction: both half models, both Adam states, the density-control
//! statistics, where the run is (epoch, half, position in that half's visiting order), the
//! history so far, and a fingerprint of the settings and data that must match on resume.
//!
//! No random generator state needs saving: every random choice of a run (half split,
//! initialisation, each epoch's visiting order, density-control draws) comes from
//! `Rng::stream(seed, tag)` for a fixed tag, so the seed (part of the fingerprint, and stored
//! as [`CheckpointMeta::seed`]) and the position determine all of them.
//!
//! Layout (little-endian): the 8 bytes `CSPLCKPT`, a u32 format version, a u64 length and that
//! many bytes of JSON (the [`CheckpointMeta`]), then for half A and half B: the Gaussian count
//! `N` (u64), Adam's step count (u64), the model's parameters, Adam's first and second moments
//! (each `N·11` f32), and the gradient statistics (sum and count, each `N` f32). Written
//! atomically (temporary file and rename), so a crash while writing leaves the previous
//! checkpoint intact.

use crate::adam::{Adam, AdamConfig};
use crate::reconstruct::density::{DensityChange, GradStats};
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_formats::atomic::write_atomic;
use cryosplat_formats::FormatError;
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 8] = b"CSPLCKPT";
const VERSION: u32 = 2;

/// Where a run stands, and what it has done.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointMeta {
    /// Must equal the resuming run's fingerprint (settings and data; see
    /// `reconstruct::fingerprint`).
    pub fingerprint: String,
    /// The run's seed (every random stream derives from it).
    pub seed: u64,
    /// Epoch in progress (0-based).
    pub epoch: usize,
    /// Half in progress (0 = A, 1 = B).
    pub half: usize,
    /// Steps already taken in this half's epoch.
    pub pos: usize,
    /// Optimiser steps taken by each half.
    pub steps: [u64; 2],
    /// Per-epoch results so far (opaque JSON owned by the trainer).
    pub history: serde_json::Value,
    /// Data scale used to normalise the images.
    pub data_scale: f64,
    /// Sums over the epoch in progress so far (loss per half, images, seconds) and its
    /// density-control changes, so that a resumed epoch reports what an unbroken one would.
    pub epoch_loss: [f64; 2],
    pub epoch_images: usize,
    pub epoch_seconds: f64,
    pub density: [DensityChange; 2],
}

/// Both halves' state.
#[derive(Debug)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub models: [GaussianModel; 2],
    pub adams: [Adam; 2],
    /// Density-control statistics of the epoch in progress.
    pub stats: [GradStats; 2],
}

fn put_f32s(w: &mut impl Write, p: &[f32]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(p.len() * 4);
    for v in p {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    w.write_all(&buf)
}

fn put_params(w: &mut impl Write, p: &[[f32; PARAMS_PER_GAUSSIAN]]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(p.len() * PARAMS_PER_GAUSSIAN * 4);
    for row in p {
        for v in row {
            buf.extend_from_slice(&v.to_le_bytes());
        }
    }
    w.write_all(&buf)
}

/// Write a checkpoint atomically.
pub fn save(path: &Path, ck: &Checkpoint) -> Result<(), FormatError> {
    for h in 0..2 {
        let n = ck.models[h].len();
        assert!(
            ck.adams[h].m.len() == n && ck.adams[h].v.len() == n && ck.stats[h].sum.len() == n && ck.stats[h].count.len() == n,
            "checkpoint state sizes disagree"
        );
    }
    let json = serde_json::to_vec(&ck.meta).map_err(|e| FormatError::invalid(path, format!("cannot encode checkpoint: {e}")))?;
    write_atomic(path, |w| {
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&(json.len() as u64).to_le_bytes())?;
        w.write_all(&json)?;
        for h in 0..2 {
            w.write_all(&(ck.models[h].len() as u64).to_le_bytes())?;
            w.write_all(&ck.adams[h].t.to_le_bytes())?;
            put_params(w, &ck.models[h].params)?;
            put_params(w, &ck.adams[h].m)?;
            put_params(w, &ck.adams[h].v)?;
            put_f32s(w, &ck.stats[h].sum)?;
            put_f32s(w, &ck.stats[h].count)?;
        }
        Ok(())
    })
}

struct Rd<'a> {
    b: &'a [u8],
    i: usize,
    path: &'a Path,
}

impl Rd<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FormatError> {
        if self.b.len() - self.i < n {
            return Err(FormatError::binary(self.path, self.i as u64, "truncated checkpoint"));
        }
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn f32s(&mut self, n: usize) -> Result<Vec<f32>, FormatError> {
        let bytes = self.take(n.checked_mul(4).ok_or_else(|| FormatError::binary(self.path, self.i as u64, "size overflow"))?)?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
    fn params(&mut self, n: usize) -> Result<Vec<[f32; PARAMS_PER_GAUSSIAN]>, FormatError> {
        let bytes = self
            .take(n.checked_mul(PARAMS_PER_GAUSSIAN * 4).ok_or_else(|| FormatError::binary(self.path, self.i as u64, "size overflow"))?)?;
        Ok(bytes
            .chunks_exact(PARAMS_PER_GAUSSIAN * 4)
            .map(|c| std::array::from_fn(|k| f32::from_le_bytes([c[4 * k], c[4 * k + 1], c[4 * k + 2], c[4 * k + 3]])))
            .collect())
    }
}

/// Read a checkpoint written by [`save`]; `adam` supplies the optimiser settings.
pub fn load(path: &Path, adam: &AdamConfig) -> Result<Checkpoint, FormatError> {
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    let mut r = Rd { b: &bytes, i: 0, path };
    if r.take(8)? != MAGIC {
        return Err(FormatError::binary(path, 0, "not a cryosplat checkpoint"));
    }
    let v = u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
    if v != VERSION {
        return Err(FormatError::binary(
            path,
            8,
            format!("checkpoint format {v}; this version of cryosplat reads format {VERSION}: start afresh without --resume"),
        ));
    }
    let n = r.u64()? as usize;
    let meta: CheckpointMeta =
        serde_json::from_slice(r.take(n)?).map_err(|e| FormatError::binary(path, 20, format!("checkpoint header: {e}")))?;
    let mut models = Vec::new();
    let mut adams = Vec::new();
    let mut stats = Vec::new();
    for _ in 0..2 {
        let n = r.u64()? as usize;
        if n > bytes.len() {
            return Err(FormatError::binary(path, r.i as u64, "Gaussian count larger than the file"));
        }
        let t = r.u64()?;
        let params = r.params(n)?;
        let m = r.params(n)?;
        let vv = r.params(n)?;
        let sum = r.f32s(n)?;
        let count = r.f32s(n)?;
        models.push(GaussianModel { params });
        adams.push(Adam { config: adam.clone(), m, v: vv, t });
        stats.push(GradStats { sum, count });
    }
    if r.i != bytes.len() {
        return Err(FormatError::binary(path, r.i as u64, format!("{} bytes after the end of the checkpoint", bytes.len() - r.i)));
    }
    let [ma, mb]: [GaussianModel; 2] = models.try_into().map_err(|_| FormatError::invalid(path, "two halves expected"))?;
    let [aa, ab]: [Adam; 2] = adams.try_into().map_err(|_| FormatError::invalid(path, "two halves expected"))?;
    let [sa, sb]: [GradStats; 2] = stats.try_into().map_err(|_| FormatError::invalid(path, "two halves expected"))?;
    Ok(Checkpoint { meta, models: [ma, mb], adams: [aa, ab], stats: [sa, sb] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.ckpt");
        let model = |k: f32| GaussianModel { params: (0..3).map(|i| std::array::from_fn(|j| k + (i * 11 + j) as f32)).collect() };
        let mut a = Adam::new(AdamConfig::default(), 3);
        a.t = 7;
        a.m[1][2] = 0.5;
        let ck = Checkpoint {
            meta: CheckpointMeta {
                fingerprint: "f".into(),
                seed: 11,
                epoch: 2,
                half: 1,
                pos: 17,
                steps: [40, 23],
                history: serde_json::json!([1, 2]),
                data_scale: 0.25,
                epoch_loss: [0.5, 0.25],
                epoch_images: 9,
                epoch_seconds: 1.5,
                density: [DensityChange { split: 1, pruned: 2, after: 3 }, DensityChange::default()],
            },
            models: [model(0.0), model(100.0)],
            adams: [a.clone(), Adam::new(AdamConfig::default(), 3)],
            stats: [GradStats { sum: vec![1.0, 2.0, 3.0], count: vec![1.0, 0.0, 2.0] }, GradStats::new(3)],
        };
        save(&p, &ck).unwrap();
        let r = load(&p, &AdamConfig::default()).unwrap();
        assert_eq!(r.meta, ck.meta);
        assert_eq!(r.models[1], ck.models[1]);
        assert_eq!(r.adams[0], a);
        assert_eq!(r.stats, ck.stats);
        // Another format version is refused with a message saying what to do.
        let mut other = std::fs::read(&p).unwrap();
        other[8] = 1;
        std::fs::write(&p, &other).unwrap();
        assert!(load(&p, &AdamConfig::default()).unwrap_err().to_string().contains("without --resume"));
        save(&p, &ck).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        assert!(load(&p, &AdamConfig::default()).unwrap_err().to_string().contains("truncated"));
    }
}
