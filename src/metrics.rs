//! Per-epoch metrics: the format of `metrics.csv`, one row per epoch, Keras CSVLogger names
//! first.
use crate::atomic_file;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One epoch. `loss` and `val_loss` include the L2 penalty (as Keras reports them); the
/// `*ce_loss` columns are the plain cross-entropy. `epoch` is 0-based, as in Keras.
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

/// Replaces the file with exactly `rows` (atomically).
pub fn rewrite(path: &Path, rows: &[EpochRow]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        writer.write_record(HEADER)?;
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
        }
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
        rewrite(&path, &[row(0)]).unwrap();
        assert_eq!(read(&path).unwrap(), vec![row(0)]);
    }
}
