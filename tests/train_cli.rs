//! End-to-end training on real CIFAR-10 images: two epochs, resume after an epoch, resume
//! after Ctrl-C in the middle of an epoch.
mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

#[test]
fn trains_two_epochs_with_finite_losses_above_chance() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let output = train_tiny(&run_dir, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let rows = metrics_rows(&run_dir);
    assert_eq!(rows.len(), 2);
    for (epoch, row) in rows.iter().enumerate() {
        assert_eq!(row[0], epoch.to_string());
        let values: Vec<f64> = row.iter().map(|v| v.parse().unwrap()).collect();
        assert!(values.iter().all(|v| v.is_finite()), "{row:?}");
        // loss = cross-entropy + L2 penalty, as Keras reports it
        assert!(values[1] > values[6] && values[3] > values[7], "{row:?}");
    }
    let last: Vec<f64> = rows[1].iter().map(|v| v.parse().unwrap()).collect();
    assert!(last[2] > 0.2, "training accuracy {} is not above chance (0.1)", last[2]);
    assert!(last[4] > 0.2, "test accuracy {} is not above chance (0.1)", last[4]);
    for file in ["config.json", "run.json", "command.txt", "last.safetensors", "best.safetensors"] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    // The saved config records the command-line overrides.
    let output = train_tiny(&dir.path().join("run2"), &["--epochs", "1", "--set", "lr_schedule.patience=3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run2/config.json")).unwrap()).unwrap();
    assert_eq!(saved["lr_schedule"]["patience"], 3);
    assert_eq!(saved["epochs"], 1);

    // eval: accuracy per class and a confusion matrix.
    let run_arg = run_dir.display().to_string();
    let output = run(&["eval", &run_arg, "--device", "cpu", "--limit", "500"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let reported = format!("accuracy {:.2}%", 100.0 * last[4]);
    assert!(
        text.contains(&reported),
        "eval of the best checkpoint should reproduce the CSV's val_accuracy ({reported}):\n{text}"
    );
    assert!(text.contains("airplane") && text.contains("truck"), "{text}");
    assert!(std::fs::read(run_dir.join("confusion_matrix.png")).unwrap().starts_with(b"\x89PNG"));

    // predict: a real test image saved as a 64x64 PNG and a JPEG (resized back to 32x32).
    let record = &std::fs::read(data_dir().join("test_batch.bin")).unwrap()[..3073];
    let mut rgb = image::RgbImage::new(32, 32);
    for (i, pixel) in rgb.pixels_mut().enumerate() {
        *pixel = image::Rgb([record[1 + i], record[1 + 1024 + i], record[1 + 2048 + i]]);
    }
    let big = image::imageops::resize(&rgb, 64, 64, image::imageops::FilterType::Nearest);
    let (png, jpg) = (dir.path().join("cat.png"), dir.path().join("cat.jpg"));
    big.save(&png).unwrap();
    rgb.save(&jpg).unwrap();
    let output =
        run(&["predict", &png.display().to_string(), &jpg.display().to_string(), "--run", &run_arg, "--device", "cpu"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        let percents: Vec<f64> =
            line.split_whitespace().filter_map(|w| w.trim_end_matches([',', '%']).parse().ok()).collect();
        assert_eq!(percents.len(), 3, "{line}");
        assert!(percents.windows(2).all(|w| w[0] >= w[1]) && percents.iter().sum::<f64>() <= 100.01, "{line}");
    }

    // Figures for a comparison whose runs exist; a missing run is skipped with a note.
    let comparisons = dir.path().join("comparisons.json");
    let spec = r#"{"comparisons": [{"name": "cmp", "title": "two tiny runs", "runs": ["run", "run2", "missing"]}]}"#;
    std::fs::write(&comparisons, spec).unwrap();
    let plots = dir.path().join("plots");
    let (root, plots_arg, comparisons_arg) =
        (dir.path().display().to_string(), plots.display().to_string(), comparisons.display().to_string());
    let output = run(&["plot", &root, "--out", &plots_arg, "--comparisons", &comparisons_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("run missing not found"), "{}", stdout(&output));
    for png in ["cmp.png", "cmp_lr.png"] {
        let bytes = std::fs::read(plots.join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000, "{png} is not a drawn PNG");
    }
}

#[test]
fn resume_after_an_epoch_and_after_ctrl_c_gives_the_uninterrupted_weights() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    assert!(train_tiny(&straight, &[]).status.success());

    // Stopped after epoch 1, resumed for epoch 2.
    let stepped = dir.path().join("stepped");
    assert!(train_tiny(&stepped, &["--epochs", "1"]).status.success());
    assert_eq!(metrics_rows(&stepped).len(), 1);
    let output = train_tiny(&stepped, &["--epochs", "2", "--resume"]);
    assert!(output.status.success(), "{}", stderr(&output));

    // Interrupted with SIGINT in the middle of the first epoch, then resumed.
    let interrupted = dir.path().join("interrupted");
    let out = interrupted.display().to_string();
    let tiny = tiny();
    let mut child = bin()
        .args(["train", &tiny, "--out", &out, "--train-limit", "3000", "--test-limit", "500", "--device", "cpu"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The loop has started (and the handler is installed) once a step has been reported.
    for line in lines.by_ref() {
        if line.unwrap().contains("step ") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    let state = checkpoint_state(&interrupted.join("last.safetensors"));
    assert_eq!(state["epoch"], 0, "stopped in the first epoch: {state}");
    assert!(state["step"].as_u64().unwrap() > 0, "a mid-epoch checkpoint: {state}");
    let output = train_tiny(&interrupted, &["--resume"]);
    assert!(output.status.success(), "{}", stderr(&output));

    let reference = checkpoint_tensors(&straight.join("last.safetensors"));
    for run in [&stepped, &interrupted] {
        let rows = metrics_rows(run);
        assert_eq!(rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["0", "1"], "{}", run.display());
        assert_eq!(
            checkpoint_tensors(&run.join("last.safetensors")),
            reference,
            "{}: weights differ from the uninterrupted run",
            run.display()
        );
        // Same losses and accuracies (timings differ).
        for (a, b) in rows.iter().zip(metrics_rows(&straight)) {
            assert_eq!(a[..8], b[..8], "{}", run.display());
        }
    }
}
