//! The CTF as a Fourier filter on centred real images, by the crate's centred 2D transform
//! ([`CentredFft2`], plans made once); one call filters one image inside one thread's
//! [`Fft2Scratch`] and allocates nothing.
//!
//! `filter(x) = fftshift(irfft2(H · rfft2(ifftshift(x)))) / D²`, with `H` the CTF in the
//! crate's half-plane layout (`D` rows in FFT order, `D/2+1` columns, index `r·(D/2+1)+c`).
//! The rows of the half spectrum whose own mirror image lies in the half plane (the DC column
//! and, for even `D`, the Nyquist column) keep only their real part before the inverse row
//! transform: this is exactly `real(IFFT(…))` of the full complex recipe, and it makes the
//! operator symmetric (the filter actually applied is `½(H(k) + H(−k))` on those columns), so
//! it is its own adjoint. The spectrum is filtered column by column, as the transform leaves it.

use crate::fourier::{CentredFft2, Fft2Scratch};

/// Filter `src` (rows of `src_stride`, the first `D` values of each used) by `ctf` into
/// `dst` (rows of `dst_stride`). Both images are centred.
pub(crate) fn apply(
    fft: &CentredFft2,
    src: &[f32],
    src_stride: usize,
    ctf: &[f32],
    dst: &mut [f32],
    dst_stride: usize,
    s: &mut Fft2Scratch,
) {
    let d = fft.d();
    let w = d / 2 + 1;
    debug_assert_eq!(ctf.len(), d * w);
    fft.forward(src, src_stride, s);
    let norm = 1.0 / (d * d) as f32;
    for (c, col) in s.columns_mut().chunks_exact_mut(d).enumerate() {
        for (r, v) in col.iter_mut().enumerate() {
            *v *= ctf[r * w + c] * norm;
        }
    }
    fft.inverse_unnormalised(s, dst, dst_stride);
}

/// The MSE loss and its image-space gradient from two spectra, with three transforms per
/// image instead of four: `sx` holds the spectrum `X` of the projection and `sy` the spectrum
/// `Y` of the observed image (both from [`CentredFft2::forward`]). With the residual
/// `R = H·X − Y` (the spectrum of `filter(x) − y`), Parseval gives the loss
/// `(1/D²)·Σ_p r_p² = (1/D⁴)·Σ_k m_k·|R_k|²` over the half plane, where `m_k` is 1 on the
/// self-mirrored columns (DC, and Nyquist for even `D`) and 2 elsewhere; the gradient
/// `(2/D²)·filter(r)` is the inverse transform of `H·R·2/D⁴`, written to `gimg` (rows of
/// `stride`). Exact for a filter with `H(−k) = H(k)`, which every CTF is. The spectrum in
/// `sx` is overwritten.
///
/// With a non-empty `dctf` (a derivative `H' = ∂H/∂t` in the same layout, e.g. the CTF's in a
/// defocus offset), also returns in [`CtfTerms`] `∂loss/∂t = (2/D⁴)·Σ_k m_k·Re(conj(R_k)·X_k)·H'_k`,
/// the exact derivative of the loss above when `H` moves along `H'`, and the Gauss–Newton
/// curvatures of the loss in `t` and in a shift of the prediction (see [`CtfTerms`]);
/// otherwise those are 0 and the loop is the plain one, so asking for nothing costs nothing.
pub(crate) fn loss_and_adjoint(
    fft: &CentredFft2,
    sx: &mut Fft2Scratch,
    sy: &Fft2Scratch,
    ctf: &[f32],
    dctf: &[f32],
    gimg: &mut [f32],
    stride: usize,
) -> (f64, CtfTerms) {
    let d = fft.d();
    let w = d / 2 + 1;
    debug_assert_eq!(ctf.len(), d * w);
    debug_assert!(dctf.is_empty() || dctf.len() == d * w);
    let d2 = (d * d) as f64;
    let gscale = (2.0 / (d2 * d2)) as f32;
    let mut sum = 0.0f64;
    let mut dsum = 0.0f64;
    let (mut zz, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
    for (c, (col, ycol)) in sx.columns_mut().chunks_exact_mut(d).zip(sy.columns().chunks_exact(d)).enumerate() {
        let mult = if c == 0 || (d.is_multiple_of(2) && c == w - 1) { 1.0 } else { 2.0 };
        let mut cs = 0.0f64;
        if dctf.is_empty() {
            for (r, (v, y)) in col.iter_mut().zip(ycol).enumerate() {
                let h = ctf[r * w + c];
                let res = *v * h - *y;
                cs += (res.re as f64) * (res.re as f64) + (res.im as f64) * (res.im as f64);
                *v = res * (h * gscale);
            }
        } else {
            let (mut ds, mut cz, mut cx, mut cy) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for (r, (v, y)) in col.iter_mut().zip(ycol).enumerate() {
                let h = ctf[r * w + c];
                let res = *v * h - *y;
                cs += (res.re as f64) * (res.re as f64) + (res.im as f64) * (res.im as f64);
                let x2 = (v.re as f64) * (v.re as f64) + (v.im as f64) * (v.im as f64);
                let dh = dctf[r * w + c] as f64;
                ds += ((res.re as f64) * (v.re as f64) + (res.im as f64) * (v.im as f64)) * dh;
                cz += x2 * dh * dh;
                let ky = if r <= d / 2 { r as f64 } else { r as f64 - d as f64 };
                let hx2 = x2 * (h as f64) * (h as f64);
                cx += hx2;
                cy += hx2 * ky * ky;
                *v = res * (h * gscale);
            }
            dsum += mult * ds;
            zz += mult * cz;
            xx += mult * cx * (c * c) as f64;
            yy += mult * cy;
        }
        sum += mult * cs;
    }
    fft.inverse_unnormalised(sx, gimg, stride);
    let g = 2.0 / (d2 * d2);
    (sum / (d2 * d2), CtfTerms { dloss: g * dsum, curv: g * zz, curv_shift_index: [g * xx, g * yy] })
}

/// What [`loss_and_adjoint`] measures besides the loss when given a filter direction `H'`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct CtfTerms {
    /// `∂loss/∂t`.
    pub dloss: f64,
    /// The Gauss–Newton curvature `(2/D⁴)·Σ_k m_k·|H'_k·X_k|²` of the loss in `t`.
    pub curv: f64,
    /// The Gauss–Newton curvatures `(2/D⁴)·Σ_k m_k·k_a²·|H_k·X_k|²` (`k_a` the frequency index
    /// along x and along y): times `(2π/(D·apix))²` they are the loss's curvatures in a shift of
    /// the prediction by one Å along that axis.
    pub curv_shift_index: [f64; 2],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(f: &CentredFft2, x: &[f32], ctf: &[f32], d: usize, stride: usize) -> Vec<f32> {
        let mut s = f.scratch();
        let mut out = vec![0.0f32; d * stride];
        apply(f, x, stride, ctf, &mut out, stride, &mut s);
        out
    }

    #[test]
    fn filter_is_self_adjoint() {
        // ⟨F x, y⟩ = ⟨x, F y⟩ for a random, non-symmetric half-plane filter (so the DC and
        // Nyquist columns, and the Nyquist row, carry values whose mirrors differ), for even
        // and odd D and a padded stride: within 1e-5 of |F x|·|y|.
        for &d in &[16usize, 17, 32, 33] {
            let stride = d + 5;
            let f = CentredFft2::new(d);
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
            let f = CentredFft2::new(d);
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
            let f = CentredFft2::new(d);
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
            f.forward(&x, d, &mut sx);
            f.forward(&y, d, &mut sy);
            let mut gimg = vec![7.0f32; d * stride];
            let (loss, terms) = loss_and_adjoint(&f, &mut sx, &sy, &ctf, &[], &mut gimg, stride);
            assert_eq!(terms, CtfTerms::default());
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

    #[test]
    fn derivative_along_a_filter_direction_is_exact() {
        // The loss is quadratic in t for the filter H + t·H', so its central difference with
        // a large step (0.25) is exact up to rounding: the returned derivative must match it
        // within 1e-4 of the terms' size, for even and odd D, symmetric H and H'. Asking for
        // the derivative changes neither the loss nor the gradient image (bitwise).
        for &d in &[16usize, 17, 40] {
            let w = d / 2 + 1;
            let f = CentredFft2::new(d);
            let mut rng = crate::rng::Rng::new(70 + d as u64);
            let sym = |rng: &mut crate::rng::Rng| -> Vec<f32> {
                let g: Vec<f32> = (0..(d / 2 + 1) * w).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
                (0..d * w).map(|i| g[(i / w).min(d - i / w) * w + i % w]).collect()
            };
            let (ctf, dctf) = (sym(&mut rng), sym(&mut rng));
            let x: Vec<f32> = (0..d * d).map(|_| rng.normal() as f32).collect();
            let y: Vec<f32> = (0..d * d).map(|_| rng.normal() as f32).collect();
            let run = |h: &[f32], dh: &[f32]| {
                let (mut sx, mut sy) = (f.scratch(), f.scratch());
                f.forward(&x, d, &mut sx);
                f.forward(&y, d, &mut sy);
                let mut gimg = vec![0.0f32; d * d];
                let (l, terms) = loss_and_adjoint(&f, &mut sx, &sy, h, dh, &mut gimg, d);
                (l, terms.dloss, gimg)
            };
            let (l0, dl, g0) = run(&ctf, &dctf);
            let (l1, dl1, g1) = run(&ctf, &[]);
            assert_eq!((l0, g0), (l1, g1), "D = {d}: the derivative changed the loss or gradient");
            assert_eq!(dl1, 0.0);
            let t = 0.25f32;
            let moved = |s: f32| -> Vec<f32> { ctf.iter().zip(&dctf).map(|(h, g)| h + s * t * g).collect() };
            let (lp, lm) = (run(&moved(1.0), &[]).0, run(&moved(-1.0), &[]).0);
            let fd = (lp - lm) / (2.0 * t as f64);
            assert!((dl - fd).abs() < 1e-4 * (lp.abs() + lm.abs()) / t as f64, "D = {d}: {dl} vs {fd}");
            assert!(dl.abs() > 1e-3 * l0, "D = {d}: degenerate case");
        }
    }
}
