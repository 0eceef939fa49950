//! `resnext export`: a TorchScript file for Python (`torch.jit.load`) plus a JSON file with
//! what a user needs to feed it raw images: the normalisation constants and class names.
use crate::atomic_file;
use crate::compute::ComputeRequest;
use crate::config::Precision;
use crate::data;
use crate::runs::run_dir::{CheckpointName, RunDir};
use crate::runs::trained_run::TrainedRun;
use crate::torch_ext::MemoryFormat;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::{CModule, Device, Kind, Tensor};

/// Writes `out` (TorchScript, eval mode, NCHW float input of any batch size, logits out;
/// default `<run>/model.pt`) and `<out>.json` beside it from the run's `which` checkpoint.
/// Returns both paths. The module computes what `eval` scores: the averaged weights when the
/// recipe has an average, and with flip test-time augmentation the mean of each image's and its
/// mirror image's logits (so one call of the module is one prediction, whatever the recipe).
pub fn export(run: &Path, out: Option<&Path>, which: CheckpointName) -> Result<(PathBuf, PathBuf)> {
    let run = RunDir::new(run);
    let out = out.map_or_else(|| run.export(), Path::to_path_buf);
    // Traced on the CPU in float32 and NCHW: the file runs anywhere torch.jit.load does.
    let request = ComputeRequest {
        precision: Some(Precision::Fp32),
        memory_format: Some(MemoryFormat::Contiguous),
        ..ComputeRequest::cpu()
    };
    let TrainedRun { experiment, mut network, .. } = TrainedRun::load(&run, which, &request)?;
    // tch traces only modules without trainable variables; the trace bakes the weights in.
    network.vs.freeze();
    let example = Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let net = &network;
    let module = CModule::create_by_tracing("ResNeXt", "forward", &[example], &mut |inputs| {
        vec![net.infer(&inputs[0], experiment.test_time_flip)]
    })
    .context("tracing the network failed")?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    atomic_file::write_atomic(&out, "the TorchScript export", |tmp| Ok(module.save(tmp)?))?;
    let meta_path = PathBuf::from(format!("{}.json", out.display()));
    let meta = serde_json::json!({
        "experiment": experiment.name,
        "checkpoint": which.label(),
        "input": "float32 [N, 3, 32, 32], RGB, channel c = (pixel_0_255 - mean[c]) / std[c]",
        "output": "logits [N, 10]; softmax gives class probabilities",
        "test_time_flip": experiment.test_time_flip,
        "mean": data::MEAN,
        "std": data::STD,
        "classes": data::CLASSES,
        "model": experiment.model,
    });
    atomic_file::write_bytes(&meta_path, "the export's metadata", serde_json::to_string_pretty(&meta)?.as_bytes())?;
    Ok((out.to_path_buf(), meta_path))
}
