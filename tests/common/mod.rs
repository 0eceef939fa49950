//! Helpers for the end-to-end tests: run the real binary on the real (shared) CIFAR-10.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// Training processes run one at a time: two libtorch processes spinning OpenMP threads on
/// two cores slow each other down many times over.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn data_dir() -> PathBuf {
    std::env::var_os("CIFAR10_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/cifar10/cifar-10-batches-bin"))
}

pub fn tiny() -> String {
    root().join("tests/fixtures/tiny.json").display().to_string()
}

pub fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_resnext"));
    command.current_dir(root()).env("CIFAR10_DIR", data_dir());
    command
}

pub fn run(args: &[&str]) -> Output {
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
    let out = out.display().to_string();
    let tiny = tiny();
    let mut args = vec!["train", &tiny, "--out", &out, "--device", "cpu"];
    for (flag, default) in [("--train-limit", "3000"), ("--test-limit", "500")] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend_from_slice(extra);
    run(&args)
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

/// The `model.*` and `velocity.*` tensors of a checkpoint, by name, as raw bytes.
pub fn checkpoint_tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    let mut tensors: Vec<(String, Vec<u8>)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, info)| {
            let offsets = info["data_offsets"].as_array().unwrap();
            let (a, b) = (offsets[0].as_u64().unwrap() as usize, offsets[1].as_u64().unwrap() as usize);
            (name.clone(), data[a..b].to_vec())
        })
        .collect();
    tensors.sort();
    tensors
}

pub fn checkpoint_state(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    serde_json::from_str(header["__metadata__"]["state"].as_str().unwrap()).unwrap()
}

/// metrics.csv as rows of strings, after checking its header.
pub fn metrics_rows(run: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(text.ends_with('\n'), "metrics.csv ends in a partial line:\n{text}");
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "epoch,loss,accuracy,val_loss,val_accuracy,lr,ce_loss,val_ce_loss,epoch_seconds,images_per_second"
    );
    lines.map(|l| l.split(',').map(String::from).collect()).collect()
}
