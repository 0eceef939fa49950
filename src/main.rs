//! `resnext`: command-line entry point. Parses arguments and dispatches, nothing more.
use anyhow::Result;
use clap::Parser;
use resnext::cli::{Cli, Command, DataCommand};
use resnext::{bench, config, data, download, eval, export, plot, predict, runtime, summary, tensorboard, train};

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
        Command::Info(args) if args.gpus => println!("{}", tch::Cuda::device_count()),
        Command::Info(_) => println!("{}", runtime::info()?),
        Command::Summary(args) => {
            let experiment = config::Experiment::load(&args.experiment, &args.set)?;
            print!("{}", summary::format(&experiment.name, &summary::rows(&experiment.model)));
        }
        Command::Data { command: DataCommand::Download { to } } => {
            let dir = download::download(&to)?;
            println!("CIFAR-10 is in {}; use --data-dir {0} or CIFAR10_DIR={0}", dir.display());
        }
        Command::Data { command: DataCommand::Check(args) } => {
            println!("{}", data::describe(&data::resolve_dir(args.data_dir.as_deref()))?)
        }
        Command::Train(args) => {
            if let train::Outcome::Interrupted = train::run(&args)? {
                return Ok(130);
            }
        }
        Command::Eval(args) => println!("{}", eval::run(&args)?.to_text()),
        Command::Plot(args) => {
            for path in plot::plot(&args.paths, &args.comparisons, &args.out, args.x)? {
                println!("wrote {}", path.display());
            }
        }
        Command::Export(args) => {
            let (model, meta) = export::export(&args)?;
            println!("wrote {} (TorchScript) and {} (input constants, class names)", model.display(), meta.display());
        }
        Command::Bench(args) => println!("{}", bench::run(&args)?),
        Command::Tensorboard(args) => tensorboard::backfill(&args)?,
        Command::Predict(args) => {
            for (image, top3) in args.images.iter().zip(predict::predict(&args)?) {
                let text: Vec<String> = top3.iter().map(|(name, p)| format!("{name} {:.1}%", 100.0 * p)).collect();
                println!("{}: {}", image.display(), text.join(", "));
            }
        }
    }
    Ok(0)
}
