//! Studies (`experiments/<study>/`: one config per experiment and `study.json`): the built-in
//! ones found from any folder, a working folder's taking precedence, a user's own made by copying
//! a folder and editing its JSON, and the errors that name what is wrong.
use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

/// Copies the repository's study `from` to `<dir>/experiments/<to>`, editing each file's text
/// with `edit(file name, text)`.
fn copy_study(from: &str, dir: &Path, to: &str, edit: impl Fn(&str, String) -> String) {
    let target = dir.join("experiments").join(to);
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(root().join("experiments").join(from)).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(target.join(&file), edit(&file, text)).unwrap();
    }
}

/// `resnext ARGS` run in `dir`.
fn resnext_in(dir: &Path, args: &[&str]) -> Output {
    bin().current_dir(dir).args(args).output().unwrap()
}

#[test]
fn the_built_in_studies_are_found_from_any_folder_and_a_local_one_takes_precedence() {
    let elsewhere = tempfile::tempdir().unwrap();
    let listed = stdout(&resnext_in(elsewhere.path(), &["study"]));
    for line in ["blog ", "blog-small ", "demo ", "fast "] {
        assert!(listed.lines().any(|l| l.starts_with(line)), "{line:?} not in\n{listed}");
    }
    assert!(listed.contains("my_resnext_lr_v2_small") && listed.contains("(the built-in study blog)"), "{listed}");
    let summary = |dir: &Path| {
        let output = resnext_in(dir, &["summary", "demo"]);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    assert!(summary(elsewhere.path()).contains("Total params: 47,232"));
    // A working folder's experiments/demo/ is the study demo there.
    copy_study("demo", elsewhere.path(), "demo", |file, text| match file {
        "demo.json" => text.replacen("\"width\": 4", "\"width\": 8", 1),
        _ => text,
    });
    assert!(!summary(elsewhere.path()).contains("Total params: 47,232"));
    let shown = stdout(&resnext_in(elsewhere.path(), &["study", "demo"]));
    assert!(shown.starts_with("study demo (experiments/demo)"), "{shown}");
}

#[test]
fn a_users_own_study_is_a_copied_folder_with_its_json_edited() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    // Copied, with the modern recipe's peak lr halved: no code, only JSON.
    copy_study("demo", dir.path(), "mine", |file, text| match file {
        "demo_fast.json" => text.replacen("\"lr\": 0.1,", "\"lr\": 0.05,", 1),
        _ => text,
    });
    let shown = stdout(&resnext_in(dir.path(), &["study", "mine"]));
    assert!(shown.contains("demo_fast (seed 2)") && shown.contains("demo_fast_beats_demo"), "{shown}");
    // Its experiments have the built-in ones' names: a bare name is ambiguous, STUDY/NAME is not.
    let output = resnext_in(dir.path(), &["summary", "demo_fast"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("name one as demo/demo_fast or mine/demo_fast"), "{}", stderr(&output));
    let output = resnext_in(dir.path(), &["summary", "mine/demo_fast"]);
    assert!(output.status.success(), "{}", stderr(&output));

    // run-all trains it and reports on it with its own claim and figure.
    let output = std::process::Command::new(root().join("scripts/run-all.sh"))
        .current_dir(dir.path())
        .env("RESNEXT_BIN", env!("CARGO_BIN_EXE_resnext"))
        .env("CIFAR10_DIR", data_dir())
        .env("CUDA_VISIBLE_DEVICES", "")
        .args([
            "--device",
            "cpu",
            "--study",
            "mine",
            "--",
            "--epochs",
            "1",
            "--train-limit",
            "640",
            "--test-limit",
            "200",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    let results = dir.path().join("results/mine");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("demo_fast/config.json")).unwrap()).unwrap();
    assert_eq!(config["optimizer"]["lr"], 0.05);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(results.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["study"]["name"], "mine");
    assert_eq!(report["claims"][0]["id"], "demo_fast_beats_demo");
    assert_eq!(report["claims"][0]["verdict"], "not_enough_runs");
    assert!(results.join("figures/demo_vs_demo_fast.png").is_file());
}

#[test]
fn an_unknown_study_or_experiment_is_refused_listing_the_known_ones() {
    let output = run_resnext(&["study", "nope"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("no study named \"nope\"") && err.contains("(known: blog, blog-small, demo, fast)"), "{err}");
    let output = run_resnext(&["summary", "demo2"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("no experiment named \"demo2\"") && err.contains("my_resnext_small, resnext"), "{err}");
    let output = run_resnext(&["summary", "blog/demo"]);
    let err = stderr(&output);
    assert!(err.contains("the study blog has no experiment named \"demo\" (its experiments: my_resnext,"), "{err}");
    let output = std::process::Command::new(root().join("scripts/run-all.sh"))
        .current_dir(root())
        .env("RESNEXT_BIN", env!("CARGO_BIN_EXE_resnext"))
        .args(["--device", "cpu", "--study", "nope"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no study named \"nope\""), "{}", stderr(&output));
}

#[test]
fn a_bad_study_is_refused_naming_the_file_the_field_and_the_value() {
    let cases: [(&str, &str, &str, &str, &[&str]); 5] = [
        (
            "study.json",
            "\"than\": \"demo\"",
            "\"than\": \"dem0\"",
            "claims",
            &["study.json", "`claims[0].check.than`", "\"dem0\""],
        ),
        (
            "study.json",
            "\"demo_fast\"\n",
            "\"demo_slow\"\n",
            "comparisons",
            &["study.json", "`comparisons[0].runs[1]`", "\"demo_slow\""],
        ),
        (
            "demo_fast.json",
            "\"name\": \"demo_fast\"",
            "\"name\": \"demo\"",
            "names",
            &["demo.json and ", "demo_fast.json", "`name` \"demo\""],
        ),
        ("demo_fast.json", "\"seed\": 2", "\"seed\": 1", "seeds", &["demo.json and ", "demo_fast.json", "`seed` 1"]),
        (
            "demo.json",
            "\"steps_per_epoch\": null",
            "\"steps_per_epoch\": 0",
            "steps_per_epoch",
            &["demo.json", "field `steps_per_epoch`", "got 0"],
        ),
    ];
    for (file, from, to, what, needles) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_study("demo", dir.path(), "bad", |name, text| match name == file {
            true => {
                assert!(text.contains(from), "{what}: {from:?} not in {name}");
                text.replacen(from, to, 1)
            }
            false => text,
        });
        let output = resnext_in(dir.path(), &["study", "bad"]);
        assert!(!output.status.success(), "{what}");
        let err = stderr(&output);
        for needle in needles {
            assert!(err.contains(needle), "{what}: {needle:?} not in {err}");
        }
    }
}

/// A config of a local study that is not valid JSON is named when an experiment is looked up by
/// name, not skipped into "no experiment named ...".
#[test]
fn a_config_that_does_not_parse_is_named_when_experiments_are_looked_up() {
    let dir = tempfile::tempdir().unwrap();
    copy_study("demo", dir.path(), "mine", |name, text| match name {
        "demo_fast.json" => text.replacen('{', "", 1),
        _ => text,
    });
    let output = resnext_in(dir.path(), &["summary", "demo_fast"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("experiments/mine/demo_fast.json") && err.contains("not valid JSON"), "{err}");
}

/// The repository holds `make study`'s runs of blog-small (each run's config, settings and
/// metrics) and the report written from them: reporting on them again gives the same verdicts
/// with the same numbers.
#[test]
fn the_committed_blog_small_runs_give_the_committed_report() {
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("results/blog-small/report.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.md");
    let output = run_resnext(&["report", "results/blog-small", "--out", &out.display().to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let again: Value = serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap();
    assert_eq!(again["study"]["name"], "blog-small");
    for part in ["claims", "experiments", "rule", "seeds", "results"] {
        assert_eq!(again[part], committed[part], "{part}");
    }
    // Every run finished its 300 epochs, three seeds of each of the five recipes.
    let experiments = committed["experiments"].as_array().unwrap();
    assert_eq!(experiments.len(), 5);
    for experiment in experiments {
        assert_eq!(experiment["finished_runs"], 3, "{}", experiment["name"]);
    }
}
