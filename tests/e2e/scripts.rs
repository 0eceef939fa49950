//! The shell scripts, run as a user runs them, on the real binary and real data:
//! `scripts/run-all.sh` (one Ctrl-C stops every run with its checkpoint and a rerun resumes it;
//! bad names and a missing GPU are clear errors; a run folder being trained is locked) and
//! `scripts/gpu-check.sh --device cpu --quick` (every step of the GPU self-check, at tiny sizes).
use crate::common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every run-all test trains demo on a few thousand images: a few seconds an epoch.
const SMALL: [&str; 4] = ["--train-limit", "4096", "--test-limit", "300"];

fn script(name: &str) -> Command {
    let mut command = Command::new(root().join("scripts").join(name));
    command
        .current_dir(root())
        .env("RESNEXT_BIN", env!("CARGO_BIN_EXE_resnext"))
        .env("CIFAR10_DIR", data_dir())
        // The same answer on a GPU machine: these tests are about the CPU path.
        .env("CUDA_VISIBLE_DEVICES", "");
    command
}

/// Writes a script that can be run.
fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// `scripts/run-all.sh --device cpu --study demo --only demo --results DIR ARGS -- --epochs N SMALL...`,
/// started in its own process group (as a shell starts a foreground job), output to files.
fn spawn_run_all(results: &Path, args: &[&str], epochs: &str) -> Child {
    let results = results.display().to_string();
    let mut command = script("run-all.sh");
    command.args(["--device", "cpu", "--study", "demo", "--only", "demo", "--results", &results]).args(args);
    command.args(["--", "--epochs", epochs]).args(SMALL);
    let out = std::fs::File::create(format!("{results}.stdout")).unwrap();
    let err = std::fs::File::create(format!("{results}.stderr")).unwrap();
    // SIGINT as a terminal leaves it: a test run started in the background (`make test &`, nohup)
    // inherits SIGINT ignored, and bash cannot trap a signal that was ignored when it started.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    command.stdout(Stdio::from(out)).stderr(Stdio::from(err)).process_group(0).spawn().unwrap()
}

/// The exit status and (stdout, stderr) of a spawned run-all, after it ends.
fn finish(mut child: Child, results: &Path) -> (std::process::ExitStatus, String, String) {
    let status = child.wait().unwrap();
    let read = |ext: &str| std::fs::read_to_string(format!("{}.{ext}", results.display())).unwrap_or_default();
    (status, read("stdout"), read("stderr"))
}

/// Waits until `file` has a line starting with `prefix` (or fails after `limit`).
fn wait_for_line(file: &Path, prefix: &str, limit: Duration, child: &mut Child) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.lines().any(|line| line.starts_with(prefix)) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ended ({status}) before {} had a line {prefix:?}:\n{text}", file.display());
        }
        assert!(start.elapsed() < limit, "no line {prefix:?} in {} after {limit:?}:\n{text}", file.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(pid: i32, signal: i32) {
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
}

/// The summary line run-all prints last for `exp`: "  demo  interrupted  ...".
fn summary_line<'a>(stdout: &'a str, exp: &str) -> &'a str {
    let summary = stdout.rsplit("run-all: summary\n").next().unwrap_or_default();
    summary
        .lines()
        .find(|line| line.split_whitespace().next() == Some(exp))
        .unwrap_or_else(|| panic!("the summary does not name {exp}:\n{stdout}"))
}

fn epochs(run: &Path) -> Vec<usize> {
    metrics_rows(run).iter().map(|row| row.epoch).collect()
}

#[test]
fn one_sigint_stops_run_all_with_a_checkpoint_and_a_rerun_completes() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    let run = results.join("demo");
    let mut child = spawn_run_all(&results, &[], "2");
    // After the first epoch: SIGINT to the whole process group, as Ctrl-C in a terminal sends it.
    wait_for_line(&run.join("train.log"), "epoch 1/2:", Duration::from_secs(600), &mut child);
    let pgid = child.id() as i32;
    signal(-pgid, libc::SIGINT);
    let (status, stdout, stderr) = finish(child, &results);
    assert_eq!(status.code(), Some(130), "interrupted run-all exits 130:\n{stdout}\n{stderr}");
    assert!(summary_line(&stdout, "demo").contains("interrupted"), "{stdout}");
    assert!(run.join("last.safetensors").is_file(), "the interrupted run has its checkpoint");
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains("interrupted at epoch 1 step "), "stopped mid-epoch with a checkpoint:\n{log}");
    assert_eq!(log.matches("\ninterrupt: stopping").count(), 1, "the trainer got exactly one signal:\n{log}");
    assert_eq!(epochs(&run), [0]);
    assert!(results.join("figures/demo_vs_demo_fast.png").is_file(), "figures are drawn after an interruption too");

    let child = spawn_run_all(&results, &[], "2");
    let (status, stdout, stderr) = finish(child, &results);
    assert!(status.success(), "the rerun completes:\n{stdout}\n{stderr}");
    assert!(summary_line(&stdout, "demo").contains("finished"), "{stdout}");
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains("resuming "), "the rerun resumed:\n{log}");
    assert_eq!(epochs(&run), [0, 1], "each epoch exactly once");
    // Nothing per step in run-all's own output: a line when the run starts and one when it ends,
    // (at the end) the report and its one claim about demo (not enough runs: no demo_fast
    // here), and the summary.
    let per_run = stdout.lines().filter(|l| l.contains(" demo ") || l.ends_with(" demo")).count();
    assert!(stdout.lines().count() <= 10 && per_run <= 3, "run-all printed too much:\n{stdout}");
    assert!(stdout.contains("report: ") && results.join("report.md").is_file(), "{stdout}");
}

#[test]
fn a_run_folder_being_trained_is_refused_to_a_second_trainer_and_sigterm_stops_run_all() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    let run = results.join("demo");
    let mut child = spawn_run_all(&results, &[], "3");
    // "training demo on ..." is printed once the run folder is locked.
    wait_for_line(&run.join("train.log"), "training demo on ", Duration::from_secs(600), &mut child);
    let out = run.display().to_string();
    let by_hand = run_resnext(&["train", "demo", "--device", "cpu", "--resume", "--out", &out]);
    assert!(!by_hand.status.success());
    assert!(stderr(&by_hand).contains("is being trained by another process"), "{}", stderr(&by_hand));
    // A second run-all over the same results: its demo fails with the lock error, named at the end.
    let mut command = script("run-all.sh");
    command.args(["--device", "cpu", "--study", "demo", "--only", "demo", "--results", &results.display().to_string()]);
    let second_out = command.args(["--", "--epochs", "3"]).output().unwrap();
    let second_stdout = stdout(&second_out);
    assert_eq!(second_out.status.code(), Some(1), "{second_stdout}\n{}", stderr(&second_out));
    let line = summary_line(&second_stdout, "demo");
    assert!(line.contains("failed") && line.contains("is being trained by another process"), "{second_stdout}");
    assert!(line.contains(&format!("{out}/train.log")), "the failure names the log: {line}");

    // SIGTERM to the script alone (not its group): it passes a stop on to the trainer.
    assert!(child.try_wait().unwrap().is_none(), "the first run-all is still training");
    signal(child.id() as i32, libc::SIGTERM);
    let (status, stdout, stderr) = finish(child, &results);
    assert_eq!(status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(summary_line(&stdout, "demo").contains("interrupted"), "{stdout}");
    assert!(run.join("last.safetensors").is_file());
    assert!(stderr.contains("SIGTERM: stopping 1 run(s)"), "{stderr}");
}

/// `run-all --seeds 2` over the demo study: each seed trains into its own folder with the
/// config's seed + 1000 k, the report gives both as mean ± std over 2 seeds with a verdict for the
/// demo's claim, and a rerun with more epochs resumes every seed's run.
#[test]
fn run_all_with_seeds_trains_each_seed_in_its_folder_reports_them_and_a_rerun_resumes_them() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let run_all_seeds = |epochs: &str| {
        let mut command = script("run-all.sh");
        command.args(["--device", "cpu", "--study", "demo", "--seeds", "2"]);
        command.args(["--results", &results.display().to_string()]);
        command.args(["--", "--epochs", epochs, "--train-limit", "512", "--test-limit", "200"]).output().unwrap()
    };
    let output = run_all_seeds("1");
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    let text = stdout(&output);
    let runs = ["demo/seed-0", "demo/seed-1", "demo_fast/seed-0", "demo_fast/seed-1"];
    for run in runs {
        assert!(summary_line(&text, run).contains("finished"), "{text}");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(results.join(run).join("config.json")).unwrap()).unwrap();
        // The configs' seeds, 1 and 2, + 1000 k: no two runs of the study share one.
        let k: u64 = run.rsplit('-').next().unwrap().parse().unwrap();
        let base = if run.starts_with("demo_fast") { 2 } else { 1 };
        assert_eq!(config["seed"], base + 1000 * k, "{run}");
        assert_eq!(epochs(&results.join(run)), [0]);
    }
    assert!(!results.join("demo/metrics.csv").exists(), "no run in the experiment's own folder");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("report.json")).unwrap()).unwrap();
    let claim = report["claims"].as_array().unwrap().iter().find(|c| c["id"] == "demo_fast_beats_demo").unwrap();
    assert!(["holds", "does_not_hold", "cannot_tell"].contains(&claim["verdict"].as_str().unwrap()), "{claim}");
    let md = std::fs::read_to_string(results.join("report.md")).unwrap();
    for (name, seeds) in [("demo", "1, 1001"), ("demo_fast", "2, 1002")] {
        let row =
            md.lines().find(|l| l.starts_with(&format!("| {name} | 2 ({seeds}) | 2 finished | 1 of 1 | "))).unwrap();
        assert!(row.contains("% ± "), "mean ± std over the 2 seeds: {row}");
    }
    assert!(text.contains("demo_fast_beats_demo: demo_fast "), "the claim's verdict is printed:\n{text}");
    assert!(results.join("figures/demo_vs_demo_fast.png").is_file(), "{text}");

    let output = run_all_seeds("2");
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    for run in runs {
        let log = std::fs::read_to_string(results.join(run).join("train.log")).unwrap();
        assert!(log.contains("resuming "), "{run} was resumed:\n{log}");
        assert_eq!(epochs(&results.join(run)), [0, 1], "{run}");
    }
}

fn run_all(args: &[&str]) -> Output {
    script("run-all.sh").args(args).output().unwrap()
}

#[test]
fn run_all_names_unknown_experiments_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results").display().to_string();
    let output = run_all(&["--device", "cpu", "--only", "my_resnext,my_resnet", "--results", &results]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("the study blog has no experiment named 'my_resnet'") && err.contains("my_resnext_lr_v2"),
        "{err}"
    );
    assert!(!Path::new(&results).exists(), "nothing was started");
    for (args, needle) in [
        (vec!["--per-gpu", "0"], "--per-gpu must be a positive whole number"),
        (vec!["--device", "tpu"], "--device must be cuda or cpu, not 'tpu'"),
        (vec!["--epochs", "2"], "unknown option '--epochs'"),
        (vec!["--study", "demo", "--only", "demo,demo", "--device", "cpu"], "'demo' is listed twice"),
        (vec!["--seeds", "0", "--device", "cpu"], "--seeds must be a positive whole number"),
        (vec!["--seeds", "2", "--device", "cpu", "--", "--seed", "5"], "do not pass '--seed' after --"),
        (vec!["--seeds", "2", "--device", "cpu", "--", "--set", "seed=5"], "do not pass 'seed=5' after --"),
        (vec!["--only", "demo", "--device", "cpu"], "the study blog has no experiment named 'demo'"),
        (vec!["--study", "blogg", "--device", "cpu"], "no study named \"blogg\""),
    ] {
        let output = run_all(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(needle), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn run_all_without_a_gpu_and_without_device_cpu_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results").display().to_string();
    let output = run_all(&["--study", "demo", "--results", &results]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("libtorch sees no CUDA GPU") && err.contains("--device cpu"), "{err}");
    assert!(!Path::new(&results).exists(), "nothing was started");
}

#[test]
fn run_all_help_explains_every_option() {
    let output = run_all(&["--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    for option in
        ["--study NAME", "--device cuda|cpu", "--per-gpu N", "--only A,B", "--seeds N", "--results DIR", "-- ARGS"]
    {
        assert!(help.contains(option), "--help lacks {option}:\n{help}");
    }
    assert!(help.contains("CUDA_VISIBLE_DEVICES") && help.contains("Exit status"), "{help}");
}

#[test]
fn every_other_script_explains_itself_with_help() {
    let scripts = [
        "slurm/submit.sh",
        "slurm/test.sh",
        "slurm/run-all.sbatch",
        "slurm/report.sbatch",
        "gpu-check.sh",
        "bench-cpu.sh",
        "bundle.sh",
    ];
    for name in scripts {
        let output = script(name).arg("--help").output().unwrap();
        assert!(output.status.success(), "{name} --help: {}", stderr(&output));
        assert!(stdout(&output).len() > 200, "{name} --help is too short: {}", stdout(&output));
    }
}

/// `scripts/bundle.sh` into a temporary folder, with the test batch and one training batch (xz
/// level 0: the rehearsal times the check, not the compression), as if copied to a machine where
/// the build's libtorch is not: its libtorch record points nowhere, so the launcher must find
/// python3's torch.
fn bundle(dir: &Path) -> PathBuf {
    let bundle = dir.join("resnext");
    let output = script("bundle.sh")
        .args(["--out", &bundle.display().to_string(), "--train-batches", "1", "--level", "0"])
        .env("RESNEXT_BIN", env!("CARGO_BIN_EXE_resnext"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    let size = printed.split(" is ").nth(1).and_then(|s| s.split(" MiB").next()).and_then(|s| s.parse::<f64>().ok());
    let size = size.unwrap_or_else(|| panic!("no size in {printed:?}"));
    assert!(size <= 60.0, "the bundle is {size} MiB, more than 60: {printed}");
    let record = bundle.join("target/release/resnext.libtorch");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains(&format!("version={}\n", resnext::host::LIBTORCH_VERSION)), "{text}");
    let elsewhere: String = text
        .lines()
        .map(|l| if l.starts_with("rpath=") { "rpath=/not/on/this/machine" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&record, elsewhere + "\n").unwrap();
    bundle
}

/// A `PATH` with bash's tools and `bin/python3` (running `python`), but no cargo and no project
/// venv: what a GPU machine without Rust offers.
fn machine_without_rust(dir: &Path, python: &str) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    executable(&bin.join("python3"), &format!("#!/bin/sh\nexec {python} \"$@\"\n"));
    if Path::new("/usr/bin/cargo").exists() {
        eprintln!("note: /usr/bin has a cargo: this PATH is not free of Rust on this machine");
    }
    format!("{}:/usr/bin:/bin", bin.display())
}

/// The rehearsal of a GPU slot on this CPU: the bundle's gpu-check at tiny sizes, on a `PATH`
/// without cargo or the venv, passes every check (the peer's included) inside its budget and
/// leaves exactly the three files.
#[test]
fn the_bundle_runs_gpu_check_on_a_machine_without_rust_and_leaves_three_files() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle(dir.path());
    let path = machine_without_rust(dir.path(), &root().join(".venv/bin/python3").display().to_string());
    let out = dir.path().join("out");
    let start = Instant::now();
    let output = Command::new(bundle.join("scripts/gpu-check.sh"))
        .args(["--device", "cpu", "--quick", "--budget", "240", "--out", &out.display().to_string()])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", &path)
        .env("HOME", std::env::var("HOME").unwrap())
        .env("CUDA_VISIBLE_DEVICES", "")
        .output()
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let (text, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "gpu-check failed:\n{text}\n{err}");
    assert!(text.contains("gpu-check: passed"), "{text}");
    assert!(seconds <= 240.0, "gpu-check took {seconds:.0}s of a 240s budget");
    let mut files: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    files.sort();
    assert_eq!(files, ["logs.tar.gz", "report.json", "report.md"]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["passed"], true, "{json}");
    let failed: Vec<_> =
        json["checks"].as_array().unwrap().iter().filter(|c| c["ok"] != true).map(|c| c.to_string()).collect();
    assert!(failed.is_empty(), "failed checks: {failed:?}");
    assert_eq!(json["skipped"], serde_json::json!([]), "every measurement ran");
    for phase in
        ["info", "bench-64", "bench-512", "memory-format", "peer-compiled", "train-resume", "eval-export", "run-all"]
    {
        assert_eq!(json["phases"][phase]["status"], "ran", "phase {phase}: {}", json["phases"]);
    }
    assert!(json["ours_vs_peer"].as_array().unwrap().len() >= 4, "{}", json["ours_vs_peer"]);
    // Every measurement read from the programs' JSON: a speed, and for ours its op count.
    for entry in json["bench"].as_array().unwrap() {
        assert!(entry["images_per_second"].as_f64().unwrap() > 0.0, "{entry}");
        assert_eq!(entry["aten_ops"].is_u64(), entry["who"] == "ours", "{entry}");
    }
    // The data it used is named beside every accuracy: one training batch, packed.
    let data = json["data"].as_str().unwrap();
    assert!(data.contains("1 of 5 training batches") && data.contains("data_batch_1.bin.xz"), "{data}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for section in ["## Phases", "## Speed", "## Interrupt and resume", "## Export", "## run-all"] {
        assert!(report.contains(section), "report.md lacks {section}:\n{report}");
    }
    assert!(report.matches("1 of 5 training batches").count() >= 3, "{report}");
    // The logs are text, and only text.
    let listing = Command::new("tar").arg("-tzf").arg(out.join("logs.tar.gz")).output().unwrap();
    let names = stdout(&listing);
    assert!(names.contains("logs/info.out") && names.contains("logs/train-resumed.out"), "{names}");
    assert!(!names.contains(".safetensors") && !names.contains("model.pt\n"), "{names}");
    eprintln!("the bundle's gpu-check --device cpu --quick took {seconds:.0}s");
}

/// Without CUDA, `--device cuda` stops right after finding out, says why, and still leaves its
/// three files.
#[test]
fn gpu_check_stops_at_once_when_cuda_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let start = Instant::now();
    let output =
        script("gpu-check.sh").args(["--device", "cuda", "--out", &out.display().to_string()]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(start.elapsed() < Duration::from_secs(60), "it went on for {:?}", start.elapsed());
    assert!(stdout(&output).contains("CUDA is not available"), "{}", stdout(&output));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["passed"], false);
    let cuda = json["checks"].as_array().unwrap().iter().find(|c| c["name"] == "cuda-available").unwrap();
    assert!(cuda["detail"].as_str().unwrap().contains("libtorch sees no CUDA device"), "{cuda}");
    assert!(json["phases"]["bench-64"].is_null(), "nothing after info ran: {}", json["phases"]);
    assert!(out.join("report.md").is_file() && out.join("logs.tar.gz").is_file());
}

/// Another torch than the one built against is refused in one line, naming both, before
/// anything runs; so is a machine whose python3 has no torch.
#[test]
fn the_bundle_refuses_another_torch_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle(dir.path());
    // A torch 2.10.0 for CPUs, with the old C++ ABI (its libc10.so has no __cxx11 names).
    let fake = dir.path().join("site/torch");
    std::fs::create_dir_all(fake.join("lib")).unwrap();
    std::fs::write(fake.join("version.py"), "__version__ = '2.10.0+cpu'\n").unwrap();
    for library in ["libtorch_cpu.so", "libc10.so"] {
        std::fs::write(fake.join("lib").join(library), b"\x7fELF not really").unwrap();
    }
    let finder = dir.path().join("find-torch");
    executable(&finder, &format!("#!/bin/sh\necho {}\n", fake.display()));
    let launch = |python: &str, command: &[&str]| {
        let path = machine_without_rust(&dir.path().join(format!("machine-{}", command.len())), python);
        let (program, args) = command.split_first().unwrap();
        Command::new(bundle.join(program)).args(args).env_clear().env("PATH", path).output().unwrap()
    };
    let built = resnext::host::LIBTORCH_VERSION;
    for command in [&["target/release/resnext", "info"][..], &["scripts/run-all.sh", "--device", "cpu"]] {
        let output = launch(&finder.display().to_string(), command);
        let err = stderr(&output);
        assert!(!output.status.success(), "{command:?} ran: {}", stdout(&output));
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("torch 2.10.0+cpu with C++ ABI 0") && err.contains(&format!("built against torch {built}")),
            "{err}"
        );
        assert!(stdout(&output).is_empty(), "nothing ran: {}", stdout(&output));
    }
    let output = launch("/bin/false", &["target/release/resnext", "info"]);
    let err = stderr(&output);
    assert!(!output.status.success() && err.lines().count() == 1 && err.contains("has no torch"), "{err}");
}

/// Scripts read a benchmark's numbers from its JSON, ours or the peer's alike (bench_cpu.py,
/// gpu_check.py): both programs write the same fields, with the same profile rows.
#[test]
fn ours_and_the_peers_measurements_have_the_same_fields() {
    let _guard = serial();
    let args = ["--mode", "train", "--batch", "4", "--steps", "2", "--warmup", "0", "--profile", "1", "--json"];
    let ours = run_resnext(&[&["bench", "demo", "--device", "cpu"][..], &args].concat());
    assert!(ours.status.success(), "{}", stderr(&ours));
    let peer = Command::new(root().join(".venv/bin/python3"))
        .arg(root().join("bench/torch_peer.py"))
        .args(["--depth", "11", "--cardinality", "4", "--width", "4", "--threads", "1"])
        .args(args)
        .output()
        .unwrap();
    assert!(peer.status.success(), "{}", stderr(&peer));
    let ours: serde_json::Value = serde_json::from_str(&stdout(&ours)).unwrap();
    let peer: serde_json::Value = serde_json::from_str(&stdout(&peer)).unwrap();
    let shared = [
        "program",
        "mode",
        "precision",
        "device",
        "batch",
        "threads",
        "steps",
        "warmup",
        "ms_per_step",
        "images_per_second",
        "best_images_per_second",
        "peak_rss_mib",
        "aten_ops_per_step",
        "first_step_seconds",
        "profile",
    ];
    for field in shared {
        assert!(ours.get(field).is_some() && peer.get(field).is_some(), "{field}:\n{ours}\n{peer}");
    }
    for field in ["mode", "precision", "device", "batch", "steps", "warmup"] {
        assert_eq!(ours[field], peer[field], "{field}");
    }
    let keys = |value: &serde_json::Value| -> Vec<String> { value.as_object().unwrap().keys().cloned().collect() };
    for side in [&ours, &peer] {
        let profile = &side["profile"];
        assert_eq!(keys(profile), ["classes", "ms_per_step", "ops", "steps"], "{profile}");
        assert_eq!(keys(&profile["classes"][0]), ["ms_per_step", "name", "percent"], "{profile}");
        assert_eq!(keys(&profile["ops"][0]), ["calls_per_step", "ms_per_step", "name", "percent"], "{profile}");
    }
}

/// bench-cpu.sh's arithmetic, with stand-ins for resnext and the peer that print fixed speeds as
/// their JSON: the ratios are ours over each other measurement within a round, with their median,
/// and the ceiling is the peer's median timed step over our profiled convolutions; the profile's
/// own one-step timings count in neither; the peer runs with the malloc tunables the binary reports.
#[test]
fn bench_cpu_takes_ratios_within_rounds_and_the_ceiling_from_the_timed_rounds() {
    let dir = tempfile::tempdir().unwrap();
    // A measurement with the fields both programs write; $s images/s, $profile its profile.
    let measurement = r#"echo "{\"images_per_second\": $s, \"best_images_per_second\": $s, \"ms_per_step\": 1.0,
  \"steps\": 5, \"warmup\": 1, \"peak_rss_mib\": 100, \"aten_ops_per_step\": null,
  \"first_step_seconds\": null, \"profile\": $profile}""#;
    let ours = dir.path().join("resnext");
    executable(
        &ours,
        &format!(
            r#"#!/bin/bash
if [ "$1" = info ]; then
  echo '{{"cpu": {{"model": "a stand-in", "native_bf16": null, "malloc_tuning": "GLIBC_TUNABLES=a=1"}}}}'; exit
fi
case "$*" in *"--mode eval"*) s=80 ;; *"--fused false"*) s=40 ;; *) s=50 ;; esac
profile=null
case "$*" in *--profile*)
  profile='{{"steps": 1, "ms_per_step": 2000.0, "classes": [{{"name": "convolution", "ms_per_step": 1600.0, "percent": 80.0}}], "ops": []}}' ;;
esac
{measurement}
"#
        ),
    );
    // The peer's training speeds, round by round, then the profile's one step.
    let peer = dir.path().join("peer");
    let count = dir.path().join("count");
    executable(
        &peer,
        &format!(
            r#"#!/bin/bash
[ "$GLIBC_TUNABLES" = a=1 ] || {{ echo "the peer lacks the binary's malloc tunables" >&2; exit 1; }}
case "$*" in
  *"--mode train"*) n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $n > {count}; speeds=(20 25 40 1000); s=${{speeds[n-1]}} ;;
  *) s=100 ;;
esac
profile=null
{measurement}
"#,
            count = count.display()
        ),
    );
    let output = script("bench-cpu.sh")
        .args(["--rounds", "3", "--precision", "fp32", "--profile", "1", "--peer", &peer.display().to_string()])
        .env("RESNEXT_BIN", &ours)
        .env("PYTHON", &peer)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    let summary: Vec<&str> = printed.lines().filter(|l| l.starts_with("RATIO") || l.starts_with("CEILING")).collect();
    assert_eq!(
        summary,
        [
            "RATIO ours / ours-unfused, train fp32: median 1.25x (by round: 1.25 1.25 1.25)",
            "RATIO ours / peer, eval fp32: median 0.80x (by round: 0.80 0.80 0.80)",
            "RATIO ours / peer, train fp32: median 2.00x (by round: 2.50 2.00 1.25)",
            "CEILING ours / peer, train fp32: our convolutions take 1600 ms/step, the peer 2560 ms/step in all; \
             with no time outside them ours would be at most 1.60x",
        ],
        "{printed}"
    );
}
