//! Fuzz target: the safe unpickler on arbitrary bytes, then the cryoDRGN interpretations
//! (poses, CTF, indices). Invariants: no panic; a global in the result is one of the accepted
//! numpy/codecs names; nesting stays within the limit; arrays hold as many values as their
//! shape says.
#![no_main]
use cryosplat_formats::pickle::{ctf_from, indices_from, parse, poses_from, Value, MAX_DEPTH};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fn check(v: &Value, depth: u16) {
    assert!(depth <= MAX_DEPTH + 1, "nesting {depth}");
    match v {
        Value::Global(m, n) => assert!(
            m.starts_with("numpy") || &**m == "_codecs" || &**m == "codecs",
            "{m}.{n}"
        ),
        Value::Tuple(items) => items.iter().for_each(|x| check(x, depth + 1)),
        Value::List(items) => items.iter().for_each(|x| check(x, depth + 1)),
        Value::Array(a) => assert_eq!(a.data.len(), a.shape.iter().product::<usize>()),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.pkl");
    let Ok(v) = parse(data, path) else { return };
    check(&v, 0);
    let _ = poses_from(&v, path);
    let _ = ctf_from(&v, path);
    let _ = indices_from(&v, path);
});
