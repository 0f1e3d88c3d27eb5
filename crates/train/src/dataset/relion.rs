//! RELION STAR files: 3.1+ (`data_optics` + `data_particles`, origins in Å) and 3.0 (one
//! particle table, origins in pixels), read into a [`ParticleSet`]; and the
//! project's one STAR writer, [`write_relion31`], used by [`ParticleSet::write_star`] and the
//! simulator.

use super::paths::Base;
use super::settle::OriginUnit;
use super::{differ, DatasetError, LoadOptions, OpticsGroup, Particle, ParticleSet, Result, SourceKind};
use cryosplat_core::ctf::CtfParams;
use cryosplat_core::pose::{Pose, IDENTITY};
use cryosplat_core::rotation::{euler_to_matrix, matrix_to_euler};
use cryosplat_formats::star::{self, Table};
use cryosplat_formats::FormatError;
use std::collections::{HashMap, HashSet};
use std::path::Path;

const RELION_DEFAULTS: [(&str, f64, &str); 7] = [
    ("rlnVoltage", 200.0, "200 kV"),
    ("rlnSphericalAberration", 0.0, "Cs 0 mm"),
    ("rlnAmplitudeContrast", 0.0, "Q0 0"),
    ("rlnDefocusAngle", 0.0, "0°"),
    ("rlnCtfBfactor", 0.0, "B 0 Å²"),
    ("rlnCtfScalefactor", 1.0, "scale 1"),
    ("rlnPhaseShift", 0.0, "phase shift 0°"),
];

/// A numeric column of the particle table, if present.
type Column = Option<Vec<f64>>;

/// Split `NNNNNN@path` into a 0-based index and the path; a bare path is image 1.
fn parse_image_name(v: &str, path: &Path, line: usize) -> Result<(usize, String)> {
    let Some((n, p)) = v.split_once('@') else {
        return Ok((0, v.to_string()));
    };
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| FormatError::text(path, line, format!("image number in {v:?} is not a whole number (expected NNNNNN@stack.mrcs)")))?;
    if n == 0 {
        return Err(FormatError::text(path, line, format!("image number in {v:?} is 0; STAR image numbers start at 1")).into());
    }
    if p.is_empty() {
        return Err(FormatError::text(path, line, format!("image name {v:?} has no file after '@'")).into());
    }
    Ok((n - 1, p.to_string()))
}

/// The tables of a particle STAR file and the optics rows by group id.
struct Tables<'a> {
    path: &'a Path,
    particles: &'a Table,
    optics: Option<&'a Table>,
    group_rows: HashMap<u32, usize>,
}

impl Tables<'_> {
    fn col(&self, label: &str) -> Result<Column> {
        Ok(self.particles.f64_column(self.path, label)?)
    }
}

/// Read a RELION STAR file (3.0 or 3.1+).
/// Where the particle table is: (block, table) of the first table with `rlnImageName` in the
/// block `data_particles`, or else anywhere in the file.
fn particle_table_position(sf: &star::StarFile) -> Option<(usize, usize)> {
    let in_block = |b: &star::Block| b.tables.iter().position(|t| t.column("rlnImageName").is_some());
    sf.blocks
        .iter()
        .position(|b| b.name == "particles" && in_block(b).is_some())
        .or_else(|| sf.blocks.iter().position(|b| in_block(b).is_some()))
        .map(|bi| (bi, in_block(&sf.blocks[bi]).expect("the block was chosen for such a table")))
}

pub(super) fn read(path: &Path, opts: &LoadOptions) -> Result<ParticleSet> {
    let sf = star::read(path)?;
    let (bi, ti) = particle_table_position(&sf)
        .ok_or_else(|| DatasetError::invalid(path, "no table with an rlnImageName column (required: it names the particle images)"))?;
    let pt = &sf.blocks[bi].tables[ti];
    let optics = sf.block("optics").and_then(|b| b.table());
    let kind = if optics.is_some() { SourceKind::Relion31 } else { SourceKind::Relion30 };
    let mut set = ParticleSet::empty(path, kind);
    let mut t = Tables { path, particles: pt, optics, group_rows: HashMap::new() };
    if let Some(o) = optics {
        t.group_rows = read_optics(o, path, &mut set)?;
    }
    let groups = particle_groups(pt, path)?;
    let ctf_cols = ctf_columns(&t, &groups, &mut set)?;
    let (du, dv) = (t.col("rlnDefocusU")?, t.col("rlnDefocusV")?);
    set.has_ctf = du.is_some();
    if du.is_none() {
        set.warn("no CTF parameters (no rlnDefocusU column)");
    } else if dv.is_none() {
        set.warn("rlnDefocusV is missing; RELION's default ΔfV = ΔfU is used");
    }
    // Angles: all three, or rot and tilt (psi 0); psi alone is a 2D alignment.
    let angles = [t.col("rlnAngleRot")?, t.col("rlnAngleTilt")?, t.col("rlnAnglePsi")?];
    set.has_poses = angles[0].is_some() && angles[1].is_some();
    if set.has_poses && angles[2].is_none() {
        set.warn("rlnAnglePsi is missing; 0° is used");
    } else if !set.has_poses && angles.iter().any(Option::is_some) {
        set.warn("the file has only some of rlnAngleRot, rlnAngleTilt, rlnAnglePsi (a 2D alignment?): no 3D poses");
    }
    let origins = origin_columns(&t, &mut set)?;
    let row_apix = row_pixel_sizes(&t)?;
    let subsets = subset_column(&t, &mut set)?;
    let base = Base::new(path, opts);
    let name_col = pt.column("rlnImageName").expect("the table was chosen for this column");
    let mut names = HashMap::new();
    let mut nonpositive_defocus: Option<(usize, f64, f64, usize)> = None;
    for r in 0..pt.len() {
        let line = pt.line(r);
        let (index, rel) = parse_image_name(pt.get(r, name_col), path, line)?;
        let stack = set.stack_id(&rel, &base, &mut names);
        if optics.is_some() && !t.group_rows.contains_key(&groups[r]) {
            return Err(FormatError::text(path, line, format!("optics group {} is not in data_optics", groups[r])).into());
        }
        let at = |c: &Column| c.as_ref().map_or(0.0, |v| v[r]);
        let ctf = CtfParams {
            voltage_kv: ctf_cols[0][r],
            cs_mm: ctf_cols[1][r],
            amp_contrast: ctf_cols[2][r],
            defocus_u_a: at(&du),
            defocus_v_a: at(if dv.is_some() { &dv } else { &du }),
            defocus_angle_deg: ctf_cols[3][r],
            bfactor_a2: ctf_cols[4][r],
            scale: ctf_cols[5][r],
            phase_shift_deg: ctf_cols[6][r],
        };
        if set.has_ctf {
            ctf.validate().map_err(|e| FormatError::text(path, line, e.to_string()))?;
        }
        if set.has_poses {
            for (k, label) in ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"].iter().enumerate() {
                let v = at(&angles[k]);
                // Beyond 1e5 degrees an f64 angle has lost its sub-degree precision.
                if !(v.abs() <= MAX_ANGLE_DEG) {
                    return Err(FormatError::text(
                        path,
                        line,
                        format!("{label} is {v}°: expected an angle of at most {MAX_ANGLE_DEG}° in magnitude"),
                    )
                    .into());
                }
            }
        }
        if set.has_ctf && (ctf.defocus_u_a <= 0.0 || ctf.defocus_v_a <= 0.0) {
            nonpositive_defocus.get_or_insert((line, ctf.defocus_u_a, ctf.defocus_v_a, 0)).3 += 1;
        }
        let rot = if set.has_poses { euler_to_matrix(at(&angles[0]), at(&angles[1]), at(&angles[2])) } else { IDENTITY };
        let origin_a = [at(&origins[0]), at(&origins[1])];
        let random_subset = subsets.as_ref().map(|s| s[r] as u8);
        set.particles.push(Particle {
            stack,
            index,
            pose: Pose { rot, origin_a },
            ctf,
            optics_group: groups[r],
            random_subset,
            source_row: Some(r),
            position: set.particles.len(),
        });
    }
    if let Some((line, u, v, n)) = nonpositive_defocus {
        set.warn(format!(
            "{n} particle(s) have a defocus of 0 or less (overfocus), the first at line {line} (U {u} Å, V {v} Å); RELION's convention is underfocus positive: check the sign"
        ));
    }
    settle_metadata_geometry(&mut set, path, &groups, row_apix)?;
    Ok(set)
}

/// The largest Euler angle accepted, in degrees.
const MAX_ANGLE_DEG: f64 = 1e5;

/// The optics table: one [`OpticsGroup`] per row (pixel size, box), rows by group id.
fn read_optics(o: &Table, path: &Path, set: &mut ParticleSet) -> Result<HashMap<u32, usize>> {
    let mut group_rows = HashMap::new();
    let gcol = o.column("rlnOpticsGroup").ok_or_else(|| DatasetError::invalid(path, "data_optics has no rlnOpticsGroup column"))?;
    for r in 0..o.len() {
        let id = o.f64(path, r, gcol)?;
        if id < 0.0 || id.fract() != 0.0 {
            return Err(FormatError::text(path, o.line(r), format!("optics group {id} is not a whole number")).into());
        }
        if group_rows.insert(id as u32, r).is_some() {
            return Err(FormatError::text(path, o.line(r), format!("optics group {id} is listed twice")).into());
        }
        let apix = match o.f64_opt(path, r, "rlnImagePixelSize")? {
            Some(a) => Some(a),
            None => match (o.f64_opt(path, r, "rlnDetectorPixelSize")?, o.f64_opt(path, r, "rlnMagnification")?) {
                (Some(dp), Some(mag)) if mag > 0.0 => Some(1e4 * dp / mag),
                _ => o.f64_opt(path, r, "rlnPixelSize")?,
            },
        };
        if let Some(a) = apix {
            if a.is_nan() || a <= 0.0 {
                return Err(FormatError::text(path, o.line(r), format!("pixel size {a} Å is not positive")).into());
            }
        }
        let box_px = match o.f64_opt(path, r, "rlnImageSize")? {
            Some(b) if b >= 1.0 && b.fract() == 0.0 => Some(b as usize),
            Some(b) => return Err(FormatError::text(path, o.line(r), format!("rlnImageSize {b} is not a size in pixels")).into()),
            None => None,
        };
        if o.f64_opt(path, r, "rlnImageDimensionality")?.is_some_and(|d| d != 2.0) {
            return Err(FormatError::text(path, o.line(r), "3D particles (rlnImageDimensionality 3) are not supported").into());
        }
        if o.f64_opt(path, r, "rlnCtfDataAreCtfPremultiplied")?.is_some_and(|d| d != 0.0) {
            set.warn(format!(
                "optics group {id}: rlnCtfDataAreCtfPremultiplied = 1: the images are CTF-premultiplied, but cryosplat models raw particle images"
            ));
        }
        set.optics_groups.push(OpticsGroup {
            id: id as u32,
            name: o.column("rlnOpticsGroupName").map(|c| o.get(r, c).to_string()).unwrap_or_else(|| format!("opticsGroup{id}")),
            voltage_kv: 0.0,
            cs_mm: 0.0,
            amp_contrast: 0.0,
            apix,
            box_px,
            particles: 0,
        });
    }
    Ok(group_rows)
}

/// Every particle's optics group (1 without an `rlnOpticsGroup` column).
fn particle_groups(pt: &Table, path: &Path) -> Result<Vec<u32>> {
    match pt.column("rlnOpticsGroup") {
        Some(c) => (0..pt.len())
            .map(|r| {
                let g = pt.f64(path, r, c)?;
                if g < 0.0 || g.fract() != 0.0 {
                    return Err(FormatError::text(path, pt.line(r), format!("optics group {g} is not a whole number")).into());
                }
                Ok(g as u32)
            })
            .collect(),
        None => Ok(vec![1; pt.len()]),
    }
}

/// The CTF fields of [`RELION_DEFAULTS`], in its order: particle column, else its optics
/// group, else the default (reported once when the file has a CTF).
fn ctf_columns(t: &Tables, groups: &[u32], set: &mut ParticleSet) -> Result<Vec<Vec<f64>>> {
    let mut ctf_cols = Vec::new();
    for (label, default, what) in RELION_DEFAULTS {
        let own = t.col(label)?;
        let ocol = t.optics.and_then(|o| o.column(label));
        let mut used_default = false;
        let values = (0..t.particles.len())
            .map(|r| {
                if let Some(v) = &own {
                    return Ok(v[r]);
                }
                if let (Some(o), Some(c)) = (t.optics, ocol) {
                    if let Some(&orow) = t.group_rows.get(&groups[r]) {
                        return Ok(o.f64(t.path, orow, c)?);
                    }
                }
                used_default = true;
                Ok(default)
            })
            .collect::<Result<Vec<f64>>>()?;
        if used_default && t.particles.column("rlnDefocusU").is_some() {
            set.warn(format!("{label} is missing; RELION's default {what} is used"));
        }
        ctf_cols.push(values);
    }
    Ok(ctf_cols)
}

/// Origins: Å (3.1), else pixels (3.0, recorded in the loading state).
fn origin_columns(t: &Tables, set: &mut ParticleSet) -> Result<[Column; 2]> {
    let (ox, oy) = match (t.col("rlnOriginXAngst")?, t.col("rlnOriginYAngst")?) {
        (None, None) => {
            let (x, y) = (t.col("rlnOriginX")?, t.col("rlnOriginY")?);
            if x.is_some() || y.is_some() {
                set.loading.origin_unit = OriginUnit::Pixel;
            }
            (x, y)
        }
        (x, y) => (x, y),
    };
    if ox.is_some() != oy.is_some() {
        set.warn("only one of the two origin columns is present; the other is taken as 0");
    }
    Ok([ox, oy])
}

/// RELION 3.0 per-particle pixel sizes, `1e4·rlnDetectorPixelSize/rlnMagnification`.
fn row_pixel_sizes(t: &Tables) -> Result<Column> {
    let (Some(dp), Some(mag)) = (t.col("rlnDetectorPixelSize")?, t.col("rlnMagnification")?) else {
        return Ok(None);
    };
    let v = (0..t.particles.len())
        .map(|r| {
            if mag[r] > 0.0 && dp[r] > 0.0 {
                Ok(1e4 * dp[r] / mag[r])
            } else {
                Err(FormatError::text(t.path, t.particles.line(r), "rlnMagnification and rlnDetectorPixelSize must be positive").into())
            }
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(Some(v))
}

/// `rlnRandomSubset`, unless absent or holding a value other than 1 and 2 (a warning).
fn subset_column(t: &Tables, set: &mut ParticleSet) -> Result<Column> {
    let Some(s) = t.col("rlnRandomSubset")? else {
        return Ok(None);
    };
    if let Some(r) = s.iter().position(|&v| v != 1.0 && v != 2.0) {
        set.warn(format!(
            "rlnRandomSubset is {} on line {} (expected 1 or 2): half sets are drawn at random instead",
            s[r],
            t.particles.line(r)
        ));
        return Ok(None);
    }
    Ok(Some(s))
}

/// One pixel size and one box for the whole set, from the optics groups in use and the
/// RELION 3.0 per-particle pixel sizes.
fn settle_metadata_geometry(set: &mut ParticleSet, path: &Path, groups: &[u32], row_apix: Column) -> Result<()> {
    let mut apix: Option<f64> = None;
    let used: HashSet<u32> = groups.iter().copied().collect();
    for g in set.optics_groups.iter().filter(|g| used.contains(&g.id)) {
        if let Some(a) = g.apix {
            match apix {
                Some(b) if differ(a, b) => {
                    return Err(DatasetError::invalid(
                        path,
                        format!("optics groups have different pixel sizes ({b} and {a} Å); split the file by optics group"),
                    ))
                }
                _ => apix = apix.or(Some(a)),
            }
        }
        if let Some(b) = g.box_px {
            match set.loading.meta_box {
                Some(c) if c != b => {
                    return Err(DatasetError::invalid(
                        path,
                        format!("optics groups have different image sizes ({c} and {b} px); split the file by optics group"),
                    ))
                }
                _ => set.loading.meta_box = Some(b),
            }
        }
    }
    if let Some(v) = &row_apix {
        let (lo, hi) = v.iter().fold((f64::INFINITY, 0.0f64), |(l, h), &a| (l.min(a), h.max(a)));
        if differ(lo, hi) {
            return Err(DatasetError::invalid(
                path,
                format!("particles have different pixel sizes ({lo:.4} to {hi:.4} Å from rlnMagnification and rlnDetectorPixelSize); cryosplat needs one"),
            ));
        }
        match apix {
            None => apix = Some(v[0]),
            Some(a) if differ(a, v[0]) => set.warn(format!(
                "the optics table says {a} Å/px but rlnMagnification and rlnDetectorPixelSize give {:.4} Å/px; the optics table is used",
                v[0]
            )),
            _ => {}
        }
    }
    set.loading.meta_apix = apix;
    if set.loading.origin_unit != OriginUnit::Pixel {
        set.loading.origin_unit = OriginUnit::Angstrom(apix);
    }
    Ok(())
}

/// How a written STAR file spells its numbers: six decimals, either all of them
/// (`300.000000`) or with trailing zeros removed (`300`, `1.5`, and `0` for `-0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StarDecimals {
    Fixed,
    Trimmed,
}

impl StarDecimals {
    fn format(self, v: f64) -> String {
        let s = format!("{v:.6}");
        if self == StarDecimals::Fixed {
            return s;
        }
        let t = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
        if t == "-0" {
            "0".into()
        } else {
            t
        }
    }
}

/// What a written RELION 3.1 file holds besides its rows.
#[derive(Clone, Debug, PartialEq)]
pub struct StarLayout {
    /// Pixel size (Å) and box (px) of every optics group.
    pub apix: f64,
    pub box_px: usize,
    /// Write the angles and origins.
    pub poses: bool,
    /// Write the per-particle CTF columns.
    pub ctf: bool,
    /// Write `rlnCtfDataAreCtfPremultiplied 0` in the optics table.
    pub premultiplied_column: bool,
    pub decimals: StarDecimals,
}

/// One row of the optics table (its `rlnOpticsGroup` is its 1-based position).
#[derive(Clone, Debug, PartialEq)]
pub struct StarOptics {
    pub name: String,
    pub voltage_kv: f64,
    pub cs_mm: f64,
    pub amp_contrast: f64,
}

/// One particle row.
#[derive(Clone, Debug, PartialEq)]
pub struct StarParticle {
    /// `NNNNNN@stack`.
    pub image_name: String,
    /// RELION's `(rot, tilt, psi)` in degrees.
    pub angles_deg: [f64; 3],
    pub origin_a: [f64; 2],
    /// Defocus, angle, phase shift, B-factor and scale are written; voltage, Cs and Q0 belong
    /// to the optics group.
    pub ctf: CtfParams,
    /// 1-based row of the optics table.
    pub optics_group: usize,
    pub random_subset: Option<u8>,
}

/// Write a RELION 3.1 STAR file (atomically): `data_optics` with one row per [`StarOptics`],
/// `data_particles` with the image name, the poses and origins (`layout.poses`), the CTF
/// (`layout.ctf`), the optics group, and `rlnRandomSubset` when every particle has one.
pub fn write_relion31(path: &Path, layout: &StarLayout, optics: &[StarOptics], particles: &[StarParticle]) -> Result<(), FormatError> {
    let f = |v: f64| layout.decimals.format(v);
    let mut optics_labels = vec![
        "rlnOpticsGroup",
        "rlnOpticsGroupName",
        "rlnAmplitudeContrast",
        "rlnSphericalAberration",
        "rlnVoltage",
        "rlnImagePixelSize",
        "rlnImageSize",
        "rlnImageDimensionality",
    ];
    if layout.premultiplied_column {
        optics_labels.push("rlnCtfDataAreCtfPremultiplied");
    }
    let mut optics_table = Table::new(&optics_labels);
    for (k, o) in optics.iter().enumerate() {
        let mut row = vec![
            (k + 1).to_string(),
            o.name.clone(),
            f(o.amp_contrast),
            f(o.cs_mm),
            f(o.voltage_kv),
            f(layout.apix),
            layout.box_px.to_string(),
            "2".into(),
        ];
        if layout.premultiplied_column {
            row.push("0".into());
        }
        optics_table.push_row(row);
    }
    let mut labels = vec!["rlnImageName"];
    if layout.poses {
        labels.extend(["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]);
    }
    if layout.ctf {
        labels.extend(["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor", "rlnCtfScalefactor"]);
    }
    labels.push("rlnOpticsGroup");
    let subsets = particles.iter().all(|p| p.random_subset.is_some());
    if subsets {
        labels.push("rlnRandomSubset");
    }
    let mut table = Table::new(&labels);
    for p in particles {
        let mut row = vec![p.image_name.clone()];
        if layout.poses {
            let [rot, tilt, psi] = p.angles_deg;
            row.extend([rot, tilt, psi, p.origin_a[0], p.origin_a[1]].map(f));
        }
        if layout.ctf {
            let c = &p.ctf;
            row.extend([c.defocus_u_a, c.defocus_v_a, c.defocus_angle_deg, c.phase_shift_deg, c.bfactor_a2, c.scale].map(f));
        }
        row.push(p.optics_group.to_string());
        if let (true, Some(s)) = (subsets, p.random_subset) {
            row.push(s.to_string());
        }
        table.push_row(row);
    }
    star::write(path, &[("optics", &optics_table), ("particles", &table)])
}

impl ParticleSet {
    /// Write `particles` (particles of this set, in any order, with their poses, origins and
    /// CTFs changed, for example by refinement) as a STAR file at `path`, atomically. From a
    /// RELION input the file keeps everything else as read: every other column of each
    /// particle's row, the optics table and every other block; the angles, origins (Å, or
    /// pixels in a RELION 3.0 file without Å columns) and defoci are replaced (added when the
    /// input lacked them), and image names point at the resolved stacks as in
    /// [`ParticleSet::write_star`], so that the file works from its own folder. Other inputs
    /// are written as [`ParticleSet::write_star`] writes a set.
    pub fn write_star_updated(&self, path: &Path, particles: &[Particle]) -> Result<()> {
        if !matches!(self.kind, SourceKind::Relion30 | SourceKind::Relion31) {
            return self.write_particles(path, particles);
        }
        if particles.is_empty() {
            return Err(DatasetError::invalid(path, "no particles to write"));
        }
        let mut sf = star::read(&self.source)?;
        let (bi, ti) = particle_table_position(&sf).ok_or_else(|| {
            DatasetError::invalid(&self.source, "no table with an rlnImageName column (required: it names the particle images)")
        })?;
        let src = &sf.blocks[bi].tables[ti];
        let mut labels = src.labels.clone();
        let mut col = |label: &str| match labels.iter().position(|l| l == label) {
            Some(c) => c,
            None => {
                labels.push(label.to_string());
                labels.len() - 1
            }
        };
        let name_col = col("rlnImageName");
        let angle_cols = self.has_poses.then(|| [col("rlnAngleRot"), col("rlnAngleTilt"), col("rlnAnglePsi")]);
        let has_px = src.column("rlnOriginX").is_some() && src.column("rlnOriginXAngst").is_none();
        let origin_cols = if !self.has_poses {
            None
        } else if has_px || (self.kind == SourceKind::Relion30 && src.column("rlnOriginXAngst").is_none()) {
            Some(([col("rlnOriginX"), col("rlnOriginY")], 1.0 / self.apix))
        } else {
            Some(([col("rlnOriginXAngst"), col("rlnOriginYAngst")], 1.0))
        };
        let defocus_cols = self.has_ctf.then(|| [col("rlnDefocusU"), col("rlnDefocusV")]);
        let names = self.stack_names(path);
        let f = |v: f64| StarDecimals::Trimmed.format(v);
        let mut table = Table::new(&labels);
        for (i, p) in particles.iter().enumerate() {
            let Some(row) = p.source_row.filter(|&r| r < src.len()) else {
                return Err(DatasetError::invalid(
                    path,
                    format!(
                        "particle {} (0-based) has no row in {}; it cannot be written with that file's columns",
                        i,
                        self.source.display()
                    ),
                ));
            };
            let mut values = src.rows[row].clone();
            values.resize(labels.len(), String::new());
            values[name_col] = format!("{:06}@{}", p.index + 1, names[p.stack]);
            if let Some(c) = angle_cols {
                let (rot, tilt, psi) = matrix_to_euler(&p.pose.rot);
                for (k, v) in [rot, tilt, psi].into_iter().enumerate() {
                    values[c[k]] = f(v);
                }
            }
            if let Some((c, per_a)) = origin_cols {
                values[c[0]] = f(p.pose.origin_a[0] * per_a);
                values[c[1]] = f(p.pose.origin_a[1] * per_a);
            }
            if let Some(c) = defocus_cols {
                values[c[0]] = f(p.ctf.defocus_u_a);
                values[c[1]] = f(p.ctf.defocus_v_a);
            }
            table.push_row(values);
        }
        sf.blocks[bi].tables[ti] = table;
        sf.path = path.to_path_buf();
        star::write_file(path, &sf)?;
        Ok(())
    }

    /// Each stack's name as written into a STAR file at `path`: relative to that file's folder
    /// when the stack is inside it, absolute otherwise.
    fn stack_names(&self, path: &Path) -> Vec<String> {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let dir = abs(path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")));
        self.stacks
            .iter()
            .map(|s| {
                let a = abs(s);
                a.strip_prefix(&dir).map(Path::to_path_buf).unwrap_or(a).display().to_string()
            })
            .collect()
    }

    /// Write the set as a RELION 3.1 STAR file (atomically, numbers with trailing zeros
    /// removed): one optics row per distinct (group, voltage, Cs, Q0), poses and origins when
    /// the set has poses, CTF columns when it has a CTF, `rlnRandomSubset` when every particle
    /// has a half set. Image names are relative to the STAR file's folder when the stack is
    /// inside it, absolute otherwise. The images themselves are not changed (a set read with
    /// contrast inversion still refers to the stored images).
    pub fn write_star(&self, path: &Path) -> Result<()> {
        self.write_particles(path, &self.particles)
    }

    /// [`ParticleSet::write_star`] with `particles` in place of the set's own.
    fn write_particles(&self, path: &Path, particles: &[Particle]) -> Result<()> {
        if particles.is_empty() {
            return Err(DatasetError::invalid(path, "no particles to write"));
        }
        let names = self.stack_names(path);
        let mut keys: Vec<(u32, u64, u64, u64)> = Vec::new();
        let mut optics = Vec::new();
        let mut rows = Vec::with_capacity(particles.len());
        for p in particles {
            let key = (p.optics_group, p.ctf.voltage_kv.to_bits(), p.ctf.cs_mm.to_bits(), p.ctf.amp_contrast.to_bits());
            let g = match keys.iter().position(|k| *k == key) {
                Some(g) => g,
                None => {
                    keys.push(key);
                    let name = self.optics_groups.iter().find(|o| o.id == p.optics_group).map(|o| o.name.clone());
                    let id = keys.len();
                    optics.push(StarOptics {
                        name: name
                            .filter(|_| keys.iter().filter(|k| k.0 == p.optics_group).count() == 1)
                            .unwrap_or_else(|| format!("opticsGroup{id}")),
                        voltage_kv: p.ctf.voltage_kv,
                        cs_mm: p.ctf.cs_mm,
                        amp_contrast: p.ctf.amp_contrast,
                    });
                    keys.len() - 1
                }
            };
            let (rot, tilt, psi) = if self.has_poses { matrix_to_euler(&p.pose.rot) } else { (0.0, 0.0, 0.0) };
            rows.push(StarParticle {
                image_name: format!("{:06}@{}", p.index + 1, names[p.stack]),
                angles_deg: [rot, tilt, psi],
                origin_a: p.pose.origin_a,
                ctf: p.ctf,
                optics_group: g + 1,
                random_subset: p.random_subset,
            });
        }
        let layout = StarLayout {
            apix: self.apix,
            box_px: self.box_px,
            poses: self.has_poses,
            ctf: self.has_ctf,
            premultiplied_column: false,
            decimals: StarDecimals::Trimmed,
        };
        write_relion31(path, &layout, &optics, &rows)?;
        Ok(())
    }
}
