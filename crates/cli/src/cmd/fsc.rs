//! `cryosplat fsc`: Fourier shell correlation between two maps.
//!
//! A pair from which no resolution can be read (a map that is all zero, constant or not finite,
//! a mask that is all zero, or a curve undefined before it crosses a threshold, see
//! [`cryosplat_core::fsc::NoResolution`]) is an error that says why; the command then exits
//! non-zero. When only the curve is undefined, the curves are still printed and written.
//!
//! With `--sym NAME` the automatic mask is averaged over the point group (so that it treats
//! every symmetry copy alike), and each map's agreement with its own group average is
//! reported: the real-space correlation of `V` with `(1/|G|)·Σ_k V(R_k·r)` inside the mask,
//! 1 for a map with the group's symmetry in RELION's orientation. A map reconstructed without
//! symmetry reads near 1 only if the particle has the symmetry in that orientation, so the
//! figure also tells settings of a group apart (`I1` against `I2`).
//!
//! With `--cross-validate BP_A BP_B` (backprojections of the same two halves' images), the
//! maps' resolution is also read from the cross-validated estimate
//! ([`cryosplat_core::crossval`]) and the coarser of the two is given, as `reconstruct` reports
//! it for its Gaussian half maps: for half maps of any model-based reconstruction whose halves
//! may share an error their FSC cannot see. Backprojections given in the other order (each map
//! then compared with the backprojection of its own images, whose noise it fitted) are refused
//! ([`cryosplat_core::crossval::Pairing`]); `--json` gives the statistic as
//! `cross_validated.pairing`. Where the `run.json` files beside the maps and the
//! backprojections record their halves (`half_split`, with the files named as the runs write
//! them), backprojections of other halves, or of the same halves swapped, are refused before
//! any is read.
//!
//! Half maps written by `reconstruct` and read without `--cross-validate` get a warning (and
//! `gaussian_half_maps` in `--json`) with their run's own figures
//! ([`crate::gaussian_halves`]): their FSC alone reads finer than the map holds.

use anyhow::{anyhow, bail, Context, Result};
use cryosplat_core::crossval::cross_validated;
use cryosplat_core::fsc::{auto_mask, check_maps_labelled, gold_standard, MaskChoice, NoResolution, Resolution};
use cryosplat_core::symmetry::{symmetrize_map, PointGroup};
use cryosplat_formats::mrc::MrcFile;
use cryosplat_train::dataset::HalfSplitRecord;
use cryosplat_train::output::{insert_reported_json, insert_resolution_json, Existing, OutputDir};
use cryosplat_train::reconstruct::check::last_usable_shell;
use cryosplat_train::reconstruct::{reported_reading, reported_with_limit, LimitRangeSummary, PairingSummary};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// First map (e.g. half map A).
    pub map_a: PathBuf,
    /// Second map (e.g. half map B, or a reference).
    pub map_b: PathBuf,
    /// Mask for the masked curve: "auto" (from the maps), "none", or an MRC file.
    #[arg(long, default_value = "auto")]
    pub mask: String,
    /// Pixel size in Å (when the headers do not give one, or to override them).
    #[arg(long, value_parser = parse_apix, allow_hyphen_values = true)]
    pub apix: Option<f64>,
    /// Print one JSON object (resolutions and curves).
    #[arg(long)]
    pub json: bool,
    /// Also write fsc.csv and fsc.png into this folder.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// With --out: replace the results of an earlier run in that folder.
    #[arg(long, requires = "out")]
    pub overwrite: bool,
    /// Seed of the phase randomisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Point group of the particle (RELION's names and orientation): the automatic mask is
    /// averaged over the group, and each map's correlation with its group average is reported.
    #[arg(long, default_value = "C1")]
    pub sym: String,
    /// Backprojections (or any linear reconstructions) of the same two halves' images, in the
    /// order of the two maps: the maps' FSC is then also limited by the cross-validated
    /// estimate, each map against the other half's backprojection, as `reconstruct` reports it
    /// for its Gaussian half maps (all four maps with the mask of the masked curve, none with
    /// `--mask none`; the backprojections' last three shells are not used, and beyond the shells
    /// the estimate measures reliably the maps' FSC is read lowered by its largest excess over
    /// the estimate). Given in the other order (each map agreeing more with the backprojection
    /// given for the other map, as a model does with its own images), they are refused.
    #[arg(long, num_args = 2, value_names = ["BP_A", "BP_B"])]
    pub cross_validate: Option<Vec<PathBuf>>,
}

/// The halves recorded by the `run.json` beside `map` (`half_split`, written by `reconstruct`
/// and `backproject`), when there is one.
fn half_split_beside(map: &Path) -> Option<HalfSplitRecord> {
    let (_, run) = crate::gaussian_halves::run_json_beside(map)?;
    serde_json::from_value(run["half_split"].clone()).ok()
}

/// The half each of two half maps holds, as (particle count, image hash) from the `run.json`
/// beside them (`half_split`, [`HalfSplitRecord`]): where both lie in folders with the same
/// record and are named `half_map_a.mrc` or `half_map_b.mrc`, as `reconstruct` and
/// `backproject` write them; `None` otherwise.
fn halves_given(paths: [&Path; 2]) -> Option<[(usize, String); 2]> {
    let record = half_split_beside(paths[0])?;
    if half_split_beside(paths[1]).as_ref() != Some(&record) {
        return None;
    }
    let half = |p: &Path| match p.file_name()?.to_str()? {
        "half_map_a.mrc" => Some(0),
        "half_map_b.mrc" => Some(1),
        _ => None,
    };
    let (a, b) = (half(paths[0])?, half(paths[1])?);
    Some([a, b].map(|h| (record.particles[h], record.images[h].clone())))
}

/// Refuses `--cross-validate` backprojections of other halves than the maps, or of the same
/// halves in the other order, where the `run.json` files beside both record their halves
/// ([`halves_given`]): a map would then share images with the backprojection given for the
/// other half, and the estimate would count their noise as signal (the pairing statistic sees
/// a swap only where the model fitted enough of its images' noise, and a split that is merely
/// different not at all).
fn check_same_halves(maps: [&Path; 2], bp: [&Path; 2]) -> Result<()> {
    let (Some(m), Some(b)) = (halves_given(maps), halves_given(bp)) else {
        return Ok(());
    };
    if m == b {
        return Ok(());
    }
    let names = format!("{} and {} (--cross-validate)", bp[0].display(), bp[1].display());
    let maps = format!("{} and {}", maps[0].display(), maps[1].display());
    if m == [b[1].clone(), b[0].clone()] {
        bail!("{names} are the backprojections of the halves of {maps} in the other order (as their run.json files record them): give the backprojection of the first map's half first");
    }
    bail!(
        "{names} were made from other halves than {maps}: the run.json beside the backprojections records halves of {} + {} particles, the one beside the maps {} + {}, with different images. A map may then share images with the backprojection given for the other half, whose noise the estimate would count as signal; backproject the same particles with the same halves (the file's half sets, or the same --seed and selection as the reconstruction)",
        b[0].0,
        b[1].0,
        m[0].0,
        m[1].0
    );
}

/// Read a backprojected half map for `--cross-validate`: cubic, `d` px.
fn read_backprojection(path: &Path, d: usize) -> Result<Vec<f32>> {
    let f = MrcFile::open(path)?;
    let h = f.header();
    if [h.nx, h.ny, h.nz] != [d, d, d] {
        bail!(
            "{} (--cross-validate) is {}×{}×{} but the maps are {d}³: the backprojections must have the maps' box",
            path.display(),
            h.nx,
            h.ny,
            h.nz
        );
    }
    // Its values are checked with the other backprojection's (`check_maps_labelled`).
    Ok(f.read_all()?)
}

/// The real-space correlation of `map` with its average over `group`, weighted by `mask`.
fn symmetry_agreement(map: &[f32], d: usize, group: &PointGroup, mask: &[f32]) -> f64 {
    let avg = symmetrize_map(map, d, group);
    let w: f64 = mask.iter().map(|&m| m as f64).sum();
    let mean = |v: &[f32]| v.iter().zip(mask).map(|(&x, &m)| x as f64 * m as f64).sum::<f64>() / w;
    let (ma, mb) = (mean(map), mean(&avg));
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for ((&x, &y), &m) in map.iter().zip(&avg).zip(mask) {
        let (x, y, m) = (x as f64 - ma, y as f64 - mb, m as f64);
        ab += m * x * y;
        aa += m * x * x;
        bb += m * y * y;
    }
    ab / (aa * bb).sqrt()
}

/// `--apix`: a positive, finite number of Å (clap names the option in the error).
fn parse_apix(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("the pixel size must be a positive, finite number of Å, not {s}"))
    }
}

fn res_text(r: &Result<Resolution, NoResolution>, apix: f64) -> String {
    match r {
        Ok(r) => r.describe(apix),
        Err(e) => format!("undefined: {e}"),
    }
}

pub fn run(a: Args) -> Result<()> {
    let group = PointGroup::parse(&a.sym).map_err(|e| anyhow!("--sym: {e}"))?;
    // The output folder is taken first, so that a refused folder costs no work.
    let mut held = match &a.out {
        Some(dir) => Some(OutputDir::open(dir, Existing::from_flags(false, a.overwrite), "fsc")?),
        None => None,
    };
    let fa = MrcFile::open(&a.map_a)?;
    let fb = MrcFile::open(&a.map_b)?;
    let (ha, hb) = (fa.header(), fb.header());
    let d = ha.nx;
    if [ha.nx, ha.ny, ha.nz] != [d, d, d] {
        bail!("{}: the map is {}×{}×{}; FSC needs a cubic map", a.map_a.display(), ha.nx, ha.ny, ha.nz);
    }
    if [hb.nx, hb.ny, hb.nz] != [d, d, d] {
        bail!("{} is {}×{}×{} but {} is {d}³: the maps must have the same box", a.map_b.display(), hb.nx, hb.ny, hb.nz, a.map_a.display());
    }
    let apix = match (a.apix, ha.apix, hb.apix) {
        (Some(x), _, _) => x,
        (None, Some(x), Some(y)) if (x - y).abs() > 1e-3 * x => {
            bail!("{} has {x} Å/px but {} has {y} Å/px; resample one, or give --apix to override", a.map_a.display(), a.map_b.display())
        }
        (None, Some(x), _) | (None, None, Some(x)) => x,
        (None, None, None) => bail!("neither map header gives a pixel size; give one with --apix"),
    };
    let va = fa.read_all()?;
    let vb = fb.read_all()?;
    let labels = [format!("{} (first map)", a.map_a.display()), format!("{} (second map)", a.map_b.display())];
    check_maps_labelled(&va, &vb, [&labels[0], &labels[1]]).map_err(|e| anyhow!("no resolution: {e}"))?;
    // Gaussian half maps read without --cross-validate: said so (crate::gaussian_halves).
    let gaussian = if a.cross_validate.is_none() { crate::gaussian_halves::detect(&a.map_a, &a.map_b) } else { None };
    if let Some(g) = &gaussian {
        tracing::warn!("{}", g.warning("this FSC"));
    }
    let mask_data;
    let mask = match a.mask.as_str() {
        "auto" if !group.is_trivial() => {
            mask_data = symmetrize_map(&auto_mask(&va, &vb, d, apix), d, &group);
            MaskChoice::Given(&mask_data)
        }
        "auto" => MaskChoice::Auto,
        "none" => MaskChoice::None,
        path => {
            let m = MrcFile::open(path).with_context(|| format!("reading the mask {path}"))?;
            let h = m.header();
            if [h.nx, h.ny, h.nz] != [d, d, d] {
                bail!("{path}: the mask is {}×{}×{}, the maps {d}³", h.nx, h.ny, h.nz);
            }
            mask_data = m.read_all()?;
            MaskChoice::Given(&mask_data)
        }
    };
    let agreement = if group.is_trivial() {
        None
    } else {
        let m = match mask {
            MaskChoice::Given(m) => m.to_vec(),
            _ => vec![1.0; d * d * d],
        };
        Some([symmetry_agreement(&va, d, &group, &m), symmetry_agreement(&vb, d, &group, &m)])
    };
    let rep = gold_standard(&va, &vb, d, apix, mask, a.seed);
    if let Some(reason) = &rep.degenerate {
        bail!("no resolution: {reason}");
    }
    // With --cross-validate, backprojections that read as given in the other order
    // (`crossval::Pairing`) are refused.
    let cross = match &a.cross_validate {
        Some(paths) => {
            check_same_halves([&a.map_a, &a.map_b], [&paths[0], &paths[1]])?;
            let (ma, mb) = (read_backprojection(&paths[0], d)?, read_backprojection(&paths[1], d)?);
            let names = paths.iter().map(|p| format!("{} (--cross-validate)", p.display())).collect::<Vec<_>>();
            check_maps_labelled(&ma, &mb, [&names[0], &names[1]]).map_err(|e| anyhow!("no resolution: {e}"))?;
            let cv = cross_validated([&va, &vb], [&ma, &mb], d, last_usable_shell(d), rep.mask.as_deref(), Some(&group));
            if let Some(p) = cv.pairing.filter(|p| p.looks_swapped()) {
                bail!(
                    "the --cross-validate backprojections look swapped: beyond {:.2} Å each map agrees with the backprojection given for the other map more than with the one given for its own (by {:.3} ± {:.3} in FSC), as a model does with the images it was fitted to; give first the backprojection of the images {} was made from",
                    p.first_shell_a(d, apix),
                    -p.own_minus_cross,
                    p.standard_error,
                    a.map_a.display()
                );
            }
            Some(cv)
        }
        None => None,
    };
    let results = [
        ("resolution_0143", "FSC 0.143", rep.try_resolution(0.143)),
        ("resolution_05", "FSC 0.5", rep.try_resolution(0.5)),
        ("resolution_0143_unmasked", "FSC 0.143 (unmasked)", rep.try_resolution_unmasked(0.143)),
        ("resolution_05_unmasked", "FSC 0.5 (unmasked)", rep.try_resolution_unmasked(0.5)),
    ];
    // With --cross-validate: the limit at 0.143 and at 0.5, what the estimate reads there (the
    // limit, or beyond the shells it estimates reliably the maps' own curve lowered by the
    // excess it measured), and the coarser of that and the maps' own (masked, corrected)
    // resolution, read as `reconstruct` reads it.
    let limits = cross.as_ref().map(|cv| [0.143, 0.5].map(|t| cv.limit(t, d, apix)));
    let readings = cross.as_ref().map(|cv| [0.143, 0.5].map(|t| cv.reading(rep.final_curve(), t, d, apix)));
    let extrapolated = cross.as_ref().map(|cv| cv.extrapolated(rep.final_curve()));
    let limited_results = readings.map(|l| [0, 1].map(|i| results[i].2.clone().map(|r| reported_with_limit(r, l[i], apix))));
    if let Some(out) = &mut held {
        out.write_fsc(&rep)?;
        // With --cross-validate the plot draws the estimate's curve and the limited figures, as
        // reconstruct's fsc.png does.
        let reported = limited_results.as_ref().map(|r| {
            let [r0143, r05] = r.each_ref().map(|r| match r {
                Ok(r) => r.short(),
                Err(_) => "undefined".to_string(),
            });
            format!("limited {r0143} at 0.143, {r05} at 0.5")
        });
        let limit = cross.as_ref().zip(extrapolated.as_ref()).zip(reported).map(|((cv, beyond), reported)| {
            let crosses = cv.limit(0.143, d, apix).is_some();
            crate::figures::FscLimit::cross_validated(&cv.half_map_equivalent, cv.last_shell, beyond, crosses, reported)
        });
        crate::figures::fsc_plot_limited(&out.path("fsc.png"), "FSC", &rep, limit)?;
    }
    if a.json {
        let curve: Vec<serde_json::Value> = (0..rep.unmasked.len())
            .map(|n| {
                serde_json::json!({
                    "shell": n,
                    "frequency_inv_a": rep.frequency(n),
                    "fsc_unmasked": rep.unmasked[n],
                    "fsc_masked": rep.masked.as_ref().map(|c| c[n]),
                    "fsc_corrected": rep.corrected.as_ref().map(|c| c[n]),
                })
            })
            .collect();
        let mut out = serde_json::json!({
            "box": d,
            "apix": apix,
            "mask": a.mask,
            "curve": curve,
            "gaussian_half_maps": gaussian.as_ref().map(|g| g.json()),
        });
        for (key, _, r) in &results {
            insert_resolution_json(&mut out, key, r.clone(), apix);
        }
        if let (Some(cv), Some(limits), Some(limited_results)) = (&cross, limits, &limited_results) {
            let mut c = serde_json::json!({
                "last_shell": cv.last_shell,
                "full_vs_truth": cv.full_vs_truth,
                "standard_error": cv.standard_error,
                "half_map_equivalent": cv.half_map_equivalent,
            });
            // A crossing within the shells estimated, or null where the curve holds to the last.
            let put = |obj: &mut serde_json::Value, key: &str, l: Option<Resolution>| match l {
                Some(l) => insert_resolution_json(obj, key, Ok(l), apix),
                None => obj[key] = serde_json::Value::Null,
            };
            for (key, l) in ["limit_0143", "limit_05"].into_iter().zip(limits) {
                put(&mut c, key, l);
            }
            // Where each limit would be with the estimate one standard error higher (finer)
            // and lower (coarser).
            for (key, t) in [("range_0143", 0.143), ("range_05", 0.5)] {
                let range = cv.range(t, d, apix);
                let mut r = serde_json::json!({});
                put(&mut r, "finer", range.finer);
                put(&mut r, "coarser", range.coarser);
                c[key] = r;
            }
            // Beyond the shells estimated reliably: the last of them, the half maps' excess over
            // the estimate there, and where the curve read beyond crosses when the estimate
            // itself does not.
            c["reliable_shell"] = serde_json::json!(cv.reliable_shell());
            c["reliable_shell_a"] = serde_json::json!(cv.reliable_shell_a(d, apix));
            c["excess"] = serde_json::json!(cv.excess(rep.final_curve()));
            c["extrapolated"] = serde_json::json!(extrapolated);
            for (key, t) in [("beyond_0143", 0.143), ("beyond_05", 0.5)] {
                match cv.beyond(rep.final_curve(), t, d, apix) {
                    Some(r) => insert_reported_json(&mut c, key, Ok(reported_reading(r, apix))),
                    None => c[key] = serde_json::Value::Null,
                }
            }
            c["pairing"] = serde_json::to_value(cv.pairing.map(PairingSummary::from))?;
            out["cross_validated"] = c;
            for (key, r) in ["resolution_0143_limited", "resolution_05_limited"].into_iter().zip(limited_results) {
                insert_reported_json(&mut out, key, r.clone());
            }
        }
        out["symmetry"] = serde_json::json!(group.name());
        if let Some([sa, sb]) = agreement {
            out["symmetry_agreement"] = serde_json::json!({ "first": sa, "second": sb });
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("FSC 0.143: {}", res_text(&results[0].2, apix));
        println!("FSC 0.5:   {}", res_text(&results[1].2, apix));
        println!("(unmasked: {} at 0.143, {} at 0.5)", res_text(&results[2].2, apix), res_text(&results[3].2, apix));
        if let (Some(cv), Some(limits), Some(limited_results)) = (&cross, limits, &limited_results) {
            let last_a = cv.last_shell_a(d, apix);
            let limit = limits.map(|l| match l {
                Some(l) => l.describe(apix),
                None => format!("no crossing up to shell {} ({last_a:.2} Å)", cv.last_shell),
            });
            println!("cross-validated estimate: {} at 0.143, {} at 0.5", limit[0], limit[1]);
            let range = LimitRangeSummary::new(cv.range(0.143, d, apix), apix);
            println!("within one standard error at 0.143: {}", range.words(last_a));
            let reading = readings.and_then(|r| r[0]);
            if reading.is_some_and(|r| r.bound) {
                println!(
                    "the estimate is reliable (its standard error within {2:.0}% of it) only to shell {0} ({1:.2} Å), short of its last shell: nothing is read past the last shell, and the figure there is a bound",
                    cv.reliable_shell(),
                    cv.reliable_shell_a(d, apix),
                    100.0 * cryosplat_core::crossval::RELIABLE_SE_FRACTION,
                );
            } else if limits[0].is_none() {
                let beyond = match reading {
                    Some(r) => r.resolution.describe(apix),
                    None => "no crossing".to_string(),
                };
                println!(
                    "beyond shell {} ({:.2} Å, the last where its standard error is within {:.0}% of it): the maps' FSC lowered by their largest excess over the estimate ({:.3} in correlation) reads {beyond} at 0.143",
                    cv.reliable_shell(),
                    cv.reliable_shell_a(d, apix),
                    100.0 * cryosplat_core::crossval::RELIABLE_SE_FRACTION,
                    cv.excess(rep.final_curve())
                );
            }
            let [r0143, r05] = limited_results.each_ref().map(|r| match r {
                Ok(r) => r.to_string(),
                Err(e) => format!("undefined: {e}"),
            });
            println!("limited (the coarser): {r0143} at 0.143, {r05} at 0.5");
        }
        if let Some([sa, sb]) = agreement {
            println!(
                "{} symmetry: each map's correlation with its group average (1 = symmetric) is {sa:.4} (first), {sb:.4} (second)",
                group.name()
            );
        }
    }
    match results.iter().find_map(|(_, name, r)| r.as_ref().err().map(|e| (name, e))) {
        Some((name, e)) => bail!("no resolution at {name}: {e}"),
        None => Ok(()),
    }
}
