//! STAR parsing throughput: a 100,000-particle RELION 3.1 file (generated here: 17 columns,
//! 300 stacks, about 19 MB), parsed from memory; then the same plus the conversion of the
//! eight numeric columns a particle loader reads; then writing it back as text.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::fmt::Write;
use std::path::Path;

fn make_star(n: usize) -> String {
    let mut s = String::from(
        "\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnOpticsGroupName #2\n_rlnAmplitudeContrast #3\n_rlnSphericalAberration #4\n_rlnVoltage #5\n_rlnImagePixelSize #6\n_rlnImageSize #7\n_rlnImageDimensionality #8\n1 opticsGroup1 0.1 2.7 300 1.06 256 2\n\ndata_particles\n\nloop_\n",
    );
    let labels = [
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnImageName",
        "rlnMicrographName",
        "rlnOpticsGroup",
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnOriginXAngst",
        "rlnOriginYAngst",
        "rlnDefocusU",
        "rlnDefocusV",
        "rlnDefocusAngle",
        "rlnCtfBfactor",
        "rlnCtfScalefactor",
        "rlnPhaseShift",
        "rlnRandomSubset",
    ];
    for (i, l) in labels.iter().enumerate() {
        writeln!(s, "_{l} #{}", i + 1).unwrap();
    }
    for i in 0..n {
        writeln!(
            s,
            "{:.6} {:.6} {:06}@Extract/job012/Movies/mic_{:05}.mrcs Movies/mic_{:05}.mrc 1 {:.6} {:.6} {:.6} {:.6} {:.6} {:.6} {:.6} {:.6} 0.000000 1.000000 0.000000 {}",
            (i * 37 % 4000) as f64 + 0.5,
            (i * 91 % 4000) as f64 + 0.25,
            i % 300 + 1,
            i / 300,
            i / 300,
            (i as f64 * 0.37) % 360.0 - 180.0,
            (i as f64 * 0.11) % 180.0,
            (i as f64 * 0.53) % 360.0 - 180.0,
            (i % 7) as f64 * 0.3 - 1.0,
            (i % 5) as f64 * 0.4 - 1.0,
            12000.0 + (i % 1000) as f64,
            11800.0 + (i % 1000) as f64,
            34.5,
            i % 2 + 1
        )
        .unwrap();
    }
    s
}

const NUMERIC: [&str; 8] =
    ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"];

fn bench(c: &mut Criterion) {
    let text = make_star(100_000);
    let path = Path::new("bench.star");
    let mut g = c.benchmark_group("star");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("parse_100k_particles", |b| {
        b.iter(|| {
            let f = cryosplat_formats::star::parse_str(&text, path).unwrap();
            assert_eq!(f.block("particles").unwrap().table().unwrap().len(), 100_000);
        })
    });
    g.bench_function("parse_100k_particles_and_8_numeric_columns", |b| {
        b.iter(|| {
            let f = cryosplat_formats::star::parse_str(&text, path).unwrap();
            let t = f.block("particles").unwrap().table().unwrap();
            let sum: f64 = NUMERIC.iter().map(|l| t.f64_column(path, l).unwrap().unwrap().iter().sum::<f64>()).sum();
            assert!(sum.is_finite());
        })
    });
    let parsed = cryosplat_formats::star::parse_str(&text, path).unwrap();
    g.bench_function("format_100k_particles", |b| {
        b.iter(|| {
            let s = cryosplat_formats::star::format_file(&parsed).unwrap();
            assert!(s.len() > text.len() / 2);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
