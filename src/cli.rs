//! The command line, at the edge: every subcommand's arguments as one clap `Args` struct (the
//! groups that several commands share declared once and flattened), the choices the domain's
//! enums offer, and each command's request in the domain's own types. Nothing below `main`
//! sees a clap type.
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use resnext::bench::{BenchRequest, Mode};
use resnext::compute::{self, ComputeRequest};
use resnext::config::{Experiment, Precision, SEED_STRIDE};
use resnext::data;
use resnext::eval::EvalRequest;
use resnext::runs::run_dir::{CheckpointName, DataLimits};
use resnext::study::curves::XAxis;
use resnext::study::lookup;
use resnext::study::report::ReportRequest;
use resnext::torch_ext::MemoryFormat;
use resnext::train::{Seed, Start, TrainRequest};
use std::path::PathBuf;
use tch::Device;

#[derive(Parser)]
#[command(name = "resnext", version, long_about = None)]
#[command(about = "Reproduce the Keras ResNeXt-29 (8x16d) CIFAR-10 study on libtorch")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print libtorch's version, the CUDA driver and runtime, the GPUs in libtorch's order
    /// (name, memory, compute capability, native bf16), the CPU and its threads.
    Info(InfoArgs),
    /// Print a Keras-style table of the experiment's network with its parameter totals.
    Summary(ExperimentArgs),
    /// Work with the CIFAR-10 data.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Train an experiment, writing metrics.csv and checkpoints to its run folder.
    Train(TrainArgs),
    /// Evaluate a run's checkpoint on the test set: loss, accuracy, per-class accuracy, confusion matrix PNG.
    Eval(EvalArgs),
    /// Draw the blog's figures (accuracy, loss, lr per epoch) as PNGs.
    Plot(PlotArgs),
    /// List the studies, or show one: its experiments (with their seeds), claims and figures.
    ///
    /// A study is a folder of experiments/: one JSON config per experiment and study.json (a
    /// description, the claims `resnext report` judges, the comparisons it draws). The shipped
    /// ones (blog, blog-small, demo, fast) are built into resnext; a folder of the working
    /// folder's experiments/ with a study.json is a study too, and takes precedence over a
    /// built-in one of the same name. Copy a folder and edit its JSON to make your own.
    Study(StudyArgs),
    /// Check the blog's claims (and yours) on a results folder: report.md, report.json and figures.
    ///
    /// Reads every experiment of the results folder, in either layout that scripts/run-all.sh
    /// writes (results/<experiment>/ as the run, or one run per seed in
    /// results/<experiment>/seed-<k>/), and writes a Markdown report (figures drawn into
    /// figures/ beside it and linked relatively) and report.json beside it, then prints a short
    /// summary. Per experiment: runs and seeds, epochs done of planned, final test accuracy
    /// (mean ± std and min-max over the finished runs), at the best checkpoint, mean of the last
    /// 10 epochs, epochs to reach 90/93/95%, time, images/s, hardware and precision. Per claim
    /// (the study's study.json): holds, does not hold, cannot tell (within
    /// run-to-run spread), not enough runs, or runs incomplete, with the numbers: Welch's
    /// t-test at 5% (one-sample against a threshold) with at least two runs on each side; runs
    /// still training, stopped, failed or missing are reported as such, never judged. The
    /// report states the rule in full.
    Report(ReportArgs),
    /// Export a run's network as TorchScript (for torch.jit.load) plus a JSON of its input constants.
    Export(ExportArgs),
    /// Measure images per second of the training step, evaluation or the data path (on real
    /// CIFAR-10 images when the data folder exists, else on random ones: the speed is the same).
    Bench(BenchArgs),
    /// Classify PNG or JPEG images (resized to 32x32) and print the top-3 classes.
    Predict(PredictArgs),
    /// Write TensorBoard event logs from metrics.csv for runs that have none.
    ///
    /// For each run folder given, or found one level below a results folder, that has a
    /// metrics.csv but no event log, writes <run>/tensorboard/events.out.tfevents.<time>.<host>.resnext
    /// holding each row's loss, accuracy, val_loss, val_accuracy, lr, ce_loss, val_ce_loss and
    /// images_per_second at step = epoch (0-based), as Keras's TensorBoard callback logs them.
    /// Prints a line per run written or skipped. Then `.venv/bin/tensorboard --logdir results`
    /// shows every run's curves, each run as `<run>/tensorboard`.
    ///
    /// metrics.csv has no wall times: the last epoch is placed at the file's modification time
    /// and earlier ones before it by their epoch_seconds (training and the evaluation after it). A run
    /// being trained is refused (its lock is held).
    Tensorboard(TensorboardArgs),
}

#[derive(Args, Debug, Clone)]
pub struct InfoArgs {
    /// Print only the number of CUDA devices libtorch sees (honouring CUDA_VISIBLE_DEVICES),
    /// for scripts.
    #[arg(long, conflicts_with = "json")]
    pub gpus: bool,
    /// Print the same facts as JSON, for scripts: resnext, libtorch (built against, loaded, from
    /// where), cuda (runtime, cuDNN, driver, available, device count), gpus (index, name,
    /// memory, compute capability, native bf16) and cpu (model, native bf16, threads, cores).
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Download the official CIFAR-10 binary archive (md5-checked) and extract its batch files.
    Download {
        /// Folder to put cifar-10-binary.tar.gz and cifar-10-batches-bin/ in.
        #[arg(long, default_value = "data")]
        to: PathBuf,
    },
    /// Load and validate a CIFAR-10 folder and print its size and per-channel statistics.
    Check(DataDirArg),
    /// Write a copy of a CIFAR-10 folder made small for a transfer: the test batch and the chosen
    /// training batches, xz-compressed (<name>.xz, about 23 MB each at level 9), which every
    /// command reads in place of the plain files. With only some training batches, train with
    /// --train-limit within them (10,000 images a batch).
    Pack(PackArgs),
}

#[derive(Args, Debug, Clone)]
pub struct PackArgs {
    /// Folder for the compressed copy (created when missing).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Which training batches (1-5) to include; the test batch always is.
    #[arg(long, value_name = "N,N", value_delimiter = ',', default_value = "1,2,3,4,5")]
    pub train_batches: Vec<usize>,
    /// xz preset: 0 (fastest) to 9 (smallest, about 30 s a batch on one core).
    #[arg(long, value_name = "N", default_value_t = 9)]
    pub level: u32,
    #[command(flatten)]
    pub data: DataDirArg,
}

/// An experiment config and edits to it.
#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// An experiment: a name (in whichever study has it: `resnext study` lists them, e.g. demo or
    /// my_resnext_small), STUDY/NAME (the experiment NAME of the study STUDY), or a path to a
    /// JSON config (ending in .json).
    pub experiment: String,
    /// Override any config field, e.g. --set lr_schedule.patience=2 (repeatable; a training
    /// run records the result in its config.json).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ExperimentArgs {
    pub fn load(&self) -> anyhow::Result<Experiment> {
        lookup::load(&self.experiment, &self.set)
    }
}

#[derive(Args, Debug, Clone)]
pub struct DataDirArg {
    /// CIFAR-10 binary folder [default: $CIFAR10_DIR, else data/cifar-10-batches-bin].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArg {
    pub fn resolve(&self) -> PathBuf {
        data::resolve_dir(self.data_dir.as_deref())
    }
}

/// Where and how tensors run.
#[derive(Args, Debug, Clone)]
pub struct ComputeArgs {
    /// auto (CUDA 0 when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = compute::parse_device)]
    pub device: Device,
    /// fp32 (Keras's precision) or bf16 (autocast to bfloat16 on the device, fp32 master
    /// weights; fast on GPUs and on CPUs with AMX or AVX512-BF16) [default: the config's
    /// `precision`].
    #[arg(long, value_parser = choice::<Precision>())]
    pub precision: Option<Precision>,
    /// Memory format of weights and activations: channels-last (NHWC strides) or contiguous
    /// (NCHW) [default: channels-last on CPU, contiguous on CUDA]. Checkpoints are the same
    /// either way.
    #[arg(long, value_name = "FORMAT", value_parser = choice::<MemoryFormat>())]
    pub memory_format: Option<MemoryFormat>,
    /// Let cuDNN time its convolution algorithms once and keep the fastest (on by default on
    /// CUDA; no effect on a CPU).
    #[arg(long, value_name = "BOOL")]
    pub cudnn_benchmark: Option<bool>,
    /// Allow TensorFloat-32 in float32 convolutions and matrix products on Ampere and newer
    /// GPUs (faster, 10-bit mantissa; off by default: Keras's fp32 is full fp32).
    #[arg(long)]
    pub tf32: bool,
    /// Train with BatchNorm -> ReLU and BatchNorm -> + shortcut -> ReLU fused into one op each,
    /// forward and backward: the same function in fewer passes over the activations and about
    /// 10% less peak memory (docs/performance.md). CPU only [default: true on CPU, false on CUDA].
    #[arg(long, value_name = "BOOL")]
    pub fused: Option<bool>,
}

impl ComputeArgs {
    pub fn request(&self) -> ComputeRequest {
        ComputeRequest {
            device: self.device,
            precision: self.precision,
            memory_format: self.memory_format,
            cudnn_benchmark: self.cudnn_benchmark,
            tf32: self.tf32,
            fused_batch_norm: self.fused,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct EvalBatchArg {
    /// Images per evaluation batch [default: 64 on CPU, where that measured fastest, 1000 on CUDA].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub eval_batch: Option<u64>,
}

impl EvalBatchArg {
    pub fn get(&self) -> Option<usize> {
        self.eval_batch.map(|n| n as usize)
    }
}

#[derive(Args, Debug, Clone, Copy)]
pub struct CheckpointArg {
    /// Which checkpoint of the run to use.
    #[arg(long, default_value = "best", value_parser = choice::<CheckpointName>())]
    pub checkpoint: CheckpointName,
}

/// Everything `resnext train` takes from the command line.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
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
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub compute: ComputeArgs,
    #[command(flatten)]
    pub eval_batch: EvalBatchArg,
    /// Read the losses back from the device (a host sync) every N steps [default: 1 on CPU,
    /// 50 on CUDA]; progress lines and the divergence check follow this interval.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub sync_every: Option<u64>,
    /// Seed for weights, shuffles and augmentation (overrides the config's `seed`).
    #[arg(long, conflicts_with = "repeat")]
    pub seed: Option<u64>,
    /// Train run K (from 0) of the experiment: with the config's seed + 1000 K, the rule that
    /// gives every run of a study a seed of its own (scripts/run-all.sh --seeds uses it).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(0..SEED_STRIDE))]
    pub repeat: Option<u64>,
    /// Continue the run in the run folder after its last checkpoint (starts it if there is none).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Start again, deleting the run folder's metrics and checkpoints.
    #[arg(long)]
    pub force: bool,
}

impl TrainArgs {
    pub fn request(&self) -> anyhow::Result<TrainRequest> {
        Ok(TrainRequest {
            experiment: self.experiment.load()?,
            overrides: self.experiment.set.clone(),
            epochs: self.epochs,
            limits: DataLimits { train_limit: self.train_limit, test_limit: self.test_limit },
            out: self.out.clone(),
            data_dir: self.data.resolve(),
            compute: self.compute.request(),
            eval_batch: self.eval_batch.get(),
            sync_every: self.sync_every.map(|n| n as usize),
            seed: match (self.seed, self.repeat) {
                (Some(seed), _) => Seed::Exactly(seed),
                (None, Some(k)) => Seed::Repeat(k),
                (None, None) => Seed::FromConfig,
            },
            start: match (self.resume, self.force) {
                (true, _) => Start::Resume,
                (false, true) => Start::Force,
                (false, false) => Start::New,
            },
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Run folder, e.g. results/my_resnext.
    pub run: PathBuf,
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub compute: ComputeArgs,
    #[command(flatten)]
    pub eval_batch: EvalBatchArg,
    /// Evaluate the first N test images only.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Also write the evaluated images' logits and labels to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub logits_json: Option<PathBuf>,
}

impl EvalArgs {
    pub fn request(&self) -> EvalRequest {
        EvalRequest {
            run: self.run.clone(),
            checkpoint: self.checkpoint.checkpoint,
            data_dir: self.data.resolve(),
            compute: self.compute.request(),
            batch: self.eval_batch.get(),
            limit: self.limit,
            logits_json: self.logits_json.clone(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// A results folder (a figure for each comparison of its study whose runs exist, and one of
    /// the runs no comparison names) or run folders (drawn together). An experiment folder
    /// holding one run per seed (seed-<k>/) is drawn as the mean of its runs with a band from
    /// the lowest to the highest.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Folder for the PNGs.
    #[arg(long, default_value = "plots")]
    pub out: PathBuf,
    #[command(flatten)]
    pub study: StudyArg,
    /// The x axis: epochs, or minutes of training (cumulative epoch_seconds, for recipes of
    /// different cost); time figures get a `_time` suffix.
    #[arg(long, default_value = "epoch", value_parser = choice::<XAxis>())]
    pub x: XAxis,
}

/// The study a results folder is judged and drawn by.
#[derive(Args, Debug, Clone)]
pub struct StudyArg {
    /// The study whose comparisons are drawn (and, for `report`, whose claims are judged): a
    /// name (`resnext study` lists them) or a study's folder [default: the one study that has
    /// every experiment found, if exactly one does].
    #[arg(long, value_name = "STUDY")]
    pub study: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// A results folder (e.g. results/blog-small, or run-all's --results): all its experiments.
    /// Or experiment folders (a run folder, or one holding seed-<k> run folders), reported and
    /// drawn together (then --out is needed); several results folders are reported together too.
    #[arg(required = true, value_name = "RESULTS")]
    pub paths: Vec<PathBuf>,
    /// The Markdown report; report.json goes beside it (the same name, .json), the figures
    /// into figures/ beside it [default: <results>/report.md for one results folder].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub study: StudyArg,
}

impl ReportArgs {
    pub fn request(&self) -> ReportRequest {
        ReportRequest { paths: self.paths.clone(), out: self.out.clone(), study: self.study.study.clone() }
    }
}

#[derive(Args, Debug, Clone)]
pub struct StudyArgs {
    /// The study to show (a name or a study's folder) [default: list every study].
    pub study: Option<String>,
    /// Print only the names of its experiments, one per line (for scripts).
    #[arg(long, requires = "study")]
    pub names: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// Run folder, e.g. results/my_resnext.
    pub run: PathBuf,
    /// Output file [default: <run>/model.pt].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    /// What to time.
    #[arg(long, default_value = "train", value_parser = choice::<Mode>())]
    pub mode: Mode,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Batch size [default: the config's for train and data, the evaluation batch for eval].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub steps: u64,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// After timing, record N more steps by operator and print where their time went: self time
    /// by operator class (convolution, BatchNorm, ReLU, ...) and the slowest operators, as
    /// `bench/torch_peer.py --profile N` prints them for the peer.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub profile: u64,
    /// Print the measurement as one JSON object, for scripts: program, mode, precision, device,
    /// batch, threads, steps, warmup, ms_per_step (the median), images_per_second,
    /// best_images_per_second, peak_rss_mib, aten_ops_per_step, profile (steps, ms_per_step,
    /// classes and ops: name, ms_per_step, percent, calls_per_step) and the settings in words;
    /// `bench/torch_peer.py --json` writes the same fields.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDirArg,
}

impl BenchArgs {
    pub fn request(&self) -> anyhow::Result<BenchRequest> {
        Ok(BenchRequest {
            experiment: self.experiment.load()?,
            named: self.experiment.experiment.clone(),
            mode: self.mode,
            compute: self.compute.request(),
            batch: self.batch,
            steps: self.steps as usize,
            warmup: self.warmup as usize,
            profile: self.profile as usize,
            data_dir: self.data.resolve(),
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Run folder whose checkpoint classifies.
    #[arg(long, default_value = "results/demo")]
    pub run: PathBuf,
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

#[derive(Args, Debug, Clone)]
pub struct TensorboardArgs {
    /// Run folders, or results folders holding run folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Also rewrite event logs that exist (from metrics.csv; the step/loss and step/lr scalars
    /// of the old log are kept).
    #[arg(long)]
    pub force: bool,
}

/// The domain's enums as command-line choices: each value, its name and its `--help` line.
trait Choice: Copy + Send + Sync + 'static {
    const VALUES: &'static [(Self, &'static str, &'static str)];
}

/// Parses one of `T`'s names into its value; `--help` lists them with their help lines.
fn choice<T: Choice>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(T::VALUES.iter().map(|&(_, name, help)| PossibleValue::new(name).help(help)))
        .map(|name| T::VALUES.iter().find(|(_, n, _)| *n == name).expect("clap accepts listed names only").0)
}

impl Choice for Precision {
    const VALUES: &'static [(Self, &'static str, &'static str)] = &[
        (Precision::Fp32, Precision::Fp32.name(), "float32 throughout, as Keras trains"),
        (
            Precision::Bf16,
            Precision::Bf16.name(),
            "libtorch autocast to bfloat16 on the run's device (PyTorch's op policy: convolutions and matrix \
             products in bf16), with float32 master weights, velocities, BatchNorm statistics, losses and checkpoints",
        ),
    ];
}

impl Choice for MemoryFormat {
    const VALUES: &'static [(Self, &'static str, &'static str)] = &[
        (MemoryFormat::Contiguous, "contiguous", "NCHW, libtorch's default"),
        (
            MemoryFormat::ChannelsLast,
            "channels-last",
            "NHWC strides under NCHW sizes: what oneDNN's CPU convolutions prefer",
        ),
    ];
}

impl Choice for CheckpointName {
    const VALUES: &'static [(Self, &'static str, &'static str)] = &[
        (CheckpointName::Best, CheckpointName::Best.label(), "The epoch with the highest val_accuracy"),
        (CheckpointName::Last, CheckpointName::Last.label(), "The latest checkpoint"),
    ];
}

impl Choice for XAxis {
    const VALUES: &'static [(Self, &'static str, &'static str)] = &[
        (XAxis::Epoch, "epoch", "Epochs done"),
        (
            XAxis::Time,
            "time",
            "Minutes of training and evaluation (cumulative `epoch_seconds`), so recipes of different cost compare \
             fairly",
        ),
    ];
}

impl Choice for Mode {
    const VALUES: &'static [(Self, &'static str, &'static str)] = &[
        (Mode::Train, Mode::Train.name(), "Augmentation, forward, backward and SGD update"),
        (Mode::Eval, Mode::Eval.name(), "Forward pass in inference mode"),
        (Mode::Data, Mode::Data.name(), "Shuffle, gather, normalise and augment only"),
    ];
}
