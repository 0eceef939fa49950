//! Progress display: an indicatif bar per epoch on a terminal, plain lines otherwise (logs,
//! CI, `nohup`), so redirected output stays readable.
use indicatif::{ProgressBar, ProgressStyle};
use std::cell::Cell;
use std::io::IsTerminal;

pub struct EpochProgress {
    bar: Option<ProgressBar>,
    label: String,
    steps: usize,
    /// In plain mode, print a line every this many steps.
    plain_every: usize,
    /// In plain mode, the step count last printed.
    printed: Cell<usize>,
}

impl EpochProgress {
    pub fn new(label: String, steps: usize, start: usize) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(steps as u64).with_position(start as u64);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.clone());
            bar
        });
        EpochProgress { bar, label, steps, plain_every: (steps / 4).max(1), printed: Cell::new(start) }
    }

    /// `done` steps finished; `message` holds the running loss, accuracy and speed.
    pub fn update(&self, done: usize, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(message.to_string());
            }
            None if done >= self.printed.get() + self.plain_every && done < self.steps => {
                self.printed.set(done);
                println!("{} step {done}/{} {message}", self.label, self.steps);
            }
            None => {}
        }
    }

    pub fn finish(&self, summary: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        println!("{summary}");
    }
}
