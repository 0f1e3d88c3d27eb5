//! Fuzz target: MRC header parsing on arbitrary bytes, then, when the header parses (so the
//! claimed data fit the input), decoding the first and last images and their statistics.
#![no_main]
use cryosplat_formats::mrc::{count_non_finite, decode_image, parse_header, StatsAccumulator};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.mrc");
    let Ok(header) = parse_header(data, path) else { return };
    // The header was checked against the input, so an image is at most the input's size.
    let n = header.nx * header.ny;
    assert!(n as u64 * header.mode.bytes() as u64 <= data.len() as u64);
    let mut out = vec![0.0f32; n];
    let mut acc = StatsAccumulator::default();
    for index in [0, header.nz - 1] {
        decode_image(data, &header, path, index, &mut out).expect("an image inside a checked header decodes");
        acc.add(&out);
        let _ = count_non_finite(&out);
    }
    assert!(decode_image(data, &header, path, header.nz, &mut out).is_err());
    let s = acc.finish();
    assert!(s.count + s.non_finite == 2 * n as u64);
});
