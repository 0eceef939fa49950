//! The blog's figures as PNGs: training/test accuracy and loss per epoch for the runs being
//! compared, the learning rate of plateau runs, and a confusion matrix for `eval`.
use crate::config::LrSchedule;
use crate::metrics::{self, EpochRow};
use crate::run_dir::{self, RunDir};
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;
use std::path::{Path, PathBuf};

const FONT: &str = "sans-serif";

/// Plotters draws text with a font we ship, so figures look the same on every machine.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, include_bytes!("../assets/DejaVuSans.ttf"));
    });
}

/// A named set of runs drawn together (experiments/comparisons.json).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub name: String,
    pub title: String,
    pub runs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComparisonsFile {
    comparisons: Vec<Comparison>,
}

pub fn load_comparisons(path: &Path) -> Result<Vec<Comparison>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(serde_json::from_str::<ComparisonsFile>(&text)
        .with_context(|| format!("{} is malformed", path.display()))?
        .comparisons)
}

/// One run's curves: its name (the folder name) and rows.
pub struct RunCurves {
    pub name: String,
    pub rows: Vec<EpochRow>,
    pub plateau: bool,
}

pub fn read_run(dir: &Path) -> Result<RunCurves> {
    let run = RunDir::new(dir);
    let rows = metrics::read(&run.metrics())?;
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| dir.display().to_string());
    let experiment = run.load_experiment()?;
    Ok(RunCurves { name, rows, plateau: matches!(experiment.lr_schedule, LrSchedule::ReduceOnPlateau { .. }) })
}

/// Draws a `width` x `height` figure with `draw` and writes it to `path` as a PNG.
fn write_png(
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
    run_dir::write_bytes(path, "figure", &png)
}

/// `resnext plot`: a results root (holding run folders) is drawn per comparison; run folders
/// given directly are drawn together. Returns the PNGs written.
pub fn plot(paths: &[PathBuf], comparisons_file: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    let direct: Vec<&PathBuf> = paths.iter().filter(|p| p.join(metrics::FILE).is_file()).collect();
    if !direct.is_empty() {
        let runs = direct.iter().map(|p| read_run(p)).collect::<Result<Vec<_>>>()?;
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        written.extend(draw_comparison(&names.join("_vs_"), &names.join(" vs "), &runs, out)?);
    }
    for root in paths.iter().filter(|p| !p.join(metrics::FILE).is_file()) {
        anyhow::ensure!(
            root.is_dir(),
            "{} is neither a run folder (with metrics.csv) nor a results folder",
            root.display()
        );
        for comparison in load_comparisons(comparisons_file)? {
            let mut runs = Vec::new();
            for run in &comparison.runs {
                let dir = root.join(run);
                if dir.join(metrics::FILE).is_file() {
                    runs.push(read_run(&dir)?);
                } else {
                    println!("note: {}: run {run} not found in {}, skipped", comparison.name, root.display());
                }
            }
            if runs.is_empty() {
                println!("note: {}: none of its runs exist, no figure", comparison.name);
                continue;
            }
            written.extend(draw_comparison(&comparison.name, &comparison.title, &runs, out)?);
        }
    }
    Ok(written)
}

/// One panel of a figure: caption, y-axis label, and the value drawn.
type Panel = (&'static str, &'static str, fn(&EpochRow) -> f64);

/// Training accuracy, training loss, test accuracy and test loss in a 2x2 figure, plus the
/// learning rate (log scale) when any run uses a plateau rule.
pub fn draw_comparison(name: &str, title: &str, runs: &[RunCurves], out: &Path) -> Result<Vec<PathBuf>> {
    register_font();
    let path = out.join(format!("{name}.png"));
    write_png(&path, (1600, 1200), |root| {
        let root = root.titled(title, (FONT, 34)).map_err(draw_error)?;
        let panels = root.split_evenly((2, 2));
        let series: [Panel; 4] = [
            ("Training accuracy", "accuracy", |r| r.accuracy),
            ("Training loss (incl. L2)", "loss", |r| r.loss),
            ("Test accuracy", "val_accuracy", |r| r.val_accuracy),
            ("Test loss (incl. L2)", "val_loss", |r| r.val_loss),
        ];
        let all: Vec<&RunCurves> = runs.iter().collect();
        for (panel, (caption, label, value)) in panels.iter().zip(series) {
            line_chart(panel, caption, label, &all, value, false)?;
        }
        Ok(())
    })?;
    let mut written = vec![path];
    let plateau: Vec<&RunCurves> = runs.iter().filter(|r| r.plateau).collect();
    if !plateau.is_empty() {
        let path = out.join(format!("{name}_lr.png"));
        write_png(&path, (1000, 600), |root| {
            line_chart(root, &format!("Learning rate: {title}"), "lr", &plateau, |r| r.lr, true)
        })?;
        written.push(path);
    }
    Ok(written)
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    COLORS[i % COLORS.len()]
}

/// One chart: a line per run against the epoch (1-based on the axis, as people count).
fn line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    y_label: &str,
    runs: &[&RunCurves],
    value: fn(&EpochRow) -> f64,
    log_y: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    // A log axis is drawn as log10 of the value on a linear axis, labelled back in powers of
    // ten, so every figure gets readable ticks however narrow the range.
    let y_of = |row: &EpochRow| if log_y { value(row).log10() } else { value(row) };
    let values: Vec<f64> = runs.iter().flat_map(|r| r.rows.iter().map(y_of)).filter(|v| v.is_finite()).collect();
    let max_epoch = runs.iter().flat_map(|r| r.rows.iter().map(|row| row.epoch + 1)).max().unwrap_or(1).max(2) as f64;
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let (lo, hi) = match (lo.is_finite(), log_y) {
        (false, _) => (0.0, 1.0),
        (true, true) => (lo.floor(), hi.ceil().max(lo.floor() + 1.0)),
        (true, false) => {
            let pad = ((hi - lo) * 0.05).max(1e-3);
            (lo - pad, hi + pad)
        }
    };
    // Accuracy rises and losses fall: keep the legend where the curves end up not being.
    let legend_at =
        if y_label.contains("accuracy") { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 26))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(1.0..max_epoch, lo..hi)
        .map_err(draw_error)?;
    let y_format = |v: &f64| if log_y { format!("{:.1e}", 10f64.powf(*v)) } else { format!("{v:.2}") };
    chart
        .configure_mesh()
        .x_labels((max_epoch as usize).min(12))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&y_format)
        .x_desc("epoch")
        .y_desc(y_label)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 20))
        .draw()
        .map_err(draw_error)?;
    for (i, run) in runs.iter().enumerate() {
        let points: Vec<(f64, f64)> =
            run.rows.iter().map(|r| ((r.epoch + 1) as f64, y_of(r))).filter(|p| p.1.is_finite()).collect();
        let c = color(i);
        // Dots as well as lines, so a run of one epoch still shows.
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, c.filled()))).map_err(draw_error)?;
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(draw_error)?
            .label(run.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 18))
        .position(legend_at)
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

/// A 10x10 confusion matrix (rows: true class, columns: predicted), counts in each cell.
pub fn confusion_matrix(path: &Path, title: &str, counts: &[[i64; 10]; 10], classes: &[String]) -> Result<()> {
    use plotters::coord::ranged1d::SegmentValue;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    register_font();
    write_png(path, (1100, 1000), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 28))
            .margin(20)
            .x_label_area_size(70)
            .y_label_area_size(120)
            .build_cartesian_2d((0i32..9).into_segmented(), (0i32..9).into_segmented())
            .map_err(draw_error)?;
        let name = |v: &SegmentValue<i32>, flip: bool| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                let index = if flip { 9 - *i } else { *i };
                classes.get(index as usize).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted class")
            .y_desc("true class")
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 20))
            .x_label_formatter(&|x| name(x, false))
            .y_label_formatter(&|y| name(y, true))
            .draw()
            .map_err(draw_error)?;
        let row_max = counts.iter().map(|row| row.iter().sum::<i64>()).max().unwrap_or(1).max(1) as f64;
        for (truth, row) in counts.iter().enumerate() {
            for (predicted, &count) in row.iter().enumerate() {
                let (x, y) = (predicted as i32, 9 - truth as i32);
                let shade = (count as f64 / row_max).clamp(0.0, 1.0);
                let fill = RGBColor((255.0 * (1.0 - 0.8 * shade)) as u8, (255.0 * (1.0 - 0.55 * shade)) as u8, 255);
                let cell = [
                    (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                ];
                chart.draw_series(std::iter::once(Rectangle::new(cell, fill.filled()))).map_err(draw_error)?;
                let text_color = if shade > 0.6 { WHITE } else { BLACK };
                let style = TextStyle::from((FONT, 18).into_font())
                    .color(&text_color)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                let centre = (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y));
                chart.draw_series(std::iter::once(Text::new(count.to_string(), centre, style))).map_err(draw_error)?;
            }
        }
        Ok(())
    })
}
