//! `resnext eval`: a trained run's test loss and accuracy, per class, and its confusion matrix.
pub mod confusion_matrix;

use crate::atomic_file;
use crate::compute::ComputeRequest;
use crate::data;
use crate::runs::run_dir::{CheckpointName, RunDir};
use crate::runs::trained_run::TrainedRun;
use crate::train::scoring::{self, Scoring};
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// What `resnext eval` is asked to do.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub run: PathBuf,
    pub checkpoint: CheckpointName,
    pub data_dir: PathBuf,
    pub compute: ComputeRequest,
    /// Images per batch [default: [`scoring::default_batch`]].
    pub batch: Option<usize>,
    /// Evaluate the first N test images only.
    pub limit: Option<usize>,
    /// Also write the logits and labels to this JSON file.
    pub logits_json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub run: String,
    pub checkpoint: String,
    pub images: usize,
    /// Keras-style: the training objective (cross-entropy, label-smoothed when the recipe
    /// smooths) plus the L2 penalty.
    pub loss: f64,
    pub ce_loss: f64,
    pub accuracy: f64,
    /// Whether each image's logits were averaged with its mirror image's.
    pub test_time_flip: bool,
    pub per_class_accuracy: Vec<(String, f64)>,
    pub confusion: Vec<[i64; 10]>,
    /// Where the confusion matrix figure was written.
    pub confusion_png: String,
}

pub fn run(request: &EvalRequest) -> Result<Report> {
    let (run, which) = (RunDir::new(&request.run), request.checkpoint);
    let TrainedRun { experiment, compute, network } = TrainedRun::load(&run, which, &request.compute)?;
    let test = data::load_test(&request.data_dir)?.first(request.limit.unwrap_or(usize::MAX)).to_device(compute.device);
    let scores = scoring::score(&network, &test, &compute, Scoring::of(&experiment, request.batch, compute.device));
    let (accuracy, logits) = (scores.accuracy, &scores.logits);

    let labels = Vec::<i64>::try_from(test.labels.to_device(Device::Cpu))?;
    let predicted = Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))?;
    let mut confusion = [[0i64; 10]; 10];
    for (&truth, &guess) in labels.iter().zip(&predicted) {
        confusion[truth as usize][guess as usize] += 1;
    }
    let classes = data::class_names(&request.data_dir);
    let per_class_accuracy = classes
        .iter()
        .enumerate()
        .map(|(i, name)| (name.clone(), confusion[i][i] as f64 / confusion[i].iter().sum::<i64>().max(1) as f64))
        .collect();
    let checkpoint = which.label().to_string();
    confusion_matrix::draw(
        &run.confusion_matrix(),
        &format!("{}: {checkpoint} checkpoint, test accuracy {:.2}%", experiment.name, 100.0 * accuracy),
        &confusion,
        &classes,
    )?;
    if let Some(path) = &request.logits_json {
        write_logits(path, logits, &labels)?;
    }
    Ok(Report {
        run: request.run.display().to_string(),
        checkpoint,
        images: labels.len(),
        loss: scores.keras_loss(&network, experiment.optimizer.l2),
        ce_loss: scores.ce,
        test_time_flip: experiment.test_time_flip,
        accuracy,
        per_class_accuracy,
        confusion: confusion.to_vec(),
        confusion_png: run.confusion_matrix().display().to_string(),
    })
}

fn write_logits(path: &Path, logits: &Tensor, labels: &[i64]) -> Result<()> {
    let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(logits.to_device(Device::Cpu).to_kind(Kind::Float))?;
    let json = serde_json::json!({"logits": rows, "labels": labels});
    atomic_file::write_bytes(path, "the logits", json.to_string().as_bytes())
}
impl Report {
    pub fn to_text(&self) -> String {
        let flip = if self.test_time_flip { ", each averaged with its mirror image" } else { "" };
        let mut text = format!(
            "{} ({} checkpoint) on {} test images{flip}\nloss (with L2) {:.4}  cross-entropy {:.4}  accuracy {:.2}%\n\nper class:\n",
            self.run,
            self.checkpoint,
            self.images,
            self.loss,
            self.ce_loss,
            100.0 * self.accuracy
        );
        for (name, accuracy) in &self.per_class_accuracy {
            text.push_str(&format!("  {name:<12} {:6.2}%\n", 100.0 * accuracy));
        }
        text.push_str(&format!("\nconfusion matrix: {}", self.confusion_png));
        text
    }
}
