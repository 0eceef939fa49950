//! The training loop: the blog's recipe, epoch by epoch.
//!
//! Each epoch: set the lr (step schedule) -> reshuffle and draw every image's augmentation
//! from (seed, epoch) -> SGD steps of `batch_size` (the last batch is smaller, not dropped)
//! -> evaluate on the test set -> let ReduceLROnPlateau see `val_loss` -> checkpoint, then
//! append the epoch's row to metrics.csv. Because an epoch's randomness depends only on the
//! seed and the epoch number, a resumed run continues exactly as an uninterrupted one.
use crate::augment::{self, Transforms};
use crate::checkpoint::Checkpoint;
use crate::config::Experiment;
use crate::data::{self, Cifar10, Split};
use crate::metrics::{self, EpochRow};
use crate::network::{eval_batch_size, evaluate, Network};
use crate::optim::Sgd;
use crate::progress::EpochProgress;
use crate::run_dir::{write_file, RunDir, RunSettings};
use crate::runtime;
use crate::schedule::LrRule;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// Everything `resnext train` takes from the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrainArgs {
    /// A config name from experiments/ (e.g. my_resnext) or a path to a JSON config.
    pub experiment: String,
    /// Number of epochs (overrides the config's `epochs`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Train on the first N training images only (quick runs).
    #[arg(long, value_name = "N")]
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test images only (quick runs).
    #[arg(long, value_name = "N")]
    pub test_limit: Option<usize>,
    /// Run folder for metrics.csv, checkpoints and the saved config [default: results/<experiment>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// CIFAR-10 binary folder (default: $CIFAR10_DIR, else data/cifar-10-batches-bin).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seed for weights, shuffles and augmentation (overrides the config's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue the run in the run folder after its last checkpoint (starts it if there is none).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Start again, deleting the run folder's metrics and checkpoints.
    #[arg(long)]
    pub force: bool,
    /// Override any config field, e.g. --set lr_schedule.patience=2 (repeatable; recorded in config.json).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// CUDA only: run the forward pass under bf16 autocast (faster, not what Keras did).
    #[arg(long)]
    pub amp: bool,
}

/// What the loop remembers between steps; saved in every checkpoint.
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
}

/// Running sums over the steps of the epoch in progress.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EpochSums {
    pub loss: f64,
    pub ce: f64,
    pub correct: f64,
    pub seen: usize,
    pub seconds: f64,
}

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

/// One SGD step on a batch of normalised images: forward (optionally under bf16 autocast),
/// cross-entropy on the logits, backward, update. Returns the batch's mean cross-entropy and
/// the logits, both detached.
pub fn train_step(
    network: &Network,
    sgd: &mut Sgd,
    images: &Tensor,
    labels: &Tensor,
    lr: f64,
    amp: bool,
) -> (Tensor, Tensor) {
    let logits = tch::autocast(amp, || network.forward_t(images, true)).to_kind(Kind::Float);
    let ce = logits.cross_entropy_for_logits(labels);
    sgd.zero_grad();
    ce.backward();
    sgd.step(lr);
    (ce.detach(), logits.detach())
}

pub fn run(args: &TrainArgs) -> Result<Outcome> {
    // Everything that can fail on bad input (config, device, data, checkpoint) is checked
    // before the run folder is touched, so a failed start leaves existing results as they were.
    let (experiment, settings, run_dir) = plan_run(args)?;
    let device = runtime::parse_device(&args.device)?;
    runtime::check_amp(settings.amp, device)?;
    let data_dir = data::resolve_dir(args.data_dir.as_deref());
    let data = Cifar10::load(&data_dir)?;
    let train = data.train.first(settings.train_limit.unwrap_or(usize::MAX)).to_device(device);
    let test = data.test.first(settings.test_limit.unwrap_or(usize::MAX)).to_device(device);

    let network = Network::new(&experiment, device, experiment.seed);
    let mut sgd = Sgd::new(&network.vs, experiment.optimizer.momentum, experiment.optimizer.l2);
    let mut state = TrainState {
        epoch: 0,
        step: 0,
        partial: EpochSums::default(),
        lr_rule: LrRule::new(experiment.lr_schedule.clone(), experiment.optimizer.lr),
        best_val_accuracy: None,
        history: vec![],
    };
    let resuming = args.resume && run_dir.last().exists();
    if resuming {
        state = restore(&run_dir.last(), &network.vs, &mut sgd)?;
    }
    record_run(args, &experiment, &settings, &run_dir)?;
    if resuming {
        // The checkpoint is the truth: drop any row written after it (or half-written).
        metrics::rewrite(&run_dir.metrics(), &state.history)?;
        println!("resuming {} at epoch {} step {}", run_dir.0.display(), state.epoch, state.step);
    }
    println!(
        "training {} on {:?}: {} train / {} test images, batch {}, epochs {}..{}, results in {}",
        experiment.name,
        device,
        train.len(),
        test.len(),
        experiment.batch_size,
        state.epoch,
        experiment.epochs,
        run_dir.0.display()
    );
    install_stop_handler();
    let trainer =
        Trainer { experiment: &experiment, network: &network, train: &train, test: &test, device, amp: settings.amp };
    while state.epoch < experiment.epochs {
        let outcome = trainer.train_epoch(&mut state, &mut sgd, &run_dir)?;
        // A stop asked for during evaluation takes effect here, at the epoch boundary.
        if matches!(outcome, Outcome::Interrupted)
            || (STOP_REQUESTED.load(Ordering::SeqCst) && state.epoch < experiment.epochs)
        {
            return Ok(Outcome::Interrupted);
        }
    }
    println!("done: {} epochs in {}", experiment.epochs, run_dir.0.display());
    Ok(Outcome::Finished)
}

/// Resolves the config (the saved one on --resume) and checks that the run folder may be
/// used, without writing anything.
fn plan_run(args: &TrainArgs) -> Result<(Experiment, RunSettings, RunDir)> {
    let mut experiment = Experiment::load(&args.experiment, &args.set)?;
    let run_dir = RunDir(args.out.clone().unwrap_or_else(|| Path::new("results").join(&experiment.name)));
    let mut settings = RunSettings { train_limit: args.train_limit, test_limit: args.test_limit, amp: args.amp };
    if args.resume && run_dir.config().exists() {
        ensure!(
            args.set.is_empty() && args.seed.is_none(),
            "--resume continues {} with its saved config: --set and --seed cannot change it",
            run_dir.0.display()
        );
        experiment = run_dir.load_experiment()?;
        settings = run_dir.load_settings()?;
    } else if run_dir.holds_run() && !args.force {
        bail!("{} already holds a run: pass --resume to continue it or --force to start it again", run_dir.0.display());
    }
    if let Some(seed) = args.seed {
        experiment.seed = seed;
    }
    if let Some(epochs) = args.epochs {
        ensure!(epochs > 0, "--epochs must be at least 1");
        experiment.epochs = epochs;
    }
    if run_dir.0.exists() {
        ensure!(run_dir.0.is_dir(), "--out {}: exists and is not a folder", run_dir.0.display());
    }
    Ok((experiment, settings, run_dir))
}

/// Creates the run folder (clearing an old run with --force) and records the resolved
/// config, the data settings and the command line.
fn record_run(args: &TrainArgs, experiment: &Experiment, settings: &RunSettings, run_dir: &RunDir) -> Result<()> {
    std::fs::create_dir_all(&run_dir.0)
        .with_context(|| format!("cannot create the run folder {}", run_dir.0.display()))?;
    if args.force {
        for file in [run_dir.metrics(), run_dir.last(), run_dir.best()] {
            if file.exists() {
                std::fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
            }
        }
    }
    write_file(&run_dir.config(), &experiment.to_pretty_json())?;
    write_file(&run_dir.settings(), &serde_json::to_string_pretty(settings)?)?;
    let log = run_dir.0.join("command.txt");
    let mut commands = std::fs::read_to_string(&log).unwrap_or_default();
    commands.push_str(&std::env::args().collect::<Vec<_>>().join(" "));
    commands.push('\n');
    write_file(&log, &commands)
}

fn restore(path: &Path, vs: &nn::VarStore, sgd: &mut Sgd) -> Result<TrainState> {
    let checkpoint = Checkpoint::load(path)?;
    checkpoint.restore_model(vs, path)?;
    for slot in &mut sgd.slots {
        let name = format!("velocity.{}", slot.name);
        let saved =
            checkpoint.tensors.get(&name).with_context(|| format!("checkpoint {} has no {name}", path.display()))?;
        ensure!(saved.size() == slot.velocity.size(), "checkpoint {}: {name} has the wrong shape", path.display());
        slot.velocity.copy_(saved);
    }
    serde_json::from_value(checkpoint.state)
        .with_context(|| format!("checkpoint {}: training state is malformed", path.display()))
}

fn save(path: &Path, state: &TrainState, vs: &nn::VarStore, sgd: &Sgd) -> Result<()> {
    let mut tensors = Checkpoint::model_tensors(vs);
    for slot in &sgd.slots {
        tensors.insert(format!("velocity.{}", slot.name), slot.velocity.shallow_clone());
    }
    Checkpoint { tensors, state: serde_json::to_value(state)? }.save(path)
}

/// Seed of epoch `epoch`'s shuffle and augmentation draws.
pub fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    (seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64 + 1) & (i64::MAX as u64)) as i64
}

/// An epoch's order of images and their augmentations, all drawn up front from the epoch's
/// seed (so a run resumed mid-epoch sees the same batches).
pub struct EpochPlan {
    order: Tensor,
    transforms: Option<Transforms>,
    batch_size: usize,
    pub steps: usize,
    len: usize,
}

impl EpochPlan {
    pub fn new(experiment: &Experiment, epoch: usize, len: usize, device: Device) -> Self {
        tch::manual_seed(epoch_seed(experiment.seed, epoch));
        let order = Tensor::randperm(len as i64, (Kind::Int64, Device::Cpu)).to_device(device);
        let aug = &experiment.augmentation;
        let identity = !aug.horizontal_flip
            && aug.width_shift_range == 0.0
            && aug.height_shift_range == 0.0
            && aug.rotation_range == 0.0;
        // Drawn on the CPU (the same numbers on every device), then moved once per epoch.
        let transforms = (!identity).then(|| Transforms::random(aug, len as i64, 32, 32).to_device(device));
        let batch_size = experiment.batch_size;
        EpochPlan { order, transforms, batch_size, steps: len.div_ceil(batch_size), len }
    }

    /// Normalised, augmented images and labels of step `step`.
    pub fn batch(&self, step: usize, split: &Split) -> (Tensor, Tensor) {
        let start = step * self.batch_size;
        let size = self.batch_size.min(self.len - start) as i64;
        let index = self.order.narrow(0, start as i64, size);
        let images = data::normalize(&split.images.index_select(0, &index));
        let images = match &self.transforms {
            Some(t) => augment::apply(&images, &t.slice(start as i64, size)),
            None => images,
        };
        (images, split.labels.index_select(0, &index))
    }
}

/// Per-step sums (loss with L2, cross-entropy, correct predictions, each times the batch
/// size), kept on the device: reading them is a host sync, done only every few steps.
struct StepLog {
    loss: Tensor,
    ce: Tensor,
    correct: Tensor,
}

impl StepLog {
    fn new(steps: usize, device: Device) -> Self {
        let zeros = || Tensor::zeros([steps as i64], (Kind::Double, device));
        StepLog { loss: zeros(), ce: zeros(), correct: zeros() }
    }

    fn record(&self, step: usize, ce: &Tensor, penalty: &Tensor, logits: &Tensor, labels: &Tensor) {
        let batch = labels.size()[0] as f64;
        let step = step as i64;
        tch::no_grad(|| {
            let ce = ce.to_kind(Kind::Double) * batch;
            self.loss.get(step).copy_(&(&ce + penalty.to_kind(Kind::Double) * batch));
            self.ce.get(step).copy_(&ce);
            self.correct.get(step).copy_(&logits.argmax(-1, false).eq_tensor(labels).sum(Kind::Double));
        });
    }

    /// The first step in `from..to` whose loss is NaN or infinite.
    fn first_non_finite(&self, from: usize, to: usize) -> Option<usize> {
        let finite = self.loss.narrow(0, from as i64, (to - from) as i64).isfinite();
        if bool::try_from(finite.all()).unwrap_or(false) {
            return None;
        }
        let finite = Vec::<bool>::try_from(finite).unwrap_or_default();
        Some(from + finite.iter().position(|ok| !ok).unwrap_or(0))
    }

    /// (loss, cross-entropy, correct) summed over steps `from..to`.
    fn sums(&self, from: usize, to: usize) -> (f64, f64, f64) {
        let span = |t: &Tensor| {
            f64::try_from(t.narrow(0, from as i64, (to - from) as i64).sum(Kind::Double)).unwrap_or(f64::NAN)
        };
        (span(&self.loss), span(&self.ce), span(&self.correct))
    }
}

struct Trainer<'a> {
    experiment: &'a Experiment,
    network: &'a Network,
    train: &'a Split,
    test: &'a Split,
    device: Device,
    amp: bool,
}

impl Trainer<'_> {
    /// Trains one epoch (or its rest, after a mid-epoch resume), evaluates and checkpoints.
    fn train_epoch(&self, state: &mut TrainState, sgd: &mut Sgd, run_dir: &RunDir) -> Result<Outcome> {
        let epoch = state.epoch;
        let lr = state.lr_rule.lr_for_epoch(epoch);
        let plan = EpochPlan::new(self.experiment, epoch, self.train.len(), self.device);
        let progress =
            EpochProgress::new(format!("epoch {}/{}", epoch + 1, self.experiment.epochs), plan.steps, state.step);
        let log = StepLog::new(plan.steps, self.device);
        // On a GPU, read the losses back (and check them) only every 50 steps.
        let sync_every = if self.device.is_cuda() { 50 } else { 1 };
        let mut checked = state.step;
        let started = Instant::now();
        for step in state.step..plan.steps {
            let (images, labels) = plan.batch(step, self.train);
            let penalty = sgd.l2_penalty();
            let (ce, logits) = train_step(self.network, sgd, &images, &labels, lr, self.amp);
            log.record(step, &ce, &penalty, &logits, &labels);
            let done = step + 1;
            let stop = STOP_REQUESTED.load(Ordering::SeqCst) && done < plan.steps;
            if done % sync_every == 0 || done == plan.steps || stop {
                if let Some(bad) = log.first_non_finite(checked, done) {
                    bail!(
                        "training diverged: the loss is not finite at epoch {epoch} step {bad} (lr too high?); the last good checkpoint {} is kept",
                        run_dir.last().display()
                    );
                }
                checked = done;
                let sums = self.sums(state, &log, done, started);
                let speed = (sums.seen - state.partial.seen) as f64 / started.elapsed().as_secs_f64().max(1e-9);
                let seen = sums.seen as f64;
                progress.update(
                    done,
                    &format!("loss {:.4} acc {:.4} {speed:.0} img/s", sums.loss / seen, sums.correct / seen),
                );
            }
            if stop {
                state.partial = self.sums(state, &log, done, started);
                state.step = done;
                save(&run_dir.last(), state, &self.network.vs, sgd)?;
                progress.finish(&format!(
                    "interrupted at epoch {epoch} step {done}: checkpoint {} written; continue with --resume",
                    run_dir.last().display()
                ));
                return Ok(Outcome::Interrupted);
            }
        }
        let sums = self.sums(state, &log, plan.steps, started);
        let row = self.evaluate_epoch(state, sgd, &sums, lr, started);
        ensure!(
            row.val_loss.is_finite(),
            "epoch {epoch}: validation loss is {}; the last good checkpoint {} is kept",
            row.val_loss,
            run_dir.last().display()
        );
        let lr_changed = state.lr_rule.on_epoch_end(row.val_loss);
        self.record_epoch(state, sgd, run_dir, &row)?;
        progress.finish(&format!(
            "epoch {}/{}: loss {:.4} accuracy {:.4} val_loss {:.4} val_accuracy {:.4} lr {:.3e}{} ({:.1}s, {:.0} img/s)",
            epoch + 1,
            self.experiment.epochs,
            row.loss,
            row.accuracy,
            row.val_loss,
            row.val_accuracy,
            row.lr,
            if lr_changed { format!(" -> {:.3e}", state.lr_rule.lr) } else { String::new() },
            row.epoch_seconds,
            row.images_per_second
        ));
        Ok(Outcome::Finished)
    }

    /// The epoch's CSV row: training sums plus a pass over the test set. Keras's `val_loss`
    /// is the test cross-entropy plus the L2 penalty at the epoch's end.
    fn evaluate_epoch(&self, state: &TrainState, sgd: &Sgd, sums: &EpochSums, lr: f64, started: Instant) -> EpochRow {
        let (val_ce, val_accuracy, _) = evaluate(self.network, self.test, eval_batch_size(self.device));
        let val_penalty = f64::try_from(sgd.l2_penalty()).unwrap_or(f64::NAN);
        let n = sums.seen as f64;
        EpochRow {
            epoch: state.epoch,
            loss: sums.loss / n,
            accuracy: sums.correct / n,
            val_loss: val_ce + val_penalty,
            val_accuracy,
            lr,
            ce_loss: sums.ce / n,
            val_ce_loss: val_ce,
            epoch_seconds: state.partial.seconds + started.elapsed().as_secs_f64(),
            images_per_second: n / sums.seconds,
        }
    }

    /// Moves the state to the next epoch and writes best weights, then the checkpoint, then
    /// the CSV row. On resume the CSV is rebuilt from the checkpoint's history, so a crash
    /// between any two of these loses nothing (a redone epoch reproduces the same weights).
    fn record_epoch(&self, state: &mut TrainState, sgd: &Sgd, run_dir: &RunDir, row: &EpochRow) -> Result<()> {
        let is_best = state.best_val_accuracy.is_none_or(|best| row.val_accuracy > best);
        state.history.push(row.clone());
        state.epoch += 1;
        state.step = 0;
        state.partial = EpochSums::default();
        if is_best {
            state.best_val_accuracy = Some(row.val_accuracy);
            let best_state = serde_json::json!({"epoch": row.epoch, "val_accuracy": row.val_accuracy, "experiment": self.experiment.name});
            Checkpoint { tensors: Checkpoint::model_tensors(&self.network.vs), state: best_state }
                .save(&run_dir.best())?;
        }
        save(&run_dir.last(), state, &self.network.vs, sgd)?;
        metrics::append(&run_dir.metrics(), row)
    }

    /// Sums of the steps done so far in this epoch, including those before a resume.
    fn sums(&self, state: &TrainState, log: &StepLog, done: usize, started: Instant) -> EpochSums {
        let (loss, ce, correct) = log.sums(state.step, done);
        let images_until = |step: usize| self.train.len().min(step * self.experiment.batch_size);
        let p = &state.partial;
        EpochSums {
            loss: p.loss + loss,
            ce: p.ce + ce,
            correct: p.correct + correct,
            seen: p.seen + images_until(done) - images_until(state.step),
            seconds: p.seconds + started.elapsed().as_secs_f64(),
        }
    }
}
