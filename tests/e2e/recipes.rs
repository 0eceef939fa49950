//! The modern recipe ingredients end to end (warmup, one-cycle, label smoothing, cutout,
//! EMA, flip TTA) on a tiny run with all of them on: resumed bit-identically, and evaluated
//! with the averaged weights and both views of each image wherever a run is scored.
use crate::common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn recipe() -> String {
    root().join("tests/fixtures/tiny_recipe.json").display().to_string()
}

const LIMITS: [&str; 4] = ["--train-limit", "1600", "--test-limit", "400"];

fn train_recipe(out: &Path, extra: &[&str]) -> std::process::Output {
    train_config(&recipe(), out, &[&LIMITS[..], extra].concat())
}

fn straight_run(dir: &Path) -> PathBuf {
    let run = dir.join("straight");
    let output = train_recipe(&run, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    run
}

#[test]
fn a_run_with_every_ingredient_resumes_bit_identically_after_ctrl_c() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let straight = straight_run(dir.path());
    let interrupted = dir.path().join("interrupted");
    let (code, rest) = train_until_interrupted(&recipe(), &interrupted, &LIMITS, "step ", Duration::ZERO);
    assert_eq!(code, Some(130), "{rest:?}");
    assert!(checkpoint_state(&interrupted.join("last.safetensors")).step > 0, "stopped mid-epoch");
    let output = train_recipe(&interrupted, &["--resume"]);
    assert!(output.status.success(), "{}", stderr(&output));

    let reference = checkpoint_tensors(&straight.join("last.safetensors"));
    assert!(reference.iter().any(|(name, _)| name.starts_with("ema.")), "the average is checkpointed");
    assert!(
        checkpoint_tensors(&interrupted.join("last.safetensors")) == reference,
        "weights, velocities or average differ"
    );
    let same: Vec<_> = metrics_rows(&straight).iter().map(without_timings).collect();
    assert_eq!(metrics_rows(&interrupted).iter().map(without_timings).collect::<Vec<_>>(), same);
    // The event log: the CSV's scalars, and the step scalars (every 5 steps) each logged once.
    assert_events_match_csv(&interrupted);
    let steps = |run: &Path| -> Vec<(String, i64, f32)> {
        event_log_scalars(run).into_iter().filter(|(tag, _, _)| tag.starts_with("step/")).collect()
    };
    let (a, b) = (steps(&straight), steps(&interrupted));
    assert_eq!(a, b, "the same step scalars after a resume");
    let logged: Vec<i64> = a.iter().filter(|(tag, _, _)| tag == "step/loss").map(|(_, step, _)| *step).collect();
    assert_eq!(logged, (0..100).step_by(5).collect::<Vec<i64>>(), "every 5th of the 100 steps, once");
}

#[test]
fn evaluation_best_and_eval_all_score_the_average_with_both_views() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = straight_run(dir.path());
    let rows = metrics_rows(&run);
    // The CSV's lr is the lr at each epoch's start: the warmup's first step (0.1 of 0.2), then
    // the one-cycle rule 25 steps after the 25-step warmup (50 steps an epoch, 75 after the
    // warmup, up for 0.3 * 75 - 1 = 21.5 of them): on its cosine way down from 0.2 to 0.0002.
    assert!((rows[0].lr - 0.2 * 0.1).abs() < 1e-12, "{}", rows[0].lr);
    let pct = (25.0 - 21.5) / (75.0 - 1.0 - 21.5);
    let one_cycle = 0.0002 + (0.2 - 0.0002) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0);
    assert!((rows[1].lr - one_cycle).abs() < 1e-12, "{} vs {one_cycle}", rows[1].lr);
    for (which, accuracy) in
        [("last", rows[1].val_accuracy), ("best", rows.iter().map(|r| r.val_accuracy).fold(0.0, f64::max))]
    {
        let output = run_resnext(&[
            "eval",
            &run.display().to_string(),
            "--device",
            "cpu",
            "--limit",
            "400",
            "--checkpoint",
            which,
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let text = stdout(&output);
        assert!(text.contains("each averaged with its mirror image"), "{text}");
        let reported = format!("accuracy {:.2}%", 100.0 * accuracy);
        assert!(text.contains(&reported), "{which}: eval should reproduce the CSV's {reported}:\n{text}");
    }
    // The best checkpoint holds the averaged weights of its epoch, not the trained ones.
    let best = checkpoint_state_json(&run.join("best.safetensors"));
    if best["epoch"] == 1 {
        let last = checkpoint_tensors(&run.join("last.safetensors"));
        let average: Vec<_> =
            last.iter().filter_map(|(n, v)| n.strip_prefix("ema.").map(|n| (n.to_string(), v))).collect();
        for (name, values) in checkpoint_tensors(&run.join("best.safetensors")) {
            let name = name.strip_prefix("model.").unwrap();
            assert!(average.iter().any(|(n, v)| n == name && **v == values), "best {name} is not the average");
        }
    }
}

fn checkpoint_state_json(path: &Path) -> serde_json::Value {
    resnext::runs::checkpoint::Checkpoint::load(path).unwrap().state
}
