//! A results folder: its experiments, each with its run folders, in either layout that
//! `scripts/run-all.sh` writes. Without `--seeds`, `results/<experiment>/` is itself the run
//! folder; with `--seeds N`, it holds one run folder per seed, `results/<experiment>/seed-<k>/`
//! (trained with the config's seed + k). An experiment's name is its folder's, as the
//! comparisons and claims name it. Also what a run is now: finished, still training, stopped,
//! or failed.
use crate::config::Experiment;
use crate::runs::metrics::{self, EpochRow, TestSet};
use crate::runs::run_dir::RunDir;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The prefix of a seed's run folder: `seed-<k>`.
pub const SEED_PREFIX: &str = "seed-";

/// One experiment's run folders.
#[derive(Debug, Clone)]
pub struct ExperimentDirs {
    pub name: String,
    /// The experiment's folder.
    pub path: PathBuf,
    /// Its runs: the folder itself, or its `seed-<k>` folders in the order of k.
    pub runs: Vec<RunDirName>,
}

/// A run folder and how a report names it: `demo`, or `demo/seed-1`.
#[derive(Debug, Clone)]
pub struct RunDirName {
    pub label: String,
    pub dir: RunDir,
}

/// Whether `path` is (the start of) a run folder: it has a config, metrics or a checkpoint, or
/// the log `run-all` writes before the trainer starts (a run that failed at once has only that).
pub fn is_run(path: &Path) -> bool {
    let dir = RunDir::new(path);
    dir.holds_run() || dir.train_log().is_file()
}

/// The `seed-<k>` run folders in `path`, in the order of k.
fn seed_runs(path: &Path, name: &str) -> Vec<RunDirName> {
    let mut seeds: Vec<(usize, PathBuf)> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let k = entry.file_name().to_str()?.strip_prefix(SEED_PREFIX)?.parse().ok()?;
            is_run(&entry.path()).then(|| (k, entry.path()))
        })
        .collect();
    seeds.sort();
    seeds
        .into_iter()
        .map(|(k, path)| RunDirName { label: format!("{name}/{SEED_PREFIX}{k}"), dir: RunDir::new(path) })
        .collect()
}

/// `path` as one experiment's folder: a run folder (one run), and its `seed-<k>` run folders;
/// `None` when it holds no run in either layout.
pub fn experiment_at(path: &Path) -> Option<ExperimentDirs> {
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().to_string());
    let mut runs = Vec::new();
    if is_run(path) {
        runs.push(RunDirName { label: name.clone(), dir: RunDir::new(path) });
    }
    runs.extend(seed_runs(path, &name));
    (!runs.is_empty()).then(|| ExperimentDirs { name, path: path.to_path_buf(), runs })
}

/// The experiments in the results folder `root`, sorted by name.
pub fn experiments(root: &Path) -> Result<Vec<ExperimentDirs>> {
    let mut found: Vec<ExperimentDirs> = std::fs::read_dir(root)
        .with_context(|| format!("cannot list {}", root.display()))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| experiment_at(&entry.path()))
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Where a run is.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    /// Every planned epoch is done.
    Finished,
    /// A process holds the run's lock: "pid N on HOST".
    Training { by: String },
    /// Fewer epochs than planned and nothing training it: interrupted, or not resumed yet.
    Stopped,
    /// Its last start ended in an error (from `train.log`, which `run-all` and the SLURM tasks
    /// write), or its config cannot be read.
    Failed { error: String },
}

impl RunStatus {
    pub fn label(&self) -> &'static str {
        match self {
            RunStatus::Finished => "finished",
            RunStatus::Training { .. } => "training",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed { .. } => "failed",
        }
    }
}

/// A run as it is now: its config, its metrics so far and its status.
#[derive(Debug, Clone)]
pub struct RunState {
    pub label: String,
    pub dir: RunDir,
    /// `None` when the config cannot be read (the run is then failed).
    pub experiment: Option<Experiment>,
    pub rows: Vec<EpochRow>,
    pub status: RunStatus,
}

impl RunState {
    /// Reads a run folder. A run whose metrics.csv cannot be read is an error naming the file;
    /// one without a readable config is a failed run.
    pub fn load(run: &RunDirName) -> Result<Self> {
        let dir = &run.dir;
        let rows = match dir.metrics().is_file() {
            true => metrics::read(&dir.metrics())?,
            false => Vec::new(),
        };
        let experiment = dir.load_experiment();
        let status = match (&experiment, dir.trainer()) {
            (_, Some(by)) => RunStatus::Training { by },
            (Err(error), None) => RunStatus::Failed { error: last_error(dir).unwrap_or_else(|| format!("{error:#}")) },
            (Ok(experiment), None) if rows.len() >= experiment.epochs => RunStatus::Finished,
            (Ok(_), None) => match last_error(dir) {
                Some(error) => RunStatus::Failed { error },
                None => RunStatus::Stopped,
            },
        };
        Ok(RunState { label: run.label.clone(), dir: dir.clone(), experiment: experiment.ok(), rows, status })
    }

    /// Where its test scores are (the test set is the validation data when the config is not
    /// readable: a failed run, never judged).
    pub fn test_set(&self) -> TestSet {
        TestSet::of(self.experiment.as_ref().map_or(0, |e| e.validation))
    }

    /// Epochs planned (the config's `epochs`), when the config is readable.
    pub fn planned(&self) -> Option<usize> {
        self.experiment.as_ref().map(|e| e.epochs)
    }
}

/// The error line (`error: ...`) of the last start logged in the run's `train.log`, if that
/// start ended in one. Each start there begins with a `=== ` line. A second trainer refused by
/// the run's lock logs its refusal there too: that says nothing about the run, and is skipped.
fn last_error(dir: &RunDir) -> Option<String> {
    let log = std::fs::read_to_string(dir.train_log()).ok()?;
    let last_start = log.rfind("\n=== ").map_or(0, |at| at + 1);
    log[last_start..]
        .lines()
        .filter_map(|line| line.strip_prefix("error: "))
        .rfind(|error| !error.contains("is being trained by another process"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    #[test]
    fn both_layouts_are_found_and_seeds_ordered_by_number() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        touch(&root.join("demo/config.json"));
        for k in [10, 2, 0] {
            touch(&root.join(format!("demo_fast/seed-{k}/metrics.csv")));
        }
        touch(&root.join("demo_fast/seed-x/metrics.csv"));
        touch(&root.join("failed_at_once/train.log"));
        std::fs::create_dir_all(root.join("plots")).unwrap();
        touch(&root.join("report.md"));
        let found = experiments(root).unwrap();
        let names: Vec<(&str, Vec<&str>)> =
            found.iter().map(|e| (e.name.as_str(), e.runs.iter().map(|r| r.label.as_str()).collect())).collect();
        assert_eq!(
            names,
            [
                ("demo", vec!["demo"]),
                ("demo_fast", vec!["demo_fast/seed-0", "demo_fast/seed-2", "demo_fast/seed-10"]),
                ("failed_at_once", vec!["failed_at_once"]),
            ]
        );
    }

    #[test]
    fn the_error_of_the_last_start_is_the_runs_and_an_earlier_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let log = "\n=== 2026-12-02 run-all: resnext train a\nerror: out of memory\n\n=== 2026-12-02 run-all: resnext train a\n";
        std::fs::write(run.train_log(), log).unwrap();
        assert_eq!(last_error(&run), None);
        std::fs::write(run.train_log(), format!("{log}epoch 1/3: loss 1\nerror: disk full\n")).unwrap();
        assert_eq!(last_error(&run).as_deref(), Some("disk full"));
    }
}
