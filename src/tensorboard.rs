//! `resnext tensorboard`: an event log from `metrics.csv` for every run given (or found one
//! level below a results folder) that has none, or for all with `--force`, keeping the step
//! scalars of the logs it replaces (metrics.csv has none). The log's format is
//! [`crate::runs::event_log`]'s.
use crate::clock;
use crate::runs::event_log::{event_files, read, wall_times_ending_at, EventLog, StepScalars};
use crate::runs::metrics;
use crate::runs::results;
use crate::runs::run_dir::{RunDir, METRICS};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// Writes the logs (see the module's doc) for `paths`. Prints a line per run; runs that could
/// not be written are reported and fail the command at the end.
pub fn backfill(paths: &[PathBuf], force: bool) -> Result<()> {
    let mut runs = Vec::new();
    for path in paths {
        runs.extend(runs_in(path)?);
    }
    let mut failed = 0;
    for run in &runs {
        match backfill_run(run, force) {
            Ok(line) => println!("{line}"),
            Err(error) => {
                failed += 1;
                eprintln!("error: {}: {error:#}", run.path().display());
            }
        }
    }
    ensure!(failed == 0, "{failed} of {} runs got no event log (see above)", runs.len());
    Ok(())
}

/// `path` itself when it is a run folder, else the run folders in it (one level below, or in
/// the `seed-<k>` folders of an experiment folder: either layout of [`crate::runs::results`]).
fn runs_in(path: &Path) -> Result<Vec<RunDir>> {
    if RunDir::new(path).holds_run() {
        return Ok(vec![RunDir::new(path)]);
    }
    ensure!(path.is_dir(), "{} is neither a run folder nor a results folder: it does not exist", path.display());
    let experiments = match results::experiment_at(path) {
        Some(seeds) => vec![seeds],
        None => results::experiments(path)?,
    };
    let mut runs: Vec<RunDir> = experiments
        .into_iter()
        .flat_map(|experiment| experiment.runs)
        .map(|run| run.dir)
        .filter(|run| run.holds_run())
        .collect();
    ensure!(
        !runs.is_empty(),
        "{} holds no run: neither it nor any folder in it has a {}, checkpoint or config.json",
        path.display(),
        METRICS
    );
    runs.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(runs)
}

/// One run: skipped when it has no metrics.csv yet, or one event log (unless `force`); else
/// written under the run's lock, keeping the step scalars of the logs it replaces (metrics.csv
/// has none).
fn backfill_run(run: &RunDir, force: bool) -> Result<String> {
    if !run.metrics().is_file() {
        return Ok(format!("skipped {}: no {} yet (no epoch finished)", run.path().display(), METRICS));
    }
    let existing = event_files(&run.tensorboard())?;
    if existing.len() == 1 && !force {
        let log = existing[0].display();
        return Ok(format!("skipped {}: it has an event log ({log}); --force rewrites it", run.path().display()));
    }
    let _lock = run.lock()?;
    let old = event_files(&run.tensorboard())?;
    let (steps, note) = old_steps(&old);
    let rows = metrics::read(&run.metrics())?;
    let modified = std::fs::metadata(run.metrics())
        .and_then(|m| m.modified())
        .with_context(|| format!("cannot read the modification time of {}", run.metrics().display()))?;
    let end = clock::unix_seconds_of(modified);
    let log = EventLog::rewrite(&run.tensorboard(), &rows, &wall_times_ending_at(&rows, end), &steps)?;
    let replaced = match old.len() {
        0 => String::new(),
        1 => ", replacing the old one".to_string(),
        n => format!(", replacing {n} old ones"),
    };
    let epochs = count(rows.len(), "epoch");
    Ok(format!("wrote {}: {epochs} from {}{replaced}{note}", log.path().display(), METRICS))
}

/// "1 epoch", "2 epochs".
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// The step scalars of the logs being replaced, and a note for the report line.
fn old_steps(files: &[PathBuf]) -> (Vec<StepScalars>, String) {
    // Per step: loss, lr, wall time. Files are in name order, so a newer one's value wins.
    let mut logged: std::collections::BTreeMap<u64, (Option<f64>, Option<f64>, f64)> = Default::default();
    let mut truncated = false;
    for file in files {
        let events = match read(file) {
            Ok(events) => events,
            Err(error) => return (vec![], format!(" (its step scalars are lost: {error:#})")),
        };
        truncated |= events.truncated_at.is_some();
        for event in &events.scalars {
            let Ok(step) = u64::try_from(event.step) else { continue };
            let entry = || (None, None, event.wall_time);
            match event.tag.as_str() {
                "step/loss" => logged.entry(step).or_insert_with(entry).0 = Some(event.value as f64),
                "step/lr" => logged.entry(step).or_insert_with(entry).1 = Some(event.value as f64),
                _ => {}
            }
        }
    }
    // A step whose second scalar was cut off by a crash is left out rather than half logged.
    let steps: Vec<StepScalars> = logged
        .into_iter()
        .filter_map(|(step, (loss, lr, wall_time))| Some(StepScalars { step, loss: loss?, lr: lr?, wall_time }))
        .collect();
    let mut note = String::new();
    if !steps.is_empty() {
        note = format!(", keeping its step/loss and step/lr ({})", count(steps.len(), "step"));
    }
    if truncated {
        note.push_str(" (its last record was cut short)");
    }
    (steps, note)
}
