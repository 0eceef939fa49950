//! The blog's figures as PNGs: training/test accuracy and loss per epoch for the experiments
//! being compared, their learning rates when a rule moves them, and a confusion matrix for
//! `eval`. An experiment with several runs (seeds) is drawn as the mean of its runs with a band
//! from the lowest to the highest; the test panels read the test columns when a run has them.
use crate::atomic_file;
use crate::config::{Experiment, LrSchedule};
use crate::metrics::{self, EpochRow, TestSet};
use crate::results::{self, ExperimentDirs};
use crate::run_dir::RunDir;
use crate::schedule::{Clock, LrRule};
use crate::study::{Comparison, Study};
use anyhow::{anyhow, ensure, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const FONT: &str = "sans-serif";

/// Plotters draws text with a font we ship, so figures look the same on every machine.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, include_bytes!("../assets/DejaVuSans.ttf"));
    });
}

/// What the figures' x axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Epochs done.
    Epoch,
    /// Minutes of training and evaluation (cumulative `epoch_seconds`), so recipes of
    /// different cost compare fairly.
    Time,
}

/// One run's curves: its name (the folder name), rows and recipe.
pub struct RunCurves {
    pub name: String,
    pub rows: Vec<EpochRow>,
    pub experiment: Experiment,
    pub steps_per_epoch: usize,
}

pub fn read_run(dir: &Path) -> Result<RunCurves> {
    let run = RunDir::new(dir);
    let rows = metrics::read(&run.metrics())?;
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| dir.display().to_string());
    let experiment = run.load_experiment()?;
    // `run.json` is missing for copied CSVs: no limit then.
    let train_limit = run.load_limits().ok().and_then(|limits| limits.train_limit);
    let steps_per_epoch = experiment.steps_per_epoch(experiment.training_images(train_limit));
    Ok(RunCurves { name, rows, experiment, steps_per_epoch })
}

/// An experiment's curves: its one run's, or the mean of its runs over the epochs every one of
/// them has done (so that the mean is of the same runs throughout), with a band from the lowest
/// to the highest run.
pub struct ExperimentCurves {
    pub name: String,
    pub runs: Vec<RunCurves>,
}

impl ExperimentCurves {
    pub fn new(name: String, mut runs: Vec<RunCurves>) -> Self {
        let common = runs.iter().map(|r| r.rows.len()).min().unwrap_or(0);
        for run in &mut runs {
            run.rows.truncate(common);
        }
        ExperimentCurves { name, runs }
    }

    /// The runs of `dirs` that have finished an epoch (`None` when none has).
    pub fn read(dirs: &ExperimentDirs) -> Result<Option<Self>> {
        let runs = dirs
            .runs
            .iter()
            .filter(|run| run.dir.metrics().is_file())
            .map(|run| read_run(run.dir.path()))
            .collect::<Result<Vec<_>>>()?;
        Ok((!runs.is_empty()).then(|| ExperimentCurves::new(dirs.name.clone(), runs)))
    }

    /// The series of `curve` (a run's points): the run's own line, or for several runs their
    /// mean point by point (x included: on a time axis runs differ) with the band.
    fn series(&self, curve: impl Fn(&RunCurves) -> Vec<(f64, f64)>) -> Series {
        if let [run] = &self.runs[..] {
            return Series { name: self.name.clone(), points: curve(run), band: None };
        }
        let curves: Vec<Vec<(f64, f64)>> = self.runs.iter().map(curve).collect();
        let n = curves.iter().map(Vec::len).min().unwrap_or(0);
        let k = curves.len() as f64;
        let (mut points, mut band) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let x = curves.iter().map(|c| c[i].0).sum::<f64>() / k;
            let ys = curves.iter().map(|c| c[i].1);
            let (lo, hi) = ys.clone().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
            points.push((x, ys.sum::<f64>() / k));
            band.push((x, lo, hi));
        }
        let name = format!("{} (mean of {} runs; band: lowest to highest)", self.name, self.runs.len());
        Series { name, points, band: Some(band) }
    }
}

impl RunCurves {
    /// The x coordinate of fraction `f` into epoch `epoch` (0-based).
    fn x(&self, axis: XAxis, epoch: usize, f: f64) -> f64 {
        match axis {
            XAxis::Epoch => epoch as f64 + f,
            XAxis::Time => {
                let before: f64 = self.rows.iter().take(epoch).map(|r| r.epoch_seconds).sum();
                let this = self.rows.get(epoch).map_or(0.0, |r| r.epoch_seconds);
                (before + f * this) / 60.0
            }
        }
    }

    /// `value` after each epoch it was measured.
    fn after_each_epoch(&self, axis: XAxis, value: fn(&EpochRow, TestSet) -> Option<f64>) -> Vec<(f64, f64)> {
        let set = TestSet::of(self.experiment.validation);
        self.rows.iter().filter_map(|r| Some((self.x(axis, r.epoch, 1.0), value(r, set)?))).collect()
    }

    /// Whether the run's lr moves by itself (warmups, per-step and plateau rules): comparisons
    /// with such a run get an lr figure.
    fn moves_lr(&self) -> bool {
        let e = &self.experiment;
        e.warmup.is_some() || e.lr_schedule.per_step() || matches!(e.lr_schedule, LrSchedule::ReduceOnPlateau { .. })
    }

    /// The lr as trained: a plateau rule's per epoch from the CSV; otherwise the rule itself,
    /// sampled 20 times an epoch and at the run's last step (per-step rules and warmups are
    /// curves, and a one-cycle rule reaches its lowest lr only at the very last step).
    fn lr(&self, axis: XAxis) -> Vec<(f64, f64)> {
        let e = &self.experiment;
        if matches!(e.lr_schedule, LrSchedule::ReduceOnPlateau { .. }) {
            return self.rows.iter().map(|r| (self.x(axis, r.epoch, 0.0), r.lr)).collect();
        }
        let mut rule = LrRule::new(e.lr_schedule.clone(), e.warmup.clone(), e.optimizer.lr);
        let samples = 20.min(self.steps_per_epoch);
        let mut points = Vec::new();
        let epochs = self.rows.len();
        for epoch in 0..epochs {
            rule.start_epoch(epoch);
            let last = if epoch + 1 == epochs { Some(self.steps_per_epoch - 1) } else { None };
            for step in (0..samples).map(|i| i * self.steps_per_epoch / samples).chain(last) {
                let clock = Clock { epoch, step, steps_per_epoch: self.steps_per_epoch, epochs: e.epochs };
                points.push((self.x(axis, epoch, step as f64 / self.steps_per_epoch as f64), rule.lr(clock)));
            }
        }
        points
    }
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
    atomic_file::write_bytes(path, "figure", &png)
}

fn suffix(axis: XAxis) -> &'static str {
    match axis {
        XAxis::Epoch => "",
        XAxis::Time => "_time",
    }
}

/// `resnext plot`: a results root (holding experiment folders, in either layout of
/// [`crate::results`]) is drawn per comparison of `study` (by default the one study that has
/// every experiment there, if one does: [`Study::holding`]), plus one figure of the experiments
/// found in no comparison; run folders and experiment folders given directly are drawn
/// together. Returns the PNGs written.
pub fn plot(paths: &[PathBuf], study: Option<&str>, out: &Path, axis: XAxis) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    let (direct, roots): (Vec<&PathBuf>, Vec<&PathBuf>) =
        paths.iter().partition(|path| results::experiment_at(path).is_some());
    if !direct.is_empty() {
        let dirs: Vec<ExperimentDirs> = direct.iter().filter_map(|path| results::experiment_at(path)).collect();
        written.extend(plot_together(&dirs, out, axis)?.files);
    }
    for root in roots {
        ensure!(root.is_dir(), "{} is neither a run folder (with metrics.csv) nor a results folder", root.display());
        let study = match study {
            Some(reference) => Some(Study::find(reference)?),
            None => {
                let names: Vec<String> = results::experiments(root)?.into_iter().map(|e| e.name).collect();
                Study::holding(&names)?
            }
        };
        let comparisons = study.as_ref().map_or(&[][..], |study| study.comparisons.as_slice());
        let drawn = plot_results(root, comparisons, out, axis)?;
        for note in drawn.notes {
            println!("note: {note}");
        }
        written.extend(drawn.figures.into_iter().flat_map(|figure| figure.files));
    }
    Ok(written)
}

/// The experiments `dirs` (run folders, or folders of `seed-<k>` run folders) drawn together in
/// one figure named after them (`a_vs_b`); an error names one that has no epoch yet.
pub fn plot_together(dirs: &[ExperimentDirs], out: &Path, axis: XAxis) -> Result<Figure> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let curves = dirs
        .iter()
        .map(|dirs| {
            ExperimentCurves::read(dirs)?
                .with_context(|| format!("{}: no run in it has a metrics.csv yet", dirs.path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let experiments: Vec<String> = curves.iter().map(|e| e.name.clone()).collect();
    let (name, title) = (experiments.join("_vs_"), experiments.join(" vs "));
    let drawn: Vec<&ExperimentCurves> = curves.iter().collect();
    let files = draw_comparison(&format!("{name}{}", suffix(axis)), &title, &drawn, out, axis)?;
    Ok(Figure { name, title, experiments, files })
}

/// A figure drawn of a results folder: its name, title, the experiments drawn and the PNGs.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub title: String,
    pub experiments: Vec<String>,
    pub files: Vec<PathBuf>,
}

/// The figures of a results folder, and notes on the comparisons not drawn or drawn in part.
pub struct Drawn {
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

/// The figures of a results folder: one per comparison with an experiment there (with a note
/// for those without, or with some missing), and one of the experiments no comparison names. An
/// error when no experiment there has finished an epoch.
pub fn plot_results(root: &Path, comparisons: &[Comparison], out: &Path, axis: XAxis) -> Result<Drawn> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut found: Vec<ExperimentCurves> = Vec::new();
    for dirs in results::experiments(root)? {
        found.extend(ExperimentCurves::read(&dirs)?);
    }
    ensure!(
        !found.is_empty(),
        "{} holds no run: no folder in it has a metrics.csv (train one, or pass run folders directly)",
        root.display()
    );
    let mut figures = Vec::new();
    let mut draw = |name: String, title: String, drawn: Vec<&ExperimentCurves>| -> Result<()> {
        let experiments = drawn.iter().map(|e| e.name.clone()).collect();
        let files = draw_comparison(&format!("{name}{}", suffix(axis)), &title, &drawn, out, axis)?;
        figures.push(Figure { name, title, experiments, files });
        Ok(())
    };
    let named = |name: &String| found.iter().find(|e| &e.name == name);
    let mut notes = Vec::new();
    for comparison in comparisons {
        let (present, missing): (Vec<&String>, Vec<&String>) = comparison.runs.iter().partition(|r| named(r).is_some());
        if present.is_empty() {
            notes.push(format!("{}: none of its runs is in {}, no figure", comparison.name, root.display()));
            continue;
        }
        if !missing.is_empty() {
            let missing: Vec<&str> = missing.iter().map(|r| r.as_str()).collect();
            notes.push(format!(
                "{}: run {} not found in {}, skipped",
                comparison.name,
                missing.join(", "),
                root.display()
            ));
        }
        let drawn = present.into_iter().filter_map(named).collect();
        draw(comparison.name.clone(), comparison.title.clone(), drawn)?;
    }
    let others: Vec<&ExperimentCurves> =
        found.iter().filter(|e| !comparisons.iter().any(|c| c.runs.contains(&e.name))).collect();
    if !others.is_empty() {
        let title = format!("Runs in {} that no comparison names", root.display());
        draw("other_runs".to_string(), title, others)?;
    }
    Ok(Drawn { figures, notes })
}

const EPOCH_LABEL: &str = "epoch";

/// One panel of a figure: caption, y-axis label, and the value drawn (where measured).
type Panel = (&'static str, &'static str, fn(&EpochRow, TestSet) -> Option<f64>);

/// One line of a chart, and for an experiment of several runs the band around it.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    /// (x, lowest, highest) at each point.
    band: Option<Vec<(f64, f64, f64)>>,
}

/// Training accuracy, training loss, test accuracy and test loss in a 2x2 figure, plus the
/// learning rate (log scale) when any run's rule moves it by itself (plateau, per-step
/// rules, warmup).
pub fn draw_comparison(
    name: &str,
    title: &str,
    runs: &[&ExperimentCurves],
    out: &Path,
    axis: XAxis,
) -> Result<Vec<PathBuf>> {
    register_font();
    let x_label = match axis {
        XAxis::Epoch => EPOCH_LABEL,
        XAxis::Time => "minutes of training",
    };
    let path = out.join(format!("{name}.png"));
    write_png(&path, (1600, 1200), |root| {
        let root = root.titled(title, (FONT, 34)).map_err(draw_error)?;
        let panels = root.split_evenly((2, 2));
        let panels_series: [Panel; 4] = [
            ("Training accuracy", "accuracy", |r, _| Some(r.accuracy)),
            ("Training loss (incl. L2)", "loss", |r, _| Some(r.loss)),
            ("Test accuracy", "test accuracy", EpochRow::test_accuracy),
            ("Test loss (incl. L2)", "test loss", EpochRow::test_loss),
        ];
        for (panel, (caption, label, value)) in panels.iter().zip(panels_series) {
            let series: Vec<Series> = runs.iter().map(|e| e.series(|r| r.after_each_epoch(axis, value))).collect();
            line_chart(panel, caption, label, x_label, &series, false)?;
        }
        Ok(())
    })?;
    let mut written = vec![path];
    let lrs = lr_series(runs, axis);
    if !lrs.is_empty() {
        let path = out.join(format!("{name}_lr.png"));
        write_png(&path, (1000, 600), |root| {
            line_chart(root, &format!("Learning rate: {title}"), "lr", x_label, &lrs, true)
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The lr figure's curves: none when every run follows a fixed step schedule (the CSV's `lr`
/// column says it all), else every run's, so each rule is seen against the others.
fn lr_series(runs: &[&ExperimentCurves], axis: XAxis) -> Vec<Series> {
    if !runs.iter().flat_map(|e| &e.runs).any(RunCurves::moves_lr) {
        return Vec::new();
    }
    runs.iter().map(|e| e.series(|r| r.lr(axis))).collect()
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
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

/// One chart: a line per series.
fn line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    y_label: &str,
    x_label: &str,
    series: &[Series],
    log_y: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
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
    let epochs = x_label == EPOCH_LABEL;
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
    let legend_at =
        if y_label.contains("accuracy") { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight };
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
        .x_desc(x_label)
        .y_desc(y_label)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tiny_experiment;

    const STEPS: usize = 50;

    fn curves(lr_schedule: &str, epochs: usize) -> RunCurves {
        let mut experiment = tiny_experiment(&[&format!("lr_schedule={lr_schedule}")]);
        experiment.epochs = epochs;
        let row = |epoch| EpochRow {
            epoch,
            loss: 1.0,
            accuracy: 0.5,
            val_loss: 1.0,
            val_accuracy: 0.5,
            lr: 0.0,
            ce_loss: 1.0,
            val_ce_loss: 1.0,
            epoch_seconds: 60.0,
            images_per_second: 100.0,
            test_loss: None,
            test_accuracy: None,
        };
        RunCurves {
            name: lr_schedule.to_string(),
            rows: (0..epochs).map(row).collect(),
            experiment,
            steps_per_epoch: STEPS,
        }
    }

    const ONE_CYCLE: &str =
        r#"{"rule": "one_cycle", "pct_start": 0.25, "div_factor": 10, "final_div_factor": 100, "down": "linear"}"#;
    const STEP: &str = r#"{"rule": "step", "boundaries": [3], "values": [0.05, 0.01]}"#;

    #[test]
    fn a_per_step_lr_curve_ends_at_the_rules_last_step_and_lr() {
        let points = curves(ONE_CYCLE, 4).lr(XAxis::Epoch);
        let (x, lr) = *points.last().unwrap();
        assert!((x - (4.0 - 1.0 / STEPS as f64)).abs() < 1e-12, "last point at x = {x}");
        // tiny.json's lr 0.05 / (div_factor 10 * final_div_factor 100).
        assert!((lr - 5e-5).abs() < 1e-12, "last lr {lr}");
    }

    fn single(run: RunCurves) -> ExperimentCurves {
        ExperimentCurves::new(run.name.clone(), vec![run])
    }

    #[test]
    fn the_lr_figure_shows_every_run_of_a_comparison_once_one_of_them_moves_its_lr() {
        let (step, one_cycle) = (single(curves(STEP, 4)), single(curves(ONE_CYCLE, 4)));
        assert!(lr_series(&[&single(curves(STEP, 4)), &single(curves(STEP, 4))], XAxis::Epoch).is_empty());
        let series = lr_series(&[&step, &one_cycle], XAxis::Epoch);
        assert_eq!(series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), [STEP, ONE_CYCLE]);
        // The step rule drawn as its staircase: 0.05 for three epochs, then 0.01 (Keras's float32 lr).
        let lrs: Vec<f64> = series[0].points.iter().map(|p| p.1).collect();
        assert!(lrs.first() == Some(&(0.05f32 as f64)) && lrs.last() == Some(&(0.01f32 as f64)), "{lrs:?}");
    }

    #[test]
    fn a_runs_steps_per_epoch_leave_out_its_held_out_images() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let mut experiment = tiny_experiment(&["validation=5000"]);
        std::fs::write(run.config(), experiment.to_pretty_json()).unwrap();
        metrics::rewrite(&run.metrics(), &curves(STEP, 1).rows, false).unwrap();
        // tiny.json's batch 32: 45,000 images without a limit, 1,000 with one.
        assert_eq!(read_run(dir.path()).unwrap().steps_per_epoch, 45_000 / 32 + 1);
        std::fs::write(run.limits(), r#"{"train_limit": 1000, "test_limit": null}"#).unwrap();
        assert_eq!(read_run(dir.path()).unwrap().steps_per_epoch, 1000 / 32 + 1);
        experiment.validation = 49_500;
        std::fs::write(run.config(), experiment.to_pretty_json()).unwrap();
        assert_eq!(read_run(dir.path()).unwrap().steps_per_epoch, 500 / 32 + 1);
    }

    #[test]
    fn several_runs_are_drawn_as_their_mean_with_a_band_over_the_epochs_all_have_done() {
        let run = |accuracies: &[f64]| {
            let mut run = curves(STEP, accuracies.len());
            for (row, &a) in run.rows.iter_mut().zip(accuracies) {
                row.val_accuracy = a;
            }
            run
        };
        let experiment = ExperimentCurves::new("e".into(), vec![run(&[0.2, 0.4, 0.5]), run(&[0.4, 0.6])]);
        let series = experiment.series(|r| r.after_each_epoch(XAxis::Epoch, EpochRow::test_accuracy));
        assert_eq!(series.points.len(), 2, "the third epoch is the first run's alone");
        for ((x, mean), want) in series.points.iter().zip([(1.0, 0.3), (2.0, 0.5)]) {
            assert!((x - want.0).abs() < 1e-12 && (mean - want.1).abs() < 1e-12, "{:?}", series.points);
        }
        assert_eq!(series.band.unwrap(), [(1.0, 0.2, 0.4), (2.0, 0.4, 0.6)]);
        assert!(series.name.contains("mean of 2 runs"), "{}", series.name);
        // A run with a test set of its own is drawn by its test column.
        let mut held_out = run(&[0.2]);
        held_out.experiment.validation = 1000;
        held_out.rows[0].test_accuracy = Some(0.7);
        let series = single(held_out).series(|r| r.after_each_epoch(XAxis::Epoch, EpochRow::test_accuracy));
        assert_eq!((series.points, series.band), (vec![(1.0, 0.7)], None));
    }
}
