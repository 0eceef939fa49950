//! The training loop: the blog's recipe, epoch by epoch.
//!
//! Each epoch: the epoch rules set the lr (step schedule) -> for every batch of the epoch's
//! plan: the step's lr (per-step rules, warmup) -> SGD step and weight average -> record its
//! losses -> report progress (and step scalars) -> (stop on Ctrl-C, with a checkpoint) ->
//! evaluate on the test set -> let ReduceLROnPlateau see `val_loss` -> best weights and
//! checkpoint -> the epoch's row in metrics.csv and in the TensorBoard log. An epoch's shuffle
//! and augmentation come from (seed, epoch) alone (`batches`), so a resumed run continues
//! exactly as an uninterrupted one.
use crate::batches::EpochPlan;
use crate::checkpoint::{self, EpochSums, TrainState};
use crate::cli::TrainArgs;
use crate::config::Experiment;
use crate::data::{self, Cifar10, Split};
use crate::learner::Learner;
use crate::metrics::{self, EpochRow};
use crate::network::evaluate;
use crate::optim;
use crate::progress::EpochProgress;
use crate::run_dir::{RunDir, RunPlan};
use crate::runtime::Compute;
use crate::schedule::Clock;
use crate::step_log::StepLog;
use crate::tensorboard::{self, EventLog, StepScalars};
use anyhow::{bail, ensure, Result};
use std::sync::atomic::{AtomicBool, Ordering};

pub enum Outcome {
    Finished,
    Interrupted,
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

pub fn run(args: &TrainArgs) -> Result<Outcome> {
    // Everything that can fail on bad input (config, device, data, checkpoint) is checked
    // before the run folder is touched, so a failed start leaves existing results as they were.
    let plan = RunPlan::new(args)?;
    let (experiment, settings) = (&plan.experiment, &plan.settings);
    let compute = Compute::new(&args.compute, experiment.precision, args.eval_batch.eval_batch, args.sync_every)?;
    let data = Cifar10::load(&data::resolve_dir(args.data.data_dir.as_deref()))?;
    let train = data.train.first(settings.train_limit.unwrap_or(usize::MAX)).to_device(compute.device);
    let test = data.test.first(settings.test_limit.unwrap_or(usize::MAX)).to_device(compute.device);
    let mut learner = Learner::new(experiment, &compute);
    let mut state = match plan.resume {
        true => checkpoint::restore_training(&plan.dir.last(), &mut learner)?,
        false => TrainState::new(experiment),
    };
    let _lock = plan.record()?;
    // The checkpoint is the truth: the CSV and the event log say what it says, nothing written
    // after it (or half-written) survives a resume, and nothing of an old run a --force.
    if plan.resume {
        metrics::rewrite(&plan.dir.metrics(), &state.history)?;
        println!("resuming {} at epoch {} step {}", plan.dir.path().display(), state.epoch, state.step);
    }
    let mut events =
        EventLog::rewrite(&plan.dir.tensorboard(), &state.history, &state.epoch_wall_times(), &state.step_scalars)?;
    println!(
        "training {} on {}: {} train / {} test images, batch {}, epochs {}..{}, results in {}",
        experiment.name,
        compute.describe(),
        train.len(),
        test.len(),
        experiment.batch_size,
        state.epoch,
        experiment.epochs,
        plan.dir.path().display()
    );
    if let Some(note) = compute.cpu_precision_note() {
        println!("{note}");
    }
    install_stop_handler();
    let trainer = Trainer { experiment, train: &train, test: &test, dir: &plan.dir, compute: &compute };
    while state.epoch < experiment.epochs {
        let outcome = trainer.train_epoch(&mut state, &mut learner, &mut events)?;
        // A stop asked for during evaluation takes effect here, at the epoch boundary.
        if matches!(outcome, Outcome::Interrupted) || (stop_requested() && state.epoch < experiment.epochs) {
            return Ok(Outcome::Interrupted);
        }
    }
    println!("done: {} epochs in {}", experiment.epochs, plan.dir.path().display());
    Ok(Outcome::Finished)
}

struct Trainer<'a> {
    experiment: &'a Experiment,
    train: &'a Split,
    test: &'a Split,
    dir: &'a RunDir,
    compute: &'a Compute,
}

impl Trainer<'_> {
    /// Trains one epoch (or its rest, after a mid-epoch resume), evaluates and checkpoints.
    fn train_epoch(&self, state: &mut TrainState, learner: &mut Learner, events: &mut EventLog) -> Result<Outcome> {
        let epoch = state.epoch;
        state.lr_rule.lr_for_epoch(epoch);
        let plan = EpochPlan::new(self.experiment, epoch, self.train.len(), self.compute.device);
        let clock = |step| Clock { epoch, step, steps_per_epoch: plan.steps, epochs: self.experiment.epochs };
        let mut log = StepLog::new(&plan, state.step, &state.partial, learner.sgd.l2(), self.compute.device);
        let label = format!("epoch {}/{}", epoch + 1, self.experiment.epochs);
        let progress = EpochProgress::new(label, plan.steps, state.step);
        for step in state.step..plan.steps {
            let (images, labels) = plan.batch(step, self.train);
            let lr = state.lr_rule.lr(clock(step));
            let stats = learner.step(&images, &labels, lr, clock(step).global(), self.compute);
            log.record(step, &stats);
            let done = step + 1;
            let stop = stop_requested() && done < plan.steps;
            if done % self.compute.sync_every == 0 || done == plan.steps || stop {
                self.sync(&mut log, &plan, clock, state, events, done)?;
                progress.update(done, &log.progress_message());
            }
            if stop {
                (state.partial, state.step) = (log.sums().clone(), done);
                checkpoint::save_training(&self.dir.last(), state, learner)?;
                let last = self.dir.last();
                progress.finish(&format!(
                    "interrupted at epoch {epoch} step {done}: checkpoint {} written; continue with --resume",
                    last.display()
                ));
                return Ok(Outcome::Interrupted);
            }
        }
        self.sync(&mut log, &plan, clock, state, events, plan.steps)?;
        let sums = log.sums().clone();
        // The CSV's lr is the one at the epoch's start, as Keras's logs have it.
        let row = self.evaluate_epoch(state, learner, &log, &sums, state.lr_rule.lr(clock(0)));
        let last = self.dir.last();
        ensure!(
            row.val_loss.is_finite(),
            "epoch {epoch}: validation loss is {}; the last good checkpoint {} is kept",
            row.val_loss,
            last.display()
        );
        let lr_changed = state.lr_rule.on_epoch_end(row.val_loss);
        self.record_epoch(state, learner, events, &row)?;
        let new_lr = if lr_changed { format!(" -> {:.3e}", state.lr_rule.lr) } else { String::new() };
        progress.finish(&format!(
            "epoch {}/{}: loss {:.4} accuracy {:.4} val_loss {:.4} val_accuracy {:.4} lr {:.3e}{new_lr} ({:.1}s, {:.0} img/s)",
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
        Ok(Outcome::Finished)
    }

    /// Reads the steps before `done` back from the device (see [`StepLog::sync`]) and logs the
    /// step scalars the recipe asks for; stops the run, naming the step, when a loss is not
    /// finite.
    fn sync(
        &self,
        log: &mut StepLog,
        plan: &EpochPlan,
        clock: impl Fn(usize) -> Clock,
        state: &mut TrainState,
        events: &mut EventLog,
        done: usize,
    ) -> Result<()> {
        let losses = log.sync(plan, done).or_else(|bad| {
            bail!(
                "training diverged: the loss is not finite at epoch {} step {bad} (lr too high?); \
                 the last good checkpoint {} is kept",
                state.epoch,
                self.dir.last().display()
            )
        })?;
        let every = self.experiment.tensorboard_steps;
        if every == 0 {
            return Ok(());
        }
        let wall_time = tensorboard::now();
        let logged: Vec<StepScalars> = losses
            .into_iter()
            .map(|(step, loss)| (clock(step), loss))
            .filter(|(at, _)| at.global() % every == 0)
            .map(|(at, loss)| StepScalars { step: at.global() as u64, loss, lr: state.lr_rule.lr(at), wall_time })
            .collect();
        events.append_steps(&logged)?;
        state.step_scalars.extend(logged);
        Ok(())
    }

    /// The epoch's CSV row: training sums plus a pass over the test set with the weights
    /// inference uses. Keras's `val_loss` is the test loss (label-smoothed when the recipe
    /// smooths) plus the L2 penalty of those weights.
    fn evaluate_epoch(
        &self,
        state: &TrainState,
        learner: &Learner,
        log: &StepLog,
        sums: &EpochSums,
        lr: f64,
    ) -> EpochRow {
        let (experiment, network) = (self.experiment, learner.inference_network());
        let scores = evaluate(network, self.test, self.compute, experiment.test_time_flip, experiment.label_smoothing);
        let squares = f64::try_from(optim::kernel_sum_of_squares(&network.kernels())).unwrap_or(f64::NAN);
        let n = sums.seen as f64;
        EpochRow {
            epoch: state.epoch,
            loss: sums.loss / n,
            accuracy: sums.correct / n,
            val_loss: scores.smoothed_ce + experiment.optimizer.l2 * squares,
            val_accuracy: scores.accuracy,
            lr,
            ce_loss: sums.ce / n,
            val_ce_loss: scores.ce,
            // Training and the evaluation that just ran.
            epoch_seconds: state.partial.seconds + log.seconds(),
            images_per_second: n / sums.seconds,
        }
    }

    /// Moves the state to the next epoch and writes best weights, then the checkpoint, then
    /// the CSV row and the event log's. On resume both are rebuilt from the checkpoint's
    /// history, so a crash between any two of these loses nothing (a redone epoch reproduces
    /// the same weights).
    fn record_epoch(
        &self,
        state: &mut TrainState,
        learner: &Learner,
        events: &mut EventLog,
        row: &EpochRow,
    ) -> Result<()> {
        let is_best = state.best_val_accuracy.is_none_or(|best| row.val_accuracy > best);
        let wall_time = tensorboard::now();
        state.history.push(row.clone());
        state.wall_times.push(wall_time);
        (state.epoch, state.step, state.partial) = (state.epoch + 1, 0, EpochSums::default());
        if is_best {
            state.best_val_accuracy = Some(row.val_accuracy);
            checkpoint::save_best(&self.dir.best(), learner, self.experiment, row)?;
        }
        checkpoint::save_training(&self.dir.last(), state, learner)?;
        metrics::append(&self.dir.metrics(), row)?;
        events.append_epoch(row, wall_time)
    }
}
