//! The end-to-end tests: the real binary and the library on real CIFAR-10 images, in one test
//! crate (each crate links libtorch again: one link instead of nine).
mod common;

mod cli_basics;
mod compute;
mod data;
mod fuzz;
mod layout;
mod recipes;
mod report;
mod robustness;
mod scripts;
mod steps_per_epoch;
mod studies;
mod tensorboard_cli;
mod train_cli;
mod validation;
