//! resnext-rs: the Keras ResNeXt-on-CIFAR-10 study, reproduced on libtorch.
//!
//! One concept per module, a folder when a concept outgrows a file; imports flow one way, from
//! the top of this list to the bottom (`tests/e2e/layout.rs` checks it). The binary's `main.rs`
//! and `cli.rs` parse the command line and call the commands below with requests in these
//! modules' own types: nothing here knows clap.

// The commands other than train, report and plot, which are their folders'.
pub mod bench;
pub mod eval;
pub mod export;
pub mod info;
pub mod predict;
pub mod tensorboard;

// Studies: their folders, claims, statistics, reports and figures.
pub mod study;

// Training: the loop, its batches, the learner and its rules.
pub mod train;

// Run folders and their files.
pub mod runs;

// The network.
pub mod model;

// How and where tensors run.
pub mod compute;

// Experiment configs.
pub mod config;

// CIFAR-10.
pub mod data;

// The machine and plain tools: libtorch's extension, the host, the GPUs, the clock, the one
// atomic write, progress lines, the chart engine (the study's figures and eval's confusion matrix).
pub mod atomic_file;
pub mod chart;
pub mod clock;
pub mod gpus;
pub mod host;
pub mod progress;
pub mod torch_ext;

#[cfg(test)]
mod testing;
