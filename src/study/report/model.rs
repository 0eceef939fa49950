//! The report's data model, as `report.json` holds it: the study, each experiment with its runs
//! and their numbers, each claim with its verdict; built from the runs as they are now.
use crate::runs::metrics::EpochRow;
use crate::runs::results::{RunState, RunStatus};
use crate::study::claims::{Claim, Judgement, Numbers, Verdict};
use crate::study::stats::{self, Spread};
use serde::Serialize;
use std::collections::BTreeMap;

/// The test accuracies (percent) at which the report counts the epochs a run took.
pub const MILESTONES: [f64; 3] = [90.0, 93.0, 95.0];
/// How many last epochs the report averages.
pub const LAST_EPOCHS: usize = 10;

/// Everything the report says, as `report.json` holds it. Accuracies are in percent (100 times
/// the CSV's fractions), epochs are numbered from 1 (as the figures number them).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The folders reported on, as given.
    pub results: Vec<String>,
    /// The study judged: its name and where it was read from (none: no claims, every run in
    /// one figure).
    pub study: Option<StudyReport>,
    /// When the report was written (UTC).
    pub written: String,
    pub rule: String,
    /// How the runs' seeds were assigned.
    pub seeds: String,
    pub experiments: Vec<ExperimentReport>,
    pub claims: Vec<ClaimReport>,
}

/// The study a report judges.
#[derive(Debug, Clone, Serialize)]
pub struct StudyReport {
    pub name: String,
    pub origin: String,
    pub description: String,
}

/// One experiment: its runs, their numbers, and the figures it is drawn in.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentReport {
    pub name: String,
    pub runs: Vec<RunReport>,
    pub finished_runs: usize,
    /// Over the finished runs (`None` when none is).
    pub final_test_accuracy: Option<Spread>,
    pub best_checkpoint_test_accuracy: Option<Spread>,
    pub last_epochs_test_accuracy: Option<Spread>,
    /// Relative to the report's folder.
    pub figures: Vec<String>,
}

/// One run as it is now.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `demo`, or `demo/seed-1`.
    pub label: String,
    pub path: String,
    pub seed: Option<u64>,
    /// finished, training, stopped or failed.
    pub status: &'static str,
    /// Who trains it, or its error.
    pub detail: Option<String>,
    pub epochs_done: usize,
    pub epochs_planned: Option<usize>,
    /// Training images held out as validation data (0: the test set is the validation data).
    pub validation: Option<usize>,
    pub precision: Option<&'static str>,
    /// Where it trained (`hardware.txt`; empty for runs from before it was written).
    pub hardware: Vec<String>,
    pub final_test_accuracy: Option<f64>,
    /// The best checkpoint's epoch (the highest `val_accuracy`) and its test accuracy.
    pub best_checkpoint: Option<BestCheckpoint>,
    pub last_epochs_test_accuracy: Option<f64>,
    /// The first epoch at or above each of [`MILESTONES`] ("90", "93", "95").
    pub epochs_to_reach: BTreeMap<String, Option<usize>>,
    /// Training and evaluation, all epochs (the sum of `epoch_seconds`).
    pub seconds: f64,
    /// Training images per second, the mean of its epochs'.
    pub images_per_second: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BestCheckpoint {
    pub epoch: usize,
    /// `None` when the test set was not measured after that epoch (config `test_every`).
    pub test_accuracy: Option<f64>,
}

/// A claim, its verdict and the numbers behind it.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimReport {
    pub id: String,
    pub text: String,
    pub verdict: Verdict,
    pub reason: String,
    pub numbers: Option<Numbers>,
    /// Whether any experiment it names has a run here (a report lists the others apart).
    pub checked_here: bool,
}

pub fn claim_report(claim: &Claim, judgement: Judgement, has_runs: impl Fn(&str) -> bool) -> ClaimReport {
    ClaimReport {
        id: claim.id.clone(),
        text: claim.text.clone(),
        verdict: judgement.verdict,
        reason: judgement.reason,
        numbers: judgement.numbers,
        checked_here: claim.check.experiments().iter().any(|name| has_runs(name)),
    }
}

pub fn experiment_report(name: &str, runs: &[RunState], figures: Vec<String>) -> ExperimentReport {
    let runs: Vec<RunReport> = runs.iter().map(run_report).collect();
    let finished: Vec<&RunReport> = runs.iter().filter(|r| r.status == RunStatus::Finished.label()).collect();
    let spread = |value: fn(&RunReport) -> Option<f64>| {
        Spread::of(&finished.iter().filter_map(|r| value(r)).collect::<Vec<_>>())
    };
    ExperimentReport {
        name: name.to_string(),
        finished_runs: finished.len(),
        final_test_accuracy: spread(|r| r.final_test_accuracy),
        best_checkpoint_test_accuracy: spread(|r| r.best_checkpoint.and_then(|b| b.test_accuracy)),
        last_epochs_test_accuracy: spread(|r| r.last_epochs_test_accuracy),
        runs,
        figures,
    }
}

fn run_report(run: &RunState) -> RunReport {
    let rows = &run.rows;
    let percent = |row: &EpochRow| row.test_accuracy(run.test_set()).map(|accuracy| 100.0 * accuracy);
    // The best checkpoint is the first epoch with the highest val_accuracy (train::record keeps
    // a later epoch only when it is strictly better).
    let best = rows.iter().fold(None::<&EpochRow>, |best, row| match best {
        Some(b) if b.val_accuracy >= row.val_accuracy => Some(b),
        _ => Some(row),
    });
    let last: Vec<f64> = rows.iter().rev().take(LAST_EPOCHS).filter_map(percent).collect();
    let epochs_to_reach = MILESTONES
        .iter()
        .map(|&m| (format!("{m:.0}"), rows.iter().position(|row| percent(row) >= Some(m)).map(|i| i + 1)))
        .collect();
    let detail = match &run.status {
        RunStatus::Training { by } => Some(by.clone()),
        RunStatus::Failed { error } => Some(error.clone()),
        _ => None,
    };
    let speeds: Vec<f64> = rows.iter().map(|r| r.images_per_second).collect();
    RunReport {
        label: run.label.clone(),
        path: run.dir.path().display().to_string(),
        seed: run.experiment.as_ref().map(|e| e.seed),
        status: run.status.label(),
        detail,
        epochs_done: rows.len(),
        epochs_planned: run.planned(),
        validation: run.experiment.as_ref().map(|e| e.validation),
        precision: run.experiment.as_ref().map(|e| e.precision.name()),
        hardware: run.dir.load_hardware(),
        final_test_accuracy: rows.last().and_then(percent),
        best_checkpoint: best.map(|b| BestCheckpoint { epoch: b.epoch + 1, test_accuracy: percent(b) }),
        last_epochs_test_accuracy: (!last.is_empty()).then(|| stats::mean(&last)),
        epochs_to_reach,
        seconds: rows.iter().map(|r| r.epoch_seconds).sum(),
        images_per_second: (!speeds.is_empty()).then(|| stats::mean(&speeds)),
    }
}

/// Distinct values, in their first order.
pub fn distinct<T: PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for value in values {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}
