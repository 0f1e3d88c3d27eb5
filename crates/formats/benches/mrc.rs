//! Random access into a multi-gigabyte MRC stack: 40,000 images of 256×256 float32 (10.5 GB),
//! made as a sparse file (a valid header, then `set_len`; three images hold real data).
//!
//! Reports, besides the criterion timings:
//! - what opening the file and reading one image cost in resident memory and minor page
//!   faults (from `/proc/self/statm` and `/proc/self/stat`): reading one image must touch
//!   about that image's 256 KiB, not the file;
//! - the time of first-touch reads of images never read before (page faults included; for a
//!   hole the kernel allocates zeroed page-cache pages, for real data it would read the disk).
//!
//! Set `CRYOSPLAT_BENCH_DIR` to place the sparse file on a given file system (default: the
//! system temporary folder).

use criterion::{criterion_group, criterion_main, Criterion};
use cryosplat_formats::mrc::{self, MrcFile, WriteOptions};
use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

const D: usize = 256;
const N: usize = 40_000;
const IMAGE_BYTES: u64 = (D * D * 4) as u64;
/// Images that hold real data (the rest are holes that read as zeros).
const FILLED: [usize; 3] = [0, 23_456, N - 1];

fn page_kib() -> u64 {
    // The kernel's page size is 4 KiB on x86-64; confirmed from /proc/self/smaps when present.
    std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("KernelPageSize:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(4)
}

/// (resident set in KiB, minor page faults so far) of this process.
fn memory() -> (u64, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let resident_pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; minflt is field 10 of the whole line.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let minflt: u64 = after.split_whitespace().nth(7).and_then(|v| v.parse().ok()).unwrap_or(0);
    (resident_pages * page_kib(), minflt)
}

fn image(k: usize) -> Vec<f32> {
    (0..D * D).map(|i| ((i * 31 + k * 17) % 1000) as f32 * 1e-3 - 0.5).collect()
}

fn make_sparse_stack(path: &Path) {
    // A valid one-image stack from the writer, then NZ = 40,000 and the file extended with holes.
    mrc::write_stack(path, &image(0), D, D, 1, 1.0, &WriteOptions::default()).unwrap();
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(8)).unwrap();
    f.write_all(&(N as i32).to_le_bytes()).unwrap();
    f.set_len(1024 + N as u64 * IMAGE_BYTES).unwrap();
    for &k in &FILLED[1..] {
        f.seek(SeekFrom::Start(1024 + k as u64 * IMAGE_BYTES)).unwrap();
        let bytes: Vec<u8> = image(k).iter().flat_map(|v| v.to_le_bytes()).collect();
        f.write_all(&bytes).unwrap();
    }
    f.sync_all().unwrap();
}

fn bench(c: &mut Criterion) {
    let base = std::env::var_os("CRYOSPLAT_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let path = dir.path().join("sparse.mrcs");
    make_sparse_stack(&path);
    let meta = std::fs::metadata(&path).unwrap();
    println!("sparse stack: {} images of {D}x{D} float32, {:.2} GB apparent size, in {}", N, meta.len() as f64 / 1e9, dir.path().display());

    let m0 = memory();
    let t = Instant::now();
    let f = MrcFile::open(&path).unwrap();
    let open_s = t.elapsed().as_secs_f64();
    let m1 = memory();
    assert_eq!(f.len(), N);
    let mut out = vec![0.0f32; D * D];
    let t = Instant::now();
    f.read_image(FILLED[1], &mut out).unwrap();
    let read_s = t.elapsed().as_secs_f64();
    let m2 = memory();
    assert_eq!(out, image(FILLED[1]));
    println!("open: {:.1} us, resident +{} KiB, minor faults +{}", open_s * 1e6, m1.0 as i64 - m0.0 as i64, m1.1 - m0.1);
    println!(
        "first read of image {} ({} KiB of data): {:.1} us, resident +{} KiB, minor faults +{}",
        FILLED[1],
        IMAGE_BYTES / 1024,
        read_s * 1e6,
        m2.0 as i64 - m1.0 as i64,
        m2.1 - m1.1
    );

    // First-touch reads of 200 images never read before, spread over the file.
    let mut times: Vec<f64> = (0..200)
        .map(|j| {
            let k = 101 + j * (N / 201);
            let t = Instant::now();
            f.read_image(k, &mut out).unwrap();
            black_box(&out);
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let m3 = memory();
    println!(
        "first-touch reads of 200 other images: median {:.1} us, min {:.1} us, max {:.1} us; resident +{} KiB in all ({} KiB per image)",
        times[100] * 1e6,
        times[0] * 1e6,
        times[199] * 1e6,
        m3.0 as i64 - m2.0 as i64,
        (m3.0 as i64 - m2.0 as i64) / 200
    );

    let mut g = c.benchmark_group("mrc_sparse_10GB");
    g.sample_size(50);
    g.throughput(criterion::Throughput::Bytes(IMAGE_BYTES));
    g.bench_function("read_image_256x256_same_index", |b| b.iter(|| f.read_image(black_box(FILLED[1]), &mut out).unwrap()));
    // Cycle over 1,000 images (250 MiB) spread over the file, touched once beforehand so that
    // they are in the page cache and mapped: random access without first-touch costs.
    for k in 0..1000 {
        f.read_image(k * 40, &mut out).unwrap();
    }
    let mut k = 0usize;
    g.bench_function("read_image_256x256_cycling_1000_cached", |b| {
        b.iter(|| {
            k = (k + 1) % 1000;
            f.read_image(black_box(k * 40), &mut out).unwrap()
        })
    });
    g.finish();

    let m4 = memory();
    println!("after the criterion runs: resident {} KiB (file apparent size {} KiB)", m4.0, meta.len() / 1024);
}

criterion_group!(benches, bench);
criterion_main!(benches);
