//! MRC reading of every real file in tests/data and write-then-read round trips.
//! Expected numbers were read independently with the Python `mrcfile` package (permissive mode).

use cryosplat_formats::mrc::{self, MrcFile, Mode, StackWriter, WriteMode, WriteOptions};
use std::path::{Path, PathBuf};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(rel)
}

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
    warns: &'static [&'static str],
}

const CASES: &[Expect] = &[
    Expect { file: "cryodrgn/empiar_10076_7.mrc", dims: [320, 320, 7], apix: None, first: [0.6822134256362915, 1.5983787775039673, 0.24848367273807526], last_img_1_2: -0.32181283831596375, mean: -0.00343437067, std: 1.00514186, min: -4.34950495, max: 5.53454399, warns: &["pixel size unknown"] },
    Expect { file: "cryodrgn/relion31.mrcs", dims: [256, 256, 5], apix: Some(1.0), first: [0.28542500734329224, 0.9299029111862183, -0.1991584748029709], last_img_1_2: 1.2809882164001465, mean: 0.0107661735, std: 1.01305056, min: -4.38332033, max: 4.40073633, warns: &["MAP identifier", "machine stamp is 0", "NVERSION is 0"] },
    Expect { file: "cryodrgn/ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs", dims: [64, 64, 220], apix: Some(1.0), first: [0.009785454720258713, 7.821594715118408, 13.354992866516113], last_img_1_2: -0.03985391557216644, mean: -0.208013159, std: 11.7308206, min: -58.3742027, max: 81.2357559, warns: &["machine stamp is 0"] },
    Expect { file: "aspire/sample.mrcs", dims: [200, 200, 17], apix: None, first: [-2.0562593936920166, -2.1050336360931396, -2.181863307952881], last_img_1_2: -1.5392566919326782, mean: 0.0106444757, std: 1.00712215, min: -7.64106131, max: 4.23378658, warns: &["pixel size unknown"] },
    Expect { file: "cryodrgn-toy/toy_projections.mrcs", dims: [30, 30, 1000], apix: Some(1.0), first: [0.0, 0.0, 0.0], last_img_1_2: 0.0, mean: 0.200158494, std: 0.872234081, min: 0.0, max: 8.85285378, warns: &["NVERSION is 0"] },
    Expect { file: "cryodrgn-toy/toymodel_small_nocenter.mrc", dims: [30, 30, 30], apix: Some(1.0), first: [0.0, 0.0, 0.0], last_img_1_2: 0.0, mean: 0.00666666667, std: 0.0813770374, min: 0.0, max: 1.0, warns: &["NVERSION is 0"] },
    Expect { file: "reference/gmm_scene0_vol.mrc", dims: [32, 32, 32], apix: Some(1.5), first: [1.365397212333222e-29, 2.1676454672462572e-28, 2.5878684070062345e-27], last_img_1_2: 3.218897690500933e-33, mean: 3.78960498e-05, std: 0.000263117929, min: 0.0, max: 0.00522708707, warns: &[] },
];

#[test]
fn reads_every_real_file() {
    for c in CASES {
        let f = MrcFile::open(data(c.file)).unwrap_or_else(|e| panic!("{e}"));
        let h = f.header();
        assert_eq!([h.nx, h.ny, h.nz], c.dims, "{}", c.file);
        assert_eq!(h.mode, Mode::Float32);
        match (h.apix, c.apix) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{}: apix {a}", c.file),
            (a, b) => assert_eq!(a, b, "{}", c.file),
        }
        for w in c.warns {
            assert!(h.warnings.iter().any(|x| x.contains(w)), "{}: missing warning {w:?} in {:?}", c.file, h.warnings);
        }
        if c.warns.is_empty() {
            assert!(h.warnings.is_empty(), "{}: {:?}", c.file, h.warnings);
        }
        let mut img = vec![0.0f32; h.nx * h.ny];
        f.read_image(0, &mut img).unwrap();
        assert_eq!(&img[..3], &c.first, "{}", c.file);
        f.read_image(h.nz - 1, &mut img).unwrap();
        assert_eq!(img[h.nx + 2], c.last_img_1_2, "{}", c.file);
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
    w.finish().unwrap();
    let f = MrcFile::open(&p).unwrap();
    assert_eq!(f.len(), 4);
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
    let e = MrcFile::open(dir.path().join("absent.mrc")).unwrap_err().to_string();
    assert!(e.contains("absent.mrc"), "{e}");
    // Truncated file: a valid header followed by too little data.
    let good = dir.path().join("good.mrc");
    mrc::write_volume(&good, &vec![1.0; 1000], [10, 10, 10], 1.0, &WriteOptions::default()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let trunc = dir.path().join("trunc.mrc");
    std::fs::write(&trunc, &bytes[..bytes.len() - 100]).unwrap();
    let e = MrcFile::open(&trunc).unwrap_err().to_string();
    assert!(e.contains("trunc.mrc") && e.contains("truncated"), "{e}");
    // Shorter than a header.
    let tiny = dir.path().join("tiny.mrc");
    std::fs::write(&tiny, b"not an mrc").unwrap();
    let e = MrcFile::open(&tiny).unwrap_err().to_string();
    assert!(e.contains("tiny.mrc") && e.contains("1024"), "{e}");
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
    let e = f.read_image(0, &mut img).unwrap_err().to_string();
    assert!(e.contains("nan.mrc") && e.contains("3 NaN or infinite"), "{e}");
    let e = f.read_image(1, &mut img).unwrap_err().to_string();
    assert!(e.contains("image 1") && e.contains("1 NaN or infinite"), "{e}");
    assert_eq!(f.stats().non_finite, 4);
    // Index out of range.
    let e = f.read_image(10, &mut img).unwrap_err().to_string();
    assert!(e.contains("index 10") && e.contains("holds 10 images"), "{e}");
    // Unwritable output folder.
    let e = mrc::write_volume(Path::new("/nonexistent-dir/x.mrc"), &[1.0], [1, 1, 1], 1.0, &WriteOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent-dir/x.mrc"), "{e}");
    // Refuses to write NaN.
    let e = mrc::write_volume(&dir.path().join("w.mrc"), &[f32::NAN], [1, 1, 1], 1.0, &WriteOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("NaN"), "{e}");
}
