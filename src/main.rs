//! `resnext`: command-line entry point. Parses arguments and dispatches, nothing more.
use anyhow::Result;
use clap::{Parser, Subcommand};
use resnext::network::Which;
use resnext::{bench, config, data, eval, export, model, plot, predict, runtime, train};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "resnext", version, about = "Reproduce the Keras ResNeXt-29 (8x16d) CIFAR-10 study on libtorch", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print libtorch's version, whether CUDA and cuDNN are available, the GPUs and CPU threads.
    Info,
    /// Print a Keras-style table of the experiment's network with its parameter totals.
    Summary {
        /// A config name from experiments/ (e.g. my_resnext) or a path to a JSON config.
        experiment: String,
        /// Override a config field before building, e.g. --set model.width=64 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Work with the CIFAR-10 data.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Train an experiment, writing metrics.csv and checkpoints to its run folder.
    Train(train::TrainArgs),
    /// Evaluate a run's checkpoint on the test set: loss, accuracy, per-class accuracy, confusion matrix PNG.
    Eval {
        /// Run folder, e.g. results/my_resnext.
        run: PathBuf,
        /// Which checkpoint to evaluate.
        #[arg(long, value_enum, default_value = "best")]
        checkpoint: Which,
        /// CIFAR-10 binary folder (default: $CIFAR10_DIR, else data/cifar-10-batches-bin).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// auto (CUDA when available), cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Evaluate the first N test images only.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Also write the evaluated images' logits and labels to this JSON file.
        #[arg(long, value_name = "FILE")]
        logits_json: Option<PathBuf>,
    },
    /// Draw the blog's figures (accuracy, loss, lr per epoch) as PNGs.
    Plot {
        /// A results folder (figures for each comparison in --comparisons whose runs exist)
        /// or run folders (drawn together).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Folder for the PNGs.
        #[arg(long, default_value = "plots")]
        out: PathBuf,
        /// Which runs are drawn together.
        #[arg(long, default_value = "experiments/comparisons.json")]
        comparisons: PathBuf,
    },
    /// Export a run's network as TorchScript (for torch.jit.load) plus a JSON of its input constants.
    Export {
        /// Run folder, e.g. results/my_resnext.
        run: PathBuf,
        /// Output file [default: <run>/model.pt].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Which checkpoint to export.
        #[arg(long, value_enum, default_value = "best")]
        checkpoint: Which,
    },
    /// Measure images per second of the training step, evaluation or the data path.
    Bench(bench::BenchArgs),
    /// Classify PNG or JPEG images (resized to 32x32) and print the top-3 classes.
    Predict {
        /// Image files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Run folder whose checkpoint classifies.
        #[arg(long, default_value = "results/demo")]
        run: PathBuf,
        /// Which checkpoint to use.
        #[arg(long, value_enum, default_value = "best")]
        checkpoint: Which,
        /// auto (CUDA when available), cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download the official CIFAR-10 binary archive (md5-checked) and extract its batch files.
    Download {
        /// Folder to put cifar-10-binary.tar.gz and cifar-10-batches-bin/ in.
        #[arg(long, default_value = "data")]
        to: PathBuf,
    },
    /// Load and validate a CIFAR-10 folder and print its size and per-channel statistics.
    Check {
        /// CIFAR-10 binary folder (default: $CIFAR10_DIR, else data/cifar-10-batches-bin).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() {
    runtime::reexec_with_malloc_tuning();
    runtime::configure_threads();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
    }
}

fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Info => println!("{}", runtime::info()?),
        Command::Summary { experiment, set } => {
            let experiment = config::Experiment::load(&experiment, &set)?;
            print!("{}", model::format_summary(&experiment.name, &model::summary(&experiment.model)));
        }
        Command::Data { command: DataCommand::Download { to } } => {
            let dir = data::download(&to)?;
            println!("CIFAR-10 is in {}; use --data-dir {0} or CIFAR10_DIR={0}", dir.display());
        }
        Command::Data { command: DataCommand::Check { data_dir } } => {
            let dir = data::resolve_dir(data_dir.as_deref());
            println!("{}", data::describe(&dir)?);
        }
        Command::Train(args) => {
            if let train::Outcome::Interrupted = train::run(&args)? {
                return Ok(130);
            }
        }
        Command::Eval { run, checkpoint, data_dir, device, limit, logits_json } => {
            let args = eval::EvalArgs {
                run,
                which: checkpoint,
                data_dir,
                device: runtime::parse_device(&device)?,
                limit,
                logits_json,
            };
            println!("{}", eval::run(&args)?.to_text());
        }
        Command::Plot { paths, out, comparisons } => {
            for path in plot::plot(&paths, &comparisons, &out)? {
                println!("wrote {}", path.display());
            }
        }
        Command::Export { run, out, checkpoint } => {
            let out = out.unwrap_or_else(|| run.join("model.pt"));
            let (model, meta) = export::export(&run, checkpoint, &out)?;
            println!("wrote {} (TorchScript) and {} (input constants, class names)", model.display(), meta.display());
        }
        Command::Bench(args) => println!("{}", bench::run(&args)?),
        Command::Predict { images, run, checkpoint, device } => {
            let results = predict::predict(&run, checkpoint, &images, runtime::parse_device(&device)?)?;
            for (image, top3) in images.iter().zip(results) {
                let text: Vec<String> = top3.iter().map(|(name, p)| format!("{name} {:.1}%", 100.0 * p)).collect();
                println!("{}: {}", image.display(), text.join(", "));
            }
        }
    }
    Ok(0)
}
