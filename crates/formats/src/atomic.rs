//! Atomic file writes: write a temporary file beside the destination, flush it to disk, then
//! rename it over the destination, so that a reader never sees a half-written file and a
//! crash never leaves a partial output under the final name.

use crate::error::{FormatError, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

fn temp_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = format!(".{name}.tmp{}", std::process::id());
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(tmp),
        _ => PathBuf::from(tmp),
    }
}

/// Write `dest` atomically: `fill` writes the content into a buffered writer on a temporary
/// file; on success the file is synced and renamed to `dest`, on failure it is removed.
pub fn write_atomic<F>(dest: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    let tmp = temp_path(dest);
    let file = File::create(&tmp).map_err(|e| FormatError::io(dest, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let result = fill(&mut w).and_then(|_| w.flush()).and_then(|_| w.get_ref().sync_all());
    drop(w);
    match result {
        Ok(()) => std::fs::rename(&tmp, dest).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            FormatError::io(dest, e)
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(FormatError::io(dest, e))
        }
    }
}

/// Write bytes to `dest` atomically.
pub fn write_bytes_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(dest, |w| w.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_bytes_atomic(&p, b"one").unwrap();
        write_bytes_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_fill_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.txt");
        let r = write_atomic(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unwritable_folder_names_file() {
        let p = Path::new("/nonexistent-cryosplat-dir/x.mrc");
        let e = write_bytes_atomic(p, b"x").unwrap_err();
        assert!(e.to_string().contains("/nonexistent-cryosplat-dir/x.mrc"), "{e}");
    }
}
