//! The renderer's parts and its full step: forward splat alone, backward gather alone, and the
//! full loss-and-gradient step (forward, CTF by real FFT, loss, adjoint, backward), for the
//! batch of one on 1 and 2 threads and for a minibatch of 4 images.
//!
//! Workload: [`cryosplat_core::render::workload`] (the same as `cryosplat bench`), 8 images.
//! Sizes default to 128 px and 10,000 Gaussians; set
//! `CRYOSPLAT_BENCH_SIZES="64x2000,128x10000,256x30000"` to choose others.
//!
//! Timing: wall clock by default. On a shared machine, `CRYOSPLAT_BENCH_CPU=1` measures the
//! process's CPU time instead (summed over its threads from `/proc/self/task/*/schedstat`,
//! Linux only), which other processes cannot inflate; with 2 threads it also counts the pool's
//! idle spinning, so use it for single-thread figures.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput};
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_core::pose::Pose;
use cryosplat_core::render::workload;
use cryosplat_core::render::{ImageTarget, RenderOptions, Renderer};
use cryosplat_core::rng::Rng;
use std::time::Duration;

struct Scene {
    model: GaussianModel,
    poses: Vec<Pose>,
    ctfs: Vec<Vec<f32>>,
    images: Vec<Vec<f32>>,
}

fn scene(d: usize, n: usize) -> Scene {
    let mut rng = Rng::new(3);
    let model = workload::model(n, d, &mut rng);
    let (poses, ctfs, images) = workload::images(8, d, &mut rng);
    Scene { model, poses, ctfs, images }
}

fn sizes() -> Vec<(usize, usize)> {
    let spec = std::env::var("CRYOSPLAT_BENCH_SIZES").unwrap_or_else(|_| "128x10000".into());
    spec.split(',')
        .map(|s| {
            let (d, n) = s.trim().split_once('x').expect("sizes look like 128x10000");
            (d.parse().expect("box size"), n.parse().expect("Gaussian count"))
        })
        .collect()
}

fn bench_render<M: Measurement>(c: &mut Criterion<M>) {
    for (d, n) in sizes() {
        let s = scene(d, n);
        let mut g = c.benchmark_group(format!("render_{d}px_{n}g"));
        g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
        g.throughput(Throughput::Elements(1));
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut r = Renderer::new(d, RenderOptions { threads, ..Default::default() });
            let mut out = vec![0.0f32; d * d];
            let mut grad = vec![[0.0f32; PARAMS_PER_GAUSSIAN]; n];
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new("forward", threads), |b| {
                b.iter(|| {
                    i = (i + 1) % s.poses.len();
                    pool.install(|| r.render(&s.model, &s.poses[i], 1.0, None, &mut out));
                })
            });
            g.bench_function(BenchmarkId::new("backward", threads), |b| {
                b.iter(|| {
                    i = (i + 1) % s.poses.len();
                    pool.install(|| r.backward_image(&s.model, &s.poses[i], 1.0, &s.images[i], &mut grad));
                })
            });
            g.bench_function(BenchmarkId::new("step", threads), |b| {
                b.iter(|| {
                    i = (i + 1) % s.poses.len();
                    let t = ImageTarget { image: &s.images[i], ctf_rfft: &s.ctfs[i], pose: &s.poses[i], apix: 1.0 };
                    pool.install(|| r.loss_and_grad(&s.model, &t, &mut grad))
                })
            });
            let batch: Vec<ImageTarget> =
                (0..4).map(|k| ImageTarget { image: &s.images[k], ctf_rfft: &s.ctfs[k], pose: &s.poses[k], apix: 1.0 }).collect();
            g.throughput(Throughput::Elements(batch.len() as u64));
            g.bench_function(BenchmarkId::new("step_batch4", threads), |b| {
                b.iter(|| pool.install(|| r.loss_and_grad_batch(&s.model, &batch, &mut grad)))
            });
            g.throughput(Throughput::Elements(1));
        }
        g.finish();
    }
}

/// CPU time of this process, summed over its threads (nanoseconds on the CPU).
struct ProcessCpu;

fn process_cpu_ns() -> u64 {
    let mut total = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
                total += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    total
}

struct NsFormatter;

impl ValueFormatter for NsFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        for v in values.iter_mut() {
            *v /= 1e3;
        }
        "µs (CPU)"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match t {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => *n as f64,
        };
        for v in values.iter_mut() {
            *v = n * 1e9 / *v;
        }
        "elem/s (CPU)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for ProcessCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        process_cpu_ns()
    }
    fn end(&self, i: u64) -> u64 {
        process_cpu_ns().saturating_sub(i)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NsFormatter
    }
}

fn main_benches() {
    if std::env::var_os("CRYOSPLAT_BENCH_CPU").is_some() {
        let mut c = Criterion::default().with_measurement(ProcessCpu).configure_from_args();
        bench_render(&mut c);
        c.final_summary();
    } else {
        let mut c: Criterion<WallTime> = Criterion::default().configure_from_args();
        bench_render(&mut c);
        c.final_summary();
    }
}

fn main() {
    main_benches();
}
