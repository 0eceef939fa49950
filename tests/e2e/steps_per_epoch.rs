//! Config `steps_per_epoch` (Keras's): epochs are cut from one stream of passes over the
//! training images, so an epoch may end in the middle of a pass. A run stopped at any step, in
//! the middle of an epoch or of a pass, resumes bit-identically; ReduceLROnPlateau still counts
//! epochs, and the per-step rules count the steps the run really takes.
use crate::common::*;
use resnext::config::{Experiment, LrSchedule};
use resnext::runs::metrics::EpochRow;
use resnext::train::schedule::{Clock, LrRule};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// tiny.json (batch 32) on 200 training images: a pass is 7 steps (the last of 8 images); 5
/// steps an epoch, 4 epochs: passes end inside epochs 2 and 3. Its ReduceLROnPlateau (patience
/// 1) with a `min_delta` no loss beats after the first epoch: the lr falls after every later one.
const ARGS: [&str; 10] = [
    "--train-limit",
    "200",
    "--test-limit",
    "100",
    "--epochs",
    "4",
    "--set",
    "steps_per_epoch=5",
    "--set",
    "lr_schedule.min_delta=10",
];

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| fresh_scratch("steps_per_epoch"))
}

/// The uninterrupted run.
fn straight() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = scratch().join("straight");
        let output = train_tiny(&run, &ARGS);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            stdout(&output).contains("200 train / 100 test images, batch 32, 5 steps an epoch"),
            "{}",
            stdout(&output)
        );
        run
    })
}

#[test]
fn a_run_stopped_at_any_step_resumes_bit_identically_across_pass_boundaries() {
    let _guard = serial();
    let reference = straight();
    let run = scratch().join("interrupted");
    let mut resume = ARGS.to_vec();
    resume.push("--resume");
    // Ctrl-C in epochs 2 and 3 (each holds the end of a pass), then at the start of epoch 4: each
    // time at whatever step the signal lands on, then the same command again with --resume.
    let mut stops = Vec::new();
    for (marker, args) in
        [("epoch 2/4 step 1/5", &ARGS[..]), ("epoch 3/4 step 2/5", &resume), ("epoch 4/4 step 1/5", &resume)]
    {
        let (code, rest) = train_until_interrupted(&tiny(), &run, args, marker, Duration::ZERO);
        assert_eq!(code, Some(130), "{rest:?}");
        let state = checkpoint_state(&run.join("last.safetensors"));
        assert!(state.step > 0 && state.step < 5, "stopped mid-epoch: {} {}", state.epoch, state.step);
        stops.push(state.epoch * 5 + state.step);
    }
    assert!(stops.windows(2).all(|w| w[0] < w[1]), "each stop later than the last: {stops:?}");
    // A pass is 7 steps: some resumed stretch (the steps from a stop to the next, or to the end
    // at 20) starts a pass.
    let ends: Vec<usize> = stops[1..].iter().copied().chain([20]).collect();
    assert!(
        stops.iter().zip(&ends).any(|(&from, &to)| (from..to).any(|step| step % 7 == 0)),
        "no resume crossed a pass boundary: stopped after steps {stops:?}"
    );
    let output = train_tiny(&run, &resume);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        checkpoint_tensors(&run.join("last.safetensors")) == checkpoint_tensors(&reference.join("last.safetensors")),
        "weights differ from the uninterrupted run (stopped after steps {stops:?})"
    );
    let rows = |run: &Path| metrics_rows(run).iter().map(without_timings).collect::<Vec<EpochRow>>();
    assert_eq!(rows(&run), rows(reference));
    assert_events_match_csv(&run);
}

#[test]
fn reduce_on_plateau_waits_epochs_not_steps() {
    let _guard = serial();
    // tiny.json's rule: ReduceLROnPlateau with patience 1. Keras's rule, run here on the CSV's own
    // val_loss once per epoch, gives the lr column of every next epoch.
    let rows = metrics_rows(straight());
    let experiment = Experiment::load_file(&straight().join("config.json"), &[]).unwrap();
    assert!(matches!(experiment.lr_schedule, LrSchedule::ReduceOnPlateau { patience: 1, .. }));
    let mut rule = LrRule::new(experiment.lr_schedule.clone(), None, experiment.optimizer.lr);
    for pair in rows.windows(2) {
        rule.on_epoch_end(pair[0].val_loss);
        assert_eq!(rule.lr, pair[1].lr, "after epoch {}", pair[0].epoch);
    }
    let lrs: Vec<f64> = rows.iter().map(|r| r.lr).collect();
    assert!(lrs[1] == lrs[0] && lrs[3] < lrs[2] && lrs[2] < lrs[1], "once an epoch from epoch 3: {lrs:?}");
}

#[test]
fn per_step_rules_and_the_step_log_count_the_steps_the_run_takes() {
    let _guard = serial();
    let run = scratch().join("one_cycle");
    let mut args = ARGS.to_vec();
    let one_cycle = r#"lr_schedule={"rule": "one_cycle", "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0, "down": "linear"}"#;
    args.extend(["--set", one_cycle, "--set", "tensorboard_steps=1", "--set", "steps_per_epoch=3"]);
    let output = train_tiny(&run, &args);
    assert!(output.status.success(), "{}", stderr(&output));
    let state = checkpoint_state(&run.join("last.safetensors"));
    let steps: Vec<u64> = state.step_scalars.iter().map(|s| s.step).collect();
    assert_eq!(steps, (0..12).collect::<Vec<u64>>(), "3 steps in each of 4 epochs");
    let experiment = Experiment::load_file(&run.join("config.json"), &[]).unwrap();
    let rule = LrRule::new(experiment.lr_schedule.clone(), None, experiment.optimizer.lr);
    for logged in &state.step_scalars {
        let t = logged.step as usize;
        let clock = Clock { epoch: t / 3, step: t % 3, steps_per_epoch: 3, epochs: 4 };
        assert_eq!(logged.lr, rule.lr(clock), "step {t}");
    }
    // One-cycle ends at lr / (div_factor * final_div_factor) on the run's last step.
    let last = state.step_scalars.last().unwrap().lr;
    assert!((last - experiment.optimizer.lr / 1000.0).abs() < 1e-12, "{last}");
}

#[test]
fn steps_per_epoch_zero_is_refused_naming_the_file_the_field_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zero.json");
    let text = std::fs::read_to_string(tiny()).unwrap().replacen(
        "\"batch_size\": 32,",
        "\"batch_size\": 32,\n  \"steps_per_epoch\": 0,",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let run = dir.path().join("run");
    let output = train_config(&config.display().to_string(), &run, &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains(&config.display().to_string()) && err.contains("field `steps_per_epoch`") && err.contains("got 0"),
        "{err}"
    );
    assert!(!run.exists(), "nothing was written");
    // More steps than a pass is allowed: the stream wraps, as Keras's does (16 steps: two passes
    // of 7 and two steps of a third).
    let _guard = serial();
    let output = train_tiny(
        &run,
        &["--train-limit", "200", "--test-limit", "100", "--epochs", "1", "--set", "steps_per_epoch=16"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(metrics_rows(&run).len(), 1);
}
