//! `resnext bench`: measured images per second of the real training step, of evaluation and
//! of the data path alone. The README's performance figures come from this command.
use crate::batches::EpochPlan;
use crate::compute::{Compute, ComputeRequest};
use crate::config::Experiment;
use crate::data::{self, Cifar10, Normalizer, Split, RECORDS_PER_FILE};
use crate::host;
use crate::learner::Learner;
use crate::scores;
use crate::torch_ext;
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
    let compute = Compute::new(&request.compute, experiment.precision);
    let device = compute.device;
    let batch = request.batch.unwrap_or(match request.mode {
        Mode::Eval => scores::default_batch(device),
        _ => experiment.batch_size,
    });
    let (steps, warmup, mode) = (request.steps, request.warmup, request.mode);
    // One more step than timed: its ATen ops are counted.
    let needed = batch * (steps + warmup + 1);
    let (split, source) = images(&request.data_dir, needed)?;
    let split = split.to_device(device);
    let experiment = Experiment { batch_size: batch, ..experiment.clone() };
    let mut learner = Learner::new(&experiment, &compute);
    let plan = EpochPlan::new(&experiment, 0, split.len(), device);
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
    let (_, ops) = torch_ext::count_ops(|| sync(device, &one_step(warmup + steps)));
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let per = if mode == Mode::Eval { "batch" } else { "step" };
    Ok(format!(
        "{}, {} intra-op threads, libtorch {}, batch {batch}, {} ({}), model {}x{}x{}d, {}\n\
         images: {source}\n\
         ATen ops per {per}: {ops}\n\
         RESULT mode={:?} precision={} median {:.1} ms/step, {:.1} images/s (best {:.1}) over {} steps after {} \
         warm-up; peak RSS {:.0} MiB",
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
