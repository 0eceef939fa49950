//! A held-out validation split (config `validation` = N): `val_*` are measured on the last N
//! training images, the test set gets columns of its own and decides nothing in training, and
//! such a run resumes bit-identically after Ctrl-C.
use crate::common::*;
use resnext::compute::ComputeRequest;
use resnext::data::{Cifar10, Split, TRAIN_IMAGES};
use resnext::runs::metrics::EpochRow;
use resnext::runs::run_dir::{CheckpointName, RunDir};
use resnext::runs::trained_run::TrainedRun;
use resnext::train::scoring::{self, Scoring};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const HELD_OUT: usize = 300;

/// tiny.json, 2 epochs on 600 training images, the last 300 of the 50,000 held out, and the
/// first `test_limit` test images.
fn args(test_limit: &str, extra: &[&'static str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["--train-limit", "600", "--test-limit", test_limit, "--set", "validation=300"].map(String::from).into();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn train(out: &Path, test_limit: &str, extra: &[&'static str]) -> std::process::Output {
    let args = args(test_limit, extra);
    train_tiny(out, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| fresh_scratch("validation"))
}

/// The shared straight run, evaluated on the first 100 test images.
fn straight() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = scratch().join("straight");
        let output = train(&run, "100", &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        run
    })
}

/// A row without the test columns and the timings: what training decided.
fn training_side(row: &EpochRow) -> EpochRow {
    EpochRow { test_loss: None, test_accuracy: None, ..without_timings(row) }
}

/// `n` images of `split` from `start`, cut out here rather than by the code under test.
fn images(split: &Split, start: usize, n: usize) -> Split {
    Split {
        images: split.images.narrow(0, start as i64, n as i64),
        labels: split.labels.narrow(0, start as i64, n as i64),
    }
}

#[test]
fn the_val_columns_are_the_last_training_images_and_the_test_set_decides_nothing() {
    let _guard = serial();
    let a = straight();
    // The same run evaluated on twice the test images: everything training decides is the same.
    let b = scratch().join("more_test_images");
    let output = train(&b, "200", &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (rows_a, rows_b) = (metrics_rows(a), metrics_rows(&b));
    assert_eq!(rows_a.len(), 2);
    assert!(rows_a.iter().chain(&rows_b).all(|r| r.test_accuracy.is_some()), "test columns every epoch");
    let decided = |rows: &[EpochRow]| rows.iter().map(training_side).collect::<Vec<_>>();
    assert_eq!(decided(&rows_a), decided(&rows_b), "losses, val_*, lr");
    for checkpoint in ["last.safetensors", "best.safetensors"] {
        assert!(
            checkpoint_tensors(&a.join(checkpoint)) == checkpoint_tensors(&b.join(checkpoint)),
            "{checkpoint} depends on the test set"
        );
    }
    let log = std::fs::read_to_string(a.join("command.txt")).unwrap();
    assert!(log.contains("validation=300"), "{log}");

    // The best checkpoint scores the CSV's val_accuracy on the last 300 training images, and its
    // test_accuracy on the first 100 test images.
    let best = rows_a.iter().fold(&rows_a[0], |best, r| if r.val_accuracy > best.val_accuracy { r } else { best });
    let run = TrainedRun::load(&RunDir::new(a), CheckpointName::Best, &ComputeRequest::cpu()).unwrap();
    let data = Cifar10::load(&data_dir(), None).unwrap();
    let scoring = Scoring::of(&run.experiment, None, tch::Device::Cpu);
    let score = |split: &Split| scoring::score(&run.network, split, &run.compute, scoring).accuracy;
    assert_eq!(score(&images(&data.train, TRAIN_IMAGES - HELD_OUT, HELD_OUT)), best.val_accuracy);
    assert_eq!(Some(score(&images(&data.test, 0, 100))), best.test_accuracy);
    assert_events_match_csv(a);
    let out = stdout(&output);
    assert!(out.contains("600 train / 300 validation (the last 300 training images) / 200 test images"), "{out}");
}

#[test]
fn a_run_with_a_validation_split_resumes_bit_identically_after_ctrl_c() {
    let _guard = serial();
    let reference = straight();
    let run = scratch().join("interrupted");
    let args = args("100", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, rest) = train_until_interrupted(&tiny(), &run, &args, "step ", Duration::ZERO);
    assert_eq!(code, Some(130), "{rest:?}");
    assert!(checkpoint_state(&run.join("last.safetensors")).step > 0, "stopped mid-epoch");
    // Resumed with the same command line, as scripts rerun it.
    let output = train(&run, "100", &["--resume"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        checkpoint_tensors(&run.join("last.safetensors")) == checkpoint_tensors(&reference.join("last.safetensors")),
        "weights differ from the uninterrupted run"
    );
    let same: Vec<EpochRow> = metrics_rows(reference).iter().map(without_timings).collect();
    assert_eq!(metrics_rows(&run).iter().map(without_timings).collect::<Vec<_>>(), same);
    assert_events_match_csv(&run);
}

#[test]
fn holding_out_every_training_image_is_refused_by_name_before_anything_is_written() {
    let run = scratch().join("too_many");
    let output = train_tiny(&run, &["--set", "validation=50000"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("field `validation`"), "{}", stderr(&output));
    assert!(!run.exists(), "nothing was written");
}
