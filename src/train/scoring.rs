//! A network's scores on a split of images, in inference mode: what each epoch's evaluation
//! (`val_*` in metrics.csv) and `resnext eval` report.
use crate::compute::Compute;
use crate::config::Experiment;
use crate::data::{Normalizer, Split};
use crate::model::network::Network;
use crate::train::optim;
use tch::{Device, Kind, Tensor};

/// How a split is scored: in batches of `batch` images, averaging each image's logits with its
/// mirror image's when `flip`, the objective label-smoothed by `label_smoothing`.
#[derive(Debug, Clone, Copy)]
pub struct Scoring {
    pub batch: usize,
    pub flip: bool,
    pub label_smoothing: f64,
}

impl Scoring {
    /// The experiment's scoring, in batches of `batch` (default: [`default_batch`]).
    pub fn of(experiment: &Experiment, batch: Option<usize>, device: Device) -> Self {
        Scoring {
            batch: batch.unwrap_or(default_batch(device)),
            flip: experiment.test_time_flip,
            label_smoothing: experiment.label_smoothing,
        }
    }
}

/// Images per evaluation batch unless told otherwise: 64 on a CPU, where that measured fastest,
/// 1000 on CUDA.
pub fn default_batch(device: Device) -> usize {
    if device.is_cuda() {
        1000
    } else {
        64
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

impl Scores {
    /// The loss as Keras reports it on this split (`val_loss`): the objective plus the L2
    /// penalty of `network`'s kernels.
    pub fn keras_loss(&self, network: &Network, l2: f64) -> f64 {
        optim::keras_loss(self.smoothed_ce, l2, network.kernel_sum_of_squares())
    }
}

/// `net`'s scores on `split` in inference mode, under `compute`'s precision.
pub fn score(net: &Network, split: &Split, compute: &Compute, scoring: Scoring) -> Scores {
    let Scoring { batch, flip, label_smoothing } = scoring;
    tch::no_grad(|| {
        let device = split.images.device();
        let (mut ce_sum, mut smoothed_sum) =
            (Tensor::zeros([], (Kind::Double, device)), Tensor::zeros([], (Kind::Double, device)));
        let mut logits_per_batch = Vec::new();
        let n = split.len() as i64;
        let normalizer = Normalizer::new(device);
        let sum = |logits: &Tensor, labels: &Tensor, smoothing: f64| {
            logits
                .cross_entropy_loss::<Tensor>(labels, None, tch::Reduction::Sum, -100, smoothing)
                .to_kind(Kind::Double)
        };
        for start in (0..n).step_by(batch) {
            let size = (batch as i64).min(n - start);
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
