//! A built network: the model's module and variables on a device, in the memory format that
//! is fastest there; rebuilt from a run folder for inference; evaluated on a split.
use crate::checkpoint::Checkpoint;
use crate::config::Experiment;
use crate::data::{self, Split};
use crate::model::{self, Parameter};
use crate::run_dir::{CheckpointName, RunDir};
use anyhow::{ensure, Result};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// A built network with its variables.
#[derive(Debug)]
pub struct Network {
    pub vs: nn::VarStore,
    pub net: nn::SequentialT,
    /// Whether weights and inputs use the channels-last (NHWC) memory format.
    pub channels_last: bool,
}

impl Network {
    /// Builds the model of `experiment` on `device`, weights drawn from `experiment.seed`.
    ///
    /// On CPU the weights are stored channels-last: oneDNN's grouped and 1x1 convolutions
    /// are several times faster in that format than in the default one (see README,
    /// Performance). The values, names and checkpoints are the same either way.
    pub fn new(experiment: &Experiment, device: Device) -> Network {
        tch::manual_seed(experiment.seed as i64);
        let vs = nn::VarStore::new(device);
        let net = model::resnext(&vs.root(), &experiment.model);
        let channels_last = device == Device::Cpu;
        if channels_last {
            for (_, mut var) in vs.variables() {
                if var.dim() == 4 {
                    tch::no_grad(|| var.set_data(&to_channels_last(&var)));
                }
            }
        }
        Network { vs, net, channels_last }
    }

    /// Rebuilds a run's network from its `config.json` and loads its best or last weights.
    pub fn from_run(run: &RunDir, which: CheckpointName, device: Device) -> Result<(Experiment, Network)> {
        let experiment = run.load_experiment()?;
        let path = run.checkpoint(which);
        ensure!(
            path.is_file(),
            "{} has no {} yet: train at least one epoch first",
            run.path().display(),
            path.display()
        );
        let network = Network::new(&experiment, device);
        Checkpoint::load(&path)?.restore_model(&network.vs, &path)?;
        Ok((experiment, network))
    }

    /// The trainable variables, sorted by name, each marked kernel or not by the model.
    pub fn parameters(&self) -> Vec<Parameter> {
        model::parameters(&self.vs)
    }

    /// The conv and dense kernels: what the L2 penalty applies to.
    pub fn kernels(&self) -> Vec<Tensor> {
        self.parameters().into_iter().filter(|p| p.kernel).map(|p| p.tensor).collect()
    }
}

/// The same values with NHWC strides (tch 0.24 has no memory-format API; convolutions keep
/// the strides they are given).
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

impl ModuleT for Network {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if self.channels_last {
            self.net.forward_t(&to_channels_last(xs), train)
        } else {
            self.net.forward_t(xs, train)
        }
    }
}

/// Mean cross-entropy, accuracy and the logits `[N, 10]` of `net` on `split`, in inference mode.
pub fn evaluate(net: &impl ModuleT, split: &Split, batch_size: usize) -> (f64, f64, Tensor) {
    tch::no_grad(|| {
        let mut ce_sum = Tensor::zeros([], (Kind::Double, split.images.device()));
        let mut logits_per_batch = Vec::new();
        let n = split.len() as i64;
        for start in (0..n).step_by(batch_size) {
            let size = (batch_size as i64).min(n - start);
            let images = data::normalize(&split.images.narrow(0, start, size));
            let logits = net.forward_t(&images, false);
            let labels = split.labels.narrow(0, start, size);
            ce_sum += logits
                .cross_entropy_loss::<Tensor>(&labels, None, tch::Reduction::Sum, -100, 0.0)
                .to_kind(Kind::Double);
            logits_per_batch.push(logits);
        }
        let logits = Tensor::cat(&logits_per_batch, 0);
        let correct = logits.argmax(-1, false).eq_tensor(&split.labels).sum(Kind::Double);
        (f64::try_from(ce_sum).unwrap() / n as f64, f64::try_from(correct).unwrap() / n as f64, logits)
    })
}

/// Evaluation batch: large enough to keep a GPU busy; on a CPU, 64 measured fastest (its
/// activations stay in cache; see README, Performance).
pub fn eval_batch_size(device: Device) -> usize {
    if device.is_cuda() {
        1000
    } else {
        64
    }
}
