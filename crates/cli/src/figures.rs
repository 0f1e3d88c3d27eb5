//! PNG figures for the report: map slices and projections, loss curves, and the Gaussians'
//! amplitude and size distributions. Every figure is written atomically.

use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;

/// Render into an in-memory RGB buffer with plotters, then write it as a PNG atomically.
fn save_plot<F>(path: &Path, w: u32, h: u32, draw: F) -> Result<()>
where
    F: FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()>,
{
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        draw(root.clone())?;
        root.present().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
    }
    write_rgb_png(path, &buf, w, h)
}

/// Write an RGB8 buffer as a PNG, atomically.
pub fn write_rgb_png(path: &Path, rgb: &[u8], w: u32, h: u32) -> Result<()> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(rgb, w, h, image::ColorType::Rgb8)
        .with_context(|| format!("encoding {}", path.display()))?;
    cryosplat_formats::atomic::write_bytes_atomic(path, &bytes)?;
    Ok(())
}

use image::ImageEncoder;

/// Map a 2D array (x fastest) to 8-bit grey with robust limits (0.5th and 99.5th percentiles).
fn to_grey(values: &[f32]) -> Vec<u8> {
    let mut finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return vec![0; values.len()];
    }
    finite.sort_by(|a, b| a.total_cmp(b));
    let lo = finite[finite.len() / 200];
    let hi = finite[(finite.len() - 1) - finite.len() / 200];
    let span = if hi > lo { hi - lo } else { 1.0 };
    values.iter().map(|&v| if v.is_finite() { (((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8 } else { 0 }).collect()
}

/// Three panels side by side, each `d×d` (x fastest, row 0 drawn at the bottom so that +y is up,
/// as ChimeraX and RELION display maps), upscaled to at least 192 px, with titles.
fn panels_png(path: &Path, panels: &[(&str, Vec<f32>)], d: usize) -> Result<()> {
    let scale = (192 / d.max(1)).max(1);
    let side = (d * scale) as u32;
    let title_h = 24u32;
    let gap = 8u32;
    let n = panels.len() as u32;
    let w = n * side + (n + 1) * gap;
    let h = side + title_h + gap;
    save_plot(path, w, h, |root| {
        for (p, (title, values)) in panels.iter().enumerate() {
            let grey = to_grey(values);
            let x0 = gap + p as u32 * (side + gap);
            root.draw(&Text::new(title.to_string(), (x0 as i32, 4), ("sans-serif", 16).into_font()))
                .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
            for row in 0..d {
                for col in 0..d {
                    let g = grey[row * d + col];
                    let px = x0 as i32 + (col * scale) as i32;
                    // +y up: row 0 at the bottom.
                    let py = (title_h + side) as i32 - ((row + 1) * scale) as i32;
                    root.draw(&Rectangle::new([(px, py), (px + scale as i32, py + scale as i32)], RGBColor(g, g, g).filled()))
                        .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
                }
            }
        }
        Ok(())
    })
}

/// Central slices of a `d³` map through the box centre (index `d/2`), perpendicular to z, y and x.
pub fn central_slices(map: &[f32], d: usize) -> [Vec<f32>; 3] {
    let c = d / 2;
    let mut xy = vec![0.0; d * d];
    let mut xz = vec![0.0; d * d];
    let mut yz = vec![0.0; d * d];
    for a in 0..d {
        for b in 0..d {
            xy[a * d + b] = map[(c * d + a) * d + b]; // row y, col x
            xz[a * d + b] = map[(a * d + c) * d + b]; // row z, col x
            yz[a * d + b] = map[(a * d + b) * d + c]; // row z, col y
        }
    }
    [xy, xz, yz]
}

/// Sums of a `d³` map along z, y and x.
pub fn orthogonal_projections(map: &[f32], d: usize) -> [Vec<f32>; 3] {
    let mut pz = vec![0.0; d * d];
    let mut py = vec![0.0; d * d];
    let mut px = vec![0.0; d * d];
    for z in 0..d {
        for y in 0..d {
            for x in 0..d {
                let v = map[(z * d + y) * d + x];
                pz[y * d + x] += v;
                py[z * d + x] += v;
                px[z * d + y] += v;
            }
        }
    }
    [pz, py, px]
}

/// Write `slices.png` (central slices) and `projections.png` (orthogonal projections) of a map.
pub fn map_views(map: &[f32], d: usize, slices_png: &Path, projections_png: &Path) -> Result<()> {
    slices(slices_png, map, d)?;
    let [pz, py, px] = orthogonal_projections(map, d);
    panels_png(projections_png, &[("along z (x→, y↑)", pz), ("along y (x→, z↑)", py), ("along x (y→, z↑)", px)], d)
}

/// The three central slices of a `d³` map in grey, side by side (the `slices.png` of a run).
pub fn slices(path: &Path, map: &[f32], d: usize) -> Result<()> {
    let [xy, xz, yz] = central_slices(map, d);
    panels_png(path, &[("slice z = 0 (x→, y↑)", xy), ("slice y = 0 (x→, z↑)", xz), ("slice x = 0 (y→, z↑)", yz)], d)
}

/// ChimeraX's `rainbow` palette (red, yellow, green, cyan, blue at equal steps) at `t` in
/// [0, 1] (clamped): low values red, high values blue, as `color sample … palette rainbow`
/// colours a surface.
pub fn rainbow(t: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 5] = [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 } * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let c = |k: usize| ((STOPS[i][k] * (1.0 - f) + STOPS[i + 1][k] * f) * 255.0).round() as u8;
    [c(0), c(1), c(2)]
}

/// Layout of [`locres_slices`] for a `d³` map: each panel is `d·scale` pixels square with
/// `scale = max(1, ⌊192/d⌋)`; panel `p` (0, 1, 2) starts at x = `gap + p·(side + gap)` and
/// y = `title`; voxel (column c, row r) of a slice covers x from `x0 + c·scale` and y from
/// `title + side − (r + 1)·scale` (+y up); the colour bar follows the panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocresSlicesLayout {
    pub scale: u32,
    pub side: u32,
    pub gap: u32,
    pub title: u32,
    pub width: u32,
    pub height: u32,
}

impl LocresSlicesLayout {
    /// Width of the colour bar and its labels (px).
    const BAR_AREA: u32 = 110;

    pub fn new(d: usize) -> Self {
        let scale = (192 / d.max(1)).max(1) as u32;
        let side = d as u32 * scale;
        let (gap, title) = (8, 24);
        LocresSlicesLayout { scale, side, gap, title, width: 3 * side + 4 * gap + Self::BAR_AREA, height: side + title + 2 * gap + 16 }
    }
}

/// The three central slices of `map` (`d³`; the average of the half maps) coloured by the local
/// resolution `locres_a` (`d³`, Å; 0 or less outside the mask): inside the mask each voxel takes
/// the [`rainbow`] colour of its resolution between `range_a` (finest, red) and coarsest (blue),
/// shaded by the map's grey level so that the density stays visible; outside it the map is
/// drawn in grey. A colour bar labelled in Å follows the panels ([`LocresSlicesLayout`]).
pub fn locres_slices(path: &Path, map: &[f32], locres_a: &[f32], d: usize, range_a: (f64, f64)) -> Result<()> {
    let lay = LocresSlicesLayout::new(d);
    let (lo, hi) = range_a;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let maps = central_slices(map, d);
    let res = central_slices(locres_a, d);
    let titles = ["slice z = 0 (x→, y↑)", "slice y = 0 (x→, z↑)", "slice x = 0 (y→, z↑)"];
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
    save_plot(path, lay.width, lay.height, |root| {
        let s = lay.scale as i32;
        for p in 0..3 {
            let grey = to_grey(&maps[p]);
            let x0 = (lay.gap + p as u32 * (lay.side + lay.gap)) as i32;
            root.draw(&Text::new(titles[p].to_string(), (x0, 4), ("sans-serif", 16).into_font())).map_err(|e| err(&e))?;
            for row in 0..d {
                for col in 0..d {
                    let g = grey[row * d + col] as f64 / 255.0;
                    let r = res[p][row * d + col] as f64;
                    let rgb = if r > 0.0 {
                        // Shaded: dark density keeps 40% of the colour's brightness.
                        let c = rainbow((r - lo) / span);
                        let k = 0.4 + 0.6 * g;
                        RGBColor((c[0] as f64 * k) as u8, (c[1] as f64 * k) as u8, (c[2] as f64 * k) as u8)
                    } else {
                        let v = (g * 255.0).round() as u8;
                        RGBColor(v, v, v)
                    };
                    let px = x0 + col as i32 * s;
                    let py = (lay.title + lay.side) as i32 - (row as i32 + 1) * s;
                    root.draw(&Rectangle::new([(px, py), (px + s, py + s)], rgb.filled())).map_err(|e| err(&e))?;
                }
            }
        }
        // The colour bar: finest at the bottom, coarsest at the top, five labels in Å.
        let bx = (3 * lay.side + 4 * lay.gap) as i32;
        let (top, bottom) = (lay.title as i32, (lay.title + lay.side) as i32);
        let h = (bottom - top).max(1);
        for y in top..bottom {
            let c = rainbow((bottom - 1 - y) as f64 / (h - 1).max(1) as f64);
            root.draw(&Rectangle::new([(bx, y), (bx + 18, y + 1)], RGBColor(c[0], c[1], c[2]).filled())).map_err(|e| err(&e))?;
        }
        root.draw(&Text::new("Å".to_string(), (bx, 4), ("sans-serif", 16).into_font())).map_err(|e| err(&e))?;
        for k in 0..5 {
            let t = k as f64 / 4.0;
            let y = bottom - 1 - (t * (h - 1) as f64).round() as i32;
            root.draw(&PathElement::new(vec![(bx + 18, y), (bx + 24, y)], BLACK)).map_err(|e| err(&e))?;
            let label = if hi > lo { format!("{:.2}", lo + t * (hi - lo)) } else { format!("{lo:.2}") };
            root.draw(&Text::new(label, (bx + 27, y - 7), ("sans-serif", 14).into_font())).map_err(|e| err(&e))?;
        }
        let note = "grey: outside the mask";
        root.draw(&Text::new(note.to_string(), (lay.gap as i32, bottom + lay.gap as i32), ("sans-serif", 13).into_font()))
            .map_err(|e| err(&e))?;
        Ok(())
    })
}

/// A line plot of one or more named series against epoch (or any x).
pub fn line_plot(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[(&str, Vec<(f64, f64)>)], log_y: bool) -> Result<()> {
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|(_, s)| s.iter().copied()).filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    if pts.is_empty() {
        anyhow::bail!("{}: nothing to plot", path.display());
    }
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        if !log_y || y > 0.0 {
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if !(y1 > y0) {
        y1 = y0.abs().max(1e-12) * 2.0 + y0;
    }
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 140, 140),
        RGBColor(90, 90, 90),
    ];
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
    save_plot(path, 720, 420, |root| {
        let mut builder = ChartBuilder::on(&root);
        builder.caption(title, ("sans-serif", 20)).margin(12).x_label_area_size(40).y_label_area_size(70);
        if log_y {
            let (lo, hi) = (y0.max(1e-30) / 1.2, y1 * 1.2);
            let mut chart = builder.build_cartesian_2d(x0..x1, (lo..hi).log_scale()).map_err(|e| err(&e))?;
            chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(|e| err(&e))?;
            for (k, (name, s)) in series.iter().enumerate() {
                let c = colors[k % colors.len()];
                chart
                    .draw_series(LineSeries::new(s.iter().copied().filter(|p| p.1 > 0.0), c.stroke_width(2)))
                    .map_err(|e| err(&e))?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            }
            chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(|e| err(&e))?;
        } else {
            let pad = 0.05 * (y1 - y0);
            let mut chart = builder.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad)).map_err(|e| err(&e))?;
            chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(|e| err(&e))?;
            for (k, (name, s)) in series.iter().enumerate() {
                let c = colors[k % colors.len()];
                chart
                    .draw_series(LineSeries::new(s.iter().copied(), c.stroke_width(2)))
                    .map_err(|e| err(&e))?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            }
            chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(|e| err(&e))?;
        }
        Ok(())
    })
}

/// Histogram of `values` with `bins` equal bins between their min and max (finite values only).
pub fn histogram(path: &Path, title: &str, x_label: &str, values: &[f64], bins: usize) -> Result<()> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        anyhow::bail!("{}: no finite values to plot", path.display());
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        hi = lo + lo.abs().max(1e-12);
    }
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    for x in &v {
        let b = (((x - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let max_count = *counts.iter().max().unwrap_or(&1) as f64;
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
    save_plot(path, 560, 360, |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0.0..max_count * 1.05)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc(x_label).y_desc("count").draw().map_err(|e| err(&e))?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], RGBColor(31, 119, 180).filled())
            }))
            .map_err(|e| err(&e))?;
        Ok(())
    })
}

/// The FSC plot: unmasked, masked and corrected curves against spatial frequency (1/Å), with
/// the 0.143 and 0.5 thresholds and the resolutions in the title.
pub fn fsc_plot(path: &Path, title: &str, f: &cryosplat_core::fsc::FscReport) -> Result<()> {
    fsc_plot_limited(path, title, f, None)
}

/// A limit on the half-map resolution for [`fsc_plot_limited`]: a curve read at the same
/// thresholds (shells `0..=last_shell`) and the resolutions reported with it.
pub struct FscLimit<'a> {
    pub label: &'a str,
    pub curve: &'a [f64],
    pub last_shell: usize,
    pub reported: String,
}

impl<'a> FscLimit<'a> {
    /// The cross-validated estimate's curve: its half-map equivalent (read half a standard
    /// error low) up to its last shell when it crosses 0.143 there, else the curve read beyond
    /// it (`extrapolated`: the half maps' FSC lowered by their excess after the reliable shells).
    pub fn cross_validated(equivalent: &'a [f64], last_shell: usize, extrapolated: &'a [f64], crosses: bool, reported: String) -> Self {
        match crosses || extrapolated.is_empty() {
            true => FscLimit { label: "cross-validated (half-map equivalent, 0.5 s.e. lower)", curve: equivalent, last_shell, reported },
            false => FscLimit {
                label: "cross-validated, then the half maps lowered by their excess",
                curve: extrapolated,
                last_shell: extrapolated.len() - 1,
                reported,
            },
        }
    }
}

/// [`fsc_plot`], with a limiting curve drawn beside the half maps' and the reported resolutions
/// in the title.
pub fn fsc_plot_limited(path: &Path, title: &str, f: &cryosplat_core::fsc::FscReport, limit: Option<FscLimit>) -> Result<()> {
    let pts = |c: &[f64]| -> Vec<(f64, f64)> { c.iter().enumerate().map(|(n, &v)| (f.frequency(n), v)).collect() };
    let mut series: Vec<(&str, Vec<(f64, f64)>)> = vec![("unmasked", pts(&f.unmasked))];
    if let Some(m) = &f.masked {
        series.push(("auto-masked", pts(m)));
    }
    if let Some(c) = &f.corrected {
        series.push(("corrected (phase randomisation)", pts(c)));
    }
    if let Some(l) = &limit {
        series.push((l.label, pts(&l.curve[..=l.last_shell.min(l.curve.len() - 1)])));
    }
    let xmax = f.frequency(f.unmasked.len() - 1);
    series.push(("0.143", vec![(0.0, 0.143), (xmax, 0.143)]));
    series.push(("0.5", vec![(0.0, 0.5), (xmax, 0.5)]));
    let short = |t: f64| match f.try_resolution(t) {
        Ok(r) => cryosplat_train::output::ReportedResolution::new(r, f.apix).short(),
        Err(_) => "undefined".to_string(),
    };
    let t = match &limit {
        Some(l) => format!("{title}: {}", l.reported),
        None => format!("{title}: {} at 0.143, {} at 0.5", short(0.143), short(0.5)),
    };
    line_plot(path, &t, "spatial frequency (1/Å)", "FSC", &series, false)
}

/// The FSC plot of post-processing: unmasked, masked (with `mask_label` naming the mask) and
/// corrected curves, the FSC weights, and the 0.143 threshold, with the resolution in the title.
pub fn postprocess_fsc_plot(path: &Path, p: &cryosplat_core::postprocess::Postprocessed, mask_label: &str) -> Result<()> {
    let f = &p.fsc;
    let pts = |c: &[f64]| -> Vec<(f64, f64)> { c.iter().enumerate().map(|(n, &v)| (f.frequency(n), v)).collect() };
    let masked_name = format!("masked ({mask_label})");
    let mut series: Vec<(&str, Vec<(f64, f64)>)> = vec![("unmasked", pts(&f.unmasked))];
    if let Some(m) = &f.masked {
        series.push((&masked_name, pts(m)));
    }
    series.push(("corrected (phase randomisation)", pts(f.final_curve())));
    series.push(("weight sqrt(2F/(1+F))", pts(&p.weights)));
    let xmax = f.frequency(f.unmasked.len() - 1);
    series.push(("0.143", vec![(0.0, 0.143), (xmax, 0.143)]));
    let title = format!("FSC: {} at 0.143", cryosplat_train::output::ReportedResolution::new(p.resolution, f.apix).short());
    line_plot(path, &title, "spatial frequency (1/Å)", "FSC", &series, false)
}

/// The Guinier plot of post-processing: ln of the shell amplitudes (original, FSC-weighted,
/// sharpened) against 1/d², with the fitted line over its range and the B in the title.
pub fn guinier_plot(path: &Path, p: &cryosplat_core::postprocess::Postprocessed) -> Result<()> {
    let g = &p.guinier;
    let col =
        |f: fn(&cryosplat_core::postprocess::GuinierPoint) -> f64| -> Vec<(f64, f64)> { g.iter().map(|q| (q.s2_inv_a2, f(q))).collect() };
    let mut series: Vec<(&str, Vec<(f64, f64)>)> = vec![
        ("original", col(|q| q.ln_amp_original)),
        ("FSC-weighted", col(|q| q.ln_amp_weighted)),
        ("sharpened", col(|q| q.ln_amp_sharpened)),
    ];
    if let Some(fit) = &p.fit {
        let (x0, x1) = (1.0 / fit.low_res_a.powi(2), 1.0 / fit.high_res_a.powi(2));
        series.push(("fitted line", vec![(x0, fit.line.slope * x0 + fit.line.intercept), (x1, fit.line.slope * x1 + fit.line.intercept)]));
    }
    let title = match (&p.fit, &p.fallback) {
        (Some(fit), _) => format!(
            "Guinier plot: B = {:.1} Å² (fit {:.1}–{:.1} Å, r² = {:.3})",
            p.bfactor_a2,
            fit.low_res_a,
            fit.high_res_a,
            fit.line.correlation.powi(2)
        ),
        (None, Some(_)) => "Guinier plot: fit refused, not sharpened".to_string(),
        (None, None) => format!("Guinier plot: B = {:.1} Å² (given)", p.bfactor_a2),
    };
    line_plot(path, &title, "1/d² (1/Å²)", "ln(amplitude)", &series, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_and_projections_of_an_offset_blob() {
        let d = 16;
        let mut map = vec![0.0f32; d * d * d];
        // One voxel at x = 12, y = 8, z = 8.
        map[(8 * d + 8) * d + 12] = 1.0;
        let [xy, xz, yz] = central_slices(&map, d);
        assert_eq!(xy[8 * d + 12], 1.0);
        assert_eq!(xz[8 * d + 12], 1.0);
        assert_eq!(yz.iter().sum::<f32>(), 0.0);
        let [pz, py, px] = orthogonal_projections(&map, d);
        assert_eq!(pz[8 * d + 12], 1.0);
        assert_eq!(py[8 * d + 12], 1.0);
        assert_eq!(px[8 * d + 8], 1.0);
    }

    #[test]
    fn rainbow_runs_from_red_to_blue() {
        assert_eq!(rainbow(0.0), [255, 0, 0]);
        assert_eq!(rainbow(0.5), [0, 255, 0]);
        assert_eq!(rainbow(1.0), [0, 0, 255]);
        assert_eq!(rainbow(-1.0), rainbow(0.0));
        assert_eq!(rainbow(f64::NAN), rainbow(0.0));
        assert_eq!(rainbow(0.125), [255, 128, 0]);
    }

    /// Fine resolution (x < 8) is drawn red, coarse (x ≥ 8) blue, and outside the mask (y ≥ 12)
    /// grey, in the first panel (slice z = d/2), at the size the layout gives.
    #[test]
    fn locres_slices_colour_by_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let d = 16;
        let map: Vec<f32> = (0..d * d * d).map(|i| 1.0 + ((i * 7919) % 13) as f32 / 13.0).collect();
        let mut res = vec![0.0f32; d * d * d];
        for z in 0..d {
            for y in 0..12 {
                for x in 0..d {
                    res[(z * d + y) * d + x] = if x < 8 { 4.0 } else { 12.0 };
                }
            }
        }
        let path = dir.path().join("lr.png");
        locres_slices(&path, &map, &res, d, (4.0, 12.0)).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        let lay = LocresSlicesLayout::new(d);
        assert_eq!((img.width(), img.height()), (lay.width, lay.height));
        let at = |col: u32, row: u32| {
            let x = lay.gap + col * lay.scale + lay.scale / 2;
            let y = lay.title + lay.side - (row + 1) * lay.scale + lay.scale / 2;
            img.get_pixel(x, y).0
        };
        for row in [2, 6, 10] {
            let (fine, coarse) = (at(3, row), at(12, row));
            assert!(fine[0] > 80 && fine[1] == 0 && fine[2] == 0, "fine {fine:?}");
            assert!(coarse[2] > 80 && coarse[0] == 0 && coarse[1] == 0, "coarse {coarse:?}");
        }
        for (col, row) in [(3, 13), (12, 15)] {
            let p = at(col, row);
            assert!(p[0] == p[1] && p[1] == p[2], "outside the mask {p:?}");
        }
    }

    #[test]
    fn writes_pngs() {
        let dir = tempfile::tempdir().unwrap();
        let d = 8;
        let map: Vec<f32> = (0..d * d * d).map(|i| (i % 7) as f32).collect();
        map_views(&map, d, &dir.path().join("s.png"), &dir.path().join("p.png")).unwrap();
        line_plot(&dir.path().join("l.png"), "loss", "epoch", "MSE", &[("a", vec![(1.0, 2.0), (2.0, 1.0)])], true).unwrap();
        histogram(&dir.path().join("h.png"), "amplitudes", "amplitude", &[1.0, 2.0, 2.5, 3.0], 4).unwrap();
        for f in ["s.png", "p.png", "l.png", "h.png"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap();
            assert_eq!(&bytes[1..4], b"PNG");
        }
    }
}
