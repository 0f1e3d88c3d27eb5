//! cryoDRGN pickles: poses `(A, t)` with `t·D = +o` in pixels, and CTF rows
//! `[D, apix, ΔfU, ΔfV, angle°, kV, Cs mm, Q0, phase°]`, completing a bare stack or replacing
//! the metadata's values.

use super::settle::OriginUnit;
use super::{differ, DatasetError, Particle, ParticleSet, Result};
use cryosplat_core::ctf::CtfParams;
use cryosplat_core::pose::{Mat3, Pose};
use cryosplat_formats::pickle;
use std::path::Path;

/// An error unless `m` is a rotation matrix (orthonormal, determinant +1) to float32 precision.
fn check_rotation(m: &Mat3) -> std::result::Result<(), String> {
    let mut worst: f64 = 0.0;
    for i in 0..3 {
        for j in 0..3 {
            let dot: f64 = (0..3).map(|k| m[i][k] * m[j][k]).sum();
            worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let ok = worst < 1e-3 && det > 0.0;
    if !ok {
        return Err(format!("is not a rotation matrix (orthonormality error {worst:.2e}, determinant {det:.4})"));
    }
    Ok(())
}

/// An error unless the pickle `p` has `n` rows (`what`), one per particle of `set`.
fn same_count(set: &ParticleSet, p: &Path, n: usize, what: &str) -> Result<()> {
    if n == set.particles.len() {
        return Ok(());
    }
    let msg = format!(
        "{n} {what} for {} particles ({}); the files do not describe the same particles",
        set.particles.len(),
        set.source.display()
    );
    Err(DatasetError::invalid(p, msg))
}

/// Replace the poses with a cryoDRGN pose pickle: `(rot[N,3,3], trans[N,2])` or
/// `rot[N,3,3]` alone. Translations are converted once the box is known.
pub(super) fn replace_poses(set: &mut ParticleSet, p: &Path) -> Result<()> {
    let (rots, trans) = pickle::read_poses(p)?;
    same_count(set, p, rots.len(), "poses")?;
    for (i, m) in rots.iter().enumerate() {
        check_rotation(m).map_err(|e| DatasetError::invalid(p, format!("pose {i} (0-based) {e}")))?;
    }
    if set.has_poses {
        set.warn(format!("the poses of {} replace those of the metadata", p.display()));
    }
    for (part, m) in set.particles.iter_mut().zip(&rots) {
        part.pose = Pose { rot: *m, origin_a: [0.0, 0.0] };
    }
    set.loading.origin_unit = OriginUnit::Pixel;
    if let Some(t) = trans {
        if t.iter().flatten().any(|v| !v.is_finite()) {
            return Err(DatasetError::invalid(p, "the translations hold NaN or infinite values"));
        }
        set.loading.pickle_trans = Some(t);
    }
    set.has_poses = true;
    Ok(())
}

/// Replace the CTF with a cryoDRGN CTF pickle: float (N, 9):
/// `D, apix, ΔfU, ΔfV, angle (°), kV, Cs (mm), Q0, phase (°)`.
pub(super) fn replace_ctf(set: &mut ParticleSet, p: &Path) -> Result<()> {
    let rows = pickle::read_ctf(p)?;
    same_count(set, p, rows.len(), "CTF rows")?;
    if set.has_ctf {
        set.warn(format!("the CTF parameters of {} replace those of the metadata", p.display()));
    }
    let (d, apix) = (rows[0][0], rows[0][1]);
    for (i, (part, r)) in set.particles.iter_mut().zip(&rows).enumerate() {
        if differ(r[0], d) || differ(r[1], apix) {
            return Err(DatasetError::invalid(
                p,
                format!("row {i} (0-based) has D {} and pixel size {}, row 0 has {d} and {apix}", r[0], r[1]),
            ));
        }
        part.ctf = CtfParams {
            voltage_kv: r[5],
            cs_mm: r[6],
            amp_contrast: r[7],
            defocus_u_a: r[2],
            defocus_v_a: r[3],
            defocus_angle_deg: r[4],
            phase_shift_deg: r[8],
            bfactor_a2: 0.0,
            scale: 1.0,
        };
        part.ctf.validate().map_err(|e| DatasetError::invalid(p, format!("row {i} (0-based): {e}")))?;
    }
    if !(d >= 1.0 && apix > 0.0) {
        return Err(DatasetError::invalid(p, format!("the box {d} and pixel size {apix} Å of row 0 are not positive")));
    }
    set.loading.pickle_d_apix = Some((d, apix));
    set.has_ctf = true;
    Ok(())
}

impl ParticleSet {
    /// Write the poses of `particles` (particles of this set, in any order, for example with
    /// refined poses and origins) as a cryoDRGN pose pickle at `path`, atomically: one row per
    /// particle in the order given, `(rot[N,3,3], trans[N,2])` with `trans = origin / (D·apix)`.
    pub fn write_pose_pickle(&self, path: &Path, particles: &[Particle]) -> Result<()> {
        let d_a = self.box_px as f64 * self.apix;
        if d_a <= 0.0 {
            return Err(DatasetError::invalid(path, "the box and pixel size are not known yet (the stacks were not opened)"));
        }
        let rots: Vec<Mat3> = particles.iter().map(|p| p.pose.rot).collect();
        let trans: Vec<[f64; 2]> = particles.iter().map(|p| [p.pose.origin_a[0] / d_a, p.pose.origin_a[1] / d_a]).collect();
        Ok(pickle::write_poses(path, &rots, &trans)?)
    }

    /// Write the CTF of `particles` (in any order, for example with refined defoci) as a
    /// cryoDRGN CTF pickle at `path`, atomically. With a CTF pickle as input each row is that
    /// pickle's row for the particle with only `ΔfU` and `ΔfV` replaced; otherwise the rows are
    /// made from the set (`D` the box, `apix` the pixel size).
    pub fn write_ctf_pickle(&self, path: &Path, particles: &[Particle]) -> Result<()> {
        let source_rows = match &self.ctf_pickle {
            Some(p) => Some(pickle::read_ctf(p)?),
            None => None,
        };
        let mut rows = Vec::with_capacity(particles.len());
        for (i, p) in particles.iter().enumerate() {
            let c = &p.ctf;
            let mut row = match &source_rows {
                Some(src) => *src.get(p.position).ok_or_else(|| {
                    DatasetError::invalid(path, format!("particle {i} (0-based) has no row in the CTF pickle it was read with"))
                })?,
                None => {
                    [self.box_px as f64, self.apix, 0.0, 0.0, c.defocus_angle_deg, c.voltage_kv, c.cs_mm, c.amp_contrast, c.phase_shift_deg]
                }
            };
            row[2] = c.defocus_u_a;
            row[3] = c.defocus_v_a;
            rows.push(row);
        }
        Ok(pickle::write_ctf(path, &rows)?)
    }
}
