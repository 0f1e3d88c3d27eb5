//! Fuzz target: the safe unpickler on arbitrary bytes. Invariant: no panic, and it never
//! accepts a global outside its numpy whitelist.
#![no_main]
use cryosplat_formats::pickle::{parse, Value};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fn check(v: &Value) {
    match v {
        Value::Global(m, n) => assert!(m.starts_with("numpy"), "{m}.{n}"),
        Value::Tuple(items) | Value::List(items) => items.iter().for_each(check),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = parse(data, Path::new("fuzz.pkl")) {
        check(&v);
    }
});
