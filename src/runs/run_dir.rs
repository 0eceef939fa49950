//! A run folder (`results/<run>/`): the name of every file in it, and the small files that say
//! what the run is (`config.json`, `run.json`, `command.txt`, `hardware.txt`).
//!
//! | file | format owned by |
//! |---|---|
//! | `config.json`, `run.json`, `command.txt`, `hardware.txt` | here: the resolved config, the data limits, every command line, where each start of training ran |
//! | `metrics.csv` | [`crate::runs::metrics`], a row per epoch |
//! | `last.safetensors`, `best.safetensors` | [`crate::runs::checkpoint`], written by [`crate::train::record`] |
//! | `tensorboard/events.out.tfevents.*` | [`crate::runs::event_log`] |
//! | `confusion_matrix.png` | [`crate::eval::confusion_matrix`], for `eval` |
//! | `model.pt`, `model.pt.json` | [`crate::export`] (default location) |
//! | `.lock` | [`crate::runs::run_lock`], held while a process trains the run |
//! | `train.log` | the trainer's output when `scripts/run-all.sh` or a SLURM task runs it; [`crate::runs::results`] reads a failed start's error there |
use crate::atomic_file::write_bytes;
use crate::config::Experiment;
use crate::runs::run_lock::RunLock;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The run folder's file names.
pub const CONFIG: &str = "config.json";
pub const LIMITS: &str = "run.json";
pub const COMMANDS: &str = "command.txt";
pub const HARDWARE: &str = "hardware.txt";
/// What `run-all` writes the run's own output to (read by `report` for a failed run's error).
pub const TRAIN_LOG: &str = "train.log";
pub const METRICS: &str = "metrics.csv";
pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const TENSORBOARD: &str = "tensorboard";
pub const CONFUSION_MATRIX: &str = "confusion_matrix.png";
pub const EXPORT: &str = "model.pt";
pub const LOCK: &str = ".lock";

/// How a run's data was limited; saved as `run.json` next to `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataLimits {
    /// Trained on the first N training images only.
    pub train_limit: Option<usize>,
    /// Evaluated on the first N test images only.
    pub test_limit: Option<usize>,
}

/// Which of a run's checkpoints to use for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointName {
    /// The epoch with the highest val_accuracy.
    Best,
    /// The latest checkpoint.
    Last,
}

impl CheckpointName {
    /// Its name, on the command line and in what `eval` prints.
    pub const fn label(self) -> &'static str {
        match self {
            CheckpointName::Best => "best",
            CheckpointName::Last => "last",
        }
    }
}

/// The files of one run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn config(&self) -> PathBuf {
        self.path.join(CONFIG)
    }
    pub fn limits(&self) -> PathBuf {
        self.path.join(LIMITS)
    }
    pub fn commands(&self) -> PathBuf {
        self.path.join(COMMANDS)
    }
    pub fn hardware(&self) -> PathBuf {
        self.path.join(HARDWARE)
    }
    pub fn train_log(&self) -> PathBuf {
        self.path.join(TRAIN_LOG)
    }
    pub fn metrics(&self) -> PathBuf {
        self.path.join(METRICS)
    }
    pub fn checkpoint(&self, name: CheckpointName) -> PathBuf {
        self.path.join(match name {
            CheckpointName::Best => BEST,
            CheckpointName::Last => LAST,
        })
    }
    pub fn last(&self) -> PathBuf {
        self.checkpoint(CheckpointName::Last)
    }
    pub fn best(&self) -> PathBuf {
        self.checkpoint(CheckpointName::Best)
    }
    pub fn confusion_matrix(&self) -> PathBuf {
        self.path.join(CONFUSION_MATRIX)
    }
    /// The folder of the run's TensorBoard event log.
    pub fn tensorboard(&self) -> PathBuf {
        self.path.join(TENSORBOARD)
    }
    /// Where `export` writes the TorchScript file unless told otherwise.
    pub fn export(&self) -> PathBuf {
        self.path.join(EXPORT)
    }
    pub fn lock_file(&self) -> PathBuf {
        self.path.join(LOCK)
    }

    /// Takes the run's lock (see [`RunLock`]): a second trainer of the folder is refused.
    pub fn lock(&self) -> Result<RunLock> {
        RunLock::take(&self.lock_file(), &self.path)
    }

    /// Whether the folder holds (the start of) a run.
    pub fn holds_run(&self) -> bool {
        self.metrics().exists() || self.last().exists() || self.config().exists()
    }

    /// The run's saved config (`config.json`).
    pub fn load_experiment(&self) -> Result<Experiment> {
        ensure!(self.config().is_file(), "{} is not a run folder: it has no {CONFIG}", self.path.display());
        Experiment::load_file(&self.config(), &[])
    }

    /// The run's data limits (`run.json`).
    pub fn load_limits(&self) -> Result<DataLimits> {
        let path = self.limits();
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))
    }

    /// Records what is about to train: the resolved config, the data limits and (appended to the
    /// earlier ones) this process's command line and `hardware`, where it runs.
    pub fn record_start(&self, experiment: &Experiment, limits: &DataLimits, hardware: &str) -> Result<()> {
        write_bytes(&self.config(), "the run's config", experiment.to_pretty_json().as_bytes())?;
        write_bytes(&self.limits(), "the run's settings", serde_json::to_string_pretty(limits)?.as_bytes())?;
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        self.append_line(&self.commands(), "the command log", &command)?;
        self.append_line(&self.hardware(), "the hardware log", hardware)
    }

    fn append_line(&self, path: &Path, what: &str, line: &str) -> Result<()> {
        let mut text = std::fs::read_to_string(path).unwrap_or_default();
        text.push_str(line);
        text.push('\n');
        write_bytes(path, what, text.as_bytes())
    }

    /// Where the run trained: the distinct lines of `hardware.txt`, in their first order (none
    /// for runs from before it was written).
    pub fn load_hardware(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.hardware()).unwrap_or_default();
        let mut lines: Vec<String> = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if !lines.iter().any(|l| l == line) {
                lines.push(line.to_string());
            }
        }
        lines
    }

    /// Whether a process is training the run now (its lock is held), and which, as the lock
    /// file says. Only looks: a folder without a lock file is not being trained.
    pub fn trainer(&self) -> Option<String> {
        crate::runs::run_lock::holder(&self.lock_file())
    }

    /// Removes what training wrote (metrics, checkpoints, where it ran), for `train --force`.
    pub fn clear_training(&self) -> Result<()> {
        for file in [self.metrics(), self.last(), self.best(), self.hardware()] {
            if file.exists() {
                std::fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
            }
        }
        Ok(())
    }
}
