//! The contrast transfer function, by RELION's formula and sign.
//!
//! ```text
//! V (volts) = 1000·kV;  Cs (Å) = 1e7·cs_mm
//! λ = 12.2643247 / sqrt(V·(1 + 0.978466e-6·V))                        (Å)
//! θ = atan2(ky, kx);  Δf(θ) = ΔfU·cos²(θ − φA) + ΔfV·sin²(θ − φA)      (φA = defocus angle)
//! γ(k) = −π·λ·Δf(θ)·s² + (π/2)·Cs·λ³·s⁴ − φps − atan(Q0 / sqrt(1 − Q0²))
//! CTF(k) = −sin γ(k) · exp(−B·s²/4) · scale                            (CTF(0) = +Q0)
//! ```
//!
//! `k = (kx, ky)` is in 1/Å and `s = |k|`; defocus is in Å (positive = underfocus), `φps` is the
//! phase shift, `Q0` the amplitude contrast, `B` the B-factor in Å². With this sign, particles
//! are expected "white" (protein brighter than solvent).
//!
//! # Grids
//!
//! * [`CtfParams::fill_centered`]: a `D×D` array, row `i` ↔ `ky = (i − D/2)/(D·apix)`, column `j`
//!   ↔ `kx = (j − D/2)/(D·apix)` ([`centred_index`]); DC at `[D/2][D/2]`.
//! * [`CtfParams::fill_rfft`] / [`CtfGrid::fill_rfft`]: the **half-plane layout** of a real FFT
//!   of an `ifftshift`ed image: `D` rows in FFT order (row `r` ↔ `ky` index
//!   [`freq_index`]`(r, D)`: `r` for `r < ⌈D/2⌉`, `r − D` otherwise, so the Nyquist row `D/2`
//!   of an even box is `−D/2`) and `D/2 + 1` columns (column `c` ↔ `kx` index `c`, so the
//!   Nyquist column of an even box is `+D/2`); element `r·(D/2+1) + c`.
//!
//! # Derivative in defocus
//!
//! For refinement, a defocus offset `Δz` (Å) added to both `ΔfU` and `ΔfV` changes `γ` by
//! `−π·λ·Δz·s²`, so
//!
//! ```text
//! ∂CTF/∂Δz = π·λ·s² · cos γ(k) · exp(−B·s²/4) · scale
//! ```
//!
//! [`CtfParams::eval_ddefocus`] evaluates it from the formula at one frequency (the slow
//! reference) and [`CtfGrid::fill_rfft_with_ddefocus`] fills it beside the CTF in the
//! half-plane layout.
//!
//! γ reaches hundreds of radians at high frequency, so it is always evaluated in f64; only
//! the final value is stored as f32. A [`CtfGrid`] holds the per-grid constants (`s²`,
//! `cos 2θ`, `sin 2θ`) so that filling a particle's CTF allocates nothing.

use crate::fourier::{centred_index, freq_index};

/// CTF parameters of one particle (file units: kV, mm, Å, degrees, Å²).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CtfParams {
    pub voltage_kv: f64,
    pub cs_mm: f64,
    /// Amplitude contrast `Q0`, in `[0, 1)`.
    pub amp_contrast: f64,
    pub defocus_u_a: f64,
    pub defocus_v_a: f64,
    pub defocus_angle_deg: f64,
    pub phase_shift_deg: f64,
    pub bfactor_a2: f64,
    pub scale: f64,
}

/// An impossible CTF parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("impossible CTF parameter: {0}")]
pub struct CtfError(pub String);

/// RELION's electron wavelength in Å for an acceleration voltage in kV.
pub fn wavelength_a(voltage_kv: f64) -> f64 {
    let v = voltage_kv * 1e3;
    12.2643247 / (v * (1.0 + 0.978466e-6 * v)).sqrt()
}

/// Per-particle constants of the CTF, for fast evaluation.
#[derive(Clone, Copy, Debug)]
struct Coeffs {
    /// γ = k1·Δf(θ)·s² + k2·s⁴ + k3, with Δf = dmean + ddiff·cos(2(θ − φA)).
    k1: f64,
    k2: f64,
    k3: f64,
    dmean: f64,
    ddiff: f64,
    cos2a: f64,
    sin2a: f64,
    b4: f64,
    scale: f64,
}

impl CtfParams {
    /// The CTF with no aberration: 300 kV, Cs 0, Q0 0.1, no defocus. Mostly for tests.
    pub fn flat() -> Self {
        CtfParams {
            voltage_kv: 300.0,
            cs_mm: 0.0,
            amp_contrast: 0.1,
            defocus_u_a: 0.0,
            defocus_v_a: 0.0,
            defocus_angle_deg: 0.0,
            phase_shift_deg: 0.0,
            bfactor_a2: 0.0,
            scale: 1.0,
        }
    }

    /// Check that every value is finite and physically possible: voltage > 0, `Q0` in
    /// `[0, 1)`, scale ≠ 0. Negative defocus (overfocus) and negative Cs (corrected optics)
    /// are allowed.
    pub fn validate(&self) -> Result<(), CtfError> {
        let fields = [
            ("voltage (kV)", self.voltage_kv),
            ("spherical aberration (mm)", self.cs_mm),
            ("amplitude contrast", self.amp_contrast),
            ("defocus U (Å)", self.defocus_u_a),
            ("defocus V (Å)", self.defocus_v_a),
            ("defocus angle (°)", self.defocus_angle_deg),
            ("phase shift (°)", self.phase_shift_deg),
            ("B-factor (Å²)", self.bfactor_a2),
            ("scale", self.scale),
        ];
        for (name, v) in fields {
            if !v.is_finite() {
                return Err(CtfError(format!("{name} is {v}")));
            }
        }
        if self.voltage_kv <= 0.0 {
            return Err(CtfError(format!("voltage is {} kV; expected a positive value", self.voltage_kv)));
        }
        if !(0.0..1.0).contains(&self.amp_contrast) {
            return Err(CtfError(format!("amplitude contrast is {}; expected a value in [0, 1)", self.amp_contrast)));
        }
        if self.scale == 0.0 {
            return Err(CtfError("scale factor is 0".to_string()));
        }
        Ok(())
    }

    fn coeffs(&self) -> Coeffs {
        let lambda = wavelength_a(self.voltage_kv);
        let cs_a = self.cs_mm * 1e7;
        let q0 = self.amp_contrast;
        let a = self.defocus_angle_deg.to_radians();
        Coeffs {
            k1: -std::f64::consts::PI * lambda,
            k2: std::f64::consts::FRAC_PI_2 * cs_a * lambda.powi(3),
            k3: -self.phase_shift_deg.to_radians() - (q0 / (1.0 - q0 * q0).sqrt()).atan(),
            dmean: 0.5 * (self.defocus_u_a + self.defocus_v_a),
            ddiff: 0.5 * (self.defocus_u_a - self.defocus_v_a),
            cos2a: (2.0 * a).cos(),
            sin2a: (2.0 * a).sin(),
            b4: self.bfactor_a2 / 4.0,
            scale: self.scale,
        }
    }

    /// The CTF at spatial frequency `(kx, ky)` in 1/Å.
    pub fn eval(&self, kx: f64, ky: f64) -> f64 {
        let s2 = kx * kx + ky * ky;
        let (c2t, s2t) = cos_sin_2theta(kx, ky);
        eval_coeffs(&self.coeffs(), s2, c2t, s2t)
    }

    /// `∂CTF/∂Δz` at spatial frequency `(kx, ky)` in 1/Å for a defocus offset `Δz` in Å added
    /// to both defocus U and V (see the module docs): evaluated term by term from the formula,
    /// with `θ = atan2(ky, kx)`, as the slow reference of
    /// [`CtfGrid::fill_rfft_with_ddefocus`].
    pub fn eval_ddefocus(&self, kx: f64, ky: f64) -> f64 {
        let pi = std::f64::consts::PI;
        let lambda = wavelength_a(self.voltage_kv);
        let cs_a = self.cs_mm * 1e7;
        let s2 = kx * kx + ky * ky;
        let theta = ky.atan2(kx);
        let a = theta - self.defocus_angle_deg.to_radians();
        let df = self.defocus_u_a * a.cos().powi(2) + self.defocus_v_a * a.sin().powi(2);
        let q0 = self.amp_contrast;
        let gamma = -pi * lambda * df * s2 + 0.5 * pi * cs_a * lambda.powi(3) * s2 * s2
            - self.phase_shift_deg.to_radians()
            - (q0 / (1.0 - q0 * q0).sqrt()).atan();
        pi * lambda * s2 * gamma.cos() * (-self.bfactor_a2 * s2 / 4.0).exp() * self.scale
    }

    /// Fill a centred `D×D` array (see the module docs).
    pub fn fill_centered(&self, d: usize, apix: f64, out: &mut [f32]) {
        assert_eq!(out.len(), d * d, "fill_centered: buffer of {} for D = {d}", out.len());
        let c = self.coeffs();
        let inv = 1.0 / (d as f64 * apix);
        for i in 0..d {
            let ky = centred_index(i, d) as f64 * inv;
            for j in 0..d {
                let kx = centred_index(j, d) as f64 * inv;
                let (c2t, s2t) = cos_sin_2theta(kx, ky);
                out[i * d + j] = eval_coeffs(&c, kx * kx + ky * ky, c2t, s2t) as f32;
            }
        }
    }

    /// Fill the half-plane layout (see the module docs). Builds the grid constants on each
    /// call; use a [`CtfGrid`] to fill many particles without recomputing them.
    pub fn fill_rfft(&self, d: usize, apix: f64, out: &mut [f32]) {
        CtfGrid::new(d, apix).fill_rfft(self, out);
    }
}

#[inline]
fn cos_sin_2theta(kx: f64, ky: f64) -> (f64, f64) {
    let s2 = kx * kx + ky * ky;
    if s2 > 0.0 {
        ((kx * kx - ky * ky) / s2, 2.0 * kx * ky / s2)
    } else {
        (1.0, 0.0)
    }
}

#[inline]
fn eval_coeffs(c: &Coeffs, s2: f64, cos2t: f64, sin2t: f64) -> f64 {
    // cos(2(θ − φA)) = cos2θ·cos2φA + sin2θ·sin2φA.
    let df = c.dmean + c.ddiff * (cos2t * c.cos2a + sin2t * c.sin2a);
    let gamma = c.k1 * df * s2 + c.k2 * s2 * s2 + c.k3;
    let env = if c.b4 != 0.0 { (-c.b4 * s2).exp() } else { 1.0 };
    -gamma.sin() * env * c.scale
}

/// Per-grid constants for the half-plane layout of one box size and pixel size.
#[derive(Clone, Debug)]
pub struct CtfGrid {
    d: usize,
    apix: f64,
    s2: Vec<f64>,
    cos2t: Vec<f64>,
    sin2t: Vec<f64>,
}

impl CtfGrid {
    /// Constants for a `D×D` image with pixel size `apix` Å.
    pub fn new(d: usize, apix: f64) -> Self {
        let w = d / 2 + 1;
        let inv = 1.0 / (d as f64 * apix);
        let mut s2 = Vec::with_capacity(d * w);
        let mut cos2t = Vec::with_capacity(d * w);
        let mut sin2t = Vec::with_capacity(d * w);
        for r in 0..d {
            let ky = freq_index(r, d) as f64 * inv;
            for c in 0..w {
                let kx = c as f64 * inv;
                let (a, b) = cos_sin_2theta(kx, ky);
                s2.push(kx * kx + ky * ky);
                cos2t.push(a);
                sin2t.push(b);
            }
        }
        CtfGrid { d, apix, s2, cos2t, sin2t }
    }

    pub fn d(&self) -> usize {
        self.d
    }
    pub fn apix(&self) -> f64 {
        self.apix
    }
    /// Number of values in the half-plane layout: `D·(D/2+1)`.
    pub fn len(&self) -> usize {
        self.s2.len()
    }
    pub fn is_empty(&self) -> bool {
        self.s2.is_empty()
    }

    /// Fill the half-plane CTF of one particle without allocating.
    pub fn fill_rfft(&self, p: &CtfParams, out: &mut [f32]) {
        assert_eq!(out.len(), self.s2.len(), "fill_rfft: buffer of {} for D = {}", out.len(), self.d);
        let c = p.coeffs();
        for (k, o) in out.iter_mut().enumerate() {
            *o = eval_coeffs(&c, self.s2[k], self.cos2t[k], self.sin2t[k]) as f32;
        }
    }

    /// Fill the half-plane CTF of one particle into `out` (the same values as
    /// [`CtfGrid::fill_rfft`]) and its derivative `∂CTF/∂Δz` for a defocus offset `Δz` in Å
    /// added to both defocus U and V (see the module docs) into `ddefocus`, without allocating.
    pub fn fill_rfft_with_ddefocus(&self, p: &CtfParams, out: &mut [f32], ddefocus: &mut [f32]) {
        assert_eq!(out.len(), self.s2.len(), "fill_rfft_with_ddefocus: buffer of {} for D = {}", out.len(), self.d);
        assert_eq!(ddefocus.len(), self.s2.len(), "fill_rfft_with_ddefocus: buffer of {} for D = {}", ddefocus.len(), self.d);
        let c = p.coeffs();
        for (k, (o, g)) in out.iter_mut().zip(ddefocus.iter_mut()).enumerate() {
            let (h, dh) = eval_coeffs_and_ddefocus(&c, self.s2[k], self.cos2t[k], self.sin2t[k]);
            *o = h as f32;
            *g = dh as f32;
        }
    }
}

/// The CTF (as [`eval_coeffs`], bitwise) and its derivative in a defocus offset added to U
/// and V.
#[inline]
fn eval_coeffs_and_ddefocus(c: &Coeffs, s2: f64, cos2t: f64, sin2t: f64) -> (f64, f64) {
    let df = c.dmean + c.ddiff * (cos2t * c.cos2a + sin2t * c.sin2a);
    let gamma = c.k1 * df * s2 + c.k2 * s2 * s2 + c.k3;
    let env = if c.b4 != 0.0 { (-c.b4 * s2).exp() } else { 1.0 };
    // ∂γ/∂Δz = k1·s², so ∂(−sin γ)/∂Δz = −cos γ·k1·s².
    (-gamma.sin() * env * c.scale, -gamma.cos() * c.k1 * s2 * env * c.scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fourier::centred_position;

    #[test]
    fn dc_is_plus_q0_and_phase_plate() {
        let mut p = CtfParams { defocus_u_a: 15000.0, defocus_v_a: 14000.0, cs_mm: 2.7, ..CtfParams::flat() };
        assert!((p.eval(0.0, 0.0) - 0.1).abs() < 1e-12);
        p.phase_shift_deg = 90.0;
        assert!((p.eval(0.0, 0.0) - (0.1f64).asin().cos()).abs() < 1e-12);
    }

    #[test]
    fn rfft_layout_matches_centered() {
        let p = CtfParams {
            defocus_u_a: 12000.0,
            defocus_v_a: 9000.0,
            defocus_angle_deg: 33.0,
            cs_mm: 2.0,
            bfactor_a2: 50.0,
            ..CtfParams::flat()
        };
        // Odd and even boxes: every half-plane value is the centred value at the same
        // frequency (the Nyquist column of an even box, +D/2, is not on the centred grid).
        for d in [15usize, 16] {
            let mut full = vec![0.0; d * d];
            p.fill_centered(d, 1.3, &mut full);
            let mut half = vec![0.0; d * (d / 2 + 1)];
            p.fill_rfft(d, 1.3, &mut half);
            for r in 0..d {
                let i = centred_position(freq_index(r, d), d);
                for c in 0..d.div_ceil(2) {
                    let j = centred_position(c as i64, d);
                    assert_eq!(half[r * (d / 2 + 1) + c], full[i * d + j], "D = {d}, row {r}, column {c}");
                }
            }
        }
    }

    #[test]
    fn defocus_derivative_matches_the_formula_and_central_differences() {
        // The half-plane fill against the slow reference (f32 rounding of the values), with
        // the CTF bitwise that of `fill_rfft`; the reference against central differences of
        // `eval` in ΔfU and ΔfV together (step 0.05 Å, f64), within 1e-7 of the largest value
        // of π·λ·s² over the grid.
        let p = CtfParams {
            defocus_u_a: 12000.0,
            defocus_v_a: 9000.0,
            defocus_angle_deg: 33.0,
            cs_mm: 2.7,
            bfactor_a2: 40.0,
            phase_shift_deg: 20.0,
            scale: 0.8,
            ..CtfParams::flat()
        };
        for (d, apix) in [(15usize, 1.3), (16, 1.1)] {
            let grid = CtfGrid::new(d, apix);
            let (mut h, mut dh, mut plain) = (vec![0.0f32; grid.len()], vec![0.0f32; grid.len()], vec![0.0f32; grid.len()]);
            grid.fill_rfft_with_ddefocus(&p, &mut h, &mut dh);
            grid.fill_rfft(&p, &mut plain);
            assert_eq!(h, plain, "D = {d}: the CTF itself");
            let inv = 1.0 / (d as f64 * apix);
            let peak = std::f64::consts::PI * wavelength_a(p.voltage_kv) * 0.5 / (apix * apix);
            let w = d / 2 + 1;
            for r in 0..d {
                for c in 0..w {
                    let (kx, ky) = (c as f64 * inv, freq_index(r, d) as f64 * inv);
                    let want = p.eval_ddefocus(kx, ky);
                    let got = dh[r * w + c] as f64;
                    assert!((got - want).abs() <= 1e-6 * peak, "D = {d} ({r}, {c}): {got} vs {want}");
                    let step = 0.05;
                    let at = |dz: f64| CtfParams { defocus_u_a: p.defocus_u_a + dz, defocus_v_a: p.defocus_v_a + dz, ..p }.eval(kx, ky);
                    let fd = (at(step) - at(-step)) / (2.0 * step);
                    assert!((fd - want).abs() <= 1e-7 * peak, "D = {d} ({r}, {c}): {fd} vs {want}");
                }
            }
            // Not trivially zero.
            assert!(dh.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64)) > 0.01 * peak);
        }
    }

    #[test]
    fn validation() {
        assert!(CtfParams::flat().validate().is_ok());
        assert!(CtfParams { voltage_kv: 0.0, ..CtfParams::flat() }.validate().is_err());
        assert!(CtfParams { amp_contrast: 1.0, ..CtfParams::flat() }.validate().is_err());
        assert!(CtfParams { defocus_u_a: f64::NAN, ..CtfParams::flat() }.validate().unwrap_err().0.contains("defocus U"));
    }
}
