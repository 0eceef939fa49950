//! Run folders and their files: the folder and the files that say what a run is, the
//! checkpoint, `metrics.csv`, the TensorBoard event log, the lock, a
//! results folder's runs and their status, and a trained run loaded for inference.
pub mod checkpoint;
pub mod event_log;
pub mod metrics;
pub mod results;
pub mod run_dir;
pub mod run_lock;
pub mod trained_run;
