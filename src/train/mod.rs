//! `resnext train`: the blog's recipe, epoch by epoch.
//!
//! Each epoch: the epoch rules set the lr (step schedule) -> for each of the epoch's steps, the
//! next batch of the stream of passes over the training images: the step's lr (per-step rules,
//! warmup) -> SGD step and weight average -> tally its stats -> report progress (and step scalars)
//! -> (stop on Ctrl-C, with a checkpoint) -> evaluate on the validation data (the test set, as in
//! the blog, unless the config holds out training images) and, when it is not the test set, on the
//! test set as well -> let ReduceLROnPlateau see `val_loss` -> the epoch's record (best weights by
//! `val_accuracy`, checkpoint, CSV row, event log: [`record`]). The test set's own scores are
//! written down and read by nothing else. A pass's shuffle and augmentation come from (seed, pass)
//! alone ([`crate::train::batches`]), so a resumed run continues exactly as an uninterrupted one.
pub mod augment;
pub mod batches;
pub mod ema;
pub mod learner;
pub mod optim;
pub mod plan;
pub mod record;
pub mod schedule;
pub mod scoring;
pub mod step_stats;

pub use plan::{Seed, Start, TrainRequest};

use crate::clock;
use crate::compute::Compute;
use crate::config::Experiment;
use crate::data::{Cifar10, Split};
use crate::progress::EpochProgress;
use crate::runs::event_log::StepScalars;
use crate::runs::metrics::EpochRow;
use crate::train::batches::BatchStream;
use crate::train::learner::Learner;
use crate::train::schedule::Clock;
use crate::train::scoring::Scoring;
use crate::train::step_stats::EpochTally;
use anyhow::{bail, ensure, Context, Result};
use plan::RunPlan;
use record::{Record, TrainState};
use std::sync::atomic::{AtomicBool, Ordering};

/// How a run ended.
pub enum Outcome {
    Finished,
    Interrupted,
}

/// Steps between reading the step stats back (a host sync): every step on a CPU, where it costs
/// nothing; every 50 on CUDA, where each sync stalls the queue of GPU work.
pub fn default_sync_every(device: tch::Device) -> usize {
    if device.is_cuda() {
        50
    } else {
        1
    }
}

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C / SIGTERM ask the loop to stop after the current step and checkpoint.
fn install_stop_handler() {
    let _ = ctrlc::set_handler(|| {
        if STOP_REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: stopping after this step and writing a checkpoint (Ctrl-C again to quit at once)");
    });
}

fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

pub fn run(request: &TrainRequest) -> Result<Outcome> {
    // Everything that can fail on bad input (config, device, data, checkpoint) is checked
    // before the run folder is touched, so a failed start leaves existing results as they were.
    let plan = RunPlan::new(request)?;
    let (experiment, limits) = (&plan.experiment, &plan.limits);
    if plan.finished_without_checkpoint {
        println!(
            "{} is finished: its metrics.csv has all {} epochs (its checkpoints are not here); --force trains it again",
            plan.dir.path().display(),
            experiment.epochs
        );
        return Ok(Outcome::Finished);
    }
    let compute = Compute::new(&request.compute, experiment.precision)?;
    // The held-out images are the last of all 50,000: a split needs every training batch.
    let needed = if experiment.validation > 0 { None } else { limits.train_limit };
    let data = Cifar10::load(&request.data_dir, needed);
    let data = match experiment.validation {
        0 => data?,
        n => data.with_context(|| {
            format!("validation = {n} holds out the last training images: it needs all five batches, whatever --train-limit")
        })?,
    };
    let (train, held_out) =
        data.train.hold_out(experiment.validation, limits.train_limit).context("config field `validation`")?;
    let test = data.test.first(limits.test_limit.unwrap_or(usize::MAX)).to_device(compute.device);
    let train = train.to_device(compute.device);
    let splits = match held_out {
        Some(validation) => EvalSplits { validation: validation.to_device(compute.device), test: Some(test) },
        None => EvalSplits { validation: test, test: None },
    };
    let steps_per_epoch = experiment.steps_per_epoch(train.len());
    let fresh_rule = TrainState::new(experiment).lr_rule;
    (fresh_rule.check_length(steps_per_epoch, experiment.epochs))
        .with_context(|| format!("the config of experiment {}", experiment.name))?;
    let mut learner = Learner::new(experiment, &compute);
    let mut state = match plan.resume {
        true => TrainState::restore(&plan.dir, &mut learner)?,
        false => TrainState::new(experiment),
    };
    let _lock = plan.record(&format!("{}; {}", compute.machine(), compute.describe()))?;
    let mut record = Record::open(&plan.dir, &state, plan.resume, splits.test.is_some())?;
    if plan.resume {
        println!("resuming {} at epoch {} step {}", plan.dir.path().display(), state.epoch, state.step);
    }
    let scoring = Scoring::of(experiment, request.eval_batch, compute.device);
    let sync_every = request.sync_every.unwrap_or(default_sync_every(compute.device));
    println!(
        "training {} on {}, eval batch {}, sync every {sync_every} step(s): {} train / {} images, batch {}, \
         {} steps an epoch, epochs {}..{}, results in {}",
        experiment.name,
        compute.describe(),
        scoring.batch,
        train.len(),
        splits.describe(),
        experiment.batch_size,
        steps_per_epoch,
        state.epoch,
        experiment.epochs,
        plan.dir.path().display()
    );
    if let Some(note) = compute.cpu_precision_note() {
        println!("{note}");
    }
    install_stop_handler();
    let trainer = Trainer { experiment, splits: &splits, compute: &compute, scoring, sync_every, steps_per_epoch };
    let mut stream = BatchStream::new(experiment, &train, compute.device);
    while state.epoch < experiment.epochs {
        let end = trainer.train_epoch(&mut state, &mut record, &mut learner, &mut stream)?;
        // A stop asked for during evaluation takes effect here, at the epoch boundary.
        if matches!(end, EpochEnd::Interrupted) || (stop_requested() && state.epoch < experiment.epochs) {
            return Ok(Outcome::Interrupted);
        }
    }
    println!("done: {} epochs in {}", experiment.epochs, plan.dir.path().display());
    Ok(Outcome::Finished)
}

/// How an epoch ended.
enum EpochEnd {
    Completed,
    /// Stopped part-way by Ctrl-C or SIGTERM, with a checkpoint.
    Interrupted,
}

/// The images each epoch is evaluated on.
struct EvalSplits {
    /// What `val_*`, ReduceLROnPlateau and the best checkpoint follow: the held-out training
    /// images, or the test set when the run holds none out.
    validation: Split,
    /// The test set, when it is not the validation data: the CSV's `test_*` (after the epochs
    /// of config `test_every`), read by nothing in training.
    test: Option<Split>,
}

impl EvalSplits {
    fn describe(&self) -> String {
        match &self.test {
            Some(test) => {
                format!("{} validation (the last {0} training images) / {} test", self.validation.len(), test.len())
            }
            None => format!("{} test", self.validation.len()),
        }
    }
}

struct Trainer<'a> {
    experiment: &'a Experiment,
    splits: &'a EvalSplits,
    compute: &'a Compute,
    scoring: Scoring,
    sync_every: usize,
    steps_per_epoch: usize,
}

impl Trainer<'_> {
    /// Trains one epoch (or its rest, after a mid-epoch resume), evaluates and records it.
    fn train_epoch(
        &self,
        state: &mut TrainState,
        record: &mut Record,
        learner: &mut Learner,
        stream: &mut BatchStream,
    ) -> Result<EpochEnd> {
        let (epoch, steps) = (state.epoch, self.steps_per_epoch);
        state.lr_rule.start_epoch(epoch);
        let clock = |step| Clock { epoch, step, steps_per_epoch: steps, epochs: self.experiment.epochs };
        let mut tally = EpochTally::new(steps, state.step, &state.partial, learner.sgd.l2(), self.compute.device);
        let label = format!("epoch {}/{}", epoch + 1, self.experiment.epochs);
        let progress = EpochProgress::new(label, steps, state.step);
        for step in state.step..steps {
            let (images, labels) = stream.batch(clock(step).global());
            let lr = state.lr_rule.lr(clock(step));
            let stats = learner.step(&images, &labels, lr, clock(step).global(), self.compute);
            tally.record(step, stats);
            let done = step + 1;
            let stop = stop_requested() && done < steps;
            if done % self.sync_every == 0 || done == steps || stop {
                self.sync(&mut tally, stream, clock, state, record, done)?;
                progress.update(done, &tally.progress_message());
            }
            if stop {
                record.interrupt(state, learner, tally.sums().clone(), done)?;
                progress.finish(&format!(
                    "interrupted at epoch {epoch} step {done}: checkpoint {} written; continue with --resume",
                    record.last_checkpoint().display()
                ));
                return Ok(EpochEnd::Interrupted);
            }
        }
        self.sync(&mut tally, stream, clock, state, record, steps)?;
        // The CSV's lr is the one at the epoch's start, as Keras's logs have it.
        let row = self.evaluate_epoch(state, learner, &tally, state.lr_rule.lr(clock(0)));
        ensure!(
            row.val_loss.is_finite(),
            "epoch {epoch}: validation loss is {}; the last good checkpoint {} is kept",
            row.val_loss,
            record.last_checkpoint().display()
        );
        let lr_changed = state.lr_rule.on_epoch_end(row.val_loss);
        record.end_epoch(state, learner, self.experiment, &row)?;
        let new_lr = if lr_changed { format!(" -> {:.3e}", state.lr_rule.lr) } else { String::new() };
        let test = match row.test_accuracy {
            Some(accuracy) => format!(" test_accuracy {accuracy:.4}"),
            None => String::new(),
        };
        progress.finish(&format!(
            "epoch {}/{}: loss {:.4} accuracy {:.4} val_loss {:.4} val_accuracy {:.4}{test} lr {:.3e}{new_lr} ({:.1}s, {:.0} img/s)",
            epoch + 1,
            self.experiment.epochs,
            row.loss,
            row.accuracy,
            row.val_loss,
            row.val_accuracy,
            row.lr,
            row.epoch_seconds,
            row.images_per_second
        ));
        Ok(EpochEnd::Completed)
    }

    /// Reads the steps before `done` back from the device (see [`EpochTally::sync`]) and logs
    /// the step scalars the recipe asks for; stops the run, naming the step, when a loss is not
    /// finite.
    fn sync(
        &self,
        tally: &mut EpochTally,
        stream: &BatchStream,
        clock: impl Fn(usize) -> Clock,
        state: &mut TrainState,
        record: &mut Record,
        done: usize,
    ) -> Result<()> {
        let losses = tally.sync(done, |step| stream.batch_len(clock(step).global())).or_else(|bad| {
            bail!(
                "training diverged: the loss is not finite at epoch {} step {bad} (lr too high?); \
                 the last good checkpoint {} is kept",
                state.epoch,
                record.last_checkpoint().display()
            )
        })?;
        let every = self.experiment.tensorboard_steps;
        if every == 0 {
            return Ok(());
        }
        let wall_time = clock::unix_seconds();
        let rule = &state.lr_rule;
        let logged: Vec<StepScalars> = losses
            .into_iter()
            .map(|(step, loss)| (clock(step), loss))
            .filter(|(at, _)| at.global() % every == 0)
            .map(|(at, loss)| StepScalars { step: at.global() as u64, loss, lr: rule.lr(at), wall_time })
            .collect();
        record.log_steps(state, logged)
    }

    /// The epoch's CSV row: training sums plus a pass over the validation data (and the test
    /// set, when that is not the validation data and the epoch is one it is measured after)
    /// with the weights inference uses. Keras's
    /// `val_loss` is the validation loss (label-smoothed when the recipe smooths) plus the L2
    /// penalty of those weights; `test_loss` is the same on the test set.
    fn evaluate_epoch(&self, state: &TrainState, learner: &Learner, tally: &EpochTally, lr: f64) -> EpochRow {
        let network = learner.inference_network();
        let l2 = self.experiment.optimizer.l2;
        let scores = scoring::score(network, &self.splits.validation, self.compute, self.scoring);
        let test = (self.splits.test.as_ref())
            .filter(|_| self.experiment.tests_after(state.epoch))
            .map(|test| scoring::score(network, test, self.compute, self.scoring));
        let sums = tally.sums();
        let n = sums.seen as f64;
        EpochRow {
            epoch: state.epoch,
            loss: sums.loss / n,
            accuracy: sums.correct / n,
            val_loss: scores.keras_loss(network, l2),
            val_accuracy: scores.accuracy,
            lr,
            ce_loss: sums.ce / n,
            val_ce_loss: scores.ce,
            // Training and the evaluation that just ran.
            epoch_seconds: state.partial.seconds + tally.seconds(),
            images_per_second: n / sums.seconds,
            test_loss: test.as_ref().map(|test| test.keras_loss(network, l2)),
            test_accuracy: test.map(|test| test.accuracy),
        }
    }
}
