//! The CTF as a Fourier filter on centred real images, by real-to-complex transforms with
//! plans made once; one call filters one image inside one thread's scratch buffers.
//!
//! `filter(x) = fftshift(irfft2(H · rfft2(ifftshift(x)))) / D²`, with `H` the CTF in the
//! crate's half-plane layout (`D` rows in FFT order, `D/2+1` columns, index `r·(D/2+1)+c`).
//! The rows of the half spectrum whose own mirror image lies in the half plane (the DC column
//! and, for even `D`, the Nyquist column) keep only their real part before the inverse row
//! transform: this is exactly `real(IFFT(…))` of the full complex recipe, and it makes the
//! operator symmetric (the filter actually applied is `½(H(k) + H(−k))` on those columns), so
//! it is its own adjoint. The transform along y runs on a transposed copy of the half
//! spectrum so that every column transform works on contiguous memory.

use realfft::num_complex::Complex32;
use std::sync::Arc;

/// Plans for one box size (shared by all threads).
pub(crate) struct CtfFft {
    d: usize,
    w: usize,
    r2c: Arc<dyn realfft::RealToComplex<f32>>,
    c2r: Arc<dyn realfft::ComplexToReal<f32>>,
    fwd: Arc<dyn rustfft::Fft<f32>>,
    inv: Arc<dyn rustfft::Fft<f32>>,
}

/// One thread's buffers for [`CtfFft::apply`].
pub(crate) struct FftScratch {
    row: Vec<f32>,
    spec: Vec<Complex32>,
    tr: Vec<Complex32>,
    rs: Vec<Complex32>,
    cs: Vec<Complex32>,
}

impl CtfFft {
    pub fn new(d: usize) -> Self {
        let mut rp = realfft::RealFftPlanner::<f32>::new();
        let mut cp = rustfft::FftPlanner::<f32>::new();
        CtfFft {
            d,
            w: d / 2 + 1,
            r2c: rp.plan_fft_forward(d),
            c2r: rp.plan_fft_inverse(d),
            fwd: cp.plan_fft_forward(d),
            inv: cp.plan_fft_inverse(d),
        }
    }

    pub fn scratch(&self) -> FftScratch {
        let z = Complex32::new(0.0, 0.0);
        let rs = self.r2c.get_scratch_len().max(self.c2r.get_scratch_len());
        let cs = self.fwd.get_inplace_scratch_len().max(self.inv.get_inplace_scratch_len());
        FftScratch {
            row: vec![0.0; self.d],
            spec: vec![z; self.d * self.w],
            tr: vec![z; self.d * self.w],
            rs: vec![z; rs],
            cs: vec![z; cs],
        }
    }

    /// Filter `src` (rows of `src_stride`, the first `D` values of each used) by `ctf` into
    /// `dst` (rows of `dst_stride`). Both images are centred.
    pub fn apply(&self, src: &[f32], src_stride: usize, ctf: &[f32], dst: &mut [f32], dst_stride: usize, s: &mut FftScratch) {
        let (d, w) = (self.d, self.w);
        debug_assert_eq!(ctf.len(), d * w);
        self.spectrum(src, src_stride, s);
        let norm = 1.0 / (d * d) as f32;
        for c in 0..w {
            let col = &mut s.tr[c * d..(c + 1) * d];
            for (r, v) in col.iter_mut().enumerate() {
                *v *= ctf[r * w + c] * norm;
            }
        }
        self.image_from_spectrum(s, dst, dst_stride);
    }

    /// The unnormalised 2D spectrum of the centred image `src` (ifftshift, then real-to-complex
    /// rows and complex columns), left in `s.tr` column by column (`tr[c·D + r]` is column
    /// `c` of the half plane, row `r` in FFT order).
    pub fn spectrum(&self, src: &[f32], src_stride: usize, s: &mut FftScratch) {
        let (d, w) = (self.d, self.w);
        let h = d / 2;
        // Rows: ifftshift (centred index (u + D/2) mod D → u), then real-to-complex.
        for u in 0..d {
            let r = &src[((u + h) % d) * src_stride..][..d];
            s.row[..d - h].copy_from_slice(&r[h..]);
            s.row[d - h..].copy_from_slice(&r[..h]);
            self.r2c.process_with_scratch(&mut s.row, &mut s.spec[u * w..(u + 1) * w], &mut s.rs).expect("plan sizes");
        }
        transpose(&s.spec, &mut s.tr, d, w);
        self.fwd.process_with_scratch(&mut s.tr, &mut s.cs);
    }

    /// The inverse of [`CtfFft::spectrum`] without normalisation: the centred real image whose
    /// spectrum is `s.tr` (taking the real part on the self-mirrored columns), times `D²`,
    /// written to `dst` (rows of `dst_stride`). `s.tr` is overwritten.
    fn image_from_spectrum(&self, s: &mut FftScratch, dst: &mut [f32], dst_stride: usize) {
        let (d, w) = (self.d, self.w);
        let h = d / 2;
        self.inv.process_with_scratch(&mut s.tr, &mut s.cs);
        transpose(&s.tr, &mut s.spec, w, d);
        for u in 0..d {
            let row = &mut s.spec[u * w..(u + 1) * w];
            row[0].im = 0.0;
            if d % 2 == 0 {
                row[w - 1].im = 0.0;
            }
            self.c2r.process_with_scratch(row, &mut s.row, &mut s.rs).expect("plan sizes");
            let o = &mut dst[((u + h) % d) * dst_stride..][..d];
            o[h..].copy_from_slice(&s.row[..d - h]);
            o[..h].copy_from_slice(&s.row[d - h..]);
        }
    }

    /// The MSE loss and its image-space gradient from two spectra, with three transforms per
    /// image instead of four: `sx.tr` holds the spectrum `X` of the projection and `sy.tr` the
    /// spectrum `Y` of the observed image (both from [`CtfFft::spectrum`]). With the residual
    /// `R = H·X − Y` (the spectrum of `filter(x) − y`), Parseval gives the loss
    /// `(1/D²)·Σ_p r_p² = (1/D⁴)·Σ_k m_k·|R_k|²` over the half plane, where `m_k` is 1 on the
    /// self-mirrored columns (DC, and Nyquist for even `D`) and 2 elsewhere; the gradient
    /// `(2/D²)·filter(r)` is the inverse transform of `H·R·2/D⁴`, written to `gimg` (rows of
    /// `stride`). Exact for a filter with `H(−k) = H(k)`, which every CTF is. `sx.tr` is
    /// overwritten.
    pub fn loss_and_adjoint(&self, sx: &mut FftScratch, sy: &FftScratch, ctf: &[f32], gimg: &mut [f32], stride: usize) -> f64 {
        let (d, w) = (self.d, self.w);
        debug_assert_eq!(ctf.len(), d * w);
        let d2 = (d * d) as f64;
        let gscale = (2.0 / (d2 * d2)) as f32;
        let mut sum = 0.0f64;
        for c in 0..w {
            let mult = if c == 0 || (d % 2 == 0 && c == w - 1) { 1.0 } else { 2.0 };
            let col = &mut sx.tr[c * d..(c + 1) * d];
            let ycol = &sy.tr[c * d..(c + 1) * d];
            let mut cs = 0.0f64;
            for (r, (v, y)) in col.iter_mut().zip(ycol).enumerate() {
                let h = ctf[r * w + c];
                let res = *v * h - *y;
                cs += (res.re as f64) * (res.re as f64) + (res.im as f64) * (res.im as f64);
                *v = res * (h * gscale);
            }
            sum += mult * cs;
        }
        self.image_from_spectrum(sx, gimg, stride);
        sum / (d2 * d2)
    }
}

/// `dst[c][r] = src[r][c]` for a `rows×cols` source, in cache-friendly blocks.
fn transpose(src: &[Complex32], dst: &mut [Complex32], rows: usize, cols: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(f: &CtfFft, x: &[f32], ctf: &[f32], d: usize, stride: usize) -> Vec<f32> {
        let mut s = f.scratch();
        let mut out = vec![0.0f32; d * stride];
        f.apply(x, stride, ctf, &mut out, stride, &mut s);
        out
    }

    #[test]
    fn filter_is_self_adjoint() {
        // ⟨F x, y⟩ = ⟨x, F y⟩ for a random, non-symmetric half-plane filter (so the DC and
        // Nyquist columns, and the Nyquist row, carry values whose mirrors differ), for even
        // and odd D and a padded stride: within 1e-5 of |F x|·|y|.
        for &d in &[16usize, 17, 32, 33] {
            let stride = d + 5;
            let f = CtfFft::new(d);
            let mut rng = crate::rng::Rng::new(d as u64);
            let ctf: Vec<f32> = (0..d * (d / 2 + 1)).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
            let mut x = vec![0.0f32; d * stride];
            let mut y = vec![0.0f32; d * stride];
            for r in 0..d {
                for c in 0..d {
                    x[r * stride + c] = rng.normal() as f32;
                    y[r * stride + c] = rng.normal() as f32;
                }
            }
            let fx = filter(&f, &x, &ctf, d, stride);
            let fy = filter(&f, &y, &ctf, d, stride);
            let dot = |a: &[f32], b: &[f32]| -> f64 {
                (0..d).flat_map(|r| (0..d).map(move |c| r * stride + c)).map(|i| a[i] as f64 * b[i] as f64).sum()
            };
            let norm = |a: &[f32]| dot(a, a).sqrt();
            let (l, r) = (dot(&fx, &y), dot(&x, &fy));
            assert!((l - r).abs() < 1e-5 * norm(&fx) * norm(&y), "D = {d}: {l} vs {r}");
            // Not trivially zero: the filter does something.
            assert!(norm(&fx) > 0.1 * norm(&x));
        }
    }

    #[test]
    fn flat_filter_is_the_identity() {
        for &d in &[8usize, 9] {
            let f = CtfFft::new(d);
            let mut rng = crate::rng::Rng::new(3);
            let x: Vec<f32> = (0..d * d).map(|_| rng.normal() as f32).collect();
            let y = filter(&f, &x, &vec![1.0; d * (d / 2 + 1)], d, d);
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < 1e-5, "D = {d}: {a} vs {b}");
            }
        }
    }
    #[test]
    fn spectral_loss_matches_the_real_space_recipe() {
        // loss = (1/D²)·Σ (filter(x) − y)² and gradient (2/D²)·filter(filter(x) − y), computed
        // the long way with `apply`, against `loss_and_adjoint`, for even and odd D, a padded
        // gradient stride and a symmetric (CTF-like) filter.
        for &d in &[16usize, 17, 64] {
            let w = d / 2 + 1;
            let stride = d + 3;
            let f = CtfFft::new(d);
            let mut rng = crate::rng::Rng::new(40 + d as u64);
            // H(r, c) = g(min(r, D − r), c): symmetric under k → −k.
            let g: Vec<f32> = (0..(d / 2 + 1) * w).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
            let ctf: Vec<f32> = (0..d * w).map(|i| g[(i / w).min(d - i / w) * w + i % w]).collect();
            let x: Vec<f32> = (0..d * d).map(|_| rng.normal() as f32).collect();
            let y: Vec<f32> = (0..d * d).map(|_| rng.normal() as f32).collect();
            let fx = filter(&f, &x, &ctf, d, d);
            let r: Vec<f32> = fx.iter().zip(&y).map(|(a, b)| a - b).collect();
            let loss_ref = r.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / (d * d) as f64;
            let fr = filter(&f, &r, &ctf, d, d);
            let (mut sx, mut sy) = (f.scratch(), f.scratch());
            f.spectrum(&x, d, &mut sx);
            f.spectrum(&y, d, &mut sy);
            let mut gimg = vec![7.0f32; d * stride];
            let loss = f.loss_and_adjoint(&mut sx, &sy, &ctf, &mut gimg, stride);
            assert!((loss - loss_ref).abs() < 1e-5 * loss_ref, "D = {d}: {loss} vs {loss_ref}");
            let scale = 2.0 / (d * d) as f32;
            let gmax = fr.iter().fold(0.0f32, |m, v| m.max(v.abs())) * scale;
            for row in 0..d {
                for col in 0..d {
                    let (a, b) = (gimg[row * stride + col], fr[row * d + col] * scale);
                    assert!((a - b).abs() < 1e-5 * gmax, "D = {d} ({row}, {col}): {a} vs {b}");
                }
                // The padding is left alone.
                assert!(gimg[row * stride + d..(row + 1) * stride].iter().all(|&v| v == 7.0));
            }
        }
    }
}
