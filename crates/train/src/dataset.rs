//! Particle sets: every particle's image, pose, CTF, optics group and pixel size, from a
//! RELION STAR file (3.0 or 3.1+), a cryoSPARC `.cs` file, or an MRC stack with cryoDRGN pose
//! and CTF pickles — one model for all of them.
//!
//! # Conventions (the project's contract)
//! * Poses are RELION's `A` (a volume point `r` lands at `A·r`), from `rlnAngleRot/Tilt/Psi`
//!   (ZYZ, degrees); origins are in Å with RELION's sign (`rlnOriginXAngst`: the recorded image
//!   is the centred projection moved by `−o`). RELION 3.0 files give `rlnOriginX/Y` in pixels.
//! * cryoSPARC: `A = R(alignments3D/pose)ᵀ`; `alignments3D/shift` is in pixels of
//!   `alignments3D/psize_A` with the sign of `rlnOrigin`, so `o = shift · psize_align` in Å;
//!   `blob/idx` is 0-based; `alignments3D/split` (0/1) gives the half sets.
//! * cryoDRGN: a pose pickle holds `(A, t)` with `t·D = +o` in pixels (`D` the box); a CTF
//!   pickle holds `[D, apix, ΔfU, ΔfV, angle°, kV, Cs mm, Q0, phase°]` per particle.
//! * CTF values missing from a file take RELION's defaults (200 kV, Cs 0, Q0 0, ΔfV = ΔfU,
//!   angle 0, B 0, scale 1, phase shift 0); every default used is reported once in
//!   [`ParticleSet::warnings`]. A particle row overrides its optics group.
//! * Contrast: images are expected "white" (protein bright). cryoSPARC's `blob/sign = −1`
//!   (dark, raw polarity) turns inversion on automatically, with a warning; the `invert`
//!   option toggles it (so `invert` on such a set cancels the automatic inversion, again
//!   with a warning). [`ParticleSet::read_image`] applies it.
//!
//! # Image files
//! `NNNNNN@path` names image `NNNNNN` (1-based) of a stack. A relative path is looked up, in
//! order, in the data folder (`datadir`, then its file name alone there), or else in the
//! metadata file's folder, its parents up to three levels (RELION project and cryoSPARC job
//! layouts), the current folder, and the file name alone in the metadata file's folder. The
//! first that exists wins; a warning says so when it is not the first candidate. Each stack is
//! opened once (memory-mapped) and shared; [`ParticleSet::cache_images`] optionally keeps all
//! images in memory. Every image read rejects NaN or infinite pixels.
//!
//! # Pixel size and box
//! * The box comes from the metadata (`rlnImageSize`, `blob/shape`) and the stacks; a
//!   disagreement, or non-square images, is an error.
//! * The pixel size comes from, in order: an explicit override (`apix`), the metadata
//!   (`rlnImagePixelSize`; RELION 3.0 `1e4·rlnDetectorPixelSize/rlnMagnification`;
//!   `blob/psize_A`; a CTF pickle's `apix·D/box`), the first stack's MRC header. Nothing at all
//!   is an error.
//! * Metadata and header disagreeing is a warning (headers often hold placeholders); the
//!   metadata win. An override that disagrees with the metadata is honoured with a warning
//!   (it is how a wrong RELION 3.0 magnification is corrected), and shifts keep their value
//!   in pixels: origins are rescaled by `override / metadata`, as RELION does.
//! * Optics groups with different pixel sizes or boxes are an error (split the file).

use cryosplat_core::ctf::CtfParams;
use cryosplat_core::pose::{Mat3, Pose, IDENTITY};
use cryosplat_core::rng::Rng;
use cryosplat_core::rotation::{cryosparc_rotvec_to_matrix, euler_to_matrix, matrix_to_euler};
use cryosplat_formats::cs::CsFile;
use cryosplat_formats::mrc::MrcFile;
use cryosplat_formats::star::{self, Table};
use cryosplat_formats::{pickle, FormatError};
use std::collections::HashMap;
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
    /// Folder that image paths are relative to (default: found from the metadata file's folder).
    pub datadir: Option<PathBuf>,
    /// cryoDRGN pose pickle (for an MRC stack input, or to replace the metadata's poses).
    pub poses: Option<PathBuf>,
    /// cryoDRGN CTF pickle (for an MRC stack input, or to replace the metadata's CTF).
    pub ctf: Option<PathBuf>,
    /// Pixel size override (Å).
    pub apix: Option<f64>,
    /// Toggle contrast inversion on reading (on top of any automatic inversion).
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
    /// Optics group id (`rlnOpticsGroup`, cryoSPARC `ctf/exp_group_id`; 1 when the file has none).
    pub optics_group: u32,
    /// Half set (1 or 2) from `rlnRandomSubset` or cryoSPARC's `alignments3D/split`.
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
    /// Pixel size the metadata give for this group, if any.
    pub apix: Option<f64>,
    /// Box the metadata give for this group, if any.
    pub box_px: Option<usize>,
    /// Number of particles in the group.
    pub particles: usize,
}

/// What the metadata file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// RELION 3.0 STAR (no optics table).
    Relion30,
    /// RELION 3.1+ STAR (`data_optics` + `data_particles`).
    Relion31,
    /// cryoSPARC `.cs`.
    CryoSparc,
    /// An MRC stack, with cryoDRGN pickles if given.
    Stack,
}

/// The unit the origins were read in, until the final pixel size is known.
#[derive(Clone, Copy, Debug, PartialEq)]
enum OriginUnit {
    /// Å, consistent with this metadata pixel size (if known).
    Angstrom(Option<f64>),
    /// Pixels of the images.
    Pixel,
}

/// A set of particles with everything needed to use them.
#[derive(Debug)]
pub struct ParticleSet {
    /// The metadata file.
    pub source: PathBuf,
    pub kind: SourceKind,
    pub particles: Vec<Particle>,
    /// The image stacks, resolved (see the module docs).
    pub stacks: Vec<PathBuf>,
    /// Image size in pixels (square images); 0 while unknown (metadata-only loads).
    pub box_px: usize,
    /// Pixel size in Å; 0 while unknown (metadata-only loads).
    pub apix: f64,
    pub has_poses: bool,
    pub has_ctf: bool,
    /// Contrast is inverted on reading.
    pub invert: bool,
    pub optics_groups: Vec<OpticsGroup>,
    /// Everything worth telling the user (defaults used, automatic inversion, header quirks),
    /// each once.
    pub warnings: Vec<String>,
    handles: Vec<OnceLock<std::result::Result<MrcFile, String>>>,
    cache: Option<Vec<f32>>,
    // Loading state: what the metadata say, before the stacks and options are consulted.
    meta_apix: Option<f64>,
    meta_box: Option<usize>,
    origin_unit: OriginUnit,
    /// A CTF pickle's `(D, apix)`.
    pickle_d_apix: Option<(f64, f64)>,
    /// A pose pickle's translations (fractions of the box) and its path.
    pickle_trans: Option<(Vec<[f64; 2]>, PathBuf)>,
    /// Stacks that were not found, by the name the metadata give them, and where they were sought.
    missing: Vec<String>,
    searched: String,
}

const RELION_DEFAULTS: [(&str, f64, &str); 7] = [
    ("rlnVoltage", 200.0, "200 kV"),
    ("rlnSphericalAberration", 0.0, "Cs 0 mm"),
    ("rlnAmplitudeContrast", 0.0, "Q0 0"),
    ("rlnDefocusAngle", 0.0, "0°"),
    ("rlnCtfBfactor", 0.0, "B 0 Å²"),
    ("rlnCtfScalefactor", 1.0, "scale 1"),
    ("rlnPhaseShift", 0.0, "phase shift 0°"),
];

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

/// Whether two pixel sizes differ by more than 0.1 %.
fn differ(a: f64, b: f64) -> bool {
    (a - b).abs() > 1e-3 * a.abs().max(b.abs())
}

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

impl ParticleSet {
    /// Load any supported input (`.star`, `.cs`, or an MRC stack with `opts.poses`/`opts.ctf`),
    /// open its stacks, and check box, pixel size and image indices (rules in the module docs).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<ParticleSet> {
        let mut set = Self::read_metadata(path, opts)?;
        set.open_stacks(opts)?;
        Ok(set)
    }

    /// Load the metadata only: stacks are located but not opened, so the set can be described
    /// when the images are absent. Box and pixel size are 0 when only the images would tell.
    /// Call [`ParticleSet::open_stacks`] to finish loading.
    pub fn load_metadata(path: &Path, opts: &LoadOptions) -> Result<ParticleSet> {
        let mut set = Self::read_metadata(path, opts)?;
        set.finish(opts, None)?;
        Ok(set)
    }

    fn read_metadata(path: &Path, opts: &LoadOptions) -> Result<ParticleSet> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let mut set = match ext.as_str() {
            "star" => Self::from_star(path, opts)?,
            "cs" => Self::from_cs(path, opts)?,
            "mrcs" | "mrc" | "st" | "map" => Self::from_stack(path)?,
            _ => {
                return Err(DatasetError::invalid(
                    path,
                    "unknown particle file type: expected .star (RELION), .cs (cryoSPARC) or .mrcs (with --poses/--ctf)",
                ))
            }
        };
        if set.particles.is_empty() {
            return Err(DatasetError::invalid(path, "the file lists no particles"));
        }
        if let Some(c) = &opts.ctf {
            set.apply_ctf_pickle(c)?;
        }
        if let Some(p) = &opts.poses {
            set.apply_pose_pickle(p)?;
        }
        if opts.invert {
            set.invert = !set.invert;
            if set.invert {
                set.warn("contrast is inverted on request");
            } else {
                set.warn("inversion was requested, which cancels the automatic inversion: images are used as stored");
            }
        }
        set.build_optics_summary();
        set.check_subsets();
        Ok(set)
    }

    /// Open every stack (once), take the box and, if needed, the pixel size from the first
    /// one, and check that every stack has the same square images and every index exists.
    pub fn open_stacks(&mut self, opts: &LoadOptions) -> Result<()> {
        if let Some(rel) = self.missing.first() {
            let more = match self.missing.len() {
                1 => String::new(),
                k => format!(" ({k} of {} stacks are missing)", self.stacks.len()),
            };
            return Err(DatasetError::invalid(
                &self.source,
                format!("particle stack {rel} not found {}{more}; give the folder that holds the stacks with --datadir", self.searched),
            ));
        }
        let first = self.particles[0].stack;
        let h = self.handle(first)?.header().clone();
        let first_path = self.stacks[first].display().to_string();
        for w in &h.warnings {
            self.warn(format!("{first_path}: {w}"));
        }
        if h.nx != h.ny {
            return Err(DatasetError::invalid(&self.stacks[first], format!("images are {}×{}; cryosplat needs square images", h.nx, h.ny)));
        }
        self.finish(opts, Some((h.nx, h.apix)))?;
        // Every stack: same image size, every index in range.
        let mut max_index = vec![None::<(usize, usize)>; self.stacks.len()];
        for (i, p) in self.particles.iter().enumerate() {
            let m = &mut max_index[p.stack];
            if m.is_none_or(|(mx, _)| p.index > mx) {
                *m = Some((p.index, i));
            }
        }
        for (s, m) in max_index.iter().enumerate() {
            let Some((mx, who)) = *m else { continue };
            let f = self.handle(s)?;
            let fh = f.header();
            if fh.nx != h.nx || fh.ny != h.ny {
                return Err(DatasetError::invalid(
                    &self.stacks[s],
                    format!("images are {}×{}, but those of {first_path} are {}×{}", fh.nx, fh.ny, h.nx, h.ny),
                ));
            }
            if mx >= f.len() {
                return Err(DatasetError::invalid(
                    &self.source,
                    format!(
                        "particle {who} (0-based) refers to image {} (1-based) of {}, which holds only {} images",
                        mx + 1,
                        self.stacks[s].display(),
                        f.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn empty(source: &Path, kind: SourceKind) -> ParticleSet {
        ParticleSet {
            source: source.to_path_buf(),
            kind,
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
            cache: None,
            meta_apix: None,
            meta_box: None,
            origin_unit: OriginUnit::Angstrom(None),
            pickle_d_apix: None,
            pickle_trans: None,
            missing: Vec::new(),
            searched: String::new(),
        }
    }

    /// Record a warning once.
    fn warn(&mut self, msg: impl Into<String>) {
        let m = msg.into();
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }

    /// Add a stack (deduplicated by the name in the metadata) and return its index.
    fn stack_id(&mut self, rel: &str, base: &Base, names: &mut HashMap<String, usize>) -> usize {
        if let Some(&i) = names.get(rel) {
            return i;
        }
        let cands = base.candidates(Path::new(rel));
        let found = cands.iter().position(|c| c.is_file());
        let chosen = match found {
            Some(k) => {
                if k > 0 {
                    let dir = cands[k].parent().map(|d| d.display().to_string()).unwrap_or_default();
                    self.warn(format!("image paths are resolved against {dir} (e.g. {rel} was not found beside the metadata file)"));
                }
                cands[k].clone()
            }
            None => {
                self.missing.push(rel.to_string());
                self.searched = base.describe();
                cands[0].clone()
            }
        };
        self.stacks.push(chosen);
        self.handles.push(OnceLock::new());
        let i = self.stacks.len() - 1;
        names.insert(rel.to_string(), i);
        i
    }

    /// RELION 3.0 or 3.1+ STAR.
    fn from_star(path: &Path, opts: &LoadOptions) -> Result<ParticleSet> {
        let sf = star::read(path)?;
        let pt = sf
            .block("particles")
            .and_then(|b| b.tables.iter().find(|t| t.column("rlnImageName").is_some()))
            .or_else(|| sf.table_with("rlnImageName").map(|(_, t)| t))
            .ok_or_else(|| DatasetError::invalid(path, "no table with an rlnImageName column (required: it names the particle images)"))?;
        let optics = sf.block("optics").and_then(|b| b.table());
        let kind = if optics.is_some() { SourceKind::Relion31 } else { SourceKind::Relion30 };
        let mut set = Self::empty(path, kind);
        let base = Base::new(path, opts);
        let col = |label: &str| pt.f64_column(path, label);
        let n = pt.len();

        // Optics groups: id → row, with their pixel sizes and boxes.
        let mut group_rows: HashMap<u32, usize> = HashMap::new();
        if let Some(o) = optics {
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
                    set.warn(format!("optics group {id}: rlnCtfDataAreCtfPremultiplied = 1: the images are CTF-premultiplied, but cryosplat models raw particle images"));
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
        }
        // Per-particle columns (a value that is not a number is an error naming the line).
        let groups: Vec<u32> = match pt.column("rlnOpticsGroup") {
            Some(c) => (0..n)
                .map(|r| {
                    let g = pt.f64(path, r, c)?;
                    if g < 0.0 || g.fract() != 0.0 {
                        return Err(FormatError::text(path, pt.line(r), format!("optics group {g} is not a whole number")).into());
                    }
                    Ok(g as u32)
                })
                .collect::<Result<_>>()?,
            None => vec![1; n],
        };
        // Resolve every CTF field: particle column, else its optics group, else the default.
        let mut ctf_cols: Vec<Vec<f64>> = Vec::new();
        for (label, default, what) in RELION_DEFAULTS {
            let own = col(label)?;
            let ocol = optics.and_then(|o| o.column(label));
            let mut used_default = false;
            let values = (0..n)
                .map(|r| {
                    if let Some(v) = &own {
                        return Ok(v[r]);
                    }
                    if let (Some(o), Some(c)) = (optics, ocol) {
                        if let Some(&orow) = group_rows.get(&groups[r]) {
                            return Ok(o.f64(path, orow, c)?);
                        }
                    }
                    used_default = true;
                    Ok(default)
                })
                .collect::<Result<Vec<f64>>>()?;
            if used_default && pt.column("rlnDefocusU").is_some() {
                set.warn(format!("{label} is missing; RELION's default {what} is used"));
            }
            ctf_cols.push(values);
        }
        let du = col("rlnDefocusU")?;
        let dv = col("rlnDefocusV")?;
        set.has_ctf = du.is_some();
        if du.is_none() {
            set.warn("no CTF parameters (no rlnDefocusU column)");
        } else if dv.is_none() {
            set.warn("rlnDefocusV is missing; RELION's default ΔfV = ΔfU is used");
        }
        // Angles: all three, or rot and tilt (psi 0); psi alone is a 2D alignment.
        let (rot, tilt, psi) = (col("rlnAngleRot")?, col("rlnAngleTilt")?, col("rlnAnglePsi")?);
        set.has_poses = rot.is_some() && tilt.is_some();
        if set.has_poses && psi.is_none() {
            set.warn("rlnAnglePsi is missing; 0° is used");
        } else if !set.has_poses && (rot.is_some() || tilt.is_some() || psi.is_some()) {
            set.warn("the file has only some of rlnAngleRot, rlnAngleTilt, rlnAnglePsi (a 2D alignment?): no 3D poses");
        }
        // Origins: Å (3.1), else pixels (3.0).
        let (ox, oy) = match (col("rlnOriginXAngst")?, col("rlnOriginYAngst")?) {
            (Some(x), Some(y)) => (Some(x), Some(y)),
            (None, None) => {
                let (x, y) = (col("rlnOriginX")?, col("rlnOriginY")?);
                if x.is_some() || y.is_some() {
                    set.origin_unit = OriginUnit::Pixel;
                }
                (x, y)
            }
            (x, y) => (x, y),
        };
        if ox.is_some() != oy.is_some() {
            set.warn("only one of the two origin columns is present; the other is taken as 0");
        }
        // Pixel size and box of the metadata.
        let row_apix = match (col("rlnDetectorPixelSize")?, col("rlnMagnification")?) {
            (Some(dp), Some(mag)) => Some(
                (0..n)
                    .map(|r| {
                        if mag[r] > 0.0 && dp[r] > 0.0 {
                            Ok(1e4 * dp[r] / mag[r])
                        } else {
                            Err(FormatError::text(path, pt.line(r), "rlnMagnification and rlnDetectorPixelSize must be positive").into())
                        }
                    })
                    .collect::<Result<Vec<f64>>>()?,
            ),
            _ => None,
        };
        let subsets = col("rlnRandomSubset")?;
        let mut subsets_ok = true;
        if let Some(s) = &subsets {
            if let Some(r) = s.iter().position(|&v| v != 1.0 && v != 2.0) {
                set.warn(format!(
                    "rlnRandomSubset is {} on line {} (expected 1 or 2): half sets are drawn at random instead",
                    s[r],
                    pt.line(r)
                ));
                subsets_ok = false;
            }
        }
        let name_col = pt.column("rlnImageName").expect("the table was chosen for this column");
        let mut names = HashMap::new();
        for r in 0..n {
            let line = pt.line(r);
            let (index, rel) = parse_image_name(pt.get(r, name_col), path, line)?;
            let stack = set.stack_id(&rel, &base, &mut names);
            if optics.is_some() && !group_rows.contains_key(&groups[r]) {
                return Err(FormatError::text(path, line, format!("optics group {} is not in data_optics", groups[r])).into());
            }
            let ctf = CtfParams {
                voltage_kv: ctf_cols[0][r],
                cs_mm: ctf_cols[1][r],
                amp_contrast: ctf_cols[2][r],
                defocus_u_a: du.as_ref().map_or(0.0, |v| v[r]),
                defocus_v_a: dv.as_ref().or(du.as_ref()).map_or(0.0, |v| v[r]),
                defocus_angle_deg: ctf_cols[3][r],
                bfactor_a2: ctf_cols[4][r],
                scale: ctf_cols[5][r],
                phase_shift_deg: ctf_cols[6][r],
            };
            if set.has_ctf {
                ctf.validate().map_err(|e| FormatError::text(path, line, e.to_string()))?;
            }
            let rot_m = if set.has_poses {
                let a = |c: &Option<Vec<f64>>| c.as_ref().map_or(0.0, |v| v[r]);
                euler_to_matrix(a(&rot), a(&tilt), a(&psi))
            } else {
                IDENTITY
            };
            let origin = [ox.as_ref().map_or(0.0, |v| v[r]), oy.as_ref().map_or(0.0, |v| v[r])];
            let random_subset = subsets.as_ref().filter(|_| subsets_ok).map(|s| s[r] as u8);
            set.particles.push(Particle {
                stack,
                index,
                pose: Pose { rot: rot_m, origin_a: origin },
                ctf,
                optics_group: groups[r],
                random_subset,
            });
        }
        // One pixel size and one box for the whole set.
        let mut apix: Option<f64> = None;
        let used: std::collections::HashSet<u32> = groups.iter().copied().collect();
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
                match set.meta_box {
                    Some(c) if c != b => {
                        return Err(DatasetError::invalid(
                            path,
                            format!("optics groups have different image sizes ({c} and {b} px); split the file by optics group"),
                        ))
                    }
                    _ => set.meta_box = Some(b),
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
        set.meta_apix = apix;
        if set.origin_unit != OriginUnit::Pixel {
            set.origin_unit = OriginUnit::Angstrom(apix);
        }
        Ok(set)
    }

    /// cryoSPARC `.cs`.
    fn from_cs(path: &Path, opts: &LoadOptions) -> Result<ParticleSet> {
        let cs = CsFile::read(path)?;
        let mut set = Self::empty(path, SourceKind::CryoSparc);
        let base = Base::new(path, opts);
        let n = cs.len();
        let bad = |r: usize, what: &str, v: f64| DatasetError::invalid(path, format!("particle {r} (0-based): {what} is {v}"));
        let paths = cs.blob_paths()?;
        let idx = cs.index_column("blob/idx")?;
        if let Some(ps) = cs.f64_column_opt("blob/psize_A")? {
            let (lo, hi) = ps.iter().fold((f64::INFINITY, 0.0f64), |(l, h), &a| (l.min(a), h.max(a)));
            if lo.is_nan() || lo <= 0.0 || !hi.is_finite() {
                return Err(DatasetError::invalid(path, format!("blob/psize_A holds {lo}; expected a positive pixel size")));
            }
            if differ(lo, hi) {
                return Err(DatasetError::invalid(path, format!("particles have different pixel sizes (blob/psize_A {lo} to {hi} Å)")));
            }
            set.meta_apix = Some(ps[0]);
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
                    return Err(DatasetError::invalid(
                        path,
                        format!("particles have different image sizes ({} and {} px)", shape[0][0], s[0]),
                    ));
                }
            }
            set.meta_box = shape.first().map(|s| s[0] as usize);
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
        let poses = cs.vec_column_opt::<3>("alignments3D/pose")?;
        let shifts = cs.vec_column_opt::<2>("alignments3D/shift")?;
        let align_apix = cs.f64_column_opt("alignments3D/psize_A")?;
        set.has_poses = poses.is_some();
        if poses.is_none() && cs.has("alignments2D/pose") {
            set.warn("the file has 2D alignments only (alignments2D/*): no 3D poses");
        }
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
        let kv = col("ctf/accel_kv", 200.0, "200 kV", &mut set)?;
        let cs_mm = col("ctf/cs_mm", 0.0, "Cs 0 mm", &mut set)?;
        let q0 = col("ctf/amp_contrast", 0.0, "Q0 0", &mut set)?;
        let df2 = col("ctf/df2_A", f64::NAN, "ΔfV = ΔfU", &mut set)?;
        let ang = col("ctf/df_angle_rad", 0.0, "0 rad", &mut set)?;
        let phase = col("ctf/phase_shift_rad", 0.0, "phase shift 0", &mut set)?;
        let bfac = col("ctf/bfactor", 0.0, "B 0 Å²", &mut set)?;
        let scale = col("ctf/scale", 1.0, "scale 1", &mut set)?;
        for f in ["ctf/shift_A", "ctf/tilt_A", "ctf/trefoil_A", "ctf/tetra_A", "ctf/anisomag"] {
            if let Some(field) = cs.array.field(f) {
                let c = field.count;
                let nonzero = (0..n).any(|r| (0..c).any(|k| cs.array.number(field, r, k).is_some_and(|v| v != 0.0)));
                if nonzero {
                    set.warn(format!("{f} (higher-order aberrations) is not modelled and is ignored"));
                }
            }
        }
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
                    let px = align_apix.as_ref().map(|v| v[i]).filter(|&a| a > 0.0).or(set.meta_apix);
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
            let du = df1.as_ref().map_or(0.0, |v| v[i]);
            let ctf = CtfParams {
                voltage_kv: kv[i],
                cs_mm: cs_mm[i],
                amp_contrast: q0[i],
                defocus_u_a: du,
                defocus_v_a: if df2[i].is_nan() { du } else { df2[i] },
                defocus_angle_deg: ang[i].to_degrees(),
                phase_shift_deg: phase[i].to_degrees(),
                bfactor_a2: bfac[i],
                scale: scale[i],
            };
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
            });
        }
        set.origin_unit = OriginUnit::Angstrom(set.meta_apix);
        Ok(set)
    }

    /// An MRC stack on its own (poses and CTF come from pickles).
    fn from_stack(path: &Path) -> Result<ParticleSet> {
        let f = MrcFile::open(path)?;
        let mut set = Self::empty(path, SourceKind::Stack);
        let n = f.len();
        set.meta_box = Some(f.header().nx);
        set.stacks.push(path.to_path_buf());
        set.handles.push(OnceLock::new());
        let _ = set.handles[0].set(Ok(f));
        set.particles = (0..n)
            .map(|i| Particle {
                stack: 0,
                index: i,
                pose: Pose::default(),
                ctf: CtfParams { amp_contrast: 0.0, voltage_kv: 200.0, ..CtfParams::flat() },
                optics_group: 1,
                random_subset: None,
            })
            .collect();
        Ok(set)
    }

    /// Replace the poses with a cryoDRGN pose pickle: `(rot[N,3,3], trans[N,2])` or
    /// `rot[N,3,3]` alone. Translations are converted once the box is known.
    fn apply_pose_pickle(&mut self, p: &Path) -> Result<()> {
        let (rots, trans) = pickle::read_poses(p)?;
        if rots.len() != self.particles.len() {
            return Err(DatasetError::invalid(
                p,
                format!(
                    "{} poses for {} particles ({}); the files do not describe the same particles",
                    rots.len(),
                    self.particles.len(),
                    self.source.display()
                ),
            ));
        }
        for (i, m) in rots.iter().enumerate() {
            check_rotation(m).map_err(|e| DatasetError::invalid(p, format!("pose {i} (0-based) {e}")))?;
        }
        if self.has_poses {
            self.warn(format!("the poses of {} replace those of the metadata", p.display()));
        }
        for (part, m) in self.particles.iter_mut().zip(&rots) {
            part.pose = Pose { rot: *m, origin_a: [0.0, 0.0] };
        }
        self.origin_unit = OriginUnit::Pixel;
        if let Some(t) = trans {
            if t.iter().flatten().any(|v| !v.is_finite()) {
                return Err(DatasetError::invalid(p, "the translations hold NaN or infinite values"));
            }
            self.pickle_trans = Some((t, p.to_path_buf()));
        }
        self.has_poses = true;
        Ok(())
    }

    /// Replace the CTF with a cryoDRGN CTF pickle: float (N, 9):
    /// `D, apix, ΔfU, ΔfV, angle (°), kV, Cs (mm), Q0, phase (°)`.
    fn apply_ctf_pickle(&mut self, p: &Path) -> Result<()> {
        let rows = pickle::read_ctf(p)?;
        if rows.len() != self.particles.len() {
            return Err(DatasetError::invalid(
                p,
                format!(
                    "{} CTF rows for {} particles ({}); the files do not describe the same particles",
                    rows.len(),
                    self.particles.len(),
                    self.source.display()
                ),
            ));
        }
        if self.has_ctf {
            self.warn(format!("the CTF parameters of {} replace those of the metadata", p.display()));
        }
        let (d, apix) = (rows[0][0], rows[0][1]);
        for (i, (part, r)) in self.particles.iter_mut().zip(&rows).enumerate() {
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
        self.pickle_d_apix = Some((d, apix));
        self.has_ctf = true;
        Ok(())
    }

    /// Settle box, pixel size and origins from the metadata, the first stack's header
    /// (`(nx, apix)` when opened) and the options.
    fn finish(&mut self, opts: &LoadOptions, header: Option<(usize, Option<f64>)>) -> Result<()> {
        // Box.
        let header_box = header.map(|(nx, _)| nx);
        self.box_px = match (self.meta_box, header_box) {
            (Some(m), Some(h)) if m != h => {
                return Err(DatasetError::invalid(
                    &self.source,
                    format!(
                        "the metadata say the images are {m} px but {} holds {h}×{h} images",
                        self.stacks[self.particles[0].stack].display()
                    ),
                ))
            }
            (m, h) => m.or(h).unwrap_or(0),
        };
        // A CTF pickle describes images of D px at its pixel size; binned images of box px
        // have apix·D/box (cryoDRGN rescales the same way).
        if let Some((d, a)) = self.pickle_d_apix {
            let img_apix = if self.box_px > 0 && (d as usize) != self.box_px {
                let v = a * d / self.box_px as f64;
                self.warn(format!("the CTF pickle describes {d} px images at {a} Å/px; the {} px images have {v:.4} Å/px", self.box_px));
                v
            } else {
                a
            };
            match self.meta_apix {
                None => {
                    self.meta_apix = Some(img_apix);
                    if self.origin_unit != OriginUnit::Pixel {
                        self.origin_unit = OriginUnit::Angstrom(Some(img_apix));
                    }
                }
                Some(m) if differ(m, img_apix) => {
                    self.warn(format!("the CTF pickle implies {img_apix:.4} Å/px, the metadata {m} Å/px; the metadata are used"))
                }
                _ => {}
            }
        }
        // Pixel size: override > metadata > header.
        let header_apix = header.and_then(|(_, a)| a).filter(|&a| a > 0.0);
        let mut apix = self.meta_apix;
        if let (Some(m), Some(h)) = (self.meta_apix, header_apix) {
            if differ(m, h) {
                self.warn(format!("the MRC header says {h} Å/px; the metadata's {m} Å/px is used"));
            }
        }
        if apix.is_none() {
            if let (Some(h), None) = (header_apix, opts.apix) {
                self.warn(format!("pixel size {h} Å/px taken from the MRC header (the metadata give none)"));
                apix = Some(h);
            }
        }
        if let Some(o) = opts.apix {
            if !(o > 0.0 && o.is_finite()) {
                return Err(DatasetError::invalid(&self.source, format!("the pixel size override {o} Å is not a positive number")));
            }
            if let Some(m) = self.meta_apix {
                if differ(o, m) {
                    let shifts = if self.particles.iter().any(|p| p.pose.origin_a != [0.0, 0.0]) || self.pickle_trans.is_some() {
                        " (shifts keep their value in pixels: origins in Å are rescaled accordingly)"
                    } else {
                        ""
                    };
                    self.warn(format!("the pixel size {o} Å given explicitly overrides the metadata's {m} Å{shifts}"));
                }
            }
            apix = Some(o);
        }
        let Some(apix) = apix else {
            if header.is_some() {
                return Err(DatasetError::invalid(&self.source, "no pixel size in the metadata or the image header; give one with --apix"));
            }
            // Metadata only: unknown until the stacks are opened.
            return Ok(());
        };
        self.apix = apix;
        // Origins to Å.
        if let Some((t, p)) = self.pickle_trans.take() {
            if self.box_px == 0 {
                self.pickle_trans = Some((t, p));
                return Ok(());
            }
            let d = self.box_px as f64;
            for (part, t) in self.particles.iter_mut().zip(&t) {
                part.pose.origin_a = [t[0] * d, t[1] * d];
            }
            let _ = p;
            self.origin_unit = OriginUnit::Pixel;
        }
        let factor = match self.origin_unit {
            OriginUnit::Pixel => apix,
            OriginUnit::Angstrom(Some(m)) => apix / m,
            OriginUnit::Angstrom(None) => 1.0,
        };
        if factor != 1.0 {
            for part in &mut self.particles {
                part.pose.origin_a = [part.pose.origin_a[0] * factor, part.pose.origin_a[1] * factor];
            }
        }
        self.origin_unit = OriginUnit::Angstrom(Some(apix));
        Ok(())
    }

    /// Optics-group summaries: the STAR optics table's groups, or for other inputs one group
    /// per distinct (voltage, Cs, Q0) or cryoSPARC exposure group. Each holds the values of its
    /// first particle and its particle count.
    fn build_optics_summary(&mut self) {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for p in &self.particles {
            *counts.entry(p.optics_group).or_default() += 1;
        }
        if self.optics_groups.is_empty() {
            let mut ids: Vec<u32> = Vec::new();
            for p in &self.particles {
                if !ids.contains(&p.optics_group) {
                    ids.push(p.optics_group);
                }
            }
            for id in ids {
                self.optics_groups.push(OpticsGroup {
                    id,
                    name: if self.kind == SourceKind::CryoSparc { format!("exposure group {id}") } else { format!("opticsGroup{id}") },
                    voltage_kv: 0.0,
                    cs_mm: 0.0,
                    amp_contrast: 0.0,
                    apix: self.meta_apix,
                    box_px: self.meta_box,
                    particles: 0,
                });
            }
        }
        for g in &mut self.optics_groups {
            g.particles = counts.get(&g.id).copied().unwrap_or(0);
            if let Some(p) = self.particles.iter().find(|p| p.optics_group == g.id) {
                g.voltage_kv = p.ctf.voltage_kv;
                g.cs_mm = p.ctf.cs_mm;
                g.amp_contrast = p.ctf.amp_contrast;
            }
        }
        // RELION 3.0 files may mix voltages within "one" group: report it.
        for g in self.optics_groups.clone() {
            let mixed = self
                .particles
                .iter()
                .filter(|p| p.optics_group == g.id)
                .any(|p| p.ctf.voltage_kv != g.voltage_kv || p.ctf.cs_mm != g.cs_mm || p.ctf.amp_contrast != g.amp_contrast);
            if mixed && self.has_ctf {
                self.warn(format!("particles of optics group {} differ in voltage, Cs or Q0; each particle keeps its own", g.id));
            }
        }
    }

    /// Warnings about half-set labels that cannot be used.
    fn check_subsets(&mut self) {
        let with = self.particles.iter().filter(|p| p.random_subset.is_some()).count();
        if with == 0 {
            return;
        }
        if with < self.particles.len() {
            self.warn(format!("only {with} of {} particles have a half set; half sets are drawn at random", self.particles.len()));
        } else if !self.has_random_subsets() {
            self.warn("every particle is in the same half set; half sets are drawn at random");
        }
    }

    fn handle(&self, stack: usize) -> Result<&MrcFile> {
        let h = self.handles[stack].get_or_init(|| MrcFile::open(&self.stacks[stack]).map_err(|e| e.to_string()));
        h.as_ref().map_err(|e| DatasetError::invalid(&self.source, format!("cannot use a particle stack: {e}")))
    }

    /// Number of particles.
    pub fn len(&self) -> usize {
        self.particles.len()
    }
    pub fn is_empty(&self) -> bool {
        self.particles.is_empty()
    }

    /// The stack file and 0-based image index of particle `i`.
    pub fn image_ref(&self, i: usize) -> (&Path, usize) {
        let p = &self.particles[i];
        (&self.stacks[p.stack], p.index)
    }

    /// Read particle `i` into `out` (`box·box`, centred, x fastest), inverted if the set says
    /// so. NaN or infinite pixels are an error naming the stack, the image and the count.
    pub fn read_image(&self, i: usize, out: &mut [f32]) -> Result<()> {
        let n = self.box_px * self.box_px;
        if let Some(c) = &self.cache {
            if out.len() != n {
                return Err(DatasetError::invalid(&self.source, format!("an image needs a buffer of {n} values, got {}", out.len())));
            }
            out.copy_from_slice(&c[i * n..(i + 1) * n]);
        } else {
            let p = &self.particles[i];
            self.handle(p.stack)?.read_image(p.index, out)?;
        }
        if self.invert {
            out.iter_mut().for_each(|v| *v = -*v);
        }
        Ok(())
    }

    /// Read every image into memory (checked for NaN/Inf once) so that later reads are copies.
    /// Refused when the images would take more than `max_bytes`.
    pub fn cache_images(&mut self, max_bytes: usize) -> Result<()> {
        let n = self.box_px * self.box_px;
        let need = self.len().saturating_mul(n).saturating_mul(4);
        if need > max_bytes {
            return Err(DatasetError::invalid(
                &self.source,
                format!(
                    "caching {} images of {}² px needs {} MiB, more than the {} MiB allowed",
                    self.len(),
                    self.box_px,
                    need >> 20,
                    max_bytes >> 20
                ),
            ));
        }
        let mut c = vec![0.0f32; self.len() * n];
        for (i, chunk) in c.chunks_exact_mut(n).enumerate() {
            let p = &self.particles[i];
            self.handle(p.stack)?.read_image(p.index, chunk)?;
        }
        self.cache = Some(c);
        Ok(())
    }

    /// Whether the images are held in memory.
    pub fn is_cached(&self) -> bool {
        self.cache.is_some()
    }

    /// An error unless every particle has a pose.
    pub fn require_poses(&self) -> Result<()> {
        if self.has_poses {
            Ok(())
        } else {
            Err(DatasetError::invalid(
                &self.source,
                "no particle poses (rlnAngleRot/Tilt/Psi, alignments3D/pose or --poses): a reconstruction needs them; refine the particles first",
            ))
        }
    }

    /// An error unless every particle has CTF parameters.
    pub fn require_ctf(&self) -> Result<()> {
        if self.has_ctf {
            Ok(())
        } else {
            Err(DatasetError::invalid(
                &self.source,
                "no CTF parameters (rlnDefocusU, ctf/df1_A or --ctf); give them, or use --no-ctf for data without a CTF",
            ))
        }
    }

    /// Keep only the particles at `indices` (0-based, in that order). An index out of range
    /// or given twice is an error.
    pub fn retain_indices(&mut self, indices: &[usize]) -> Result<()> {
        let n = self.particles.len();
        let mut seen = vec![false; n];
        for &i in indices {
            if i >= n {
                return Err(DatasetError::invalid(&self.source, format!("subset index {i} is out of range: the set has {n} particles")));
            }
            if std::mem::replace(&mut seen[i], true) {
                return Err(DatasetError::invalid(&self.source, format!("subset index {i} is given twice")));
            }
        }
        if indices.is_empty() {
            return Err(DatasetError::invalid(&self.source, "the subset is empty"));
        }
        self.particles = indices.iter().map(|&i| self.particles[i].clone()).collect();
        if let Some(c) = self.cache.take() {
            let m = self.box_px * self.box_px;
            self.cache = Some(indices.iter().flat_map(|&i| c[i * m..(i + 1) * m].iter().copied()).collect());
        }
        for g in &mut self.optics_groups {
            g.particles = self.particles.iter().filter(|p| p.optics_group == g.id).count();
        }
        Ok(())
    }

    /// Keep the first `n` particles (all of them when `n` is larger).
    pub fn retain_first(&mut self, n: usize) -> Result<()> {
        let k = n.min(self.len());
        self.retain_indices(&(0..k).collect::<Vec<_>>())
    }

    /// Read a subset file: one 0-based particle index per line (blank lines and `#` comments
    /// ignored), or a cryoDRGN index pickle (`.pkl`).
    pub fn read_index_file(path: &Path) -> Result<Vec<usize>> {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("pkl")) {
            return Ok(pickle::read_indices(path)?);
        }
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

    /// Gold-standard halves: the file's half sets (`rlnRandomSubset`, `alignments3D/split`)
    /// when every particle has one and both halves are non-empty, otherwise a seeded random
    /// split into two halves of equal size (±1). Returns sorted particle indices of A and B.
    pub fn half_split(&self, seed: u64) -> (Vec<usize>, Vec<usize>) {
        if self.has_random_subsets() {
            let a = (0..self.len()).filter(|&i| self.particles[i].random_subset == Some(1)).collect();
            let b = (0..self.len()).filter(|&i| self.particles[i].random_subset == Some(2)).collect();
            return (a, b);
        }
        let mut idx: Vec<usize> = (0..self.len()).collect();
        Rng::new(seed ^ 0x4841_4c46).shuffle(&mut idx);
        let mut b = idx.split_off(idx.len() / 2);
        let mut a = idx;
        a.sort_unstable();
        b.sort_unstable();
        (a, b)
    }

    /// Whether [`ParticleSet::half_split`] uses the file's half sets.
    pub fn has_random_subsets(&self) -> bool {
        self.particles.iter().all(|p| p.random_subset.is_some())
            && self.particles.iter().any(|p| p.random_subset == Some(1))
            && self.particles.iter().any(|p| p.random_subset == Some(2))
    }

    /// Write the set as a RELION 3.1 STAR file (atomically): one optics row per distinct
    /// (group, voltage, Cs, Q0), poses and origins when the set has poses, CTF columns when it
    /// has a CTF, `rlnRandomSubset` when every particle has a half set. Image names are
    /// relative to the STAR file's folder when the stack is inside it, absolute otherwise.
    /// The images themselves are not changed (a set read with contrast inversion still
    /// refers to the stored images).
    pub fn write_star(&self, path: &Path) -> Result<()> {
        if self.particles.is_empty() {
            return Err(DatasetError::invalid(path, "no particles to write"));
        }
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let dir = abs(path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")));
        let mut optics = Table::new(&[
            "rlnOpticsGroup",
            "rlnOpticsGroupName",
            "rlnAmplitudeContrast",
            "rlnSphericalAberration",
            "rlnVoltage",
            "rlnImagePixelSize",
            "rlnImageSize",
            "rlnImageDimensionality",
        ]);
        let mut keys: Vec<(u32, u64, u64, u64)> = Vec::new();
        let mut group_of = Vec::with_capacity(self.len());
        for p in &self.particles {
            let key = (p.optics_group, p.ctf.voltage_kv.to_bits(), p.ctf.cs_mm.to_bits(), p.ctf.amp_contrast.to_bits());
            let g = match keys.iter().position(|k| *k == key) {
                Some(g) => g,
                None => {
                    keys.push(key);
                    let name = self.optics_groups.iter().find(|o| o.id == p.optics_group).map(|o| o.name.clone());
                    let id = keys.len();
                    optics.push_row(vec![
                        id.to_string(),
                        name.filter(|_| keys.iter().filter(|k| k.0 == p.optics_group).count() == 1)
                            .unwrap_or_else(|| format!("opticsGroup{id}")),
                        fmt(p.ctf.amp_contrast),
                        fmt(p.ctf.cs_mm),
                        fmt(p.ctf.voltage_kv),
                        fmt(self.apix),
                        self.box_px.to_string(),
                        "2".into(),
                    ]);
                    keys.len() - 1
                }
            };
            group_of.push(g + 1);
        }
        let mut labels = vec!["rlnImageName"];
        if self.has_poses {
            labels.extend(["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]);
        }
        if self.has_ctf {
            labels.extend(["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor", "rlnCtfScalefactor"]);
        }
        labels.push("rlnOpticsGroup");
        let subsets = self.particles.iter().all(|p| p.random_subset.is_some());
        if subsets {
            labels.push("rlnRandomSubset");
        }
        let mut parts = Table::new(&labels);
        let names: Vec<String> = self
            .stacks
            .iter()
            .map(|s| {
                let a = abs(s);
                a.strip_prefix(&dir).map(Path::to_path_buf).unwrap_or(a).display().to_string()
            })
            .collect();
        for (i, p) in self.particles.iter().enumerate() {
            let mut row = vec![format!("{:06}@{}", p.index + 1, names[p.stack])];
            if self.has_poses {
                let (rot, tilt, psi) = matrix_to_euler(&p.pose.rot);
                row.extend([rot, tilt, psi, p.pose.origin_a[0], p.pose.origin_a[1]].map(fmt));
            }
            if self.has_ctf {
                let c = &p.ctf;
                row.extend([c.defocus_u_a, c.defocus_v_a, c.defocus_angle_deg, c.phase_shift_deg, c.bfactor_a2, c.scale].map(fmt));
            }
            row.push(group_of[i].to_string());
            if subsets {
                row.push(p.random_subset.unwrap_or(1).to_string());
            }
            parts.push_row(row);
        }
        star::write(path, &[("optics", &optics), ("particles", &parts)])?;
        Ok(())
    }

    /// Defocus range (mean of U and V) in Å, for summaries.
    pub fn defocus_range_a(&self) -> (f64, f64) {
        self.particles
            .iter()
            .map(|p| 0.5 * (p.ctf.defocus_u_a + p.ctf.defocus_v_a))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), d| (lo.min(d), hi.max(d)))
    }
}

/// Where relative image paths are looked for.
struct Base {
    datadir: Option<PathBuf>,
    meta_dir: PathBuf,
}

impl Base {
    fn new(metadata: &Path, opts: &LoadOptions) -> Base {
        let meta_dir = metadata.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Base { datadir: opts.datadir.clone(), meta_dir }
    }

    /// Where [`Base::candidates`] looks, in words.
    fn describe(&self) -> String {
        match &self.datadir {
            Some(d) => format!("in {} (with its folders, or by file name alone)", d.display()),
            None => format!(
                "beside the metadata (in {}), in its parent folders up to three levels, or in the current folder",
                self.meta_dir.display()
            ),
        }
    }

    /// Candidate locations of `rel`, in order of preference (see the module docs).
    fn candidates(&self, rel: &Path) -> Vec<PathBuf> {
        let file_name = rel.file_name().map(PathBuf::from);
        let mut out = Vec::new();
        if let Some(d) = &self.datadir {
            out.push(d.join(rel));
            if let Some(f) = &file_name {
                out.push(d.join(f));
            }
        } else if rel.is_absolute() {
            out.push(rel.to_path_buf());
        } else {
            out.push(self.meta_dir.join(rel));
            let mut up = self.meta_dir.clone();
            for _ in 0..3 {
                up = up.join("..");
                out.push(up.join(rel));
            }
            out.push(rel.to_path_buf());
            if let Some(f) = &file_name {
                out.push(self.meta_dir.join(f));
            }
        }
        out.dedup();
        out
    }
}

/// Numbers in STAR files: six decimals, trailing zeros removed.
fn fmt(v: f64) -> String {
    let s = format!("{v:.6}");
    let t = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if t == "-0" {
        "0".into()
    } else {
        t
    }
}
