//! `resnext export`: a TorchScript file for Python (`torch.jit.load`) plus a JSON file with
//! what a user needs to feed it raw images: the normalisation constants and class names.
use crate::cli::{ComputeArgs, ExportArgs};
use crate::config::Precision;
use crate::data;
use crate::network::Network;
use crate::run_dir::{self, RunDir};
use crate::runtime::Compute;
use crate::torch_ext::MemoryFormat;
use anyhow::{Context, Result};
use std::path::PathBuf;
use tch::{CModule, Device, Kind, Tensor};

/// Writes `<out>` (TorchScript, eval mode, NCHW float input of any batch size, logits out)
/// and `<out>.json` beside it. Returns both paths. The module computes what `eval` scores: the
/// averaged weights when the recipe has an average, and with flip test-time augmentation the
/// mean of each image's and its mirror image's logits (so one call of the module is one
/// prediction, whatever the recipe).
pub fn export(args: &ExportArgs) -> Result<(PathBuf, PathBuf)> {
    let run = RunDir::new(&args.run);
    let which = args.checkpoint.checkpoint;
    let out = args.out.clone().unwrap_or_else(|| run.export());
    // Traced on the CPU in float32 and NCHW: the file runs anywhere torch.jit.load does.
    let compute = Compute::new(&ComputeArgs::default(), Precision::Fp32, None, None)?;
    let compute = Compute { memory_format: MemoryFormat::Contiguous, ..compute };
    let (experiment, mut network) = Network::from_run(&run, which, &compute)?;
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
    run_dir::write_atomic(&out, "the TorchScript export", |tmp| Ok(module.save(tmp)?))?;
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
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta)?)
        .with_context(|| format!("cannot write {}", meta_path.display()))?;
    Ok((out.to_path_buf(), meta_path))
}
