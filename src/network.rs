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
        Checkpoint::load(&path)?.restore_inference(&network.vs, &path)?;
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

    /// Inference logits of normalised images; with `flip`, the mean of the logits of each
    /// image and of its mirror image (flip test-time augmentation), in one forward pass.
    pub fn infer(&self, images: &Tensor, flip: bool) -> Tensor {
        if !flip {
            return self.forward_t(images, false);
        }
        let both = self.forward_t(&Tensor::cat(&[images, &images.flip([3])], 0), false);
        // [2 B, 10] -> [2, B, 10] -> mean of the two views. Written without the batch size, so
        // an export traced from this function takes any batch size.
        let classes = both.size()[1];
        both.view([2, -1, classes]).mean_dim(&[0i64][..], false, Kind::Float)
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

/// A network's scores on a split.
pub struct Scores {
    /// Mean cross-entropy.
    pub ce: f64,
    /// Mean label-smoothed cross-entropy (the training objective; `ce` without smoothing).
    pub smoothed_ce: f64,
    pub accuracy: f64,
    /// `[N, 10]`, float32.
    pub logits: Tensor,
}

/// `net`'s scores on `split` in inference mode, in batches of `compute.eval_batch` under its
/// precision, with flip test-time augmentation when `flip`.
pub fn evaluate(net: &Network, split: &Split, compute: &Compute, flip: bool, label_smoothing: f64) -> Scores {
    tch::no_grad(|| {
        let device = split.images.device();
        let (mut ce_sum, mut smoothed_sum) =
            (Tensor::zeros([], (Kind::Double, device)), Tensor::zeros([], (Kind::Double, device)));
        let mut logits_per_batch = Vec::new();
        let n = split.len() as i64;
        let batch_size = compute.eval_batch;
        let normalizer = Normalizer::new(device);
        let sum = |logits: &Tensor, labels: &Tensor, smoothing: f64| {
            logits
                .cross_entropy_loss::<Tensor>(labels, None, tch::Reduction::Sum, -100, smoothing)
                .to_kind(Kind::Double)
        };
        for start in (0..n).step_by(batch_size) {
            let size = (batch_size as i64).min(n - start);
            let images = normalizer.apply(&split.images.narrow(0, start, size));
            let logits = compute.autocast(|| net.infer(&images, flip));
            let labels = split.labels.narrow(0, start, size);
            ce_sum += sum(&logits, &labels, 0.0);
            if label_smoothing > 0.0 {
                smoothed_sum += sum(&logits, &labels, label_smoothing);
            }
            logits_per_batch.push(logits);
        }
        let logits = Tensor::cat(&logits_per_batch, 0);
        let correct = logits.argmax(-1, false).eq_tensor(&split.labels).sum(Kind::Double);
        let ce = f64::try_from(ce_sum).unwrap() / n as f64;
        let smoothed_ce = if label_smoothing > 0.0 { f64::try_from(smoothed_sum).unwrap() / n as f64 } else { ce };
        Scores { ce, smoothed_ce, accuracy: f64::try_from(correct).unwrap() / n as f64, logits }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cpu_compute, tiny_experiment};
    use tch::Device;

    #[test]
    fn flip_test_time_augmentation_averages_both_views_and_ignores_which_one_it_got() {
        let (experiment, compute) = (tiny_experiment(&[]), cpu_compute());
        let network = Network::new(&experiment, &compute);
        tch::manual_seed(11);
        let x = Tensor::randn([5, 3, 32, 32], (Kind::Float, Device::Cpu));
        let mirror = x.flip([3]);
        let (plain, both) = tch::no_grad(|| (network.infer(&x, false), network.infer(&x, true)));
        let expected = tch::no_grad(|| (network.forward_t(&x, false) + network.forward_t(&mirror, false)) * 0.5);
        assert!(both.allclose(&expected, 1e-5, 1e-5, false));
        assert!(!both.allclose(&plain, 1e-3, 1e-3, false), "the mirror view changes the logits");
        let of_mirror = tch::no_grad(|| network.infer(&mirror, true));
        assert!(of_mirror.allclose(&both, 1e-5, 1e-5, false), "an image and its mirror score the same");
    }
}
