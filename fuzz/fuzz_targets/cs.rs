//! Fuzz target: cryoSPARC `.cs` / numpy `.npy` parsing of arbitrary bytes, then every accessor
//! the particle loader uses on every field. Invariants: no panic; the records the header
//! claims fit in the input (nothing larger than the input is allocated for them).
#![no_main]
use cryosplat_formats::cs::CsFile;
use cryosplat_formats::npy;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.cs");
    if let Ok(a) = npy::parse(data, path) {
        assert!(a.len().checked_mul(a.record_size).is_some_and(|n| n <= data.len()));
        assert_eq!(a.data().len(), a.len() * a.record_size);
        for f in &a.fields {
            assert!(f.offset + f.scalar.size() * f.count <= a.record_size);
            for r in 0..a.len().min(64) {
                for k in 0..f.count.min(16) {
                    let _ = a.number(f, r, k);
                    let _ = a.integer(f, r, k);
                }
                let _ = a.text(f, r);
                let _ = a.bytes(f, r);
            }
        }
    }
    let Ok(cs) = CsFile::parse(data, path) else { return };
    let _ = cs.blob_paths();
    let _ = cs.index_column("blob/idx");
    let names: Vec<String> = cs.field_names().iter().map(|s| s.to_string()).collect();
    for name in &names {
        let _ = cs.f64_column_opt(name);
        let _ = cs.vec_column_opt::<2>(name);
        let _ = cs.vec_column_opt::<3>(name);
        let _ = cs.index_column(name);
        let _ = cs.array.column_text(name);
    }
});
