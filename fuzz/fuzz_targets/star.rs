//! Fuzz target: STAR parsing of arbitrary bytes (as text), and numeric access to every cell of
//! every table that parses. Invariant: no panic; every row has as many values as labels.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz.star");
    let Ok(f) = cryosplat_formats::star::parse_str(text, path) else { return };
    for b in &f.blocks {
        for t in &b.tables {
            for (r, row) in t.rows.iter().enumerate() {
                assert_eq!(row.len(), t.labels.len());
                for c in 0..row.len() {
                    let _ = t.f64(path, r, c);
                }
            }
        }
    }
});
