//! A built network: the model's module and variables on a device, in the memory format that
//! is fastest there; rebuilt from a run folder for inference; evaluated on a split.
use crate::checkpoint::Checkpoint;
use crate::config::Experiment;
use crate::data::{Normalizer, Split};
use crate::model::{self, Parameter};
use crate::run_dir::{CheckpointName, RunDir};
use crate::runtime::Compute;
use crate::torch_ext::{self, MemoryFormat};
use anyhow::{ensure, Result};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// A built network with its variables.
#[derive(Debug)]
pub struct Network {
    pub vs: nn::VarStore,
    pub net: nn::SequentialT,
    /// The memory format of the 4-D weights and of the inputs.
    pub memory_format: MemoryFormat,
}

impl Network {
    /// Builds the model of `experiment` on the device of `compute`, in its memory format,
    /// weights drawn from `experiment.seed` (on the CPU generator: the same start everywhere).
    ///
    /// On CPU the default is channels-last: oneDNN's grouped and 1x1 convolutions are several
    /// times faster in that format than in the default one (see README, Performance). The
    /// values, names and checkpoints are the same either way.
    pub fn new(experiment: &Experiment, compute: &Compute) -> Network {
        tch::manual_seed(experiment.seed as i64);
        let vs = nn::VarStore::new(compute.device);
        let net = model::resnext(&vs.root(), &experiment.model);
        let memory_format = compute.memory_format;
        if memory_format != MemoryFormat::Contiguous {
            for (_, mut var) in vs.variables() {
                if var.dim() == 4 {
                    tch::no_grad(|| var.set_data(&torch_ext::contiguous(&var, memory_format)));
                }
            }
        }
        Network { vs, net, memory_format }
    }

    /// Rebuilds a run's network from its `config.json` and loads its best or last weights.
    pub fn from_run(run: &RunDir, which: CheckpointName, compute: &Compute) -> Result<(Experiment, Network)> {
        let experiment = run.load_experiment()?;
        let path = run.checkpoint(which);
        ensure!(
            path.is_file(),
            "{} has no {} yet: train at least one epoch first",
            run.path().display(),
            path.display()
        );
        let network = Network::new(&experiment, compute);
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

impl ModuleT for Network {
    /// Logits in float32 (under bf16 autocast the network computes them in bf16).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        // Convolutions keep the strides they are given: the input decides the format.
        let logits = self.net.forward_t(&torch_ext::contiguous(xs, self.memory_format), train);
        match logits.kind() {
            Kind::Float => logits,
            _ => logits.to_kind(Kind::Float),
        }
    }
}

/// Mean cross-entropy, accuracy and the logits `[N, 10]` of `net` on `split`, in inference
/// mode, in batches of `compute.eval_batch` under its precision.
pub fn evaluate(net: &impl ModuleT, split: &Split, compute: &Compute) -> (f64, f64, Tensor) {
    tch::no_grad(|| {
        let mut ce_sum = Tensor::zeros([], (Kind::Double, split.images.device()));
        let mut logits_per_batch = Vec::new();
        let n = split.len() as i64;
        let batch_size = compute.eval_batch;
        let normalizer = Normalizer::new(split.images.device());
        for start in (0..n).step_by(batch_size) {
            let size = (batch_size as i64).min(n - start);
            let images = normalizer.apply(&split.images.narrow(0, start, size));
            let logits = compute.autocast(|| net.forward_t(&images, false));
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
