//! `resnext predict`: the top-3 classes of any PNG or JPEG, resized to 32x32 when needed.
use crate::compute::ComputeRequest;
use crate::data::{self, Normalizer};
use crate::runs::run_dir::{CheckpointName, RunDir};
use crate::runs::trained_run::TrainedRun;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Reads an image as u8 `[1, 3, 32, 32]` (RGB; alpha dropped; bilinear resize).
pub fn load_image(path: &Path) -> Result<Tensor> {
    let image = image::open(path).with_context(|| format!("cannot read image {}", path.display()))?.to_rgb8();
    let image = if image.dimensions() == (32, 32) {
        image
    } else {
        image::imageops::resize(&image, 32, 32, image::imageops::FilterType::Triangle)
    };
    // HWC bytes -> CHW
    Ok(Tensor::from_slice(image.as_raw()).view([1, 32, 32, 3]).permute([0, 3, 1, 2]).contiguous())
}

/// (class name, probability) of the three most likely classes of each image, as the `which`
/// checkpoint of `run` classifies it.
pub fn predict(
    images: &[PathBuf],
    run: &Path,
    which: CheckpointName,
    request: &ComputeRequest,
) -> Result<Vec<Vec<(String, f64)>>> {
    let TrainedRun { experiment, compute, network } = TrainedRun::load(&RunDir::new(run), which, request)?;
    let device = compute.device;
    let normalizer = Normalizer::new(device);
    images
        .iter()
        .map(|path| {
            let x = normalizer.apply(&load_image(path)?.to_device(device));
            let logits = tch::no_grad(|| compute.autocast(|| network.infer(&x, experiment.test_time_flip)));
            let probabilities = logits.softmax(-1, Kind::Float).squeeze_dim(0);
            let (values, indices) = probabilities.topk(3, -1, true, true);
            let values = Vec::<f64>::try_from(values.to_kind(Kind::Double))?;
            let indices = Vec::<i64>::try_from(indices)?;
            Ok(indices.iter().zip(values).map(|(&i, p)| (data::CLASSES[i as usize].to_string(), p)).collect())
        })
        .collect()
}
