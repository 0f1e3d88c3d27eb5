//! Fuzz target: the PDB and mmCIF readers on arbitrary text.
#![no_main]
use cryosplat_formats::atoms::{parse_mmcif, parse_pdb};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for atoms in [
        parse_pdb(text, Path::new("fuzz.pdb")),
        parse_mmcif(text, Path::new("fuzz.cif")),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!atoms.is_empty());
        for a in &atoms {
            assert!(a.pos_a.iter().all(|v| v.is_finite()) && a.occupancy.is_finite() && a.b_factor_a2.is_finite());
            assert!(!a.element.is_empty() && a.element.len() <= 2);
        }
    }
});
