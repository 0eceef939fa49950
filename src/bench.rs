//! `resnext bench`: measured images per second of the real training step, of evaluation and
//! of the data path alone. The README's performance figures come from this command.
use crate::compute::{Compute, ComputeRequest};
use crate::config::Experiment;
use crate::data::{self, Cifar10, Normalizer, Split, RECORDS_PER_FILE};
use crate::host;
use crate::torch_ext::recorder;
use crate::train::batches::PassPlan;
use crate::train::learner::Learner;
use crate::train::scoring;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// What `resnext bench` is asked to time.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    pub experiment: Experiment,
    /// The experiment as the user named it (a name or a path), for the report.
    pub named: String,
    pub mode: Mode,
    pub compute: ComputeRequest,
    /// Batch size [default: the config's for train and data, the evaluation batch for eval].
    pub batch: Option<usize>,
    /// Timed steps (the median is reported).
    pub steps: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Steps recorded by operator after the timed ones (0: none).
    pub profile: usize,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Augmentation, forward, backward and SGD update.
    Train,
    /// Forward pass in inference mode.
    Eval,
    /// Shuffle, gather, normalise and augment only.
    Data,
}

pub fn run(request: &BenchRequest) -> Result<String> {
    let experiment = &request.experiment;
    let compute = Compute::new(&request.compute, request.compute.precision_for(experiment))?;
    let device = compute.device;
    let batch = request.batch.unwrap_or(match request.mode {
        Mode::Eval => scoring::default_batch(device),
        _ => experiment.batch_size,
    });
    let (steps, warmup, mode) = (request.steps, request.warmup, request.mode);
    // One more step than timed (its ATen ops are counted), and those recorded by operator.
    let needed = batch * (steps + warmup + 1 + request.profile);
    let (split, source) = images(&request.data_dir, needed)?;
    let split = split.to_device(device);
    let experiment = Experiment { batch_size: batch, ..experiment.clone() };
    let mut learner = Learner::new(&experiment, &compute);
    let plan = PassPlan::new(&experiment, 0, split.len(), device);
    let normalizer = Normalizer::new(device);
    let mut one_step = |step: usize| match mode {
        Mode::Train => {
            let (images, labels) = plan.batch(step, &split);
            // Packed as the training loop packs them.
            learner.step(&images, &labels, 0.01, step, &compute).pack()
        }
        Mode::Eval => {
            let images = normalizer.apply(&split.images.narrow(0, (step * batch) as i64, batch as i64));
            let network = learner.inference_network();
            tch::no_grad(|| compute.autocast(|| network.infer(&images, experiment.test_time_flip)))
        }
        Mode::Data => plan.batch(step, &split).0,
    };

    let mut seconds = Vec::new();
    for step in 0..warmup + steps {
        let start = Instant::now();
        sync(device, &one_step(step));
        if step >= warmup {
            seconds.push(start.elapsed().as_secs_f64());
        }
    }
    let (_, ops) = recorder::count_ops(|| sync(device, &one_step(warmup + steps)));
    let profile = match request.profile {
        0 => String::new(),
        n => {
            let first = warmup + steps + 1;
            let (_, records) =
                recorder::record_ops(|| (first..first + n).for_each(|step| sync(device, &one_step(step))));
            profile_table(&records, n)
        }
    };
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let per = if mode == Mode::Eval { "batch" } else { "step" };
    Ok(format!(
        "{}, {} intra-op threads, libtorch {}, batch {batch}, {} ({}), model {}x{}x{}d, {}\n\
         images: {source}\n\
         ATen ops per {per}: {ops}\n\
         RESULT mode={:?} precision={} median {:.1} ms/step, {:.1} images/s (best {:.1}) over {} steps after {} \
         warm-up; peak RSS {:.0} MiB{profile}",
        compute.describe(),
        tch::get_num_threads(),
        host::LIBTORCH_VERSION,
        experiment.name,
        request.named,
        experiment.model.depth,
        experiment.model.cardinality,
        experiment.model.width,
        host::malloc_tuning().unwrap_or_else(|| "default malloc".into()),
        mode,
        compute.precision.name(),
        median * 1000.0,
        batch as f64 / median,
        batch as f64 / seconds[0],
        steps,
        warmup,
        peak_rss_mib()
    ))
}

/// The class of an operator, for a profile: the same classes as `bench/torch_peer.py
/// --profile`, so that the two tables line up.
pub fn op_class(name: &str) -> &'static str {
    let op = name.rsplit("::").next().unwrap_or(name);
    if name.starts_with("resnext::batch_norm_relu") {
        "fused BatchNorm-ReLU"
    } else if op.contains("conv") {
        "convolution"
    } else if op.contains("batch_norm") {
        "BatchNorm"
    } else if op.contains("relu") || op.starts_with("threshold") || op.starts_with("clamp") {
        "ReLU"
    } else if op == "add" || op == "add_" {
        "add"
    } else if op.contains("copy") || op == "to" || op == "contiguous" || op == "clone" {
        "copies"
    } else if op.starts_with("_foreach") {
        "optimizer (foreach)"
    } else {
        "other"
    }
}

/// Self time by operator class and the ten slowest operators, per step, as lines after the
/// RESULT line.
fn profile_table(records: &[recorder::OpRecord], steps: usize) -> String {
    let total: f64 = records.iter().map(|r| r.self_time.as_secs_f64()).sum();
    let per_step_ms = |seconds: f64| seconds * 1000.0 / steps as f64;
    let mut classes: Vec<(&str, f64)> = Vec::new();
    for record in records {
        let class = op_class(&record.name);
        match classes.iter_mut().find(|(name, _)| *name == class) {
            Some((_, seconds)) => *seconds += record.self_time.as_secs_f64(),
            None => classes.push((class, record.self_time.as_secs_f64())),
        }
    }
    classes.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut table = format!("\nPROFILE {steps} steps, {:.1} ms/step of operator self time", per_step_ms(total));
    for (class, seconds) in classes {
        table += &format!(
            "\nPROFILE class {class:<22} {:>5.1}% {:>8.1} ms/step",
            100.0 * seconds / total,
            per_step_ms(seconds)
        );
    }
    for record in records.iter().take(10) {
        let seconds = record.self_time.as_secs_f64();
        table += &format!(
            "\nPROFILE op {:<40} {:>5.1}% {:>8.1} ms/step {:>5} calls/step",
            record.name,
            100.0 * seconds / total,
            per_step_ms(seconds),
            record.calls as usize / steps
        );
    }
    table
}

/// Real CIFAR-10 training images when the data folder exists, else random ones (the speed is
/// the same; only the loss values differ).
fn images(dir: &Path, needed: usize) -> Result<(Split, String)> {
    if dir.is_dir() {
        // The speed does not depend on which images: the batches a folder has are enough.
        let batches = data::leading_train_batches(dir).max(1);
        let train = Cifar10::load(dir, Some(needed.min(batches * RECORDS_PER_FILE)))?.train;
        let repeats = needed.div_ceil(train.len()) as i64;
        let split = Split { images: train.images.repeat([repeats, 1, 1, 1]), labels: train.labels.repeat([repeats]) };
        return Ok((split.first(needed), format!("CIFAR-10 from {}", dir.display())));
    }
    let n = needed as i64;
    let split = Split {
        images: Tensor::randint(256, [n, 3, 32, 32], (Kind::Uint8, Device::Cpu)),
        labels: Tensor::randint(10, [n], (Kind::Int64, Device::Cpu)),
    };
    Ok((split, format!("random (no CIFAR-10 at {})", dir.display())))
}

/// Waits for the device, so a step's time includes its GPU work.
fn sync(device: Device, output: &Tensor) {
    match device {
        Device::Cuda(index) => tch::Cuda::synchronize(index as i64),
        _ => {
            let _ = output.numel();
        }
    }
}

/// The process's peak resident memory (getrusage).
pub fn peak_rss_mib() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torch_ext::recorder::OpRecord;
    use std::time::Duration;

    #[test]
    fn operators_fall_in_the_classes_the_peer_uses() {
        // The same names as tests/python/test_peer.py's operator classes test.
        for (name, class) in [
            ("aten::convolution_backward", "convolution"),
            ("aten::mkldnn_convolution", "convolution"),
            ("aten::native_batch_norm_backward", "BatchNorm"),
            ("aten::threshold_backward", "ReLU"),
            ("aten::clamp_min_", "ReLU"),
            ("aten::add_", "add"),
            ("aten::copy_", "copies"),
            ("aten::_foreach_add_", "optimizer (foreach)"),
            ("aten::empty", "other"),
            ("resnext::batch_norm_relu_backward", "fused BatchNorm-ReLU"),
        ] {
            assert_eq!(op_class(name), class, "{name}");
        }
    }

    #[test]
    fn the_profile_table_sums_classes_per_step_and_lists_the_slowest_operators_first() {
        let record = |name: &str, ms: u64, calls| OpRecord {
            name: name.into(),
            calls,
            outermost: calls,
            self_time: Duration::from_millis(ms),
        };
        let records = [
            record("aten::convolution_backward", 600, 4),
            record("aten::mkldnn_convolution", 200, 4),
            record("resnext::batch_norm_relu", 150, 2),
            record("aten::empty", 50, 10),
        ];
        let table = profile_table(&records, 2);
        let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines[0], "PROFILE 2 steps, 500.0 ms/step of operator self time");
        assert!(
            lines[1].starts_with("PROFILE class convolution") && lines[1].ends_with(" 80.0%    400.0 ms/step"),
            "{table}"
        );
        assert!(lines[2].contains("fused BatchNorm-ReLU") && lines[2].contains("15.0%"), "{table}");
        assert!(
            lines[4].starts_with("PROFILE op aten::convolution_backward") && lines[4].ends_with("2 calls/step"),
            "{table}"
        );
        assert_eq!(lines.len(), 1 + 3 + 4);
    }
}
