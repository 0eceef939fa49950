//! Per-epoch metrics: the format of `metrics.csv`, one row per epoch, Keras CSVLogger names
//! first. A run that holds out a validation split (config `validation` > 0) has two more
//! columns at the end, `test_loss` and `test_accuracy`, empty after the epochs its test set was
//! not measured (config `test_every`); a run without one has neither (its `val_*` columns are
//! the test set's, as in the blog), and files written before they existed read the same way.
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
    /// out a validation split and measured the test set after this epoch; read by nothing in
    /// training.
    #[serde(default)]
    pub test_loss: Option<f64>,
    #[serde(default)]
    pub test_accuracy: Option<f64>,
}

/// Where a run's test scores are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestSet {
    /// The test set is the validation data (the blog's runs): `val_*`, every epoch.
    Validation,
    /// The run holds out a validation split: the test columns, after the epochs it measured.
    OwnColumns,
}

impl TestSet {
    /// Where the test scores of a run that holds out `validation` training images are.
    pub fn of(validation: usize) -> Self {
        match validation {
            0 => TestSet::Validation,
            _ => TestSet::OwnColumns,
        }
    }
}

impl EpochRow {
    /// The test set's accuracy after this epoch, when it was measured.
    pub fn test_accuracy(&self, set: TestSet) -> Option<f64> {
        match set {
            TestSet::Validation => Some(self.val_accuracy),
            TestSet::OwnColumns => self.test_accuracy,
        }
    }

    /// The test set's loss (with the L2 penalty), as [`EpochRow::test_accuracy`].
    pub fn test_loss(&self, set: TestSet) -> Option<f64> {
        match set {
            TestSet::Validation => Some(self.val_loss),
            TestSet::OwnColumns => self.test_loss,
        }
    }

    /// The row's cells under [`header`]`(test_columns)`: floats in Rust's shortest form that
    /// reads back to the same value, test cells empty when the test set was not measured.
    fn cells(&self, test_columns: bool) -> Vec<String> {
        let mut cells = vec![self.epoch.to_string()];
        let values = [
            self.loss,
            self.accuracy,
            self.val_loss,
            self.val_accuracy,
            self.lr,
            self.ce_loss,
            self.val_ce_loss,
            self.epoch_seconds,
            self.images_per_second,
        ];
        cells.extend(values.map(|v| v.to_string()));
        if test_columns {
            cells.extend([self.test_loss, self.test_accuracy].map(|v| v.map_or(String::new(), |v| v.to_string())));
        }
        cells
    }
}

/// Appends one row (with the header when the file is new) of a run with the test columns
/// (`test_columns`) or without, and syncs it to disk.
pub fn append(path: &Path, row: &EpochRow, test_columns: bool) -> Result<()> {
    let is_new = std::fs::metadata(path).map_or(true, |metadata| metadata.len() == 0);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} for appending", path.display()))?;
    let mut writer = csv::Writer::from_writer(file);
    if is_new {
        writer.write_record(header(test_columns)).with_context(|| format!("cannot write to {}", path.display()))?;
    }
    writer.write_record(row.cells(test_columns)).with_context(|| format!("cannot write to {}", path.display()))?;
    let file = writer.into_inner().map_err(|e| anyhow::anyhow!("cannot flush {}: {}", path.display(), e.error()))?;
    file.sync_all().with_context(|| format!("cannot sync {}", path.display()))
}

/// Replaces the file with exactly `rows` (atomically), under the header of a run that has the
/// test columns (`test_columns`) or not.
pub fn rewrite(path: &Path, rows: &[EpochRow], test_columns: bool) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(header(test_columns))?;
    for row in rows {
        writer.write_record(row.cells(test_columns))?;
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
        append(&path, &row(0), false).unwrap();
        append(&path, &row(1), false).unwrap();
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
        append(&path, &with_test(0), true).unwrap();
        append(&path, &row(1), true).unwrap();
        append(&path, &with_test(2), true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().next().unwrap(), header(true).join(","));
        assert!(text.lines().nth(1).unwrap().ends_with(",1.7,0.37"), "{text}");
        assert!(text.lines().nth(2).unwrap().ends_with(",100,,"), "not measured: empty cells\n{text}");
        assert_eq!(read(&path).unwrap(), vec![with_test(0), row(1), with_test(2)]);
        let own = TestSet::OwnColumns;
        assert_eq!((with_test(0).test_accuracy(own), row(1).test_accuracy(own)), (Some(0.37), None));
        assert_eq!(row(0).test_accuracy(TestSet::Validation), Some(0.38));
        // A resume before the first epoch's end rewrites the header alone, then appends.
        rewrite(&path, &[], true).unwrap();
        append(&path, &with_test(0), true).unwrap();
        assert_eq!(read(&path).unwrap(), vec![with_test(0)]);
        rewrite(&path, &[], false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim_end(), HEADER.join(","));
    }
}
