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
use serde::Serialize;
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

/// One measurement: what ran and how fast. `bench/torch_peer.py --json` writes the fields from
/// `program` to `profile` for the peer too, so that scripts read both alike.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub program: &'static str,
    pub mode: &'static str,
    pub precision: &'static str,
    /// As PyTorch writes it: cpu, cuda:0.
    pub device: String,
    pub batch: usize,
    pub threads: i32,
    /// Timed steps, after `warmup` untimed ones.
    pub steps: usize,
    pub warmup: usize,
    /// The median step.
    pub ms_per_step: f64,
    /// The batch over the median step.
    pub images_per_second: f64,
    /// The batch over the fastest step.
    pub best_images_per_second: f64,
    pub peak_rss_mib: f64,
    /// ATen operators dispatched by one step.
    pub aten_ops_per_step: u64,
    /// The peer's compile time; never ours.
    pub first_step_seconds: Option<f64>,
    pub profile: Option<Profile>,
    pub libtorch: &'static str,
    /// The experiment as named, and its network.
    pub experiment: String,
    pub model: String,
    /// Device, precision, memory format, cuDNN benchmark, TF32 and fusing, in words.
    pub settings: String,
    pub malloc: String,
    /// Where the images came from: CIFAR-10's folder, or random.
    pub images: String,
}

/// Where the operators' self time went over some recorded steps, per step.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub steps: usize,
    pub ms_per_step: f64,
    /// By operator class, the largest first.
    pub classes: Vec<ProfileRow>,
    /// The ten slowest operators.
    pub ops: Vec<ProfileRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfileRow {
    pub name: String,
    pub ms_per_step: f64,
    pub percent: f64,
    /// An operator's calls; a class has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_per_step: Option<usize>,
}

pub fn run(request: &BenchRequest) -> Result<Measurement> {
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
    let profile = (request.profile > 0).then(|| {
        let first = warmup + steps + 1;
        let n = request.profile;
        let (_, records) = recorder::record_ops(|| (first..first + n).for_each(|step| sync(device, &one_step(step))));
        profile(&records, n)
    });
    seconds.sort_by(f64::total_cmp);
    // The middle step, or the mean of the middle two, as Python's statistics.median gives the peer's.
    let middle = seconds.len() / 2;
    let median = if seconds.len() % 2 == 1 { seconds[middle] } else { (seconds[middle - 1] + seconds[middle]) / 2.0 };
    let model = &experiment.model;
    Ok(Measurement {
        program: "resnext",
        mode: mode.name(),
        precision: compute.precision.name(),
        device: match device {
            Device::Cuda(index) => format!("cuda:{index}"),
            _ => "cpu".into(),
        },
        batch,
        threads: tch::get_num_threads(),
        steps,
        warmup,
        ms_per_step: median * 1000.0,
        images_per_second: batch as f64 / median,
        best_images_per_second: batch as f64 / seconds[0],
        peak_rss_mib: peak_rss_mib(),
        aten_ops_per_step: ops,
        first_step_seconds: None,
        profile,
        libtorch: host::LIBTORCH_VERSION,
        experiment: request.named.clone(),
        model: format!("{}x{}x{}d", model.depth, model.cardinality, model.width),
        settings: compute.describe(),
        malloc: host::malloc_tuning().unwrap_or_else(|| "default malloc".into()),
        images: source,
    })
}

impl Mode {
    /// Its name, on the command line and in the JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Eval => "eval",
            Mode::Data => "data",
        }
    }
}

impl Measurement {
    /// The text for people: the settings, the ATen op count, the RESULT line and any profile.
    pub fn to_text(&self) -> String {
        let per = if self.mode == Mode::Eval.name() { "batch" } else { "step" };
        let mut text = format!(
            "{}, {} intra-op threads, libtorch {}, batch {}, {}, model {}, {}\n\
             images: {}\n\
             ATen ops per {per}: {}\n\
             RESULT mode={} precision={} median {:.1} ms/step, {:.1} images/s (best {:.1}) over {} steps after {} \
             warm-up; peak RSS {:.0} MiB",
            self.settings,
            self.threads,
            self.libtorch,
            self.batch,
            self.experiment,
            self.model,
            self.malloc,
            self.images,
            self.aten_ops_per_step,
            self.mode,
            self.precision,
            self.ms_per_step,
            self.images_per_second,
            self.best_images_per_second,
            self.steps,
            self.warmup,
            self.peak_rss_mib
        );
        if let Some(profile) = &self.profile {
            text += &profile.to_text();
        }
        text
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a measurement always serialises")
    }
}

impl Profile {
    /// Lines after the RESULT line, as `bench/torch_peer.py --profile` prints the peer's.
    fn to_text(&self) -> String {
        let mut text = format!("\nPROFILE {} steps, {:.1} ms/step of operator self time", self.steps, self.ms_per_step);
        for row in &self.classes {
            text += &format!("\nPROFILE class {:<22} {:>5.1}% {:>8.1} ms/step", row.name, row.percent, row.ms_per_step);
        }
        for row in &self.ops {
            text += &format!(
                "\nPROFILE op {:<40} {:>5.1}% {:>8.1} ms/step {:>5} calls/step",
                row.name,
                row.percent,
                row.ms_per_step,
                row.calls_per_step.unwrap_or(0)
            );
        }
        text
    }
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

/// Self time by operator class and the ten slowest operators, per step.
fn profile(records: &[recorder::OpRecord], steps: usize) -> Profile {
    let total: f64 = records.iter().map(|r| r.self_time.as_secs_f64()).sum();
    let row = |name: &str, seconds: f64, calls_per_step| ProfileRow {
        name: name.to_string(),
        ms_per_step: seconds * 1000.0 / steps as f64,
        percent: 100.0 * seconds / total,
        calls_per_step,
    };
    let mut classes: Vec<(&str, f64)> = Vec::new();
    for record in records {
        let class = op_class(&record.name);
        match classes.iter_mut().find(|(name, _)| *name == class) {
            Some((_, seconds)) => *seconds += record.self_time.as_secs_f64(),
            None => classes.push((class, record.self_time.as_secs_f64())),
        }
    }
    classes.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut slowest: Vec<&recorder::OpRecord> = records.iter().collect();
    slowest.sort_by_key(|record| std::cmp::Reverse(record.self_time));
    Profile {
        steps,
        ms_per_step: total * 1000.0 / steps as f64,
        classes: classes.into_iter().map(|(class, seconds)| row(class, seconds, None)).collect(),
        ops: slowest
            .into_iter()
            .take(10)
            .map(|r| row(&r.name, r.self_time.as_secs_f64(), Some(r.calls as usize / steps)))
            .collect(),
    }
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
            record("aten::empty", 50, 10),
            record("aten::mkldnn_convolution", 200, 4),
            record("aten::convolution_backward", 600, 4),
            record("resnext::batch_norm_relu", 150, 2),
        ];
        let table = profile(&records, 2).to_text();
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
        let ops: Vec<&str> = lines[4..].iter().map(|l| l.split_whitespace().nth(2).unwrap()).collect();
        assert_eq!(
            ops,
            ["aten::convolution_backward", "aten::mkldnn_convolution", "resnext::batch_norm_relu", "aten::empty"]
        );
    }
}
