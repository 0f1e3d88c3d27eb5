//! Fuzz target: the STAR parser on arbitrary bytes. Invariants: no panic; every row has one
//! value per label; numeric access to every cell is an `Ok` or an `Err`, never a panic; and
//! whatever parses and can be written back parses again to the same blocks, pairs and tables.
#![no_main]
use cryosplat_formats::star::{format_file, parse_bytes, parse_str, StarFile};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// The content of a file without its line numbers.
fn content(f: &StarFile) -> Vec<(String, Vec<(String, String)>, Vec<(Vec<String>, Vec<Vec<String>>)>)> {
    f.blocks
        .iter()
        .map(|b| {
            let pairs = b.pairs.iter().map(|(l, v, _)| (l.clone(), v.clone())).collect();
            let tables = b.tables.iter().map(|t| (t.labels.clone(), t.rows.clone())).collect();
            (b.name.clone(), pairs, tables)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.star");
    let Ok(f) = parse_bytes(data, path) else { return };
    for b in &f.blocks {
        for t in &b.tables {
            assert_eq!(t.rows.len(), t.row_lines.len());
            for (r, row) in t.rows.iter().enumerate() {
                assert_eq!(row.len(), t.labels.len());
                for c in 0..row.len() {
                    let _ = t.f64(path, r, c);
                }
            }
            for l in &t.labels {
                let _ = t.f64_column(path, l);
            }
        }
    }
    if let Ok(text) = format_file(&f) {
        let g = parse_str(&text, path).unwrap_or_else(|e| panic!("written text does not parse: {e}\n{text}"));
        assert_eq!(content(&f), content(&g), "write-then-read changed the content:\n{text}");
    }
});
