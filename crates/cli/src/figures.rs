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

/// The axes of a [`line_plot`].
pub struct Axes<'a> {
    /// The x axis's title.
    pub x: &'a str,
    /// The y axis's title.
    pub y: &'a str,
    /// A logarithmic y axis (non-positive values are left out).
    pub log_y: bool,
    /// x is a spatial frequency in 1/Å: an axis along the top gives the resolution in Å at the
    /// same ticks.
    pub resolution_on_top: bool,
}

impl<'a> Axes<'a> {
    /// Linear axes titled `x` and `y`.
    pub fn new(x: &'a str, y: &'a str) -> Self {
        Axes { x, y, log_y: false, resolution_on_top: false }
    }

    /// A spatial frequency (1/Å) against `y`, with the resolution in Å along the top.
    pub fn frequency(y: &'a str) -> Self {
        Axes { x: "spatial frequency (1/Å)", y, log_y: false, resolution_on_top: true }
    }
}

/// The width of the line plots in pixels, and the height of their chart (the legend goes below).
const PLOT_W: u32 = 720;
const PLOT_H: u32 = 420;
const LEGEND_FONT: (&str, u32) = ("sans-serif", 14);
const LEGEND_ROW_H: i32 = 20;
const LEGEND_SWATCH: i32 = 22;

/// Text in `font` anchored at its left end, centred vertically on its position.
fn left_centred(font: (&str, u32)) -> TextStyle<'_> {
    TextStyle::from(font.into_font())
        .pos(plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Left, plotters::style::text_anchor::VPos::Center))
}

/// Where each legend entry of [`line_plot`] goes: `(x, row)` per entry, in reading order, rows
/// filled left to right up to the plot's width; and the number of rows.
fn legend_layout(names: &[&str]) -> (Vec<(i32, i32)>, i32) {
    // Text extents do not depend on the canvas: measure on a one-pixel one.
    let mut px = [0u8; 3];
    let probe = BitMapBackend::with_buffer(&mut px, (1, 1)).into_drawing_area();
    let font = TextStyle::from(LEGEND_FONT.into_font());
    let (left, right, gap) = (16, PLOT_W as i32 - 12, 24);
    let (mut x, mut row, mut at) = (left, 0, Vec::with_capacity(names.len()));
    for name in names {
        // A font the backend cannot measure gets a width of 8 px per character.
        let w = probe.estimate_text_size(name, &font).map_or(8 * name.chars().count() as i32, |(w, _)| w as i32);
        let width = LEGEND_SWATCH + 6 + w;
        if x > left && x + width > right {
            (x, row) = (left, row + 1);
        }
        at.push((x, row));
        x += width + gap;
    }
    (at, if names.is_empty() { 0 } else { row + 1 })
}

/// A line plot of one or more named series, with their legend below the chart (where it hides
/// no curve).
pub fn line_plot(path: &Path, title: &str, axes: &Axes, series: &[(&str, Vec<(f64, f64)>)]) -> Result<()> {
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|(_, s)| s.iter().copied()).filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    if pts.is_empty() {
        anyhow::bail!("{}: nothing to plot", path.display());
    }
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        if !axes.log_y || y > 0.0 {
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    // Values within a factor of three of each other (a loss falling by a few percent) get a
    // linear axis: on a log axis they show as a flat line without a labelled tick.
    let log_y = axes.log_y && y0 > 0.0 && y1 > 3.0 * y0;
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
    let color = |k: usize| colors[k % colors.len()];
    let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
    let (at, rows) = legend_layout(&names);
    let legend_h = if rows > 0 { rows * LEGEND_ROW_H + 12 } else { 0 };
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
    save_plot(path, PLOT_W, PLOT_H + legend_h as u32, |root| {
        let (top, bottom) = root.split_vertically(PLOT_H);
        let mut builder = ChartBuilder::on(&top);
        builder.caption(title, ("sans-serif", 20)).margin(12).x_label_area_size(40).y_label_area_size(70);
        if axes.resolution_on_top {
            builder.top_x_label_area_size(40);
        }
        if log_y {
            let (lo, hi) = (y0.max(1e-30) / 1.2, y1 * 1.2);
            let mut chart = builder.build_cartesian_2d(x0..x1, (lo..hi).log_scale()).map_err(|e| err(&e))?;
            chart.configure_mesh().x_desc(axes.x).y_desc(axes.y).draw().map_err(|e| err(&e))?;
            for (k, (_, s)) in series.iter().enumerate() {
                chart
                    .draw_series(LineSeries::new(s.iter().copied().filter(|p| p.1 > 0.0), color(k).stroke_width(2)))
                    .map_err(|e| err(&e))?;
            }
        } else {
            let pad = 0.05 * (y1 - y0);
            let chart = builder.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad)).map_err(|e| err(&e))?;
            let mut chart = chart.set_secondary_coord(x0..x1, (y0 - pad)..(y1 + pad));
            chart.configure_mesh().x_desc(axes.x).y_desc(axes.y).draw().map_err(|e| err(&e))?;
            if axes.resolution_on_top {
                let angstrom = |f: &f64| if *f > 0.0 { format!("{:.1}", 1.0 / f) } else { String::new() };
                chart
                    .configure_secondary_axes()
                    .x_desc("resolution (Å)")
                    .x_label_formatter(&angstrom)
                    .y_label_formatter(&|_| String::new())
                    .draw()
                    .map_err(|e| err(&e))?;
            }
            for (k, (_, s)) in series.iter().enumerate() {
                let shown = s.iter().copied().filter(|p| !axes.log_y || p.1 > 0.0);
                chart.draw_series(LineSeries::new(shown, color(k).stroke_width(2))).map_err(|e| err(&e))?;
            }
        }
        let style = left_centred(LEGEND_FONT);
        for (k, (name, &(x, row))) in names.iter().zip(&at).enumerate() {
            let y = 6 + row * LEGEND_ROW_H + LEGEND_ROW_H / 2;
            bottom.draw(&PathElement::new(vec![(x, y), (x + LEGEND_SWATCH, y)], color(k).stroke_width(3))).map_err(|e| err(&e))?;
            bottom.draw(&Text::new(name.to_string(), (x + LEGEND_SWATCH + 6, y), style.clone())).map_err(|e| err(&e))?;
        }
        Ok(())
    })
}

/// A perceptual colour scale from dark blue (0) through teal and green to yellow (1).
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [68.0, 1.0, 84.0]),
        (0.25, [59.0, 82.0, 139.0]),
        (0.5, [33.0, 145.0, 140.0]),
        (0.75, [94.0, 201.0, 98.0]),
        (1.0, [253.0, 231.0, 37.0]),
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let k = STOPS.iter().rposition(|s| s.0 <= t).unwrap_or(0).min(STOPS.len() - 2);
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    let f = (t - a.0) / (b.0 - a.0);
    let c = |i: usize| (a.1[i] + f * (b.1[i] - a.1[i])).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// The viewing directions of a particle set (`cryosplat_core::views`): the count of each
/// equal-area cell, azimuth (RELION's rot) across and elevation (90° − tilt) up, coloured by
/// the square root of its share of the fullest cell (so that sparse cells still show), empty
/// cells light grey; a colour bar gives the counts.
pub fn view_distribution_plot(path: &Path, title: &str, v: &cryosplat_core::views::ViewDistribution) -> Result<()> {
    let max = v.counts.iter().copied().max().unwrap_or(0);
    if max == 0 {
        anyhow::bail!("{}: no views to plot", path.display());
    }
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
    let shade = |c: u64| if c == 0 { RGBColor(232, 232, 232) } else { viridis((c as f64 / max as f64).sqrt()) };
    save_plot(path, PLOT_W, 400, |root| {
        let (left, right) = root.split_horizontally(PLOT_W - 110);
        let mut chart = ChartBuilder::on(&left)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-180.0..180.0, -90.0..90.0)
            .map_err(|e| err(&e))?;
        let degrees = |x: &f64| format!("{x:.0}");
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(9)
            .y_labels(7)
            .x_label_formatter(&degrees)
            .y_label_formatter(&degrees)
            .x_desc("azimuth, rot (°)")
            .y_desc("elevation, 90° − tilt (°)")
            .draw()
            .map_err(|e| err(&e))?;
        let cells = (0..v.z_cells).flat_map(|j| (0..v.azimuth_cells).map(move |i| (i, j)));
        chart
            .draw_series(cells.map(|(i, j)| {
                let ((x0, x1), (y0, y1)) = (v.azimuth_edges_deg(i), v.elevation_edges_deg(j));
                Rectangle::new([(x0, y0), (x1, y1)], shade(v.count(i, j)).filled())
            }))
            .map_err(|e| err(&e))?;
        // The colour bar, drawn in pixels: counts from 0 to the fullest cell's on the square-root
        // scale, labelled at five counts.
        let (x0, x1, top, bottom) = (14, 30, 52, 348);
        let h = bottom - top;
        for y in top..bottom {
            let t = (bottom - y) as f64 / h as f64;
            right.draw(&Rectangle::new([(x0, y), (x1, y + 1)], viridis(t).filled())).map_err(|e| err(&e))?;
        }
        right.draw(&Rectangle::new([(x0, top), (x1, bottom)], BLACK.stroke_width(1))).map_err(|e| err(&e))?;
        let font = left_centred(("sans-serif", 13));
        for k in 0..=4 {
            let t = k as f64 / 4.0;
            let y = bottom - (t * h as f64).round() as i32;
            right.draw(&PathElement::new(vec![(x1, y), (x1 + 4, y)], BLACK.stroke_width(1))).map_err(|e| err(&e))?;
            right.draw(&Text::new(format!("{:.0}", t * t * max as f64), (x1 + 7, y), font.clone())).map_err(|e| err(&e))?;
        }
        right.draw(&Text::new("per cell".to_string(), (x0 - 4, top - 18), ("sans-serif", 13).into_font())).map_err(|e| err(&e))?;
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
    line_plot(path, &t, &Axes::frequency("FSC"), &series)
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
    line_plot(path, &title, &Axes::frequency("FSC"), &series)
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
    line_plot(path, &title, &Axes::new("1/d² (1/Å²)", "ln(amplitude)"), &series)
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
    fn the_legend_hides_no_curve() {
        // A horizontal line through the middle of the chart, where a legend inside the plot sat
        // on its right (over the FSC curves' crossings), and long names that take two rows.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.png");
        let line = |y: f64| vec![(0.0, y), (0.25, y)];
        let names =
            ["cross-validated, then the half maps lowered by their excess", "corrected (phase randomisation)", "unmasked", "auto-masked"];
        let series: Vec<(&str, Vec<(f64, f64)>)> =
            vec![(names[0], line(0.5)), (names[1], line(0.0)), (names[2], line(1.0)), (names[3], line(0.7))];
        line_plot(&path, "FSC", &Axes::frequency("FSC"), &series).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        let (_, rows) = legend_layout(&names);
        assert!(rows >= 2, "{rows} legend rows");
        assert_eq!(img.height(), PLOT_H + (rows * LEGEND_ROW_H + 12) as u32);
        // The chart's row with most of the first series' colour: the whole width of the plot
        // (720 px less the margins and the y labels' 70 px), none of it covered.
        let blue = image::Rgb([31u8, 119, 180]);
        let widest = (0..PLOT_H).map(|y| (0..img.width()).filter(|&x| *img.get_pixel(x, y) == blue).count()).max().unwrap();
        assert!(widest >= 600, "the line at 0.5 shows over {widest} px");
        // Every legend entry fits in the figure.
        let (at, _) = legend_layout(&names);
        assert!(at.iter().all(|&(x, _)| x >= 0 && x < PLOT_W as i32 - LEGEND_SWATCH));
    }

    #[test]
    fn writes_pngs() {
        let dir = tempfile::tempdir().unwrap();
        let d = 8;
        let map: Vec<f32> = (0..d * d * d).map(|i| (i % 7) as f32).collect();
        map_views(&map, d, &dir.path().join("s.png"), &dir.path().join("p.png")).unwrap();
        line_plot(
            &dir.path().join("l.png"),
            "loss",
            &Axes { log_y: true, ..Axes::new("epoch", "MSE") },
            &[("a", vec![(1.0, 2.0), (2.0, 1.0)])],
        )
        .unwrap();
        histogram(&dir.path().join("h.png"), "amplitudes", "amplitude", &[1.0, 2.0, 2.5, 3.0], 4).unwrap();
        for f in ["s.png", "p.png", "l.png", "h.png"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap();
            assert_eq!(&bytes[1..4], b"PNG");
        }
    }
}
