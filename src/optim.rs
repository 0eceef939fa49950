//! Keras 2 SGD with Nesterov momentum and the L2 kernel penalty, written out so that its
//! velocity buffers can be checkpointed.
//!
//! Keras's update (keras/optimizers.py, SGD.get_updates):
//!     v = momentum * v - lr * g
//!     p = p + momentum * v - lr * g
//! With a constant lr this equals libtorch's SGD(nesterov); when the lr changes, Keras's
//! velocity still carries the old lr for a while, and so does ours: we use Keras's form.
//! The L2 term `l2 * sum(w^2)` of conv and dense kernels adds `2 * l2 * w` to their gradient
//! (coupled weight decay 1e-3 for the blog's l2 5e-4); BatchNorm gamma/beta get none.
use tch::{nn, Tensor};

pub struct Sgd {
    pub momentum: f64,
    pub l2: f64,
    /// (name, parameter, velocity, decayed?) for every trainable variable, sorted by name.
    pub slots: Vec<Slot>,
    /// momentum, 2 * l2 and -lr as 0-dim tensors on the parameters' device, for the fused
    /// multiply-adds (set with `fill_`, which copies nothing from the host).
    coefficients: [Tensor; 3],
}

pub struct Slot {
    pub name: String,
    pub param: Tensor,
    pub velocity: Tensor,
    pub decayed: bool,
}

/// Conv and dense kernels are the variables named `weight` outside BatchNorm layers.
pub fn is_kernel(name: &str) -> bool {
    name.ends_with(".weight")
        && !name.rsplit('.').nth(1).is_some_and(|layer| layer.starts_with("bn") || layer.ends_with("_bn"))
}

impl Sgd {
    pub fn new(vs: &nn::VarStore, momentum: f64, l2: f64) -> Self {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, param)| Slot { decayed: is_kernel(&name), velocity: param.zeros_like(), name, param })
            .collect();
        let device = vs.device();
        let coefficient = |x: f64| Tensor::zeros([], (tch::Kind::Float, device)).fill_(x);
        let coefficients = [coefficient(momentum), coefficient(2.0 * l2), coefficient(0.0)];
        Sgd { momentum, l2, slots, coefficients }
    }

    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            slot.param.zero_grad();
        }
    }

    /// One update with the gradients left by `backward()`. Written as in-place fused
    /// multiply-adds on the gradient (discarded after the step anyway), so a step streams
    /// each parameter a handful of times and allocates nothing.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            let [momentum, two_l2, minus_lr] = &mut self.coefficients;
            let _ = minus_lr.fill_(-lr);
            for slot in &mut self.slots {
                let mut d = slot.param.grad();
                if !d.defined() {
                    continue;
                }
                if slot.decayed && self.l2 > 0.0 {
                    let _ = d.addcmul_(&slot.param, two_l2); // d = g + 2 l2 w
                }
                let _ = slot.velocity.g_mul_scalar_(self.momentum).addcmul_(&d, minus_lr); // v = mu v - lr d
                let _ = slot.param.addcmul_(&slot.velocity, momentum).addcmul_(&d, minus_lr);
                // p += mu v - lr d
            }
        });
    }

    /// The penalty Keras adds to the reported loss, for the current weights.
    pub fn l2_penalty(&self) -> Tensor {
        l2_penalty(self.slots.iter().filter(|s| s.decayed).map(|s| &s.param), self.l2)
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
    use tch::{Device, Kind};

    #[test]
    fn kernels_are_decayed_and_batch_norm_is_not() {
        assert!(is_kernel("stage1.block1.conv2.weight"));
        assert!(is_kernel("stage2.block1.shortcut_conv.weight"));
        assert!(is_kernel("fc.weight"));
        assert!(!is_kernel("stage1.block1.bn2.weight"));
        assert!(!is_kernel("stage2.block1.shortcut_bn.weight"));
        assert!(!is_kernel("stem.bn.bias"));
    }

    #[test]
    fn follows_the_keras_nesterov_update_including_lr_changes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().sub("fc").var("weight", &[3], nn::Init::Const(0.0));
        tch::no_grad(|| w.shallow_clone().copy_(&Tensor::from_slice(&[1.0f32, -2.0, 0.5])));
        let mut sgd = Sgd::new(&vs, 0.9, 5e-4);
        // Reference: Keras's formulas in f64 on a quadratic loss sum(w^2 * k).
        let k = [1.0, 0.3, 2.0];
        let mut p = [1.0f64, -2.0, 0.5];
        let mut v = [0.0f64; 3];
        for (step, lr) in [0.1, 0.1, 0.01, 0.01, 0.001].into_iter().enumerate() {
            sgd.zero_grad();
            let loss = (w.square() * Tensor::from_slice(&k).to_kind(Kind::Float)).sum(Kind::Float);
            loss.backward();
            sgd.step(lr);
            for i in 0..3 {
                let g = 2.0 * k[i] * p[i] + 2.0 * 5e-4 * p[i];
                v[i] = 0.9 * v[i] - lr * g;
                p[i] += 0.9 * v[i] - lr * g;
            }
            let got = Vec::<f32>::try_from(&w).unwrap();
            for i in 0..3 {
                assert!((got[i] as f64 - p[i]).abs() < 1e-5, "step {step}: {got:?} vs {p:?}");
            }
        }
        let penalty = f64::try_from(sgd.l2_penalty()).unwrap();
        let want: f64 = p.iter().map(|x| x * x).sum::<f64>() * 5e-4;
        assert!((penalty - want).abs() < 1e-7);
    }
}
