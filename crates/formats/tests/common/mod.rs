//! Helpers shared by the formats tests (each test file is its own crate and uses a subset).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A file of the repository's tests/data folder.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(rel)
}

/// Bytes from a hex string (two digits a byte, as the embedded numpy and pickle files are given).
pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The message of `r`, which must be an error whose message holds every one of `parts`.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>, parts: &[&str]) -> String {
    let e = match r {
        Ok(v) => panic!("expected an error mentioning {parts:?}, got Ok({v:?})"),
        Err(e) => e.to_string(),
    };
    for p in parts {
        assert!(e.contains(p), "{p:?} is not in the message: {e}");
    }
    e
}
