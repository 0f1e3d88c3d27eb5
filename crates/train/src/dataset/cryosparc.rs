//! cryoSPARC `.cs`: `A = R(alignments3D/pose)ᵀ`, shifts in pixels of `alignments3D/psize_A`,
//! 0-based `blob/idx`, half sets from `alignments3D/split`, contrast from `blob/sign`.

use super::paths::Base;
use super::settle::OriginUnit;
use super::{differ, DatasetError, LoadOptions, Particle, ParticleSet, Result, SourceKind};
use cryosplat_core::ctf::CtfParams;
use cryosplat_core::pose::{Pose, IDENTITY};
use cryosplat_core::rotation::{cryosparc_rotvec_to_matrix, matrix_to_cryosparc_rotvec};
use cryosplat_formats::cs::CsFile;
use std::collections::HashMap;
use std::path::Path;

/// Read a cryoSPARC `.cs` file.
pub(super) fn read(path: &Path, opts: &LoadOptions) -> Result<ParticleSet> {
    let cs = CsFile::read(path)?;
    let mut set = ParticleSet::empty(path, SourceKind::CryoSparc);
    let base = Base::new(path, opts);
    let n = cs.len();
    let bad = |r: usize, what: &str, v: f64| DatasetError::invalid(path, format!("particle {r} (0-based): {what} is {v}"));
    let paths = cs.blob_paths()?;
    let idx = cs.index_column("blob/idx")?;
    read_blob(&cs, path, &mut set)?;
    let poses = cs.vec_column_opt::<3>("alignments3D/pose")?;
    let shifts = cs.vec_column_opt::<2>("alignments3D/shift")?;
    let align_apix = cs.f64_column_opt("alignments3D/psize_A")?;
    set.has_poses = poses.is_some();
    if poses.is_none() && cs.has("alignments2D/pose") {
        set.warn("the file has 2D alignments only (alignments2D/*): no 3D poses");
    }
    let ctf = CtfColumns::read(&cs, &mut set)?;
    let groups: Vec<u32> = match cs.f64_column_opt("ctf/exp_group_id")? {
        Some(v) => v.iter().map(|&g| g as u32).collect(),
        None => vec![1; n],
    };
    let split = if cs.has("alignments3D/split") { Some(cs.index_column("alignments3D/split")?) } else { None };
    let split_ok = split.as_ref().is_some_and(|s| s.iter().all(|&v| v <= 1));
    if split.is_some() && !split_ok {
        set.warn("alignments3D/split holds values other than 0 and 1: half sets are drawn at random instead");
    }
    let mut names = HashMap::new();
    for i in 0..n {
        let stack = set.stack_id(&paths[i], &base, &mut names);
        let rot = match &poses {
            Some(p) => {
                if p[i].iter().any(|v| !v.is_finite()) {
                    return Err(bad(i, "alignments3D/pose", p[i][0]));
                }
                cryosparc_rotvec_to_matrix(p[i])
            }
            None => IDENTITY,
        };
        // Shifts are pixels of the alignment's pixel size; the result is in Å.
        let origin_a = match &shifts {
            Some(s) => {
                let px = align_apix.as_ref().map(|v| v[i]).filter(|&a| a > 0.0).or(set.loading.meta_apix);
                match px {
                    Some(a) => [s[i][0] * a, s[i][1] * a],
                    None => {
                        return Err(DatasetError::invalid(
                            path,
                            "alignments3D/shift needs a pixel size (alignments3D/psize_A or blob/psize_A)",
                        ))
                    }
                }
            }
            None => [0.0, 0.0],
        };
        let ctf = ctf.at(i);
        if set.has_ctf {
            ctf.validate().map_err(|e| DatasetError::invalid(path, format!("particle {i} (0-based): {e}")))?;
        }
        let random_subset = split.as_ref().filter(|_| split_ok).map(|s| s[i] as u8 + 1);
        set.particles.push(Particle {
            stack,
            index: usize::try_from(idx[i]).unwrap_or(usize::MAX),
            pose: Pose { rot, origin_a },
            ctf,
            optics_group: groups[i],
            random_subset,
            source_row: Some(i),
            position: i,
        });
    }
    set.loading.origin_unit = OriginUnit::Angstrom(set.loading.meta_apix);
    Ok(set)
}

/// The image fields: pixel size (`blob/psize_A`), box (`blob/shape`) and contrast (`blob/sign`).
fn read_blob(cs: &CsFile, path: &Path, set: &mut ParticleSet) -> Result<()> {
    let n = cs.len();
    if let Some(ps) = cs.f64_column_opt("blob/psize_A")? {
        let (lo, hi) = ps.iter().fold((f64::INFINITY, 0.0f64), |(l, h), &a| (l.min(a), h.max(a)));
        if lo.is_nan() || lo <= 0.0 || !hi.is_finite() {
            return Err(DatasetError::invalid(path, format!("blob/psize_A holds {lo}; expected a positive pixel size")));
        }
        if differ(lo, hi) {
            return Err(DatasetError::invalid(path, format!("particles have different pixel sizes (blob/psize_A {lo} to {hi} Å)")));
        }
        set.loading.meta_apix = Some(ps[0]);
    }
    if let Some(shape) = cs.vec_column_opt::<2>("blob/shape")? {
        for (r, s) in shape.iter().enumerate() {
            if s[0] != s[1] {
                return Err(DatasetError::invalid(
                    path,
                    format!("particle {r}: blob/shape is {}×{}; cryosplat needs square images", s[0], s[1]),
                ));
            }
            if s[0] != shape[0][0] {
                return Err(DatasetError::invalid(path, format!("particles have different image sizes ({} and {} px)", shape[0][0], s[0])));
            }
        }
        set.loading.meta_box = shape.first().map(|s| s[0] as usize);
    }
    if let Some(sign) = cs.f64_column_opt("blob/sign")? {
        let dark = sign.iter().filter(|&&s| s < 0.0).count();
        if dark == n {
            set.invert = true;
            set.warn("blob/sign is -1 (dark particles, raw polarity): contrast is inverted automatically");
        } else if dark > 0 {
            return Err(DatasetError::invalid(
                path,
                format!("blob/sign is -1 for {dark} of {n} particles; mixed contrast is not supported"),
            ));
        }
    }
    Ok(())
}

/// The CTF fields, with defaults for missing ones (`df2` NaN: ΔfV = ΔfU).
struct CtfColumns {
    df1: Option<Vec<f64>>,
    kv: Vec<f64>,
    cs_mm: Vec<f64>,
    q0: Vec<f64>,
    df2: Vec<f64>,
    angle_rad: Vec<f64>,
    phase_rad: Vec<f64>,
    bfactor: Vec<f64>,
    scale: Vec<f64>,
}

impl CtfColumns {
    /// Read the fields, sets `has_ctf` and warns of every default used and of higher-order
    /// aberrations that are ignored.
    fn read(cs: &CsFile, set: &mut ParticleSet) -> Result<CtfColumns> {
        let n = cs.len();
        let df1 = cs.f64_column_opt("ctf/df1_A")?;
        set.has_ctf = df1.is_some();
        if df1.is_none() {
            set.warn("no CTF parameters (no ctf/df1_A field)");
        }
        let col = |name: &str, default: f64, what: &str, set: &mut ParticleSet| -> Result<Vec<f64>> {
            Ok(match cs.f64_column_opt(name)? {
                Some(v) => v,
                None => {
                    if df1.is_some() {
                        set.warn(format!("{name} is missing; the default {what} is used"));
                    }
                    vec![default; n]
                }
            })
        };
        let columns = CtfColumns {
            kv: col("ctf/accel_kv", 200.0, "200 kV", set)?,
            cs_mm: col("ctf/cs_mm", 0.0, "Cs 0 mm", set)?,
            q0: col("ctf/amp_contrast", 0.0, "Q0 0", set)?,
            df2: col("ctf/df2_A", f64::NAN, "ΔfV = ΔfU", set)?,
            angle_rad: col("ctf/df_angle_rad", 0.0, "0 rad", set)?,
            phase_rad: col("ctf/phase_shift_rad", 0.0, "phase shift 0", set)?,
            bfactor: col("ctf/bfactor", 0.0, "B 0 Å²", set)?,
            scale: col("ctf/scale", 1.0, "scale 1", set)?,
            df1,
        };
        for f in ["ctf/shift_A", "ctf/tilt_A", "ctf/trefoil_A", "ctf/tetra_A", "ctf/anisomag"] {
            if let Some(field) = cs.array.field(f) {
                let c = field.count;
                let nonzero = (0..n).any(|r| (0..c).any(|k| cs.array.number(field, r, k).is_some_and(|v| v != 0.0)));
                if nonzero {
                    set.warn(format!("{f} (higher-order aberrations) is not modelled and is ignored"));
                }
            }
        }
        Ok(columns)
    }

    /// Particle `i`'s CTF in the project's units.
    fn at(&self, i: usize) -> CtfParams {
        let du = self.df1.as_ref().map_or(0.0, |v| v[i]);
        CtfParams {
            voltage_kv: self.kv[i],
            cs_mm: self.cs_mm[i],
            amp_contrast: self.q0[i],
            defocus_u_a: du,
            defocus_v_a: if self.df2[i].is_nan() { du } else { self.df2[i] },
            defocus_angle_deg: self.angle_rad[i].to_degrees(),
            phase_shift_deg: self.phase_rad[i].to_degrees(),
            bfactor_a2: self.bfactor[i],
            scale: self.scale[i],
        }
    }
}

impl ParticleSet {
    /// Write `particles` (particles of this cryoSPARC set, in any order, with their poses,
    /// origins and defoci changed, for example by refinement) as a `.cs` file at `path`,
    /// atomically: one record per particle, each a copy of the record it was read from with
    /// `alignments3D/pose`, `alignments3D/shift` (pixels of that record's
    /// `alignments3D/psize_A`, as read) and `ctf/df1_A`, `ctf/df2_A` replaced, every other
    /// field byte for byte as read. `blob/path` is kept, so the stacks are found as for the
    /// input (with `--datadir` when they are not beside the file).
    pub fn write_cs_updated(&self, path: &Path, particles: &[Particle]) -> Result<()> {
        if self.kind != SourceKind::CryoSparc {
            return Err(DatasetError::invalid(path, "only a set read from a .cs file can be written as one"));
        }
        let mut cs = CsFile::read(&self.source)?;
        let blob_apix = cs.f64_column_opt("blob/psize_A")?;
        let align_apix = cs.f64_column_opt("alignments3D/psize_A")?;
        let mut rows = Vec::with_capacity(particles.len());
        for (i, p) in particles.iter().enumerate() {
            let Some(r) = p.source_row.filter(|&r| r < cs.len()) else {
                return Err(DatasetError::invalid(
                    path,
                    format!(
                        "particle {i} (0-based) has no record in {}; it cannot be written with that file's fields",
                        self.source.display()
                    ),
                ));
            };
            rows.push(r);
            if self.has_poses && cs.has("alignments3D/pose") {
                let v = matrix_to_cryosparc_rotvec(&p.pose.rot);
                for (k, x) in v.into_iter().enumerate() {
                    cs.set_float("alignments3D/pose", r, k, x)?;
                }
            }
            if cs.has("alignments3D/shift") {
                // As read: Å = shift · (alignments3D/psize_A, else blob/psize_A), rescaled by
                // apix / blob/psize_A when the pixel size was given explicitly.
                let blob = blob_apix.as_ref().map(|v| v[r]).filter(|&a| a > 0.0);
                let align = align_apix.as_ref().map(|v| v[r]).filter(|&a| a > 0.0).or(blob).unwrap_or(self.apix);
                let per_px = align * blob.map_or(1.0, |b| self.apix / b);
                for k in 0..2 {
                    cs.set_float("alignments3D/shift", r, k, p.pose.origin_a[k] / per_px)?;
                }
            }
            if self.has_ctf {
                cs.set_float("ctf/df1_A", r, 0, p.ctf.defocus_u_a)?;
                if cs.has("ctf/df2_A") {
                    cs.set_float("ctf/df2_A", r, 0, p.ctf.defocus_v_a)?;
                }
            }
        }
        cs.write_records(&rows, path)?;
        Ok(())
    }
}
