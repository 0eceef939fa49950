//! The training record: what the loop remembers between steps ([`TrainState`], the loop's own) and
//! the files that keep it, handed the state whenever they save it, written in one order at the end
//! of every epoch: the best weights, then the checkpoint (`last.safetensors`, the truth), then the
//! epoch's row in metrics.csv, then its points in the TensorBoard event log. Every start rewrites
//! the CSV and the event log from the checkpoint's history, so a crash between any two writes loses
//! nothing (a redone epoch reproduces the same weights), and nothing written after the checkpoint
//! survives a resume.
use crate::clock;
use crate::config::Experiment;
use crate::runs::checkpoint::{Checkpoint, EMA, MODEL, VELOCITY};
use crate::runs::event_log::{EventLog, StepScalars};
use crate::runs::metrics::{self, EpochRow};
use crate::runs::run_dir::RunDir;
use crate::train::learner::Learner;
use crate::train::schedule::LrRule;
use crate::train::step_stats::EpochSums;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What the training loop remembers between steps; the state of every `last.safetensors`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch in progress (0-based), or the next one at an epoch boundary.
    pub epoch: usize,
    /// Steps of `epoch` already done (non-zero only after an interruption).
    pub step: usize,
    pub partial: EpochSums,
    pub lr_rule: LrRule,
    pub best_val_accuracy: Option<f64>,
    pub history: Vec<EpochRow>,
    /// When each epoch of `history` was recorded (Unix seconds), for the TensorBoard log.
    pub wall_times: Vec<f64>,
    /// The per-step scalars logged so far (config `tensorboard_steps`).
    pub step_scalars: Vec<StepScalars>,
}

impl TrainState {
    /// The state before the first step of `experiment`.
    pub fn new(experiment: &Experiment) -> Self {
        TrainState {
            epoch: 0,
            step: 0,
            partial: EpochSums::default(),
            lr_rule: LrRule::new(experiment.lr_schedule.clone(), experiment.warmup.clone(), experiment.optimizer.lr),
            best_val_accuracy: None,
            history: vec![],
            wall_times: vec![],
            step_scalars: vec![],
        }
    }

    /// Loads a run's `last.safetensors` into the learner and returns its state.
    pub fn restore(dir: &RunDir, learner: &mut Learner) -> Result<Self> {
        let path = dir.last();
        let checkpoint = Checkpoint::load(&path)?;
        checkpoint.restore(&learner.network.vs, MODEL, &path)?;
        for (name, velocity) in learner.sgd.velocities_mut() {
            let key = format!("{VELOCITY}{name}");
            let saved =
                checkpoint.tensors.get(&key).with_context(|| format!("checkpoint {} has no {key}", path.display()))?;
            ensure!(saved.size() == velocity.size(), "checkpoint {}: {key} has the wrong shape", path.display());
            tch::no_grad(|| velocity.copy_(saved));
        }
        if let Some(ema) = &learner.ema {
            checkpoint.restore(&ema.network().vs, EMA, &path)?;
        }
        let state: TrainState = serde_json::from_value(checkpoint.state)
            .with_context(|| format!("checkpoint {}: training state is malformed", path.display()))?;
        ensure!(
            state.wall_times.len() == state.history.len(),
            "checkpoint {}: training state has {} epochs but {} wall times",
            path.display(),
            state.history.len(),
            state.wall_times.len()
        );
        Ok(state)
    }
}

/// A run's training record, open for the epochs to come: its files.
pub struct Record<'a> {
    dir: &'a RunDir,
    events: EventLog,
    test_columns: bool,
}

impl<'a> Record<'a> {
    /// Makes the run folder's CSV and event log say what `state` says: a resumed run's CSV is
    /// rewritten from its checkpoint's history, and so is one left by a run whose checkpoint is
    /// gone (a new run's is left to its first epoch; its header has the test columns when
    /// `test_columns`); the event log is always rewritten.
    pub fn open(dir: &'a RunDir, state: &TrainState, resumed: bool, test_columns: bool) -> Result<Self> {
        if resumed || dir.metrics().exists() {
            metrics::rewrite(&dir.metrics(), &state.history, test_columns)?;
        }
        let events = EventLog::rewrite(&dir.tensorboard(), &state.history, &state.wall_times, &state.step_scalars)?;
        Ok(Record { dir, events, test_columns })
    }

    /// The run's checkpoint, which every error that stops training names as what is kept.
    pub fn last_checkpoint(&self) -> std::path::PathBuf {
        self.dir.last()
    }

    /// Logs step scalars to the event log, and keeps them in `state` for the next rewrite.
    pub fn log_steps(&mut self, state: &mut TrainState, steps: Vec<StepScalars>) -> Result<()> {
        self.events.append_steps(&steps)?;
        state.step_scalars.extend(steps);
        Ok(())
    }

    /// Ends the epoch `row` describes: `state` moves to the next epoch, then the best weights
    /// (when `row` is the best so far), the checkpoint, the CSV row and the event log's points
    /// are written, in that order.
    pub fn end_epoch(
        &mut self,
        state: &mut TrainState,
        learner: &Learner,
        experiment: &Experiment,
        row: &EpochRow,
    ) -> Result<()> {
        let is_best = state.best_val_accuracy.is_none_or(|best| row.val_accuracy > best);
        let wall_time = clock::unix_seconds();
        state.history.push(row.clone());
        state.wall_times.push(wall_time);
        (state.epoch, state.step, state.partial) = (state.epoch + 1, 0, EpochSums::default());
        if is_best {
            state.best_val_accuracy = Some(row.val_accuracy);
            save_best(&self.dir.best(), learner, experiment, row)?;
        }
        save_training(&self.dir.last(), state, learner)?;
        metrics::append(&self.dir.metrics(), row, self.test_columns)?;
        self.events.append_epoch(row, wall_time)
    }

    /// Checkpoints a run stopped after `step` steps of its epoch, whose sums so far are `sums`.
    pub fn interrupt(&mut self, state: &mut TrainState, learner: &Learner, sums: EpochSums, step: usize) -> Result<()> {
        (state.partial, state.step) = (sums, step);
        save_training(&self.dir.last(), state, learner)
    }
}

/// Writes the training state: weights, BN statistics, velocities, the weight average and
/// `state`.
fn save_training(path: &Path, state: &TrainState, learner: &Learner) -> Result<()> {
    let mut tensors = Checkpoint::tensors_of(&learner.network.vs, MODEL);
    for (name, velocity) in learner.sgd.velocities() {
        tensors.insert(format!("{VELOCITY}{name}"), velocity.shallow_clone());
    }
    if let Some(ema) = &learner.ema {
        tensors.extend(Checkpoint::tensors_of(&ema.network().vs, EMA));
    }
    let had_one = path.exists();
    Checkpoint { tensors, state: serde_json::to_value(state)? }.save(path).map_err(|error| {
        let hint = if had_one { "the previous checkpoint is intact" } else { "no checkpoint was kept" };
        anyhow::anyhow!("{error:#}; {hint}: free space and run again with --resume")
    })
}

/// Writes the weights of the epoch `row` as the run's best: those it was evaluated with (the
/// average, when the recipe has one).
fn save_best(path: &Path, learner: &Learner, experiment: &Experiment, row: &EpochRow) -> Result<()> {
    let state =
        serde_json::json!({"epoch": row.epoch, "val_accuracy": row.val_accuracy, "experiment": experiment.name});
    Checkpoint { tensors: Checkpoint::tensors_of(&learner.inference_network().vs, MODEL), state }.save(path)
}
