//! The one error type of the formats crate.

use std::path::{Path, PathBuf};

/// A problem with a file: every variant names the file, and where it can, the place in it.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The operating system refused an operation on the file.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A binary file holds something other than what was expected at a byte offset.
    #[error("{}: at byte {offset}: {msg}", path.display())]
    Binary { path: PathBuf, offset: u64, msg: String },
    /// A text file holds something other than what was expected on a line (1-based).
    #[error("{}: line {line}: {msg}", path.display())]
    Text { path: PathBuf, line: usize, msg: String },
    /// The file is well formed but its content cannot be used (missing column, count mismatch…).
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

impl FormatError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        FormatError::Io { path: path.as_ref().to_path_buf(), source }
    }
    pub fn binary(path: impl AsRef<Path>, offset: u64, msg: impl Into<String>) -> Self {
        FormatError::Binary { path: path.as_ref().to_path_buf(), offset, msg: msg.into() }
    }
    pub fn text(path: impl AsRef<Path>, line: usize, msg: impl Into<String>) -> Self {
        FormatError::Text { path: path.as_ref().to_path_buf(), line, msg: msg.into() }
    }
    pub fn invalid(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        FormatError::Invalid { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }
    /// The file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            FormatError::Io { path, .. }
            | FormatError::Binary { path, .. }
            | FormatError::Text { path, .. }
            | FormatError::Invalid { path, .. } => path,
        }
    }
}
