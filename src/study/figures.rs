//! The figures of a study, as `resnext plot` and `resnext report` draw them: one per comparison
//! of the study whose experiments have runs, one of the runs no comparison names, and experiment
//! folders given directly drawn together. A figure is training and test accuracy and loss per
//! epoch (or per minute), plus the learning rate when a rule moves it by itself.
use crate::chart::{draw_error, line_chart, register_font, write_png, Axes, Legend, Series, YScale, FONT};
use crate::runs::metrics::{EpochRow, TestSet};
use crate::runs::results::{self, ExperimentDirs};
use crate::study::curves::{ExperimentCurves, RunCurves, XAxis};
use crate::study::{Comparison, Study};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// `resnext plot`: a results root (holding experiment folders, in either layout of
/// [`crate::runs::results`]) is drawn per comparison of `study` (by default the one study that has
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
    let files = draw_comparison(&format!("{name}{}", axis.suffix()), &title, &drawn, out, axis)?;
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
        let files = draw_comparison(&format!("{name}{}", axis.suffix()), &title, &drawn, out, axis)?;
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

/// One panel of a figure: caption, y-axis label, legend, and the value drawn (where measured).
type Panel = (&'static str, &'static str, Legend, fn(&EpochRow, TestSet) -> Option<f64>);

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
    let axes = |y_label, y_scale, legend| Axes { x_label: axis.label(), x_kind: axis.kind(), y_label, y_scale, legend };
    let path = out.join(format!("{name}.png"));
    write_png(&path, (1600, 1200), |root| {
        let root = root.titled(title, (FONT, 34)).map_err(draw_error)?;
        let panels = root.split_evenly((2, 2));
        let panels_series: [Panel; 4] = [
            ("Training accuracy", "accuracy", Legend::LowerRight, |r, _| Some(r.accuracy)),
            ("Training loss (incl. L2)", "loss", Legend::UpperRight, |r, _| Some(r.loss)),
            ("Test accuracy", "test accuracy", Legend::LowerRight, EpochRow::test_accuracy),
            ("Test loss (incl. L2)", "test loss", Legend::UpperRight, EpochRow::test_loss),
        ];
        for (panel, (caption, label, legend, value)) in panels.iter().zip(panels_series) {
            let series: Vec<Series> = runs.iter().map(|e| e.series(|r| r.after_each_epoch(axis, value))).collect();
            line_chart(panel, caption, &axes(label, YScale::Linear, legend), &series)?;
        }
        Ok(())
    })?;
    let mut written = vec![path];
    let lrs = lr_series(runs, axis);
    if !lrs.is_empty() {
        let path = out.join(format!("{name}_lr.png"));
        write_png(&path, (1000, 600), |root| {
            line_chart(root, &format!("Learning rate: {title}"), &axes("lr", YScale::Log, Legend::UpperRight), &lrs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run_curves, ONE_CYCLE, STEP};

    fn single(lr_schedule: &str) -> ExperimentCurves {
        ExperimentCurves::new(lr_schedule.to_string(), vec![run_curves(lr_schedule, 4, 50)])
    }

    #[test]
    fn the_lr_figure_shows_every_run_of_a_comparison_once_one_of_them_moves_its_lr() {
        let (step, one_cycle) = (single(STEP), single(ONE_CYCLE));
        assert!(lr_series(&[&single(STEP), &single(STEP)], XAxis::Epoch).is_empty());
        let series = lr_series(&[&step, &one_cycle], XAxis::Epoch);
        assert_eq!(series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), [STEP, ONE_CYCLE]);
        // The step rule drawn as its staircase: 0.05 for three epochs, then 0.01 (Keras's float32 lr).
        let lrs: Vec<f64> = series[0].points.iter().map(|p| p.1).collect();
        assert!(lrs.first() == Some(&(0.05f32 as f64)) && lrs.last() == Some(&(0.01f32 as f64)), "{lrs:?}");
    }
}
