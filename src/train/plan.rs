//! What `resnext train` will do, resolved and checked before anything is written, so that a
//! failed start leaves existing results as they were: the config (the saved one on --resume),
//! the data limits, the run folder and whether the run continues.
use crate::compute::ComputeRequest;
use crate::config::Experiment;
use crate::runs::metrics;
use crate::runs::run_dir::{DataLimits, RunDir};
use crate::runs::run_lock::RunLock;
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// What `resnext train` is asked to do.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The experiment, its `--set` edits applied (a resumed run checks them against its saved
    /// config).
    pub experiment: Experiment,
    /// The `--set key=value` edits.
    pub overrides: Vec<String>,
    pub epochs: Option<usize>,
    pub limits: DataLimits,
    /// The run folder [default: results/<experiment>].
    pub out: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub compute: ComputeRequest,
    /// Images per evaluation batch [default: [`crate::train::scoring::default_batch`]].
    pub eval_batch: Option<usize>,
    /// Read the step stats back every this many steps [default: [`super::default_sync_every`]].
    pub sync_every: Option<usize>,
    pub seed: Seed,
    pub start: Start,
}

/// Which seed a run trains with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    /// The config's `seed`.
    FromConfig,
    /// This one (`--seed`).
    Exactly(u64),
    /// Run k of the experiment: [`Experiment::repeat_seed`] (`--repeat`).
    Repeat(u64),
}

/// How a run folder that may hold a run is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new run: an existing one is refused.
    New,
    /// Continue the run after its last checkpoint (or start it).
    Resume,
    /// Start again, deleting the old run's metrics and checkpoints.
    Force,
}

/// The request, resolved.
pub struct RunPlan {
    pub experiment: Experiment,
    pub limits: DataLimits,
    pub dir: RunDir,
    /// Continue from the folder's last checkpoint.
    pub resume: bool,
    /// `--resume` of a run whose metrics.csv has every epoch but whose checkpoints are not
    /// there (a run copied without them, such as the repository's own study runs): nothing to do.
    pub finished_without_checkpoint: bool,
    force: bool,
}

impl RunPlan {
    /// Resolves the config and checks that the run folder may be used.
    pub fn new(request: &TrainRequest) -> Result<Self> {
        let loaded = request.experiment.clone();
        let dir = RunDir::new(request.out.clone().unwrap_or_else(|| Path::new("results").join(&loaded.name)));
        // A repeat's seed counts from the config's, also when a resume checks the saved one.
        let seed = match request.seed {
            Seed::FromConfig => None,
            Seed::Exactly(seed) => Some(seed),
            Seed::Repeat(k) => Some(loaded.repeat_seed(k)),
        };
        let edit = |mut experiment: Experiment| {
            if let Some(seed) = seed {
                experiment.seed = seed;
            }
            experiment.precision = request.compute.precision_for(&experiment);
            experiment
        };
        let resuming = request.start == Start::Resume;
        let (mut experiment, limits) = if resuming && dir.config().exists() {
            // The saved config is the run's; the same --set, --seed, --repeat and --precision as
            // before are welcome (scripts rerun their commands), changes are not.
            let saved = dir.load_experiment()?;
            let edited = edit(Experiment::from_json(&saved.to_pretty_json(), &request.overrides)?);
            ensure!(
                edited == saved,
                "--resume continues {} with its saved config: --set, --seed, --repeat and --precision cannot change it",
                dir.path().display()
            );
            (saved, dir.load_limits()?)
        } else {
            ensure!(
                !dir.holds_run() || request.start == Start::Force,
                "{} already holds a run: pass --resume to continue it or --force to start it again",
                dir.path().display()
            );
            (edit(loaded), request.limits.clone())
        };
        if let Some(epochs) = request.epochs {
            ensure!(epochs > 0, "--epochs must be at least 1");
            experiment.epochs = epochs;
        }
        if dir.path().exists() {
            ensure!(dir.path().is_dir(), "--out {}: exists and is not a folder", dir.path().display());
        }
        let resume = resuming && dir.last().exists();
        let finished_without_checkpoint =
            resuming && !resume && dir.metrics().is_file() && metrics::read(&dir.metrics())?.len() >= experiment.epochs;
        Ok(RunPlan {
            experiment,
            limits,
            dir,
            resume,
            finished_without_checkpoint,
            force: request.start == Start::Force,
        })
    }

    /// Creates the run folder and takes its lock, then (clearing an old run with --force)
    /// records the resolved config, the data limits, the command line and `hardware`. The run is
    /// this process's for as long as the returned lock lives.
    pub fn record(&self, hardware: &str) -> Result<RunLock> {
        let dir = &self.dir;
        std::fs::create_dir_all(dir.path())
            .with_context(|| format!("cannot create the run folder {}", dir.path().display()))?;
        let lock = dir.lock()?;
        if self.force {
            dir.clear_training()?;
        }
        dir.record_start(&self.experiment, &self.limits, hardware)?;
        Ok(lock)
    }
}
