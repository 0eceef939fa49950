//! A run folder (`results/<run>/`): the files in it, the one atomic way they are written, and
//! how `resnext train` plans a run (nothing written yet) and then records it.
//!
//! | file | written by |
//! |---|---|
//! | `config.json`, `run.json`, `command.txt` | [`RunPlan::record`] at the start of each `train` |
//! | `metrics.csv` | [`crate::metrics`], a row per epoch |
//! | `last.safetensors`, `best.safetensors` | [`crate::checkpoint`] |
//! | `confusion_matrix.png` | `eval` |
//! | `model.pt`, `model.pt.json` | `export` (default location) |
//! | `tensorboard/events.out.tfevents.*` | [`crate::tensorboard`]: the CSV's scalars for TensorBoard |
use crate::checkpoint;
use crate::cli::TrainArgs;
use crate::config::Experiment;
use crate::metrics;
use crate::tensorboard;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How the data was limited; saved as `run.json` next to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSettings {
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
}

/// Which of a run's checkpoints to use for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckpointName {
    /// The epoch with the highest val_accuracy.
    Best,
    /// The latest checkpoint.
    Last,
}

impl CheckpointName {
    pub fn label(self) -> &'static str {
        match self {
            CheckpointName::Best => "best",
            CheckpointName::Last => "last",
        }
    }
}

/// A run folder's lock (see [`RunDir::lock`]); released when dropped.
pub struct RunLock {
    _file: std::fs::File,
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
        self.path.join("config.json")
    }
    pub fn settings(&self) -> PathBuf {
        self.path.join("run.json")
    }
    pub fn commands(&self) -> PathBuf {
        self.path.join("command.txt")
    }
    pub fn metrics(&self) -> PathBuf {
        self.path.join(metrics::FILE)
    }
    pub fn checkpoint(&self, name: CheckpointName) -> PathBuf {
        self.path.join(match name {
            CheckpointName::Best => checkpoint::BEST,
            CheckpointName::Last => checkpoint::LAST,
        })
    }
    pub fn last(&self) -> PathBuf {
        self.checkpoint(CheckpointName::Last)
    }
    pub fn best(&self) -> PathBuf {
        self.checkpoint(CheckpointName::Best)
    }
    pub fn confusion_matrix(&self) -> PathBuf {
        self.path.join("confusion_matrix.png")
    }
    /// The folder of the run's TensorBoard event log.
    pub fn tensorboard(&self) -> PathBuf {
        self.path.join(tensorboard::FOLDER)
    }
    /// Where `export` writes the TorchScript file unless told otherwise.
    pub fn export(&self) -> PathBuf {
        self.path.join("model.pt")
    }

    /// Takes the run's lock, held for as long as the returned value lives: an advisory lock
    /// (`flock`) on `<run>/.lock`, which the kernel releases when the process ends, however it
    /// ends, so a crash never leaves it stuck. A second trainer of the folder is refused.
    pub fn lock(&self) -> Result<RunLock> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let path = self.path.join(".lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the run's lock file {}", path.display()))?;
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "{} is being trained by another process ({}): let it finish, or stop it (it checkpoints on Ctrl-C) \
                 and continue with --resume",
                self.path.display(),
                holder.trim()
            );
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        file.set_len(0)?;
        write!(file, "pid {} on {}", std::process::id(), host.trim())?;
        Ok(RunLock { _file: file })
    }

    pub fn holds_run(&self) -> bool {
        self.metrics().exists() || self.last().exists() || self.config().exists()
    }

    /// The run's saved config (`config.json`).
    pub fn load_experiment(&self) -> Result<Experiment> {
        ensure!(self.config().is_file(), "{} is not a run folder: it has no config.json", self.path.display());
        Experiment::load(&self.config().to_string_lossy(), &[])
    }

    pub fn load_settings(&self) -> Result<RunSettings> {
        let path = self.settings();
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))
    }
}

/// Writes `path` so that a crash or a full disk leaves either the old file or the new one:
/// `fill` writes the whole content to a temporary file beside it, which is synced to disk and
/// renamed over `path`, then the folder is synced. On failure the temporary file is removed
/// and the error names `what` and `path`.
pub fn write_atomic(path: &Path, what: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path.file_name().with_context(|| format!("{what} path {} has no file name", path.display()))?;
    write_atomic_via(path, &path.with_file_name(format!("{}.tmp", name.to_string_lossy())), what, fill)
}

/// [`write_atomic`] through a temporary file the caller names (in the same folder), for files
/// whose readers would take `<name>.tmp` for one of theirs: TensorBoard reads every file whose
/// name contains `tfevents`, half-written or not.
pub fn write_atomic_via(path: &Path, tmp: &Path, what: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let result = fill(tmp).and_then(|()| {
        std::fs::File::open(tmp)?.sync_all()?;
        std::fs::rename(tmp, path)?;
        std::fs::File::open(folder)?.sync_all()?;
        Ok(())
    });
    result.map_err(|error| {
        let _ = std::fs::remove_file(tmp);
        anyhow::anyhow!("cannot write {what} {}: {error:#}", path.display())
    })
}

/// [`write_atomic`] of bytes already in memory.
pub fn write_bytes(path: &Path, what: &str, bytes: &[u8]) -> Result<()> {
    write_atomic(path, what, |tmp| Ok(std::fs::write(tmp, bytes)?))
}

/// What `resnext train` will do, resolved and checked before anything is written, so that a
/// failed start leaves existing results as they were.
pub struct RunPlan {
    pub experiment: Experiment,
    pub settings: RunSettings,
    pub dir: RunDir,
    /// Continue from the folder's last checkpoint.
    pub resume: bool,
    force: bool,
}

impl RunPlan {
    /// Resolves the config (the saved one on --resume) and checks that the run folder may be
    /// used.
    pub fn new(args: &TrainArgs) -> Result<Self> {
        let loaded = Experiment::load(&args.experiment.experiment, &args.experiment.set)?;
        let dir = RunDir::new(args.out.clone().unwrap_or_else(|| Path::new("results").join(&loaded.name)));
        let edit = |mut experiment: Experiment| {
            if let Some(seed) = args.seed {
                experiment.seed = seed;
            }
            if let Some(precision) = args.compute.precision {
                experiment.precision = precision;
            }
            experiment
        };
        let (mut experiment, settings) = if args.resume && dir.config().exists() {
            // The saved config is the run's; the same --set, --seed and --precision as before
            // are welcome (scripts rerun their commands), changes are not.
            let saved = dir.load_experiment()?;
            let edited = edit(Experiment::from_json(&saved.to_pretty_json(), &args.experiment.set)?);
            ensure!(
                edited == saved,
                "--resume continues {} with its saved config: --set, --seed and --precision cannot change it",
                dir.path().display()
            );
            (saved, dir.load_settings()?)
        } else {
            ensure!(
                !dir.holds_run() || args.force,
                "{} already holds a run: pass --resume to continue it or --force to start it again",
                dir.path().display()
            );
            (edit(loaded), RunSettings { train_limit: args.train_limit, test_limit: args.test_limit })
        };
        if let Some(epochs) = args.epochs {
            ensure!(epochs > 0, "--epochs must be at least 1");
            experiment.epochs = epochs;
        }
        if dir.path().exists() {
            ensure!(dir.path().is_dir(), "--out {}: exists and is not a folder", dir.path().display());
        }
        let resume = args.resume && dir.last().exists();
        Ok(RunPlan { experiment, settings, dir, resume, force: args.force })
    }

    /// Creates the run folder and takes its lock, then (clearing an old run with --force)
    /// records the resolved config, the data settings and the command line. The run is this
    /// process's for as long as the returned lock lives.
    pub fn record(&self) -> Result<RunLock> {
        let dir = &self.dir;
        std::fs::create_dir_all(dir.path())
            .with_context(|| format!("cannot create the run folder {}", dir.path().display()))?;
        let lock = dir.lock()?;
        if self.force {
            for file in [dir.metrics(), dir.last(), dir.best()] {
                if file.exists() {
                    std::fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
                }
            }
        }
        write_bytes(&dir.config(), "the run's config", self.experiment.to_pretty_json().as_bytes())?;
        write_bytes(&dir.settings(), "the run's settings", serde_json::to_string_pretty(&self.settings)?.as_bytes())?;
        let mut commands = std::fs::read_to_string(dir.commands()).unwrap_or_default();
        commands.push_str(&std::env::args().collect::<Vec<_>>().join(" "));
        commands.push('\n');
        write_bytes(&dir.commands(), "the command log", commands.as_bytes())?;
        Ok(lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_atomic_write_keeps_the_old_file_removes_its_temporary_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        write_bytes(&path, "checkpoint", b"old").unwrap();
        let error = write_atomic(&path, "checkpoint", |tmp| {
            std::fs::write(tmp, b"half of the new")?;
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC).into())
        })
        .unwrap_err();
        let message = format!("{error:#}");
        assert!(message.starts_with("cannot write checkpoint ") && message.contains("last.safetensors"), "{message}");
        assert!(message.contains("No space left on device"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["last.safetensors"], "the temporary file is gone");
        write_bytes(&path, "checkpoint", b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
