//! The renderer's parts and its full step: forward splat alone, backward gather alone, and the
//! full loss-and-gradient step (forward, CTF by real FFT, loss, adjoint, backward), for the
//! batch of one on 1 and 2 threads and for a minibatch of 4 images.
//!
//! Workload: random anisotropic Gaussians with scales of 1.05–1.95 px (projected σ about
//! 1.5 px) inside the central sphere of radius 0.35 box, random poses and origins, an
//! astigmatic CTF, white-noise targets. Sizes default to 128 px and 10,000 Gaussians; set
//! `CRYOSPLAT_BENCH_SIZES="64x2000,128x10000,256x30000"` to choose others.
//!
//! Timing: wall clock by default. On a shared machine, `CRYOSPLAT_BENCH_CPU=1` measures the
//! process's CPU time instead (summed over its threads from `/proc/self/task/*/schedstat`,
//! Linux only), which other processes cannot inflate; with 2 threads it also counts the pool's
//! idle spinning, so use it for single-thread figures.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput};
use cryosplat_core::ctf::CtfParams;
use cryosplat_core::gaussian::{GaussianModel, PARAMS_PER_GAUSSIAN};
use cryosplat_core::pose::Pose;
use cryosplat_core::render::{ImageTarget, RenderOptions, Renderer};
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::random_rotation;
use std::time::Duration;

fn model(n: usize, d: usize, rng: &mut Rng) -> GaussianModel {
    let px = 1.0 / d as f64;
    let params = (0..n)
        .map(|_| {
            let p = loop {
                let p = [rng.uniform_range(-0.35, 0.35), rng.uniform_range(-0.35, 0.35), rng.uniform_range(-0.35, 0.35)];
                if p.iter().map(|v| v * v).sum::<f64>() <= 0.35 * 0.35 {
                    break p;
                }
            };
            let s: Vec<f32> = (0..3).map(|_| (rng.uniform_range(1.05, 1.95) * px) as f32).collect();
            let q = rng.unit_quaternion();
            GaussianModel::raw_from_physical(
                [p[0] as f32, p[1] as f32, p[2] as f32],
                [s[0], s[1], s[2]],
                [q[0] as f32, q[1] as f32, q[2] as f32, q[3] as f32],
                rng.uniform_range(0.5, 1.5) as f32,
            )
        })
        .collect();
    GaussianModel { params }
}

struct Scene {
    model: GaussianModel,
    poses: Vec<Pose>,
    ctfs: Vec<Vec<f32>>,
    images: Vec<Vec<f32>>,
}

fn scene(d: usize, n: usize) -> Scene {
    let mut rng = Rng::new(3);
    let model = model(n, d, &mut rng);
    let k = 8;
    let poses = (0..k)
        .map(|_| Pose { rot: random_rotation(&mut rng), origin_a: [rng.uniform_range(-3.0, 3.0), rng.uniform_range(-3.0, 3.0)] })
        .collect();
    let ctfs = (0..k)
        .map(|_| {
            let df = rng.uniform_range(8000.0, 25000.0);
            let p = CtfParams {
                voltage_kv: 300.0,
                cs_mm: 2.7,
                amp_contrast: 0.1,
                defocus_u_a: df + 200.0,
                defocus_v_a: df - 200.0,
                defocus_angle_deg: rng.uniform_range(-180.0, 180.0),
                ..CtfParams::flat()
            };
            let mut out = vec![0.0f32; d * (d / 2 + 1)];
            p.fill_rfft(d, 1.0, &mut out);
            out
        })
        .collect();
    let images = (0..k).map(|_| (0..d * d).map(|_| rng.normal() as f32).collect()).collect();
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
            let batch: Vec<ImageTarget> = (0..4)
                .map(|k| ImageTarget { image: &s.images[k], ctf_rfft: &s.ctfs[k], pose: &s.poses[k], apix: 1.0 })
                .collect();
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
