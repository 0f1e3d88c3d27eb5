//! Checkpoints of a reconstruction: both half models, both Adam states, the density-control
//! statistics, where the run is (epoch, half, position in that half's visiting order), the
//! history so far, and a fingerprint of the settings and data that must match on resume.
//!
//! No random generator state needs saving: every random choice of a run (half split,
//! initialisation, each epoch's visiting order, density-control draws) comes from a named
//! stream of the seed ([`crate::streams`]), so the seed (part of the fingerprint, and stored
//! as [`CheckpointMeta::seed`]) and the position determine all of them.
//!
//! Layout (little-endian): the 8 bytes `CSPLCKPT`, a u32 format version, a u64 length and that
//! many bytes of JSON (the [`CheckpointMeta`]), then for half A and half B: the Gaussian count
//! `N` (u64), Adam's step count (u64), the model's parameters, Adam's first and second moments
//! (each `N·11` f32), the gradient statistics (sum and count, each `N` f32), and the tail
//! average (`--average-tail`: the step its window starts after, the steps summed, the number
//! `M` of Gaussians summed (0 or `N`), each u64, and `M·11` f64 sums); last, a u64
//! FNV-1a checksum of everything before it, so that a damaged file is refused rather than
//! resumed into a different map. Written atomically (temporary file and rename), so a crash
//! while writing leaves the previous checkpoint intact.

use crate::adam::{Adam, AdamConfig};
use crate::reconstruct::density::{DensityChange, GradStats};
use crate::reconstruct::trainer::{HalfTrainer, TailAverage};
use crate::reconstruct::Fingerprint;
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_formats::atomic::write_bytes_atomic;
use cryosplat_formats::FormatError;
use std::path::Path;

const MAGIC: &[u8; 8] = b"CSPLCKPT";
const VERSION: u32 = 5;

/// Where a run stands, and what it has done.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointMeta {
    /// Must match the resuming run's fingerprint (settings, data and thread count; see
    /// `reconstruct::fingerprint`).
    pub fingerprint: Fingerprint,
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
    /// Each half's data scale, used to normalise its images.
    pub data_scale: [f64; 2],
    /// Sums over the epoch in progress so far (loss per half, images, seconds) and its
    /// density-control changes, so that a resumed epoch reports what an unbroken one would.
    pub epoch_loss: [f64; 2],
    pub epoch_images: usize,
    pub epoch_seconds: f64,
    pub density: [DensityChange; 2],
    /// Each half's map mass (sum of its voxelised map, normalised units) at the random start,
    /// against which a collapse is detected.
    pub start_map_mass: [f64; 2],
    /// Each half's per-particle refinement state (with `--refine`; serde_json's
    /// `float_roundtrip` reads every f64 back exactly, so a resumed run continues bit for bit;
    /// the unit test holds numbers whose shortest decimal forms need it).
    #[serde(default)]
    pub refine: Option<[crate::reconstruct::trainer::RefineState; 2]>,
}

/// Both halves' state.
#[derive(Debug)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    /// Half A's and half B's models, optimiser states, statistics and step counts
    /// (`meta.steps`).
    pub halves: [HalfTrainer; 2],
}

fn put_f32s(buf: &mut Vec<u8>, p: &[f32]) {
    for v in p {
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_params(buf: &mut Vec<u8>, p: &[[f32; PARAMS_PER_GAUSSIAN]]) {
    for row in p {
        put_f32s(buf, row);
    }
}

/// FNV-1a, 64 bit, of `bytes`.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h = crate::dataset::FNV1A_START;
    crate::dataset::fnv1a(&mut h, bytes);
    h
}

/// Write a checkpoint of `halves` at `meta` atomically.
pub fn save(path: &Path, meta: &CheckpointMeta, halves: &[HalfTrainer; 2]) -> Result<(), FormatError> {
    for h in halves {
        let n = h.model.len();
        assert!(
            h.adam.m.len() == n && h.adam.v.len() == n && h.stats.sum.len() == n && h.stats.count.len() == n,
            "checkpoint state sizes disagree"
        );
    }
    let json = serde_json::to_vec(meta).map_err(|e| FormatError::invalid(path, format!("cannot encode checkpoint: {e}")))?;
    let n_all: usize = halves.iter().map(|h| h.model.len()).sum();
    let mut buf = Vec::with_capacity(64 + json.len() + n_all * (3 * PARAMS_PER_GAUSSIAN + 2) * 4);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&(json.len() as u64).to_le_bytes());
    buf.extend_from_slice(&json);
    for h in halves {
        buf.extend_from_slice(&(h.model.len() as u64).to_le_bytes());
        buf.extend_from_slice(&h.adam.t.to_le_bytes());
        put_params(&mut buf, &h.model.params);
        put_params(&mut buf, &h.adam.m);
        put_params(&mut buf, &h.adam.v);
        put_f32s(&mut buf, &h.stats.sum);
        put_f32s(&mut buf, &h.stats.count);
        for v in [h.tail.from, h.tail.count, h.tail.sum.len() as u64] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        for v in h.tail.sum.iter().flatten() {
            buf.extend_from_slice(&v.to_le_bytes());
        }
    }
    let sum = checksum(&buf);
    buf.extend_from_slice(&sum.to_le_bytes());
    write_bytes_atomic(path, &buf)
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

/// Read a checkpoint written by [`save`]; `adam` supplies the optimiser settings. A file
/// whose checksum does not match (damaged or edited), or whose state is not finite, is refused.
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
    if bytes.len() < 20 + 8 {
        return Err(FormatError::binary(path, bytes.len() as u64, "truncated checkpoint"));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    if checksum(body).to_le_bytes() != tail {
        return Err(FormatError::binary(
            path,
            0,
            "the checkpoint is damaged (its checksum does not match its contents); start afresh without --resume",
        ));
    }
    r.b = body;
    let n = r.u64()? as usize;
    let meta: CheckpointMeta =
        serde_json::from_slice(r.take(n)?).map_err(|e| FormatError::binary(path, 20, format!("checkpoint header: {e}")))?;
    let mut halves = Vec::with_capacity(2);
    for h in 0..2 {
        let n = r.u64()? as usize;
        if n > body.len() {
            return Err(FormatError::binary(path, r.i as u64, "Gaussian count larger than the file"));
        }
        let t = r.u64()?;
        let params = r.params(n)?;
        let m = r.params(n)?;
        let vv = r.params(n)?;
        let sum = r.f32s(n)?;
        let count = r.f32s(n)?;
        let (tail_from, tail_count, n_tail) = (r.u64()?, r.u64()?, r.u64()? as usize);
        if n_tail != 0 && n_tail != n {
            return Err(FormatError::binary(path, r.i as u64, format!("tail average of {n_tail} Gaussians for a model of {n}")));
        }
        let tail_sum: Vec<[f64; PARAMS_PER_GAUSSIAN]> = r
            .take(n_tail * PARAMS_PER_GAUSSIAN * 8)?
            .chunks_exact(PARAMS_PER_GAUSSIAN * 8)
            .map(|c| std::array::from_fn(|k| f64::from_le_bytes(c[8 * k..8 * k + 8].try_into().expect("8 bytes"))))
            .collect();
        let finite = |x: &[[f32; PARAMS_PER_GAUSSIAN]]| x.iter().flatten().all(|v| v.is_finite());
        if !(finite(&params) && finite(&m) && finite(&vv) && tail_sum.iter().flatten().all(|v| v.is_finite())) {
            return Err(FormatError::invalid(
                path,
                format!("half {}'s model or optimiser state holds non-finite values; start afresh without --resume", ["A", "B"][h]),
            ));
        }
        let adam = Adam { config: adam.clone(), m, v: vv, t };
        let mut trainer = HalfTrainer::restore(GaussianModel { params }, adam, GradStats { sum, count }, meta.steps[h]);
        trainer.tail = TailAverage { from: tail_from, count: tail_count, sum: tail_sum };
        halves.push(trainer);
    }
    if r.i != body.len() {
        return Err(FormatError::binary(path, r.i as u64, format!("{} bytes after the end of the checkpoint", body.len() - r.i)));
    }
    let halves: [HalfTrainer; 2] = halves.try_into().expect("two halves read");
    Ok(Checkpoint { meta, halves })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trainer(k: f32, t: u64, steps: u64) -> HalfTrainer {
        let model = GaussianModel { params: (0..3).map(|i| std::array::from_fn(|j| k + (i * 11 + j) as f32)).collect() };
        let mut a = Adam::new(AdamConfig::default(), 3);
        a.t = t;
        a.m[1][2] = 0.5 + k;
        let stats = GradStats { sum: vec![1.0, 2.0, 3.0 + k], count: vec![1.0, 0.0, 2.0] };
        HalfTrainer::restore(model, a, stats, steps)
    }

    fn meta() -> CheckpointMeta {
        CheckpointMeta {
            fingerprint: Fingerprint { settings: serde_json::json!({"gaussians": 3}), data: "d".into(), threads: 2 },
            seed: 11,
            epoch: 2,
            half: 1,
            pos: 17,
            steps: [40, 23],
            history: serde_json::json!([1, 2]),
            data_scale: [0.25, 0.5],
            epoch_loss: [0.5, 0.25],
            epoch_images: 9,
            epoch_seconds: 1.5,
            density: [DensityChange { split: 1, pruned: 2, after: 3 }, DensityChange::default()],
            start_map_mass: [1.5, 2.5],
            // Values whose shortest decimal form is long: the JSON must give back every bit.
            refine: Some([0.1 + 0.2, -1.0 / 3.0].map(|x: f64| crate::reconstruct::trainer::RefineState {
                values: vec![[x, x * 1e-300, -x, x.exp(), 1e300 * x, f64::MIN_POSITIVE]],
                steps: vec![3],
                lever_arm_a2: Some(x * 1e5),
                widths: Some([x, x / 7.0, 1e3 * x]),
                moments: [[x * x, 3.0], [x / 3.0, 2.0], [0.0, 0.0]],
            })),
        }
    }

    #[test]
    fn round_trip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.ckpt");
        let mut halves = [trainer(0.0, 7, 40), trainer(100.0, 3, 23)];
        // Half B holds a tail average (values whose f32 rounding would show).
        halves[1].tail =
            TailAverage { from: 20, count: 3, sum: (0..3).map(|i| std::array::from_fn(|j| 0.1 + (i * 11 + j) as f64 / 3.0)).collect() };
        save(&p, &meta(), &halves).unwrap();
        let r = load(&p, &AdamConfig::default()).unwrap();
        assert_eq!(r.meta, meta());
        for (a, b) in r.halves.iter().zip(&halves) {
            assert_eq!(a.model, b.model);
            assert_eq!(a.adam, b.adam);
            assert_eq!(a.stats, b.stats);
            assert_eq!(a.steps, b.steps);
            assert_eq!(a.tail, b.tail);
        }
        // Another format version is refused with a message saying what to do.
        let mut other = std::fs::read(&p).unwrap();
        other[8] = 1;
        std::fs::write(&p, &other).unwrap();
        assert!(load(&p, &AdamConfig::default()).unwrap_err().to_string().contains("without --resume"));
        save(&p, &meta(), &halves).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        assert!(load(&p, &AdamConfig::default()).is_err());
    }

    #[test]
    fn a_damaged_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.ckpt");
        save(&p, &meta(), &[trainer(0.0, 7, 40), trainer(1.0, 3, 23)]).unwrap();
        let good = std::fs::read(&p).unwrap();
        // One flipped bit anywhere after the version, in the header or in the parameters.
        for at in [20, 40, good.len() / 2, good.len() - 20, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&p, &bad).unwrap();
            let e = load(&p, &AdamConfig::default()).unwrap_err().to_string();
            assert!(e.contains("damaged") && e.contains("c.ckpt"), "byte {at}: {e}");
        }
    }

    #[test]
    fn non_finite_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.ckpt");
        let mut a = trainer(0.0, 7, 40);
        a.model.params[2][0] = f32::NAN;
        save(&p, &meta(), &[trainer(1.0, 3, 23), a]).unwrap();
        let e = load(&p, &AdamConfig::default()).unwrap_err().to_string();
        assert!(e.contains("half B") && e.contains("non-finite"), "{e}");
        // A non-finite tail average, too.
        let mut b = trainer(0.0, 7, 40);
        b.tail = TailAverage {
            from: 1,
            count: 1,
            sum: vec![[0.0; PARAMS_PER_GAUSSIAN], [f64::INFINITY; PARAMS_PER_GAUSSIAN], [0.0; PARAMS_PER_GAUSSIAN]],
        };
        save(&p, &meta(), &[trainer(1.0, 3, 23), b]).unwrap();
        let e = load(&p, &AdamConfig::default()).unwrap_err().to_string();
        assert!(e.contains("half B") && e.contains("non-finite"), "{e}");
    }

    #[test]
    fn a_tail_average_of_another_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.ckpt");
        let mut a = trainer(0.0, 7, 40);
        a.tail = TailAverage { from: 1, count: 1, sum: vec![[0.0; PARAMS_PER_GAUSSIAN]; 2] };
        save(&p, &meta(), &[a, trainer(1.0, 3, 23)]).unwrap();
        let e = load(&p, &AdamConfig::default()).unwrap_err().to_string();
        assert!(e.contains("c.ckpt") && e.contains("tail average of 2 Gaussians for a model of 3"), "{e}");
    }
}
