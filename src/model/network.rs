//! A built network: the ResNeXt's module and variables on a device, in the memory format that
//! is fastest there, and its inference (with flip test-time augmentation).
use crate::compute::Compute;
use crate::config::Experiment;
use crate::model::architecture;
use crate::model::parameters::{self, Parameter};
use crate::torch_ext::{self, MemoryFormat};
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
    /// times faster in that format than in the default one (see docs/performance.md). The
    /// values, names and checkpoints are the same either way.
    pub fn new(experiment: &Experiment, compute: &Compute) -> Network {
        tch::manual_seed(experiment.seed as i64);
        let vs = nn::VarStore::new(compute.device);
        let (net, _layers) = architecture::build(&vs.root(), &experiment.model, compute.fused_batch_norm);
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

    /// The trainable variables, sorted by name, each marked kernel or not by the model.
    pub fn parameters(&self) -> Vec<Parameter> {
        parameters::parameters(&self.vs)
    }

    /// The conv and dense kernels: what the L2 penalty applies to.
    pub fn kernels(&self) -> Vec<Tensor> {
        self.parameters().into_iter().filter(|p| p.kernel).map(|p| p.tensor).collect()
    }

    /// `sum(w^2)` over the kernels: the L2 penalty is `l2` times this.
    pub fn kernel_sum_of_squares(&self) -> f64 {
        f64::try_from(parameters::kernel_sum_of_squares(&self.kernels())).unwrap_or(f64::NAN)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::ComputeRequest;
    use crate::config::Precision;
    use crate::testing::{cpu_compute, relative_difference, tiny_experiment};
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

    #[test]
    fn the_fused_network_trains_the_same_function_with_the_same_gradients() {
        let experiment = tiny_experiment(&[]);
        let compute = |fused| {
            let request = ComputeRequest { fused_batch_norm: Some(fused), ..ComputeRequest::cpu() };
            Compute::new(&request, Precision::Fp32).unwrap()
        };
        let (fused, mut unfused) =
            (Network::new(&experiment, &compute(true)), Network::new(&experiment, &compute(false)));
        // The same weights, whatever other tests drew from the generator in between.
        unfused.vs.copy(&fused.vs).unwrap();
        tch::manual_seed(3);
        let x = Tensor::randn([6, 3, 32, 32], (Kind::Float, Device::Cpu));
        let step = |network: &Network| {
            let logits = network.forward_t(&x, true);
            let params: Vec<Tensor> = network.parameters().into_iter().map(|p| p.tensor).collect();
            let grads = Tensor::run_backward(&[&logits.square().sum(Kind::Float)], &params, false, false);
            let moving: std::collections::BTreeMap<String, Tensor> =
                network.vs.variables().into_iter().filter(|(name, _)| name.contains("running")).collect();
            (logits, grads, moving)
        };
        let (fused, unfused) = (step(&fused), step(&unfused));
        let close = |a: &Tensor, b: &Tensor, what: &str| {
            let difference = relative_difference(a, b);
            // float32 through 4 blocks of sums in another order: a few ulps, grown by the depth.
            assert!(difference < 1e-3, "{what}: relative difference {difference:e}");
        };
        close(&fused.0, &unfused.0, "logits");
        assert_eq!(fused.1.len(), unfused.1.len());
        for (i, (a, b)) in fused.1.iter().zip(&unfused.1).enumerate() {
            close(a, b, &format!("gradient {i}"));
        }
        assert!(!fused.2.is_empty());
        for ((name, a), b) in fused.2.iter().zip(unfused.2.values()) {
            close(a, b, name);
        }
    }
}
