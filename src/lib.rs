//! resnext-rs: the Keras ResNeXt-on-CIFAR-10 study, reproduced on libtorch.
//!
//! One concept per module; imports flow one way (no module imports one that imports it back).
//! The binary's `main.rs` and `cli.rs` parse the command line and call the commands below with
//! requests in these modules' own types: nothing here knows clap.

// The data and the network.
pub mod augment;
pub mod batches;
pub mod data;
pub mod download;
pub mod network;
pub mod pack;
pub mod resnext;

// Configs, and how and where tensors run.
pub mod compute;
pub mod config;
pub mod experiments;
pub mod gpus;
pub mod host;
pub mod torch_ext;

// Training.
pub mod ema;
pub mod learner;
pub mod optim;
pub mod schedule;
pub mod scores;
pub mod step_stats;
pub mod train;

// Run folders and their files.
pub mod atomic_file;
pub mod checkpoint;
pub mod event_log;
pub mod metrics;
pub mod results;
pub mod run_dir;
pub mod run_lock;
pub mod trained_run;

// Studies, and their verdict: claims and the statistics they are judged with.
pub mod claims;
pub mod stats;
pub mod study;

// The other commands.
pub mod bench;
pub mod eval;
pub mod export;
pub mod info;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod report;
pub mod summary;
pub mod tensorboard;

#[cfg(test)]
mod testing;
