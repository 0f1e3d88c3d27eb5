//! `cryosplat simulate`: a synthetic particle set from an atomic model (PDB or mmCIF) or a map
//! (MRC). The work is done by `cryosplat_train::simulate`; this file reads the input, maps the
//! options and reports progress.

use crate::progress::Bar;
use anyhow::{bail, Context, Result};
use cryosplat_core::potential::{Atom, Centering};
use cryosplat_train::output::{Existing, OutputDir};
use cryosplat_train::simulate::{simulate, PreferredOrientation, SimulateConfig, Source};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Atomic model (.pdb, .ent, .cif, .mmcif) or cubic map (.mrc, .map).
    pub input: PathBuf,
    /// Output folder (created if missing): particles.mrcs, particles.star, gt.mrc, meta.json
    /// (and particles_true.star with recorded errors).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the results of an earlier run in the output folder (without it, a folder that
    /// holds results is refused).
    #[arg(long)]
    pub overwrite: bool,
    /// Box size in pixels [default: 128, or the map's size].
    #[arg(long = "box")]
    pub box_px: Option<usize>,
    /// Pixel size in Å [default: 1.5, or the map's pixel size].
    #[arg(long)]
    pub apix: Option<f64>,
    /// Number of particles.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Signal-to-noise ratio: mean variance of the clean CTF-modulated images over the box
    /// divided by the noise variance ("inf" for no noise).
    #[arg(long, default_value_t = 0.1)]
    pub snr: f64,
    /// Defocus range in µm (uniform), underfocus positive.
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], default_values_t = [1.0, 2.5])]
    pub defocus: Vec<f64>,
    /// Largest astigmatism (ΔfU − ΔfV) in Å, drawn uniformly with a uniform angle.
    #[arg(long, default_value_t = 300.0)]
    pub astigmatism: f64,
    /// Largest origin offset in pixels (uniform over the disc).
    #[arg(long, default_value_t = 0.0)]
    pub max_shift: f64,
    /// Random seed: the same seed gives the same files with any number of threads.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Acceleration voltage in kV.
    #[arg(long, default_value_t = 300.0)]
    pub voltage: f64,
    /// Spherical aberration in mm.
    #[arg(long, default_value_t = 2.7)]
    pub cs: f64,
    /// Amplitude contrast (fraction).
    #[arg(long, default_value_t = 0.1)]
    pub amp_contrast: f64,
    /// B-factor in Å² added to every atom's own B-factor (atomic models only).
    #[arg(long, default_value_t = 0.0)]
    pub bfactor: f64,
    /// Replace every atom's B-factor by this value (Å²) before adding --bfactor.
    #[arg(long)]
    pub set_bfactor: Option<f64>,
    /// CTF envelope B-factor in Å², applied to the images and written as rlnCtfBfactor.
    #[arg(long, default_value_t = 0.0)]
    pub ctf_bfactor: f64,
    /// Envelope B-factor in Å²: every image is multiplied by exp(−B s²/4), as real images lose
    /// signal at high frequency; not written to the STAR file (gt.mrc stays unblurred).
    #[arg(long, default_value_t = 0.0)]
    pub envelope: f64,
    /// Anti-aliasing: every atom is widened by a Gaussian of this many pixels (0 disables).
    #[arg(long, default_value_t = 0.5)]
    pub antialias: f64,
    /// Where the model's origin goes in the box: com (centre of the potential), bbox (centre
    /// of the bounding box) or none (keep the coordinates).
    #[arg(long, default_value = "com", value_parser = ["com", "bbox", "none"])]
    pub center: String,
    /// Non-uniform views: "X,Y,Z,KAPPA", viewing directions drawn from a von Mises–Fisher
    /// distribution around (X, Y, Z) with concentration KAPPA (0 uniform, 10 ≈ 90% of views
    /// within 37°).
    #[arg(long, value_name = "X,Y,Z,KAPPA")]
    pub preferred_orientation: Option<String>,
    /// Also write clean.mrcs, the CTF-modulated images before noise.
    #[arg(long)]
    pub write_clean: bool,
    /// Write the stacks as float16 (MRC mode 12): half the disk space of float32, rounding each
    /// pixel by at most 2⁻¹¹ of its value.
    #[arg(long)]
    pub float16: bool,
    /// Samples per voxel along each ray when projecting a map.
    #[arg(long, default_value_t = 2)]
    pub oversample: usize,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Point group of the particle, RELION's names (C4, D2, O, I3, C3v, …): the atomic model
    /// is the asymmetric unit, copied by every operator about the box centre (a map input is
    /// averaged over the group instead).
    #[arg(long, default_value = "C1")]
    pub sym: String,
    /// Shift of the centred atomic model in Å before the symmetry copies are placed, so that
    /// the copies do not overlap on the symmetry axes.
    #[arg(long, value_name = "X,Y,Z", default_value = "0,0,0")]
    pub sym_offset: String,
    /// Record rotation errors in particles.star: each recorded rotation is the true one turned
    /// by a random rotation whose rms angle is DEG (rotation-vector components N(0, DEG/√3));
    /// the images use the true values, which go to particles_true.star.
    #[arg(long, value_name = "DEG", default_value_t = 0.0)]
    pub pose_error: f64,
    /// Record origin errors in particles.star: Gaussian with an rms of PX pixels per axis.
    #[arg(long, value_name = "PX", default_value_t = 0.0)]
    pub shift_error: f64,
    /// Record defocus errors in particles.star: one Gaussian offset with an rms of Å added to
    /// defocus U and V.
    #[arg(long, value_name = "Å", default_value_t = 0.0)]
    pub defocus_error: f64,
}

pub fn run(args: Args) -> Result<()> {
    let existing = Existing::from_flags(false, args.overwrite);
    let _held = OutputDir::open(&args.output, existing, "simulate")?;
    if let Some(t) = args.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global().context("starting the worker threads")?;
    }
    let ext = args.input.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let label = args.input.display().to_string();
    let source = match ext.as_str() {
        "pdb" | "ent" | "cif" | "mmcif" => Source::Atoms { atoms: read_model(&args.input)?, label },
        "mrc" | "map" => {
            let (data, d, apix) = read_map(&args.input)?;
            let apix = match (apix, args.apix) {
                (Some(a), _) => a,
                (None, Some(a)) => {
                    tracing::warn!("{}: the header gives no pixel size; using --apix {a}", args.input.display());
                    a
                }
                (None, None) => bail!("{}: the header gives no pixel size (cella = 0); pass --apix", args.input.display()),
            };
            Source::Map { data, d, apix, label }
        }
        _ => bail!("{}: unknown input type (expected .pdb, .ent, .cif, .mmcif, .mrc or .map)", args.input.display()),
    };
    let (box_px, apix) = match &source {
        Source::Map { d, apix, .. } => (args.box_px.unwrap_or(*d), args.apix.unwrap_or(*apix)),
        Source::Atoms { atoms, .. } => {
            if atoms.is_empty() {
                bail!("{}: no atoms", args.input.display());
            }
            (args.box_px.unwrap_or(128), args.apix.unwrap_or(1.5))
        }
    };
    // The same box rules as reconstruct and backproject, so that every simulated set can be
    // reconstructed.
    cryosplat_train::images::working_box(None, box_px).map_err(|_| {
        anyhow::anyhow!(
            "--box {box_px}: reconstruct and backproject need an even box; simulate one (a map input sets the box unless --box is given)"
        )
    })?;
    let preferred_orientation = match &args.preferred_orientation {
        None => None,
        Some(s) => {
            let v: Vec<f64> = s
                .split(',')
                .map(|t| t.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("--preferred-orientation {s:?}: expected four numbers X,Y,Z,KAPPA"))?;
            if v.len() != 4 {
                bail!("--preferred-orientation {s:?}: expected four numbers X,Y,Z,KAPPA");
            }
            Some(PreferredOrientation { direction: [v[0], v[1], v[2]], kappa: v[3] })
        }
    };
    let cfg = SimulateConfig {
        box_px,
        apix,
        count: args.count,
        snr: args.snr,
        defocus_min_um: args.defocus[0],
        defocus_max_um: args.defocus[1],
        astigmatism_max_a: args.astigmatism,
        max_shift_px: args.max_shift,
        seed: args.seed,
        voltage_kv: args.voltage,
        cs_mm: args.cs,
        amp_contrast: args.amp_contrast,
        ctf_bfactor_a2: args.ctf_bfactor,
        envelope_bfactor_a2: args.envelope,
        bfactor_a2: args.bfactor,
        set_bfactor_a2: args.set_bfactor,
        antialias_sigma_px: if matches!(source, Source::Map { .. }) { 0.0 } else { args.antialias },
        centering: match args.center.as_str() {
            "bbox" => Centering::BoundingBox,
            "none" => Centering::None,
            _ => Centering::CentreOfMass,
        },
        preferred_orientation,
        write_clean: args.write_clean,
        float16: args.float16,
        oversample: args.oversample,
        sym: args.sym.clone(),
        sym_offset_a: parse_offset(&args.sym_offset)?,
        pose_error_deg: args.pose_error,
        shift_error_px: args.shift_error,
        defocus_error_a: args.defocus_error,
    };
    let bar = Bar::new();
    let summary = simulate(&source, &cfg, &args.output, &bar)?;
    for w in &summary.warnings {
        tracing::warn!("{w}");
    }
    say!(
        "wrote {} particles ({} px, {} Å/px) to {}: signal variance {:.4e}, noise σ {:.4e}",
        summary.count,
        box_px,
        apix,
        args.output.display(),
        summary.signal_variance,
        summary.noise_sigma
    );
    Ok(())
}

/// `X,Y,Z` in Å.
fn parse_offset(s: &str) -> Result<[f64; 3]> {
    let v: Vec<f64> = s
        .split(',')
        .map(|t| t.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--sym-offset {s:?}: expected three numbers X,Y,Z (Å)"))?;
    match v[..] {
        [x, y, z] => Ok([x, y, z]),
        _ => bail!("--sym-offset {s:?}: expected three numbers X,Y,Z (Å)"),
    }
}

/// The atoms of a PDB or mmCIF model (read by `cryosplat_formats::atoms`, which names the
/// file and line of any problem), as the potential's atoms.
pub(crate) fn read_model(path: &Path) -> Result<Vec<Atom>> {
    let atoms = cryosplat_formats::atoms::read_atoms(path)?;
    if atoms.is_empty() {
        bail!("{}: no atoms", path.display());
    }
    Ok(atoms)
}

/// A cubic map: (values x fastest, size, pixel size in Å if the header gives one).
fn read_map(path: &Path) -> Result<(Vec<f32>, usize, Option<f64>)> {
    let f = cryosplat_formats::mrc::MrcFile::open(path)?;
    let h = f.header();
    for w in &h.warnings {
        tracing::warn!("{}: {w}", path.display());
    }
    if h.nx != h.ny || h.ny != h.nz {
        bail!("{}: map of {}×{}×{}: a cubic map is needed", path.display(), h.nx, h.ny, h.nz);
    }
    Ok((f.read_all()?, h.nx, h.apix))
}
