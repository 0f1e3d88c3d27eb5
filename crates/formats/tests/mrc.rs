//! MRC reading of every real file in tests/data and write-then-read round trips.
//! Expected numbers were read independently with numpy from the raw bytes (and agree with the
//! Python `mrcfile` package in permissive mode); they are f32 values printed as f64.
#![allow(clippy::excessive_precision)]

mod common;

use common::{data, expect_err};
use cryosplat_formats::mrc::{self, Mode, MrcFile, StackWriter, WriteMode, WriteOptions};
use std::path::Path;

struct Expect {
    file: &'static str,
    dims: [usize; 3],
    apix: Option<f64>,
    first: [f32; 3],
    last_img_1_2: f32,
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
    /// Image min(3, nz−1), row 10, column 20.
    img3_10_20: f32,
    warns: &'static [&'static str],
}

const CASES: &[Expect] = &[
    Expect {
        file: "cryodrgn/empiar_10076_7.mrc",
        dims: [320, 320, 7],
        apix: None,
        first: [0.6822134256362915, 1.5983787775039673, 0.24848367273807526],
        last_img_1_2: -0.32181283831596375,
        mean: -0.00343437067,
        std: 1.00514186,
        min: -4.34950495,
        max: 5.53454399,
        img3_10_20: -0.46335217356681824,
        warns: &["pixel size unknown"],
    },
    Expect {
        file: "cryodrgn/relion31.mrcs",
        dims: [256, 256, 5],
        apix: Some(1.0),
        first: [0.28542500734329224, 0.9299029111862183, -0.1991584748029709],
        last_img_1_2: 1.2809882164001465,
        mean: 0.0107661735,
        std: 1.01305056,
        min: -4.38332033,
        max: 4.40073633,
        img3_10_20: -0.5201116800308228,
        warns: &["MAP identifier", "machine stamp is 0", "NVERSION is 0", "unset", "placeholder"],
    },
    Expect {
        file: "cryodrgn/ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs",
        dims: [64, 64, 220],
        apix: Some(1.0),
        first: [0.009785454720258713, 7.821594715118408, 13.354992866516113],
        last_img_1_2: -0.03985391557216644,
        mean: -0.208013159,
        std: 11.7308206,
        min: -58.3742027,
        max: 81.2357559,
        img3_10_20: 3.1480188369750977,
        warns: &["MAP identifier", "machine stamp is 0", "NVERSION is 0", "unset", "placeholder"],
    },
    Expect {
        file: "aspire/sample.mrcs",
        dims: [200, 200, 17],
        apix: None,
        first: [-2.0562593936920166, -2.1050336360931396, -2.181863307952881],
        last_img_1_2: -1.5392566919326782,
        mean: 0.0106444757,
        std: 1.00712215,
        min: -7.64106131,
        max: 4.23378658,
        img3_10_20: 0.7487694621086121,
        warns: &["pixel size unknown"],
    },
    Expect {
        file: "cryodrgn-toy/toy_projections.mrcs",
        dims: [30, 30, 1000],
        apix: Some(1.0),
        first: [0.0, 0.0, 0.0],
        last_img_1_2: 0.0,
        mean: 0.200158494,
        std: 0.872234081,
        min: 0.0,
        max: 8.85285378,
        img3_10_20: 0.0,
        warns: &["MAP identifier", "machine stamp is 0", "NVERSION is 0", "placeholder"],
    },
    Expect {
        file: "cryodrgn-toy/toymodel_small_nocenter.mrc",
        dims: [30, 30, 30],
        apix: Some(1.0),
        first: [0.0, 0.0, 0.0],
        last_img_1_2: 0.0,
        mean: 0.00666666667,
        std: 0.0813770374,
        min: 0.0,
        max: 1.0,
        img3_10_20: 0.0,
        warns: &["NVERSION is 0", "placeholder"],
    },
    Expect {
        file: "reference/gmm_scene0_vol.mrc",
        dims: [32, 32, 32],
        apix: Some(1.5),
        first: [1.365397212333222e-29, 2.1676454672462572e-28, 2.5878684070062345e-27],
        last_img_1_2: 3.218897690500933e-33,
        mean: 3.78960498e-05,
        std: 0.000263117929,
        min: 0.0,
        max: 0.00522708707,
        img3_10_20: 3.9306321327099714e-13,
        warns: &[],
    },
];

#[test]
fn reads_every_real_file() {
    for c in CASES {
        let f = MrcFile::open(data(c.file)).unwrap_or_else(|e| panic!("{e}"));
        let h = f.header();
        assert_eq!(&mrc::read_header(data(c.file)).unwrap(), h);
        assert_eq!([h.nx, h.ny, h.nz], c.dims, "{}", c.file);
        assert_eq!(h.mode, Mode::Float32);
        match (h.apix, c.apix) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{}: apix {a}", c.file),
            (a, b) => assert_eq!(a, b, "{}", c.file),
        }
        for w in c.warns {
            assert!(h.warnings.iter().any(|x| x.contains(w)), "{}: missing warning {w:?} in {:?}", c.file, h.warnings);
        }
        assert_eq!(h.warnings.len(), c.warns.len(), "{}: {:?}", c.file, h.warnings);
        let mut img = vec![0.0f32; h.nx * h.ny];
        f.read_image(0, &mut img).unwrap();
        assert_eq!(&img[..3], &c.first, "{}", c.file);
        f.read_image(h.nz - 1, &mut img).unwrap();
        assert_eq!(img[h.nx + 2], c.last_img_1_2, "{}", c.file);
        f.read_image(3.min(h.nz - 1), &mut img).unwrap();
        assert_eq!(img[10 * h.nx + 20], c.img3_10_20, "{}", c.file);
        let s = f.stats();
        assert_eq!(s.non_finite, 0);
        let tol = |x: f64| 1e-6 * x.abs().max(1e-3);
        assert!((s.mean - c.mean).abs() < tol(c.std), "{}: mean {} vs {}", c.file, s.mean, c.mean);
        assert!((s.std - c.std).abs() < 1e-5 * c.std, "{}: std {} vs {}", c.file, s.std, c.std);
        assert_eq!(s.min as f32, c.min as f32, "{}", c.file);
        assert_eq!(s.max as f32, c.max as f32, "{}", c.file);
    }
}

#[test]
fn round_trip_volume_and_stack_float32_and_float16() {
    let dir = tempfile::tempdir().unwrap();
    let vol: Vec<f32> = (0..4 * 5 * 6).map(|i| ((i * 37) % 11) as f32 * 0.25 - 1.0).collect();
    for mode in [WriteMode::Float32, WriteMode::Float16] {
        let p = dir.path().join(format!("v{mode:?}.mrc"));
        let opts = WriteOptions { mode, ..Default::default() };
        mrc::write_volume(&p, &vol, [4, 5, 6], 1.25, &opts).unwrap();
        let f = MrcFile::open(&p).unwrap();
        let h = f.header();
        assert_eq!([h.nx, h.ny, h.nz], [4, 5, 6]);
        assert_eq!(h.apix, Some(1.25));
        assert_eq!(h.ispg, 1);
        assert_eq!(h.mxyz, [4, 5, 6]);
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
        // Every value here is exactly representable in float16.
        assert_eq!(f.read_all().unwrap(), vol);
        let s = f.stats();
        assert_eq!(h.stored_stats[0] as f64, s.min);
        assert_eq!(h.stored_stats[1] as f64, s.max);
        assert!((h.stored_stats[2] as f64 - s.mean).abs() < 1e-6);
        assert!((h.stored_stats[3] as f64 - s.std).abs() < 1e-6);

        let p = dir.path().join(format!("s{mode:?}.mrcs"));
        mrc::write_stack(&p, &vol, 4, 5, 6, 2.0, &opts).unwrap();
        let f = MrcFile::open(&p).unwrap();
        let h = f.header();
        assert_eq!((h.ispg, h.mxyz, h.cella[2]), (0, [4, 5, 1], 2.0));
        let mut img = vec![0.0; 20];
        f.read_image(3, &mut img).unwrap();
        assert_eq!(img, &vol[60..80]);
    }
}

#[test]
fn streaming_stack_writer() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("stream.mrcs");
    let mut w = StackWriter::create(&p, 3, 2, 1.5, WriteOptions::default()).unwrap();
    for k in 0..4 {
        let img: Vec<f32> = (0..6).map(|i| (k * 10 + i) as f32).collect();
        w.push(&img).unwrap();
    }
    assert!(!p.exists(), "the file appears only when complete");
    let stats = w.finish().unwrap();
    assert_eq!((stats.min, stats.max, stats.count), (0.0, 35.0, 24));
    let f = MrcFile::open(&p).unwrap();
    assert_eq!(f.len(), 4);
    // Prefetching is advice: in range or not, reads give the same values.
    for k in [0, 2, 3, 4, usize::MAX] {
        f.prefetch_image(k);
    }
    let mut img = vec![0.0; 6];
    f.read_image(2, &mut img).unwrap();
    assert_eq!(img, vec![20.0, 21.0, 22.0, 23.0, 24.0, 25.0]);
    assert_eq!(f.header().stored_stats[1], 35.0);
    // An abandoned writer leaves nothing behind.
    let q = dir.path().join("abandoned.mrcs");
    let mut w = StackWriter::create(&q, 3, 2, 1.5, WriteOptions::default()).unwrap();
    w.push(&[0.0; 6]).unwrap();
    drop(w);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bad_input_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // Missing file.
    expect_err(MrcFile::open(dir.path().join("absent.mrc")), &["absent.mrc"]);
    // Truncated file: a valid header followed by too little data.
    let good = dir.path().join("good.mrc");
    mrc::write_volume(&good, &vec![1.0; 1000], [10, 10, 10], 1.0, &WriteOptions::default()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let trunc = dir.path().join("trunc.mrc");
    std::fs::write(&trunc, &bytes[..bytes.len() - 100]).unwrap();
    expect_err(MrcFile::open(&trunc), &["trunc.mrc", "truncated"]);
    // Shorter than a header.
    let tiny = dir.path().join("tiny.mrc");
    std::fs::write(&tiny, b"not an mrc").unwrap();
    expect_err(MrcFile::open(&tiny), &["tiny.mrc", "1024"]);
    // NaN and infinite pixels are counted.
    let mut b = bytes.clone();
    for k in [0usize, 7, 99] {
        let o = 1024 + 4 * k;
        b[o..o + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    b[1024 + 4 * 150..1024 + 4 * 151].copy_from_slice(&f32::INFINITY.to_le_bytes());
    let nan = dir.path().join("nan.mrc");
    std::fs::write(&nan, &b).unwrap();
    let f = MrcFile::open(&nan).unwrap();
    let mut img = vec![0.0; 100];
    expect_err(f.read_image(0, &mut img), &["nan.mrc", "3 NaN or infinite"]);
    expect_err(f.read_image(1, &mut img), &["image 1", "1 NaN or infinite"]);
    assert_eq!(f.stats().non_finite, 4);
    // Index out of range.
    expect_err(f.read_image(10, &mut img), &["index 10", "holds 10 images"]);
    // Unwritable output folder.
    let e =
        mrc::write_volume(Path::new("/nonexistent-dir/x.mrc"), &[1.0], [1, 1, 1], 1.0, &WriteOptions::default()).unwrap_err().to_string();
    assert!(e.contains("/nonexistent-dir/x.mrc"), "{e}");
    // Refuses to write NaN.
    expect_err(mrc::write_volume(&dir.path().join("w.mrc"), &[f32::NAN], [1, 1, 1], 1.0, &WriteOptions::default()), &["NaN"]);
}

/// A hand-made MRC file: `dims`, `mode`, byte order, `nsymbt` bytes of extended header (filled
/// with 0xAB so that reading them as data would show), then `data` as given.
fn synth(dims: [i32; 3], mode: i32, big: bool, nsymbt: usize, data: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 1024];
    let mut put = |w: usize, v: [u8; 4]| h[w * 4..w * 4 + 4].copy_from_slice(&v);
    let i = |v: i32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
    let f = |v: f32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
    for (k, &n) in dims.iter().enumerate() {
        put(k, i(n));
        put(7 + k, i(n));
        put(10 + k, f(n as f32 * 0.75));
    }
    put(3, i(mode));
    put(16, i(1));
    put(17, i(2));
    put(18, i(3));
    put(23, i(nsymbt as i32));
    put(27, i(20140));
    h[208..212].copy_from_slice(b"MAP ");
    h[212..214].copy_from_slice(if big { &[0x11, 0x11] } else { &[0x44, 0x44] });
    h.extend(std::iter::repeat_n(0xABu8, nsymbt));
    h.extend_from_slice(data);
    h
}

/// Encode `vals` in `mode` with the standard library's own byte-order functions.
fn encode(vals: &[f32], mode: i32, big: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in vals {
        match mode {
            0 => out.push(v as i8 as u8),
            1 => out.extend(if big { (v as i16).to_be_bytes() } else { (v as i16).to_le_bytes() }),
            2 => out.extend(if big { v.to_be_bytes() } else { v.to_le_bytes() }),
            6 => out.extend(if big { (v as u16).to_be_bytes() } else { (v as u16).to_le_bytes() }),
            12 => {
                let b = half::f16::from_f32(v).to_bits();
                out.extend(if big { b.to_be_bytes() } else { b.to_le_bytes() })
            }
            _ => unreachable!(),
        }
    }
    out
}

#[test]
fn synthesized_files_of_every_mode_and_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    // 3×2 images, 4 of them; values in range for every mode (uint16 gets non-negative ones).
    let signed: Vec<f32> = (0..24).map(|k| (k as f32 - 11.0) * 3.0).collect();
    let unsigned: Vec<f32> = (0..24).map(|k| (k * 1000) as f32).collect();
    let halves: Vec<f32> = (0..24).map(|k| (k as f32 - 11.0) * 0.125).collect();
    for (mode, vals, expect_mode) in [
        (0, &signed, Mode::Int8),
        (1, &signed, Mode::Int16),
        (2, &halves, Mode::Float32),
        (6, &unsigned, Mode::Uint16),
        (12, &halves, Mode::Float16),
    ] {
        for big in [false, true] {
            let p = dir.path().join(format!("m{mode}_{big}.mrc"));
            std::fs::write(&p, synth([3, 2, 4], mode, big, 80, &encode(vals, mode, big))).unwrap();
            let f = MrcFile::open(&p).unwrap();
            let h = f.header();
            assert_eq!((h.mode, h.big_endian, h.nsymbt, h.data_offset), (expect_mode, big, 80, 1104));
            assert_eq!(h.apix, Some(0.75));
            assert!(h.warnings.is_empty(), "{:?}", h.warnings);
            assert_eq!(&f.read_all().unwrap(), vals, "mode {mode} big-endian {big}");
            let mut img = [0.0f32; 6];
            f.read_image(2, &mut img).unwrap();
            assert_eq!(&img[..], &vals[12..18]);
        }
    }
}

#[test]
fn header_claims_and_fields_are_checked_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: Vec<u8>| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // 2³¹−1 cubed samples claimed over 64 bytes of data: an error, no allocation.
    let p = write("huge.mrc", synth([i32::MAX, i32::MAX, i32::MAX], 2, false, 0, &[0u8; 64]));
    expect_err(MrcFile::open(&p), &["huge.mrc", "at byte 1024", "only 64 bytes"]);
    // Unknown mode.
    let p = write("mode.mrc", synth([2, 2, 1], 4, false, 0, &[0u8; 16]));
    expect_err(MrcFile::open(&p), &["mode.mrc", "at byte 12", "MODE is 4"]);
    // Zero and negative dimensions.
    let p = write("zero.mrc", synth([2, 2, 0], 2, false, 0, &[]));
    expect_err(MrcFile::open(&p), &["zero.mrc", "at byte 8", "NZ is 0"]);
    let p = write("neg.mrc", synth([-2, 2, 1], 2, true, 0, &[0u8; 16]));
    expect_err(MrcFile::open(&p), &["at byte 0", "NX is -2"]);
    // Extended header running past the end of the file.
    let mut b = synth([2, 2, 1], 2, false, 0, &[0u8; 16]);
    b[92..96].copy_from_slice(&100i32.to_le_bytes());
    let p = write("nsymbt.mrc", b);
    expect_err(MrcFile::open(&p), &["nsymbt.mrc", "at byte 92", "beyond the end"]);
    // A trailer shorter than one image (16 bytes here) is accepted with a warning.
    let p = write("trail15.mrc", synth([2, 2, 1], 2, false, 0, &[0u8; 31]));
    let h = MrcFile::open(&p).unwrap().header().clone();
    assert!(h.warnings.iter().any(|w| w.contains("15 bytes after the end")), "{:?}", h.warnings);
    let p = write("trail.mrc", synth([2, 2, 1], 2, false, 0, &[0u8; 20]));
    let f = MrcFile::open(&p).unwrap();
    assert!(f.header().warnings.iter().any(|w| w.contains("4 bytes after the end")), "{:?}", f.header().warnings);
    // A buffer of the wrong size.
    let mut small = [0.0f32; 3];
    expect_err(f.read_image(0, &mut small), &["trail.mrc", "needs a buffer of 4"]);
}

#[test]
fn written_headers_follow_mrc2014() {
    let dir = tempfile::tempdir().unwrap();
    let vol: Vec<f32> = (0..6 * 5 * 4).map(|i| (i as f32 * 0.37).sin()).collect();
    let p = dir.path().join("v.mrc");
    let opts = WriteOptions { origin_a: [1.5, -2.0, 3.0], label: "test map".into(), ..Default::default() };
    mrc::write_volume(&p, &vol, [6, 5, 4], 1.1, &opts).unwrap();
    let b = std::fs::read(&p).unwrap();
    assert_eq!(b.len(), 1024 + 4 * vol.len());
    let i = |w: usize| i32::from_le_bytes(b[w * 4..w * 4 + 4].try_into().unwrap());
    let f = |w: usize| f32::from_le_bytes(b[w * 4..w * 4 + 4].try_into().unwrap());
    assert_eq!([i(0), i(1), i(2), i(3)], [6, 5, 4, 2]);
    assert_eq!([i(7), i(8), i(9)], [6, 5, 4]);
    assert_eq!([f(10), f(11), f(12)], [(6.0f64 * 1.1) as f32, (5.0f64 * 1.1) as f32, (4.0f64 * 1.1) as f32]);
    assert_eq!([f(13), f(14), f(15)], [90.0; 3]);
    assert_eq!([i(16), i(17), i(18)], [1, 2, 3]);
    assert_eq!((i(22), i(23), i(27)), (1, 0, 20140));
    assert_eq!([f(49), f(50), f(51)], [1.5, -2.0, 3.0]);
    assert_eq!(&b[208..216], b"MAP \x44\x44\x00\x00");
    assert_eq!(i(55), 1);
    assert!(b[224..304].starts_with(b"test map"));
    // True statistics of the data, computed here independently.
    let n = vol.len() as f64;
    let mean = vol.iter().map(|&v| v as f64).sum::<f64>() / n;
    let rms = (vol.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let min = vol.iter().cloned().fold(f32::INFINITY, f32::min);
    let max = vol.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!((f(19), f(20)), (min, max));
    assert!((f(21) as f64 - mean).abs() < 1e-7 && (f(54) as f64 - rms).abs() < 1e-7, "{} {}", f(21), f(54));
    // A stack: ISPG 0, MZ 1, cella.z = apix.
    let p = dir.path().join("s.mrcs");
    mrc::write_stack(&p, &vol, 6, 5, 4, 1.1, &WriteOptions { mode: WriteMode::Float16, ..Default::default() }).unwrap();
    let b = std::fs::read(&p).unwrap();
    assert_eq!(b.len(), 1024 + 2 * vol.len());
    let i = |w: usize| i32::from_le_bytes(b[w * 4..w * 4 + 4].try_into().unwrap());
    let f = |w: usize| f32::from_le_bytes(b[w * 4..w * 4 + 4].try_into().unwrap());
    assert_eq!((i(3), i(9), i(22), f(12)), (12, 1, 0, 1.1f64 as f32));
    assert_eq!([f(49), f(50), f(51)], [0.0; 3]);
    // Float16 stores the rounded values; the header describes those.
    let back = MrcFile::open(&p).unwrap().read_all().unwrap();
    for (a, b) in back.iter().zip(&vol) {
        assert_eq!(*a, half::f16::from_f32(*b).to_f32());
    }
    assert_eq!(f(20), back.iter().cloned().fold(f32::NEG_INFINITY, f32::max));
}

#[test]
fn streaming_writer_float16_and_bad_images() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h.mrcs");
    let mut w = StackWriter::create(&p, 2, 2, 3.0, WriteOptions { mode: WriteMode::Float16, ..Default::default() }).unwrap();
    w.push(&[0.1, 0.2, 0.3, 0.4]).unwrap();
    expect_err(w.push(&[0.1, f32::NAN, 0.3, 0.4]), &["h.mrcs", "1 NaN"]);
    expect_err(w.push(&[0.1, 0.3, 0.4]), &["3 values given for 4"]);
    w.push(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    let stats = w.finish().unwrap();
    let f = MrcFile::open(&p).unwrap();
    assert_eq!((f.header().mode, f.len(), f.header().apix), (Mode::Float16, 2, Some(3.0)));
    let rounded: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4, 1.0, 2.0, 3.0, 4.0].iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    // The statistics returned describe the stored (rounded) values.
    let mean = rounded.iter().map(|&v| v as f64).sum::<f64>() / 8.0;
    assert!((stats.mean - mean).abs() < 1e-12 && stats.min == rounded[0] as f64, "{stats:?}");
    assert_eq!(f.read_all().unwrap(), rounded);
    assert_eq!(f.header().stored_stats[0], rounded[0]);
    // Unwritable folder.
    let e = StackWriter::create(Path::new("/nonexistent-dir/s.mrcs"), 2, 2, 1.0, WriteOptions::default()).unwrap_err();
    assert!(e.to_string().contains("/nonexistent-dir/s.mrcs"), "{e}");
}

#[test]
fn data_size_disagreeing_with_the_mode_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let vals: Vec<f32> = (0..32).map(|k| k as f32 * 0.5).collect();
    let float32 = encode(&vals, 2, false);
    let open_err = |name: &str, bytes: Vec<u8>| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        MrcFile::open(&p).unwrap_err().to_string()
    };
    // Float32 data whose header was changed to mode 6: 128 bytes where 64 are described.
    let e = open_err("mode6.mrc", synth([4, 4, 2], 6, false, 0, &float32));
    for part in ["mode6.mrc: at byte 1024", "MODE 6", "4×4×2", "64 bytes of data", "holds 128 bytes", "fits MODE 2 exactly"] {
        assert!(e.contains(part), "{part:?} in {e}");
    }
    // Labelled int8: a quarter of the bytes described; with an extended header, big-endian.
    let e = open_err("mode0.mrc", synth([4, 4, 2], 0, true, 48, &encode(&vals, 2, true)));
    for part in ["mode0.mrc: at byte 1072", "MODE 0", "32 bytes of data", "holds 128 bytes", "fits MODE 2 exactly"] {
        assert!(e.contains(part), "{part:?} in {e}");
    }
    // Int16 data labelled float16 or uint16 have the right size (same sample width): not
    // detectable from the size. Float16 data labelled float32: too few bytes.
    let e = open_err("mode2.mrc", synth([4, 4, 2], 2, false, 0, &encode(&vals, 12, false)));
    assert!(e.contains("MODE 2") && e.contains("only 64 bytes") && e.contains("truncated"), "{e}");
    // One whole image more than the header describes (NZ too small), in the header's own mode:
    // an error too, and exactly one image is enough.
    let e = open_err("nz.mrc", synth([2, 2, 1], 2, false, 0, &[0u8; 32]));
    assert!(e.contains("nz.mrc") && e.contains("16 more, at least one whole image (16 bytes)") && e.contains("NZ"), "{e}");
    // The same bytes under the right header read back exactly.
    let p = dir.path().join("right.mrc");
    std::fs::write(&p, synth([4, 4, 2], 2, false, 0, &float32)).unwrap();
    assert_eq!(MrcFile::open(&p).unwrap().read_all().unwrap(), vals);
}
