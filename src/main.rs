//! `resnext`: command-line entry point. Parses arguments (`cli`, the only module that knows
//! clap) and dispatches each command to the library, nothing more.
mod cli;

use anyhow::Result;
use clap::Parser;
use cli::{Cli, Command, DataCommand};
use resnext::data::{self, download, pack};
use resnext::model::summary;
use resnext::study::{self, figures, report, Study};
use resnext::{eval, export, host, info, predict, tensorboard, train};

fn main() {
    // Output piped into a reader that stops early (`resnext info | head`) ends us quietly, as it
    // ends other Unix tools, instead of a panic about a broken pipe.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    host::reexec_with_malloc_tuning();
    host::configure_threads();
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
        Command::Info(args) if args.json => println!("{}", info::Info::gather().to_json()),
        Command::Info(_) => println!("{}", info::Info::gather().to_text()),
        Command::Summary(args) => {
            let experiment = args.load()?;
            print!("{}", summary::format(&experiment.name, &summary::rows(&experiment.model)));
        }
        Command::Data { command: DataCommand::Download { to } } => {
            let dir = download::download(&to)?;
            println!("CIFAR-10 is in {}; use --data-dir {0} or CIFAR10_DIR={0}", dir.display());
        }
        Command::Data { command: DataCommand::Check(args) } => println!("{}", data::describe(&args.resolve())?),
        Command::Data { command: DataCommand::Pack(args) } => {
            let written = pack::pack(&args.data.resolve(), &args.to, &args.train_batches, args.level)?;
            for file in &written {
                println!("wrote {} ({:.1} MB)", file.path.display(), file.bytes as f64 / 1e6);
            }
            let total: u64 = written.iter().map(|f| f.bytes).sum();
            println!("{}: {:.1} MB in all; use --data-dir {0}", args.to.display(), total as f64 / 1e6);
        }
        Command::Train(args) => {
            if let train::Outcome::Interrupted = train::run(&args.request()?)? {
                return Ok(130);
            }
        }
        Command::Eval(args) => println!("{}", eval::run(&args.request())?.to_text()),
        Command::Plot(args) => {
            for path in figures::plot(&args.paths, args.study.study.as_deref(), &args.out, args.x)? {
                println!("wrote {}", path.display());
            }
        }
        Command::Study(args) => match &args.study {
            None => print!("{}", study::list()?),
            Some(reference) if args.names => {
                for name in Study::find(reference)?.experiment_names() {
                    println!("{name}");
                }
            }
            Some(reference) => print!("{}", Study::find(reference)?.describe()),
        },
        Command::Report(args) => println!("{}", report::run(&args.request())?.summary()),
        Command::Export(args) => {
            let (model, meta) = export::export(&args.run, args.out.as_deref(), args.checkpoint.checkpoint)?;
            println!("wrote {} (TorchScript) and {} (input constants, class names)", model.display(), meta.display());
        }
        Command::Bench(args) => {
            let measurement = resnext::bench::run(&args.request()?)?;
            println!("{}", if args.json { measurement.to_json() } else { measurement.to_text() });
        }
        Command::Tensorboard(args) => tensorboard::backfill(&args.paths, args.force)?,
        Command::Predict(args) => {
            let request = args.compute.request();
            let predictions = predict::predict(&args.images, &args.run, args.checkpoint.checkpoint, &request)?;
            for (image, top3) in args.images.iter().zip(predictions) {
                let text: Vec<String> = top3.iter().map(|(name, p)| format!("{name} {:.1}%", 100.0 * p)).collect();
                println!("{}: {}", image.display(), text.join(", "));
            }
        }
    }
    Ok(0)
}
