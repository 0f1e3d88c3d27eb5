//! Fuzz target: cryoSPARC `.cs` (numpy structured array) parsing of arbitrary bytes, then every
//! accessor the particle loader uses. Invariant: no panic, no allocation beyond the input's size.
#![no_main]
use cryosplat_formats::cs::CsFile;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(cs) = CsFile::parse(data, Path::new("fuzz.cs")) else { return };
    assert!(cs.len() * cs.array.record_size <= data.len());
    let _ = cs.blob_paths();
    let _ = cs.index_column("blob/idx");
    for name in cs.field_names().iter().map(|s| s.to_string()).collect::<Vec<_>>() {
        let _ = cs.f64_column_opt(&name);
        let _ = cs.vec_column_opt::<2>(&name);
    }
});
