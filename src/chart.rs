//! The chart engine of the figures: a PNG drawn with plotters in the font we ship, and a line
//! chart of series (a line each, with the band around it for an experiment of several runs) on
//! axes whose kind decides their range and ticks.
use crate::atomic_file;
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

pub const FONT: &str = "sans-serif";

/// Plotters draws text with a font we ship, so figures look the same on every machine.
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, include_bytes!("../assets/DejaVuSans.ttf"));
    });
}

/// One line of a chart, and for an experiment of several runs the band around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// (x, lowest, highest) at each point.
    pub band: Option<Vec<(f64, f64, f64)>>,
}

/// What a chart's x axis counts, which decides its range and ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XKind {
    /// Whole epochs from the first point's (1 after one epoch, 0 for an lr curve).
    Epochs,
    /// A quantity from 0 to a little past the last point (minutes).
    FromZero,
}

/// A chart's y axis: linear, or log10 labelled back in powers of ten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YScale {
    Linear,
    Log,
}

/// Where the legend goes: where the curves end up not being (accuracy rises, losses fall).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legend {
    LowerRight,
    UpperRight,
}

/// A chart's axes: their descriptions, the x axis's kind, the y axis's scale, the legend.
#[derive(Debug, Clone, Copy)]
pub struct Axes<'a> {
    pub x_label: &'a str,
    pub x_kind: XKind,
    pub y_label: &'a str,
    pub y_scale: YScale,
    pub legend: Legend,
}

/// Draws a `width` x `height` figure with `draw` and writes it to `path` as a PNG.
pub fn write_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<()> {
    use image::ImageEncoder;
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        draw(&root)?;
        root.present().map_err(draw_error)?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(&pixels, width, height, image::ColorType::Rgb8)?;
    atomic_file::write_bytes(path, "figure", &png)
}

pub fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// Twelve colours that stay apart (Tableau's ten and two more), so a dozen runs are legible.
fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 12] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(0, 0, 0),
        RGBColor(255, 215, 0),
    ];
    COLORS[i % COLORS.len()]
}

/// One chart: a line per series, on `axes`.
pub fn line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    axes: &Axes,
    series: &[Series],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let log_y = axes.y_scale == YScale::Log;
    // A log axis is drawn as log10 of the value on a linear axis, labelled back in powers of
    // ten, so every figure gets readable ticks however narrow the range.
    let y_of = |v: f64| if log_y { v.log10() } else { v };
    let finite = |p: &(f64, f64)| p.1.is_finite();
    // Each band's lowest and highest at each point, drawn as bars where points are few (a band
    // over one epoch has no area), and as the polygon around it: along its top, then back along
    // its bottom.
    let bars: Vec<Vec<[(f64, f64); 2]>> = series
        .iter()
        .map(|s| match &s.band {
            Some(band) if band.len() <= 12 => band.iter().map(|&(x, lo, hi)| [(x, y_of(lo)), (x, y_of(hi))]).collect(),
            _ => Vec::new(),
        })
        .collect();
    let bands: Vec<Option<Vec<(f64, f64)>>> = series
        .iter()
        .map(|s| {
            let band = s.band.as_ref()?;
            let top = band.iter().map(|&(x, _, hi)| (x, y_of(hi)));
            let bottom = band.iter().rev().map(|&(x, lo, _)| (x, y_of(lo)));
            Some(top.chain(bottom).filter(finite).collect())
        })
        .collect();
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| (s.name.as_str(), s.points.iter().map(|&(x, y)| (x, y_of(y))).filter(finite).collect()))
        .collect();
    let points = || series.iter().flat_map(|(_, p)| p.iter()).chain(bands.iter().flatten().flatten());
    let (x_lo, x_hi) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (lo, hi) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    // Epoch axes run over whole epochs from the first point's (1 after one epoch, 0 for an lr
    // curve); time axes from 0 to a little past the last point.
    let epochs = axes.x_kind == XKind::Epochs;
    let (x_lo, x_hi) = match (x_lo.is_finite(), epochs) {
        (false, _) => (0.0, 1.0),
        (true, true) => (x_lo.floor(), x_hi.ceil().max(x_lo.floor() + 1.0)),
        (true, false) => (0.0, x_hi * 1.03),
    };
    let (lo, hi) = match (lo.is_finite(), log_y) {
        (false, _) => (0.0, 1.0),
        (true, true) => (lo.floor(), hi.ceil().max(lo.floor() + 1.0)),
        (true, false) => {
            let pad = ((hi - lo) * 0.05).max(1e-3);
            (lo - pad, hi + pad)
        }
    };
    // Accuracy rises and losses fall: keep the legend where the curves end up not being.
    let legend_at = match axes.legend {
        Legend::LowerRight => SeriesLabelPosition::LowerRight,
        Legend::UpperRight => SeriesLabelPosition::UpperRight,
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 26))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x_lo..x_hi, lo..hi)
        .map_err(draw_error)?;
    let y_format = |v: &f64| if log_y { format!("{:.1e}", 10f64.powf(*v)) } else { format!("{v:.2}") };
    let whole = x_hi - x_lo <= 12.0 && epochs;
    chart
        .configure_mesh()
        .x_labels(if whole { (x_hi - x_lo) as usize + 1 } else { 10 })
        .x_label_formatter(&|x| match x_hi - x_lo {
            _ if whole => format!("{x:.0}"),
            range if range < 2.0 => format!("{x:.2}"),
            range if range < 20.0 => format!("{x:.1}"),
            _ => format!("{x:.0}"),
        })
        .y_label_formatter(&y_format)
        .x_desc(axes.x_label)
        .y_desc(axes.y_label)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 20))
        .draw()
        .map_err(draw_error)?;
    let legend_font = if series.len() > 6 { 14 } else { 18 };
    for (i, (band, bars)) in bands.into_iter().zip(bars).enumerate() {
        if let Some(band) = band {
            chart.draw_series(std::iter::once(Polygon::new(band, color(i).mix(0.18).filled()))).map_err(draw_error)?;
        }
        let bar = |ends: [(f64, f64); 2]| PathElement::new(ends.to_vec(), color(i).mix(0.6).stroke_width(2));
        chart.draw_series(bars.into_iter().map(bar)).map_err(draw_error)?;
    }
    for (i, (name, points)) in series.into_iter().enumerate() {
        let c = color(i);
        // Dots as well as lines where points are few, so a run of one epoch still shows.
        if points.len() <= 60 {
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, c.filled()))).map_err(draw_error)?;
        }
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(draw_error)?
            .label(name.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, legend_font))
        .position(legend_at)
        .draw()
        .map_err(draw_error)?;
    Ok(())
}
