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
//! opened once (memory-mapped) and shared; the pipelines keep images in memory through
//! [`crate::images::Images`], the one image cache. Every image read rejects NaN or infinite
//! pixels.
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
//!
//! # Layout
//! One reader per format builds the set from its metadata: `relion` (STAR 3.0 and 3.1+, and
//! the STAR writer), `cryosparc` (`.cs`), `stack` (a bare MRC stack) and `cryodrgn` (the
//! pose and CTF pickles that complete or replace the others). `paths` finds the image stacks,
//! `settle` fixes box, pixel size and origins once the stacks and options are known; this
//! file holds the set, the entry points and the image reading.

mod cryodrgn;
mod cryosparc;
mod paths;
mod relion;
mod settle;
mod stack;

pub use relion::{write_relion31, StarDecimals, StarLayout, StarOptics, StarParticle};

/// The start value of [`fnv1a`].
pub(crate) const FNV1A_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64 bit, continued from `h`: a stable hash (unlike `std`'s, which may change between
/// releases).
pub(crate) fn fnv1a(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
}

/// The gold-standard halves a run's maps were made from, as `run.json`'s `half_split`: each
/// half's particle count and a hash of its images (stack file name and image index, in
/// order; not the folder, so a moved data set keeps it). Maps of the same particle file made
/// with the same halves carry the same record; `fsc --cross-validate` compares the model
/// maps' record with the backprojections' to refuse backprojections of other halves, whose
/// images a model half would share.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HalfSplitRecord {
    pub particles: [usize; 2],
    pub images: [String; 2],
}

use cryosplat_core::ctf::CtfParams;
use cryosplat_core::pose::Pose;
use cryosplat_core::rng::Rng;
use cryosplat_formats::mrc::MrcFile;
use cryosplat_formats::{pickle, FormatError};
use settle::Loading;
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
    /// 0-based row of the metadata's particle table this particle was read from (`None` for
    /// a bare stack), so that a written copy can keep that row's other columns.
    pub source_row: Option<usize>,
    /// 0-based position in the input's list of particles, before any subset: the row of a
    /// cryoDRGN pickle that describes this particle.
    pub position: usize,
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
    /// The cryoDRGN pose and CTF pickles that replaced the metadata's values, if any.
    pub pose_pickle: Option<PathBuf>,
    pub ctf_pickle: Option<PathBuf>,
    handles: Vec<OnceLock<std::result::Result<MrcFile, String>>>,
    /// What only loading needs (the metadata's own box and pixel size, pending pickle values,
    /// stacks not found).
    loading: Loading,
}

/// Whether two pixel sizes differ by more than 0.1 %.
fn differ(a: f64, b: f64) -> bool {
    (a - b).abs() > 1e-3 * a.abs().max(b.abs())
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
            "star" => relion::read(path, opts)?,
            "cs" => cryosparc::read(path, opts)?,
            "mrcs" | "mrc" | "st" | "map" => stack::read(path)?,
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
            cryodrgn::replace_ctf(&mut set, c)?;
            set.ctf_pickle = Some(c.clone());
        }
        if let Some(p) = &opts.poses {
            cryodrgn::replace_poses(&mut set, p)?;
            set.pose_pickle = Some(p.clone());
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
        if let Some(rel) = self.loading.missing.first() {
            let more = match self.loading.missing.len() {
                1 => String::new(),
                k => format!(" ({k} of {} stacks are missing)", self.stacks.len()),
            };
            return Err(DatasetError::invalid(
                &self.source,
                format!(
                    "particle stack {rel} not found {}{more}; give the folder that holds the stacks with --datadir",
                    self.loading.searched
                ),
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
            pose_pickle: None,
            ctf_pickle: None,
            handles: Vec::new(),
            loading: Loading::default(),
        }
    }

    /// Record a warning once.
    fn warn(&mut self, msg: impl Into<String>) {
        let m = msg.into();
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }

    fn handle(&self, stack: usize) -> Result<&MrcFile> {
        let h = self.handles[stack].get_or_init(|| MrcFile::open(&self.stacks[stack]).map_err(|e| e.to_string()));
        h.as_ref().map_err(|e| DatasetError::invalid(&self.source, format!("cannot use a particle stack: {e}")))
    }

    /// Start reading particle `i`'s image from disk in the background (see
    /// [`MrcFile::prefetch_image`]); a stack that cannot be opened is left for the read itself
    /// to report.
    pub fn prefetch_image(&self, i: usize) {
        let p = &self.particles[i];
        if let Ok(f) = self.handle(p.stack) {
            f.prefetch_image(p.index);
        }
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

    /// Particle `i`'s image as `STACK@INDEX`, the stack's file name without its folder (so that
    /// a moved data set keeps it) and the 0-based index: what the resume fingerprint and the
    /// half-split record hash.
    pub fn image_id(&self, i: usize) -> String {
        let (stack, index) = self.image_ref(i);
        let stack = stack.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{stack}@{index}")
    }

    /// Read particle `i` into `out` (`box·box`, centred, x fastest), inverted if the set says
    /// so. NaN or infinite pixels are an error naming the stack, the image and the count.
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

    /// What identifies the halves `[a, b]` (particle indices, as [`ParticleSet::half_split`]
    /// gives them) for `run.json` ([`HalfSplitRecord`]).
    pub fn half_split_record(&self, halves: [&[usize]; 2]) -> HalfSplitRecord {
        let images = halves.map(|half| {
            let mut h = FNV1A_START;
            for &i in half {
                fnv1a(&mut h, format!("{};", self.image_id(i)).as_bytes());
            }
            format!("{h:016x}")
        });
        HalfSplitRecord { particles: halves.map(<[usize]>::len), images }
    }

    /// The sizes of the two halves [`ParticleSet::half_split`] makes (with any seed: the seed
    /// only decides which particles go where), without making them.
    pub fn half_sizes(&self) -> [usize; 2] {
        if self.has_random_subsets() {
            let count = |h: u8| self.particles.iter().filter(|p| p.random_subset == Some(h)).count();
            return [count(1), count(2)];
        }
        [self.len() / 2, self.len() - self.len() / 2]
    }

    /// Whether [`ParticleSet::half_split`] uses the file's half sets.
    pub fn has_random_subsets(&self) -> bool {
        self.particles.iter().all(|p| p.random_subset.is_some())
            && self.particles.iter().any(|p| p.random_subset == Some(1))
            && self.particles.iter().any(|p| p.random_subset == Some(2))
    }

    /// Defocus range (mean of U and V) in Å, for summaries.
    pub fn defocus_range_a(&self) -> (f64, f64) {
        self.particles
            .iter()
            .map(|p| 0.5 * (p.ctf.defocus_u_a + p.ctf.defocus_v_a))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), d| (lo.min(d), hi.max(d)))
    }
}
