//! cryoSPARC `.cs` particle files: numpy structured arrays (see [`crate::npy`]) with one record
//! per particle and fields named `group/name`. The fields a particle loader needs:
//!
//! | field | meaning |
//! |---|---|
//! | `blob/path` | the particle stack, relative to the cryoSPARC project folder; a leading `>` marks an exported path and is removed by [`CsFile::blob_paths`] |
//! | `blob/idx` | 0-based image index in that stack |
//! | `blob/shape` | image size `(ny, nx)` in pixels |
//! | `blob/psize_A` | pixel size of the images (Å) |
//! | `blob/sign` | `-1`: dark particles (raw polarity), `+1`: white |
//! | `alignments3D/pose` | rotation vector (axis·angle, radians); RELION's `A = R(pose)ᵀ` |
//! | `alignments3D/shift` | shift in pixels of `alignments3D/psize_A`, same sign as `rlnOrigin` |
//! | `alignments3D/split` | half set (0 or 1) of a gold-standard refinement |
//! | `ctf/accel_kv`, `ctf/cs_mm`, `ctf/amp_contrast` | voltage, spherical aberration, Q0 |
//! | `ctf/df1_A`, `ctf/df2_A`, `ctf/df_angle_rad` | defocus U, V (Å) and astigmatism angle (radians) |
//! | `ctf/phase_shift_rad`, `ctf/bfactor`, `ctf/scale` | phase shift (radians), B-factor (Å²), scale |
//!
//! The compressed "CSDAT" form written by newer cryoSPARC tools (magic `\x95CSDAT`) is not a
//! numpy file; it is refused with a message that says how to convert it.

use crate::error::{FormatError, Result};
use crate::npy::{self, NpyArray};
use std::path::{Path, PathBuf};

/// A `.cs` file's records.
#[derive(Clone, Debug)]
pub struct CsFile {
    pub path: PathBuf,
    pub array: NpyArray,
}

/// The message for a compressed CSDAT file.
const CSDAT_HELP: &str = "this is a compressed cryoSPARC dataset (CSDAT format), not the numpy form of a .cs file. \
Convert it: in cryoSPARC, export the job (its exported .cs files are numpy arrays); or, with cryosparc-tools in Python, \
`from cryosparc.dataset import Dataset; Dataset.load(\"in.cs\").save(\"out.cs\", format=1)` \
(equivalently `numpy.save(\"out.cs\", Dataset.load(\"in.cs\").to_records(fixed=True))`, then rename out.cs.npy to out.cs)";

/// Whether `bytes` start like a compressed CSDAT dataset (`\x95CSDAT`, or any prefix byte
/// followed by `CSDAT`).
pub fn is_csdat(bytes: &[u8]) -> bool {
    bytes.starts_with(b"CSDAT") || bytes.get(1..6) == Some(&b"CSDAT"[..])
}

impl CsFile {
    /// Parse `.cs` content held in `bytes`.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<CsFile> {
        if is_csdat(bytes) {
            return Err(FormatError::binary(path, 0, CSDAT_HELP));
        }
        Self::check(npy::parse(bytes, path)?, path)
    }

    /// Read and parse a `.cs` file.
    pub fn read(path: &Path) -> Result<CsFile> {
        let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
        if is_csdat(&bytes) {
            return Err(FormatError::binary(path, 0, CSDAT_HELP));
        }
        Self::check(npy::parse_vec(bytes, path)?, path)
    }

    fn check(array: NpyArray, path: &Path) -> Result<CsFile> {
        if array.shape.len() != 1 {
            return Err(FormatError::invalid(path, format!("expected a 1-D record array, got shape {:?}", array.shape)));
        }
        if array.fields.iter().all(|f| f.name.is_empty()) {
            return Err(FormatError::invalid(path, "a plain numpy array, not a cryoSPARC record array (no named fields)"));
        }
        Ok(CsFile { path: path.to_path_buf(), array })
    }

    pub fn len(&self) -> usize {
        self.array.len()
    }
    pub fn is_empty(&self) -> bool {
        self.array.is_empty()
    }

    /// Field names, in file order.
    pub fn field_names(&self) -> Vec<&str> {
        self.array.fields.iter().map(|f| f.name.as_str()).collect()
    }

    /// Whether the file has a field `name`.
    pub fn has(&self, name: &str) -> bool {
        self.array.field(name).is_some()
    }

    /// A scalar numeric column, or `None` if the field is absent.
    pub fn f64_column_opt(&self, name: &str) -> Result<Option<Vec<f64>>> {
        if !self.has(name) {
            return Ok(None);
        }
        self.array.column_f64(name).map(Some)
    }

    /// A numeric column of exactly `N` values per record (e.g. `alignments3D/pose`, 3), or `None`.
    pub fn vec_column_opt<const N: usize>(&self, name: &str) -> Result<Option<Vec<[f64; N]>>> {
        if !self.has(name) {
            return Ok(None);
        }
        self.array.column_f64_n::<N>(name).map(Some)
    }

    /// A required column of non-negative integers (e.g. `blob/idx`).
    pub fn index_column(&self, name: &str) -> Result<Vec<u64>> {
        let f = self.array.field(name).ok_or_else(|| FormatError::invalid(&self.path, format!("required field {name} is missing")))?;
        if f.count != 1 {
            return Err(FormatError::invalid(&self.path, format!("field {name} holds {} values per record, expected 1", f.count)));
        }
        (0..self.len())
            .map(|r| match self.array.integer(f, r, 0) {
                Some(v) if (0..=u64::MAX as i128).contains(&v) => Ok(v as u64),
                Some(v) => Err(FormatError::invalid(&self.path, format!("record {r}: {name} is {v}, expected a non-negative integer"))),
                None => Err(FormatError::invalid(&self.path, format!("field {name} does not hold integers"))),
            })
            .collect()
    }

    /// Set element `k` of the float field `name` in record `r` (see [`NpyArray::set_float`]).
    pub fn set_float(&mut self, name: &str, r: usize, k: usize, v: f64) -> Result<()> {
        self.array.set_float(name, r, k, v)
    }

    /// Write records `rows` (0-based, in that order) to `dest` as a `.cs` file with this file's
    /// fields, atomically. Every field of a written record is as read unless changed with
    /// [`CsFile::set_float`]. Panics when a row is out of range (a bug in the caller).
    pub fn write_records(&self, rows: &[usize], dest: &Path) -> Result<()> {
        crate::atomic::write_bytes_atomic(dest, &self.array.records_file(rows))
    }

    /// `blob/path` of every particle, with cryoSPARC's leading `>` (exported path) removed.
    pub fn blob_paths(&self) -> Result<Vec<String>> {
        if !self.has("blob/path") {
            return Err(FormatError::invalid(&self.path, "required field blob/path is missing (the particle stacks)"));
        }
        let mut v = self.array.column_text("blob/path")?;
        for s in &mut v {
            if let Some(rest) = s.strip_prefix('>') {
                *s = rest.to_string();
            }
        }
        Ok(v)
    }
}
