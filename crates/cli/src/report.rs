//! `report.html`: one self-contained page (figures embedded as base64 PNG) that shows what a
//! run produced: resolutions, FSC curves, loss per epoch, map slices and projections, the
//! Gaussians' amplitude and size distributions, and every setting.

use anyhow::{Context, Result};
use base64::Engine;
use cryosplat_core::pose::{mat_mul, Mat3};
use cryosplat_core::views::{viewing_direction, LeastSampled, ViewDistribution, ViewSummary};
use cryosplat_train::reconstruct::{EpochResult, LIMITED_RESOLUTION_METHOD, RESOLUTION_METHOD};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One section of the report: a heading, optional rows of (name, value), optional paragraphs,
/// and figures (PNG files, embedded).
#[derive(Default)]
pub struct Section {
    pub heading: String,
    pub paragraphs: Vec<String>,
    pub rows: Vec<(String, String)>,
    pub figures: Vec<(String, PathBuf)>,
}

impl Section {
    pub fn new(heading: impl Into<String>) -> Self {
        Section { heading: heading.into(), ..Default::default() }
    }
    pub fn text(mut self, p: impl Into<String>) -> Self {
        self.paragraphs.push(p.into());
        self
    }
    pub fn row(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.rows.push((k.into(), v.into()));
        self
    }
    pub fn figure(mut self, caption: impl Into<String>, png: impl Into<PathBuf>) -> Self {
        self.figures.push((caption.into(), png.into()));
        self
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// How far the reported resolution of Gaussian maps can be trusted, as measured on simulations
/// with a ground truth (BENCHMARKS.md, "The cross-validated limit").
pub const CALIBRATION: &str = "How far to trust the resolution: two half maps can only show how well they agree, and two \
Gaussian half maps also agree on some detail the data do not hold. On 15 simulated sets with a ground truth (BENCHMARKS.md, \
\"The cross-validated limit\"), the half-map FSC alone crossed 0.143 at 0.89 to 1.04 times the resolution at which the map's FSC \
against the truth crosses 0.5 (the same automatic mask) and claimed Nyquist for four maps 2% to 30% coarser than that. The \
resolution reported is therefore limited by the cross-validated estimate, made with the half-map FSC's mask and read half a \
standard error below itself. On 27 runs of the simulation matrix at the default number of Gaussians (48 to 128 px, SNR \
0.005 to 0.1) it read 0.98 to 1.09 times the truth's resolution, within 5% on 26, and never more than 3% optimistic; over \
73 runs with other numbers of Gaussians too it was within 3% on 41, within 5% on 72, and more than 3% optimistic on two, by \
at most 4% (BENCHMARKS.md, \"The cross-validated estimate, masked\" and \"Beyond the reliable estimate\"). Made without \
the mask, as before, it had read up to 21% pessimistic at SNR 0.005. Where the estimate holds to its last shell (three \
shells before Nyquist), the shells beyond those where its standard error stays within 10% of it are read from the half-map \
FSC lowered by the largest excess of its claim over the estimate there; before, such runs reported a bound at the last \
shell, 3% to 10% coarser than the truth. The range \
given with the limit is where it would be with its estimate one standard error higher or lower; on 73 simulated runs the \
truth fell inside it 53 times, finer than it 9 times and coarser 11 times. Past the estimate's last shell the half-map \
FSC is read only where the estimate is reliable up to that shell; otherwise the figure is a bound there (\"at least\"): \
over six noise realisations each of nine simulated sets (the same truth, other poses and noise; BENCHMARKS.md, \"Noise \
realisations of one set\"), the reading past the last shell had claimed Nyquist for maps of an O and an I set 6% to 13% \
coarser; now 5 of the 55 runs' figures are more than 3% optimistic (10 before), the worst by 5% (13% before). Those realisations also \
show how far one set's figure moves with the noise alone: a standard deviation of 2% to 5% of the resolution without a point \
group and up to 10% with one, so a figure within a few percent of the truth on one data set can miss it by as much on the \
next. That spread is the estimate's own error: where it crosses, the estimate is unbiased and its standard error is the size \
of its error (98 runs), and the range holds the truth on 74% of runs. On fourteen sets without symmetry held out from every \
choice above (two to six realisations each, 39 runs; BENCHMARKS.md, \"Held-out sets, the estimate's error, and four changes to its reading\") the \
figure was within 3% of the truth on 26, more than 3% optimistic once (by 3.3%) and at most 8% pessimistic; two point groups at 96 px read 0.98 to 1.00 (O) \
and 1.04 to 1.05 (C4).";

/// Flatten a JSON object of settings into (key, value) rows, nested keys joined by dots.
pub fn settings_rows(v: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, x, out);
                }
            }
            serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// Build the page. Figures that do not exist are skipped with a note in the page (a report is
/// still useful without one plot), never silently.
pub fn render_html(title: &str, sections: &[Section]) -> Result<String> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}\
h1{{font-size:1.6em}} h2{{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}}\
table{{border-collapse:collapse;margin:.5em 0}} td{{padding:.15em .8em;border-bottom:1px solid #eee;vertical-align:top}}\
td:first-child{{color:#555}} figure{{display:inline-block;margin:.5em 1em .5em 0}} img{{max-width:100%;border:1px solid #ddd}}\
figcaption{{font-size:.9em;color:#555}} .missing{{color:#a00}}\
</style></head><body>\n<h1>{t}</h1>\n",
        t = escape(title)
    );
    h.push_str(&render_sections(sections));
    let _ = writeln!(h, "<p style=\"color:#888;font-size:.8em\">cryosplat {}</p>\n</body></html>", env!("CARGO_PKG_VERSION"));
    Ok(h)
}

/// The HTML of `sections` (headings, paragraphs, rows and embedded figures).
fn render_sections(sections: &[Section]) -> String {
    let mut h = String::new();
    for s in sections {
        let _ = writeln!(h, "<h2>{}</h2>", escape(&s.heading));
        for p in &s.paragraphs {
            let _ = writeln!(h, "<p>{}</p>", escape(p));
        }
        if !s.rows.is_empty() {
            h.push_str("<table>\n");
            for (k, v) in &s.rows {
                let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(v));
            }
            h.push_str("</table>\n");
        }
        for (caption, path) in &s.figures {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                    let _ = writeln!(
                        h,
                        "<figure><img alt=\"{c}\" src=\"data:image/png;base64,{b64}\"><figcaption>{c}</figcaption></figure>",
                        c = escape(caption)
                    );
                }
                Err(e) => {
                    let _ = writeln!(h, "<p class=\"missing\">{}: figure not available ({e})</p>", escape(caption));
                }
            }
        }
    }
    h
}

/// The footer line every page ends with; [`append_sections`] inserts before it.
const FOOTER_START: &str = "<p style=\"color:#888;font-size:.8em\">cryosplat ";

/// Add `sections` at the end of an existing report (before its footer), for steps that run
/// after the report was written (post-processing). Written atomically.
pub fn append_sections(path: &Path, sections: &[Section]) -> Result<()> {
    let page = std::fs::read_to_string(path).with_context(|| format!("{}: reading the report", path.display()))?;
    let at = page.rfind(FOOTER_START).with_context(|| format!("{}: not a report written by this program", path.display()))?;
    let mut out = String::with_capacity(page.len());
    out.push_str(&page[..at]);
    out.push_str(&render_sections(sections));
    out.push_str(&page[at..]);
    cryosplat_formats::atomic::write_bytes_atomic(path, out.as_bytes()).with_context(|| "writing the report")?;
    Ok(())
}

/// Write `report.html` atomically.
pub fn write_report(path: &Path, title: &str, sections: &[Section]) -> Result<()> {
    let html = render_html(title, sections)?;
    cryosplat_formats::atomic::write_bytes_atomic(path, html.as_bytes()).with_context(|| "writing the report")?;
    Ok(())
}

/// The viewing directions of a set's particles (`cryosplat_core::views`): the counts drawn in
/// `views.png`, the coverage summary (10° cells, a view and its opposite counted as one) and the
/// direction of the map's transform the views measure least.
pub struct Views {
    /// Particles counted; with a point group each is counted once per operator (`summary.views`
    /// holds that count).
    pub particles: usize,
    /// The point group's order (1 without one).
    pub copies: usize,
    pub display: ViewDistribution,
    /// The azimuth step of the display's cells in degrees.
    pub display_cell_deg: usize,
    pub summary: ViewSummary,
    pub least_sampled: LeastSampled,
}

/// [`Views::warning`] is given when the least-measured direction of the map's transform is on
/// fewer than this fraction of the central sections uniform views would put there (a third:
/// the preferred-view sets of the simulation matrix put it on none, 200 uniform views on 0.46
/// of the uniform share at worst over 20 draws; tests below and BENCHMARKS.md, "Viewing
/// directions").
pub const UNDER_SAMPLED_FRACTION: f64 = 1.0 / 3.0;

/// The cells `views.png` may use, finest first: (azimuth cells, z cells, azimuth step in
/// degrees). The finest with at least [`VIEWS_PER_CELL`] views per cell on average is drawn,
/// so that a uniform set does not look like noise.
const DISPLAY_CELLS: [(usize, usize, usize); 4] = [(72, 36, 5), (36, 18, 10), (24, 12, 15), (18, 9, 20)];
const VIEWS_PER_CELL: usize = 5;

impl Views {
    /// The directions of `rotations` (the particles' rotations `A`; at least one), each seen
    /// also under every operator `R_k` of a point group (`ops`, the identity among them): a
    /// symmetric particle of pose `A` is equally a view at `A·R_k`, so its symmetry mates fill
    /// directions its recorded poses leave empty.
    pub fn of_poses<'a>(rotations: impl ExactSizeIterator<Item = &'a Mat3>, ops: &[Mat3]) -> Self {
        let ops = if ops.is_empty() { &[cryosplat_core::pose::IDENTITY][..] } else { ops };
        let (particles, copies) = (rotations.len(), ops.len());
        let n = particles * copies;
        let (na, nz) = ViewDistribution::SUMMARY_CELLS;
        let (da, dz, step) = DISPLAY_CELLS.into_iter().find(|&(a, z, _)| n >= VIEWS_PER_CELL * a * z).unwrap_or(DISPLAY_CELLS[3]);
        let (mut coarse, mut fine, mut display) =
            (ViewDistribution::new(na, nz), ViewDistribution::new(72, 36), ViewDistribution::new(da, dz));
        // One pass, nothing stored per view (a point group of 60 multiplies the views).
        for a in rotations {
            for r in ops {
                let d = viewing_direction(&mat_mul(a, r));
                coarse.add(d);
                fine.add(d);
                display.add(d);
            }
        }
        let summary = coarse.summary().expect("an even azimuth count");
        let least_sampled = fine.least_sampled().unwrap_or(LeastSampled {
            direction: [0.0, 0.0, 1.0],
            rot_tilt_deg: [0.0, 0.0],
            share: 0.0,
            uniform_share: 0.0,
        });
        Views { particles, copies, display, display_cell_deg: step, summary, least_sampled }
    }

    /// Draw `views.png` into `dir`; returns its path.
    pub fn write_png(&self, dir: &Path) -> Result<PathBuf> {
        let png = dir.join("views.png");
        let mates = if self.copies > 1 { format!(" × {} symmetry mates", self.copies) } else { String::new() };
        let title = format!("viewing directions of {} particles{mates} ({}° cells)", self.particles, self.display_cell_deg);
        crate::figures::view_distribution_plot(&png, &title, &self.display)?;
        Ok(png)
    }

    /// The share of directions as many views spread uniformly would leave empty: each
    /// direction with probability `(1 − 1/M)^N`.
    pub fn uniform_empty_fraction(&self) -> f64 {
        (1.0 - 1.0 / self.summary.directions as f64).powf(self.summary.views as f64)
    }

    /// A warning when the views leave a direction of the map's transform under-measured (on
    /// fewer than [`UNDER_SAMPLED_FRACTION`] of the sections uniform views would put there):
    /// the resolution, an average over directions, then hides a poorer one along it.
    pub fn warning(&self) -> Option<String> {
        let l = &self.least_sampled;
        (l.share < UNDER_SAMPLED_FRACTION * l.uniform_share).then(|| {
            format!(
                "the views leave the map's transform along rot {:.0}°, tilt {:.0}° barely measured ({:.1}% of the views' central sections pass within {:.0}° of it, {:.1}% for uniform views): the map is poorer along that direction than its resolution, an average over all directions, shows (views.png)",
                l.rot_tilt_deg[0],
                l.rot_tilt_deg[1],
                100.0 * l.share,
                cryosplat_core::views::SECTION_BAND_DEG,
                100.0 * l.uniform_share
            )
        })
    }

    /// One line on the coverage, for the terminal, `info` and the report.
    pub fn text(&self) -> String {
        let (s, l) = (&self.summary, &self.least_sampled);
        format!(
            "{:.1}% of the {} directions (10° cells, a view and its opposite as one) hold no view ({:.1}% would, were as many views spread uniformly), the fullest {:.1} times the mean; the map's transform is least measured along rot {:.0}°, tilt {:.0}° ({:.1}% of the central sections within {:.0}°, {:.1}% for uniform views)",
            100.0 * s.empty_fraction,
            s.directions,
            100.0 * self.uniform_empty_fraction(),
            s.max_over_mean,
            l.rot_tilt_deg[0],
            l.rot_tilt_deg[1],
            100.0 * l.share,
            cryosplat_core::views::SECTION_BAND_DEG,
            100.0 * l.uniform_share
        )
    }

    /// The report's section.
    pub fn section(&self, dir: &Path) -> Section {
        let warning = self.warning().map(|w| format!(" Warning: {w}.")).unwrap_or_default();
        Section::new("Views")
            .text(format!(
                "Where the {} particles' recorded poses look along{} (the image's z axis in the map's frame: RELION's rot is the azimuth, tilt the angle from z), counted in cells of equal area: {}. Each view samples the central section of the map's transform perpendicular to its direction: where the views gather about one axis, their sections miss the transform along that axis, and the map is poorer along it than the FSC, an average over all directions, shows.{warning}",
                self.particles,
                if self.copies > 1 { format!(", each also from its {} symmetry-related directions", self.copies - 1) } else { String::new() },
                self.text()
            ))
            .figure(format!("Viewing directions (cells of {}° of azimuth, equal area; grey: none)", self.display_cell_deg), dir.join("views.png"))
    }
}

/// Figures and `report.html` after an epoch of a reconstruction (with `views`, the particles'
/// viewing directions); returns the files written.
pub fn write_epoch_outputs(
    dir: &Path,
    title: &str,
    r: &EpochResult,
    settings: &serde_json::Value,
    views: Option<&Views>,
) -> Result<Vec<PathBuf>> {
    use crate::figures;
    let limit = r.cross_validated.map(|cv| {
        let reported = format!("reported {} at 0.143, {} at 0.5", r.record.resolution_0143.short(), r.record.resolution_05.short());
        figures::FscLimit::cross_validated(&cv.half_map_equivalent, cv.last_shell, &cv.extrapolated, cv.limit_0143.is_some(), reported)
    });
    figures::fsc_plot_limited(&dir.join("fsc.png"), "half-map FSC", r.fsc, limit)?;
    figures::map_views(r.map, r.d, &dir.join("slices.png"), &dir.join("projections.png"))?;
    let loss_a: Vec<(f64, f64)> = r.history.iter().map(|h| (h.epoch as f64, h.loss[0])).collect();
    let loss_b: Vec<(f64, f64)> = r.history.iter().map(|h| (h.epoch as f64, h.loss[1])).collect();
    figures::line_plot(
        &dir.join("loss.png"),
        "training loss per epoch",
        &figures::Axes { log_y: true, ..figures::Axes::new("epoch", "mean MSE (normalised units)") },
        &[("half A", loss_a), ("half B", loss_b)],
    )?;
    let l = r.d as f64 * r.apix;
    let mut amps = Vec::new();
    let mut sizes = Vec::new();
    for m in r.models {
        for i in 0..m.len() {
            let g = m.physical_f64(i);
            amps.push(g.amp);
            sizes.push((g.scales.iter().map(|s| s * s).sum::<f64>() / 3.0).sqrt() * l);
        }
    }
    figures::histogram(&dir.join("amplitudes.png"), "Gaussian amplitudes (both halves)", "amplitude (normalised mass)", &amps, 50)?;
    figures::histogram(&dir.join("sizes.png"), "Gaussian sizes (both halves)", "RMS standard deviation (Å)", &sizes, 50)?;
    let mut written: Vec<PathBuf> =
        ["fsc.png", "slices.png", "projections.png", "loss.png", "amplitudes.png", "sizes.png"].iter().map(|f| dir.join(f)).collect();
    let last = r.record;
    let method = match r.cross_validated {
        Some(_) => format!(
            "Resolutions are read at the first crossing of {LIMITED_RESOLUTION_METHOD}. Both Gaussian halves fit their images with the same kind of model, so they can agree on detail the data do not hold, and their FSC alone would count it as resolution. Each Gaussian half map is therefore also compared with the backprojection of the other half's images, which shares no such error; divided by the backprojection halves' own agreement (all four maps with the half-map FSC's mask), that estimates how the map correlates with the truth, read half a standard error below itself, and the resolution reported is the coarser of the two readings (shells where the backprojections agree too little to say anything count as no correlation, so where the Gaussian maps hold detail finer than a backprojection of the same images resolves, the figure stops about where the backprojection's evidence ends and the map may be better than it; the backprojection's three outermost shells carry no estimate). Where the estimate holds to its last shell, the shells beyond those it estimates reliably (standard error within 10% of the estimate) are read from the half-map FSC lowered by the largest excess of its claim over the estimate in the reliable shells, in the map's correlation with the truth: on every simulated set that excess grew with frequency, so the largest one measured stands for the shells the estimate cannot reach. Past the estimate's last shell that curve is read only where the estimate is reliable up to it; otherwise the figure is a bound at the last shell (\"at least\")."
        ),
        None => format!("Resolutions are read at the first crossing of the {RESOLUTION_METHOD}."),
    };
    let mut summary = Section::new("Result")
        .text(format!("Gold-standard half maps: two Gaussian models, each trained only on its own half of the particles. {method}"))
        .row("epochs done", format!("{}", last.epoch))
        .row("resolution (FSC 0.143)", last.resolution_0143.to_string())
        .row("resolution (FSC 0.5)", last.resolution_05.to_string());
    if let (Some(half), Some(cv)) = (last.half_map_0143, r.cross_validated) {
        summary = summary.row("half-map FSC alone (0.143)", half.to_string()).row(
            "cross-validated estimate (0.143)",
            match cv.limit_0143 {
                Some(l) => l.to_string(),
                None => format!("no crossing up to its last shell ({:.2} Å)", cv.last_shell_a),
            },
        );
        if cv.limit_0143.is_none() && !cv.extrapolated.is_empty() {
            let beyond = match cv.beyond_0143 {
                Some(b @ cryosplat_train::output::ReportedResolution::AtLeast { .. }) => format!(
                    "{b}: the estimate is reliable only to {:.2} Å, short of its last shell, so the half-map FSC lowered by the largest excess of its claim over the estimate there ({:.3} in correlation) is not read past the last shell",
                    cv.reliable_shell_a, cv.excess
                ),
                b => format!(
                    "{}: the half-map FSC lowered by {:.3} in correlation, the largest excess of its claim over the estimate up to {:.2} Å",
                    b.map_or("no crossing".to_string(), |b| b.to_string()),
                    cv.excess,
                    cv.reliable_shell_a
                ),
            };
            summary = summary.row("beyond the reliable estimate (0.143)", beyond);
        }
        if let Some(range) = cv.range_0143 {
            summary = summary.row("cross-validated estimate within one standard error (0.143)", range.words(cv.last_shell_a));
        }
    }
    let summary = summary
        .row("box / pixel size", format!("{} px / {:.4} Å", r.d, r.apix))
        .row("start", r.start.to_string())
        .row(
            "point group",
            match r.symmetry {
                Some(e) => format!("{} ({} copies of the asymmetric unit)", e.name(), e.order()),
                None => "C1 (no symmetry)".to_string(),
            },
        )
        .row(
            "Gaussians per half",
            match r.symmetry {
                Some(e) => format!("{} in the asymmetric unit, {} in all copies", r.models[0].len() / e.order(), r.models[0].len()),
                None => format!("{}", r.models[0].len()),
            },
        )
        .row("last epoch", format!("{:.1} s, {:.0} images/s", last.seconds, last.images_per_s));
    let summary = match r.check {
        None => summary,
        Some(c) => match c.warning(r.start.used) {
            Some(w) => summary.row("low-resolution check", format!("FAILED: {w}")),
            None if c.last_shell == 0 => {
                summary.row("low-resolution check", "not judged: the backprojection of the same images resolves no shell clearly")
            }
            None => summary.row(
                "low-resolution check",
                format!(
                    "passed: against a backprojection of the same images, the map's estimated FSC with the truth is at least {:.2} up to {:.1} Å",
                    c.worst_estimate,
                    c.last_shell_a.unwrap_or(f64::NAN)
                ),
            ),
        },
    };
    let summary = match r.completion {
        None => summary,
        Some(c) => summary.row("map.mrc", completion_text(c, r.d, r.apix)),
    };
    let mut refine_section = None;
    if let Some(rf) = r.refinement {
        let plots = [
            ("refine_angles.png", "Rotation correction per particle", "angle (°)", &rf.angle_deg),
            ("refine_shifts.png", "Origin correction per particle", "length (Å)", &rf.shift_a),
            ("refine_defocus.png", "Defocus correction per particle", "defocus offset (Å)", &rf.defocus_a),
        ];
        let mut sec = Section::new("Per-particle refinement").text(format!(
            "Each particle's pose, origin and defocus were refined with its own half's model; {} holds the refined values (every other column as read){}. rms / median / largest change: rotation {:.2} / {:.2} / {:.2}°, origin {:.2} / {:.2} / {:.2} Å, defocus {:.0} / {:.0} / {:.0} Å.",
            rf.star.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            if rf.native.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = rf.native.iter().filter_map(|p| p.file_name()).map(|f| f.to_string_lossy().into_owned()).collect();
                format!(", and in the input's own format {}", names.join(", "))
            },
            rf.angle_deg_stats.rms,
            rf.angle_deg_stats.median,
            rf.angle_deg_stats.max,
            rf.shift_a_stats.rms,
            rf.shift_a_stats.median,
            rf.shift_a_stats.max,
            rf.defocus_a_stats.rms,
            rf.defocus_a_stats.median,
            rf.defocus_a_stats.max
        ));
        for (file, title, label, values) in plots {
            figures::histogram(&dir.join(file), title, label, values, 40)?;
            written.push(dir.join(file));
            sec = sec.figure(title, dir.join(file));
        }
        refine_section = Some(sec);
    }
    let mut sections = vec![
        summary,
        Section::new("Fourier shell correlation")
            .text(CALIBRATION)
            .figure("Half-map FSC: unmasked, auto-masked, and corrected by phase randomisation; after the last pass also the cross-validated estimate (the half-map FSC that independent halves would show for the map's estimated correlation with the truth)", dir.join("fsc.png")),
        Section::new("Training").figure("Mean loss per epoch", dir.join("loss.png")),
        Section::new("Map")
            .text(format!(
                "Central slices and orthogonal projections of map.mrc (the average of the half maps{}{}).",
                if r.averaged_tail > 0.0 {
                    format!(", each made from its half model averaged over the last {:.0}% of its steps", r.averaged_tail * 100.0)
                } else {
                    String::new()
                },
                if r.completion.is_some() {
                    ", completed by the backprojection of the same images where they hold what the Gaussians miss"
                } else {
                    ""
                }
            ))
            .figure("Central slices", dir.join("slices.png"))
            .figure("Orthogonal projections", dir.join("projections.png")),
        Section::new("Gaussians")
            .text("gaussians.ply holds both halves' Gaussians (positions and scales in Å, in the map's frame); gaussians.cif shows them as pseudo-atoms in ChimeraX or PyMOL.")
            .figure("Amplitudes", dir.join("amplitudes.png"))
            .figure("Sizes", dir.join("sizes.png")),
        {
            let mut s = Section::new("Settings");
            s.rows = settings_rows(settings);
            s
        },
    ];
    if let Some(sec) = refine_section {
        sections.insert(1, sec);
    }
    if let Some(v) = views {
        written.push(v.write_png(dir)?);
        let at = sections.iter().position(|s| s.heading == "Training").unwrap_or(sections.len());
        sections.insert(at, v.section(dir));
    }
    write_report(&dir.join("report.html"), title, &sections)?;
    written.push(dir.join("report.html"));
    Ok(written)
}

/// The report's sentence on the completion of `map.mrc` (box `d`, pixel `apix`): the shells
/// where the data took part, and how much.
pub(crate) fn completion_text(c: &cryosplat_train::reconstruct::completion::CompletionSummary, d: usize, apix: f64) -> String {
    let taken: Vec<usize> = (1..c.data_share.len()).filter(|&n| c.data_share[n] > 0.0).collect();
    let at = |n: usize| d as f64 * apix / n as f64;
    match (taken.first(), taken.last()) {
        (Some(&lo), Some(&hi)) => format!(
            "the Gaussian map completed by the backprojection of the same images in {} of the shells from {:.1} to {:.1} Å, where both halves' images hold what their Gaussians miss (the data's share of the map up to {:.2}); the half maps and the resolution are the Gaussian ones; map_gaussians.mrc is the Gaussian map alone",
            taken.len(),
            at(lo),
            at(hi),
            taken.iter().map(|&n| c.data_share[n]).fold(0.0, f64::max)
        ),
        _ => "the Gaussian map: the images show nothing it misses in any shell (the completion by the backprojection left it as it is)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_views_of_200_particles_or_more_are_not_warned_of() {
        // The least-measured direction of 200 uniform views stays above 0.4 of the uniform
        // share (the warning is at a third) over 20 draws (worst 0.46).
        let mut worst = f64::INFINITY;
        for seed in 0..20 {
            let mut rng = cryosplat_core::rng::Rng::new(seed);
            let poses: Vec<_> = (0..200).map(|_| cryosplat_core::rotation::random_rotation(&mut rng)).collect();
            let v = Views::of_poses(poses.iter(), &[cryosplat_core::pose::IDENTITY]);
            assert!(v.warning().is_none(), "seed {seed}: {}", v.text());
            worst = worst.min(v.least_sampled.share / v.least_sampled.uniform_share);
        }
        assert!(worst > 0.4, "{worst}");
    }

    #[test]
    fn symmetry_mates_fill_what_a_point_group_turns_views_to() {
        // Top views (tilt below 10°). A four-fold about z turns them onto themselves: the
        // transform along z stays unmeasured. The operators of O turn them onto ±x and ±y too,
        // whose sections all miss the body diagonals (35° away): still warned of. Those of I
        // (z a two-fold axis) spread them over 15 axes, whose sections pass within 10° of
        // every direction: no warning.
        let mut rng = cryosplat_core::rng::Rng::new(4);
        let top: Vec<Mat3> = (0..1_000)
            .map(|_| cryosplat_core::rotation::euler_to_matrix(rng.uniform() * 360.0, rng.uniform() * 10.0, rng.uniform() * 360.0))
            .collect();
        let views = |name: &str| Views::of_poses(top.iter(), cryosplat_core::symmetry::PointGroup::parse(name).unwrap().operators());
        let (c1, c4, o, i) = (views("C1"), views("C4"), views("O"), views("I"));
        for v in [&c1, &c4] {
            assert!(v.warning().is_some() && v.least_sampled.rot_tilt_deg[1] < 5.0, "{}", v.text());
        }
        let diagonal = f64::to_degrees((1.0f64 / 3.0).sqrt().acos());
        assert!(o.warning().is_some() && (o.least_sampled.rot_tilt_deg[1] - diagonal).abs() < 5.0, "{}", o.text());
        assert!(i.warning().is_none(), "{}", i.text());
        assert_eq!((o.particles, o.copies, o.summary.views), (1_000, 24, 24_000));
        assert!(o.section(Path::new(".")).paragraphs[0].contains("each also from its 23 symmetry-related directions"));
    }

    #[test]
    fn the_views_figure_uses_cells_that_hold_five_views_on_average() {
        let mut rng = cryosplat_core::rng::Rng::new(2);
        let poses: Vec<_> = (0..20_000).map(|_| cryosplat_core::rotation::random_rotation(&mut rng)).collect();
        for (n, cells, step) in [(20_000, (72, 36), 5), (4_000, (36, 18), 10), (1_500, (24, 12), 15), (50, (18, 9), 20)] {
            let v = Views::of_poses(poses[..n].iter(), &[cryosplat_core::pose::IDENTITY]);
            assert_eq!(((v.display.azimuth_cells, v.display.z_cells), v.display_cell_deg), (cells, step), "{n} views");
            assert_eq!(v.summary.views, n as u64);
        }
    }

    #[test]
    fn embeds_figures_and_escapes_text() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("x.png");
        crate::figures::histogram(&png, "h", "x", &[1.0, 2.0, 3.0], 3).unwrap();
        let s =
            Section::new("Results <1>").row("resolution", "3.2 Å").figure("histogram", &png).figure("absent", dir.path().join("none.png"));
        let html = render_html("t & t", &[s]).unwrap();
        assert!(html.contains("Results &lt;1&gt;"));
        assert!(html.contains("t &amp; t"));
        assert!(html.contains("data:image/png;base64,iVBOR"));
        assert!(html.contains("figure not available"));
        let path = dir.path().join("report.html");
        std::fs::write(&path, &html).unwrap();
        append_sections(&path, &[Section::new("Later").row("B-factor", "-100 Å²")]).unwrap();
        let page = std::fs::read_to_string(&path).unwrap();
        let (later, footer) = (page.find("<h2>Later</h2>").unwrap(), page.rfind(FOOTER_START).unwrap());
        assert!(page.find("Results &lt;1&gt;").unwrap() < later && later < footer, "{page}");
        assert!(append_sections(&png, &[]).is_err(), "a file that is not a report is refused");
    }

    #[test]
    fn flattens_settings() {
        let v = serde_json::json!({"a": 1, "b": {"c": "x", "d": [1, 2]}});
        let rows = settings_rows(&v);
        assert!(rows.contains(&("a".to_string(), "1".to_string())));
        assert!(rows.contains(&("b.c".to_string(), "x".to_string())));
        assert!(rows.contains(&("b.d".to_string(), "[1,2]".to_string())));
    }
}
