//! `resnext report` on results folders: synthetic runs (config.json and metrics.csv written
//! here) in both layouts, with a user's own claims, where every verdict and every kind of run
//! that is not done appear; and real tiny runs of the five blog experiments, two seeds each,
//! trained by run-all, whose report must give each of the blog's five claims a verdict and
//! hold exactly the numbers of their CSVs.
use crate::common::*;
use resnext::config::Experiment;
use resnext::runs::metrics::{self, EpochRow};
use resnext::runs::run_lock::RunLock;
use serde_json::Value;
use std::path::Path;

/// A run folder of `tests/fixtures/tiny.json` planned for 3 epochs, with `seed`, whose
/// metrics.csv has `accuracies.len()` epochs with those test accuracies (val_accuracy: the
/// test set is the validation data).
fn synthetic_run(dir: &Path, seed: u64, accuracies: &[f64]) {
    std::fs::create_dir_all(dir).unwrap();
    let text = std::fs::read_to_string(tiny()).unwrap();
    let experiment = Experiment::from_json(&text, &["epochs=3".into(), format!("seed={seed}")]).unwrap();
    std::fs::write(dir.join("config.json"), experiment.to_pretty_json()).unwrap();
    let rows: Vec<EpochRow> = accuracies
        .iter()
        .enumerate()
        .map(|(epoch, &accuracy)| EpochRow {
            epoch,
            loss: 2.0,
            accuracy: 0.3,
            val_loss: 2.0 - accuracy,
            val_accuracy: accuracy,
            lr: 0.05,
            ce_loss: 1.9,
            val_ce_loss: 1.9 - accuracy,
            epoch_seconds: 10.0,
            images_per_second: 500.0,
            test_loss: None,
            test_accuracy: None,
        })
        .collect();
    metrics::rewrite(&dir.join("metrics.csv"), &rows, false).unwrap();
}

/// An experiment in the seeds layout: seed-k has the last accuracy `lasts[k]` (epochs before
/// it 0.1 and 0.05 lower).
fn synthetic_seeds(root: &Path, name: &str, lasts: &[f64]) {
    for (k, &last) in lasts.iter().enumerate() {
        synthetic_run(&root.join(name).join(format!("seed-{k}")), 1 + k as u64, &[last - 0.1, last - 0.05, last]);
    }
}

/// A study folder `dir/name` of tiny.json configs named `experiments` (seeds 1, 2, ...) with
/// `claims` (JSON objects) and no comparisons.
fn study_folder(dir: &Path, name: &str, experiments: &[&str], claims: &[String]) -> String {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let tiny_config = std::fs::read_to_string(tiny()).unwrap();
    for (i, experiment) in experiments.iter().enumerate() {
        let config =
            Experiment::from_json(&tiny_config, &[format!("name={experiment}"), format!("seed={}", i + 1)]).unwrap();
        std::fs::write(folder.join(format!("{experiment}.json")), config.to_pretty_json()).unwrap();
    }
    let study = format!(r#"{{"description": "a test study", "claims": [{}], "comparisons": []}}"#, claims.join(",\n"));
    std::fs::write(folder.join("study.json"), study).unwrap();
    folder.display().to_string()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn verdicts(report: &Value) -> Vec<(String, String)> {
    report["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_string(), c["verdict"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn a_report_of_synthetic_runs_gives_every_verdict_and_names_runs_that_are_not_done() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("results");
    synthetic_seeds(&root, "winner", &[0.60, 0.61, 0.62]);
    synthetic_seeds(&root, "loser", &[0.50, 0.51, 0.52]);
    synthetic_seeds(&root, "noisy", &[0.55, 0.60, 0.52]);
    synthetic_seeds(&root, "noisy_too", &[0.56, 0.58, 0.53]);
    // The layout without seeds: the experiment's folder is its one run.
    synthetic_run(&root.join("alone"), 1, &[0.4, 0.5, 0.58]);
    synthetic_run(&root.join("alone_too"), 1, &[0.4, 0.45, 0.48]);
    // One seed still training (its lock held here), one stopped after a failure in run-all's log.
    synthetic_seeds(&root, "busy", &[0.60, 0.61]);
    synthetic_run(&root.join("busy/seed-2"), 3, &[0.5]);
    let _lock = RunLock::take(&root.join("busy/seed-2/.lock"), &root.join("busy/seed-2")).unwrap();
    synthetic_seeds(&root, "broken", &[0.60, 0.61]);
    synthetic_run(&root.join("broken/seed-2"), 3, &[0.5, 0.55]);
    let log = "\n=== 2026-12-02 17:00:00 run-all: resnext train ...\nepoch 2/3: loss 1\nerror: cannot write checkpoint: disk full\n";
    std::fs::write(root.join("broken/seed-2/train.log"), log).unwrap();

    let claim = |id: &str, kind: &str, a: &str, b: &str| {
        format!(
            r#"{{"id": "{id}", "text": "{a} {kind} {b}", "check": {{"kind": "{kind}", "experiment": "{a}", "than": "{b}"}}}}"#
        )
    };
    let claims = [
        claim("win", "beats", "winner", "loser"),
        claim("loss", "beats", "loser", "winner"),
        claim("noise", "beats", "noisy", "noisy_too"),
        claim("noise_same", "same_as", "noisy", "noisy_too"),
        claim("one_each", "beats", "alone", "alone_too"),
        claim("missing", "beats", "winner", "never_ran"),
        claim("training", "beats", "busy", "loser"),
        claim("failed", "ends_below", "loser", "broken"),
        r#"{"id": "reaches", "text": "winner reaches 50% within 2 epochs", "check": {"kind": "reaches", "experiment": "winner", "percent": 50, "within_epochs": 2}}"#.into(),
        r#"{"id": "not_here", "text": "", "check": {"kind": "ends_above", "experiment": "elsewhere", "percent": 95}}"#.into(),
    ];
    let names =
        ["winner", "loser", "noisy", "noisy_too", "alone", "alone_too", "busy", "broken", "never_ran", "elsewhere"];
    let study = study_folder(dir.path(), "mine", &names, &claims);
    let out = dir.path().join("published/report.md");
    let [root_arg, out_arg] = [&root, &out].map(|p| p.display().to_string());
    let output = run_resnext(&["report", &root_arg, "--study", &study, "--out", &out_arg]);
    assert!(output.status.success(), "{}", stderr(&output));

    let report = json(&dir.path().join("published/report.json"));
    let want = [
        ("win", "holds"),
        ("loss", "does_not_hold"),
        ("noise", "cannot_tell"),
        ("noise_same", "holds"),
        ("one_each", "not_enough_runs"),
        ("missing", "not_enough_runs"),
        ("training", "incomplete"),
        ("failed", "incomplete"),
        ("reaches", "holds"),
        ("not_here", "not_enough_runs"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(verdicts(&report), want);
    let claim = |id: &str| report["claims"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone();
    assert_eq!(
        claim("one_each")["reason"].as_str().unwrap().split(':').next().unwrap(),
        "a difference of +10.00 points, one run each"
    );
    assert_eq!(claim("missing")["reason"], "no run of never_ran");
    let training = claim("training")["reason"].as_str().unwrap().to_string();
    assert!(training.starts_with("busy/seed-2 at epoch 1 of 3, still training (pid "), "{training}");
    let failed = claim("failed")["reason"].as_str().unwrap().to_string();
    assert_eq!(failed, "broken/seed-2 at epoch 2 of 3, failed: cannot write checkpoint: disk full");
    assert!(claim("training")["numbers"].is_null() && !claim("win")["numbers"].is_null());
    assert_eq!(claim("not_here")["checked_here"], false);
    let p = claim("win")["numbers"]["test"]["p"].as_f64().unwrap();
    assert!(p < 0.05, "{p}");

    // Per experiment: runs, statuses, and the statistics over the finished runs only.
    let experiment =
        |name: &str| report["experiments"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap().clone();
    let busy = experiment("busy");
    let statuses: Vec<&str> = busy["runs"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["finished", "finished", "training"]);
    assert_eq!(busy["finished_runs"], 2);
    assert!((busy["final_test_accuracy"]["mean"].as_f64().unwrap() - 60.5).abs() < 1e-9, "{busy}");
    let broken = experiment("broken");
    assert_eq!(broken["runs"][2]["status"], "failed");
    let winner = experiment("winner");
    assert_eq!(winner["runs"][0]["epochs_to_reach"]["90"], Value::Null);
    assert_eq!(winner["runs"][0]["best_checkpoint"]["epoch"], 3);
    assert_eq!(experiment("alone")["runs"][0]["label"], "alone");
    assert_eq!(winner["runs"][2]["label"], "winner/seed-2");

    // The Markdown: every claim and verdict, runs not done named, figures linked relatively.
    let md = std::fs::read_to_string(&out).unwrap();
    for (id, words) in [
        ("win", "holds"),
        ("loss", "does not hold"),
        ("noise", "cannot tell"),
        ("one_each", "not enough runs"),
        ("training", "runs incomplete"),
    ] {
        let line = md.lines().find(|l| l.starts_with(&format!("| `{id}`:"))).unwrap_or_else(|| panic!("{id}:\n{md}"));
        assert!(line.contains(&format!("| **{words}** |")), "{line}");
    }
    assert!(md.contains("Not checked here, no experiment they name has a run: `not_here`."), "{md}");
    assert!(md.contains("Welch's t-test") && md.contains("5% level"), "the rule is stated:\n{md}");
    assert!(md.contains("| busy/seed-2 | 3 | training: pid "), "{md}");
    assert!(md.contains("| broken/seed-2 | 3 | failed: cannot write checkpoint: disk full |"), "{md}");
    let links: Vec<&str> = md.split("](").skip(1).map(|rest| rest.split(')').next().unwrap()).collect();
    assert!(links.iter().any(|l| l.ends_with(".png")), "{md}");
    for link in links {
        assert!(
            link.starts_with("figures/") && out.parent().unwrap().join(link).is_file(),
            "{link} is not beside the report"
        );
    }
    // The terminal: a line per experiment and per claim checked, and the files.
    let text = stdout(&output);
    assert!(
        text.contains("holds            win: winner 61.00% ± 1.00 (3 runs) vs loser 51.00% ± 1.00 (3 runs)"),
        "{text}"
    );
    let figures = out.with_file_name("figures");
    let drawn = std::fs::read_dir(&figures).unwrap().count();
    assert!(text.trim_end().ends_with(&format!("and {drawn} figure(s) in {}", figures.display())), "{text}");
    assert!(text.lines().count() < 25, "a short summary:\n{text}");

    // Experiment folders given directly are reported and drawn together (as `make demo` does).
    let [winner, loser] = [root.join("winner"), root.join("loser")].map(|p| p.display().to_string());
    let output = run_resnext(&["report", &winner, &loser]);
    assert!(!output.status.success() && stderr(&output).contains("--out is needed"), "{}", stderr(&output));
    let direct = dir.path().join("direct/report.md").display().to_string();
    let output = run_resnext(&["report", &winner, &loser, "--study", &study, "--out", &direct]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&dir.path().join("direct/report.json"));
    let names: Vec<&str> =
        report["experiments"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["winner", "loser"]);
    assert_eq!(verdicts(&report)[..2], want[..2]);
    assert_eq!(report["experiments"][0]["figures"][0], "figures/winner_vs_loser.png");
    assert!(dir.path().join("direct/figures/winner_vs_loser.png").is_file());
}

#[test]
fn a_report_refuses_a_folder_without_runs_and_bad_claims_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = run_resnext(&["report", &empty.display().to_string()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("holds no run"), "{}", stderr(&output));
    synthetic_run(&empty.join("a"), 1, &[0.5]);
    let claim = r#"{"id": "x", "text": "", "check": {"kind": "beats", "experiment": "a", "thn": "b"}}"#;
    let study = study_folder(dir.path(), "bad", &["a", "b"], &[claim.to_string()]);
    let output = run_resnext(&["report", &empty.display().to_string(), "--study", &study]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("thn") && err.contains(&format!("{study}/study.json")), "{err}");
    assert!(!empty.join("report.md").exists(), "nothing written");
}

/// The blog-small study as issue 25 asks: run-all with two seeds and 3 epochs of each recipe
/// (all 10,000 test images at the end), then `resnext report`, which gives each of the study's
/// claims a verdict with exactly the numbers of the runs' CSVs.
#[test]
fn the_report_of_a_tiny_blog_small_study_judges_each_claim_with_the_numbers_of_their_csvs() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("R");
    let output = std::process::Command::new(root().join("scripts/run-all.sh"))
        .current_dir(root())
        .env("RESNEXT_BIN", env!("CARGO_BIN_EXE_resnext"))
        .env("CIFAR10_DIR", data_dir())
        .env("CUDA_VISIBLE_DEVICES", "")
        .args(["--device", "cpu", "--study", "blog-small", "--seeds", "2", "--results", &results.display().to_string()])
        .args(["--", "--epochs", "3"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    // run-all wrote the report; writing it again, the study found from the runs, gives the same.
    let again = run_resnext(&["report", &results.display().to_string()]);
    assert!(again.status.success(), "{}", stderr(&again));
    let report = json(&results.join("report.json"));
    assert_eq!(report["study"]["name"], "blog-small");
    let claims = [
        "resnext_same_as_my_resnext",
        "plateau_below_step",
        "tuned_plateau_below_step",
        "rotation_below_tuned_plateau",
    ];
    assert_eq!(verdicts(&report).iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), claims);
    for (id, verdict) in verdicts(&report) {
        assert!(["holds", "does_not_hold", "cannot_tell"].contains(&verdict.as_str()), "{id}: {verdict}");
    }
    let md = std::fs::read_to_string(results.join("report.md")).unwrap();
    for id in claims {
        assert!(md.lines().any(|l| l.starts_with(&format!("| `{id}`:"))), "{id} is not in report.md");
    }
    assert!(md.contains("**Seeds.** Run k of an experiment"), "the report says how seeds are assigned:\n{md}");
    // Each experiment's numbers are its CSVs': the test set measured after the last epoch only
    // (every 25 epochs, and the last).
    let mut seeds = Vec::new();
    for experiment in report["experiments"].as_array().unwrap() {
        let name = experiment["name"].as_str().unwrap();
        let mut finals = Vec::new();
        for (k, run) in experiment["runs"].as_array().unwrap().iter().enumerate() {
            let folder = results.join(name).join(format!("seed-{k}"));
            assert_eq!(run["path"].as_str().unwrap(), folder.display().to_string());
            let rows = metrics_rows(&folder);
            assert_eq!(rows.iter().map(|r| r.test_accuracy.is_some()).collect::<Vec<_>>(), [false, false, true]);
            let last = 100.0 * rows.last().unwrap().test_accuracy.unwrap();
            assert_eq!(run["final_test_accuracy"].as_f64().unwrap(), last, "{name} seed-{k}");
            let config = json(&folder.join("config.json"));
            assert_eq!(run["seed"], config["seed"]);
            seeds.push(config["seed"].as_u64().unwrap());
            assert_eq!((run["epochs_done"].as_u64(), run["epochs_planned"].as_u64()), (Some(3), Some(3)));
            finals.push(last);
        }
        let mean = (finals[0] + finals[1]) / 2.0;
        let spread = &experiment["final_test_accuracy"];
        assert!((spread["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{name}: {spread}");
        assert!(!experiment["figures"].as_array().unwrap().is_empty(), "{name} is in a figure");
    }
    // No seed repeats within the study: the configs' seeds 1-5, then + 1000.
    seeds.sort();
    assert_eq!(seeds, [1, 2, 3, 4, 5, 1001, 1002, 1003, 1004, 1005]);
}
