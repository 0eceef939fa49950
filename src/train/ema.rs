//! An exponential moving average of a network's weights and BatchNorm statistics: a second
//! copy of the network that trails the trained one, and that evaluation, `best.safetensors`
//! and exports use when the config asks for it.
use crate::compute::Compute;
use crate::config::Experiment;
use crate::model::network::Network;
use crate::torch_ext::foreach_lerp_;
use tch::Tensor;

pub struct Ema {
    network: Network,
    decay: f64,
    /// The trained network's variables and the average's, name by name.
    live: Vec<Tensor>,
    averaged: Vec<Tensor>,
}

/// Every variable of a network (weights and BatchNorm statistics), sorted by name.
fn variables(network: &Network) -> Vec<(String, Tensor)> {
    let mut variables: Vec<(String, Tensor)> = network.vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    variables
}

impl Ema {
    /// An average that starts at `live`'s current values.
    pub fn new(live: &Network, experiment: &Experiment, compute: &Compute, decay: f64) -> Self {
        let network = Network::new(experiment, compute);
        let (live, averaged): (Vec<Tensor>, Vec<Tensor>) =
            variables(live).into_iter().zip(variables(&network)).map(|((_, l), (_, a))| (l, a)).unzip();
        tch::no_grad(|| {
            for (l, a) in live.iter().zip(&averaged) {
                a.shallow_clone().copy_(l);
            }
        });
        Ema { network, decay, live, averaged }
    }

    /// Moves the average towards the live values after global step `step` (0-based), with
    /// TensorFlow's `num_updates` rule: decay min(d, (1 + t) / (10 + t)). One multi-tensor op.
    pub fn update(&mut self, step: usize) {
        let t = step as f64;
        let decay = self.decay.min((1.0 + t) / (10.0 + t));
        tch::no_grad(|| foreach_lerp_(&self.averaged, &self.live, 1.0 - decay));
    }

    /// The averaged network, for inference.
    pub fn network(&self) -> &Network {
        &self.network
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cpu_compute, tiny_experiment};

    #[test]
    fn the_average_follows_the_tensorflow_decay_rule() {
        let (experiment, compute) = (tiny_experiment(&[]), cpu_compute());
        let live = Network::new(&experiment, &compute);
        let mut ema = Ema::new(&live, &experiment, &compute, 0.9);
        let (name, weight) = variables(&live).into_iter().find(|(n, _)| n == "fc.weight").unwrap();
        // A shallow copy of the average's variable: it sees every later update.
        let averaged = variables(ema.network()).into_iter().find(|(n, _)| *n == name).unwrap().1;
        let averaged = || averaged.shallow_clone();
        let start = weight.copy();
        assert!(averaged().equal(&start), "the average starts at the live weights");
        // Step 0: decay min(0.9, 1/10) = 0.1, so the average moves 90% of the way.
        tch::no_grad(|| weight.shallow_clone().copy_(&(&start + 1.0)));
        ema.update(0);
        assert!(averaged().allclose(&(&start + 0.9), 1e-6, 1e-6, false));
        // Step 100: decay min(0.9, 101/110) = 0.9.
        ema.update(100);
        assert!(averaged().allclose(&(&start + 0.9 + 0.1 * 0.1), 1e-6, 1e-6, false));
        // BatchNorm statistics are averaged too.
        assert!(variables(ema.network()).iter().any(|(n, _)| n.ends_with("running_var")));
    }
}
