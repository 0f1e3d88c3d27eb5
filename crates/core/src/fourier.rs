//! Centred real-to-complex Fourier transforms on the FFT-aligned grid, and tools built on them.
//!
//! # Layout and normalisation
//!
//! A real `D`-sample axis has its origin at index `D/2` ([`centred_index`]). The forward
//! transforms compute `rfft(ifftshift(x))`, so the zero frequency sits at index 0 of every axis
//! of the spectrum:
//!
//! * 2D ([`CentredFft2`], and [`Fft2`] which owns its buffers): the spectrum has `D` rows in
//!   FFT order (row `r` ↔ frequency index [`freq_index`]`(r, D)`) and `D/2 + 1` columns
//!   (column `c` ↔ `kx` index `c`), element `r·(D/2+1) + c`. This is the half-plane layout of
//!   [`crate::ctf`]. [`CentredFft2`] keeps the same spectrum column by column
//!   ([`Fft2Scratch::columns`]).
//! * 3D ([`Fft3`]): `D` planes (kz, FFT order) × `D` rows (ky, FFT order) × `D/2 + 1` columns
//!   (kx ≥ 0), element `(p·D + r)·(D/2+1) + c`.
//!
//! A frequency index `n` on an axis corresponds to `n/(D·apix)` in 1/Å. The forward transform
//! is **unnormalised**; the inverse divides by the number of samples (`D²` or `D³`) and undoes
//! the shift, so `inverse(forward(x)) = x` ([`CentredFft2::inverse_unnormalised`] leaves the
//! division to the caller, who usually folds it into a filter).
//!
//! Plans are made once per size; no transform call allocates except the 3D ones, which return
//! their result.
//!
//! # Index conventions
//!
//! Two orders of the integers `−⌊D/2⌋ … ⌈D/2⌉−1` are used, for odd and even `D` alike:
//!
//! * **FFT order** (the spectra): position `i` holds [`freq_index`]`(i, D)`, numpy's
//!   `fftfreq(D)·D`; [`freq_position`] is its inverse, modulo `D`.
//! * **Centred order** (images, volumes, centred CTF arrays): position `i` holds
//!   [`centred_index`]`(i, D) = i − D/2`, numpy's `fftshift(fftfreq(D))·D`;
//!   [`centred_position`] is its inverse, modulo `D`.

use realfft::num_complex::Complex;
use realfft::num_traits::Zero;
use realfft::{ComplexToReal, FftNum, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

pub use realfft::num_complex::Complex32;

/// Signed frequency index of position `i` on an FFT-ordered axis of length `d`: `i` for
/// `i < ⌈d/2⌉`, `i − d` otherwise (numpy's `fftfreq(d)·d`; the Nyquist position `d/2` of an
/// even axis is `−d/2`).
#[inline]
pub fn freq_index(i: usize, d: usize) -> i64 {
    if i < d.div_ceil(2) {
        i as i64
    } else {
        i as i64 - d as i64
    }
}

/// Position on an FFT-ordered axis of length `d` of the signed frequency index `f`, taken
/// modulo `d` (the inverse of [`freq_index`]).
#[inline]
pub fn freq_position(f: i64, d: usize) -> usize {
    f.rem_euclid(d as i64) as usize
}

/// Signed index of position `i` on a centred axis of length `d` (origin at `d/2`): `i − d/2`
/// (numpy's `fftshift(fftfreq(d))·d`). In real space the offset from the centre in pixels, on
/// a centred Fourier array the frequency index.
#[inline]
pub fn centred_index(i: usize, d: usize) -> i64 {
    i as i64 - (d / 2) as i64
}

/// Position on a centred axis of length `d` of the signed index `n`, taken modulo `d` (the
/// inverse of [`centred_index`]).
#[inline]
pub fn centred_position(n: i64, d: usize) -> usize {
    (n + (d / 2) as i64).rem_euclid(d as i64) as usize
}

/// Copy a centred axis into FFT order: `out[i] = x[(i + D/2) mod D]` (ifftshift).
#[inline]
fn ifftshift_index(i: usize, d: usize) -> usize {
    (i + d / 2) % d
}

/// The four 1D transforms of one axis length (real forward and inverse, complex forward and
/// inverse), planned once.
struct AxisPlans<T: FftNum> {
    r2c: Arc<dyn RealToComplex<T>>,
    c2r: Arc<dyn ComplexToReal<T>>,
    fwd: Arc<dyn Fft<T>>,
    inv: Arc<dyn Fft<T>>,
}

impl<T: FftNum> AxisPlans<T> {
    fn new(d: usize) -> Self {
        let mut rp = RealFftPlanner::<T>::new();
        let mut cp = FftPlanner::<T>::new();
        AxisPlans { r2c: rp.plan_fft_forward(d), c2r: rp.plan_fft_inverse(d), fwd: cp.plan_fft_forward(d), inv: cp.plan_fft_inverse(d) }
    }
}

/// The centred 2D real-to-complex transform of `D×D` images (see the module docs), in `f32`
/// or `f64`: plans only, made once and shared by all threads; every call works in a
/// caller-owned [`Fft2Scratch`] and allocates nothing.
///
/// [`CentredFft2::forward`] computes `rfft2(ifftshift(x))` (real-to-complex transforms of the
/// rows, then complex transforms of the columns) and leaves the half spectrum in the scratch
/// **column by column** ([`Fft2Scratch::columns`]: element `c·D + r` is column `c`, row `r`
/// in FFT order), so that every column transform and every per-frequency loop runs on
/// contiguous memory. [`CentredFft2::inverse_unnormalised`] undoes it up to the factor `D²`.
pub struct CentredFft2<T: FftNum = f32> {
    d: usize,
    w: usize,
    plans: AxisPlans<T>,
}

/// One thread's buffers for a [`CentredFft2`] (see [`CentredFft2::scratch`]).
pub struct Fft2Scratch<T: FftNum = f32> {
    /// One real row.
    row: Vec<T>,
    /// The half spectrum by rows (`r·(D/2+1) + c`): output of the row transforms.
    rows: Vec<Complex<T>>,
    /// The half spectrum by columns (`c·D + r`).
    cols: Vec<Complex<T>>,
    /// Scratch of the real and of the complex transforms.
    real_scratch: Vec<Complex<T>>,
    complex_scratch: Vec<Complex<T>>,
}

impl<T: FftNum> Fft2Scratch<T> {
    /// The half spectrum column by column: element `c·D + r` is column `c` (`kx = c`), row `r`
    /// (frequency index [`freq_index`]`(r, D)`).
    #[inline]
    pub fn columns(&self) -> &[Complex<T>] {
        &self.cols
    }

    /// Mutable [`Fft2Scratch::columns`], to filter the spectrum between the transforms.
    #[inline]
    pub fn columns_mut(&mut self) -> &mut [Complex<T>] {
        &mut self.cols
    }
}

impl<T: FftNum> CentredFft2<T> {
    /// Plans for `d×d` images (`d ≥ 2`).
    pub fn new(d: usize) -> Self {
        assert!(d >= 2, "a 2D transform needs D ≥ 2, not {d}");
        CentredFft2 { d, w: d / 2 + 1, plans: AxisPlans::new(d) }
    }

    pub fn d(&self) -> usize {
        self.d
    }

    /// Length of the half spectrum: `D·(D/2+1)`.
    pub fn spectrum_len(&self) -> usize {
        self.d * self.w
    }

    /// Buffers sized for these plans (make one per thread).
    pub fn scratch(&self) -> Fft2Scratch<T> {
        let z = Complex::<T>::zero();
        let p = &self.plans;
        let rs = p.r2c.get_scratch_len().max(p.c2r.get_scratch_len());
        let cs = p.fwd.get_inplace_scratch_len().max(p.inv.get_inplace_scratch_len());
        Fft2Scratch {
            row: vec![T::zero(); self.d],
            rows: vec![z; self.d * self.w],
            cols: vec![z; self.d * self.w],
            real_scratch: vec![z; rs],
            complex_scratch: vec![z; cs],
        }
    }

    /// The unnormalised spectrum `rfft2(ifftshift(src))` of the centred image `src` (`D` rows
    /// of `stride` values, the first `D` of each used), left in [`Fft2Scratch::columns`].
    pub fn forward(&self, src: &[T], stride: usize, s: &mut Fft2Scratch<T>) {
        let (d, w) = (self.d, self.w);
        let h = d / 2;
        // Rows: ifftshift (centred index (u + D/2) mod D → u), then real-to-complex.
        for u in 0..d {
            let r = &src[ifftshift_index(u, d) * stride..][..d];
            s.row[..d - h].copy_from_slice(&r[h..]);
            s.row[d - h..].copy_from_slice(&r[..h]);
            self.plans
                .r2c
                .process_with_scratch(&mut s.row, &mut s.rows[u * w..(u + 1) * w], &mut s.real_scratch)
                .expect("buffer sizes are fixed by the plans");
        }
        transpose(&s.rows, &mut s.cols, d, w);
        self.plans.fwd.process_with_scratch(&mut s.cols, &mut s.complex_scratch);
    }

    /// The inverse of [`CentredFft2::forward`] without the division by `D²`: the centred real
    /// image whose half spectrum is [`Fft2Scratch::columns`], times `D²`, written to `dst` (`D`
    /// rows of `stride`; the rest of each row is left alone). The imaginary parts of the
    /// self-mirrored columns (DC, and Nyquist for even `D`) that a real image cannot have are
    /// dropped, as `irfft` does: this is `real(IFFT(…))` of the full complex spectrum. The
    /// spectrum in the scratch is overwritten.
    pub fn inverse_unnormalised(&self, s: &mut Fft2Scratch<T>, dst: &mut [T], stride: usize) {
        let (d, w) = (self.d, self.w);
        let h = d / 2;
        self.plans.inv.process_with_scratch(&mut s.cols, &mut s.complex_scratch);
        transpose(&s.cols, &mut s.rows, w, d);
        for u in 0..d {
            let row = &mut s.rows[u * w..(u + 1) * w];
            row[0].im = T::zero();
            if d.is_multiple_of(2) {
                row[w - 1].im = T::zero();
            }
            self.plans.c2r.process_with_scratch(row, &mut s.row, &mut s.real_scratch).expect("buffer sizes are fixed by the plans");
            let o = &mut dst[ifftshift_index(u, d) * stride..][..d];
            o[h..].copy_from_slice(&s.row[..d - h]);
            o[..h].copy_from_slice(&s.row[d - h..]);
        }
    }
}

/// `dst[c·rows + r] = src[r·cols + c]` for a `rows×cols` source, in cache-friendly blocks.
fn transpose<T: Copy>(src: &[T], dst: &mut [T], rows: usize, cols: usize) {
    const B: usize = 16;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// A [`CentredFft2`] in `f32` with its own buffers, for callers that want the spectrum in the
/// row-major half-plane layout of the module docs.
pub struct Fft2 {
    fft: CentredFft2<f32>,
    s: Fft2Scratch<f32>,
}

impl Fft2 {
    pub fn new(d: usize) -> Self {
        let fft = CentredFft2::new(d);
        let s = fft.scratch();
        Fft2 { fft, s }
    }

    pub fn d(&self) -> usize {
        self.fft.d()
    }

    /// Length of the half-plane spectrum: `D·(D/2+1)`.
    pub fn spectrum_len(&self) -> usize {
        self.fft.spectrum_len()
    }

    /// `out = rfft2(ifftshift(image))` (unnormalised), in the half-plane layout.
    pub fn forward(&mut self, image: &[f32], out: &mut [Complex32]) {
        let d = self.d();
        assert_eq!(image.len(), d * d);
        assert_eq!(out.len(), self.spectrum_len());
        self.fft.forward(image, d, &mut self.s);
        transpose(&self.s.cols, out, d / 2 + 1, d);
    }

    /// `image = fftshift(irfft2(spectrum)) / D²`; the inverse of [`Fft2::forward`]. The
    /// spectrum is left unchanged. Imaginary parts of the self-conjugate entries (columns 0
    /// and `D/2`) that a real image cannot have are ignored, as `irfft` does.
    pub fn inverse(&mut self, spectrum: &[Complex32], image: &mut [f32]) {
        let d = self.d();
        assert_eq!(image.len(), d * d);
        assert_eq!(spectrum.len(), self.spectrum_len());
        transpose(spectrum, &mut self.s.cols, d, d / 2 + 1);
        self.fft.inverse_unnormalised(&mut self.s, image, d);
        let norm = 1.0 / (d * d) as f32;
        for v in image.iter_mut() {
            *v *= norm;
        }
    }
}

/// A 3D centred real-to-complex transform of `D³` volumes.
pub struct Fft3 {
    d: usize,
    plans: AxisPlans<f32>,
}

impl Fft3 {
    pub fn new(d: usize) -> Self {
        assert!(d >= 2, "Fft3 needs D ≥ 2");
        Fft3 { d, plans: AxisPlans::new(d) }
    }

    pub fn d(&self) -> usize {
        self.d
    }

    /// Length of the half spectrum: `D·D·(D/2+1)`.
    pub fn spectrum_len(&self) -> usize {
        self.d * self.d * (self.d / 2 + 1)
    }

    /// `rfftn(ifftshift(volume))`, unnormalised, in the layout of the module docs. Parallel
    /// over planes, rows and columns (rayon).
    pub fn forward(&self, volume: &[f32]) -> Vec<Complex32> {
        use rayon::prelude::*;
        let d = self.d;
        let w = d / 2 + 1;
        assert_eq!(volume.len(), d * d * d);
        let mut out = vec![Complex32::new(0.0, 0.0); d * d * w];
        // Along x, for every (z, y) row.
        out.par_chunks_mut(d * w).enumerate().for_each_init(
            || (vec![0.0f32; d], vec![Complex32::new(0.0, 0.0); self.plans.r2c.get_scratch_len()]),
            |(row, scratch), (p, plane)| {
                let z = ifftshift_index(p, d);
                for r in 0..d {
                    let y = ifftshift_index(r, d);
                    let src = &volume[(z * d + y) * d..][..d];
                    for (i, v) in row.iter_mut().enumerate() {
                        *v = src[ifftshift_index(i, d)];
                    }
                    self.plans.r2c.process_with_scratch(row, &mut plane[r * w..(r + 1) * w], scratch).expect("fixed sizes");
                }
            },
        );
        self.complex_passes(&mut out, false);
        out
    }

    /// The inverse of [`Fft3::forward`]: `fftshift(irfftn(spectrum)) / D³`. Consumes the spectrum.
    pub fn inverse(&self, mut spectrum: Vec<Complex32>) -> Vec<f32> {
        use rayon::prelude::*;
        let d = self.d;
        let w = d / 2 + 1;
        assert_eq!(spectrum.len(), d * d * w);
        self.complex_passes(&mut spectrum, true);
        let mut out = vec![0.0f32; d * d * d];
        let norm = 1.0 / (d * d * d) as f32;
        // Output plane z receives spectrum plane p with ifftshift_index(p) = z.
        out.par_chunks_mut(d * d).enumerate().for_each_init(
            || (vec![0.0f32; d], vec![Complex32::new(0.0, 0.0); w], vec![Complex32::new(0.0, 0.0); self.plans.c2r.get_scratch_len()]),
            |(row, spec, scratch), (z, plane)| {
                let p = freq_position(centred_index(z, d), d); // the FFT position of centred sample z
                for r in 0..d {
                    spec.copy_from_slice(&spectrum[(p * d + r) * w..][..w]);
                    spec[0].im = 0.0;
                    if d.is_multiple_of(2) {
                        spec[w - 1].im = 0.0;
                    }
                    self.plans.c2r.process_with_scratch(spec, row, scratch).expect("fixed sizes");
                    let y = ifftshift_index(r, d);
                    let dst = &mut plane[y * d..(y + 1) * d];
                    for (i, &v) in row.iter().enumerate() {
                        dst[ifftshift_index(i, d)] = v * norm;
                    }
                }
            },
        );
        out
    }

    /// Complex transforms along y (within each plane) and z (across planes).
    fn complex_passes(&self, data: &mut [Complex32], inverse: bool) {
        use rayon::prelude::*;
        let d = self.d;
        let w = d / 2 + 1;
        let plan = if inverse { &self.plans.inv } else { &self.plans.fwd };
        let slen = plan.get_inplace_scratch_len();
        // Along y: each plane independently.
        data.par_chunks_mut(d * w).for_each_init(
            || (vec![Complex32::new(0.0, 0.0); d], vec![Complex32::new(0.0, 0.0); slen]),
            |(col, scratch), plane| {
                for c in 0..w {
                    for r in 0..d {
                        col[r] = plane[r * w + c];
                    }
                    plan.process_with_scratch(col, scratch);
                    for r in 0..d {
                        plane[r * w + c] = col[r];
                    }
                }
            },
        );
        // Along z: gather lines (r, c) across planes. Work on a transposed copy by rows.
        let n_lines = d * w;
        let mut lines = vec![Complex32::new(0.0, 0.0); d * n_lines];
        lines.par_chunks_mut(d).enumerate().for_each(|(l, line)| {
            for p in 0..d {
                line[p] = data[p * n_lines + l];
            }
        });
        lines.par_chunks_mut(d * 64).for_each_init(
            || vec![Complex32::new(0.0, 0.0); slen],
            |scratch, block| {
                for line in block.chunks_mut(d) {
                    plan.process_with_scratch(line, scratch);
                }
            },
        );
        data.par_chunks_mut(n_lines).enumerate().for_each(|(p, plane)| {
            for (l, v) in plane.iter_mut().enumerate() {
                *v = lines[l * d + p];
            }
        });
    }
}

/// Multiply a half-plane spectrum of a `D×D` image (pixel size `apix` Å) by the phase ramp
/// that moves the image by `(dx_a, dy_a)` Å: the result is the transform of `x ↦ f(x − dx)`.
pub fn shift_spectrum_2d(spec: &mut [Complex32], d: usize, apix: f64, dx_a: f64, dy_a: f64) {
    let w = d / 2 + 1;
    let tx = -2.0 * std::f64::consts::PI * dx_a / (d as f64 * apix);
    let ty = -2.0 * std::f64::consts::PI * dy_a / (d as f64 * apix);
    for r in 0..d {
        let fy = freq_index(r, d) as f64;
        for c in 0..w {
            let ph = tx * c as f64 + ty * fy;
            let (s, co) = ph.sin_cos();
            spec[r * w + c] *= Complex::new(co as f32, s as f32);
        }
    }
}

/// Shift a centred `D×D` image by `(dx_px, dy_px)` pixels (sub-pixel, periodic) in place.
pub fn shift_image(fft: &mut Fft2, image: &mut [f32], dx_px: f64, dy_px: f64, spec: &mut [Complex32]) {
    let d = fft.d();
    fft.forward(image, spec);
    shift_spectrum_2d(spec, d, 1.0, dx_px, dy_px);
    fft.inverse(spec, image);
}

/// Fourier crop (`new_d < D`: downsampling) or pad (`new_d > D`) a centred image. The pixel
/// size becomes `apix·D/new_d`. Values are scaled so that a band-limited image keeps its
/// pixel values (each output pixel is a point sample of the same function).
pub fn resample_image(image: &[f32], d: usize, new_d: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; new_d * new_d];
    Resampler::new(d, new_d).apply(image, &mut out);
    out
}

/// Fourier crop or pad a centred `D³` volume to `new_d³` (pixel size `apix·D/new_d`), keeping
/// the values of a band-limited volume.
pub fn resample_volume(vol: &[f32], d: usize, new_d: usize) -> Vec<f32> {
    let f = Fft3::new(d);
    let spec = f.forward(vol);
    let w = d / 2 + 1;
    let nw = new_d / 2 + 1;
    let lim = (d.min(new_d) / 2) as i64;
    let mut out = vec![Complex32::new(0.0, 0.0); new_d * new_d * nw];
    let scale = (new_d * new_d * new_d) as f32 / (d * d * d) as f32;
    let skip = |f: i64| f.abs() > lim || (f == -lim && d.min(new_d).is_multiple_of(2) && new_d < d);
    for p in 0..d {
        let fz = freq_index(p, d);
        if skip(fz) {
            continue;
        }
        let np = freq_position(fz, new_d);
        for r in 0..d {
            let fy = freq_index(r, d);
            if skip(fy) {
                continue;
            }
            let nr = freq_position(fy, new_d);
            for c in 0..w.min(nw) {
                out[(np * new_d + nr) * nw + c] = spec[(p * d + r) * w + c] * scale;
            }
        }
    }
    Fft3::new(new_d).inverse(out)
}

/// Radius in frequency samples of every element of the 3D half spectrum of a `D³` volume.
pub fn radius_3d(d: usize) -> Vec<f32> {
    let w = d / 2 + 1;
    let mut out = Vec::with_capacity(d * d * w);
    for p in 0..d {
        let fz = freq_index(p, d) as f32;
        for r in 0..d {
            let fy = freq_index(r, d) as f32;
            for c in 0..w {
                out.push((fz * fz + fy * fy + (c * c) as f32).sqrt());
            }
        }
    }
    out
}

/// Radius in frequency samples of every element of the 2D half-plane spectrum.
pub fn radius_2d(d: usize) -> Vec<f32> {
    let w = d / 2 + 1;
    let mut out = Vec::with_capacity(d * w);
    for r in 0..d {
        let fy = freq_index(r, d) as f32;
        for c in 0..w {
            out.push((fy * fy + (c * c) as f32).sqrt());
        }
    }
    out
}

/// Fourier shell index `n = round(|k|·D·apix)` (the radius in samples, rounded) of every
/// element of the 3D half spectrum.
pub fn shells_3d(d: usize) -> Vec<u32> {
    radius_3d(d).into_iter().map(|r| r.round() as u32).collect()
}

/// Low-pass a centred `D³` volume (pixel size `apix` Å) at `resolution_a` Å with a raised-cosine
/// edge `edge_px` frequency samples wide (centred on the cutoff). `edge_px = 0` is a hard cutoff.
pub fn low_pass_volume(vol: &[f32], d: usize, apix: f64, resolution_a: f64, edge_px: f64) -> Vec<f32> {
    let f = Fft3::new(d);
    let mut spec = f.forward(vol);
    let cutoff = d as f64 * apix / resolution_a; // in samples
    let rad = radius_3d(d);
    for (v, &r) in spec.iter_mut().zip(&rad) {
        *v *= low_pass_weight(r as f64, cutoff, edge_px) as f32;
    }
    f.inverse(spec)
}

/// Raised-cosine low-pass weight at radius `r` for a cutoff `cutoff` and edge width `edge`.
pub fn low_pass_weight(r: f64, cutoff: f64, edge: f64) -> f64 {
    if edge <= 0.0 {
        return if r <= cutoff { 1.0 } else { 0.0 };
    }
    let lo = cutoff - edge / 2.0;
    let hi = cutoff + edge / 2.0;
    if r <= lo {
        1.0
    } else if r >= hi {
        0.0
    } else {
        0.5 * (1.0 + (std::f64::consts::PI * (r - lo) / edge).cos())
    }
}

/// Fourier cropping or padding of `D×D` images to `d×d` with plans and buffers made once
/// (the per-image form of [`resample_image`], allocation-free).
pub struct Resampler {
    from: Fft2,
    to: Fft2,
    spec_in: Vec<Complex32>,
    spec_out: Vec<Complex32>,
}

impl Resampler {
    pub fn new(from_d: usize, to_d: usize) -> Self {
        let from = Fft2::new(from_d);
        let to = Fft2::new(to_d);
        Resampler {
            spec_in: vec![Complex32::new(0.0, 0.0); from.spectrum_len()],
            spec_out: vec![Complex32::new(0.0, 0.0); to.spectrum_len()],
            from,
            to,
        }
    }

    /// Resample `image` (`D×D`) into `out` (`d×d`); values as in [`resample_image`].
    pub fn apply(&mut self, image: &[f32], out: &mut [f32]) {
        let (d, nd) = (self.from.d(), self.to.d());
        self.from.forward(image, &mut self.spec_in);
        let w = d / 2 + 1;
        let nw = nd / 2 + 1;
        self.spec_out.iter_mut().for_each(|v| *v = Complex32::new(0.0, 0.0));
        let lim = (d.min(nd) / 2) as i64;
        let scale = (nd * nd) as f32 / (d * d) as f32;
        for r in 0..d {
            let fy = freq_index(r, d);
            if fy.abs() > lim || (fy == -lim && d.min(nd).is_multiple_of(2) && nd < d) {
                continue;
            }
            let nr = freq_position(fy, nd);
            for c in 0..w.min(nw) {
                self.spec_out[nr * nw + c] = self.spec_in[r * w + c] * scale;
            }
        }
        self.to.inverse(&self.spec_out, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..n).map(|_| r.normal() as f32).collect()
    }

    #[test]
    fn index_helpers_follow_numpy_for_odd_and_even_sizes() {
        // numpy: fftfreq(D)·D (FFT order) and fftshift(fftfreq(D))·D (centred order).
        let cases: [(usize, &[i64], &[i64]); 5] = [
            (2, &[0, -1], &[-1, 0]),
            (5, &[0, 1, 2, -2, -1], &[-2, -1, 0, 1, 2]),
            (6, &[0, 1, 2, -3, -2, -1], &[-3, -2, -1, 0, 1, 2]),
            (7, &[0, 1, 2, 3, -3, -2, -1], &[-3, -2, -1, 0, 1, 2, 3]),
            (8, &[0, 1, 2, 3, -4, -3, -2, -1], &[-4, -3, -2, -1, 0, 1, 2, 3]),
        ];
        for (d, fft_order, centred_order) in cases {
            let f: Vec<i64> = (0..d).map(|i| freq_index(i, d)).collect();
            let c: Vec<i64> = (0..d).map(|i| centred_index(i, d)).collect();
            assert_eq!(f, fft_order, "freq_index, D = {d}");
            assert_eq!(c, centred_order, "centred_index, D = {d}");
            for i in 0..d {
                assert_eq!(freq_position(freq_index(i, d), d), i, "D = {d}");
                assert_eq!(centred_position(centred_index(i, d), d), i, "D = {d}");
                // ifftshift: FFT position i holds the centred sample (i + D/2) mod D.
                assert_eq!(centred_index(ifftshift_index(i, d), d), freq_index(i, d), "D = {d}");
                // Positions are taken modulo D.
                assert_eq!(freq_position(freq_index(i, d) + 3 * d as i64, d), i);
                assert_eq!(centred_position(centred_index(i, d) - 2 * d as i64, d), i);
            }
        }
    }

    #[test]
    fn fft2_round_trip_parseval_and_dc() {
        for d in [8usize, 9, 16] {
            let x = random(d * d, d as u64);
            let mut f = Fft2::new(d);
            let mut s = vec![Complex32::new(0.0, 0.0); f.spectrum_len()];
            f.forward(&x, &mut s);
            let sum: f32 = x.iter().sum();
            assert!((s[0].re - sum).abs() < 1e-3 && s[0].im.abs() < 1e-3);
            // Parseval over the half plane: weight 2 for columns that have a mirror.
            let w = d / 2 + 1;
            let mut e = 0.0f64;
            for r in 0..d {
                for c in 0..w {
                    let wt = if c == 0 || (d.is_multiple_of(2) && c == w - 1) { 1.0 } else { 2.0 };
                    e += wt * s[r * w + c].norm_sqr() as f64;
                }
            }
            let ex: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() * (d * d) as f64;
            assert!((e - ex).abs() < 1e-4 * ex, "d {d}: {e} vs {ex}");
            let mut y = vec![0.0; d * d];
            f.inverse(&s, &mut y);
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn centred_delta_has_flat_real_spectrum() {
        let d = 16;
        let mut x = vec![0.0f32; d * d];
        x[(d / 2) * d + d / 2] = 1.0;
        let mut f = Fft2::new(d);
        let mut s = vec![Complex32::new(0.0, 0.0); f.spectrum_len()];
        f.forward(&x, &mut s);
        for v in &s {
            assert!((v.re - 1.0).abs() < 1e-6 && v.im.abs() < 1e-6);
        }
    }

    #[test]
    fn integer_shift_equals_roll() {
        let d = 16;
        let x = random(d * d, 3);
        let mut f = Fft2::new(d);
        let mut s = vec![Complex32::new(0.0, 0.0); f.spectrum_len()];
        let mut y = x.clone();
        shift_image(&mut f, &mut y, 3.0, -2.0, &mut s);
        for i in 0..d {
            for j in 0..d {
                let si = (i + d + 2) % d; // y moved by −2 rows: y[i] = x[i + 2]
                let sj = (j + d - 3) % d; // moved by +3 columns: y[j] = x[j − 3]
                assert!((y[i * d + j] - x[si * d + sj]).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn fft3_round_trip_and_centred_delta() {
        let d = 10;
        let x = random(d * d * d, 9);
        let f = Fft3::new(d);
        let y = f.inverse(f.forward(&x));
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-5);
        }
        let mut delta = vec![0.0f32; d * d * d];
        delta[((d / 2) * d + d / 2) * d + d / 2] = 1.0;
        for v in f.forward(&delta) {
            assert!((v.re - 1.0).abs() < 1e-6 && v.im.abs() < 1e-6);
        }
    }

    #[test]
    fn resampling_keeps_band_limited_values() {
        // A smooth Gaussian blob is essentially band-limited at D = 32 → 16.
        let d = 32;
        let g = |x: f64, y: f64, s: f64| (-(x * x + y * y) / (2.0 * s * s)).exp() as f32;
        let img: Vec<f32> = (0..d * d).map(|k| g((k % d) as f64 - 16.0, (k / d) as f64 - 16.0, 3.0)).collect();
        let small = resample_image(&img, d, 16);
        for i in 0..16 {
            for j in 0..16 {
                let want = g((j as f64 - 8.0) * 2.0, (i as f64 - 8.0) * 2.0, 3.0);
                assert!((small[i * 16 + j] - want).abs() < 2e-3, "{i} {j}: {} vs {want}", small[i * 16 + j]);
            }
        }
        let big = resample_image(&small, 16, d);
        for (a, b) in big.iter().zip(&img) {
            assert!((a - b).abs() < 5e-3);
        }
        let vol: Vec<f32> = (0..d * d * d)
            .map(|k| {
                let (x, y, z) = ((k % d) as f64 - 16.0, ((k / d) % d) as f64 - 16.0, (k / (d * d)) as f64 - 16.0);
                (-(x * x + y * y + z * z) / 18.0).exp() as f32
            })
            .collect();
        let v2 = resample_volume(&vol, d, 16);
        assert!((v2[(8 * 16 + 8) * 16 + 8] - 1.0).abs() < 2e-3);
        assert!((v2[(8 * 16 + 8) * 16 + 9] - (-4.0f64 / 18.0).exp() as f32).abs() < 2e-3);
    }

    #[test]
    fn low_pass_weights() {
        assert_eq!(low_pass_weight(1.0, 5.0, 0.0), 1.0);
        assert_eq!(low_pass_weight(6.0, 5.0, 0.0), 0.0);
        assert!((low_pass_weight(5.0, 5.0, 2.0) - 0.5).abs() < 1e-12);
    }
}
