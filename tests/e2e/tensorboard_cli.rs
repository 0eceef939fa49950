//! `resnext tensorboard`, through the real binary, on run folders made from metrics.csv alone
//! (the command reads nothing else, so no training is needed here; tests/python/test_tensorboard.py
//! checks a trained run with TensorBoard's own reader).
use crate::common::*;
use resnext::runs::event_log::{self, EventLog, StepScalars};
use resnext::runs::metrics::{self, EpochRow};
use resnext::runs::run_dir::{METRICS, TENSORBOARD};
use std::path::Path;

fn row(epoch: usize) -> EpochRow {
    EpochRow {
        epoch,
        loss: 2.3 - 0.2 * epoch as f64,
        accuracy: 0.1 + 0.05 * epoch as f64,
        val_loss: 2.4 - 0.1 * epoch as f64,
        val_accuracy: 0.12,
        lr: 0.05,
        ce_loss: 2.2,
        val_ce_loss: 2.35,
        epoch_seconds: 30.0,
        images_per_second: 100.25,
        test_loss: None,
        test_accuracy: None,
    }
}

fn make_run(dir: &Path, epochs: usize) {
    std::fs::create_dir_all(dir).unwrap();
    metrics::rewrite(&dir.join(METRICS), &(0..epochs).map(row).collect::<Vec<_>>(), false).unwrap();
}

#[test]
fn writes_logs_for_runs_without_one_and_skips_the_others() {
    let results = tempfile::tempdir().unwrap();
    let (a, b) = (results.path().join("a"), results.path().join("b"));
    make_run(&a, 3);
    make_run(&b, 1);
    std::fs::create_dir_all(results.path().join("not_a_run")).unwrap();
    let output = run_resnext(&["tensorboard", &results.path().display().to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<String> = stdout(&output).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with(&format!("wrote {}/tensorboard/events.out.tfevents.", a.display())), "{lines:?}");
    assert!(lines[0].ends_with(": 3 epochs from metrics.csv"), "{lines:?}");
    assert_eq!(event_log_scalars(&a), csv_scalars(&a));
    assert!(lines[1].ends_with(": 1 epoch from metrics.csv"), "{lines:?}");
    assert_eq!(event_log_scalars(&b), csv_scalars(&b));
    assert_eq!(event_log_scalars(&a).len(), 3 * 8);

    // Wall times: the last epoch at metrics.csv's modification time, earlier ones 30 s apart.
    let file = &event_log::event_files(&a.join(TENSORBOARD)).unwrap()[0];
    let modified = std::fs::metadata(a.join(METRICS)).unwrap().modified().unwrap();
    let end = modified.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let times: Vec<(i64, f64)> = event_log::read(file).unwrap().scalars.iter().map(|e| (e.step, e.wall_time)).collect();
    assert!(times.iter().all(|&(step, t)| (t - (end - 30.0 * (2 - step) as f64)).abs() < 1e-6), "{times:?} vs {end}");

    // Again: both have a log now.
    let again = run_resnext(&["tensorboard", &a.display().to_string(), &b.display().to_string()]);
    assert!(again.status.success(), "{}", stderr(&again));
    let text = stdout(&again);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("skipped ") && l.ends_with("--force rewrites it")).count(),
        2,
        "{text}"
    );
}

#[test]
fn force_rewrites_from_the_csv_and_keeps_the_step_scalars() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    make_run(&run, 2);
    // An old log that disagrees with the CSV (three epochs, other values) and has step scalars.
    let mut stale = vec![row(0), row(1), row(2)];
    stale[1].loss = 9.0;
    let steps = [StepScalars { step: 5, loss: 1.5, lr: 0.05, wall_time: 1.0e9 }];
    EventLog::rewrite(&run.join(TENSORBOARD), &stale, &[1.0, 2.0, 3.0], &steps).unwrap();
    let output = run_resnext(&["tensorboard", "--force", &run.display().to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains(": 2 epochs from metrics.csv, replacing the old one, keeping its step/loss and step/lr (1 step)"),
        "{text}"
    );
    let mut wanted = csv_scalars(&run);
    wanted.extend([("step/loss".to_string(), 5, 1.5), ("step/lr".to_string(), 5, 0.05)]);
    assert_eq!(event_log_scalars(&run), wanted);
}

#[test]
fn two_logs_left_by_a_crash_are_rewritten_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    make_run(&run, 2);
    let folder = run.join(TENSORBOARD);
    EventLog::rewrite(&folder, &[row(0)], &[1.0], &[]).unwrap();
    let first = event_log::event_files(&folder).unwrap().remove(0);
    std::fs::copy(&first, folder.join("events.out.tfevents.0000000001.host.resnext")).unwrap();
    let output = run_resnext(&["tensorboard", &run.display().to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("replacing 2 old ones"), "{}", stdout(&output));
    assert_eq!(event_log_scalars(&run), csv_scalars(&run));
}

#[test]
fn a_folder_without_runs_is_an_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("empty/sub")).unwrap();
    let empty = dir.path().join("empty").display().to_string();
    let output = run_resnext(&["tensorboard", &empty]);
    assert!(!output.status.success());
    let wanted =
        format!("{empty} holds no run: neither it nor any folder in it has a metrics.csv, checkpoint or config.json");
    assert!(stderr(&output).contains(&wanted), "{}", stderr(&output));
    let missing = dir.path().join("missing").display().to_string();
    let output = run_resnext(&["tensorboard", &missing]);
    assert!(stderr(&output).contains(&format!("{missing} is neither a run folder nor a results folder")));
    // A run folder that has not finished an epoch is skipped, with the reason.
    let started = dir.path().join("started");
    std::fs::create_dir_all(&started).unwrap();
    std::fs::write(started.join("config.json"), "{}").unwrap();
    let output = run_resnext(&["tensorboard", &started.display().to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).trim(),
        format!("skipped {}: no metrics.csv yet (no epoch finished)", started.display())
    );
    assert!(!started.join(TENSORBOARD).exists());
}

#[test]
fn a_corrupt_csv_fails_its_run_and_the_command_but_not_the_others() {
    let results = tempfile::tempdir().unwrap();
    let (bad, good) = (results.path().join("a_bad"), results.path().join("b_good"));
    make_run(&good, 1);
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join(METRICS), "epoch,loss\n0,not-a-number\n").unwrap();
    let output = run_resnext(&["tensorboard", &results.path().display().to_string()]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains(&format!("error: {}: {}", bad.display(), bad.join(METRICS).display())), "{err}");
    assert!(err.contains("1 of 2 runs got no event log"), "{err}");
    assert_eq!(event_log_scalars(&good), csv_scalars(&good));
    assert!(event_log::event_files(&bad.join(TENSORBOARD)).unwrap().is_empty());
}

#[test]
fn a_run_being_trained_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    make_run(&run, 1);
    let _training = resnext::runs::run_dir::RunDir::new(&run).lock().unwrap();
    let output = run_resnext(&["tensorboard", &run.display().to_string()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("is being trained by another process"), "{}", stderr(&output));
    assert!(event_log::event_files(&run.join(TENSORBOARD)).unwrap().is_empty());
}
