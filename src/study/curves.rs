//! The curves of the figures: a run's metrics per epoch on an axis of epochs or minutes, its
//! learning rate as trained (a plateau rule's from the CSV, any other rule rebuilt step by step),
//! and an experiment of several runs as their mean with a band from the lowest to the highest.
use crate::chart::{Series, XKind};
use crate::config::{Experiment, LrSchedule};
use crate::runs::metrics::{self, EpochRow, TestSet};
use crate::runs::results::ExperimentDirs;
use crate::runs::run_dir::RunDir;
use crate::train::schedule::{Clock, LrRule};
use anyhow::Result;
use std::path::Path;

/// What the figures' x axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Epochs done.
    Epoch,
    /// Minutes of training and evaluation (cumulative `epoch_seconds`), so recipes of
    /// different cost compare fairly.
    Time,
}

impl XAxis {
    /// The axis's description.
    pub fn label(self) -> &'static str {
        match self {
            XAxis::Epoch => "epoch",
            XAxis::Time => "minutes of training",
        }
    }

    /// The chart's kind of axis for it.
    pub fn kind(self) -> XKind {
        match self {
            XAxis::Epoch => XKind::Epochs,
            XAxis::Time => XKind::FromZero,
        }
    }

    /// What figure names get for it: none for epochs, `_time` for minutes.
    pub fn suffix(self) -> &'static str {
        match self {
            XAxis::Epoch => "",
            XAxis::Time => "_time",
        }
    }
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
    pub fn series(&self, curve: impl Fn(&RunCurves) -> Vec<(f64, f64)>) -> Series {
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
    pub fn x(&self, axis: XAxis, epoch: usize, f: f64) -> f64 {
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
    pub fn after_each_epoch(&self, axis: XAxis, value: fn(&EpochRow, TestSet) -> Option<f64>) -> Vec<(f64, f64)> {
        let set = TestSet::of(self.experiment.validation);
        self.rows.iter().filter_map(|r| Some((self.x(axis, r.epoch, 1.0), value(r, set)?))).collect()
    }

    /// Whether the run's lr moves by itself (warmups, per-step and plateau rules): comparisons
    /// with such a run get an lr figure.
    pub fn moves_lr(&self) -> bool {
        let e = &self.experiment;
        e.warmup.is_some() || e.lr_schedule.per_step() || matches!(e.lr_schedule, LrSchedule::ReduceOnPlateau { .. })
    }

    /// The lr as trained: a plateau rule's per epoch from the CSV; otherwise the rule itself,
    /// sampled 20 times an epoch and at the run's last step (per-step rules and warmups are
    /// curves, and a one-cycle rule reaches its lowest lr only at the very last step).
    pub fn lr(&self, axis: XAxis) -> Vec<(f64, f64)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run_curves, tiny_experiment, ONE_CYCLE, STEP};

    const STEPS: usize = 50;

    fn curves(lr_schedule: &str, epochs: usize) -> RunCurves {
        run_curves(lr_schedule, epochs, STEPS)
    }

    #[test]
    fn a_per_step_lr_curve_ends_at_the_rules_last_step_and_lr() {
        let points = curves(ONE_CYCLE, 4).lr(XAxis::Epoch);
        let (x, lr) = *points.last().unwrap();
        assert!((x - (4.0 - 1.0 / STEPS as f64)).abs() < 1e-12, "last point at x = {x}");
        // tiny.json's lr 0.05 / (div_factor 10 * final_div_factor 100).
        assert!((lr - 5e-5).abs() < 1e-12, "last lr {lr}");
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
        let series = ExperimentCurves::new("h".into(), vec![held_out])
            .series(|r| r.after_each_epoch(XAxis::Epoch, EpochRow::test_accuracy));
        assert_eq!((series.points, series.band), (vec![(1.0, 0.7)], None));
    }
}
