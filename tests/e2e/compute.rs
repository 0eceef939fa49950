//! How tensors run, tested on the CPU: bf16 autocast, both memory formats, the settings a GPU
//! run uses by default (host sync every 50 steps, evaluation batch 1000, NCHW, cuDNN
//! benchmark), and the op count of a training step.
use crate::common::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// The settings `--device cuda` defaults to, on the CPU.
const CUDA_SHAPED: [&str; 8] =
    ["--memory-format", "contiguous", "--sync-every", "50", "--eval-batch", "1000", "--cudnn-benchmark", "true"];

fn eval_logits(run: &Path, extra: &[&str]) -> (Vec<Vec<f32>>, String) {
    let logits = run.join(format!("logits{}.json", extra.join("_")));
    let (run_arg, logits_arg) = (run.display().to_string(), logits.display().to_string());
    let args =
        [&["eval", &run_arg, "--device", "cpu", "--limit", "300", "--logits-json", &logits_arg][..], extra].concat();
    let output = run_resnext(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&logits).unwrap()).unwrap();
    (serde_json::from_value(json["logits"].clone()).unwrap(), stdout(&output))
}

fn max_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn bf16_trains_close_to_fp32_with_float32_checkpoints_and_says_nothing_per_step() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let train = |precision: &str| {
        let run = dir.path().join(precision);
        let output = train_tiny(&run, &["--epochs", "1", "--train-limit", "1280", "--precision", precision]);
        assert!(output.status.success(), "{}", stderr(&output));
        (run, output)
    };
    let (fp32, _) = train("fp32");
    let (bf16, output) = train("bf16");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bf16.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["precision"], "bf16", "the run folder records the precision");
    // Nothing per step (a few progress lines an epoch at most) and no warnings.
    assert!(stdout(&output).lines().count() <= 10, "{}", stdout(&output));
    assert!(!stderr(&output).to_lowercase().contains("warn"), "{}", stderr(&output));
    // Master weights, BN statistics and velocities stay float32 (Checkpoint::load refuses others).
    let tensors = checkpoint_tensors(&bf16.join("last.safetensors"));
    assert!(tensors.iter().any(|(name, _)| name.starts_with("velocity.")));
    // The same seed and data: bf16 follows fp32 closely, but is not the same computation.
    let (a, b) = (&metrics_rows(&fp32)[0], &metrics_rows(&bf16)[0]);
    assert!(
        (a.ce_loss - b.ce_loss).abs() < 0.05 * a.ce_loss,
        "training loss {} (fp32) vs {} (bf16)",
        a.ce_loss,
        b.ce_loss
    );
    assert!((a.val_accuracy - b.val_accuracy).abs() <= 0.06, "{} vs {}", a.val_accuracy, b.val_accuracy);
    assert_ne!(a.ce_loss, b.ce_loss);
    // Evaluation in bf16 (BatchNorm folded in fp32, convolutions in bf16) against fp32.
    let (fp32_logits, _) = eval_logits(&fp32, &["--precision", "fp32"]);
    let (bf16_logits, _) = eval_logits(&fp32, &["--precision", "bf16"]);
    let difference = max_difference(&fp32_logits, &bf16_logits);
    assert!(difference > 0.0 && difference < 0.5, "bf16 logits differ from fp32 by {difference}");
}

#[test]
fn amp_is_no_option_and_starts_nothing() {
    let output = run_resnext(&["train", &tiny(), "--amp", "--device", "cpu", "--out", "/tmp/never"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("unexpected argument '--amp'"), "{}", stderr(&output));
    assert!(!Path::new("/tmp/never").exists());
}

#[test]
fn an_nchw_checkpoint_evaluates_and_resumes_in_channels_last() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("nchw");
    let output = train_tiny(&run, &["--epochs", "1", "--train-limit", "640", "--memory-format", "contiguous"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (nchw, _) = eval_logits(&run, &["--memory-format", "contiguous"]);
    let (nhwc, text) = eval_logits(&run, &["--memory-format", "channels-last"]);
    assert!(max_difference(&nchw, &nhwc) < 1e-4, "the same weights in either layout: {}", max_difference(&nchw, &nhwc));
    assert!(text.contains("accuracy"), "{text}");
    let output =
        train_tiny(&run, &["--epochs", "2", "--train-limit", "640", "--resume", "--memory-format", "channels-last"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(metrics_rows(&run).iter().map(|r| r.epoch).collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn the_cuda_shaped_loop_resumes_bit_identically_after_ctrl_c() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let limits = ["--train-limit", "2000", "--test-limit", "300"];
    let straight = dir.path().join("straight");
    let output = train_tiny(&straight, &[&limits[..], &CUDA_SHAPED[..]].concat());
    assert!(output.status.success(), "{}", stderr(&output));

    // 63 steps per epoch: with a sync every 50, a stop lands inside an unsynced window.
    let interrupted = dir.path().join("interrupted");
    let extra = [&limits[..], &CUDA_SHAPED[..]].concat();
    let (code, rest) = train_until_interrupted(&tiny(), &interrupted, &extra, "training ", Duration::from_millis(1200));
    assert_eq!(code, Some(130), "{rest:?}");
    let output = train_tiny(&interrupted, &[&limits[..], &CUDA_SHAPED[..], &["--resume"]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        checkpoint_tensors(&interrupted.join("last.safetensors"))
            == checkpoint_tensors(&straight.join("last.safetensors")),
        "weights differ from the uninterrupted run"
    );
    let same: Vec<_> = metrics_rows(&straight).iter().map(without_timings).collect();
    assert_eq!(metrics_rows(&interrupted).iter().map(without_timings).collect::<Vec<_>>(), same);
}

#[test]
fn divergence_is_named_at_its_step_whatever_the_sync_interval() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let schedule = r#"lr_schedule={"rule": "step", "boundaries": [1], "values": [0.05, 1e30]}"#;
    let message = |sync: &str| {
        let run = dir.path().join(format!("sync{sync}"));
        let args =
            ["--epochs", "2", "--train-limit", "2000", "--test-limit", "100", "--set", schedule, "--sync-every", sync];
        let output = train_tiny(&run, &args);
        assert!(!output.status.success());
        let err = stderr(&output);
        let at = err.find("not finite at epoch 1 step ").unwrap_or_else(|| panic!("{err}"));
        err[at..].split(' ').nth(6).unwrap().to_string()
    };
    assert_eq!(message("50"), message("1"), "the same first bad step");
}

#[test]
fn a_training_step_of_the_blog_network_dispatches_at_most_300_aten_ops_and_fusing_saves_some() {
    let _guard = serial();
    let ops = |fused: &str| -> u64 {
        let args = ["bench", "my_resnext", "--device", "cpu", "--mode", "train", "--steps", "1", "--warmup", "0"];
        let output = run_resnext(&[&args[..], &["--fused", fused, "--json"]].concat());
        assert!(output.status.success(), "{}", stderr(&output));
        // The whole of stdout is the measurement, for scripts.
        let measured: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        assert_eq!(
            (&measured["program"], &measured["mode"], &measured["precision"], &measured["device"], &measured["batch"]),
            (&json!("resnext"), &json!("train"), &json!("fp32"), &json!("cpu"), &json!(64)),
            "{measured}"
        );
        assert!(measured["images_per_second"].as_f64().unwrap() > 0.0, "{measured}");
        let settings = measured["settings"].as_str().unwrap();
        assert!(settings.contains(&format!("fused BatchNorm-ReLU {fused}")), "{settings}");
        measured["aten_ops_per_step"].as_u64().unwrap()
    };
    let (unfused, fused) = (ops("false"), ops("true"));
    // Unfused: forward about 105, backward about 115, the rest bookkeeping; it was about 980.
    assert!((200..=300).contains(&unfused), "{unfused} ops per step");
    // 28 of the 31 BatchNorms are fused with their ReLU (and 9 with the addition too): one op
    // forward and one backward where there were two to three each.
    assert!(fused + 50 <= unfused, "fused {fused} vs {unfused} ops per step");
}
