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
use crate::model::parameters::{kernel_sum_of_squares, Parameter};
use crate::torch_ext::{foreach_add_, foreach_mul_};
use tch::Tensor;

/// Keras SGD over a network's trainable variables. Each update is a handful of multi-tensor
/// (`_foreach_*`) ops over all variables at once, not a few ops per variable: the host
/// dispatches five ops per step instead of about 400.
pub struct Sgd {
    momentum: f64,
    nesterov: bool,
    l2: f64,
    names: Vec<String>,
    /// Every trainable variable, sorted by name, and its velocity.
    params: Vec<Tensor>,
    velocities: Vec<Tensor>,
    /// Positions in `params` of the kernels, which get the L2 term.
    kernels: Vec<usize>,
}

impl Sgd {
    pub fn new(parameters: Vec<Parameter>, config: &OptimizerConfig) -> Self {
        let kernels = parameters.iter().enumerate().filter(|(_, p)| p.kernel).map(|(i, _)| i).collect();
        let velocities = parameters.iter().map(|p| p.tensor.zeros_like()).collect();
        let (names, params) = parameters.into_iter().map(|p| (p.name, p.tensor)).unzip();
        Sgd { momentum: config.momentum, nesterov: config.nesterov, l2: config.l2, names, params, velocities, kernels }
    }

    /// The variables, in the order `step` expects their gradients.
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// (variable name, velocity) of every trainable variable, for checkpoints.
    pub fn velocities(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names.iter().map(String::as_str).zip(&self.velocities)
    }

    pub fn velocities_mut(&mut self) -> impl Iterator<Item = (&str, &mut Tensor)> {
        self.names.iter().map(String::as_str).zip(&mut self.velocities)
    }

    fn kernels_of(&self, tensors: &[Tensor]) -> Vec<Tensor> {
        self.kernels.iter().map(|&i| tensors[i].shallow_clone()).collect()
    }

    /// One update from `grads` (one per variable of `params()`, consumed: the L2 term is
    /// added to them in place).
    pub fn step(&mut self, grads: &[Tensor], lr: f64) {
        assert_eq!(grads.len(), self.params.len(), "one gradient per variable");
        tch::no_grad(|| {
            if self.l2 > 0.0 {
                foreach_add_(&self.kernels_of(grads), &self.kernels_of(&self.params), 2.0 * self.l2);
                // d = g + 2 l2 w
            }
            foreach_mul_(&self.velocities, self.momentum); // v = mu v - lr d
            foreach_add_(&self.velocities, grads, -lr);
            if self.nesterov {
                foreach_add_(&self.params, &self.velocities, self.momentum); // p += mu v - lr d
                foreach_add_(&self.params, grads, -lr);
            } else {
                foreach_add_(&self.params, &self.velocities, 1.0); // p += v
            }
        });
    }

    /// `sum(w^2)` over the kernels, a 0-dim float tensor on their device: the L2 penalty is
    /// `l2` times this.
    pub fn kernel_sum_of_squares(&self) -> Tensor {
        kernel_sum_of_squares(&self.kernels_of(&self.params))
    }

    pub fn l2(&self) -> f64 {
        self.l2
    }
}

/// The loss Keras reports (`loss`, `val_loss`, `eval`'s loss): the minimised objective (the
/// mean cross-entropy, label-smoothed when the recipe smooths) plus the L2 penalty `l2 *
/// sum(w^2)` over the conv and dense kernels; no factor 1/2, as in Keras's `l2` regularizer.
pub fn keras_loss(objective: f64, l2: f64, kernel_sum_of_squares: f64) -> f64 {
    objective + l2 * kernel_sum_of_squares
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::keras;
    use crate::model::parameters::{parameters, KERNELS};
    use crate::testing::{floats, keras_reference};
    use tch::nn::Module;
    use tch::{nn, Device, Kind, Reduction};

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
        let mut sgd = Sgd::new(parameters(&vs), &config);
        let k = [1.0, 0.3, 2.0];
        // (parameter, its reference values and velocities, its L2 factor)
        let mut reference = [(start, [0.0f64; 3], 5e-4), (start, [0.0f64; 3], 0.0)];
        for (step, lr) in [0.1, 0.1, 0.01, 0.01, 0.001].into_iter().enumerate() {
            let weights = Tensor::from_slice(&k).to_kind(Kind::Float);
            let loss = ((kernel.square() + gamma.square()) * weights).sum(Kind::Float);
            let grads = Tensor::run_backward(&[&loss], sgd.params(), false, false);
            sgd.step(&grads, lr);
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
        let penalty = 5e-4 * f64::try_from(sgd.kernel_sum_of_squares()).unwrap();
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

    #[test]
    fn the_reported_loss_is_keras_s_cross_entropy_plus_the_l2_sum_of_squares() {
        // A compiled tf_keras model (conv with l2(5e-4) -> flatten -> dense softmax) and its
        // `evaluate` loss, rebuilt from our layers.
        let reference = keras_reference("l2_loss.json");
        let tensor = |v: &serde_json::Value| {
            let shape: Vec<i64> = v["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
            Tensor::from_slice(&floats(&v["data"])).view(shape.as_slice())
        };
        let weights = &reference["weights"];
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = keras::conv(vs.root() / "conv", 2, 3, 3, 1, 1);
        tch::no_grad(|| conv.weight.shallow_clone().copy_(&tensor(&weights["conv_kernel_hwio"]).permute([3, 2, 0, 1])));
        let dense = tensor(&weights["dense_kernel_in_out"]).transpose(0, 1);
        let bias = Tensor::from_slice(&floats(&weights["dense_bias"]));
        let x = tensor(&reference["input_nhwc"]).permute([0, 3, 1, 2]);
        // Keras flattens NHWC.
        let features = conv.forward(&x).permute([0, 2, 3, 1]).flatten(1, -1);
        let logits = features.linear(&dense, Some(&bias));
        let probs = Vec::<f32>::try_from(logits.softmax(-1, Kind::Float).flatten(0, -1)).unwrap();
        let keras_probs = floats(&reference["predicted_probs"]["data"]);
        let worst = probs.iter().zip(&keras_probs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "{probs:?} vs {keras_probs:?}");
        let labels = Tensor::from_slice(&[0i64, 2, 1, 2]);
        let ce = f64::try_from(logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0)).unwrap();
        let squares = f64::try_from(kernel_sum_of_squares(std::slice::from_ref(&conv.weight))).unwrap();
        let keras_squares = reference["conv_kernel_sum_squares"].as_f64().unwrap();
        assert!((squares - keras_squares).abs() < 1e-4, "{squares} vs {keras_squares}");
        let loss = keras_loss(ce, reference["l2_factor"].as_f64().unwrap(), squares);
        let keras = reference["evaluate_loss"].as_f64().unwrap();
        assert!((loss - keras).abs() < 1e-5, "{loss} vs Keras's {keras}");
    }
}
