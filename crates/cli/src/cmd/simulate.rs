//! `cryosplat simulate`: a synthetic particle set from an atomic model (PDB or mmCIF) or a map
//! (MRC). The work is done by `cryosplat_train::simulate`; this file reads the input, maps the
//! options and reports progress.

use crate::progress::Bar;
use anyhow::{bail, Context, Result};
use cryosplat_core::potential::{Atom, Centering};
use cryosplat_train::simulate::{simulate, PreferredOrientation, SimulateConfig, Source};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Atomic model (.pdb, .ent, .cif, .mmcif) or cubic map (.mrc, .map).
    pub input: PathBuf,
    /// Output folder (created if missing): particles.mrcs, particles.star, gt.mrc, meta.json.
    #[arg(short, long)]
    pub output: PathBuf,
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
    /// Samples per voxel along each ray when projecting a map.
    #[arg(long, default_value_t = 2)]
    pub oversample: usize,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    if let Some(t) = args.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global().context("starting the worker threads")?;
    }
    let ext = args.input.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let label = args.input.display().to_string();
    let source = match ext.as_str() {
        "pdb" | "ent" => Source::Atoms { atoms: read_pdb(&args.input)?, label },
        "cif" | "mmcif" => Source::Atoms { atoms: read_mmcif(&args.input)?, label },
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
        oversample: args.oversample,
    };
    let bar = Bar::new();
    let summary = simulate(&source, &cfg, &args.output, &bar)?;
    for w in &summary.warnings {
        tracing::warn!("{w}");
    }
    println!(
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

// Input readers. Minimal and strict; they name the file and line of any problem.

/// Element from a PDB atom name (columns 13–16) when the element columns are blank.
fn element_from_name(name: &str) -> String {
    let letters: String = name.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    if name.starts_with(' ') || letters.len() < 2 {
        letters.chars().take(1).collect()
    } else {
        letters.chars().take(2).collect()
    }
}

pub(crate) fn read_pdb(path: &Path) -> Result<Vec<Atom>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut atoms = Vec::new();
    for (no, line) in text.lines().enumerate() {
        if line.starts_with("ENDMDL") {
            break;
        }
        if !(line.starts_with("ATOM") || line.starts_with("HETATM")) {
            continue;
        }
        let col = |a: usize, b: usize| line.get(a..b.min(line.len())).unwrap_or("").trim();
        let num = |a: usize, b: usize, what: &str| -> Result<f64> {
            col(a, b).parse::<f64>().with_context(|| format!("{}: line {}: bad {what} {:?}", path.display(), no + 1, col(a, b)))
        };
        let pos = [num(30, 38, "x")?, num(38, 46, "y")?, num(46, 54, "z")?];
        let occupancy = if col(54, 60).is_empty() { 1.0 } else { num(54, 60, "occupancy")? };
        let b = if col(60, 66).is_empty() { 0.0 } else { num(60, 66, "B-factor")? };
        let mut element = col(76, 78).to_string();
        if element.is_empty() {
            element = element_from_name(line.get(12..16).unwrap_or(""));
        }
        atoms.push(Atom { element, pos_a: pos, b_factor_a2: b, occupancy });
    }
    if atoms.is_empty() {
        bail!("{}: no ATOM or HETATM records", path.display());
    }
    Ok(atoms)
}

/// Split a CIF data line into tokens (whitespace separated, '...' and "..." quoted).
fn cif_tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '#' {
            break;
        }
        if c == '\'' || c == '"' {
            chars.next();
            let start = i + 1;
            let mut end = line.len();
            while let Some((j, d)) = chars.next() {
                let next_ws = chars.peek().is_none_or(|&(_, n)| n.is_whitespace());
                if d == c && next_ws {
                    end = j;
                    break;
                }
            }
            out.push(line[start..end].to_string());
        } else {
            let start = i;
            let mut end = line.len();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_whitespace() {
                    end = j;
                    break;
                }
                chars.next();
            }
            out.push(line[start..end].to_string());
        }
    }
    out
}

fn read_mmcif(path: &Path) -> Result<Vec<Atom>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "loop_" && lines.get(i + 1).is_some_and(|l| l.trim_start().starts_with("_atom_site.")) {
            break;
        }
        i += 1;
    }
    if i == lines.len() {
        bail!("{}: no _atom_site loop", path.display());
    }
    i += 1;
    let mut labels = Vec::new();
    while i < lines.len() && lines[i].trim_start().starts_with("_atom_site.") {
        labels.push(lines[i].trim()["_atom_site.".len()..].split_whitespace().next().unwrap_or("").to_string());
        i += 1;
    }
    let find = |name: &str| labels.iter().position(|l| l == name);
    let need = |name: &str| find(name).with_context(|| format!("{}: _atom_site has no {name} column", path.display()));
    let (cx, cy, cz) = (need("Cartn_x")?, need("Cartn_y")?, need("Cartn_z")?);
    let (ce, cocc, cb, cmodel) = (find("type_symbol"), find("occupancy"), find("B_iso_or_equiv"), find("pdbx_PDB_model_num"));
    let cname = find("label_atom_id").or_else(|| find("auth_atom_id"));
    let mut atoms = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut row_line = i + 1;
    let mut first_model: Option<String> = None;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if t.starts_with('_') || t.starts_with("loop_") || t.starts_with("data_") || (t.starts_with('#') && row.is_empty()) {
            break;
        }
        if t.starts_with(';') {
            bail!("{}: line {}: multi-line values are not supported in _atom_site", path.display(), i + 1);
        }
        if row.is_empty() {
            row_line = i + 1;
        }
        row.extend(cif_tokens(line));
        i += 1;
        while row.len() >= labels.len() {
            let rest = row.split_off(labels.len());
            let r = std::mem::replace(&mut row, rest);
            if let Some(m) = cmodel {
                match &first_model {
                    None => first_model = Some(r[m].clone()),
                    Some(f) if *f != r[m] => return finish_cif(path, atoms),
                    _ => {}
                }
            }
            let num = |c: usize, what: &str, default: Option<f64>| -> Result<f64> {
                let v = r[c].as_str();
                if (v == "?" || v == ".") && default.is_some() {
                    return Ok(default.unwrap_or(0.0));
                }
                v.parse::<f64>().with_context(|| format!("{}: line {row_line}: bad {what} {v:?}", path.display()))
            };
            let pos = [num(cx, "Cartn_x", None)?, num(cy, "Cartn_y", None)?, num(cz, "Cartn_z", None)?];
            let occupancy = cocc.map(|c| num(c, "occupancy", Some(1.0))).transpose()?.unwrap_or(1.0);
            let b = cb.map(|c| num(c, "B_iso_or_equiv", Some(0.0))).transpose()?.unwrap_or(0.0);
            let element = match ce {
                Some(c) if r[c] != "?" && r[c] != "." => r[c].clone(),
                _ => cname.map(|c| element_from_name(&format!(" {}", r[c]))).unwrap_or_default(),
            };
            atoms.push(Atom { element, pos_a: pos, b_factor_a2: b, occupancy });
        }
    }
    if !row.is_empty() {
        bail!("{}: line {row_line}: incomplete _atom_site row ({} of {} values)", path.display(), row.len(), labels.len());
    }
    finish_cif(path, atoms)
}

fn finish_cif(path: &Path, atoms: Vec<Atom>) -> Result<Vec<Atom>> {
    if atoms.is_empty() {
        bail!("{}: the _atom_site loop has no rows", path.display());
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
