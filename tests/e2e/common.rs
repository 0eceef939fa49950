//! Helpers for the end-to-end tests: run the real binary on real CIFAR-10.
use resnext::runs::checkpoint::Checkpoint;
use resnext::runs::event_log;
use resnext::runs::metrics::{self, EpochRow};
use resnext::runs::run_dir::{METRICS, TENSORBOARD};
use resnext::train::record::TrainState;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Training processes run one at a time: two libtorch processes spinning OpenMP threads on
/// two cores slow each other down many times over.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh folder for the runs a test module shares, under cargo's temporary folder.
pub fn fresh_scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// CIFAR-10 for the tests: `$CIFAR10_DIR`, else the checkout's `data/cifar-10-batches-bin` (where
/// `make data` downloads it), else the copy beside the checkout on the project's own machines.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CIFAR10_DIR") {
        return PathBuf::from(dir);
    }
    let candidates = [root().join("data/cifar-10-batches-bin"), root().join("../shared/cifar10/cifar-10-batches-bin")];
    candidates.into_iter().find(|dir| dir.join("test_batch.bin").is_file()).unwrap_or_else(|| {
        panic!("no CIFAR-10 in $CIFAR10_DIR or data/cifar-10-batches-bin: run `make data` (it downloads the official archive)")
    })
}

pub fn tiny() -> String {
    root().join("tests/fixtures/tiny.json").display().to_string()
}

pub fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_resnext"));
    command.current_dir(root()).env("CIFAR10_DIR", data_dir());
    command
}

pub fn run_resnext(args: &[&str]) -> Output {
    bin().args(args).output().expect("the resnext binary runs")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// `train tests/fixtures/tiny.json` on a small real subset, with extra arguments.
pub fn train_tiny(out: &Path, extra: &[&str]) -> Output {
    train_config(&tiny(), out, extra)
}

/// `train <config> --out <out> --device cpu` on the first 3,000 training and 500 test images
/// (unless `extra` sets the limits), with `extra`.
fn train_args(config: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["train", config, "--out", &out.display().to_string(), "--device", "cpu"].map(String::from).into();
    for (flag, default) in [("--train-limit", "3000"), ("--test-limit", "500")] {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), default.to_string()]);
        }
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Trains `config` into `out` (see [`train_args`]).
pub fn train_config(config: &str, out: &Path, extra: &[&str]) -> Output {
    bin().args(train_args(config, out, extra)).output().expect("the resnext binary runs")
}

/// Starts training like [`train_config`], waits for an output line containing `marker` (once
/// the loop reports, the Ctrl-C handler is installed), then `delay`, and sends SIGINT. Returns
/// the exit status and the lines printed after the marker.
pub fn train_until_interrupted(
    config: &str,
    out: &Path,
    extra: &[&str],
    marker: &str,
    delay: Duration,
) -> (Option<i32>, Vec<String>) {
    let mut child = bin().args(train_args(config, out, extra)).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains(marker) {
            break;
        }
    }
    std::thread::sleep(delay);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    (child.wait().unwrap().code(), rest)
}

/// Every file in a folder with its bytes, to prove a failed command changed nothing.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Every tensor of a checkpoint (weights, BN statistics, velocities), by name, as exact f32
/// values: two runs with the same list trained bit-identically.
pub fn checkpoint_tensors(path: &Path) -> Vec<(String, Vec<u32>)> {
    let checkpoint = Checkpoint::load(path).unwrap();
    let mut tensors: Vec<(String, Vec<u32>)> = checkpoint
        .tensors
        .iter()
        .map(|(name, t)| {
            (name.clone(), Vec::<f32>::try_from(t.flatten(0, -1)).unwrap().iter().map(|x| x.to_bits()).collect())
        })
        .collect();
    tensors.sort();
    tensors
}

/// The training state a checkpoint holds.
pub fn checkpoint_state(path: &Path) -> TrainState {
    serde_json::from_value(Checkpoint::load(path).unwrap().state).unwrap()
}

/// metrics.csv's rows, after checking that it has the header (with the test columns when the
/// run holds out a validation split, and then in every row) and no partial last line.
pub fn metrics_rows(run: &Path) -> Vec<EpochRow> {
    let path = run.join(METRICS);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'), "metrics.csv ends in a partial line:\n{text}");
    let config = std::fs::read_to_string(run.join("config.json")).unwrap_or_else(|_| "{}".into());
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let test_columns = config["validation"].as_u64().unwrap_or(0) > 0;
    assert_eq!(text.lines().next().unwrap(), metrics::header(test_columns).join(","));
    let rows = metrics::read(&path).unwrap();
    // The test set is measured after every `test_every` epochs (default 1) and the last.
    let every = config["test_every"].as_u64().unwrap_or(1) as usize;
    let epochs = config["epochs"].as_u64().unwrap_or(0) as usize;
    for r in &rows {
        let tested = test_columns && ((r.epoch + 1) % every == 0 || r.epoch + 1 == epochs);
        assert!(r.test_accuracy.is_some() == tested && r.test_loss.is_some() == tested, "epoch {}", r.epoch);
    }
    rows
}

/// The run's one event file, read back: (tag, step, value) in file order.
pub fn event_log_scalars(run: &Path) -> Vec<(String, i64, f32)> {
    let files = event_log::event_files(&run.join(TENSORBOARD)).unwrap();
    assert_eq!(files.len(), 1, "one event file: {files:?}");
    let file = event_log::read(&files[0]).unwrap();
    assert_eq!(file.truncated_at, None);
    file.scalars.into_iter().map(|e| (e.tag, e.step, e.value)).collect()
}

/// What the event log should hold for metrics.csv's rows, in the order it is written.
pub fn csv_scalars(run: &Path) -> Vec<(String, i64, f32)> {
    metrics::read(&run.join(METRICS))
        .unwrap()
        .iter()
        .flat_map(|r| {
            event_log::epoch_scalars(r).into_iter().map(|(tag, v)| (tag.to_string(), r.epoch as i64, v as f32))
        })
        .collect()
}

/// The event log's epoch scalars are metrics.csv's, each epoch once.
pub fn assert_events_match_csv(run: &Path) {
    let epochs: Vec<_> = event_log_scalars(run).into_iter().filter(|(tag, _, _)| !tag.starts_with("step/")).collect();
    assert_eq!(epochs, csv_scalars(run), "{}: the event log and metrics.csv differ", run.display());
}

/// What two runs that trained identically share in a row (everything but the timings).
pub fn without_timings(row: &EpochRow) -> EpochRow {
    EpochRow { epoch_seconds: 0.0, images_per_second: 0.0, ..row.clone() }
}
