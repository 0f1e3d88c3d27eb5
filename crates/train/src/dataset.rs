//! Particle sets: every particle's image, pose, CTF, optics group and pixel size, from a
//! RELION STAR file (3.0 or 3.1+), a cryoSPARC `.cs` file, or an `.mrcs` stack with cryoDRGN
//! pose and CTF pickles — one model for all of them.
//!
//! Conventions (the project's contract):
//! * poses are RELION's `A` (a volume point `r` lands at `A·r`), origins in Å with RELION's sign
//!   (`rlnOriginXAngst`; 3.0 files give pixels, multiplied by the pixel size here);
//! * a cryoSPARC pose is a rotation vector `v` with `A = R(v)ᵀ`, its shift is in pixels with
//!   the same sign as `rlnOrigin`;
//! * a cryoDRGN pose pickle holds `(A, t)` with `t·D = +origin` in pixels;
//! * CTF values missing from a file take RELION's defaults (200 kV, Cs 0, Q0 0, ΔfV = ΔfU,
//!   B 0, scale 1, phase shift 0) and each default used is reported in [`ParticleSet::warnings`];
//! * contrast: images are expected "white" (protein bright). Raw-polarity data (cryoSPARC
//!   `blob/sign = −1`) are inverted automatically, and `invert` inverts on request; both are
//!   applied by [`ParticleSet::read_image`].
//!
//! Images are read lazily from memory-mapped stacks (each file opened once); a stack larger
//! than memory is fine.
//!
//! Pixel size: an explicit override wins over the metadata (a difference is reported as a
//! warning); the metadata win over the MRC header (a difference is a warning); the header is
//! used only when the metadata have none; no pixel size anywhere is an error.

use cryosplat_core::ctf::CtfParams;
use cryosplat_core::pose::{Pose, IDENTITY};
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::{cryosparc_rotvec_to_matrix, euler_to_matrix};
use cryosplat_formats::mrc::MrcFile;
use cryosplat_formats::star::{self, Table};
use cryosplat_formats::FormatError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A problem with a particle set: the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
}

impl DatasetError {
    fn invalid(path: &Path, msg: impl Into<String>) -> Self {
        DatasetError::Invalid { path: path.to_path_buf(), msg: msg.into() }
    }
}

pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

/// How to load a particle set.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Folder that image paths are relative to (default: the metadata file's folder).
    pub datadir: Option<PathBuf>,
    /// cryoDRGN pose pickle (for an `.mrcs` input, or to override the metadata's poses).
    pub poses: Option<PathBuf>,
    /// cryoDRGN CTF pickle.
    pub ctf: Option<PathBuf>,
    /// Pixel size override (Å).
    pub apix: Option<f64>,
    /// Invert contrast on reading (in addition to any automatic inversion).
    pub invert: bool,
}

/// One particle.
#[derive(Clone, Debug, PartialEq)]
pub struct Particle {
    /// Index into [`ParticleSet::stacks`].
    pub stack: usize,
    /// 0-based image index in that stack.
    pub index: usize,
    pub pose: Pose,
    pub ctf: CtfParams,
    pub optics_group: u32,
    /// `rlnRandomSubset` (1 or 2) when the metadata give one.
    pub random_subset: Option<u8>,
}

/// An optics group's summary.
#[derive(Clone, Debug, PartialEq)]
pub struct OpticsGroup {
    pub id: u32,
    pub name: String,
    pub voltage_kv: f64,
    pub cs_mm: f64,
    pub amp_contrast: f64,
}

/// A set of particles with everything needed to use them.
#[derive(Debug)]
pub struct ParticleSet {
    /// The metadata file.
    pub source: PathBuf,
    pub particles: Vec<Particle>,
    pub stacks: Vec<PathBuf>,
    pub box_px: usize,
    pub apix: f64,
    pub has_poses: bool,
    pub has_ctf: bool,
    /// Contrast is inverted on reading.
    pub invert: bool,
    pub optics_groups: Vec<OpticsGroup>,
    /// Everything worth telling the user (defaults used, automatic inversion, header quirks).
    pub warnings: Vec<String>,
    handles: Vec<OnceLock<std::result::Result<MrcFile, String>>>,
}

const RELION_DEFAULTS: [(&str, f64); 7] = [
    ("rlnVoltage", 200.0),
    ("rlnSphericalAberration", 0.0),
    ("rlnAmplitudeContrast", 0.0),
    ("rlnDefocusAngle", 0.0),
    ("rlnCtfBfactor", 0.0),
    ("rlnCtfScalefactor", 1.0),
    ("rlnPhaseShift", 0.0),
];

/// Split `NNNNNN@path` into a 0-based index and the path.
fn parse_image_name(v: &str, path: &Path, line: usize) -> Result<(usize, String)> {
    let (n, p) = v.split_once('@').ok_or_else(|| {
        FormatError::text(path, line, format!("image name {v:?} is not of the form NNNNNN@stack.mrcs"))
    })?;
    let n: usize = n.trim().parse().map_err(|_| FormatError::text(path, line, format!("image number in {v:?} is not a whole number")))?;
    if n == 0 {
        return Err(FormatError::text(path, line, format!("image number in {v:?} is 0; STAR image numbers start at 1")).into());
    }
    Ok((n - 1, p.to_string()))
}

impl ParticleSet {
    /// Load any supported input: `.star`, `.cs`, or an MRC stack (with `opts.poses`/`opts.ctf`).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<ParticleSet> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let mut set = match ext.as_str() {
            "star" => Self::from_star(path, opts)?,
            "cs" => Self::from_cs(path, opts)?,
            "mrcs" | "mrc" | "st" => Self::from_stack(path, opts)?,
            _ => {
                return Err(DatasetError::invalid(
                    path,
                    "unknown particle file type: expected .star (RELION), .cs (cryoSPARC) or .mrcs (with --poses/--ctf)",
                ))
            }
        };
        if opts.invert {
            set.invert = !set.invert;
            set.warnings.push("contrast is inverted on request".into());
        }
        if let Some(c) = &opts.ctf {
            set.apply_ctf_pickle(c)?;
        }
        set.settle_box_and_apix(opts)?;
        if let Some(p) = &opts.poses {
            set.apply_pose_pickle(p)?;
        }
        Ok(set)
    }

    fn empty(source: &Path) -> ParticleSet {
        ParticleSet {
            source: source.to_path_buf(),
            particles: Vec::new(),
            stacks: Vec::new(),
            box_px: 0,
            apix: 0.0,
            has_poses: false,
            has_ctf: false,
            invert: false,
            optics_groups: Vec::new(),
            warnings: Vec::new(),
            handles: Vec::new(),
        }
    }

    fn stack_id(&mut self, p: PathBuf) -> usize {
        if let Some(i) = self.stacks.iter().position(|s| *s == p) {
            return i;
        }
        self.stacks.push(p);
        self.handles.push(OnceLock::new());
        self.stacks.len() - 1
    }

    fn base_dir(path: &Path, opts: &LoadOptions) -> PathBuf {
        opts.datadir.clone().unwrap_or_else(|| path.parent().map(Path::to_path_buf).unwrap_or_default())
    }

    /// RELION 3.0 or 3.1+ STAR.
    fn from_star(path: &Path, opts: &LoadOptions) -> Result<ParticleSet> {
        let sf = star::read(path)?;
        let pblock = sf
            .block("particles")
            .filter(|b| b.table().is_some_and(|t| t.column("rlnImageName").is_some()))
            .or_else(|| sf.blocks.iter().find(|b| b.table().is_some_and(|t| t.column("rlnImageName").is_some())))
            .ok_or_else(|| DatasetError::invalid(path, "no table with an rlnImageName column (required: the particle images)"))?;
        let pt = pblock.table().expect("checked above");
        let optics = sf.block("optics").and_then(|b| b.table());
        let mut set = Self::empty(path);
        let base = Self::base_dir(path, opts);
        // Optics groups: id → row.
        let mut optics_rows: Vec<(u32, usize)> = Vec::new();
        let mut optics_apix: Vec<(u32, f64)> = Vec::new();
        let mut optics_box: Option<usize> = None;
        if let Some(o) = optics {
            let gcol = o.column("rlnOpticsGroup").ok_or_else(|| DatasetError::invalid(path, "data_optics has no rlnOpticsGroup column"))?;
            for r in 0..o.len() {
                let id = o.f64(path, r, gcol)? as u32;
                optics_rows.push((id, r));
                if let Some(a) = o.f64_opt(path, r, "rlnImagePixelSize")? {
                    optics_apix.push((id, a));
                }
                if let Some(b) = o.f64_opt(path, r, "rlnImageSize")? {
                    optics_box = Some(b as usize);
                }
                set.optics_groups.push(OpticsGroup {
                    id,
                    name: o.column("rlnOpticsGroupName").map(|c| o.get(r, c).to_string()).unwrap_or_else(|| format!("opticsGroup{id}")),
                    voltage_kv: o.f64_opt(path, r, "rlnVoltage")?.unwrap_or(200.0),
                    cs_mm: o.f64_opt(path, r, "rlnSphericalAberration")?.unwrap_or(0.0),
                    amp_contrast: o.f64_opt(path, r, "rlnAmplitudeContrast")?.unwrap_or(0.0),
                });
            }
        }
        let name_col = pt.column("rlnImageName").expect("checked above");
        let gcol = pt.column("rlnOpticsGroup");
        let has_angles = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"].iter().all(|l| pt.column(l).is_some());
        let has_defocus = pt.column("rlnDefocusU").is_some();
        set.has_poses = has_angles;
        set.has_ctf = has_defocus;
        let mut defaults_used: Vec<&str> = Vec::new();
        let mut apix_30: Option<f64> = None;
        for r in 0..pt.len() {
            let line = pt.row_lines[r];
            let (index, rel) = parse_image_name(pt.get(r, name_col), path, line)?;
            let stack = set.stack_id(base.join(rel));
            let group = match gcol {
                Some(c) => pt.f64(path, r, c)? as u32,
                None => 1,
            };
            let orow = optics_rows.iter().find(|(id, _)| *id == group).map(|&(_, row)| row);
            if optics.is_some() && orow.is_none() {
                return Err(FormatError::text(path, line, format!("optics group {group} is not in data_optics")).into());
            }
            // A particle value overrides its optics group, which overrides the defaults.
            let value = |label: &'static str| -> Result<Option<f64>> {
                if let Some(v) = pt.f64_opt(path, r, label)? {
                    return Ok(Some(v));
                }
                if let (Some(o), Some(row)) = (optics, orow) {
                    if let Some(v) = o.f64_opt(path, row, label)? {
                        return Ok(Some(v));
                    }
                }
                Ok(None)
            };
            let mut with_default = |label: &'static str| -> Result<f64> {
                match value(label)? {
                    Some(v) => Ok(v),
                    None => {
                        if !defaults_used.contains(&label) {
                            defaults_used.push(label);
                        }
                        Ok(RELION_DEFAULTS.iter().find(|(l, _)| *l == label).map(|&(_, v)| v).expect("known default"))
                    }
                }
            };
            let voltage_kv = with_default("rlnVoltage")?;
            let cs_mm = with_default("rlnSphericalAberration")?;
            let amp_contrast = with_default("rlnAmplitudeContrast")?;
            let defocus_angle_deg = with_default("rlnDefocusAngle")?;
            let bfactor_a2 = with_default("rlnCtfBfactor")?;
            let scale = with_default("rlnCtfScalefactor")?;
            let phase_shift_deg = with_default("rlnPhaseShift")?;
            let du = pt.f64_opt(path, r, "rlnDefocusU")?.unwrap_or(0.0);
            let dv = match pt.f64_opt(path, r, "rlnDefocusV")? {
                Some(v) => v,
                None => {
                    if has_defocus && !defaults_used.contains(&"rlnDefocusV") {
                        defaults_used.push("rlnDefocusV");
                    }
                    du
                }
            };
            let ctf = CtfParams { voltage_kv, cs_mm, amp_contrast, defocus_u_a: du, defocus_v_a: dv, defocus_angle_deg, phase_shift_deg, bfactor_a2, scale };
            if has_defocus {
                ctf.validate().map_err(|e| FormatError::text(path, line, e.to_string()))?;
            }
            // Pixel size for this row (3.0: from magnification and detector pixel).
            let row_apix = match (pt.f64_opt(path, r, "rlnDetectorPixelSize")?, pt.f64_opt(path, r, "rlnMagnification")?) {
                (Some(dp), Some(mag)) if mag > 0.0 => Some(1e4 * dp / mag),
                _ => None,
            };
            if apix_30.is_none() {
                apix_30 = row_apix;
            }
            let apix_row = optics_apix.iter().find(|(id, _)| *id == group).map(|&(_, a)| a).or(row_apix);
            let rot = if has_angles {
                euler_to_matrix(
                    pt.f64_opt(path, r, "rlnAngleRot")?.unwrap_or(0.0),
                    pt.f64_opt(path, r, "rlnAngleTilt")?.unwrap_or(0.0),
                    pt.f64_opt(path, r, "rlnAnglePsi")?.unwrap_or(0.0),
                )
            } else {
                IDENTITY
            };
            let origin_a = match (pt.f64_opt(path, r, "rlnOriginXAngst")?, pt.f64_opt(path, r, "rlnOriginYAngst")?) {
                (Some(x), Some(y)) => [x, y],
                _ => match (pt.f64_opt(path, r, "rlnOriginX")?, pt.f64_opt(path, r, "rlnOriginY")?) {
                    (Some(x), Some(y)) => {
                        let a = apix_row.or(opts.apix).ok_or_else(|| {
                            FormatError::text(path, line, "origins are in pixels (rlnOriginX/Y) but no pixel size is known; give --apix")
                        })?;
                        [x * a, y * a]
                    }
                    _ => [0.0, 0.0],
                },
            };
            let random_subset = match pt.f64_opt(path, r, "rlnRandomSubset")? {
                Some(v) if v == 1.0 || v == 2.0 => Some(v as u8),
                Some(v) => return Err(FormatError::text(path, line, format!("rlnRandomSubset is {v}; expected 1 or 2")).into()),
                None => None,
            };
            set.particles.push(Particle { stack, index, pose: Pose { rot, origin_a }, ctf, optics_group: group, random_subset });
        }
        if set.particles.is_empty() {
            return Err(DatasetError::invalid(path, "the particle table has no rows"));
        }
        if has_defocus {
            for l in &defaults_used {
                set.warnings.push(format!("{l} is missing; RELION's default is used"));
            }
        } else {
            set.warnings.push("no CTF parameters (rlnDefocusU) in the file".into());
        }
        // Pixel size from the metadata: optics groups (must agree) or 3.0 magnification.
        let mut meta_apix = None;
        for &(_, a) in &optics_apix {
            match meta_apix {
                None => meta_apix = Some(a),
                Some(b) if (a - b).abs() > 1e-4 * b => {
                    return Err(DatasetError::invalid(path, format!("optics groups have different pixel sizes ({b} and {a} Å); split the file by optics group")));
                }
                _ => {}
            }
        }
        set.apix = meta_apix.or(apix_30).unwrap_or(0.0);
        set.box_px = optics_box.unwrap_or(0);
        Ok(set)
    }

    /// An MRC stack on its own (poses and CTF come from pickles).
    fn from_stack(path: &Path, _opts: &LoadOptions) -> Result<ParticleSet> {
        let f = MrcFile::open(path)?;
        let mut set = Self::empty(path);
        let n = f.len();
        let stack = set.stack_id(path.to_path_buf());
        set.particles = (0..n)
            .map(|i| Particle { stack, index: i, pose: Pose::default(), ctf: CtfParams::flat(), optics_group: 1, random_subset: None })
            .collect();
        set.box_px = f.header().nx;
        set.apix = 0.0;
        Ok(set)
    }

    /// cryoSPARC `.cs`.
    fn from_cs(path: &Path, opts: &LoadOptions) -> Result<ParticleSet> {
        let cs = cryosplat_formats::cs::CsFile::read(path)?;
        let mut set = Self::empty(path);
        let base = Self::base_dir(path, opts);
        let n = cs.len();
        let paths = cs.blob_paths()?;
        let idx = cs.index_column("blob/idx")?;
        let blob_apix = cs.f64_column_opt("blob/psize_A")?;
        let shape = cs.vec_column_opt::<2>("blob/shape")?;
        set.apix = blob_apix.as_ref().map(|v| v[0]).unwrap_or(0.0);
        set.box_px = shape.as_ref().map(|v| v[0][1] as usize).unwrap_or(0);
        if let Some(sign) = cs.f64_column_opt("blob/sign")? {
            if sign.iter().any(|&s| s < 0.0) {
                set.invert = true;
                set.warnings.push("blob/sign is −1 (dark particles, raw polarity): contrast is inverted automatically".into());
            }
        }
        let poses = cs.vec_column_opt::<3>("alignments3D/pose")?;
        let shifts = cs.vec_column_opt::<2>("alignments3D/shift")?;
        let align_apix = cs.f64_column_opt("alignments3D/psize_A")?;
        set.has_poses = poses.is_some();
        let df1 = cs.f64_column_opt("ctf/df1_A")?;
        set.has_ctf = df1.is_some();
        let col = |name: &str, default: f64, set: &mut ParticleSet| -> Result<Vec<f64>> {
            Ok(match cs.f64_column_opt(name)? {
                Some(v) => v,
                None => {
                    if df1.is_some() {
                        set.warnings.push(format!("{name} is missing; the default {default} is used"));
                    }
                    vec![default; n]
                }
            })
        };
        let kv = col("ctf/accel_kv", 200.0, &mut set)?;
        let cs_mm = col("ctf/cs_mm", 0.0, &mut set)?;
        let q0 = col("ctf/amp_contrast", 0.0, &mut set)?;
        let df2 = match cs.f64_column_opt("ctf/df2_A")? {
            Some(v) => v,
            None => df1.clone().unwrap_or_else(|| vec![0.0; n]),
        };
        let ang = col("ctf/df_angle_rad", 0.0, &mut set)?;
        let phase = col("ctf/phase_shift_rad", 0.0, &mut set)?;
        let bfac = cs.f64_column_opt("ctf/bfactor")?.unwrap_or_else(|| vec![0.0; n]);
        let scale = cs.f64_column_opt("ctf/scale")?.unwrap_or_else(|| vec![1.0; n]);
        for i in 0..n {
            let stack = set.stack_id(base.join(&paths[i]));
            let rot = match &poses {
                Some(p) => cryosparc_rotvec_to_matrix([p[i][0], p[i][1], p[i][2]]),
                None => IDENTITY,
            };
            // Shifts are pixels of the alignment's pixel size, same sign as rlnOrigin.
            let px_a = align_apix.as_ref().map(|v| v[i]).filter(|&a| a > 0.0).unwrap_or(set.apix);
            let origin_a = match &shifts {
                Some(s) => [s[i][0] * px_a, s[i][1] * px_a],
                None => [0.0, 0.0],
            };
            let ctf = CtfParams {
                voltage_kv: kv[i],
                cs_mm: cs_mm[i],
                amp_contrast: q0[i],
                defocus_u_a: df1.as_ref().map(|v| v[i]).unwrap_or(0.0),
                defocus_v_a: df2[i],
                defocus_angle_deg: ang[i].to_degrees(),
                phase_shift_deg: phase[i].to_degrees(),
                bfactor_a2: bfac[i],
                scale: if scale[i] != 0.0 { scale[i] } else { 1.0 },
            };
            if df1.is_some() {
                ctf.validate().map_err(|e| DatasetError::invalid(path, format!("particle {i}: {e}")))?;
            }
            set.particles.push(Particle { stack, index: idx[i] as usize, pose: Pose { rot, origin_a }, ctf, optics_group: 1, random_subset: None });
        }
        if n == 0 {
            return Err(DatasetError::invalid(path, "the file holds no particles"));
        }
        Ok(set)
    }

    /// Apply a cryoDRGN pose pickle: `(rot[N,3,3], trans[N,2])` or `rot[N,3,3]` alone.
    /// Needs the box and pixel size (translations are fractions of the box).
    fn apply_pose_pickle(&mut self, p: &Path) -> Result<()> {
        let (rots, trans) = cryosplat_formats::pickle::read_poses(p)?;
        if rots.len() != self.particles.len() {
            return Err(DatasetError::invalid(p, format!("{} poses for {} particles", rots.len(), self.particles.len())));
        }
        let d = self.box_px as f64;
        for (i, part) in self.particles.iter_mut().enumerate() {
            part.pose.rot = rots[i];
            part.pose.origin_a = match &trans {
                Some(t) => [t[i][0] * d * self.apix, t[i][1] * d * self.apix],
                None => [0.0, 0.0],
            };
        }
        self.has_poses = true;
        Ok(())
    }

    /// Apply a cryoDRGN CTF pickle: float (N, 9): D, apix, dfU, dfV, dfang (°), kV, Cs (mm), Q0, phase (°).
    fn apply_ctf_pickle(&mut self, p: &Path) -> Result<()> {
        let rows = cryosplat_formats::pickle::read_ctf(p)?;
        if rows.len() != self.particles.len() {
            return Err(DatasetError::invalid(p, format!("{} CTF rows for {} particles", rows.len(), self.particles.len())));
        }
        for (i, (part, r)) in self.particles.iter_mut().zip(&rows).enumerate() {
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
            part.ctf.validate().map_err(|e| DatasetError::invalid(p, format!("row {i}: {e}")))?;
        }
        let (d, apix) = (rows[0][0], rows[0][1]);
        if self.apix == 0.0 && apix > 0.0 {
            // The pickle describes images of D px at apix; binned images of box px have
            // apix·D/box (cryoDRGN rescales the same way).
            if self.box_px > 0 && d > 0.0 && (d as usize) != self.box_px {
                self.apix = apix * d / self.box_px as f64;
                self.warnings.push(format!(
                    "the CTF pickle describes {d} px images at {apix} Å/px; the {} px images have {:.4} Å/px",
                    self.box_px, self.apix
                ));
            } else {
                self.apix = apix;
            }
        }
        if self.box_px == 0 && d > 0.0 {
            self.box_px = d as usize;
        }
        self.has_ctf = true;
        Ok(())
    }

    fn handle(&self, stack: usize) -> Result<&MrcFile> {
        let h = self.handles[stack].get_or_init(|| MrcFile::open(&self.stacks[stack]).map_err(|e| e.to_string()));
        h.as_ref().map_err(|e| DatasetError::invalid(&self.source, format!("cannot use particle stack: {e}")))
    }

    /// Box and pixel size from the metadata, the first stack's header and the override
    /// (rules in the module docs); checks every stack's size and every index against it.
    fn settle_box_and_apix(&mut self, opts: &LoadOptions) -> Result<()> {
        let first = self.handle(self.particles[0].stack)?;
        let h = first.header().clone();
        let header_apix = h.apix;
        let first_path = self.stacks[self.particles[0].stack].display().to_string();
        for w in &h.warnings {
            self.warnings.push(format!("{first_path}: {w}"));
        }
        let (nx, ny) = (h.nx, h.ny);
        if nx != ny {
            return Err(DatasetError::invalid(&self.stacks[self.particles[0].stack], format!("images are {nx}×{ny}; cryosplat needs square images")));
        }
        if self.box_px == 0 {
            self.box_px = nx;
        } else if self.box_px != nx {
            return Err(DatasetError::invalid(&self.source, format!("the metadata say the images are {} px but {} holds {nx}×{ny} images", self.box_px, self.stacks[self.particles[0].stack].display())));
        }
        if self.apix == 0.0 {
            if let Some(a) = header_apix.filter(|&a| a > 0.0 && opts.apix.is_none()) {
                self.apix = a;
                self.warnings.push(format!("pixel size {a} Å taken from the MRC header (the metadata have none)"));
            }
        } else if let Some(a) = header_apix {
            if (a - self.apix).abs() > 1e-3 * self.apix {
                self.warnings.push(format!("the MRC header says {a} Å/px; the metadata's {} Å/px is used", self.apix));
            }
        }
        if let Some(o) = opts.apix {
            if !(o > 0.0 && o.is_finite()) {
                return Err(DatasetError::invalid(&self.source, format!("pixel size override {o} Å is not a positive number")));
            }
            if self.apix > 0.0 && (o - self.apix).abs() > 1e-3 * self.apix {
                self.warnings.push(format!("pixel size {o} Å given on the command line overrides the metadata's {} Å", self.apix));
                // Origins read in Å from the metadata stay in Å.
            }
            self.apix = o;
        }
        if !(self.apix > 0.0) {
            return Err(DatasetError::invalid(&self.source, "no pixel size in the metadata or the image header; give one with --apix"));
        }
        // Every stack: same image size, every index in range.
        let mut max_index = vec![0usize; self.stacks.len()];
        for p in &self.particles {
            max_index[p.stack] = max_index[p.stack].max(p.index);
        }
        for (s, &mx) in max_index.iter().enumerate() {
            let f = self.handle(s)?;
            let fh = f.header();
            if fh.nx != nx || fh.ny != ny {
                return Err(DatasetError::invalid(&self.stacks[s], format!("images are {}×{}, but the first stack's are {nx}×{ny}", fh.nx, fh.ny)));
            }
            if mx >= f.len() {
                return Err(DatasetError::invalid(
                    &self.source,
                    format!("image {} (1-based) of {} is requested but the stack holds {} images", mx + 1, self.stacks[s].display(), f.len()),
                ));
            }
        }
        Ok(())
    }

    /// Number of particles.
    pub fn len(&self) -> usize {
        self.particles.len()
    }
    pub fn is_empty(&self) -> bool {
        self.particles.is_empty()
    }

    /// Read particle `i` into `out` (`box·box`, centred, x fastest), inverted if the set says so.
    /// NaN or infinite pixels are an error naming the stack, the image and the count.
    pub fn read_image(&self, i: usize, out: &mut [f32]) -> Result<()> {
        let p = &self.particles[i];
        self.handle(p.stack)?.read_image(p.index, out)?;
        if self.invert {
            out.iter_mut().for_each(|v| *v = -*v);
        }
        Ok(())
    }

    /// An error unless every particle has a pose.
    pub fn require_poses(&self) -> Result<()> {
        if self.has_poses {
            Ok(())
        } else {
            Err(DatasetError::invalid(&self.source, "no particle poses (Euler angles, alignments3D/pose or --poses): a reconstruction needs them; refine the particles first"))
        }
    }

    /// An error unless every particle has CTF parameters.
    pub fn require_ctf(&self) -> Result<()> {
        if self.has_ctf {
            Ok(())
        } else {
            Err(DatasetError::invalid(&self.source, "no CTF parameters (rlnDefocusU, ctf/df1_A or --ctf); give them, or use --no-ctf for data without a CTF"))
        }
    }

    /// Keep only the particles at `indices` (in that order).
    pub fn retain_indices(&mut self, indices: &[usize]) -> Result<()> {
        let n = self.particles.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(DatasetError::invalid(&self.source, format!("subset index {bad} is out of range: the set has {n} particles")));
        }
        self.particles = indices.iter().map(|&i| self.particles[i].clone()).collect();
        if self.particles.is_empty() {
            return Err(DatasetError::invalid(&self.source, "the subset is empty"));
        }
        Ok(())
    }

    /// Read a subset file: one 0-based particle index per line (blank lines and `#` comments ignored).
    pub fn read_index_file(path: &Path) -> Result<Vec<usize>> {
        let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
        let mut out = Vec::new();
        for (k, line) in text.lines().enumerate() {
            let t = line.split('#').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            out.push(t.parse().map_err(|_| FormatError::text(path, k + 1, format!("{t:?} is not a 0-based particle index")))?);
        }
        Ok(out)
    }

    /// Gold-standard halves: `rlnRandomSubset` when every particle has it, otherwise a seeded
    /// random split into two halves of equal size (±1). Returns particle indices of A and B.
    pub fn half_split(&self, seed: u64) -> (Vec<usize>, Vec<usize>) {
        if self.particles.iter().all(|p| p.random_subset.is_some()) {
            let a: Vec<usize> = (0..self.len()).filter(|&i| self.particles[i].random_subset == Some(1)).collect();
            let b: Vec<usize> = (0..self.len()).filter(|&i| self.particles[i].random_subset == Some(2)).collect();
            if !a.is_empty() && !b.is_empty() {
                return (a, b);
            }
        }
        let mut idx: Vec<usize> = (0..self.len()).collect();
        Rng::new(seed ^ 0x4841_4c46).shuffle(&mut idx);
        let mut b = idx.split_off(idx.len() / 2);
        let mut a = idx;
        a.sort_unstable();
        b.sort_unstable();
        (a, b)
    }

    /// Whether the halves come from `rlnRandomSubset`.
    pub fn has_random_subsets(&self) -> bool {
        self.particles.iter().all(|p| p.random_subset.is_some())
    }

    /// Write the set as a RELION 3.1 STAR file (one optics group), image names relative to
    /// the STAR file's folder when possible.
    pub fn write_star(&self, path: &Path) -> Result<()> {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let p0 = &self.particles[0].ctf;
        let mut optics = Table {
            labels: ["rlnOpticsGroup", "rlnOpticsGroupName", "rlnAmplitudeContrast", "rlnSphericalAberration", "rlnVoltage", "rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Default::default()
        };
        optics.push_row(vec!["1".into(), "opticsGroup1".into(), fmt(p0.amp_contrast), fmt(p0.cs_mm), fmt(p0.voltage_kv), fmt(self.apix), self.box_px.to_string(), "2".into()]);
        let mut parts = Table {
            labels: ["rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor", "rlnCtfScalefactor", "rlnOpticsGroup", "rlnRandomSubset"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Default::default()
        };
        let (ha, _) = self.half_split(0);
        let mut in_a = vec![false; self.len()];
        for i in ha {
            in_a[i] = true;
        }
        for (i, p) in self.particles.iter().enumerate() {
            let stack = &self.stacks[p.stack];
            let rel = stack.strip_prefix(&dir).unwrap_or(stack);
            let (rot, tilt, psi) = cryosplat_core::rotation::matrix_to_euler(&p.pose.rot);
            let subset = p.random_subset.unwrap_or(if in_a[i] { 1 } else { 2 });
            parts.push_row(vec![
                format!("{:06}@{}", p.index + 1, rel.display()),
                fmt(rot),
                fmt(tilt),
                fmt(psi),
                fmt(p.pose.origin_a[0]),
                fmt(p.pose.origin_a[1]),
                fmt(p.ctf.defocus_u_a),
                fmt(p.ctf.defocus_v_a),
                fmt(p.ctf.defocus_angle_deg),
                fmt(p.ctf.phase_shift_deg),
                fmt(p.ctf.bfactor_a2),
                fmt(p.ctf.scale),
                "1".into(),
                subset.to_string(),
            ]);
        }
        star::write(path, &[("optics", &optics), ("particles", &parts)])?;
        Ok(())
    }

    /// Defocus range (mean of U and V) in Å, for summaries.
    pub fn defocus_range_a(&self) -> (f64, f64) {
        self.particles.iter().map(|p| 0.5 * (p.ctf.defocus_u_a + p.ctf.defocus_v_a)).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), d| (lo.min(d), hi.max(d)))
    }
}

/// Numbers in STAR files: full precision, no exponent for ordinary values.
fn fmt(v: f64) -> String {
    let s = format!("{v:.6}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}
