//! Fuzz target: the PLY Gaussian reader on arbitrary bytes.
#![no_main]
use cryosplat_formats::ply::parse_gaussians;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = parse_gaussians(data, Path::new("fuzz.ply")) {
        // Every Gaussian read is backed by at least 11 bytes of the input.
        assert!(g.len() * 11 <= data.len());
    }
});
