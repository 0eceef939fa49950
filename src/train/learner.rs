//! What a training step changes: the network, its optimizer and (when the recipe has one)
//! the weight average; and the step itself.
use crate::compute::Compute;
use crate::config::Experiment;
use crate::model::network::Network;
use crate::train::ema::Ema;
use crate::train::optim::Sgd;
use crate::train::step_stats::StepStats;
use tch::nn::ModuleT;
use tch::{Kind, Reduction, Tensor};

pub struct Learner {
    pub network: Network,
    pub sgd: Sgd,
    pub ema: Option<Ema>,
    label_smoothing: f64,
}

impl Learner {
    /// A fresh network (weights from the experiment's seed), optimizer and average.
    pub fn new(experiment: &Experiment, compute: &Compute) -> Self {
        let network = Network::new(experiment, compute);
        let sgd = Sgd::new(network.parameters(), &experiment.optimizer);
        let ema = experiment.ema.as_ref().map(|ema| Ema::new(&network, experiment, compute, ema.decay));
        Learner { network, sgd, ema, label_smoothing: experiment.label_smoothing }
    }

    /// The network evaluation uses: the average when there is one.
    pub fn inference_network(&self) -> &Network {
        self.ema.as_ref().map_or(&self.network, Ema::network)
    }

    /// One SGD step on a batch of normalised images: forward (under autocast in bf16), the
    /// loss on the float32 logits, backward straight into a list of gradients (none is stored
    /// on the variables, so none needs zeroing), update, then the average. `step` is the
    /// run's global step number. Returns the step's stats, on the device.
    pub fn step(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        lr: f64,
        step: usize,
        compute: &Compute,
    ) -> StepStats<Tensor> {
        let logits = compute.autocast(|| self.network.forward_t(images, true));
        let loss = logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, self.label_smoothing);
        let kernel_squares = self.sgd.kernel_sum_of_squares();
        let grads = Tensor::run_backward(&[&loss], self.sgd.params(), false, false);
        self.sgd.step(&grads, lr);
        if let Some(ema) = &mut self.ema {
            ema.update(step);
        }
        tch::no_grad(|| {
            let correct = logits.argmax(-1, false).eq_tensor(labels).sum(Kind::Float);
            let ce = match self.label_smoothing {
                0.0 => loss.shallow_clone(),
                _ => logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0),
            };
            StepStats { objective: loss, kernel_squares, correct, ce }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cpu_compute, tiny_experiment};
    use tch::Device;

    #[test]
    fn the_step_minimises_label_smoothed_cross_entropy_and_reports_the_plain_one_too() {
        let (experiment, compute) = (tiny_experiment(&["label_smoothing=0.2"]), cpu_compute());
        let mut learner = Learner::new(&experiment, &compute);
        tch::manual_seed(7);
        let images = Tensor::randn([16, 3, 32, 32], (Kind::Float, Device::Cpu));
        let labels = Tensor::randint(10, [16], (Kind::Int64, Device::Cpu));
        // BatchNorm in training mode depends on the batch only, so this is the step's forward.
        let logits = tch::no_grad(|| learner.network.forward_t(&images, true));
        let log_p = logits.log_softmax(-1, Kind::Double);
        let ce = -f64::try_from(log_p.gather(1, &labels.unsqueeze(1), false).mean(Kind::Double)).unwrap();
        let uniform = -f64::try_from(log_p.mean(Kind::Double)).unwrap();
        let stats = learner.step(&images, &labels, 0.01, 0, &compute);
        let [objective, correct, step_ce] =
            [stats.objective, stats.correct, stats.ce].map(|t| f32::try_from(t).unwrap());
        // (1 - e) CE + e * (mean over classes of -log p): the target puts e / 10 on each class.
        let smoothed = 0.8 * ce + 0.2 * uniform;
        assert!((objective as f64 - smoothed).abs() < 1e-4, "{objective} vs {smoothed}");
        assert!((step_ce as f64 - ce).abs() < 1e-4, "{step_ce} vs {ce}");
        assert!((0.0..=16.0).contains(&correct) && correct.fract() == 0.0, "correct predictions: {correct}");
    }
}
