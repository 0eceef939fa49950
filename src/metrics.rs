//! Per-epoch metrics: the format of `metrics.csv`, one row per epoch, Keras CSVLogger names
//! first. A run that holds out a validation split (config `validation` > 0) has two more
//! columns at the end, `test_loss` and `test_accuracy`; a run without one has neither (its
//! `val_*` columns are the test set's, as in the blog), and files written before they existed
//! read the same way.
use crate::atomic_file;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One epoch. `loss` and `val_loss` include the L2 penalty (as Keras reports them); the
/// `*ce_loss` columns are the plain cross-entropy. `epoch` is 0-based, as in Keras. `val_*` are
/// measured on the validation data: the held-out training images when the run has them, else
/// the test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub lr: f64,
    pub ce_loss: f64,
    pub val_ce_loss: f64,
    pub epoch_seconds: f64,
    pub images_per_second: f64,
    /// The test set's loss (as `val_loss`: with the L2 penalty) and accuracy, when the run holds
    /// out a validation split: measured every epoch, read by nothing in training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
}

impl EpochRow {
    /// The test set's accuracy: its own column when the run holds out a validation split, else
    /// `val_accuracy` (the test set is then the validation data).
    pub fn test_accuracy(&self) -> f64 {
        self.test_accuracy.unwrap_or(self.val_accuracy)
    }

    /// The test set's loss (with the L2 penalty), as [`EpochRow::test_accuracy`].
    pub fn test_loss(&self) -> f64 {
        self.test_loss.unwrap_or(self.val_loss)
    }
}

/// Appends one row (with the header when the file is new) and syncs it to disk.
pub fn append(path: &Path, row: &EpochRow) -> Result<()> {
    let is_new = !path.exists() || std::fs::metadata(path)?.len() == 0;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} for appending", path.display()))?;
    let mut writer = csv::WriterBuilder::new().has_headers(is_new).from_writer(file);
    writer.serialize(row).with_context(|| format!("cannot write to {}", path.display()))?;
    let file = writer.into_inner().map_err(|e| anyhow::anyhow!("cannot flush {}: {}", path.display(), e.error()))?;
    file.sync_all()?;
    Ok(())
}

/// Replaces the file with exactly `rows` (atomically); with no rows, the header of a run that
/// has the test columns (`test_columns`) or not.
pub fn rewrite(path: &Path, rows: &[EpochRow], test_columns: bool) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        writer.write_record(header(test_columns))?;
    }
    for row in rows {
        writer.serialize(row)?;
    }
    let bytes = writer.into_inner().map_err(|e| anyhow::anyhow!("cannot format {}: {}", path.display(), e.error()))?;
    atomic_file::write_bytes(path, "metrics", &bytes)
}

pub const HEADER: [&str; 10] = [
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "ce_loss",
    "val_ce_loss",
    "epoch_seconds",
    "images_per_second",
];

/// The columns a test set of its own adds, after [`HEADER`].
pub const TEST_COLUMNS: [&str; 2] = ["test_loss", "test_accuracy"];

/// The header of a run with or without the test columns.
pub fn header(test_columns: bool) -> Vec<&'static str> {
    let extra = if test_columns { &TEST_COLUMNS[..] } else { &[] };
    HEADER.iter().chain(extra).copied().collect()
}

pub fn read(path: &Path) -> Result<Vec<EpochRow>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    reader
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.with_context(|| format!("{}: row {} is malformed", path.display(), i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize) -> EpochRow {
        EpochRow {
            epoch,
            loss: 1.5,
            accuracy: 0.4,
            val_loss: 1.6,
            val_accuracy: 0.38,
            lr: 0.01,
            ce_loss: 1.4,
            val_ce_loss: 1.5,
            epoch_seconds: 3.0,
            images_per_second: 100.0,
            test_loss: None,
            test_accuracy: None,
        }
    }

    fn with_test(epoch: usize) -> EpochRow {
        EpochRow { test_loss: Some(1.7), test_accuracy: Some(0.37), ..row(epoch) }
    }

    #[test]
    fn append_then_read_round_trips_with_keras_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        append(&path, &row(0)).unwrap();
        append(&path, &row(1)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&HEADER.join(",")), "{text}");
        assert_eq!(read(&path).unwrap(), vec![row(0), row(1)]);
        rewrite(&path, &[row(0)], false).unwrap();
        assert_eq!(read(&path).unwrap(), vec![row(0)]);
    }

    #[test]
    fn the_test_columns_come_last_and_only_when_the_run_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        append(&path, &with_test(0)).unwrap();
        append(&path, &with_test(1)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().next().unwrap(), header(true).join(","));
        assert!(text.lines().nth(1).unwrap().ends_with(",1.7,0.37"), "{text}");
        assert_eq!(read(&path).unwrap(), vec![with_test(0), with_test(1)]);
        assert_eq!((with_test(0).test_accuracy(), row(0).test_accuracy()), (0.37, 0.38));
        // A resume before the first epoch's end rewrites the header alone, then appends.
        rewrite(&path, &[], true).unwrap();
        append(&path, &with_test(0)).unwrap();
        assert_eq!(read(&path).unwrap(), vec![with_test(0)]);
        rewrite(&path, &[], false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim_end(), HEADER.join(","));
    }
}
