//! Keras 2 SGD with momentum (Nesterov or plain) and the L2 kernel penalty, written out so
//! that its velocity buffers can be checkpointed.
//!
//! Keras's update (keras/optimizers.py, SGD.get_updates):
//!     v = momentum * v - lr * g
//!     p = p + momentum * v - lr * g      (nesterov=True)
//!     p = p + v                          (nesterov=False)
//! With a constant lr the Nesterov form equals libtorch's SGD(nesterov); when the lr changes,
//! Keras's velocity still carries the old lr for a while, and so does ours: we use Keras's
//! form. The L2 term `l2 * sum(w^2)` of conv and dense kernels adds `2 * l2 * w` to their
//! gradient (coupled weight decay 1e-3 for the blog's l2 5e-4); BatchNorm gamma/beta get none.
use crate::config::OptimizerConfig;
use crate::model::Parameter;
use tch::Tensor;

pub struct Sgd {
    momentum: f64,
    nesterov: bool,
    l2: f64,
    /// Every trainable variable, sorted by name, with its velocity.
    slots: Vec<(Parameter, Tensor)>,
    /// momentum, 2 * l2 and -lr as 0-dim tensors on the parameters' device, for the fused
    /// multiply-adds (set with `fill_`, which copies nothing from the host).
    coefficients: [Tensor; 3],
}

impl Sgd {
    pub fn new(parameters: Vec<Parameter>, config: &OptimizerConfig) -> Self {
        let device = parameters.first().map(|p| p.tensor.device()).unwrap_or(tch::Device::Cpu);
        let coefficient = |x: f64| Tensor::zeros([], (tch::Kind::Float, device)).fill_(x);
        let coefficients = [coefficient(config.momentum), coefficient(2.0 * config.l2), coefficient(0.0)];
        let slots = parameters.into_iter().map(|p| {
            let velocity = p.tensor.zeros_like();
            (p, velocity)
        });
        Sgd {
            momentum: config.momentum,
            nesterov: config.nesterov,
            l2: config.l2,
            slots: slots.collect(),
            coefficients,
        }
    }

    /// (variable name, velocity) of every trainable variable, for checkpoints.
    pub fn velocities(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.slots.iter().map(|(p, v)| (p.name.as_str(), v))
    }

    pub fn velocities_mut(&mut self) -> impl Iterator<Item = (&str, &mut Tensor)> {
        self.slots.iter_mut().map(|(p, v)| (p.name.as_str(), v))
    }

    pub fn zero_grad(&mut self) {
        for (parameter, _) in &mut self.slots {
            parameter.tensor.zero_grad();
        }
    }

    /// One update with the gradients left by `backward()`. Written as in-place fused
    /// multiply-adds on the gradient (discarded after the step anyway), so a step streams
    /// each parameter a handful of times and allocates nothing.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            let [momentum, two_l2, minus_lr] = &mut self.coefficients;
            let _ = minus_lr.fill_(-lr);
            for (parameter, velocity) in &mut self.slots {
                let mut d = parameter.tensor.grad();
                if !d.defined() {
                    continue;
                }
                if parameter.kernel && self.l2 > 0.0 {
                    let _ = d.addcmul_(&parameter.tensor, two_l2); // d = g + 2 l2 w
                }
                let _ = velocity.g_mul_scalar_(self.momentum).addcmul_(&d, minus_lr); // v = mu v - lr d
                if self.nesterov {
                    let _ = parameter.tensor.addcmul_(velocity, momentum).addcmul_(&d, minus_lr);
                // p += mu v - lr d
                } else {
                    let _ = parameter.tensor.g_add_(velocity); // p += v
                }
            }
        });
    }

    /// The penalty Keras adds to the reported loss, for the current weights.
    pub fn l2_penalty(&self) -> Tensor {
        l2_penalty(self.slots.iter().filter(|(p, _)| p.kernel).map(|(p, _)| &p.tensor), self.l2)
    }
}

/// `l2 * sum(w^2)` over `kernels`, as a scalar tensor on their device.
pub fn l2_penalty<'a>(kernels: impl Iterator<Item = &'a Tensor>, l2: f64) -> Tensor {
    tch::no_grad(|| {
        // ||w||^2 reads each kernel once, with no temporary.
        let squares: Vec<Tensor> = kernels.map(|w| w.norm().square()).collect();
        Tensor::stack(&squares, 0).sum(tch::Kind::Float) * l2
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{self, KERNELS};
    use tch::{nn, Device, Kind};

    /// Trains a kernel `fc.weight` and a BatchNorm-like `bn.weight` on the quadratic loss
    /// sum(k * w^2) with lr changes, and checks both against Keras's formulas in f64.
    fn follows_keras(nesterov: bool) {
        let vs = nn::VarStore::new(Device::Cpu);
        let kernel = vs.root().sub("fc").set_group(KERNELS).var("weight", &[3], nn::Init::Const(0.0));
        let gamma = vs.root().sub("bn").var("weight", &[3], nn::Init::Const(0.0));
        let start = [1.0f64, -2.0, 0.5];
        for w in [&kernel, &gamma] {
            tch::no_grad(|| w.shallow_clone().copy_(&Tensor::from_slice(&start).to_kind(Kind::Float)));
        }
        let config = OptimizerConfig { name: "sgd".into(), lr: 0.1, momentum: 0.9, nesterov, l2: 5e-4 };
        let mut sgd = Sgd::new(model::parameters(&vs), &config);
        let k = [1.0, 0.3, 2.0];
        // (parameter, its reference values and velocities, its L2 factor)
        let mut reference = [(start, [0.0f64; 3], 5e-4), (start, [0.0f64; 3], 0.0)];
        for (step, lr) in [0.1, 0.1, 0.01, 0.01, 0.001].into_iter().enumerate() {
            sgd.zero_grad();
            let weights = Tensor::from_slice(&k).to_kind(Kind::Float);
            ((kernel.square() + gamma.square()) * weights).sum(Kind::Float).backward();
            sgd.step(lr);
            for (tensor, (p, v, l2)) in [&kernel, &gamma].into_iter().zip(&mut reference) {
                for i in 0..3 {
                    let g = 2.0 * k[i] * p[i] + 2.0 * *l2 * p[i];
                    v[i] = 0.9 * v[i] - lr * g;
                    p[i] += if nesterov { 0.9 * v[i] - lr * g } else { v[i] };
                }
                let got = Vec::<f32>::try_from(tensor).unwrap();
                for i in 0..3 {
                    assert!((got[i] as f64 - p[i]).abs() < 1e-5, "step {step}: {got:?} vs {p:?}");
                }
            }
        }
        let penalty = f64::try_from(sgd.l2_penalty()).unwrap();
        let want: f64 = reference[0].0.iter().map(|x| x * x).sum::<f64>() * 5e-4;
        assert!((penalty - want).abs() < 1e-7, "only the kernel is penalised: {penalty} vs {want}");
    }

    #[test]
    fn follows_the_keras_nesterov_update_including_lr_changes() {
        follows_keras(true);
    }

    #[test]
    fn follows_the_keras_plain_momentum_update_when_nesterov_is_off() {
        follows_keras(false);
    }
}
