//! End-to-end training on real CIFAR-10 images, and the commands that use a trained run:
//! eval, predict, plot. One tiny two-epoch run is trained once and shared by the tests that
//! only read it.
use crate::common::*;
use resnext::config::Experiment;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// A folder for this test process's runs, emptied on first use.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| fresh_scratch("train_cli"))
}

/// The shared run: tiny.json, 2 epochs on 3,000 training and 500 test images.
fn trained_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = scratch().join("run");
        let output = train_tiny(&run, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        run
    })
}

/// A second run, one epoch, with a command-line override of the config.
fn overridden_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = scratch().join("run2");
        let output = train_tiny(&run, &["--epochs", "1", "--set", "lr_schedule.patience=3"]);
        assert!(output.status.success(), "{}", stderr(&output));
        run
    })
}

#[test]
fn trains_two_epochs_with_finite_losses_above_chance() {
    let _guard = serial();
    let run = trained_run();
    let rows = metrics_rows(run);
    assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), [0, 1]);
    for row in &rows {
        let values = [row.loss, row.accuracy, row.val_loss, row.val_accuracy, row.lr, row.ce_loss, row.val_ce_loss];
        assert!(values.iter().all(|v| v.is_finite()), "{row:?}");
        // loss = cross-entropy + L2 penalty, as Keras reports it
        assert!(row.loss > row.ce_loss && row.val_loss > row.val_ce_loss, "{row:?}");
    }
    assert!(rows[1].accuracy > 0.2, "training accuracy {} is not above chance (0.1)", rows[1].accuracy);
    assert!(rows[1].val_accuracy > 0.2, "test accuracy {} is not above chance (0.1)", rows[1].val_accuracy);
    for file in ["config.json", "run.json", "command.txt", "last.safetensors", "best.safetensors"] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    assert_events_match_csv(run);
}

#[test]
fn the_saved_config_records_the_command_line_overrides() {
    let _guard = serial();
    let config = std::fs::read_to_string(overridden_run().join("config.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(saved["lr_schedule"]["patience"], 3);
    assert_eq!(saved["epochs"], 1);
}

#[test]
fn nesterov_false_trains_plain_momentum_a_different_update() {
    let _guard = serial();
    let last = |nesterov: &str| {
        let run = scratch().join(format!("nesterov_{nesterov}"));
        let out = run.display().to_string();
        let set = format!("optimizer.nesterov={nesterov}");
        let args = ["train", "demo", "--out", &out, "--device", "cpu", "--epochs", "1", "--set", &set];
        let output = run_resnext(&[&args[..], &["--train-limit", "256", "--test-limit", "64"]].concat());
        assert!(output.status.success(), "{}", stderr(&output));
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
        assert_eq!(saved["optimizer"]["nesterov"].to_string(), nesterov);
        checkpoint_tensors(&run.join("last.safetensors"))
    };
    let (nesterov, plain) = (last("true"), last("false"));
    let weights = |tensors: &[(String, Vec<u32>)]| -> Vec<Vec<u32>> {
        tensors.iter().filter(|(name, _)| name == "model.fc.weight").map(|(_, v)| v.clone()).collect()
    };
    assert_ne!(weights(&nesterov), weights(&plain), "the same seed and data must train differently");
}

#[test]
fn eval_of_the_best_checkpoint_reproduces_the_csv_accuracy() {
    let _guard = serial();
    let run = trained_run();
    let best = metrics_rows(run).iter().map(|r| r.val_accuracy).fold(0.0, f64::max);
    let output = run_resnext(&["eval", &run.display().to_string(), "--device", "cpu", "--limit", "500"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let reported = format!("accuracy {:.2}%", 100.0 * best);
    assert!(text.contains(&reported), "eval should reproduce the CSV's best val_accuracy ({reported}):\n{text}");
    assert!(text.contains("airplane") && text.contains("truck"), "{text}");
    assert!(std::fs::read(run.join("confusion_matrix.png")).unwrap().starts_with(b"\x89PNG"));
}

#[test]
fn predict_gives_the_top_3_classes_of_png_and_jpeg_files() {
    let _guard = serial();
    // A real test image saved as a 64x64 PNG and a 32x32 JPEG.
    let record = &std::fs::read(data_dir().join(resnext::data::TEST_FILE)).unwrap()[..resnext::data::RECORD_BYTES];
    let mut rgb = image::RgbImage::new(32, 32);
    for (i, pixel) in rgb.pixels_mut().enumerate() {
        *pixel = image::Rgb([record[1 + i], record[1 + 1024 + i], record[1 + 2048 + i]]);
    }
    let big = image::imageops::resize(&rgb, 64, 64, image::imageops::FilterType::Nearest);
    let (png, jpg) = (scratch().join("cat.png"), scratch().join("cat.jpg"));
    big.save(&png).unwrap();
    rgb.save(&jpg).unwrap();
    let run = trained_run().display().to_string();
    let output = run_resnext(&[
        "predict",
        &png.display().to_string(),
        &jpg.display().to_string(),
        "--run",
        &run,
        "--device",
        "cpu",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        let percents: Vec<f64> =
            line.split_whitespace().filter_map(|w| w.trim_end_matches([',', '%']).parse().ok()).collect();
        assert_eq!(percents.len(), 3, "{line}");
        assert!(percents.windows(2).all(|w| w[0] >= w[1]) && percents.iter().sum::<f64>() <= 100.01, "{line}");
    }
}

#[test]
fn plot_draws_a_comparison_whose_runs_exist_and_skips_missing_ones() {
    let _guard = serial();
    let (_, _) = (trained_run(), overridden_run());
    // A study of tiny.json's recipe whose one figure draws the runs "run", "run2" and "missing".
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("tiny_study");
    std::fs::create_dir_all(&study).unwrap();
    let tiny_config = std::fs::read_to_string(tiny()).unwrap();
    for (seed, name) in ["run", "run2", "missing"].iter().enumerate() {
        let config = Experiment::from_json(&tiny_config, &[format!("name={name}"), format!("seed={seed}")]).unwrap();
        std::fs::write(study.join(format!("{name}.json")), config.to_pretty_json()).unwrap();
    }
    let spec = r#"{"description": "", "claims": [],
        "comparisons": [{"name": "cmp", "title": "two tiny runs", "runs": ["run", "run2", "missing"]}]}"#;
    std::fs::write(study.join("study.json"), spec).unwrap();
    let plots = scratch().join("plots");
    let [root, plots_arg, study_arg] = [scratch(), &plots, &study].map(|p| p.display().to_string());
    let output = run_resnext(&["plot", &root, "--out", &plots_arg, "--study", &study_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("run missing not found"), "{}", stdout(&output));
    for png in ["cmp.png", "cmp_lr.png"] {
        let bytes = std::fs::read(plots.join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000, "{png} is not a drawn PNG");
    }
}

#[test]
fn plot_draws_runs_no_comparison_names_on_either_axis_and_refuses_an_empty_folder() {
    let _guard = serial();
    // A results folder holding one run of a user's own, named in no comparison.
    let results = scratch().join("own_results");
    std::fs::create_dir_all(&results).unwrap();
    let own = results.join("my_own_recipe");
    if !own.exists() {
        std::os::unix::fs::symlink(trained_run(), &own).unwrap();
    }
    let plots = scratch().join("own_plots");
    let [results_arg, plots_arg] = [&results, &plots].map(|p| p.display().to_string());
    for (axis, png) in [("epoch", "other_runs.png"), ("time", "other_runs_time.png")] {
        let output = run_resnext(&["plot", &results_arg, "--out", &plots_arg, "--x", axis]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(stdout(&output).contains(png), "{}", stdout(&output));
        let bytes = std::fs::read(plots.join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000, "{png} is not a drawn PNG");
    }
    let empty = scratch().join("no_runs_here");
    std::fs::create_dir_all(&empty).unwrap();
    let output = run_resnext(&["plot", &empty.display().to_string(), "--out", &plots_arg]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("holds no run"), "{}", stderr(&output));
}

#[test]
fn resume_after_an_epoch_and_after_ctrl_c_gives_the_uninterrupted_weights() {
    let _guard = serial();
    let straight = trained_run();

    // Stopped after epoch 1, resumed for epoch 2.
    let stepped = scratch().join("stepped");
    assert!(train_tiny(&stepped, &["--epochs", "1"]).status.success());
    assert_eq!(metrics_rows(&stepped).len(), 1);
    let output = train_tiny(&stepped, &["--epochs", "2", "--resume"]);
    assert!(output.status.success(), "{}", stderr(&output));

    // Interrupted with SIGINT in the middle of the first epoch, then resumed.
    let interrupted = scratch().join("interrupted");
    let (code, rest) = train_until_interrupted(&tiny(), &interrupted, &[], "step ", Duration::ZERO);
    assert_eq!(code, Some(130), "{rest:?}");
    let state = checkpoint_state(&interrupted.join("last.safetensors"));
    assert_eq!(state.epoch, 0, "stopped in the first epoch: {state:?}");
    assert!(state.step > 0, "a mid-epoch checkpoint: {state:?}");
    let output = train_tiny(&interrupted, &["--resume"]);
    assert!(output.status.success(), "{}", stderr(&output));

    let reference = checkpoint_tensors(&straight.join("last.safetensors"));
    for run in [&stepped, &interrupted] {
        let rows = metrics_rows(run);
        assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), [0, 1], "{}", run.display());
        assert!(
            checkpoint_tensors(&run.join("last.safetensors")) == reference,
            "{}: weights differ from the uninterrupted run",
            run.display()
        );
        // Same losses and accuracies (timings differ).
        let same: Vec<_> = metrics_rows(straight).iter().map(without_timings).collect();
        assert_eq!(rows.iter().map(without_timings).collect::<Vec<_>>(), same, "{}", run.display());
        assert_events_match_csv(run);
    }
}
