//! cryoSPARC `.cs` particle files: numpy structured arrays with fields such as `blob/path`,
//! `blob/idx`, `alignments3D/pose` and `ctf/df1_A` (see [`crate::npy`] for the container).
//!
//! The compressed "CSDAT" form written by newer cryoSPARC tools is refused with a message that
//! says how to convert it.

use crate::error::{FormatError, Result};
use crate::npy::{self, NpyArray, Scalar};
use std::path::{Path, PathBuf};

/// A `.cs` file's records.
#[derive(Clone, Debug)]
pub struct CsFile {
    pub path: PathBuf,
    pub array: NpyArray,
}

impl CsFile {
    /// Parse `.cs` content held in `bytes`.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<CsFile> {
        if bytes.starts_with(b"\x94CSDAT") || bytes.starts_with(b"CSDAT") || bytes.get(1..6) == Some(b"CSDAT") {
            return Err(FormatError::invalid(
                path,
                "this is a compressed CSDAT dataset, not a numpy .cs file; convert it with cryosparc-tools \
                 (Dataset.load(path).save(out_path, format=1)) or export the job from cryoSPARC",
            ));
        }
        let array = npy::parse(bytes, path)?;
        if array.shape.len() != 1 {
            return Err(FormatError::invalid(path, format!("expected a 1-D record array, got shape {:?}", array.shape)));
        }
        Ok(CsFile { path: path.to_path_buf(), array })
    }

    /// Read and parse a `.cs` file.
    pub fn read(path: &Path) -> Result<CsFile> {
        let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
        Self::parse(&bytes, path)
    }

    pub fn len(&self) -> usize {
        self.array.len()
    }
    pub fn is_empty(&self) -> bool {
        self.array.is_empty()
    }

    /// Field names.
    pub fn field_names(&self) -> Vec<&str> {
        self.array.fields.iter().map(|f| f.name.as_str()).collect()
    }

    /// A scalar numeric column, or `None` if the field is absent.
    pub fn f64_column_opt(&self, name: &str) -> Result<Option<Vec<f64>>> {
        let Some(f) = self.array.field(name) else { return Ok(None) };
        if matches!(f.scalar, Scalar::Bytes(_)) {
            return Err(FormatError::invalid(&self.path, format!("field {name} holds text, expected numbers")));
        }
        Ok(Some((0..self.len()).map(|r| self.array.number(f, r, 0).expect("numeric field")).collect()))
    }

    /// A numeric column of `k` elements per record (e.g. `alignments3D/pose`, 3), or `None`.
    pub fn f64_vec_column_opt(&self, name: &str, k: usize) -> Result<Option<Vec<Vec<f64>>>> {
        let Some(f) = self.array.field(name) else { return Ok(None) };
        if matches!(f.scalar, Scalar::Bytes(_)) || f.count < k {
            return Err(FormatError::invalid(&self.path, format!("field {name} has {} values per particle, expected {k} numbers", f.count)));
        }
        Ok(Some((0..self.len()).map(|r| (0..k).map(|j| self.array.number(f, r, j).expect("numeric field")).collect()).collect()))
    }

    /// A required integer column.
    pub fn u64_column(&self, name: &str) -> Result<Vec<u64>> {
        let v = self.f64_column_opt(name)?.ok_or_else(|| FormatError::invalid(&self.path, format!("required field {name} is missing")))?;
        Ok(v.into_iter().map(|x| x as u64).collect())
    }

    /// `blob/path` of every particle, with cryoSPARC's leading `>` (exported path) removed.
    pub fn blob_paths(&self) -> Result<Vec<String>> {
        let f = self.array.field("blob/path").ok_or_else(|| FormatError::invalid(&self.path, "required field blob/path is missing"))?;
        (0..self.len())
            .map(|r| {
                let b = self.array.bytes(f, r).ok_or_else(|| FormatError::invalid(&self.path, "blob/path is not a text field"))?;
                let s = String::from_utf8_lossy(b);
                Ok(s.strip_prefix('>').unwrap_or(&s).to_string())
            })
            .collect()
    }
}
