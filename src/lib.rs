//! resnext-rs: the Keras ResNeXt-on-CIFAR-10 study, reproduced on libtorch.
//!
//! One concept per module; `main.rs` only parses the command line (`cli`) and dispatches.
pub mod augment;
pub mod batches;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod download;
pub mod ema;
pub mod eval;
pub mod export;
pub mod gpus;
pub mod learner;
pub mod metrics;
pub mod model;
pub mod network;
pub mod optim;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod run_dir;
pub mod runtime;
pub mod schedule;
pub mod step_log;
pub mod summary;
pub mod tensorboard;
pub mod torch_ext;
pub mod train;

#[cfg(test)]
mod testing;
